/**
 * `pcd/client`: the client library as a package entry (package.json
 * `exports`; built to dist/lib by `npm run build`, which `npm install` runs).
 *
 *   import { createClient } from 'pcd/client';
 *   const client = createClient({ baseUrl: 'http://127.0.0.1:8787', token, design: 'blinded', defaultRegion: 'US' });
 *   const [r] = await client.lookupMany(['(415) 555-0123']); // [{ number: '+14155550123', capabilities: [...] }]
 *
 * Runs in Node (20.19+) and in a browser bundle: the blinded design uses
 * libsodium's WASM build where it loads and the @noble/curves reference
 * otherwise (the same bytes either way); a pin file needs Node, in a
 * browser the pins are kept in memory. Errors are {@link PcdError}: match
 * on `code` (ErrorCode).
 */
export {
  createClient,
  createAdminClient,
  normalizeList,
  checkBatchSize,
  CLIENT_DESIGNS,
  designOf,
  type Client,
  type ClientDesigns,
  type ClientOptions,
  type LookupResult,
} from './client.ts';
export { createTransport, normalizeServerUrl, type TransportOptions } from './transport.ts';
export { createOhttpFetch, createRelayedFetch, relayFetchFor, OhttpKeyPins, type OhttpFetchOptions } from './ohttp.ts';
export { KeyPins, MAX_PINNED_EPOCHS, createBlindedClientWith, type BlindedClient, type BlindedClientOptions, type BlindedClientStats } from './designs/blinded.ts';
export { TokenPool, type TokenPoolOptions, type TokenPoolStats, type TokenView } from './tokens.ts';
export { DEFAULT_SIZE_CLASSES, sizeClassFor, type BlindedAuth } from '../shared/tokens.ts';
export { ErrorCode, PcdError, isPcdError, type ErrorBody } from '../shared/errors.ts';
export { normalizeNumber, isE164, regionOf, type E164 } from '../shared/e164.ts';
export { loadBackend } from '../shared/backends.ts';
export { DEFAULT_DESIGN, DESIGNS, type DesignName, type HealthReply, type CreateAccountRequest, type CreateAccountReply } from '../shared/messages.ts';
export { CAPABILITIES, type Capability } from '../shared/capabilities.ts';
export { BACKENDS, DEFAULT_BACKEND, type BackendName, type OprfBackend } from '../shared/suite.ts';
export type { Format } from '../shared/schema.ts';
export type { Transport, TransportReply, RequestOptions, ClientDesign, PreparedLookup, PinScope } from '../shared/design.ts';
