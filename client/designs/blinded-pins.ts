/**
 * Key pinning for the blinded client (client/designs/blinded.ts says what
 * is pinned and why): the epoch public keys each server published, per
 * server base URL, in memory and optionally in a JSON pin file; beside
 * them, in memory only, the bucket roots each server showed per (epoch,
 * directory version).
 *
 * The pin file is read and written through node:fs taken at run time, so a
 * browser bundle of the client holds no Node import (see nodeFiles).
 */
import type { PinnedEpoch, PinScope } from '../../shared/design.ts';
import { ErrorCode, PcdError } from '../../shared/errors.ts';
import { bytesEqual, bytesToBase64 } from '../../shared/bytes.ts';

/** Pins kept per server; the lowest epochs go first beyond this. */
export const MAX_PINNED_EPOCHS = 256;
/** Bucket roots kept per server and epoch, one per directory version seen; the lowest versions go first beyond this. */
export const MAX_ROOTS_PER_EPOCH = 64;

type PinTable = Map<string, Map<number, string>>;
/** Roots seen: server, then epoch, then directory version. */
type RootTable = Map<string, Map<number, Map<number, Uint8Array>>>;

/**
 * Pinned epoch public keys per server base URL, in memory and optionally in
 * a JSON file (`{ version: 1, servers: { url: { epoch: base64 key } } }`,
 * written atomically with mode 0600). A file that exists but cannot be read
 * as a pin file is an error: silently starting over would drop every pin.
 * Saving merges with what another process may have written meanwhile.
 *
 * Beside the keys, in memory only, the bucket roots each server showed per
 * (epoch, directory version): one version has one root, so another root
 * for a pair seen before is `view_changed`.
 */
export class KeyPins {
  private table: PinTable | undefined;
  private readonly roots: RootTable = new Map();

  constructor(readonly file?: string) {}

  /** The pins of one server, by its normalised base URL. */
  scope(server: string): PinScope {
    return {
      check: (epochs) => this.check(server, epochs),
      root: (epoch, version) => this.root(server, epoch, version),
      keepRoot: (epoch, version, root) => this.keepRoot(server, epoch, version, root),
    };
  }

  /** The pinned key of `epoch` at `server`, base64, or undefined. */
  pinned(server: string, epoch: number): string | undefined {
    return this.load().get(server)?.get(epoch);
  }

  /** The root `server` showed for `epoch` at directory `version`, or undefined. */
  root(server: string, epoch: number, version: number): Uint8Array | undefined {
    return this.roots.get(server)?.get(epoch)?.get(version);
  }

  check(server: string, epochs: readonly PinnedEpoch[]): void {
    const table = this.load();
    const known = table.get(server);
    const fresh: [number, string][] = [];
    for (const e of epochs) {
      const key = bytesToBase64(e.publicKey);
      const pin = known?.get(e.epoch);
      if (pin === undefined) fresh.push([e.epoch, key]);
      else if (pin !== key) throw this.changed(server, e.epoch);
    }
    // One (epoch, version), one root: checked before anything of this config is kept.
    for (const e of epochs) {
      const seen = this.root(server, e.epoch, e.version);
      if (seen !== undefined && !bytesEqual(seen, e.root)) throw this.viewChanged(server, e.epoch, e.version);
    }
    if (fresh.length > 0) this.pinKeys(server, fresh);
    this.keepRoots(server, epochs);
  }

  /** Keeps one root shown with a bucket (view_changed when another root was seen for the pair). */
  keepRoot(server: string, epoch: number, version: number, root: Uint8Array): void {
    const seen = this.root(server, epoch, version);
    if (seen !== undefined) {
      if (!bytesEqual(seen, root)) throw this.viewChanged(server, epoch, version);
      return;
    }
    this.keepRoots(server, [{ epoch, version, root }]);
  }

  private keepRoots(server: string, epochs: readonly { epoch: number; version: number; root: Uint8Array }[]): void {
    const mine = this.roots.get(server) ?? new Map<number, Map<number, Uint8Array>>();
    for (const e of epochs) {
      const versions = mine.get(e.epoch) ?? new Map<number, Uint8Array>();
      versions.set(e.version, e.root.slice());
      if (versions.size > MAX_ROOTS_PER_EPOCH) {
        for (const v of [...versions.keys()].sort((a, b) => a - b).slice(0, versions.size - MAX_ROOTS_PER_EPOCH)) versions.delete(v);
      }
      mine.set(e.epoch, versions);
    }
    if (mine.size > MAX_PINNED_EPOCHS) {
      for (const epoch of [...mine.keys()].sort((a, b) => a - b).slice(0, mine.size - MAX_PINNED_EPOCHS)) mine.delete(epoch);
    }
    this.roots.set(server, mine);
  }

  private pinKeys(server: string, fresh: readonly [number, string][]): void {
    let table = this.load();
    if (this.file !== undefined) {
      // Another process may have pinned meanwhile: merge with the file as it is now.
      const now = readPinFile(this.file);
      for (const [epoch, key] of fresh) {
        const other = now.get(server)?.get(epoch);
        if (other !== undefined && other !== key) throw this.changed(server, epoch);
      }
      table = this.table = now;
    }
    const mine = table.get(server) ?? new Map<number, string>();
    for (const [epoch, key] of fresh) mine.set(epoch, key);
    if (mine.size > MAX_PINNED_EPOCHS) {
      for (const epoch of [...mine.keys()].sort((a, b) => a - b).slice(0, mine.size - MAX_PINNED_EPOCHS)) mine.delete(epoch);
    }
    table.set(server, mine);
    if (this.file !== undefined) writePinFile(this.file, table);
  }

  private load(): PinTable {
    return (this.table ??= this.file === undefined ? new Map() : readPinFile(this.file));
  }

  private viewChanged(server: string, epoch: number, version: number): PcdError {
    return new PcdError(
      ErrorCode.ViewChanged,
      `${server} now shows a different bucket root for epoch ${epoch} at directory version ${version} than it showed this client before: ` +
        `no answer was produced (a server showing this client a directory of its own looks like this)`,
    );
  }

  private changed(server: string, epoch: number): PcdError {
    const where = this.file === undefined ? 'earlier by this client' : `in ${this.file}`;
    const reset = this.file === undefined ? '' : `; if its operator confirms its data folder was reset, remove the pins of ${server} from ${this.file}`;
    return new PcdError(
      ErrorCode.KeyChanged,
      `${server} now publishes a different public key for epoch ${epoch} than the one pinned ${where}: no answer was produced ` +
        `(a server answering this client with a key of its own looks like this${reset})`,
    );
  }
}

/**
 * node:fs and node:path, taken at run time (process.getBuiltinModule, Node
 * 20.16+) rather than imported, so that a browser bundle of the client holds
 * no Node import: there, pins live in memory and a pin file is refused.
 */
function nodeFiles(): { fs: typeof import('node:fs'); path: typeof import('node:path'); pid: number } {
  const proc = (globalThis as { process?: { pid: number; getBuiltinModule?: (id: string) => unknown } }).process;
  if (!proc?.getBuiltinModule) {
    throw new PcdError(ErrorCode.InvalidField, 'a pin file needs Node.js (20.16 or later); elsewhere the pins are kept in memory: leave pinFile unset');
  }
  return { fs: proc.getBuiltinModule('node:fs') as typeof import('node:fs'), path: proc.getBuiltinModule('node:path') as typeof import('node:path'), pid: proc.pid };
}

function readPinFile(file: string): PinTable {
  const { fs } = nodeFiles();
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
    throw new PcdError(ErrorCode.InvalidField, `cannot read the pin file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const bad = (why: string): never => {
    throw new PcdError(ErrorCode.InvalidField, `${file} is not a pcd pin file (${why}): fix or remove it`);
  };
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return bad('not JSON');
  }
  const d = doc as { version?: unknown; servers?: unknown };
  if (typeof doc !== 'object' || doc === null || d.version !== 1) bad('expected version 1');
  if (typeof d.servers !== 'object' || d.servers === null || Array.isArray(d.servers)) bad('no servers object');
  const table: PinTable = new Map();
  for (const [server, epochs] of Object.entries(d.servers as Record<string, unknown>)) {
    if (typeof epochs !== 'object' || epochs === null || Array.isArray(epochs)) bad(`the pins of ${server.slice(0, 80)} are not an object`);
    const m = new Map<number, string>();
    for (const [epoch, key] of Object.entries(epochs as Record<string, unknown>)) {
      if (!/^[1-9]\d{0,9}$/.test(epoch)) bad(`epoch '${epoch.slice(0, 20)}' is not a positive integer`);
      if (typeof key !== 'string' || !/^[A-Za-z0-9+/]{43}=$/.test(key)) bad(`the key of epoch ${epoch} is not 32 bytes of base64`);
      m.set(Number(epoch), key as string);
    }
    table.set(server, m);
  }
  return table;
}

function writePinFile(file: string, table: PinTable): void {
  const servers: Record<string, Record<string, string>> = {};
  for (const [server, epochs] of table) servers[server] = Object.fromEntries([...epochs].sort((a, b) => a[0] - b[0]).map(([e, k]) => [String(e), k]));
  const { fs, path, pid } = nodeFiles();
  const tmp = `${file}.${pid}.tmp`;
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    fs.writeFileSync(tmp, JSON.stringify({ version: 1, servers }, null, 2) + '\n', { mode: 0o600 });
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw new PcdError(ErrorCode.InvalidField, `cannot write the pin file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}
