/**
 * Everything the page takes from the client library, in one place: the page
 * runs the same client as the CLI and the tests (client/index.ts, the
 * `pcd/client` entry), imported from source and bundled by web/build.ts.
 */
export {
  createClient,
  createTransport,
  normalizeNumber,
  PcdError,
  ErrorCode,
  isPcdError,
  loadBackend,
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
} from '../../client/index.ts';
