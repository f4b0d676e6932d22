/** Plain design, client side: the numbers themselves go to the server. */
import { lookupOnce, type ClientDesign, type ClientDesignFactory } from '../../shared/design.ts';
import { ErrorCode, PcdError } from '../../shared/errors.ts';
import { PATHS, PlainLookupReply } from '../../shared/messages.ts';

export const createPlainClient: ClientDesignFactory = (transport) => {
  const design: ClientDesign = {
    name: 'plain',
    async prepare(numbers) {
      return {
        request: { method: 'POST', path: PATHS.plainLookup, body: { numbers }, reply: PlainLookupReply },
        async finish(reply) {
          const results = (reply?.body as PlainLookupReply | undefined)?.results;
          if (!results) throw new PcdError(ErrorCode.MalformedReply, 'the lookup reply has no body');
          if (results.length !== numbers.length) {
            throw new PcdError(ErrorCode.MalformedReply, `asked ${numbers.length} numbers, the server answered ${results.length}`);
          }
          return numbers.map((number, i) => {
            const r = results[i]!;
            if (r.number !== number) throw new PcdError(ErrorCode.MalformedReply, `result ${i} is for ${r.number}, asked ${number}`);
            return { number, capabilities: r.capabilities };
          });
        },
      };
    },
    lookupBatch: (numbers, options) => lookupOnce(design, transport, numbers, options?.signal),
  };
  return design;
};
