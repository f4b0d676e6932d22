/**
 * One leader among the nodes of a shared store: the holder of a Postgres
 * session-level advisory lock ({@link LEADER_LOCK}) on a connection of its
 * own. The leader runs what must run once for the whole store: the
 * retention purge today; building epochs and rotating keys when the
 * blinded design moves onto the shared store.
 *
 * Every node tries `pg_try_advisory_lock` every `pollMs`; the one that gets
 * it leads until its connection ends. A node that dies (kill -9 included)
 * loses its session, Postgres releases the lock at once, and another node
 * takes it at its next try, within `pollMs`. A leader checks its session
 * at the same pace: a connection lost (a restart of Postgres, a network
 * cut) ends its leadership before another node can take it, so two nodes
 * never both believe they lead for longer than one `pollMs`.
 */
import pg from 'pg';

/** The advisory lock key of the leader (fixed, distinct from the store's transaction locks). */
export const LEADER_LOCK = 0x7063_6410;
export const DEFAULT_LEADER_POLL_MS = 1000;

export interface Leadership {
  /** Whether this node leads now. */
  readonly isLeader: boolean;
  /** Tries (or checks) now rather than at the next tick. */
  check(): Promise<void>;
  /** Gives the lead up (closing the session) and stops trying. */
  close(): Promise<void>;
}

interface LeaderLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** Starts trying to lead; `onChange` hears every gain and loss. */
export async function startLeadership(
  url: string,
  options: { node: string; pollMs?: number; logger?: LeaderLogger; onChange?: (leading: boolean) => void } = { node: 'node' },
): Promise<Leadership> {
  const pollMs = options.pollMs ?? DEFAULT_LEADER_POLL_MS;
  let client: pg.Client | undefined;
  let leading = false;
  let closed = false;
  let running: Promise<void> | undefined;

  const set = (now: boolean, why: string): void => {
    if (now === leading) return;
    leading = now;
    options.logger?.[now ? 'info' : 'warn']({ node: options.node, why }, now ? 'this node leads the shared store' : 'this node no longer leads the shared store');
    options.onChange?.(now);
  };
  const drop = (why: string): void => {
    const c = client;
    client = undefined;
    set(false, why);
    void c?.end().catch(() => {});
  };

  const step = async (): Promise<void> => {
    if (closed) return;
    try {
      if (!client) {
        const c = new pg.Client({ connectionString: url, application_name: `pcd leader ${options.node}` });
        c.on('error', () => {}); // 'end' follows
        c.on('end', () => {
          if (client === c) drop('its session ended');
        });
        await c.connect();
        client = c;
      }
      if (leading) {
        await client.query('SELECT 1'); // the session, and with it the lock, is still there
      } else {
        const { rows } = await client.query<{ got: boolean }>('SELECT pg_try_advisory_lock($1) AS got', [LEADER_LOCK]);
        if (rows[0]?.got) set(true, 'took the lock');
      }
    } catch (e) {
      drop(`the store could not be reached: ${(e as Error).message}`);
    }
  };
  const check = (): Promise<void> => (running ??= step().finally(() => (running = undefined)));

  await check();
  const timer = setInterval(() => void check(), pollMs);
  timer.unref();
  return {
    get isLeader() {
      return leading;
    },
    check,
    async close() {
      closed = true;
      clearInterval(timer);
      await running;
      const c = client;
      client = undefined;
      set(false, 'closing');
      await c?.end().catch(() => {});
    },
  };
}

/** The name of the node that leads the store at `url` now (from its lock and its session's application name), or undefined. */
export async function leaderOf(client: Pick<pg.Client, 'query'>): Promise<string | undefined> {
  const { rows } = await client.query<{ name: string }>(
    `SELECT a.application_name AS name FROM pg_locks l JOIN pg_stat_activity a USING (pid)
      WHERE l.locktype = 'advisory' AND l.classid = 0 AND l.objid = $1 AND l.granted`,
    [LEADER_LOCK],
  );
  const name = rows[0]?.name;
  return name?.startsWith('pcd leader ') ? name.slice('pcd leader '.length) : undefined;
}
