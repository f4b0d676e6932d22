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
import { afterAll, beforeAll, describe, inject } from 'vitest';
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
        const url = inject('pgUrl');
        const error = inject('pgError');
        const admin = async () => {
          if (!url) throw new Error(error || 'no Postgres for the store tests (test/pg-global-setup.ts)');
          const c = new pg.Client({ connectionString: url });
          await c.connect();
          return c;
        };
        const urlOf = (db: string) => {
          const u = new URL(url);
          u.pathname = `/${db}`;
          return u.toString();
        };
        let databases: string[] = [];
        beforeAll(() => {
          databases = [];
        });
        cleanups.push(async () => {
          if (!url) return;
          const c = await admin();
          try {
            for (const db of databases) await c.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
          } finally {
            await c.end();
          }
        });
        fn({
          kind,
          async open() {
            last = `pcd_test_${crypto.randomBytes(6).toString('hex')}`;
            const c = await admin();
            try {
              await c.query(`CREATE DATABASE ${last}`);
            } finally {
              await c.end();
            }
            databases.push(last);
            return track(await PgStore.open(urlOf(last)));
          },
          async reopen() {
            return track(await PgStore.open(urlOf(last)));
          },
          async outside(sql) {
            const c = new pg.Client({ connectionString: urlOf(last) });
            await c.connect();
            try {
              await c.query(sql);
            } finally {
              await c.end();
            }
          },
          admin,
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
