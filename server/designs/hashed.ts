/**
 * The hashed design: the phone sends SHA-256(utf8(E.164)) instead of the
 * number. The server keeps an index from a 48-bit prefix of each registered
 * number's hash to the number, confirms a hit by hashing the candidate, and
 * logs the hashes. Hashing hides nothing from whoever holds the log: valid
 * numbers are few enough to enumerate (`pcd audit --design hashed` does).
 *
 * The rule is shared/designs/hashed.ts `hashNumber`; the server computes the same
 * bytes with node:crypto's one-shot `crypto.hash` ({@link serverHash}; it
 * indexes the whole directory at start), and a test checks the two agree.
 * Measured on the project's 2-core VM over 200,000 numbers: noble's JS
 * SHA-256 370-440k/s, `createHash('sha256')` 370-490k/s (its per-call
 * object costs as much as the hash of 12 bytes), `crypto.hash` 0.98-1.1M/s.
 *
 * At a restart the index is loaded from its snapshot (./hashed-snapshot.ts,
 * docs/operations.md "Restart") when the directory came from the directory
 * snapshot of the same version and digest, and the journal replayed on the
 * directory is replayed on it through the path registrations take. What is
 * checked: the file's SHA-256 and format, its stamp, its size, no pair twice,
 * the prefixes of 1,024 pairs spread over the file (hashed again), and after
 * the replay as many numbers as the directory. Not every prefix is
 * recomputed (that is the cost the snapshot saves): a wrong prefix the
 * checksum missed would only make that number unfound, never another
 * number found, since every hit is confirmed by hashing the candidate. On
 * any failure it warns and hashes every number, as without a snapshot.
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
import { HASHED_LOG, type HashBytes } from '../../shared/designs/hashed.ts';
import { HashedLookupRequest, PATHS, type HashedLookupReply } from '../../shared/messages.ts';
import type { ServerContext, ServerDesignFactory } from '../context.ts';
import type { DirectoryRestart } from '../directory.ts';
import { KeyTable } from '../keytable.ts';
import { designLog } from '../querylog.ts';
import { readHashedSnapshot, writeHashedSnapshot } from './hashed-snapshot.ts';

/** SHA-256(utf8(number)) through node:crypto (one-shot, Node >= 20.12): the bytes of shared/designs/hashed.ts hashNumber. */
export function serverHash(number: E164): HashBytes {
  return crypto.hash('sha256', number, 'buffer');
}

/** First 6 bytes of a hash as an integer: exact in a float64 key. */
function prefix48(h: Uint8Array): number {
  return h[0]! * 2 ** 40 + h[1]! * 2 ** 32 + ((h[2]! << 24) >>> 0) + (h[3]! << 16) + (h[4]! << 8) + h[5]!;
}


/** Pairs checked by hashing when the index is loaded from its snapshot (module header). */
const SNAPSHOT_SAMPLE = 1024;

/**
 * The index as of the directory snapshot the directory was loaded from
 * (ctx.restart), from the design's own snapshot (./hashed-snapshot.ts); it
 * throws with the reason when the file is missing, unsound or of another
 * directory. The caller replays the journal on it.
 */
function loadIndex(ctx: ServerContext, restart: DirectoryRestart): KeyTable {
  const snap = readHashedSnapshot(ctx.options.dataDir);
  if (!snap) throw new Error('no snapshot');
  if (snap.version !== restart.version || !bytesEqual(snap.digest, restart.digest)) {
    throw new Error(`of directory version ${snap.version}, the directory snapshot is of ${restart.version} (or another digest)`);
  }
  const n = snap.keys.length;
  if (n !== restart.size) throw new Error(`${n} entries, the directory snapshot has ${restart.size}`);
  const index = new KeyTable(Float64Array, true, Math.max(n, ctx.directory.size));
  for (let i = 0; i < n; i++) index.set(snap.prefixes[i]!, snap.keys[i]!);
  if (index.size !== n) throw new Error('a pair listed twice');
  // The checksum and the stamp say the file is the one written for this directory; the prefixes are checked on a sample.
  for (let j = 0; j < Math.min(n, SNAPSHOT_SAMPLE); j++) {
    const i = Math.floor((j * n) / Math.min(n, SNAPSHOT_SAMPLE));
    if (prefix48(serverHash(keyToE164(snap.keys[i]!))) !== snap.prefixes[i]) throw new Error(`entry ${i}: the prefix is not the number's`);
  }
  return index;
}

export const createHashedDesign: ServerDesignFactory = (ctx): ServerDesign => {
  let index: KeyTable | undefined;
  const add = (number: E164) => index!.set(prefix48(serverHash(number)), e164ToKey(number));
  const apply = (changes: readonly DirectoryChange[]) => {
    for (const { number, mask } of changes) {
      if (mask === 0) index!.delete(prefix48(serverHash(number)), e164ToKey(number));
      else add(number);
    }
  };
  if (ctx.restart) {
    try {
      index = loadIndex(ctx, ctx.restart);
      apply(ctx.restart.changes); // the journal above the snapshot, as registrations update the index
      if (index.size !== ctx.directory.size) throw new Error(`${index.size} numbers after the journal replay, the directory has ${ctx.directory.size}`);
      ctx.logger.info({ size: index.size, replayed: ctx.restart.changes.length }, 'hashed index loaded from its snapshot');
    } catch (e) {
      index = undefined;
      const reason = (e as Error).message;
      if (reason !== 'no snapshot') ctx.logger.warn({ reason }, 'hashed index snapshot ignored: hashing every number');
    }
  }
  const snapshotLoaded = index !== undefined;
  if (!index) {
    index = new KeyTable(Float64Array, true, ctx.directory.size);
    for (const { number } of ctx.directory.entries()) add(number);
  }
  const table = index;

  const find = (hash: HashBytes): E164 | undefined => {
    for (const key of table.getAll(prefix48(hash))) {
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
      apply(changes);
    },
    snapshotLoaded,
    writeSnapshot(stamp) {
      const n = table.size;
      const prefixes = new Float64Array(n);
      const keys = new Float64Array(n);
      let i = 0;
      for (const [p, k] of table.entries()) {
        prefixes[i] = p;
        keys[i++] = k;
      }
      writeHashedSnapshot(ctx.options.dataDir, { ...stamp, prefixes, keys });
    },
    async close() {
      await log.close();
    },
  };
};
