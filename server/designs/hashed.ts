/**
 * The hashed design: the phone sends SHA-256(utf8(E.164)) instead of the
 * number. The server keeps an index from a 48-bit prefix of each registered
 * number's hash to the number, confirms a hit by hashing the candidate, and
 * logs the hashes. Hashing hides nothing from whoever holds the log: valid
 * numbers are few enough to enumerate (`pcd audit --design hashed` does).
 *
 * The rule is shared/hashed.ts `hashNumber`; the server computes the same
 * bytes with node:crypto's one-shot `crypto.hash` ({@link serverHash}; it
 * indexes the whole directory at start), and a test checks the two agree.
 * Measured on the project's 2-core VM over 200,000 numbers: noble's JS
 * SHA-256 370-440k/s, `createHash('sha256')` 370-490k/s (its per-call
 * object costs as much as the hash of 12 bytes), `crypto.hash` 0.98-1.1M/s.
 *
 * When the log cannot be written: as the plain design (server/designs/plain.ts),
 * every answered lookup is logged. Rows are kept and retried while the
 * buffer has room; once the log is failing and its buffer is full, lookups
 * are refused with 503 `unavailable` and Retry-After.
 */
import crypto from 'node:crypto';
import { bytesEqual } from '../../shared/bytes.ts';
import { maskToCapabilities } from '../../shared/capabilities.ts';
import { route, type DirectoryChange, type ServerDesign } from '../../shared/design.ts';
import { e164ToKey, keyToE164, type E164 } from '../../shared/e164.ts';
import type { HashBytes } from '../../shared/hashed.ts';
import { HASHED_LOG } from '../../shared/designs/hashed.ts';
import { HashedLookupRequest, PATHS, type HashedLookupReply } from '../../shared/messages.ts';
import type { ServerDesignFactory } from '../context.ts';
import { KeyTable } from '../keytable.ts';
import { designLog } from '../querylog.ts';

/** SHA-256(utf8(number)) through node:crypto (one-shot, Node >= 20.12): the bytes of shared/hashed.ts hashNumber. */
export function serverHash(number: E164): HashBytes {
  return crypto.hash('sha256', number, 'buffer');
}

/** First 6 bytes of a hash as an integer: exact in a float64 key. */
function prefix48(h: Uint8Array): number {
  return h[0]! * 2 ** 40 + h[1]! * 2 ** 32 + ((h[2]! << 24) >>> 0) + (h[3]! << 16) + (h[4]! << 8) + h[5]!;
}


export const createHashedDesign: ServerDesignFactory = (ctx): ServerDesign => {
  const index = new KeyTable(Float64Array, true, ctx.directory.size);
  const add = (number: E164) => index.set(prefix48(serverHash(number)), e164ToKey(number));
  for (const { number } of ctx.directory.entries()) add(number);

  const find = (hash: HashBytes): E164 | undefined => {
    for (const key of index.getAll(prefix48(hash))) {
      const number = keyToE164(key);
      if (bytesEqual(serverHash(number), hash)) return number;
    }
    return undefined;
  };

  const log = designLog(ctx, HASHED_LOG);

  return {
    name: 'hashed',
    routes: [
      route<HashedLookupRequest, HashedLookupReply>({
        method: 'POST',
        path: PATHS.hashedLookup,
        auth: 'requester',
        request: HashedLookupRequest,
        cost: (b) => b.hashes.length,
        handle({ body, requester, ip }) {
          log.requireRoom(body.hashes.length); // refused, not answered unlogged (module header)
          const ts = ctx.now();
          const results = body.hashes.map((hash) => {
            const number = find(hash);
            const mask = number ? ctx.directory.mask(number) : 0;
            log.append([ts, requester.accountId, requester.email, ip, Buffer.from(hash), mask]);
            return { capabilities: maskToCapabilities(mask) };
          });
          return { body: { results } };
        },
      }),
    ],
    onDirectoryChange(changes: readonly DirectoryChange[]) {
      for (const { number, mask } of changes) {
        if (mask === 0) index.delete(prefix48(serverHash(number)), e164ToKey(number));
        else add(number);
      }
    },
    async close() {
      log.close();
    },
  };
};
