/** Plain design, client side: the numbers themselves go to the server. */
import type { ClientDesignFactory } from '../../shared/design.ts';
import { ErrorCode, PcdError } from '../../shared/errors.ts';
import { PATHS, PlainLookupReply } from '../../shared/messages.ts';

export const createPlainClient: ClientDesignFactory = (transport) => ({
  name: 'plain',
  async lookupBatch(numbers, options) {
    const { body } = await transport.request({
      method: 'POST',
      path: PATHS.plainLookup,
      body: { numbers },
      reply: PlainLookupReply,
      signal: options?.signal,
    });
    const results = body!.results;
    if (results.length !== numbers.length) {
      throw new PcdError(ErrorCode.MalformedReply, `asked ${numbers.length} numbers, the server answered ${results.length}`);
    }
    return numbers.map((number, i) => {
      const r = results[i]!;
      if (r.number !== number) throw new PcdError(ErrorCode.MalformedReply, `result ${i} is for ${r.number}, asked ${number}`);
      return { number, capabilities: r.capabilities };
    });
  },
});
