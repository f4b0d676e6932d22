/**
 * Bytes on the wire per lookup, per design, and for blinded per bucketBits,
 * over a fixed directory: the real client designs, from a cold start (no
 * cached config, tag or bucket), against real servers on loopback.
 *
 * Two counts for every exchange:
 * - body bytes, as the transport reports them (TransportReply.bytesSent /
 *   bytesReceived), per route;
 * - wire bytes, counted by a TCP relay between the client and the server:
 *   every byte of both directions, HTTP headers included (TCP/IP framing
 *   and TLS are not: loopback, plain HTTP).
 *
 * The blinded config fetch (once per epoch per client, shared by every
 * later lookup) is counted apart and left out of the per-lookup figures.
 * From the measured exchanges a model projects the bytes per lookup to
 * larger directories (labelled as a projection).
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { createClient } from '../client/client.ts';
import { createTransport } from '../client/transport.ts';
import type { RequestOptions, Transport } from '../shared/design.ts';
import { designLabel } from '../shared/designs/index.ts';
import { BlindedConfigReply, PATHS, type BucketReply, type DesignName } from '../shared/messages.ts';
import { DEFAULT_TAG_BYTES } from '../shared/buckets.ts';
import { forkServer, openTimeoutMs, type ServerChild } from '../harness/fork.ts';
import type { BandwidthExchange, BandwidthMark, Projection } from './results.ts';
import { BENCH_ADMIN_TOKEN, copyFolder, seedFolder, tempRoot, type SeededFolder } from './seeding.ts';

export interface BandwidthConfig {
  directorySize: number;
  bucketBits: number[];
  /** Numbers per lookup call: 1 is a single lookup, more a contact sync. */
  lookups: number[];
  /** Directory sizes the per-lookup bytes are projected to. */
  projectTo: number[];
  /** bucketBits the projection is drawn for. */
  projectBits: number[];
}

/**
 * A TCP relay on 127.0.0.1 that counts the bytes of both directions.
 *
 * The client's connection is kept open when the server closes its side of
 * an idle keep-alive connection (after its keep-alive timeout): the next
 * request the client sends on it goes out on a new upstream connection. A
 * plain pipe would pass the close on a moment late, and the client could
 * send its next request into a connection that is already going away.
 */
export async function countingRelay(target: URL): Promise<{ url: string; counts: { sent: number; received: number }; close: () => Promise<void> }> {
  const counts = { sent: 0, received: 0 };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    let upstream: net.Socket | undefined;
    const connect = (): net.Socket => {
      const u = net.connect(Number(target.port), target.hostname);
      sockets.add(u);
      u.on('data', (d: Buffer) => {
        counts.received += d.length;
        client.write(d);
      });
      const gone = () => {
        if (upstream === u) upstream = undefined;
        sockets.delete(u);
        u.destroy();
      };
      u.on('end', gone);
      u.on('close', gone);
      u.on('error', gone);
      return (upstream = u);
    };
    client.on('data', (d: Buffer) => {
      counts.sent += d.length;
      (upstream ?? connect()).write(d);
    });
    const end = () => {
      sockets.delete(client);
      client.destroy();
      upstream?.destroy();
    };
    client.on('end', end);
    client.on('close', end);
    client.on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    counts,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

function routeOf(method: string, p: string): string {
  return `${method} ${p.replace(/^\/v1\/blinded\/buckets\/\d+\/\d+$/, '/v1/blinded/buckets/{epoch}/{bucket}')}`;
}

/** Wraps a transport to count body bytes per route, and the entries of bucket replies. */
function recording(inner: Transport) {
  const routes = new Map<string, BandwidthExchange>();
  const bucketEntries: number[] = [];
  const transport: Transport = {
    async request<T>(o: RequestOptions<T>) {
      const r = await inner.request(o);
      const route = routeOf(o.method, o.path);
      const e = routes.get(route) ?? { route, requests: 0, bodySent: 0, bodyReceived: 0 };
      e.requests++;
      e.bodySent += r.bytesSent;
      e.bodyReceived += r.bytesReceived;
      routes.set(route, e);
      if (route.startsWith('GET /v1/blinded/buckets') && r.body) bucketEntries.push((r.body as unknown as BucketReply).capabilities.length);
      return r;
    },
  };
  return { transport, routes, bucketEntries };
}

interface Measured {
  mark: BandwidthMark;
  /** Wire bytes of the evaluate exchange and per bucket exchange (blinded), for the model. */
  evaluateWire?: number;
  bucketWireOverhead?: number;
}

async function measureOne(
  serverUrl: string,
  seeded: SeededFolder,
  design: DesignName,
  lookups: number,
  bucketBits: number | undefined,
): Promise<Measured> {
  const relay = await countingRelay(new URL(serverUrl));
  try {
    const contacts = seeded.contacts.slice(0, lookups);
    // The config, counted apart: a fresh client fetches it once per epoch.
    let configWire: number | undefined;
    if (design === 'blinded') {
      const before = relay.counts.sent + relay.counts.received;
      await createTransport({ baseUrl: relay.url }).request({ method: 'GET', path: PATHS.blindedConfig, reply: BlindedConfigReply, auth: false });
      configWire = relay.counts.sent + relay.counts.received - before;
    }
    const rec = recording(createTransport({ baseUrl: relay.url, token: seeded.token }));
    // With Privacy Pass tokens (the server's default), one token fetched per evaluate, when it is needed: the pool's
    // default keeps 8 single-lookup tokens ahead, which would put 8 issuances on one lookup's bill.
    const client = createClient({ baseUrl: relay.url, design, transport: rec.transport, tokens: { ahead: {} } });
    const sent0 = relay.counts.sent;
    const received0 = relay.counts.received;
    const results = await client.lookupMany(contacts.map((c) => c.number));
    results.forEach((r, i) => {
      if ((r.capabilities.length > 0) !== contacts[i]!.registered) throw new Error(`bandwidth ${design}: wrong answer for ${r.number}`);
    });
    // Reply bytes pass the relay before the client reads them, so they are all counted by now.
    const wireSent = relay.counts.sent - sent0;
    const wireReceived = relay.counts.received - received0;
    const exchanges = [...rec.routes.values()];
    const config = exchanges.find((e) => e.route === `GET ${PATHS.blindedConfig}`);
    const others = exchanges.filter((e) => e !== config);
    const bodySent = others.reduce((s, e) => s + e.bodySent, 0);
    const bodyReceived = others.reduce((s, e) => s + e.bodyReceived, 0);
    const configWireInRun = config && configWire !== undefined ? configWire * config.requests : 0;
    const wireNoConfig = wireSent + wireReceived - configWireInRun;
    const requests = others.reduce((s, e) => s + e.requests, 0);
    const label = designLabel(design, { bucketBits });
    const mark: BandwidthMark = {
      section: 'bandwidth',
      name: `bytes ${label}, ${lookups === 1 ? 'single lookup' : `sync of ${lookups}`}`,
      design,
      ...(bucketBits !== undefined ? { bucketBits } : {}),
      directorySize: seeded.numbers,
      lookups,
      requests,
      bodyBytesSent: bodySent,
      bodyBytesReceived: bodyReceived,
      wireBytesSent: wireSent,
      wireBytesReceived: wireReceived,
      bodyBytesPerLookup: (bodySent + bodyReceived) / lookups,
      wireBytesPerLookup: wireNoConfig / lookups,
      exchanges,
      ...(configWire !== undefined ? { configWireBytes: configWire } : {}),
    };
    const out: Measured = { mark };
    if (design === 'blinded') {
      // Split the wire bytes between the one evaluate exchange and the bucket exchanges by their body shares.
      const ev = others.find((e) => e.route.includes('evaluate'));
      const bk = others.find((e) => e.route.includes('buckets'));
      if (ev && bk) {
        const overheadPerExchange = (wireNoConfig - bodySent - bodyReceived) / (ev.requests + bk.requests);
        out.evaluateWire = (ev.bodySent + ev.bodyReceived) / ev.requests + overheadPerExchange;
        const entries = rec.bucketEntries.reduce((s, x) => s + x, 0);
        out.bucketWireOverhead = (bk.bodyReceived + bk.bodySent - entries * (DEFAULT_TAG_BYTES + 1)) / bk.requests + overheadPerExchange;
      }
    }
    return out;
  } finally {
    await relay.close();
  }
}

export async function runBandwidth(
  config: BandwidthConfig,
  log: (line: string) => void,
): Promise<{ marks: BandwidthMark[]; projections: Projection[]; notes: string[] }> {
  const root = tempRoot('pcd-bench-bw-');
  const marks: BandwidthMark[] = [];
  const models = new Map<number, { evaluateWire: number; bucketWireOverhead: number }>();
  try {
    const template = path.join(root, 'template');
    const seeded = seedFolder(template, config.directorySize, Math.max(...config.lookups));
    const common = { adminToken: BENCH_ADMIN_TOKEN, progress: false } as const;
    // Servers in child processes, as in the HTTP section: a fresh process per
    // configuration, and a build that hangs is killed rather than hanging the run.
    let child: ServerChild | undefined;

    try {
      const dataDir = copyFolder(template, path.join(root, 'plain-hashed'));
      child = forkServer();
      const { url } = await child.start({ ...common, dataDir, designs: ['plain', 'hashed'] }, openTimeoutMs(seeded.numbers));
      for (const lookups of config.lookups) {
        for (const design of ['plain', 'hashed'] as const) {
          const { mark } = await measureOne(url, seeded, design, lookups, undefined);
          marks.push(mark);
          log(`  ${mark.name.padEnd(40)} ${mark.requests} req, ${Math.round(mark.wireBytesPerLookup)} wire B/lookup (${Math.round(mark.bodyBytesPerLookup)} body B/lookup)`);
        }
      }
    } finally {
      await child?.close();
    }

    for (const b of config.bucketBits) {
      const dataDir = copyFolder(template, path.join(root, `blinded-${b}`));
      child = forkServer();
      try {
        const { url, seconds: buildSeconds } = await child.start({ ...common, dataDir, designs: ['blinded'], bucketBits: b }, openTimeoutMs(seeded.numbers));
        for (const lookups of config.lookups) {
          const m = await measureOne(url, seeded, 'blinded', lookups, b);
          marks.push(m.mark);
          if (lookups === 1 && m.evaluateWire !== undefined && m.bucketWireOverhead !== undefined) {
            models.set(b, { evaluateWire: m.evaluateWire, bucketWireOverhead: m.bucketWireOverhead });
          }
          log(
            `  ${m.mark.name.padEnd(40)} ${m.mark.requests} req, ${Math.round(m.mark.wireBytesPerLookup)} wire B/lookup (${Math.round(m.mark.bodyBytesPerLookup)} body B/lookup)` +
              (lookups === config.lookups[0] ? `  [server built in ${buildSeconds.toFixed(1)} s]` : ''),
          );
        }
      } finally {
        await child.close();
      }
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }

  // Model: one evaluate exchange (independent of the directory) plus the
  // bucket exchange, whose reply grows with the bucket: N / 2^b entries of
  // (tagBytes + 1) bytes. Overheads are the measured ones, averaged over b.
  const projections: Projection[] = [];
  const ms = [...models.values()];
  if (ms.length > 0) {
    const evaluateWire = ms.reduce((s, m) => s + m.evaluateWire, 0) / ms.length;
    const bucketOverhead = ms.reduce((s, m) => s + m.bucketWireOverhead, 0) / ms.length;
    for (const n of config.projectTo) {
      projections.push({
        projection: true,
        section: 'bandwidth',
        name: `blinded: wire bytes per single lookup at ${n.toExponential(0).replace('e+', 'e')} registered numbers, by bucketBits (model)`,
        basis: `measured at ${config.directorySize} numbers: evaluate exchange ${Math.round(evaluateWire)} B, bucket exchange ${Math.round(bucketOverhead)} B + ${DEFAULT_TAG_BYTES + 1} B per entry`,
        assumption: `one evaluate exchange + one bucket of N / 2^b entries (tag ${DEFAULT_TAG_BYTES} B + mask 1 B); HTTP headers as measured; config fetch excluded`,
        rows: config.projectBits.map((b) => ({
          label: `b = ${b}`,
          x: b,
          value: evaluateWire + bucketOverhead + (n / 2 ** b) * (DEFAULT_TAG_BYTES + 1),
          unit: 'bytes' as const,
        })),
      });
    }
  }
  return {
    marks,
    projections,
    notes: [
      'Bandwidth: wire bytes are every byte of the TCP stream between client and server (HTTP/1.1 headers and bodies, both directions), counted by a relay; body bytes are the encoded MessagePack bodies alone. Each figure is one cold client (no cached config, tags or buckets). The blinded config fetch (once per epoch per client) is excluded from per-lookup figures and shown apart.',
      'Bandwidth: the blinded server takes Privacy Pass tokens (the default), so a blinded lookup\'s bytes include the issuance of the one token its evaluate spends (POST /v1/tokens: a 259-byte token request, a 256-byte blind signature, and HTTP headers a client fetching tokens in batches shares among them) and the token in the evaluate request\'s Authorization header (~480 bytes); evaluate bodies hold the elements padded to the token\'s size class.',
    ],
  };
}
