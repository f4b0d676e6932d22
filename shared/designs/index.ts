/**
 * The design registry of the protocol: every design's name, paths and log tables,
 * in the order the CLI, the reports and the page show them. Adding a design
 * is a file beside this one (its paths, messages and logs) and one line here;
 * each side then has its own registry keyed by DesignName (server/server.ts,
 * client/client.ts, audit/designs/index.ts), which the type checker keeps
 * complete.
 */
import { ErrorCode, PcdError } from '../errors.ts';
import type { LogTable } from '../logs.ts';
import { BLINDED } from './blinded.ts';
import { HASHED } from './hashed.ts';
import { PLAIN } from './plain.ts';

export const DESIGN_PROTOCOLS = [PLAIN, HASHED, BLINDED] as const;

export type DesignName = (typeof DESIGN_PROTOCOLS)[number]['name'];
export const DESIGNS: readonly DesignName[] = DESIGN_PROTOCOLS.map((d) => d.name);

/** The design a client, the page and `pcd lookup` use unless told: the one that keeps no readable log. */
export const DEFAULT_DESIGN: DesignName = 'blinded';

/**
 * The parameters that change what a design's log holds, as a run's label
 * shows them: the blinded design's bucket bits (' b=12'). A table: a new
 * design is a missing key.
 */
const LABEL_PARAMETERS: { readonly [N in DesignName]: (o: { bucketBits?: number }) => string } = {
  plain: () => '',
  hashed: () => '',
  blinded: (o) => ` b=${o.bucketBits ?? 0}`,
};

/**
 * How tables, charts and the simulation name a run of a design: the name
 * shown (the design's, or a variant's such as 'blinded-anonymous') and the
 * design's parameters: 'plain', 'blinded b=12'.
 */
export function designLabel(design: DesignName, o: { bucketBits?: number } = {}, shown: string = design): string {
  return shown + LABEL_PARAMETERS[design](o);
}

type UnionToIntersection<U> = (U extends unknown ? (x: U) => void : never) extends (x: infer I) => void ? I : never;

/** Every design's paths in one object (shared/messages.ts PATHS adds the common ones). */
export const DESIGN_PATHS = Object.assign({}, ...DESIGN_PROTOCOLS.map((d) => d.paths)) as UnionToIntersection<(typeof DESIGN_PROTOCOLS)[number]['paths']>;

/** Every declared log table, with its design. */
export const LOG_TABLES: readonly (LogTable & { readonly design: DesignName })[] = DESIGN_PROTOCOLS.flatMap((d) =>
  d.logs.map((t) => ({ ...t, design: d.name })),
);

/** A declared log table by name, or undefined. */
export function logTable(name: string): (LogTable & { readonly design: DesignName }) | undefined {
  return LOG_TABLES.find((t) => t.name === name);
}

/** True when `name` is a design of the registry. */
export function isDesignName(name: string): name is DesignName {
  return (DESIGNS as readonly string[]).includes(name);
}

/**
 * A comma-separated list of designs ('plain,blinded'), as the commands take
 * it: each name checked, repeats dropped, in the order given; an unknown
 * name or an empty list is one invalid_field line listing the designs.
 */
export function parseDesigns(list: string): DesignName[] {
  const names = [...new Set(list.split(',').map((s) => s.trim()).filter(Boolean))];
  for (const n of names) {
    if (!isDesignName(n)) throw new PcdError(ErrorCode.InvalidField, `unknown design '${n}': choose from ${DESIGNS.join(', ')}`);
  }
  if (names.length === 0) throw new PcdError(ErrorCode.InvalidField, 'no design given');
  return names as DesignName[];
}
