/**
 * Everything the page takes from the client library and the protocol module,
 * in one place: the page runs the same client as the CLI and the tests
 * (client/index.ts, the `pcd/client` entry), imported from source and
 * bundled by web/build.ts.
 */
export {
  createClient,
  designOf,
  createTransport,
  normalizeNumber,
  PcdError,
  ErrorCode,
  isPcdError,
  loadBackend,
  DEFAULT_DESIGN,
  DESIGNS,
  CAPABILITIES,
  type Client,
  type E164,
  type LookupResult,
  type Transport,
  type TransportReply,
  type RequestOptions,
  type DesignName,
  type BackendName,
  type BlindedAuth,
  type BlindedClient,
} from '../../client/index.ts';
/** The page's own messages (shared/page.ts), checked by the same schemas the server's replies are built to. */
export { PATHS, PageClockReply, PageLoginReply, TraceReply, type TraceReversal, type TraceScope, type TraceTable } from '../../shared/messages.ts';
export { parseReply } from '../../shared/schema.ts';
