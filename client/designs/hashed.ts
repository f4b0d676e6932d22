/** Hashed design, client side: SHA-256 of each number goes to the server. */
import type { ClientDesignFactory } from '../../shared/design.ts';
import { ErrorCode, PcdError } from '../../shared/errors.ts';
import { hashNumber } from '../../shared/hashed.ts';
import { HashedLookupReply, PATHS } from '../../shared/messages.ts';

export const createHashedClient: ClientDesignFactory = (transport) => ({
  name: 'hashed',
  async lookupBatch(numbers, options) {
    const { body } = await transport.request({
      method: 'POST',
      path: PATHS.hashedLookup,
      body: { hashes: numbers.map(hashNumber) },
      reply: HashedLookupReply,
      signal: options?.signal,
    });
    const results = body!.results;
    if (results.length !== numbers.length) {
      throw new PcdError(ErrorCode.MalformedReply, `asked ${numbers.length} hashes, the server answered ${results.length}`);
    }
    return numbers.map((number, i) => ({ number, capabilities: results[i]!.capabilities }));
  },
});
