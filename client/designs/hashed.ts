/** Hashed design, client side: SHA-256 of each number goes to the server. */
import { lookupOnce, type ClientDesign, type ClientDesignFactory } from '../../shared/design.ts';
import { ErrorCode, PcdError } from '../../shared/errors.ts';
import { hashNumber } from '../../shared/designs/hashed.ts';
import { HashedLookupReply, PATHS } from '../../shared/messages.ts';

export const createHashedClient: ClientDesignFactory = (transport) => {
  const design: ClientDesign = {
    name: 'hashed',
    async prepare(numbers) {
      return {
        request: { method: 'POST', path: PATHS.hashedLookup, body: { hashes: numbers.map(hashNumber) }, reply: HashedLookupReply },
        async finish(reply) {
          const results = (reply?.body as HashedLookupReply | undefined)?.results;
          if (!results) throw new PcdError(ErrorCode.MalformedReply, 'the lookup reply has no body');
          if (results.length !== numbers.length) {
            throw new PcdError(ErrorCode.MalformedReply, `asked ${numbers.length} hashes, the server answered ${results.length}`);
          }
          return numbers.map((number, i) => ({ number, capabilities: results[i]!.capabilities }));
        },
      };
    },
    lookupBatch: (numbers, options) => lookupOnce(design, transport, numbers, options?.signal),
  };
  return design;
};
