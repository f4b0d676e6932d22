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
 *
 * Only a node that serves the blinded design can build its epochs, so a
 * node that does not (`builds: false`, `pcd serve --design plain`) leads
 * only while no node that does is there: it does not take the lock while a
 * candidate that builds has a session, and gives the lock up when one comes
 * (each candidate's session is named `pcd leader <node>`, with
 * {@link NO_BUILD_MARK} after it for one that does not build). Before, a
 * plain-only node that took the lead first left every blinded node waiting
 * for an epoch no one built.
 */
import pg from 'pg';

/** The advisory lock key of the leader (fixed, distinct from the store's transaction locks). */
export const LEADER_LOCK = 0x7063_6410;
export const DEFAULT_LEADER_POLL_MS = 1000;
/** Ends the session name of a candidate that does not serve the blinded design. */
export const NO_BUILD_MARK = ' (builds no epochs)';
const NAME_PREFIX = 'pcd leader ';

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
  options: { node: string; pollMs?: number; logger?: LeaderLogger; onChange?: (leading: boolean) => void; builds?: boolean } = { node: 'node' },
): Promise<Leadership> {
  const pollMs = options.pollMs ?? DEFAULT_LEADER_POLL_MS;
  const builds = options.builds ?? true;
  const name = `${NAME_PREFIX}${options.node}${builds ? '' : NO_BUILD_MARK}`;
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
        const c = new pg.Client({ connectionString: url, application_name: name });
        c.on('error', () => {}); // 'end' follows
        c.on('end', () => {
          if (client === c) drop('its session ended');
        });
        await c.connect();
        client = c;
      }
      // A node that builds no epochs stands back while a candidate that does is there.
      const yields = !builds && (await builderWaiting(client));
      if (leading && yields) {
        await client.query('SELECT pg_advisory_unlock($1)', [LEADER_LOCK]);
        set(false, 'gave the lead to a node that serves the blinded design');
      } else if (leading) {
        await client.query('SELECT 1'); // the session, and with it the lock, is still there
      } else if (!yields) {
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

/** Whether a candidate that builds epochs (a session named `pcd leader <node>` without the mark) is connected to this store's database. */
async function builderWaiting(client: pg.Client): Promise<boolean> {
  const { rows } = await client.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE datname = current_database() AND application_name LIKE 'pcd leader %' AND application_name NOT LIKE $1 AND pid <> pg_backend_pid()`,
    [`%${NO_BUILD_MARK}`],
  );
  return (rows[0]?.n ?? 0) > 0;
}

/** The name of the node that leads the store `client` is connected to (from its lock in that database and its session's application name), or undefined. */
export async function leaderOf(client: Pick<pg.Client, 'query'>): Promise<string | undefined> {
  const { rows } = await client.query<{ name: string }>(
    `SELECT a.application_name AS name FROM pg_locks l JOIN pg_stat_activity a USING (pid)
      WHERE l.locktype = 'advisory' AND l.classid = 0 AND l.objid = $1 AND l.granted
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
    [LEADER_LOCK],
  );
  const name = rows[0]?.name;
  if (!name?.startsWith(NAME_PREFIX)) return undefined;
  const node = name.slice(NAME_PREFIX.length);
  return node.endsWith(NO_BUILD_MARK) ? node.slice(0, -NO_BUILD_MARK.length) : node;
}
