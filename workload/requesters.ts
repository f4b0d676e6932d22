/**
 * Requester recovery: the operator's best attack linking each anonymous
 * evaluate request (a Privacy Pass token spent, shared/tokens.ts) to the
 * account whose token paid for it, from nothing but what the server
 * persisted, then scored against the simulation's truth.
 *
 * What the operator holds (shared/designs/blinded.ts):
 * - `blinded_token_eval_log`: per minute, IP, epoch and size class, how
 *   many requests; no account, no element count. Through an OHTTP relay
 *   the IP is the relay's (server/ohttp.ts), and the operator knows which
 *   addresses are its relays (`ServerOptions.ohttpRelays`).
 * - `token_issuance_log`: per day and account, the elements' worth of
 *   tokens issued; no class, no time of day.
 * - what every operator may read: the client library (client/tokens.ts).
 *   Its pool's issuance does not follow its use: every install fetches
 *   its quantum (8 of class 1) once a day whatever it spent, and 8 more
 *   when the app starts (every user's at the window's start, and at a
 *   reinstall). A lookup causes issuance only when it finds its class
 *   empty: 8 of class 1 on demand (a user who spent more than the pool
 *   held), or, for a class c > 1 (a contact sync, what a reinstall
 *   sends), one token of c, on top of the reinstall's 8: c + 8 elements
 *   that day. That is the issuance model below
 *   ({@link predictedIssuance}, {@link DAILY_QUANTUM}); no weight is
 *   fitted, least of all from the truth.
 * The attack, per evaluate request (each counted event of the log):
 * 1. By IP (no relay). The requests of one IP make a daily series of
 *    predicted issuance; each account has its daily series of issuance
 *    above the baseline every install has (the quantum each day, the
 *    app's start on the first day). The cost of (IP, account) is the L1
 *    distance of the two series. A link is *named* when the IP and the
 *    account are each the other's unique best match (no tie) among those
 *    not named yet, round after round; the IPs left are linked greedily
 *    by increasing cost, one account per IP, as top guesses.
 * 2. By day and size class (a relay's requests, or an IP left unlinked).
 *    The day's issuance above the baseline, less what the IP-linked
 *    requests explain, is each account's budget. Requests of the day go
 *    largest class first: a class c > 1 needs c + 8 of budget (a sync on
 *    a reinstall); the guess is the account with the most budget among
 *    those that can pay, named when exactly one can, and its budget is
 *    charged. A class-1 request's guess is the account with the most
 *    budget left (an on-demand fetch: the pool ran dry, a heavy user;
 *    every class-1 request of a day looks the same, so this is the best
 *    single guess), named only when one account has any; with no budget
 *    anywhere, the day's largest issuer.
 * The reference `volume` guess uses nothing of the request but its day:
 * the account issued the most that day. What it scores is what issuance
 * counts alone give away.
 *
 * Scores (against the truth: which user sent each request, when, from
 * which address as the server saw it): requests are matched to the log's
 * events by (minute, IP, size class), within which events are
 * interchangeable, so a group scores the multiset overlap of guesses and
 * true accounts. `named`: share linked and precision; `top1`: a guess for
 * every request. Chance is 1 / (accounts that sent a request that day),
 * averaged over requests; precisions carry a Wilson 95 % interval.
 */
import { DEFAULT_AHEAD_SINGLE, DEFAULT_HELD_PERIODS, DEFAULT_QUANTUM } from '../client/tokens.ts';
import { DAY_MS } from './script.ts';

/** One row of blinded_token_eval_log: `count` requests in the minute starting at `ts`. */
export interface TokenEvalRow {
  ts: number;
  ip: string;
  epoch: number;
  sizeClass: number;
  count: number;
}

/** One row of token_issuance_log: `elements` worth of tokens issued to `accountId` on the day starting at `ts`. */
export interface IssuanceRow {
  ts: number;
  accountId: number;
  elements: number;
}

/** One evaluate request as the operator counts it (a log row expanded by its count). */
export interface RequestEvent {
  /** The start of its minute. */
  ts: number;
  ip: string;
  epoch: number;
  sizeClass: number;
}

export interface RequesterGuess {
  /** The top guess; null when no account had any issuance that day and none is linked to the IP. */
  accountId: number | null;
  /** Named: the attack claims the link (a unique match); otherwise only its best guess. */
  named: boolean;
  via: 'ip' | 'issuance' | 'none';
}

export interface IpLink {
  ip: string;
  accountId: number;
  named: boolean;
  /** L1 distance of the two daily series, in elements. */
  cost: number;
}

export interface RequesterAttack {
  events: RequestEvent[];
  /** Per event (same order). */
  guesses: RequesterGuess[];
  /** Per event: the account issued the most elements that day (the volume-only reference). */
  volume: (number | null)[];
  ipLinks: IpLink[];
  /** Accounts with any issuance. */
  accounts: number;
}

/** Tokens the library's pool fetches when an app starts (client/tokens.ts fill: 8 of class 1). */
export const APP_START_TOKENS = DEFAULT_AHEAD_SINGLE;
/** Elements every install's pool fetches each day, used or not (client/tokens.ts DEFAULT_QUANTUM). */
export const DAILY_QUANTUM = Object.entries(DEFAULT_QUANTUM).reduce((n, [c, k]) => n + Number(c) * k, 0);

/** Elements of issuance one request of `sizeClass` causes, per the library (module header): none for class 1 while the pool holds one. */
export function predictedIssuance(sizeClass: number): number {
  return sizeClass === 1 ? 0 : sizeClass + APP_START_TOKENS;
}

const dayOf = (ts: number) => Math.floor(ts / DAY_MS);

/** Class-1 tokens a pool holds at most (client/tokens.ts: 4 periods' quantum). */
export const POOL_MAX_HELD = DEFAULT_HELD_PERIODS * (DEFAULT_QUANTUM[1] ?? 0);

/**
 * The issuance above the baseline that one client's requests (oldest first) cause per day, by the library's rule
 * (module header): a pool that starts with the app's 8, gains the quantum at each day's start (at most
 * POOL_MAX_HELD held), fetches 8 on demand when a class-1 request finds it empty, and restarts at 8 with a sync
 * (a reinstall), which costs its own token of c besides. When in the day the quantum came is not logged; the
 * start of the day is the guess that assumes the fewest on-demand fetches.
 */
export function replayPool(list: readonly RequestEvent[], days: readonly number[], dayIndex: ReadonlyMap<number, number>): Float64Array {
  const out = new Float64Array(days.length);
  let held = APP_START_TOKENS;
  let day = -1;
  for (const e of list) {
    const i = dayIndex.get(dayOf(e.ts))!;
    while (day < i) {
      day++;
      held = Math.min(POOL_MAX_HELD, held + DAILY_QUANTUM); // the day's quantum
    }
    if (e.sizeClass > 1) {
      out[i]! += predictedIssuance(e.sizeClass);
      held = APP_START_TOKENS;
      continue;
    }
    if (held === 0) {
      out[i]! += APP_START_TOKENS;
      held = APP_START_TOKENS;
    }
    held--;
  }
  return out;
}

/** Every counted request of the log, oldest first. */
export function expandEvents(rows: readonly TokenEvalRow[]): RequestEvent[] {
  const out: RequestEvent[] = [];
  for (const r of [...rows].sort((a, b) => a.ts - b.ts || a.ip.localeCompare(b.ip) || b.sizeClass - a.sizeClass)) {
    for (let i = 0; i < r.count; i++) out.push({ ts: r.ts, ip: r.ip, epoch: r.epoch, sizeClass: r.sizeClass });
  }
  return out;
}

/** FNV-1a of a string, 32 bits: an order for ties that follows neither list's order. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** The key of the largest value of `m` (ties: the smallest key); undefined when empty or every value is below `min` (default: above 0). */
function argmax(m: ReadonlyMap<number, number>, min = Number.MIN_VALUE): number | undefined {
  let best: number | undefined;
  let bv = -Infinity;
  for (const [k, v] of m) {
    if (v < min) continue;
    if (v > bv || (v === bv && best !== undefined && k < best)) {
      best = k;
      bv = v;
    }
  }
  return best;
}

export function attackRequesters(input: { evalRows: readonly TokenEvalRow[]; issuance: readonly IssuanceRow[]; relayIps: ReadonlySet<string> }): RequesterAttack {
  const events = expandEvents(input.evalRows);
  const { issued, accounts } = issuanceByDay(input.issuance);
  const days = [...new Set([...issued.keys(), ...events.map((e) => dayOf(e.ts))])].sort((a, b) => a - b);
  const dayIndex = new Map(days.map((d, i) => [d, i]));
  const D = days.length;

  // 1. By IP: the issuance above the baseline the IP's requests cause, per day (the library's pool replayed), against each account's.
  const eventsOfIp = new Map<string, RequestEvent[]>();
  for (const e of events) {
    if (input.relayIps.has(e.ip)) continue;
    const l = eventsOfIp.get(e.ip);
    if (l) l.push(e);
    else eventsOfIp.set(e.ip, [e]);
  }
  const byIp = new Map<string, Float64Array>();
  for (const [ip, list] of eventsOfIp) byIp.set(ip, replayPool(list, days, dayIndex));
  const above = aboveBaseline(issued);
  const accountList = [...accounts].sort((a, b) => a - b);
  const series = accountList.map((a) => {
    const s = new Float64Array(D);
    for (const [d, m] of above) s[dayIndex.get(d)!] = m.get(a) ?? 0;
    return s;
  });
  const ips = [...byIp.keys()].sort();
  const cost = ips.map((ip) => {
    const p = byIp.get(ip)!;
    return series.map((s) => {
      let c = 0;
      for (let i = 0; i < D; i++) c += Math.abs(s[i]! - p[i]!);
      return c;
    });
  });
  const linkOf = matchIps(ips, accountList, cost);

  // 2. By day and size class: the issuance the IP-linked requests do not explain is each account's budget.
  const budget = new Map<number, Map<number, number>>();
  for (const [d, m] of above) budget.set(d, new Map(m));
  const charge = (d: number, a: number, x: number) => {
    const m = budget.get(d);
    if (m?.has(a)) m.set(a, Math.max(0, m.get(a)! - x));
  };
  for (const [ip, link] of linkOf) {
    const p = byIp.get(ip)!;
    for (let i = 0; i < D; i++) if (p[i]! > 0) charge(days[i]!, link.accountId, p[i]!);
  }
  const guesses: RequesterGuess[] = events.map((e) => {
    const link = input.relayIps.has(e.ip) ? undefined : linkOf.get(e.ip);
    return link ? { accountId: link.accountId, named: link.named, via: 'ip' } : { accountId: null, named: false, via: 'none' };
  });
  guessByIssuance(events, guesses, budget, issued);
  const volume = events.map((e) => {
    const m = issued.get(dayOf(e.ts));
    return (m && argmax(m)) ?? null;
  });
  return { events, guesses, volume, ipLinks: [...linkOf.values()], accounts: accounts.size };
}

/** Elements issued per day and account, and the accounts that were issued any. */
function issuanceByDay(issuance: readonly IssuanceRow[]): { issued: Map<number, Map<number, number>>; accounts: Set<number> } {
  const issued = new Map<number, Map<number, number>>(); // day -> account -> elements
  const accounts = new Set<number>();
  for (const r of issuance) {
    const d = dayOf(r.ts);
    const m = issued.get(d) ?? new Map<number, number>();
    m.set(r.accountId, (m.get(r.accountId) ?? 0) + r.elements);
    issued.set(d, m);
    accounts.add(r.accountId);
  }
  return { issued, accounts };
}

/** Per day and account, the elements issued above what every install issues whatever it does: the quantum each day, and the app's start on the account's first day. */
function aboveBaseline(issued: ReadonlyMap<number, ReadonlyMap<number, number>>): Map<number, Map<number, number>> {
  const above = new Map<number, Map<number, number>>(); // day -> account -> elements above the baseline
  const firstOf = new Map<number, number>();
  for (const d of [...issued.keys()].sort((x, y) => x - y)) for (const a of issued.get(d)!.keys()) if (!firstOf.has(a)) firstOf.set(a, d);
  for (const [d, m] of issued) {
    const out = new Map<number, number>();
    for (const [a, x] of m) out.set(a, Math.max(0, x - DAILY_QUANTUM - (firstOf.get(a) === d ? APP_START_TOKENS : 0)));
    above.set(d, out);
  }
  return above;
}

/** For each of `from`, the one of `over` at the lowest cost, when no other ties it. */
function uniqueBest(from: Iterable<number>, over: ReadonlySet<number>, c: (a: number, b: number) => number): Map<number, number> {
  const out = new Map<number, number>();
  for (const a of from) {
    let best = -1;
    let bv = Infinity;
    let tie = false;
    for (const b of over) {
      const v = c(a, b);
      if (v < bv) {
        bv = v;
        best = b;
        tie = false;
      } else if (v === bv) tie = true;
    }
    if (best >= 0 && !tie) out.set(a, best);
  }
  return out;
}

/**
 * IPs matched to accounts by the cost of each pair (`cost[ip][account]`). Named links: pairs that are each other's
 * unique best match among the IPs and accounts not yet named, round after round (naming a pair can break the ties of
 * others). The rest: greedily by increasing cost, one account per IP.
 */
function matchIps(ips: readonly string[], accountList: readonly number[], cost: readonly (readonly number[])[]): Map<string, IpLink> {
  const linkOf = new Map<string, IpLink>();
  const freeIps = new Set(ips.map((_, i) => i));
  const freeAccounts = new Set(accountList.map((_, j) => j));
  for (;;) {
    const accountFor = uniqueBest(freeIps, freeAccounts, (i, j) => cost[i]![j]!);
    const ipFor = uniqueBest(freeAccounts, freeIps, (j, i) => cost[i]![j]!);
    let named = 0;
    for (const [i, j] of accountFor) {
      if (ipFor.get(j) !== i) continue;
      linkOf.set(ips[i]!, { ip: ips[i]!, accountId: accountList[j]!, named: true, cost: cost[i]![j]! });
      freeIps.delete(i);
      freeAccounts.delete(j);
      named++;
    }
    if (named === 0) break;
  }
  const pairs: [number, number, number][] = [];
  for (const i of freeIps) for (const j of freeAccounts) pairs.push([cost[i]![j]!, i, j]);
  // Ties in an order of their own (a hash of the pair): neither the IPs' nor the accounts' order may stand in for a match.
  const tie = (i: number, j: number) => fnv1a(`${ips[i]} ${accountList[j]}`);
  pairs.sort((x, y) => x[0] - y[0] || tie(x[1], x[2]) - tie(y[1], y[2]) || x[1] - y[1] || x[2] - y[2]);
  for (const [c, i, j] of pairs) {
    if (!freeIps.has(i) || !freeAccounts.has(j)) continue;
    freeIps.delete(i);
    freeAccounts.delete(j);
    linkOf.set(ips[i]!, { ip: ips[i]!, accountId: accountList[j]!, named: false, cost: c });
    if (freeIps.size === 0) break;
  }
  return linkOf;
}

/**
 * The requests no IP link explains, day by day, largest class first: each to the account whose budget that day
 * covers what the request predicts it issued (named when only one does), the budget charged; with no budget
 * anywhere, the day's largest issuer, not named.
 */
function guessByIssuance(events: readonly RequestEvent[], guesses: RequesterGuess[], budget: ReadonlyMap<number, Map<number, number>>, issued: ReadonlyMap<number, ReadonlyMap<number, number>>): void {
  const open = events.map((_, k) => k).filter((k) => guesses[k]!.via === 'none');
  const openByDay = new Map<number, number[]>();
  for (const k of open) {
    const d = dayOf(events[k]!.ts);
    const l = openByDay.get(d);
    if (l) l.push(k);
    else openByDay.set(d, [k]);
  }
  for (const [d, ks] of openByDay) {
    const m = budget.get(d) ?? new Map<number, number>();
    ks.sort((x, y) => events[y]!.sizeClass - events[x]!.sizeClass || x - y);
    for (const k of ks) {
      const c = events[k]!.sizeClass;
      const need = Math.max(1, predictedIssuance(c)); // a class-1 request is named only to the one account that fetched on demand
      let payers = 0;
      for (const v of m.values()) if (v >= need) payers++;
      const guess = argmax(m, need) ?? argmax(m, c) ?? argmax(m);
      if (guess === undefined) {
        // No account issued above its baseline: nothing sets one apart; the day's largest issuer is the guess.
        const volume = argmax(issued.get(d) ?? new Map<number, number>());
        if (volume !== undefined) guesses[k] = { accountId: volume, named: false, via: 'issuance' };
        continue;
      }
      guesses[k] = { accountId: guess, named: payers === 1, via: 'issuance' };
      if (c > 1) m.set(guess, Math.max(0, m.get(guess)! - need));
    }
  }
}

// ---------------------------------------------------------------------------
// Scoring

/** A request the simulated clients sent, as the server saw it: its time, address and size class, and the account that sent it. */
export interface SentRequest {
  t: number;
  ip: string;
  sizeClass: number;
  accountId: number;
}

/** Wilson score interval for k successes in n (95 % by default); [0, 1] when n is 0. */
export function wilson(k: number, n: number, z = 1.96): [number, number] {
  if (n === 0) return [0, 1];
  const p = k / n;
  const z2 = z * z;
  const d = 1 + z2 / n;
  const centre = (p + z2 / (2 * n)) / d;
  const half = (z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) / d;
  return [Math.max(0, centre - half), Math.min(1, centre + half)];
}

export interface LinkScore {
  requests: number;
  named: number;
  namedCorrect: number;
  top1Correct: number;
}

export interface RequesterScore extends LinkScore {
  /** Requests the clients sent (the log's count should be the same). */
  sent: number;
  /** Share of requests the attack names an account for, and the precision of those links. */
  linkedShare: number;
  precision: number | null;
  precisionCi: [number, number] | null;
  /** A guess for every request: its precision. */
  top1: number;
  top1Ci: [number, number];
  /** 1 / (accounts that sent a request that day), averaged over requests; and that count's mean. */
  chance: number;
  activePerDay: number;
  /** The volume-only reference guess (the day's largest issuer): its precision. */
  volume: number;
  /** Requests above class 1 (contact syncs). */
  syncs: LinkScore;
  /** IPs linked to an account (none through a relay), how many named, and how many of those named right. */
  ips: { linked: number; named: number; namedCorrect: number };
}

export function scoreRequesters(attack: RequesterAttack, sent: readonly SentRequest[], ipAccounts: ReadonlyMap<string, ReadonlySet<number>>): RequesterScore {
  const key = (ts: number, ip: string, c: number) => `${Math.floor(ts / 60_000)} ${ip} ${c}`;
  type Group = { truth: Map<number, number>; top: Map<number, number>; named: Map<number, number>; volume: Map<number, number>; events: number; sync: boolean };
  const groups = new Map<string, Group>();
  const group = (k: string, sync: boolean): Group => {
    let g = groups.get(k);
    if (!g) groups.set(k, (g = { truth: new Map(), top: new Map(), named: new Map(), volume: new Map(), events: 0, sync }));
    return g;
  };
  const inc = (m: Map<number, number>, a: number) => m.set(a, (m.get(a) ?? 0) + 1);
  for (const r of sent) inc(group(key(r.t, r.ip, r.sizeClass), r.sizeClass > 1).truth, r.accountId);
  let named = 0;
  let syncNamed = 0;
  attack.events.forEach((e, i) => {
    const g = group(key(e.ts, e.ip, e.sizeClass), e.sizeClass > 1);
    g.events++;
    const guess = attack.guesses[i]!;
    if (guess.accountId !== null) {
      inc(g.top, guess.accountId);
      if (guess.named) {
        inc(g.named, guess.accountId);
        named++;
        if (e.sizeClass > 1) syncNamed++;
      }
    }
    const v = attack.volume[i];
    if (v !== null && v !== undefined) inc(g.volume, v);
  });
  const overlap = (a: Map<number, number>, b: Map<number, number>) => {
    let n = 0;
    for (const [k, x] of a) n += Math.min(x, b.get(k) ?? 0);
    return n;
  };
  let namedCorrect = 0;
  let top1Correct = 0;
  let volumeCorrect = 0;
  const syncs: LinkScore = { requests: 0, named: syncNamed, namedCorrect: 0, top1Correct: 0 };
  for (const g of groups.values()) {
    const n = overlap(g.named, g.truth);
    const t = overlap(g.top, g.truth);
    namedCorrect += n;
    top1Correct += t;
    volumeCorrect += overlap(g.volume, g.truth);
    if (g.sync) {
      syncs.requests += g.events;
      syncs.namedCorrect += n;
      syncs.top1Correct += t;
    }
  }
  // Chance: a guess among the accounts that sent something that day.
  const activeByDay = new Map<number, Set<number>>();
  for (const r of sent) {
    const d = dayOf(r.t);
    const s = activeByDay.get(d) ?? new Set<number>();
    s.add(r.accountId);
    activeByDay.set(d, s);
  }
  let chanceSum = 0;
  let activeSum = 0;
  for (const r of sent) {
    const a = activeByDay.get(dayOf(r.t))!.size;
    chanceSum += 1 / a;
    activeSum += a;
  }
  const requests = attack.events.length;
  const ipNamed = attack.ipLinks.filter((l) => l.named);
  return {
    requests,
    sent: sent.length,
    named,
    namedCorrect,
    top1Correct,
    linkedShare: requests ? named / requests : 0,
    precision: named ? namedCorrect / named : null,
    precisionCi: named ? wilson(namedCorrect, named) : null,
    top1: requests ? top1Correct / requests : 0,
    top1Ci: wilson(top1Correct, requests),
    chance: sent.length ? chanceSum / sent.length : 0,
    activePerDay: sent.length ? activeSum / sent.length : 0,
    volume: requests ? volumeCorrect / requests : 0,
    syncs,
    ips: { linked: attack.ipLinks.length, named: ipNamed.length, namedCorrect: ipNamed.filter((l) => ipAccounts.get(l.ip)?.has(l.accountId)).length },
  };
}
