/**
 * The workload rows (workload/score.ts WorkloadResult) as Markdown: the
 * headline table, the scored attack's levels and curve, the reverse
 * direction, whether a lookup means a conversation, the studies (carrier
 * NAT, daisy-chained orders, densities against the model), the model at
 * real sizes, the anchors' designs as configurations, requester recovery
 * and padding for the anonymous variants, and what each log still holds.
 *
 * Rows of results.json written before a field existed render it as '-'.
 */
import { CONFIDENCE_LEVELS, CONSERVATIVE, HEADLINE_LEVEL, levelName } from '../workload/operator.ts';
import { realScale, type SignalPrediction } from '../workload/model.ts';
import type { WorkloadResult } from '../workload/score.ts';

function cell(v: unknown): string {
  return String(v).replaceAll('|', '\\|').replaceAll('\n', ' ');
}

function mdTable(headers: readonly string[], rows: readonly (readonly unknown[])[]): string {
  return [`| ${headers.map(cell).join(' | ')} |`, `|${headers.map(() => ' --- |').join('')}`, ...rows.map((r) => `| ${r.map(cell).join(' | ')} |`)].join('\n');
}

const pct = (x: number | null | undefined) => (x === null || x === undefined ? '-' : `${(x * 100).toFixed(x > 0 && x < 0.01 ? 2 : 1)} %`);
const count = (x: number | null | undefined) =>
  x === null || x === undefined ? '-' : x !== 0 && Math.abs(x) < 1 ? String(Number(x.toPrecision(2))) : x.toLocaleString('en-US', { maximumFractionDigits: 1 });
const bits = (r: WorkloadResult) => (r.bucketBits === null ? '-' : String(r.bucketBits));
/** The variant (results.json from before the variants have only the design). */
const variantOf = (r: WorkloadResult): string => r.variant ?? r.design;
const ci = (x: [number, number] | null) => (x === null ? '' : ` (${pct(x[0])} – ${pct(x[1])})`);
const perBucket = (r: WorkloadResult) => (r.planPerBucket === null ? '-' : `${count(r.planPerBucket)} / ${count(r.registeredPerBucket)}`);
const DEFAULT_STUDY = 'default';
const studyOf = (r: WorkloadResult) => r.study ?? DEFAULT_STUDY;
/** The precisions the README compares at: round ones and the outside attack's (workload/score.ts PRECISION_MARKS). */
const SHOWN_MARKS = [0.47, 0.762, 0.9, 0.975, 0.994];
/** Real sizes (workload/model.ts realScale): registered numbers, bucket sizes a deployment might pick, plan numbers per registered one. */
export const REAL_SCALE = { registered: [1e7, 1e8, 1e9], bucketBytes: [2048, 10240, 102400], planPerRegistered: 10 } as const;

function headline(w: readonly WorkloadResult[]): string {
  return mdTable(
    ['design', 'bucket bits', 'users per IP', 'numbers per bucket (plan / registered)', 'true edges (to registered)', 'recall: all edges', 'recall: registered contacts', 'precision', 'conversation precision', 'median candidates', 'bytes / lookup'],
    w.map((r) => [
      variantOf(r),
      bits(r),
      count(r.usersPerIp ?? 1),
      perBucket(r),
      `${count(r.edges)} (${count(r.registeredEdges)})`,
      pct(r.recall),
      pct(r.recallRegistered),
      pct(r.precision),
      pct(r.conversationPrecision),
      count(r.medianCandidates),
      count(Math.round(r.bytesPerLookup)),
    ]),
  );
}

function levels(blinded: readonly WorkloadResult[]): string {
  const shown = [...CONFIDENCE_LEVELS.map(levelName), CONSERVATIVE];
  return mdTable(
    ['design', 'bucket bits', 'claims', 'claimed', 'correct', 'recall: all edges', 'recall: registered contacts', 'precision', 'operator\u2019s own estimate'],
    blinded.flatMap((r) =>
      r.attacks
        .filter((a) => shown.includes(a.name))
        .map((a) => [variantOf(r), bits(r), a.name, count(a.claimed), count(a.recovered), pct(a.recall), pct(a.recallRegistered), pct(a.precision), pct(a.estimatedPrecision)]),
    ),
  );
}

function atPrecision(blinded: readonly WorkloadResult[]): string {
  return mdTable(
    ['design', 'bucket bits', ...SHOWN_MARKS.map((p) => `precision ≥ ${(p * 100).toFixed(p * 100 === Math.round(p * 100) ? 0 : 1)} %`)],
    blinded.map((r) => [
      variantOf(r),
      bits(r),
      ...SHOWN_MARKS.map((p) => {
        const m = r.atPrecision?.find((x) => Math.abs(x.precision - p) < 1e-9);
        return m ? `${pct(m.recall)} (${pct(m.recallRegistered)})` : '-';
      }),
    ]),
  );
}

function reverse(w: readonly WorkloadResult[]): string {
  return mdTable(
    ['design', 'bucket bits', 'target numbers (registered)', 'lookers named per target: all targets', 'registered targets', 'targets with a looker named', 'with every looker named', 'precision'],
    w
      .filter((r) => r.reverse)
      .map((r) => {
        const v = r.reverse;
        return [variantOf(r), bits(r), `${count(v.targets)} (${count(v.registeredTargets)})`, pct(v.meanRecall), pct(v.meanRecallRegistered), pct(v.targets ? v.anyNamed / v.targets : null), pct(v.targets ? v.allNamed / v.targets : null), pct(v.precision)];
      }),
  );
}

function conversations(w: readonly WorkloadResult[]): string[] {
  const s = w.find((r) => r.conversationShare)?.conversationShare;
  if (!s) return [];
  const row = (name: string, [rows, followed]: [number, number]) => [name, count(rows), count(followed), pct(rows ? followed / rows : null)];
  return [
    '### Does a lookup mean a conversation?',
    `Every number looked up is a row of the plain and hashed logs. A row is *followed* when the requester started a conversation with that person at the lookup or within 24 hours after. ` +
      `Of the looked-up pairs, ${pct(s.talkedEdges / s.edges)} talked at some point in the window (${count(s.talkedEdges)} of ${count(s.edges)}). ` +
      'The headline table\u2019s *conversation precision* is the same question for the operator\u2019s claims: how many claimed edges are pairs that talked.',
    mdTable(
      ['lookups, by why', 'rows', 'followed by a conversation', 'share'],
      [row('a conversation starting', s.byKind.conversation), row('a contact added', s.byKind.newContact), row('a reinstall\u2019s sync', s.byKind.sync), row('every row', [s.rows, s.followed])],
    ),
  ];
}

function orders(w: readonly WorkloadResult[]): string[] {
  const rows = w.filter((r) => r.orders?.length);
  if (rows.length === 0) return [];
  return [
    '### Daisy-chained orders',
    'A log kept as long as an order\u2019s window (a retention), and an order served at the end of each window: each order reads only its window; the chain reads every order\u2019s answer together (the whole period). ' +
      'Recall against the edges looked up in the order\u2019s window, and against every edge of the period; precision against every edge of the period.',
    mdTable(
      ['study', 'design', 'bucket bits', 'order', 'window', 'edges in window', 'claimed', 'recall: window', 'recall: whole period', 'recall: registered, whole period', 'precision'],
      rows.flatMap((r) =>
        r.orders!.map((o) => [studyOf(r), variantOf(r), bits(r), o.name, `${o.from} – ${o.until}`, count(o.windowEdges), count(o.claimed), pct(o.recallWindow), pct(o.recallAll), pct(o.recallRegisteredAll), pct(o.precision)]),
      ),
    ),
  ];
}

function measured(r: WorkloadResult, s: SignalPrediction['signal']): { recall: number | null; precision: number | null } {
  const a = r.attacks.find((x) => x.name === s);
  if (!a) return { recall: null, precision: null };
  return { recall: s === 'bucket' ? a.recall : a.recallRegistered, precision: a.precision };
}

function model(w: readonly WorkloadResult[]): string[] {
  const rows = w.filter((r) => r.model);
  if (rows.length === 0) return [];
  return [
    '### Density: each signal measured beside the model',
    'The three rules on their own (bucket, registered, mutual: workload/operator.ts) against workload/model.ts, which predicts each from the plan and registered numbers ' +
      'per bucket (p = P/2^b, r = R/2^b), the buckets a user fetches (|B|) and the population\u2019s behaviour measured in the run (contacts looked up, and the share looked up both ways). ' +
      'Recall over all edges for `bucket`, over edges to registered contacts for the other two.',
    mdTable(
      ['study', 'design', 'bucket bits', 'plan / registered per bucket', 'signal', 'recall: measured', 'recall: model', 'precision: measured', 'precision: model'],
      rows.flatMap((r) =>
        r.model!.map((m) => {
          const got = measured(r, m.signal);
          return [studyOf(r), variantOf(r), bits(r), perBucket(r), m.signal, pct(got.recall), pct(m.recall), pct(got.precision), pct(m.precision)];
        }),
      ),
    ),
  ];
}

function scale(w: readonly WorkloadResult[]): string[] {
  const base = w.find((r) => studyOf(r) === DEFAULT_STUDY && r.behaviour)?.behaviour;
  if (!base) return [];
  const rows = realScale(base, REAL_SCALE.registered, REAL_SCALE.bucketBytes, REAL_SCALE.planPerRegistered);
  const sig = (r: (typeof rows)[number], s: SignalPrediction['signal']) => r.signals.find((x) => x.signal === s)!;
  return [
    '### Real sizes, from the model',
    `The behaviour of the default run (per user and window: ${count(base.registeredContacts)} registered and ${count(base.unregisteredContacts)} unregistered contacts looked up, ` +
      `${pct(base.reciprocated)} of the registered ones looked up both ways), at directories of 10^7, 10^8 and 10^9 registered numbers, the bucket bits a deployment would pick ` +
      `for buckets of about 2, 10 and 100 KB (9 bytes a registered number), and a plan of ${REAL_SCALE.planPerRegistered} numbers per registered one. Fetches attributed to accounts (the account path).`,
    mdTable(
      ['registered', 'bucket', 'bucket bits', 'plan / registered per bucket', '|B|²·R/4^b', 'bucket: recall', 'registered: recall (precision)', 'mutual: recall (precision)'],
      rows.map((r) => [
        r.registered.toExponential(0).replace('e+', ' × 10^'),
        `${count(Math.round(r.bucketBytes / 102.4) / 10)} KB`,
        r.bits,
        `${count(r.planPerBucket)} / ${count(r.registeredPerBucket)}`,
        count(r.falseMutualPerUser),
        pct(sig(r, 'bucket').recall),
        `${pct(sig(r, 'registered').recall)} (${pct(sig(r, 'registered').precision)})`,
        `${pct(sig(r, 'mutual').recall)} (${pct(sig(r, 'mutual').precision)})`,
      ]),
    ),
  ];
}

function anchors(w: readonly WorkloadResult[]): string[] {
  const main = w.filter((r) => studyOf(r) === DEFAULT_STUDY && r.design === 'blinded');
  const at = (variant: string, b: number) => main.find((r) => variantOf(r) === variant && r.bucketBits === b);
  const fig = (r: WorkloadResult | undefined) => (r ? `${pct(r.recall)} (${pct(r.recallRegistered)}), precision ${pct(r.precision)}` : 'not run');
  const bucketed = main.filter((r) => variantOf(r) === 'blinded' && (r.bucketBits ?? 0) > 0);
  const anonymous = main.filter((r) => variantOf(r) !== 'blinded');
  const rows: unknown[][] = [
    ['CDSI-like (numbers hidden in an enclave; account, time and count logged; no buckets)', 'account, time, IP, element count', 'blinded, b = 0', fig(at('blinded', 0))],
    ...bucketed.map((r) => ['pcd blinded, account path', 'account, time, IP, count; bucket, minute, IP', `blinded, b = ${r.bucketBits}`, fig(r)]),
    ...anonymous.map((r) => [`pcd ${variantOf(r)}`, 'credentials issued per account and day; requests by minute, IP (or relay), size class; bucket, minute, IP', `${variantOf(r)}, b = ${r.bucketBits}`, fig(r)]),
    [
      'Live Caller ID Lookup-like (anonymous credentials, a relay, shards like buckets, a per-device identifier)',
      'shard, time, a per-device pseudonym; no account, no IP',
      'modelled: a pseudonym links a device\u2019s fetches as an account does',
      `once the pseudonym is tied to an account: as pcd blinded at the same b (${bucketed.map((r) => `b = ${r.bucketBits}: ${pct(r.recallRegistered)} of registered contacts`).join(', ') || 'not run'}); until then, the anonymous rows`,
    ],
  ];
  return [
    '### The anchors\u2019 designs as configurations',
    'Where the designs the README compares against sit, read off the runs above: what the log holds, and which run\u2019s figures apply (recall over all edges, over registered contacts in brackets, at the headline level).',
    mdTable(['configuration', 'what the operator logs', 'figures from', 'recall (registered), precision'], rows),
  ];
}

function studies(w: readonly WorkloadResult[]): string[] {
  const names = [...new Set(w.map(studyOf))].filter((s) => s !== DEFAULT_STUDY);
  return names.flatMap((name) => [`### Study: ${name}`, headline(w.filter((r) => studyOf(r) === name))]);
}

function anonymousTables(anonymous: readonly WorkloadResult[]): string[] {
  if (anonymous.length === 0) return [];
  return [
    '### Requester recovery: who sent each anonymous request',
    'With Privacy Pass tokens the evaluation log holds no account; the operator links each counted evaluate request to an account from the token logs ' +
      '(issuance per day and account; requests per minute, IP and size class) and, without a relay, the IP (workload/requesters.ts). ' +
      '*Linked*: requests the attack names an account for (a unique match), and the precision of those names; *top guess*: a guess for every request. ' +
      '*Chance*: 1 / the accounts that sent a request that day, averaged over requests. *Volume only*: guessing the day\u2019s largest token issuer for every request, ' +
      'which uses nothing of the request: what issuance counts alone give away. Intervals: Wilson, 95 %.',
    mdTable(
      ['design', 'bucket bits', 'requests', 'linked', 'precision of links', 'top guess', 'chance', 'top guess / chance', 'top guess, single lookups', 'volume only', 'syncs linked (right)', 'IPs linked (named, right)'],
      anonymous.map((r) => {
        const q = r.requesters!;
        return [
          variantOf(r),
          bits(r),
          count(q.requests) + (q.requests !== q.sent ? ` (sent ${count(q.sent)})` : ''),
          pct(q.linkedShare),
          pct(q.precision) + ci(q.precisionCi),
          pct(q.top1) + ci(q.top1Ci),
          `${pct(q.chance)} (1 / ${count(q.activePerDay)})`,
          q.chance > 0 ? `${(q.top1 / q.chance).toFixed(1)}x${q.top1Ci[0] <= q.chance ? ' (at chance)' : ''}` : '-',
          q.requests > q.syncs.requests ? pct((q.top1Correct - q.syncs.top1Correct) / (q.requests - q.syncs.requests)) : '-',
          pct(q.volume),
          `${count(q.syncs.named)} of ${count(q.syncs.requests)} (${count(q.syncs.namedCorrect)})`,
          q.ips.linked ? `${count(q.ips.linked)} (${count(q.ips.named)}, ${count(q.ips.namedCorrect)})` : '-',
        ];
      }),
    ),
    '### Padding to the size classes',
    'Elements sent / elements asked (the numbers not in a tag cache): each anonymous request is padded with dummy elements to its token\u2019s size class ' +
      '(shared/tokens.ts). Single lookups are class 1; a contact sync pads to the next class. Tokens: issued and spent over every install, and the ' +
      'issuances a lookup had to wait for (an empty class).',
    mdTable(
      ['design', 'bucket bits', 'requests', 'elements asked', 'elements sent', 'padding', 'single lookups', 'syncs', 'tokens issued / spent', 'fetched on demand'],
      anonymous.map((r) => {
        const p = r.padding ?? { requests: 0, asked: 0, sent: 0, ratio: 1, single: null, batch: null };
        const t = r.pools;
        const x = (v: number | null) => (v === null ? '-' : `${v.toFixed(2)}x`);
        return [variantOf(r), bits(r), count(p.requests), count(p.asked), count(p.sent), x(p.ratio), x(p.single), x(p.batch), t ? `${count(t.fetched)} / ${count(t.spent)}` : '-', t ? count(t.fetchedOnDemand) : '-'];
      }),
    ),
  ];
}

function remains(w: readonly WorkloadResult[]): string[] {
  return [
    '### What remains in each log',
    mdTable(
      ['study', 'design', 'bucket bits', 'rows', 'requesters', 'IPs', 'lookups counted', 'sync requests', 'bucket rows (ambiguous, unattributed)', 'a row holds'],
      w.map((r) => [
        studyOf(r),
        variantOf(r),
        bits(r),
        count(r.remains.rows),
        count(r.remains.requesters),
        count(r.remains.ips),
        count(r.remains.lookups),
        count(r.remains.syncRequests),
        r.remains.bucketRows === undefined ? '-' : `${count(r.remains.bucketRows)} (${count(r.remains.ambiguousBucketRows ?? 0)}, ${count(r.remains.unattributedBucketRows ?? 0)})`,
        r.remains.fields,
      ]),
    ),
  ];
}

/** The rows as Markdown (module header). */
export function workloadMarkdown(all: readonly WorkloadResult[]): string {
  if (all.length === 0) return '';
  const w = all.filter((r) => studyOf(r) === DEFAULT_STUDY);
  const main = w.length ? w : all;
  const first = main[0]!;
  const blinded = main.filter((r) => r.design === 'blinded');
  const parts = [
    '## Contact graph from the logs (workload simulation)',
    `What an operator rebuilds from the data folder alone. Edges are (requester, number looked up) pairs the simulated clients sent ` +
      `(${count(first.edges)} in this run, ${count(first.registeredEdges)} of them to registered contacts: the messenger conversations a pen-register order is about); ` +
      `a claim is an edge the operator names. Blinded claims are the scored attack\u2019s (workload/attack.ts) at ${levelName(HEADLINE_LEVEL)}: every weight fitted to the ` +
      `operator\u2019s own data, never to the truth. These figures are lower bounds from the strongest attack written so far, not what the logs hold at most. ` +
      `The candidate set is, per true edge, the plan numbers (${count(first.planSize)}) the operator cannot tell the contact from. Bytes: request and reply bodies per number looked up, caches included.`,
    headline(main),
  ];
  if (blinded.length) {
    parts.push(
      '### Blinded: the scored attack\u2019s confidence levels, and the conservative rule',
      `A level claims every edge the model scores at least that high; the model\u2019s mean score over those claims is the operator\u2019s own estimate of their precision, made without the truth. ` +
        `\`${CONSERVATIVE}\`: the rule of the first simulation (a bucket with one plan number, or one mutual registered number), kept for comparison.`,
      levels(blinded),
      '### Blinded: recall at fixed precision',
      'From the precision-recall curve (claims sorted by score): the most the attack recovers at a precision at least the one named, over all edges (over registered contacts in brackets).',
      atPrecision(blinded),
    );
  }
  parts.push('### The reverse direction: who looked a number up', 'A pen-register order on a target number asks who looked it up: the headline claims grouped by number, per target.', reverse(main));
  parts.push(...conversations(main), ...orders(all), ...studies(all), ...model(all), ...scale(all), ...anchors(all));
  parts.push(...anonymousTables(all.filter((r) => r.requesters)), ...remains(all));
  return parts.join('\n\n') + '\n';
}
