/**
 * The 30 days, as a script of what every user's phone sends: pure and
 * deterministic, the same for every design (so the designs are compared on
 * the very same lookups), and the ground truth the operator's
 * reconstruction is scored against.
 *
 * Per user, three Poisson processes over the window, each thinned by one
 * diurnal profile (few events at night):
 * - conversations, at a rate drawn per user (log-normal around
 *   `conversationsPerDay`: a few heavy users, many light ones); the partner
 *   is drawn from the address book in proportion to the tie strength
 *   (workload/population.ts: symmetric, heavy tailed);
 * - new contacts (`newContactsPerDay`), drawn as the books were; with
 *   probability `newContactChat` a conversation starts at once;
 * - reinstalls and new phones (`reinstallsPerYear`): the app starts empty.
 *
 * What a client sends, as real ones do: a lookup when a conversation starts
 * (never per message) unless the app's answer cache holds the contact
 * (`cacheTtlHours`); a lookup when a contact is added to the book (the app
 * checks every new entry, whether or not a conversation follows); a
 * reinstall is a full contact sync: one lookupMany of the whole book, which
 * refills the cache. So a lookup does not always mean a conversation: syncs
 * and new contacts look numbers up that nobody talks to, and the truth
 * records when each pair talked (`conversationTimes`) to measure it. Clients start the window with an
 * empty answer cache (the library's own caches, tags and buckets, live as
 * long as the simulated install: workload/simulate.ts).
 */
import { ErrorCode, PcdError } from '../shared/errors.ts';
import { pickContact, type WorkloadPopulation } from './population.ts';
import { stream, type WorkloadRng } from './rng.ts';

export const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;

export interface ScriptOptions {
  days: number;
  /** Median conversations a user starts per day (log-normal over users). */
  conversationsPerDay: number;
  /** Sigma of the per-user activity. */
  activitySigma: number;
  newContactsPerDay: number;
  /** Probability that a new contact gets a conversation at once. */
  newContactChat: number;
  reinstallsPerYear: number;
  /** The app's answer cache: how long an answer is used before it is looked up again. */
  cacheTtlHours: number;
  /** First instant of the window (Unix ms). */
  start: number;
  seed: string;
}

export const DEFAULT_SCRIPT: ScriptOptions = {
  days: 30,
  conversationsPerDay: 2,
  activitySigma: 0.8,
  newContactsPerDay: 0.05,
  newContactChat: 0.7,
  reinstallsPerYear: 1,
  cacheTtlHours: 24,
  start: Date.UTC(2026, 0, 5),
  seed: 'pcd-workload',
};

/** Relative activity per hour of the day (UTC; the population shares one time zone). */
const DIURNAL = [0.15, 0.08, 0.05, 0.05, 0.05, 0.1, 0.3, 0.6, 0.9, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0.9, 0.7, 0.4];
const DIURNAL_MAX = Math.max(...DIURNAL);
const DIURNAL_MEAN = DIURNAL.reduce((a, b) => a + b, 0) / DIURNAL.length;

/** One thing a phone sends: a lookup of one contact, or (after a reinstall) the sync of the whole book. */
export interface ScriptAction {
  t: number;
  user: number;
  kind: 'lookup' | 'sync';
  /** Why: a conversation starting, a contact added to the book, or a reinstall's sync. */
  reason: 'conversation' | 'new-contact' | 'reinstall';
  /** Person indexes looked up. */
  people: number[];
}

export interface ScriptTruth {
  /** Distinct (user, person) pairs a client looked up: what a complete log would reveal. Key: user * people + person. */
  lookedUp: Set<number>;
  /** Per looked-up pair, the instants it was looked up (ascending). */
  lookupTimes: Map<number, number[]>;
  /** Distinct (user, person) pairs with a conversation. */
  conversations: Set<number>;
  /** Per pair with a conversation, the instants the user started one (ascending). */
  conversationTimes: Map<number, number[]>;
  /** Every (user, person) pair in a book at the end of the window. */
  addressBook: Set<number>;
}

export interface Script {
  readonly options: ScriptOptions;
  readonly actions: ScriptAction[];
  readonly truth: ScriptTruth;
  readonly end: number;
  readonly counts: { conversations: number; cacheHits: number; lookups: number; syncs: number; syncedNumbers: number; newContacts: number; newContactLookups: number };
}

export function checkScriptOptions(o: ScriptOptions): void {
  const check = (name: string, v: number, min: number, max: number) => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
      throw new PcdError(ErrorCode.InvalidField, `${name} must be a number from ${min} to ${max}, got ${String(v)}`);
    }
  };
  check('days', o.days, 0.01, 365);
  check('conversations per day', o.conversationsPerDay, 0, 1000);
  check('activity sigma', o.activitySigma, 0, 3);
  check('new contacts per day', o.newContactsPerDay, 0, 100);
  check('new contact chat', o.newContactChat, 0, 1);
  check('reinstalls per year', o.reinstallsPerYear, 0, 365);
  check('cache TTL hours', o.cacheTtlHours, 0, 24 * 365);
  if (!Number.isSafeInteger(o.start)) throw new PcdError(ErrorCode.InvalidField, 'the start of the window must be a time in Unix ms');
}

/** Event times of a Poisson process of `perDay` on [start, end), thinned by the diurnal profile (mean rate kept). */
function times(rng: WorkloadRng, perDay: number, start: number, end: number): number[] {
  const out: number[] = [];
  if (perDay <= 0) return out;
  const peakPerMs = (perDay / DAY_MS) * (DIURNAL_MAX / DIURNAL_MEAN);
  for (let t = start + rng.exponential(1 / peakPerMs); t < end; t += rng.exponential(1 / peakPerMs)) {
    const hour = Math.floor(((t % DAY_MS) + DAY_MS) % DAY_MS / HOUR_MS);
    if (rng.float() * DIURNAL_MAX < DIURNAL[hour]!) out.push(Math.floor(t));
  }
  return out;
}

interface Book {
  list: number[];
  has: Set<number>;
  weights: number[];
  total: number;
}

export function generateScript(pop: WorkloadPopulation, options: ScriptOptions): Script {
  checkScriptOptions(options);
  const o = { ...options };
  const end = o.start + Math.round(o.days * DAY_MS);
  const n = pop.numbers.length;
  const ttl = o.cacheTtlHours * HOUR_MS;
  const key = (u: number, p: number) => u * n + p;

  type Event = { t: number; user: number; seq: number; kind: 'chat' | 'add' | 'reinstall' };
  const events: Event[] = [];
  const books: Book[] = [];
  for (let u = 0; u < pop.users; u++) {
    const rng = stream(o.seed, 'activity', u);
    const rate = o.conversationsPerDay > 0 ? rng.logNormal(o.conversationsPerDay, o.activitySigma) : 0;
    let seq = 0;
    for (const t of times(rng, rate, o.start, end)) events.push({ t, user: u, seq: seq++, kind: 'chat' });
    for (const t of times(rng, o.newContactsPerDay, o.start, end)) events.push({ t, user: u, seq: seq++, kind: 'add' });
    for (const t of times(rng, o.reinstallsPerYear / 365, o.start, end)) events.push({ t, user: u, seq: seq++, kind: 'reinstall' });
    const list = [...pop.contacts[u]!];
    const weights = list.map((p) => pop.tie(u, p));
    books.push({ list, has: new Set(list), weights, total: weights.reduce((a, b) => a + b, 0) });
  }
  events.sort((a, b) => a.t - b.t || a.user - b.user || a.seq - b.seq);

  const truth: ScriptTruth = { lookedUp: new Set(), lookupTimes: new Map(), conversations: new Set(), conversationTimes: new Map(), addressBook: new Set() };
  const counts = { conversations: 0, cacheHits: 0, lookups: 0, syncs: 0, syncedNumbers: 0, newContacts: 0, newContactLookups: 0 };
  const at = (m: Map<number, number[]>, k: number, t: number) => {
    const l = m.get(k);
    if (l) l.push(t);
    else m.set(k, [t]);
  };
  const looked = (u: number, p: number, t: number) => {
    truth.lookedUp.add(key(u, p));
    at(truth.lookupTimes, key(u, p), t);
  };
  const caches = Array.from({ length: pop.users }, () => new Map<number, number>());
  const choice = Array.from({ length: pop.users }, (_, u) => stream(o.seed, 'choice', u));
  const actions: ScriptAction[] = [];

  const chat = (t: number, u: number, p: number) => {
    counts.conversations++;
    truth.conversations.add(key(u, p));
    at(truth.conversationTimes, key(u, p), t);
    const cache = caches[u]!;
    const until = cache.get(p);
    if (until !== undefined && until > t) {
      counts.cacheHits++;
      return;
    }
    cache.set(p, t + ttl);
    looked(u, p, t);
    counts.lookups++;
    actions.push({ t, user: u, kind: 'lookup', reason: 'conversation', people: [p] });
  };

  for (const e of events) {
    const u = e.user;
    const book = books[u]!;
    const rng = choice[u]!;
    switch (e.kind) {
      case 'chat': {
        if (book.list.length === 0) break;
        let x = rng.float() * book.total;
        let i = 0;
        while (i < book.list.length - 1 && x >= book.weights[i]!) x -= book.weights[i++]!;
        chat(e.t, u, book.list[i]!);
        break;
      }
      case 'add': {
        const p = pickContact(pop, u, rng, book.has);
        if (p === undefined) break;
        counts.newContacts++;
        const w = pop.tie(u, p);
        book.list.push(p);
        book.has.add(p);
        book.weights.push(w);
        book.total += w;
        // The app checks the new entry at once; a conversation right after finds it in the answer cache.
        caches[u]!.set(p, e.t + ttl);
        looked(u, p, e.t);
        counts.newContactLookups++;
        actions.push({ t: e.t, user: u, kind: 'lookup', reason: 'new-contact', people: [p] });
        if (rng.chance(o.newContactChat)) chat(e.t, u, p);
        break;
      }
      case 'reinstall': {
        const cache = caches[u]!;
        cache.clear();
        for (const p of book.list) {
          cache.set(p, e.t + ttl);
          looked(u, p, e.t);
        }
        counts.syncs++;
        counts.syncedNumbers += book.list.length;
        if (book.list.length) actions.push({ t: e.t, user: u, kind: 'sync', reason: 'reinstall', people: [...book.list] });
        break;
      }
    }
  }
  for (let u = 0; u < pop.users; u++) for (const p of books[u]!.list) truth.addressBook.add(key(u, p));
  return { options: o, actions, truth, end, counts };
}
