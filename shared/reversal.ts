/**
 * The hashed design undone: every number of a numbering-plan range hashed
 * (hash = SHA-256(utf8(E.164)), shared/designs/hashed.ts) and matched
 * against logged hashes. A pure function over the hashes and the plan, used
 * by the audit (audit/designs/hashed.ts), the page's hashed trace (in a
 * worker thread: web/reverse-worker.ts) and the reversal benchmark. Node
 * only: SHA-256 comes from node:crypto.
 */
import crypto from 'node:crypto';
import type { E164 } from './e164.ts';
import { HASH_BYTES } from './designs/hashed.ts';
import type { PlanPattern } from './numbering.ts';

// SHA-256 comes from node:crypto (OpenSSL). Measured on this project's
// machine (Node 20.20, one core, 12-byte messages): @noble/hashes ~0.30-0.37
// M/s, createHash().update().digest() ~0.27-0.32 M/s, crypto.hash() ~0.43-0.45
// M/s. A hand-tuned one-block SHA-256 reached ~1.7-2 M/s, but a reference
// implementation should not carry its own hash; and the rate it shows is a
// floor: one GPU running an off-the-shelf cracker does billions per second.

function sha256(message: Uint8Array): Buffer {
  return crypto.hash('sha256', message, 'buffer');
}

/**
 * Reverses `hashes` (32-byte SHA-256 of E.164) by hashing every number of
 * `plan`: returns hex hash -> number for those found, and how fast it went.
 *
 * The hashes are indexed by their first 32 bits: a 2^24-bit presence bitmap
 * (2 MB) rejects almost every candidate with one load, and only a bitmap
 * hit looks in the Map and compares the full 32 bytes.
 */
export function reverseHashes(
  hashes: Iterable<Uint8Array>,
  plan: readonly PlanPattern[],
): { numbers: Map<string, E164>; candidates: number; distinct: number; ms: number } {
  const bitmap = new Uint8Array(1 << 21);
  const byWord = new Map<number, Uint8Array[]>();
  let distinct = 0;
  for (const h of hashes) {
    if (h.length !== HASH_BYTES) continue;
    distinct++;
    const word = ((h[0]! << 24) | (h[1]! << 16) | (h[2]! << 8) | h[3]!) >>> 0;
    const top = word >>> 8;
    bitmap[top >>> 3]! |= 1 << (top & 7);
    const list = byWord.get(word);
    if (list) list.push(h);
    else byWord.set(word, [h]);
  }
  const numbers = new Map<string, E164>();
  let candidates = 0;
  const started = performance.now();
  for (const { pattern, size } of plan) {
    // The candidate is edited in place, the X digits counting up like an odometer.
    const candidate = Buffer.from(pattern.replaceAll('X', '0'), 'latin1');
    const xs = [...pattern].flatMap((c, i) => (c === 'X' ? [i] : []));
    const last = xs.length - 1;
    for (let n = 0; n < size; n++) {
      const digest = sha256(candidate);
      const word = digest.readUInt32BE(0);
      const top = word >>> 8;
      if ((bitmap[top >>> 3]! & (1 << (top & 7))) !== 0) {
        for (const h of byWord.get(word) ?? []) {
          if (Buffer.compare(digest, h) === 0) numbers.set(digest.toString('hex'), candidate.toString('latin1') as E164);
        }
      }
      for (let k = last; k >= 0; k--) {
        const p = xs[k]!;
        if (candidate[p] === 57) candidate[p] = 48;
        else {
          candidate[p]!++;
          break;
        }
      }
    }
    candidates += size;
  }
  return { numbers, candidates, distinct, ms: performance.now() - started };
}
