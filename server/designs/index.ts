/**
 * The server's design registry: each design's factory, keyed by the
 * protocol's DesignName (shared/designs/index.ts), and each design's own
 * type, so that a caller reaching a design's own features (the blinded
 * epochs, its evaluator) gets them typed without a cast. A design added to
 * the protocol's registry is a missing key here until its factory and type
 * are added.
 */
import type { DesignName } from '../../shared/designs/index.ts';
import type { ServerDesign } from '../../shared/design.ts';
import type { ServerContext } from '../context.ts';
import { createBlindedDesign, type BlindedServerDesign } from './blinded.ts';
import { createHashedDesign } from './hashed.ts';
import { createPlainDesign } from './plain.ts';

/** What each design's factory makes. */
export interface ServerDesigns {
  plain: ServerDesign;
  hashed: ServerDesign;
  blinded: BlindedServerDesign;
}

export const DESIGN_FACTORIES: { readonly [N in DesignName]: (ctx: ServerContext) => ServerDesigns[N] | Promise<ServerDesigns[N]> } = {
  plain: createPlainDesign,
  hashed: createHashedDesign,
  blinded: createBlindedDesign,
};

/** The served design named `name`, typed as its own, or undefined when the server does not serve it. */
export function designOf<N extends DesignName>(designs: readonly ServerDesign[], name: N): ServerDesigns[N] | undefined {
  return designs.find((d) => d.name === name) as ServerDesigns[N] | undefined;
}
