/**
 * The blinded design's audit (audit/designs/blinded.ts) as text, one part
 * per face of the order (the targets, the evaluations, the accounts, the
 * spent tokens), and as one CSV.
 */
import { BLINDED_EVAL_LOG, BLINDED_TOKEN_EVAL_LOG, SPENT_TOKENS_TABLE, TOKEN_ISSUANCE_LOG } from '../../shared/designs/blinded.ts';
import { csvRecord, fmtCount, isoTime, rangeText, renderTable, warningsText } from '../format.ts';
import { CORRELATION_WINDOW_MS, type BlindedAudit } from './blinded-types.ts';

/** An IP as the tables show it: marked when the order names it as a relay's. */
function ipText(ip: string, relay: boolean): string {
  return relay ? `${ip} (relay)` : ip;
}

function relayNote(r: BlindedAudit): string {
  if (r.relaysFrom === 'order') return `IPs marked (relay) are the OHTTP relays the order names (${r.relays.join(', ')}): such a row stands for every client of the relay.`;
  if (r.relaysFrom === 'recorded') {
    return `IPs marked (relay) are the OHTTP relays the server was started with (${r.relays.join(', ')}, recorded in the folder; --relay names others instead): such a row stands for every client of the relay.`;
  }
  return 'An IP may be an OHTTP relay\'s, standing for every client of that relay: no relay is recorded in the folder (pcd serve --ohttp-relay records them); name them with --relay.';
}

export function blindedTable(r: BlindedAudit): string {
  const parts: string[] = [...summaryParts(r), ...targetParts(r), ...evaluationParts(r), ...accountParts(r), spentTokensPart(r), `bucket fetches in the range, all buckets: ${r.bucketFetches}`];
  return parts.join('\n\n') + warningsText(r.warnings);
}

/** The statement, the directory and its epochs, and one line per target: its bucket, anonymity set and fetch count. */
function summaryParts(r: BlindedAudit): string[] {
  return [
    `blinded design: what a pen-register order yields\nrange: ${rangeText(r.range)}\n${r.statement}`,
    `directory: ${r.directorySize} registered numbers; current epoch: ${r.currentEpoch ?? 'none'}`,
    renderTable(
      ['epoch', 'mode', 'bucket bits', 'tag bytes', 'created', 'retires', 'destroyed', 'key on disk'],
      r.epochs.map((e) => [String(e.epoch), e.mode, String(e.bucketBits), String(e.tagBytes), isoTime(e.createdAt), isoTime(e.retiresAt), isoTime(e.destroyedAt), e.keyOnDisk ? 'yes' : 'no']),
    ),
    renderTable(
      ['target', 'linked rows', 'registered', 'epoch', 'bucket bits', 'bucket', 'registered in bucket', 'anonymity set', 'bucket fetches'],
      r.targets.map((t) => [
        t.target,
        String(t.linkedRows),
        t.registered ? 'yes' : 'no',
        String(t.epoch ?? '-'),
        String(t.bucketBits ?? '-'),
        String(t.bucket ?? '-'),
        String(t.registeredInBucket ?? '-'),
        t.anonymitySet ? fmtCount(t.anonymitySet.estimate) : '-',
        String(t.epochs.reduce((s, e) => s + e.fetches.reduce((n, f) => n + f.count, 0), 0)),
      ]),
    ),
  ];
}

/** Per target: its anonymity set, and the fetches of its bucket joined with the evaluations on IP. */
function targetParts(r: BlindedAudit): string[] {
  const parts: string[] = [];
  for (const t of r.targets) {
    if (t.anonymitySet) parts.push(`${t.target}: anonymity set = ${t.anonymitySet.planSource} / 2^${t.bucketBits} = ${fmtCount(t.anonymitySet.estimate)} possible numbers per bucket id`);
    const fetches = t.epochs.flatMap((e) => e.fetches);
    if (fetches.length) {
      parts.push(
        `fetches of ${t.target}'s bucket (each concerns every number of the bucket equally; joined with the evaluation logs on IP ` +
          `within ${CORRELATION_WINDOW_MS / 1000} s, a fetch suggests which account asked about SOME number of the bucket, ` +
          'or finds only evaluations paid with a token, which name no account):\n' +
          renderTable(
            ['minute', 'ip', 'epoch', 'bucket', 'fetches', 'same-IP requesters', 'same-IP token evaluations'],
            fetches.map((f) => [isoTime(f.ts), ipText(f.ip, f.relay), String(f.epoch), String(f.bucket), String(f.count), f.sameIpRequesters.join(' '), String(f.sameIpTokenEvaluations)]),
          ),
      );
    }
  }
  return parts;
}

/** The evaluations, the same for every target: paid with an account (naming it), and paid with a token (naming none). */
function evaluationParts(r: BlindedAudit): string[] {
  const parts: string[] = [];
  parts.push(
    `evaluation requests paid with an account (${BLINDED_EVAL_LOG.name}) in the range: ${r.evaluations.requests} ` +
      `(${r.evaluations.elements} blinded elements; the same for every target)` +
      (r.evaluations.rows.length
        ? '\n' +
          renderTable(
            ['time', 'account', 'email', 'ip', 'epoch', 'elements'],
            r.evaluations.rows.map((e) => [isoTime(e.ts), String(e.accountId), e.email ?? '(deleted)', e.ip, String(e.epoch), String(e.count)]),
          )
        : ''),
  );
  const te = r.tokenEvaluations;
  parts.push(
    `evaluation requests paid with a token (${BLINDED_TOKEN_EVAL_LOG.name}) in the range: ${te.requests}` +
      (te.requests
        ? ` (${te.classes.map((c) => `${c.requests} of size class ${c.sizeClass}`).join(', ')}; at most ${te.paddedElements} blinded elements, padding included; the same for every target)\n` +
          'They name no account and no element count: a row is a minute, an IP, an epoch, the size class the request was padded to, and how many requests. ' +
          relayNote(r) +
          '\n' +
          renderTable(
            ['minute', 'ip', 'epoch', 'size class', 'requests'],
            te.rows.map((x) => [isoTime(x.ts), ipText(x.ip, x.relay), String(x.epoch), String(x.sizeClass), String(x.count)]),
          )
        : ''),
  );
  return parts;
}

/** The order's other face: the accounts, their token issuance per day beside that day's token evaluations, and the evaluations the named accounts paid for. */
function accountParts(r: BlindedAudit): string[] {
  const parts: string[] = [];
  const who = r.accountsNamed ? `named by the order: ${r.accountsNamed.join(', ')}` : 'every account with a row in the range; name accounts with --account';
  const issuance = r.accounts.flatMap((a) => a.issuance.map((d) => ({ a, d })));
  parts.push(
    `what the operator can produce about accounts (${who}): ${r.accounts.length} account(s)\n` +
      `Token issuance (${TOKEN_ISSUANCE_LOG.name}) is kept per account and day, in elements' worth (the sum of the tokens' size classes), ` +
      'with no size class and no time of day. Nothing links a token to its issuance: the issuer signed blinded messages (RFC 9474) ' +
      'and never saw the tokens it later sees spent, so the evaluations paid with tokens above cannot be attributed to an account from the data. ' +
      `Evaluations paid with an account (${BLINDED_EVAL_LOG.name}) name it.` +
      (r.accounts.length
        ? '\n' +
          renderTable(
            ['account', 'email', 'created', 'days with issuance', 'elements issued', 'evaluations paid with the account', 'elements evaluated'],
            r.accounts.map((a) => [
              String(a.accountId),
              a.email ?? `(${a.status === 'deleted' ? 'deleted' : 'no such account'})`,
              isoTime(a.createdAt),
              String(a.issuance.length),
              String(a.issuedElements),
              String(a.evaluations.length),
              String(a.evaluatedElements),
            ]),
          )
        : ''),
  );
  if (issuance.length) {
    parts.push(
      'token issuance per day, beside the evaluations paid with a token that day by every requester (a day-level join: on a quiet day ' +
        "one account's issuance may be the only one that matches the day's size classes; tokens fetched ahead are spent any later day):\n" +
        renderTable(
          ['day', 'account', 'email', 'elements issued', 'token evaluations that day', 'padded elements', 'IPs'],
          issuance.map(({ a, d }) => [
            isoTime(d.day).slice(0, 10),
            String(a.accountId),
            a.email ?? `(${a.status === 'deleted' ? 'deleted' : 'no such account'})`,
            String(d.elements),
            String(d.sameDay.requests),
            String(d.sameDay.paddedElements),
            String(d.sameDay.ips),
          ]),
        ),
    );
  }
  const own = r.accounts.flatMap((a) => a.evaluations);
  if (own.length && r.accountsNamed) {
    parts.push(
      `evaluations paid with the named account(s):\n` +
        renderTable(
          ['time', 'account', 'email', 'ip', 'epoch', 'elements'],
          own.map((e) => [isoTime(e.ts), String(e.accountId), e.email ?? '(deleted)', e.ip, String(e.epoch), String(e.count)]),
        ),
    );
  }
  return parts;
}

function spentTokensPart(r: BlindedAudit): string {
  return (
    `spent tokens held (${SPENT_TOKENS_TABLE}): ${r.spentTokens.total}; a hash per token and its token key's id, with no time and no account ` +
      '(rows go when their key retires with its epoch; epoch and class known while the token key file holds the key)' +
      (r.spentTokens.keys.length
        ? '\n' +
          renderTable(
            ['token key id', 'epoch', 'size class', 'spent'],
            r.spentTokens.keys.map((k) => [`${k.keyIdPrefix}…`, String(k.epoch ?? '-'), String(k.sizeClass ?? '-'), String(k.spent)]),
          )
        : '')
  );
}

/**
 * One CSV with a `record` column: a 'target' line per target, then its
 * 'bucket_fetch' lines, the 'evaluation' lines (paid with an account), the
 * 'token_evaluation' lines, an 'account' line per account (ts: its
 * creation; count: the elements' worth issued in the range) with its
 * 'issuance' lines (ts: the day; count: the elements' worth issued that
 * day), and a 'spent_tokens' line per token key (count: tokens spent).
 */
export function blindedCsv(r: BlindedAudit): string {
  const header = [
    'record', 'target', 'linked_rows', 'registered', 'epoch', 'bucket_bits', 'bucket', 'registered_in_bucket', 'anonymity_set',
    'ts', 'time', 'account_id', 'email', 'ip', 'count', 'same_ip_requesters', 'relay', 'size_class', 'same_ip_token_evaluations', 'key_id',
  ] as const;
  const line = (v: Partial<Record<(typeof header)[number], string | number | boolean | null | undefined>>) => csvRecord(header.map((h) => v[h]));
  const lines = [csvRecord(header)];
  for (const t of r.targets) {
    lines.push(
      line({
        record: 'target', target: t.target, linked_rows: t.linkedRows, registered: t.registered, epoch: t.epoch, bucket_bits: t.bucketBits,
        bucket: t.bucket, registered_in_bucket: t.registeredInBucket, anonymity_set: t.anonymitySet?.estimate,
      }),
    );
    for (const e of t.epochs) {
      for (const f of e.fetches) {
        lines.push(
          line({
            record: 'bucket_fetch', target: t.target, epoch: f.epoch, bucket_bits: e.bucketBits, bucket: f.bucket, ts: f.ts, time: isoTime(f.ts), ip: f.ip,
            count: f.count, same_ip_requesters: f.sameIpRequesters.join(' '), relay: f.relay, same_ip_token_evaluations: f.sameIpTokenEvaluations,
          }),
        );
      }
    }
  }
  for (const e of r.evaluations.rows) {
    lines.push(line({ record: 'evaluation', epoch: e.epoch, ts: e.ts, time: isoTime(e.ts), account_id: e.accountId, email: e.email, ip: e.ip, count: e.count }));
  }
  for (const x of r.tokenEvaluations.rows) {
    lines.push(line({ record: 'token_evaluation', epoch: x.epoch, ts: x.ts, time: isoTime(x.ts), ip: x.ip, count: x.count, relay: x.relay, size_class: x.sizeClass }));
  }
  for (const a of r.accounts) {
    lines.push(line({ record: 'account', account_id: a.accountId, email: a.email, ts: a.createdAt, time: isoTime(a.createdAt), count: a.issuedElements }));
    for (const d of a.issuance) lines.push(line({ record: 'issuance', ts: d.day, time: isoTime(d.day), account_id: a.accountId, email: a.email, count: d.elements }));
  }
  for (const k of r.spentTokens.keys) lines.push(line({ record: 'spent_tokens', epoch: k.epoch, count: k.spent, size_class: k.sizeClass, key_id: k.keyIdPrefix }));
  return lines.join('\n');
}
