/**
 * `pcd publish-buckets`: an epoch's buckets as static files, for any static
 * host or CDN (docs/protocol.md, "Buckets from a static host";
 * docs/operations.md, "Publishing buckets to a CDN").
 *
 *   OUT/<epoch>/<bucket>.msgpack   one per bucket id, 0 .. 2^bucketBits - 1: the
 *                                  BucketReply the API would send (MessagePack),
 *                                  path and root included
 *   OUT/<epoch>/manifest.json      { epoch, version, root (base64), bucketBits,
 *                                  tagBytes, mode, buckets, format, publishedAt }
 *
 * Why files can be trusted from anywhere: each one carries its Merkle path,
 * and the client checks it against the root the server's config showed for
 * that (epoch, version) (shared/merkle.ts), never against the root inside
 * the file. A host that drops or changes a tag produces `bucket_unproven`.
 *
 * How it reads the folder: as the server does when it loads an epoch (the
 * epoch's cache file plus the directory journal, or a build), so the bytes
 * are the server's own. It takes the folder's lock (server/lock.ts) for it:
 * loading an epoch may write its cache file and retire expired epochs, which
 * must not happen under a running server; with a server on the folder it is
 * refused in one line naming it. (A read-only open could not replay the
 * journal without writing, and would race the server's cache writes.)
 *
 * The files go to OUT/.<epoch>.partial first, then replace OUT/<epoch> in one
 * rename, so a host syncing OUT never serves a half-written epoch.
 */
import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { bucketCount } from '../../shared/buckets.ts';
import { bytesToBase64 } from '../../shared/bytes.ts';
import { encodeBody } from '../../shared/codec.ts';
import { ErrorCode, PcdError } from '../../shared/errors.ts';
import { staticBucketFile, type BucketReply } from '../../shared/designs/blinded.ts';
import { DB_FILE, KEY_FILE } from '../../disk/files.ts';
import type { ServerContext, ServerOptions } from '../context.ts';
import { SqliteDirectoryStore } from '../directory-store.ts';
import { Directory } from '../directory.ts';
import { acquireFolderLock } from '../lock.ts';
import { Store } from '../store.ts';
import { Epochs } from './epochs.ts';

/** The manifest's name inside OUT/<epoch>/. */
export const MANIFEST_FILE = 'manifest.json';

/** OUT/<epoch>/manifest.json. */
export interface BucketManifest {
  epoch: number;
  /** The directory version the buckets reflect: the client accepts them while the server's config shows this version's root. */
  version: number;
  /** The Merkle root over the buckets at `version`, base64. */
  root: string;
  bucketBits: number;
  tagBytes: number;
  mode: string;
  buckets: number;
  format: 'msgpack';
  publishedAt: string;
}

export interface PublishResult {
  manifest: BucketManifest;
  /** OUT/<epoch>, absolute. */
  dir: string;
  /** Bytes of bucket files written. */
  bytes: number;
}

/** Refuses, in one line, a folder that is not a pcd data folder (before any lock file or database is created in it). */
function checkDataFolder(dataDir: string): void {
  if (!fs.existsSync(dataDir) || !fs.statSync(dataDir).isDirectory()) {
    throw new PcdError(ErrorCode.NotFound, `${dataDir} is not a pcd data folder: no such directory`);
  }
  if (!fs.existsSync(path.join(dataDir, DB_FILE))) {
    throw new PcdError(ErrorCode.NotFound, `${dataDir} is not a pcd data folder: it has no ${DB_FILE}`);
  }
  if (!fs.existsSync(path.join(dataDir, KEY_FILE))) {
    throw new PcdError(ErrorCode.UnknownEpoch, `${dataDir} has no blinded epoch yet (no ${KEY_FILE}): serve it with the blinded design, or run pcd rotate-key, first`);
  }
}

/**
 * Writes epoch `epoch`'s buckets from `options.dataDir` into `out` (layout
 * in the module header). Refused while another pcd process holds the folder.
 */
export async function publishBuckets(options: ServerOptions & { epoch: number; out: string }): Promise<PublishResult> {
  const { dataDir, epoch } = options;
  checkDataFolder(dataDir);
  const logger = options.logger ?? pino({ level: process.env.PCD_LOG_LEVEL ?? 'silent' });
  const lock = acquireFolderLock(dataDir, { role: 'publish-buckets', logger });
  try {
    const store = Store.open(dataDir);
    try {
      const known = store.db.prepare<[number], { destroyed_at: number | null }>('SELECT destroyed_at FROM epochs WHERE epoch = ?').get(epoch);
      if (!known) {
        const max = store.db.prepare<[], { m: number | null }>('SELECT max(epoch) AS m FROM epochs').get()?.m ?? null;
        throw new PcdError(ErrorCode.UnknownEpoch, `${dataDir} has no epoch ${epoch}${max === null ? ' (it has no blinded epoch yet)' : ` (its newest is ${max})`}`);
      }
      const { directory } = await Directory.open(store, dataDir, logger); // from the snapshot where it can
      const version = store.directoryVersion();
      const ctx: ServerContext = { store, directoryStore: new SqliteDirectoryStore(store), directory, directoryVersion: () => version, now: options.now ?? Date.now, options, logger };
      const epochs = await Epochs.open(ctx);
      try {
        await epochs.ready;
        const served = epochs.get(epoch); // epoch_retired when it was destroyed, or expired at this open
        const count = bucketCount(served.params.bucketBits);
        const partial = path.join(options.out, `.${epoch}.partial`);
        const dir = path.join(options.out, String(epoch));
        fs.rmSync(partial, { recursive: true, force: true });
        fs.mkdirSync(partial, { recursive: true });
        let bytes = 0;
        let root: Uint8Array | undefined;
        let at: number | undefined;
        for (let b = 0; b < count; b++) {
          // Content, path, root and version read in one step, as the bucket route does (server/designs/blinded.ts).
          const p = await epochs.provenBucket(epoch, b);
          root ??= p.root;
          at ??= p.version;
          const reply: BucketReply = { epoch, bucket: b, tags: p.tags, capabilities: p.capabilities, version: p.version, path: p.path, root: p.root };
          const body = encodeBody(reply, 'msgpack');
          fs.writeFileSync(path.join(partial, staticBucketFile(b)), body);
          bytes += body.length;
        }
        const manifest: BucketManifest = {
          epoch,
          version: at ?? served.version,
          root: bytesToBase64(root ?? new Uint8Array(0)),
          bucketBits: served.params.bucketBits,
          tagBytes: served.params.tagBytes,
          mode: served.params.mode,
          buckets: count,
          format: 'msgpack',
          publishedAt: new Date(ctx.now()).toISOString(),
        };
        fs.writeFileSync(path.join(partial, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n');
        // Files for a public host: world-readable (the data folder's 0600 does not apply; nothing here is secret).
        fs.chmodSync(partial, 0o755);
        const old = path.join(options.out, `.${epoch}.old`);
        fs.rmSync(old, { recursive: true, force: true });
        if (fs.existsSync(dir)) fs.renameSync(dir, old);
        fs.renameSync(partial, dir);
        fs.rmSync(old, { recursive: true, force: true });
        return { manifest, dir: path.resolve(dir), bytes };
      } finally {
        await epochs.close();
      }
    } finally {
      store.close();
    }
  } finally {
    lock.release();
  }
}
