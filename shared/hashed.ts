/**
 * The hashed design's one rule: hash = SHA-256(utf8(E.164)) (docs/protocol.md).
 * It hides nothing from the server: the space of valid numbers is small enough
 * to enumerate (see `pcd audit --design hashed`), which is why it is here, as
 * the commonly proposed half-measure to measure against.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { utf8ToBytes } from '@noble/hashes/utils.js';
import type { E164 } from './e164.ts';

export type HashBytes = Uint8Array; // 32 bytes
export const HASH_BYTES = 32;

export function hashNumber(number: E164): HashBytes {
  return sha256(utf8ToBytes(number));
}
