/**
 * `describeStores`: a suite run once over each store behind
 * server/directory-store.ts, as `describeDesigns` runs one over each
 * design: SQLite in a fresh data folder, and Postgres in a fresh database
 * of the run's embedded server (test/pg-global-setup.ts).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, inject } from 'vitest';
import { SqliteDirectoryStore, type DirectoryStore, type StoreKind } from '../server/directory-store.ts';
import { PgStore } from '../server/pg/store.ts';
import { Store } from '../server/store.ts';

export interface StoreFixture {
  kind: StoreKind;
  /** A store over a fresh, empty database or folder (a new one per call). */
  open(): Promise<DirectoryStore>;
  /** The same database or folder as the last open, opened again (a restart). */
  reopen(): Promise<DirectoryStore>;
  /** Runs SQL as the operator would from outside pcd (psql, sqlite3) on the last database. */
  outside(sql: string): Promise<void>;
  /** Postgres only: an admin connection to the server (to end sessions, make a database read-only). */
  admin?: () => Promise<pg.Client>;
  /** Postgres only: the name of the last database. */
  database?: () => string;
}

/** A connection to the run's Postgres (test/pg-global-setup.ts), as its owner; fails with the reason when there is none. */
export async function pgAdmin(): Promise<pg.Client> {
  const url = inject('pgUrl');
  if (!url) throw new Error(inject('pgError') || 'no Postgres for the store tests (test/pg-global-setup.ts)');
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  return c;
}

/** `url` (the run's Postgres) naming another database. */
export function databaseUrl(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

/** A fresh, empty database on the run's Postgres: its name, its URL, and drop() (sessions ended first). */
export async function freshDatabase(prefix: string): Promise<{ name: string; url: string; drop(): Promise<void> }> {
  const name = `${prefix}_${crypto.randomBytes(6).toString('hex')}`;
  const c = await pgAdmin();
  try {
    await c.query(`CREATE DATABASE ${name}`);
  } finally {
    await c.end();
  }
  return {
    name,
    url: databaseUrl(inject('pgUrl'), name),
    async drop() {
      const d = await pgAdmin();
      try {
        await d.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await d.end();
      }
    },
  };
}

/** `fn` once per store; every store opened through the fixture is closed (and its database dropped) after the suite. */
export function describeStores(name: string, fn: (f: StoreFixture) => void): void {
  for (const kind of ['sqlite', 'postgres'] as const) {
    describe(`${name} [${kind}]`, () => {
      const opened: DirectoryStore[] = [];
      const cleanups: (() => Promise<void>)[] = [];
      let last = '';
      const track = (s: DirectoryStore) => (opened.push(s), s);

      if (kind === 'sqlite') {
        const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pcd-store-'));
        cleanups.push(async () => fs.rmSync(root, { recursive: true, force: true }));
        let n = 0;
        fn({
          kind,
          async open() {
            last = path.join(root, `d${n++}`);
            return track(new SqliteDirectoryStore(Store.open(last)));
          },
          async reopen() {
            return track(new SqliteDirectoryStore(Store.open(last)));
          },
          async outside(sql) {
            const s = Store.open(last);
            try {
              s.db.exec(sql);
            } finally {
              s.close();
            }
          },
        });
      } else {
        const dropped: (() => Promise<void>)[] = [];
        cleanups.push(async () => {
          for (const drop of dropped) await drop();
        });
        fn({
          kind,
          async open() {
            const db = await freshDatabase('pcd_test');
            last = db.name;
            dropped.push(db.drop);
            return track(await PgStore.open(db.url));
          },
          async reopen() {
            return track(await PgStore.open(databaseUrl(inject('pgUrl'), last)));
          },
          async outside(sql) {
            const c = new pg.Client({ connectionString: databaseUrl(inject('pgUrl'), last) });
            await c.connect();
            try {
              await c.query(sql);
            } finally {
              await c.end();
            }
          },
          admin: pgAdmin,
          database: () => last,
        });
      }

      afterAll(async () => {
        for (const s of opened) await s.close().catch(() => {});
        for (const c of cleanups) await c();
      });
    });
  }
}
