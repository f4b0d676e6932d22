/**
 * `pcd/protocol`: the protocol module as a package entry (package.json
 * `exports`). Everything a client, a server or a checker in another code
 * base needs to speak pcd's protocol: the message shapes and their schemas,
 * the codec (MessagePack and JSON), the error codes, E.164 normalisation,
 * bucket ids and tags, the Merkle tree over an epoch's buckets, the
 * per-design declarations (paths, log tables and what each column holds),
 * and the RFC 9497 suite behind its backend
 * interface (`loadBackend('noble' | 'sodium')`; libsodium's WASM module is
 * loaded only when asked for).
 *
 * Runs in Node and in a browser bundle alike: nothing here imports a Node
 * module (shared/defaults.ts reads the environment only when called).
 */
export * from './messages.ts';
export * from './errors.ts';
export * from './e164.ts';
export * from './codec.ts';
export * from './schema.ts';
export * from './suite.ts';
export * from './backends.ts';
export * from './buckets.ts';
export * from './merkle.ts';
export * from './capabilities.ts';
export { HASH_BYTES, hashNumber, type HashBytes } from './designs/hashed.ts';
export * from './limits.ts';
export * from './paths.ts';
export * from './design.ts';
export * from './logs.ts';
export * from './bytes.ts';
export * from './tokens.ts';
export * from './bhttp.ts';
export * from './ohttp.ts';
export * from './merkle.ts';
export * from './defaults.ts';
export { DESIGN_PROTOCOLS, DESIGN_PATHS, LOG_TABLES, logTable } from './designs/index.ts';
export { nobleBackend } from './noble.ts';
export { elementProblem, checkElements } from './voprf.ts';
