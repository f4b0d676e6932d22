/**
 * What each design keeps in the data folder besides its declared log tables
 * (shared/designs/<name>.ts `logs`): its own tables in the database, its
 * files and folders. Read by the audit's scan (audit/scan/pages.ts), which
 * says whose every page and file is; a table keyed by DesignName, so a new
 * design is a missing key until it says what it keeps.
 */
import { SPENT_TOKENS_TABLE } from '../shared/designs/blinded.ts';
import type { DesignName } from '../shared/designs/index.ts';
import { EPOCHS_DIR, HASHED_SNAPSHOT_FILE, KEY_FILE, OHTTP_KEY_FILE, TOKEN_KEY_FILE } from './files.ts';

/** A table, file or folder a design keeps, and what it is (as the scan reports it). */
export interface Kept {
  name: string;
  kind: string;
}

export interface DesignKeeps {
  /** Tables of the database besides the design's log tables. */
  tables: readonly Kept[];
  /** Files at the top of the data folder (a file written atomically also has its `.tmp` while written). */
  files: readonly Kept[];
  /** Folders at the top of the data folder, everything in them the design's. */
  folders: readonly Kept[];
}

export const DESIGN_KEEPS: { readonly [D in DesignName]: DesignKeeps } = {
  plain: { tables: [], files: [], folders: [] },
  hashed: {
    tables: [],
    // The hashed index as of the directory snapshot's version (server/designs/hashed-snapshot.ts): each registered
    // number's digits (found as digits-f64le) with a 48-bit SHA-256 prefix of it, as sensitive as the number.
    files: [{ name: HASHED_SNAPSHOT_FILE, kind: 'hashed index snapshot' }],
    folders: [],
  },
  blinded: {
    tables: [
      // The epochs: public keys and parameters (disk/epochs.ts).
      { name: 'epochs', kind: 'epochs' },
      // Spent Privacy Pass tokens (server/tokens/service.ts): a hash per token and its key id, no time, no account.
      { name: SPENT_TOKENS_TABLE, kind: 'spent tokens' },
    ],
    files: [
      // Each epoch's OPRF secret key (disk/keyfile.ts).
      { name: KEY_FILE, kind: 'oprf keys' },
      // The Privacy Pass issuer's RSA keys, one per size class and epoch (server/tokens/keys.ts).
      { name: TOKEN_KEY_FILE, kind: 'token keys' },
      // The OHTTP gateway's key (server/ohttp.ts): it opens the blinded design's relayed requests, and nothing else.
      { name: OHTTP_KEY_FILE, kind: 'ohttp gateway key' },
    ],
    folders: [{ name: EPOCHS_DIR, kind: 'bucket cache' }],
  },
};
