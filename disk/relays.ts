/**
 * The OHTTP relays a server was configured with (`pcd serve --ohttp-relay`,
 * server/ohttp.ts), kept in the database's meta table so that an audit of the
 * folder knows which logged IPs stand for every client of a relay
 * (audit/designs/blinded.ts) without the order having to name them.
 *
 * `meta.ohttp_relays`: JSON `{ "<address>": { "first": ms, "last": ms } }`,
 * the first and the last start that named the address. Configuration, not a
 * log: it says nothing of any client.
 */
import type Database from 'better-sqlite3';

export const RELAYS_META_KEY = 'ohttp_relays';

export interface RelaySeen {
  first: number;
  last: number;
}

/** The recorded relays; an absent, unreadable or malformed value is none. */
export function recordedRelays(db: Database.Database): Record<string, RelaySeen> {
  const row = db.prepare<[string], { value: string }>('SELECT value FROM meta WHERE key = ?').get(RELAYS_META_KEY);
  if (!row) return {};
  try {
    const parsed = JSON.parse(row.value) as unknown;
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return {};
    const out: Record<string, RelaySeen> = {};
    for (const [ip, v] of Object.entries(parsed as Record<string, unknown>)) {
      const s = v as Partial<RelaySeen> | null;
      if (s && Number.isFinite(s.first) && Number.isFinite(s.last)) out[ip] = { first: s.first!, last: s.last! };
    }
    return out;
  } catch {
    return {};
  }
}

/** Adds `relays` (canonical addresses) as seen at `now`. */
export function recordRelays(db: Database.Database, relays: readonly string[], now: number): void {
  if (relays.length === 0) return;
  const seen = recordedRelays(db);
  for (const ip of relays) seen[ip] = { first: seen[ip]?.first ?? now, last: now };
  db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(RELAYS_META_KEY, JSON.stringify(seen));
}
