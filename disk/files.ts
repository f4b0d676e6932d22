/**
 * The data folder's format (written by server/, read by audit/): the file
 * names. The schema of the database is disk/sql.ts, the key file's format
 * disk/keyfile.ts, the epochs table's rows disk/epochs.ts.
 */
/** The SQLite database: accounts, numbers, every design's query log, epoch metadata. */
export const DB_FILE = 'pcd.sqlite';
/** The OPRF secret keys, one per live epoch: apart from the database (0600). */
export const KEY_FILE = 'oprf-keys.json';
/** The admin token, when PCD_ADMIN_TOKEN does not give it: generated on first use (0600). */
export const ADMIN_TOKEN_FILE = 'admin-token';
/** The Privacy Pass issuer's RSA keys, one per size class and live epoch (server/tokens/keys.ts): apart from the database (0600). */
export const TOKEN_KEY_FILE = 'token-keys.json';
/** The OHTTP gateway's X25519 private key(s) (server/ohttp.ts): generated on first start (0600). */
export const OHTTP_KEY_FILE = 'ohttp-key.json';
/**
 * A query log's rows that could not be written before a shutdown (a full
 * disk), kept for the next start, which writes them to the table and removes
 * the file (server/querylog.ts): `log-spill-<table>.json`, 0600.
 */
export const LOG_SPILL_PREFIX = 'log-spill-';
export function logSpillFile(table: string): string {
  return `${LOG_SPILL_PREFIX}${table}.json`;
}
/**
 * The in-memory directory (registered numbers and their capability masks,
 * nothing else) as of a directory version, so that a restart replays the
 * journal instead of scanning the numbers table (server/directory-snapshot.ts; 0600).
 */
export const DIRECTORY_SNAPSHOT_FILE = 'directory.snapshot';
/**
 * The hashed design's index (a 48-bit SHA-256 prefix of each registered
 * number, with the number's digits) as of the directory snapshot's version,
 * so that a restart need not hash every number (server/designs/hashed-snapshot.ts; 0600).
 */
export const HASHED_SNAPSHOT_FILE = 'hashed.snapshot';
/**
 * With a shared store: this node's name in the shared journal holds
 * (server/pg/store.ts), made once (`<host>-<random>`) and kept, so that a
 * restarted node takes up its own holds instead of leaving them to expire.
 */
export const NODE_NAME_FILE = 'node-name';
/** The folder inside the data folder that holds `pcd seed`'s synthetic contact lists and requester tokens (`pcd audit --scan` skips it: a phone's data, not the server's). */
export const CONTACTS_DIR = 'contacts';
/** The blinded design's bucket caches, one file per epoch (`epochs/<n>.bin`, server/blinded/table.ts). */
export const EPOCHS_DIR = 'epochs';
