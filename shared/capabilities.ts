/**
 * Capabilities a registered number can have, and their bit masks.
 * Bit j (least significant first) stands for CAPABILITIES[j], as in a bucket's
 * `capabilities` bytes (docs/protocol.md). The order is part of the protocol.
 */
import { ErrorCode, PcdError } from './errors.ts';
import { string } from './schema.ts';

export const CAPABILITIES = ['messages', 'facetime'] as const;
export type Capability = (typeof CAPABILITIES)[number];
/** Capability mask: one byte, bit j = CAPABILITIES[j]. 0 means not registered (SMS only). */
export type CapabilityMask = number;

export function isCapability(value: unknown): value is Capability {
  return typeof value === 'string' && (CAPABILITIES as readonly string[]).includes(value);
}

export function capabilitiesToMask(caps: readonly string[]): CapabilityMask {
  let mask = 0;
  for (const c of caps) {
    const bit = (CAPABILITIES as readonly string[]).indexOf(c);
    if (bit < 0) {
      throw new PcdError(
        ErrorCode.InvalidField,
        `unknown capability '${c}': known are ${CAPABILITIES.join(', ')}`,
      );
    }
    mask |= 1 << bit;
  }
  return mask;
}

/** Decodes a mask with the server's capability list (a client reads names from the config). */
export function maskToCapabilities(mask: CapabilityMask, names: readonly string[] = CAPABILITIES): string[] {
  const out: string[] = [];
  for (let j = 0; j < names.length; j++) if (mask & (1 << j)) out.push(names[j]!);
  return out;
}

/** A capability name on the wire (a client reads the list from the server's config). */
export const capabilityName = string({ max: 32, min: 1, pattern: /^[a-z][a-z0-9_-]*$/, what: 'a capability name' });
