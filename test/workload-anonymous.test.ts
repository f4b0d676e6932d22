/**
 * The workload's anonymous variants: evaluate paid with Privacy Pass tokens
 * (shared/tokens.ts), directly (`blinded-anonymous`) and through an OHTTP
 * relay (`blinded-anonymous+relay`), and the requester attack
 * (workload/requesters.ts) that links each request to the account whose
 * token paid for it.
 *
 * - Constructed operator data, no server: through a relay, accounts that
 *   look alike in issuance are guessed at chance; without one, each IP's
 *   daily series links it to its account; a sync's issuance names it even
 *   through a relay (what the per-day issuance counts give away).
 * - A tiny simulation against real servers, the real client library and a
 *   real relay: both variants run, the server sees every user's address or
 *   only the relay's, the attack finds the requesters by IP and not through
 *   the relay, no contact-graph edge is named at b = 0, and the padding is
 *   reported. One server process serves both runs in turn
 *   (harness/fork.ts reuseServerProcesses: the second run saves a process
 *   start), each on its own data folder and clock.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { workloadMarkdown, workloadVariants } from '../bench/workload.ts';
import { reuseServerProcesses } from '../harness/fork.ts';
import { DEFAULT_POPULATION, type PopulationOptions } from '../workload/population.ts';
import {
  APP_START_TOKENS,
  DAILY_QUANTUM,
  attackRequesters,
  predictedIssuance,
  scoreRequesters,
  wilson,
  type IssuanceRow,
  type SentRequest,
  type TokenEvalRow,
} from '../workload/requesters.ts';
import { runWorkload, targetsOf, type WorkloadRun } from '../workload/run.ts';
import { scorePadding } from '../workload/score.ts';
import { DAY_MS, DEFAULT_SCRIPT, type ScriptOptions } from '../workload/script.ts';

const DAY0 = Date.UTC(2026, 0, 5);
const RELAY = '127.0.0.1';
const minute = (d: number, m: number) => DAY0 + d * DAY_MS + m * 60_000;

/** The log rows of a list of requests (counted per minute, IP and class), as the server writes them. */
function logOf(sent: readonly SentRequest[]): TokenEvalRow[] {
  const rows = new Map<string, TokenEvalRow>();
  for (const r of sent) {
    const ts = Math.floor(r.t / 60_000) * 60_000;
    const k = `${ts} ${r.ip} ${r.sizeClass}`;
    const row = rows.get(k) ?? { ts, ip: r.ip, epoch: 1, sizeClass: r.sizeClass, count: 0 };
    row.count++;
    rows.set(k, row);
  }
  return [...rows.values()];
}

/**
 * Issuance as the library causes it (client/tokens.ts; workload/requesters.ts): every account's app started at the
 * window's start (8 of class 1), then the quantum each day whatever was spent (at most 32 held), 8 more on demand when
 * a lookup finds the pool empty, and a sync (class c > 1, a reinstall) its own token of c and the new app's 8.
 */
function issuanceOf(sent: readonly SentRequest[], accounts: number, days: number): IssuanceRow[] {
  const per = new Map<string, IssuanceRow>();
  const issue = (d: number, a: number, x: number) => {
    const ts = DAY0 + d * DAY_MS;
    const row = per.get(`${ts} ${a}`) ?? { ts, accountId: a, elements: 0 };
    row.elements += x;
    per.set(`${ts} ${a}`, row);
  };
  const held = new Map<number, number>();
  for (let a = 1; a <= accounts; a++) {
    issue(0, a, APP_START_TOKENS);
    held.set(a, APP_START_TOKENS);
  }
  const byDay = (d: number) => [...sent].filter((r) => Math.floor((r.t - DAY0) / DAY_MS) === d).sort((x, y) => x.t - y.t);
  for (let d = 0; d < days; d++) {
    for (let a = 1; a <= accounts; a++) {
      issue(d, a, DAILY_QUANTUM);
      held.set(a, Math.min(32, held.get(a)! + DAILY_QUANTUM));
    }
    for (const r of byDay(d)) {
      if (r.sizeClass > 1) {
        issue(d, r.accountId, predictedIssuance(r.sizeClass));
        held.set(r.accountId, APP_START_TOKENS);
        continue;
      }
      if (held.get(r.accountId)! === 0) {
        issue(d, r.accountId, APP_START_TOKENS);
        held.set(r.accountId, APP_START_TOKENS);
      }
      held.set(r.accountId, held.get(r.accountId)! - 1);
    }
  }
  return [...per.values()];
}

const ipsOf = (sent: readonly SentRequest[]) => {
  const m = new Map<string, Set<number>>();
  for (const r of sent) m.set(r.ip, (m.get(r.ip) ?? new Set()).add(r.accountId));
  return m;
};

describe('requester attack on constructed operator data', () => {
  it('Wilson intervals', () => {
    const [lo, hi] = wilson(5, 10);
    expect(lo).toBeCloseTo(0.2366, 3);
    expect(hi).toBeCloseTo(0.7634, 3);
    expect(wilson(0, 20)[0]).toBe(0);
    expect(wilson(20, 20)[1]).toBe(1);
    expect(wilson(0, 0)).toEqual([0, 1]);
  });

  it('through a relay, accounts alike in issuance are guessed at chance, and none is named', () => {
    // 20 accounts, each 3 single lookups a day for 2 days, at interleaved minutes, all from the relay's address.
    const sent: SentRequest[] = [];
    for (let a = 1; a <= 20; a++) for (let d = 0; d < 2; d++) for (let k = 0; k < 3; k++) sent.push({ t: minute(d, 60 + k * 200 + a * 3), ip: RELAY, sizeClass: 1, accountId: a });
    const attack = attackRequesters({ evalRows: logOf(sent), issuance: issuanceOf(sent, 20, 2), relayIps: new Set([RELAY]) });
    expect(attack.ipLinks).toEqual([]);
    const s = scoreRequesters(attack, sent, ipsOf(sent));
    expect(s.requests).toBe(sent.length);
    expect(s.chance).toBeCloseTo(1 / 20, 10);
    expect(s.named).toBe(0);
    expect(s.linkedShare).toBe(0);
    expect(s.precision).toBeNull();
    // A guess for every request: no better than chance, within its interval.
    expect(s.top1Ci[0]).toBeLessThanOrEqual(s.chance);
    expect(s.top1Ci[1]).toBeGreaterThanOrEqual(s.chance);
    expect(s.top1).toBeCloseTo(1 / 20, 10);
  });

  it('without a relay, an IP is linked to its account only where issuance sets the account apart (a pool run dry); light users are not', () => {
    // 12 accounts, each its own IP, over 3 days: accounts 1-3 heavy (their pools run dry on different days), the rest light.
    const heavy: Record<number, number[]> = { 1: [30, 2, 2], 2: [2, 30, 2], 3: [2, 2, 30] };
    const sent: SentRequest[] = [];
    for (let a = 1; a <= 12; a++) {
      const perDay = heavy[a] ?? [a % 4, (a * 7) % 5, Math.floor(a / 3) % 4];
      perDay.forEach((n, d) => {
        for (let k = 0; k < n; k++) sent.push({ t: minute(d, 100 + k * 37 + a), ip: `10.0.0.${a}`, sizeClass: 1, accountId: a });
      });
    }
    const issuance = issuanceOf(sent, 12, 3);
    // The light accounts' issuance is the same every day: the quantum, and the app's start on the first.
    for (const r of issuance.filter((x) => x.accountId > 3)) expect(r.elements).toBe(DAILY_QUANTUM + (r.ts === DAY0 ? APP_START_TOKENS : 0));
    const attack = attackRequesters({ evalRows: logOf(sent), issuance, relayIps: new Set() });
    const s = scoreRequesters(attack, sent, ipsOf(sent));
    expect(s.requests).toBe(sent.length);
    // The heavy IPs are named, each to its account; no light IP is named.
    const named = attack.ipLinks.filter((l) => l.named);
    expect(named.map((l) => l.ip).sort()).toEqual(['10.0.0.1', '10.0.0.2', '10.0.0.3']);
    expect(s.ips.namedCorrect).toBe(3);
    const lightSent = sent.filter((r) => r.accountId > 3);
    const lightRight = attack.events.filter((e, i) => Number(e.ip.split('.')[3]) > 3 && attack.guesses[i]!.named).length;
    expect(lightRight).toBe(0);
    expect(lightSent.length).toBeGreaterThan(0);
  });

  it('a contact sync is named by its issuance even through a relay', () => {
    const sent: SentRequest[] = [];
    for (let a = 1; a <= 10; a++) for (let k = 0; k < 4; k++) sent.push({ t: minute(0, 300 + k * 90 + a), ip: RELAY, sizeClass: 1, accountId: a });
    sent.push({ t: minute(0, 700), ip: RELAY, sizeClass: 64, accountId: 7 });
    const attack = attackRequesters({ evalRows: logOf(sent), issuance: issuanceOf(sent, 10, 1), relayIps: new Set([RELAY]) });
    const s = scoreRequesters(attack, sent, ipsOf(sent));
    expect(s.syncs).toEqual({ requests: 1, named: 1, namedCorrect: 1, top1Correct: 1 });
    expect(s.named).toBe(1);
    // The sync's issuance is charged to its account: the single lookups' guesses are no better than chance.
    expect((s.top1Correct - s.syncs.top1Correct) / (s.requests - 1)).toBeLessThanOrEqual(0.1 + 1e-9);
  });

  it('padding: elements sent over elements asked, single lookups and syncs apart', () => {
    const p = scorePadding([
      { t: 0, user: 0, ip: RELAY, elements: 1, asked: 1 },
      { t: 0, user: 0, ip: RELAY, elements: 64, asked: 40 },
      { t: 0, user: 1, ip: RELAY, elements: 4, asked: 3 },
    ]);
    expect(p).toEqual({ requests: 3, asked: 44, sent: 69, ratio: 69 / 44, single: 1, batch: 68 / 43 });
  });
});

describe('variants', () => {
  it('--designs takes the anonymous variants, each at every bucket bits value; the bench adds them beside blinded', () => {
    expect(targetsOf({ designs: ['plain', 'blinded-anonymous', 'blinded-anonymous+relay'], bucketBits: [0, 8] })).toEqual([
      { variant: 'plain' },
      { variant: 'blinded-anonymous', bucketBits: 0 },
      { variant: 'blinded-anonymous', bucketBits: 8 },
      { variant: 'blinded-anonymous+relay', bucketBits: 0 },
      { variant: 'blinded-anonymous+relay', bucketBits: 8 },
    ]);
    expect(workloadVariants({ designs: ['plain', 'hashed', 'blinded'] })).toEqual(['plain', 'hashed', 'blinded', 'blinded-anonymous', 'blinded-anonymous+relay']);
    expect(workloadVariants({ designs: ['plain', 'blinded'], anonymous: false })).toEqual(['plain', 'blinded']);
    expect(workloadVariants({ designs: ['blinded-anonymous'] })).toEqual(['blinded-anonymous']);
    expect(workloadVariants({ designs: ['plain'] })).toEqual(['plain']);
  });
});

const POPULATION: PopulationOptions = {
  ...DEFAULT_POPULATION,
  seed: 'workload-anonymous-test',
  blocks: 2,
  blockDigits: 3,
  people: 100,
  registeredShare: 0.25,
  degreeMedian: 10,
  communitySize: 15,
};
const SCRIPT: ScriptOptions = { ...DEFAULT_SCRIPT, seed: 'workload-anonymous-test', days: 2, conversationsPerDay: 3, reinstallsPerYear: 60 };

describe('anonymous variants against real servers and a relay, tiny', () => {
  let run: WorkloadRun;

  beforeAll(async () => {
    // One server process for both runs, stopped (its logs flushed) after each: the results do not depend on it.
    run = await reuseServerProcesses(() =>
      runWorkload({ population: POPULATION, script: SCRIPT, designs: ['blinded-anonymous', 'blinded-anonymous+relay'], bucketBits: [0], usersPerIp: 1 }),
    );
  }, 300_000);

  const row = (label: string) => run.results.find((r) => r.label === label)!;

  it('runs both variants without a failed lookup, every request paid with a token and counted in the log', () => {
    expect(run.results.map((r) => r.label)).toEqual(['blinded-anonymous b=0', 'blinded-anonymous+relay b=0']);
    for (const r of run.results) {
      expect(r.errors).toBe(0);
      expect(r.lookups).toBe(run.script.lookups + run.script.newContactLookups + run.script.syncedNumbers);
      const q = r.requesters!;
      expect(q.requests).toBeGreaterThan(0);
      expect(q.requests).toBe(q.sent);
      expect(r.pools!.spent).toBe(q.requests);
      expect(r.pools!.fillErrors).toBe(0);
      // Every app started at the window's start, and each fetched its quantum once a simulated day.
      expect(r.pools!.appStarts).toBeGreaterThanOrEqual(run.population.users);
      expect(r.pools!.quantumFetches).toBeGreaterThanOrEqual(run.population.users * (SCRIPT.days - 1));
      expect(r.remains.issuedElements).toBeGreaterThanOrEqual(r.padding!.sent);
      // Issuance rows are days of the simulated window (the server's injected clock).
      expect(r.remains.from).toBeGreaterThanOrEqual(SCRIPT.start - 60_000);
      expect(r.remains.until).toBeLessThan(SCRIPT.start + SCRIPT.days * DAY_MS);
      // Every user that looked something up got tokens (one may have had nothing to look up in two days).
      expect(r.remains.requesters).toBeLessThanOrEqual(run.population.users);
      expect(r.remains.requesters).toBeGreaterThanOrEqual(run.population.users - 2);
    }
    // The same script, the same requests: the variants differ only in the address the server saw.
    expect(row('blinded-anonymous b=0').padding).toEqual(row('blinded-anonymous+relay b=0').padding);
  });

  it('no contact-graph edge is named at b = 0', () => {
    for (const r of run.results) {
      expect(r.claimed).toBe(0);
      expect(r.recovered).toBe(0);
      expect(r.medianCandidates).toBe(run.population.planSize - 1);
    }
  });

  it('without a relay only an IP that issuance sets apart (a sync, a pool run dry) is named, and named right; through one the server sees one address, no IP is linked, and single lookups are guessed at chance', () => {
    const direct = row('blinded-anonymous b=0');
    const q = direct.requesters!;
    // Every active user's own address; every app issued its quantum, active or not.
    expect(direct.remains.ips).toBeLessThanOrEqual(direct.remains.requesters);
    expect(direct.remains.requesters).toBe(run.population.users);
    expect(q.ips.linked).toBe(direct.remains.ips);
    // What issuance sets apart: syncs (c + 8 on the day) and on-demand fetches (a pool run dry). Nothing else is named.
    expect(q.ips.named).toBeGreaterThan(0);
    expect(q.ips.named).toBeLessThanOrEqual(direct.remains.syncRequests + direct.pools!.fetchedOnDemand);
    expect(q.ips.namedCorrect).toBe(q.ips.named);
    expect(q.precision).toBe(1);

    const relayed = row('blinded-anonymous+relay b=0');
    const r = relayed.requesters!;
    expect(relayed.remains.ips).toBe(1);
    expect(r.ips.linked).toBe(0);
    // Only syncs (their issuance) can be named through the relay; single lookups are guessed, not named.
    expect(r.named).toBe(r.syncs.named);
    expect(r.syncs.namedCorrect).toBe(r.syncs.named);
    // The single lookups' guesses: no better than chance, within the interval.
    const lookups = r.requests - r.syncs.requests;
    expect(lookups).toBeGreaterThan(50);
    expect(wilson(r.top1Correct - r.syncs.top1Correct, lookups)[0]).toBeLessThanOrEqual(r.chance);
    expect(r.top1Ci[0]).toBeLessThanOrEqual(r.chance);
  });

  it('reports the padding: single lookups unpadded, syncs padded to their class, at most 1.5x overall here', () => {
    const p = row('blinded-anonymous b=0').padding!;
    expect(p.single).toBe(1);
    expect(p.batch).toBeGreaterThanOrEqual(1);
    expect(p.batch).toBeLessThan(2);
    expect(p.ratio).toBeGreaterThanOrEqual(1);
    expect(p.ratio).toBeLessThanOrEqual(1.5);
    const md = workloadMarkdown(run.results);
    expect(md).toContain('### Requester recovery: who sent each anonymous request');
    expect(md).toContain('### Padding to the size classes');
    expect(md).toMatch(/^\| blinded-anonymous\+relay \| 0 \|/m);
    // No bearer token, nor a Privacy Pass token, in what is reported (each is 43+ base64url characters).
    expect(JSON.stringify({ run, md })).not.toMatch(/[A-Za-z0-9_-]{43}/);
  });
});
