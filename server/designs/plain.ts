/**
 * The plain design, as the report describes it: the number leaves the phone,
 * the server answers from its directory index and logs every lookup with the
 * time, the number, the requester's account, email and IP, and the answer.
 * The log is written in batches and kept for the retention period; it is
 * what a pen-register order returns (`pcd audit --design plain`).
 *
 * Not a strawman: the index is a compact hash table shared with the other
 * designs (O(1) per number, 10^7 numbers in about 150 MB), and logging costs
 * one array push per number on the request path.
 *
 * When the log cannot be written (full disk, I/O error), the operator's
 * policy still holds: every answered lookup is logged. The rows are kept in
 * memory and retried (server/querylog-base.ts), so lookups go on being answered
 * while the buffer has room; once the log is failing and the buffer is full
 * (`logMaxPending` rows, default 100,000), lookups are refused with 503
 * `unavailable` and Retry-After rather than answered without a log row.
 */
import { setImmediate } from 'node:timers/promises';
import { maskToCapabilities } from '../../shared/capabilities.ts';
import { route, type ServerDesign } from '../../shared/design.ts';
import { isE164, normalizeNumber, type E164 } from '../../shared/e164.ts';
import { PcdError } from '../../shared/errors.ts';
import { PLAIN_LOG } from '../../shared/designs/plain.ts';
import { PATHS, PlainLookupRequest, type PlainLookupReply } from '../../shared/messages.ts';
import type { ServerDesignFactory } from '../context.ts';
import { designLog } from '../querylog.ts';

/** Numbers normalised between two yields to the event loop: ~32 x 55 µs, under 2 ms. */
const NORMALIZE_SLICE = 32;

/**
 * Normalises the numbers of a request; a bad one rejects the request, naming
 * its index. Clients send E.164 already (the client library normalises), so
 * a string in canonical E.164 syntax is taken as it is: full validation with
 * libphonenumber costs ~100-200 µs a number, more than the rest of a lookup,
 * and a syntactically fine number that no plan allows is simply not in the
 * directory (registration validates fully), so it answers SMS only.
 *
 * Other forms go through libphonenumber (~55 µs each) in slices of
 * {@link NORMALIZE_SLICE}, yielding to the event loop between slices: ten
 * 4,096-number requests of national-format numbers would otherwise hold the
 * loop for about two seconds, health checks and every other request behind
 * them.
 */
export async function normalizeAll(numbers: readonly string[]): Promise<E164[]> {
  const out = new Array<E164>(numbers.length);
  let slow = 0;
  for (let i = 0; i < numbers.length; i++) {
    const n = numbers[i]!;
    if (isE164(n)) {
      out[i] = n;
      continue;
    }
    if (++slow % NORMALIZE_SLICE === 0) await setImmediate();
    try {
      out[i] = normalizeNumber(n);
    } catch (e) {
      if (e instanceof PcdError) throw new PcdError(e.code, `numbers[${i}]: ${e.message}`);
      throw e;
    }
  }
  return out;
}

export const createPlainDesign: ServerDesignFactory = (ctx): ServerDesign => {
  const log = designLog(ctx, PLAIN_LOG);
  return {
    name: 'plain',
    routes: [
      route<PlainLookupRequest, PlainLookupReply>({
        method: 'POST',
        path: PATHS.plainLookup,
        auth: 'requester',
        request: PlainLookupRequest,
        cost: (b) => b.numbers.length,
        async handle({ body, requester, ip }) {
          log.requireRoom(body.numbers.length); // refused, not answered unlogged (module header)
          const numbers = await normalizeAll(body.numbers);
          const ts = ctx.now();
          const results = numbers.map((number) => {
            const mask = ctx.directory.mask(number);
            log.append([ts, requester.accountId, requester.email, ip, number, mask]);
            return { number, capabilities: maskToCapabilities(mask) };
          });
          return { body: { results } };
        },
      }),
    ],
    onDirectoryChange() {
      // The shared directory index is updated by the server core before this call.
    },
    async close() {
      await log.close();
    },
  };
};
