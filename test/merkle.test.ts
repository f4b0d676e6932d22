/**
 * The Merkle tree over an epoch's buckets (shared/merkle.ts) and the
 * server's incremental copy of it (server/blinded/tree.ts, kept by
 * server/blinded/table.ts).
 *
 * - The leaf and node hashes byte for byte, written out here from the
 *   layout (RFC 6962 §2.1 domain separation) and hashed with node:crypto,
 *   not with the code under test; fixed trees of one, two and four leaves.
 * - Properties (fast-check): every leaf's audit path leads to the root; a
 *   tree with one leaf changed has another root; a path does not prove
 *   another bucket, another epoch, a bucket with a tag dropped or a mask
 *   changed, or a path of the wrong length.
 * - The server's tree, whatever its stored height, gives the same root and
 *   paths as the reference after any sequence of changes, and the table's
 *   root follows its buckets.
 */
import crypto from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Bucket, compareTags } from '../shared/buckets.ts';
import {
  DIGEST_BYTES,
  auditPath,
  bucketLeafData,
  bucketLeafHash,
  merkleRoot,
  nobleSha256,
  nodeHash,
  rootFromPath,
  verifyBucketPath,
  type BucketLeaf,
  type Digest,
} from '../shared/merkle.ts';
import { BucketTable } from '../server/blinded/table.ts';
import { BucketTree, nodeSha256 } from '../server/blinded/tree.ts';
import { runs } from './helpers.ts';

const sha = (...parts: (Uint8Array | string)[]) => {
  const h = crypto.createHash('sha256');
  for (const p of parts) h.update(typeof p === 'string' ? Buffer.from(p, 'hex') : p);
  return new Uint8Array(h.digest());
};
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** A bucket's tags in ascending order and one nonzero mask each. */
function bucketContent(tagBytes: number, seeds: readonly Uint8Array[], masks: readonly number[]): { tags: Uint8Array; capabilities: Uint8Array } {
  const distinct = [...new Map(seeds.map((t) => [hex(t), t])).values()].sort((a, b) => compareTags(a, 0, b, 0, tagBytes));
  const tags = new Uint8Array(distinct.length * tagBytes);
  distinct.forEach((t, i) => tags.set(t, i * tagBytes));
  return { tags, capabilities: Uint8Array.from(distinct, (_, i) => masks[i % Math.max(1, masks.length)] ?? 1) };
}

const TAG_BYTES = 4;
const tagArb = fc.uint8Array({ minLength: TAG_BYTES, maxLength: TAG_BYTES });
const maskArb = fc.integer({ min: 1, max: 3 });
const contentArb = fc
  .tuple(fc.array(tagArb, { maxLength: 6 }), fc.array(maskArb, { minLength: 1, maxLength: 6 }))
  .map(([seeds, masks]) => bucketContent(TAG_BYTES, seeds, masks));
/** An epoch's buckets: 2^bits of them, bits 0 to 6. */
const epochArb = fc
  .tuple(fc.integer({ min: 1, max: 2 ** 31 - 1 }), fc.integer({ min: 0, max: 6 }))
  .chain(([epoch, bits]) => fc.array(contentArb, { minLength: 2 ** bits, maxLength: 2 ** bits }).map((buckets) => ({ epoch, bits, buckets })));

const leavesOf = (epoch: number, buckets: readonly { tags: Uint8Array; capabilities: Uint8Array }[]): BucketLeaf[] =>
  buckets.map((b, bucket) => ({ epoch, bucket, ...b }));

describe('leaf and node hashes (RFC 6962 §2.1 style)', () => {
  const leaf: BucketLeaf = { epoch: 7, bucket: 2, tags: Uint8Array.from([1, 2, 3, 4, 9, 9, 9, 9]), capabilities: Uint8Array.from([1, 3]) };
  // "pcd-bucket-v1" || u32be(7) || u32be(2) || u32be(2) || tags || masks
  const data = Buffer.from('pcd-bucket-v1').toString('hex') + '00000007' + '00000002' + '00000002' + '0102030409090909' + '0103';

  it('lays a leaf out as label, epoch, bucket id, tag count, tags, masks', () => {
    expect(hex(bucketLeafData(leaf))).toBe(data);
  });

  it('hashes a leaf with 0x00 before its data and a node with 0x01 before its children', () => {
    expect(hex(bucketLeafHash(leaf))).toBe(hex(sha('00' + data)));
    const a = sha('aa');
    const b = sha('bb');
    expect(hex(nodeHash(a, b))).toBe(hex(sha('01', a, b)));
    // A node is never a leaf: the same bytes under the other prefix hash differently.
    expect(hex(nodeHash(a, b))).not.toBe(hex(sha('00', a, b)));
  });

  it('gives the same bytes with node:crypto as with noble', () => {
    expect(hex(bucketLeafHash(leaf, nodeSha256))).toBe(hex(bucketLeafHash(leaf, nobleSha256)));
  });

  it('builds fixed trees of one, two and four leaves; an empty bucket is a leaf too', () => {
    const empty = { tags: new Uint8Array(0), capabilities: new Uint8Array(0) };
    const l = [0, 1, 2, 3].map((bucket) => bucketLeafHash({ epoch: 1, bucket, ...empty }));
    expect(hex(l[0]!)).toBe(hex(sha('00' + Buffer.from('pcd-bucket-v1').toString('hex') + '00000001' + '00000000' + '00000000')));
    // bucketBits 0: the one leaf is the root, the path is empty.
    expect(hex(merkleRoot([l[0]!]))).toBe(hex(l[0]!));
    expect(auditPath([l[0]!], 0)).toEqual([]);
    expect(verifyBucketPath({ epoch: 1, bucket: 0, ...empty }, [], l[0]!, 0)).toBe(true);
    expect(hex(merkleRoot(l.slice(0, 2)))).toBe(hex(sha('01', l[0]!, l[1]!)));
    const root4 = sha('01', sha('01', l[0]!, l[1]!), sha('01', l[2]!, l[3]!));
    expect(hex(merkleRoot(l))).toBe(hex(root4));
    // Leaf to root: the sibling leaf, then the sibling node.
    expect(auditPath(l, 2).map(hex)).toEqual([hex(l[3]!), hex(sha('01', l[0]!, l[1]!))]);
    expect(verifyBucketPath({ epoch: 1, bucket: 2, ...empty }, auditPath(l, 2), root4, 2)).toBe(true);
  });

  it('refuses a leaf count that is not a power of two', () => {
    expect(() => merkleRoot([])).toThrow(/power-of-two/);
    expect(() => merkleRoot([sha('aa'), sha('bb'), sha('cc')])).toThrow(/power-of-two/);
  });
});

describe('paths (properties)', () => {
  it('every leaf’s path leads to the root, and verifies as its bucket', () => {
    fc.assert(
      fc.property(epochArb, fc.nat(), ({ epoch, bits, buckets }, pick) => {
        const leaves = leavesOf(epoch, buckets);
        const hashes = leaves.map((l) => bucketLeafHash(l));
        const root = merkleRoot(hashes);
        const i = pick % hashes.length;
        const path = auditPath(hashes, i);
        expect(path).toHaveLength(bits);
        expect(hex(rootFromPath(hashes[i]!, i, path))).toBe(hex(root));
        expect(verifyBucketPath(leaves[i]!, path, root, bits)).toBe(true);
      }),
      { numRuns: runs(300) },
    );
  });

  it('one leaf changed gives another root', () => {
    fc.assert(
      fc.property(epochArb, fc.nat(), tagArb, ({ epoch, buckets }, pick, extra) => {
        const leaves = leavesOf(epoch, buckets);
        const root = merkleRoot(leaves.map((l) => bucketLeafHash(l)));
        const i = pick % leaves.length;
        const before = Bucket.fromWire(leaves[i]!.tags, leaves[i]!.capabilities, TAG_BYTES);
        const present = before.indexOf(extra) >= 0;
        // Add the tag, or drop it when it is there.
        const after = before.with(extra, present ? 0 : 1);
        const changed = leaves.map((l, j) => (j === i ? { ...l, tags: after.tags, capabilities: after.capabilities } : l));
        expect(hex(merkleRoot(changed.map((l) => bucketLeafHash(l))))).not.toBe(hex(root));
      }),
      { numRuns: runs(300) },
    );
  });

  it('a path proves only its own bucket: not another bucket, epoch, a dropped tag, a changed mask or a wrong length', () => {
    fc.assert(
      fc.property(
        epochArb.filter((e) => e.bits >= 1),
        fc.nat(),
        fc.nat(),
        ({ epoch, bits, buckets }, pick, other) => {
          const leaves = leavesOf(epoch, buckets);
          const hashes = leaves.map((l) => bucketLeafHash(l));
          const root = merkleRoot(hashes);
          const i = pick % leaves.length;
          const path = auditPath(hashes, i);
          const leaf = leaves[i]!;
          // Another bucket's content under i's path, or i's content claimed as another bucket id.
          const j = (i + 1 + (other % (leaves.length - 1))) % leaves.length;
          expect(verifyBucketPath({ ...leaves[j]!, bucket: j }, path, root, bits)).toBe(false);
          expect(verifyBucketPath({ ...leaf, bucket: j }, path, root, bits)).toBe(false);
          expect(verifyBucketPath({ ...leaf, epoch: epoch === 1 ? 2 : epoch - 1 }, path, root, bits)).toBe(false);
          if (leaf.capabilities.length > 0) {
            const k = other % leaf.capabilities.length;
            const dropped = Bucket.fromWire(leaf.tags, leaf.capabilities, TAG_BYTES).with(leaf.tags.slice(k * TAG_BYTES, (k + 1) * TAG_BYTES), 0);
            expect(verifyBucketPath({ ...leaf, tags: dropped.tags, capabilities: dropped.capabilities }, path, root, bits)).toBe(false);
            const masks = leaf.capabilities.slice();
            masks[k] = masks[k] === 1 ? 2 : 1;
            expect(verifyBucketPath({ ...leaf, capabilities: masks }, path, root, bits)).toBe(false);
          }
          expect(verifyBucketPath(leaf, path.slice(1), root, bits)).toBe(false);
          expect(verifyBucketPath(leaf, [...path, root], root, bits)).toBe(false);
          expect(verifyBucketPath(leaf, path, root, bits + 1)).toBe(false);
        },
      ),
      { numRuns: runs(300) },
    );
  });
});

describe('the server’s tree (server/blinded/tree.ts)', () => {
  /** Buckets that change under the tree, and the reference root and paths of them as they are. */
  function model(epoch: number, bits: number, initial: readonly { tags: Uint8Array; capabilities: Uint8Array }[]) {
    const buckets = [...initial];
    const leaf = (b: number) => bucketLeafHash({ epoch, bucket: b, ...buckets[b]! }, nodeSha256);
    return {
      buckets,
      leaf,
      root: () => merkleRoot(buckets.map((_, b) => leaf(b))),
      path: (b: number) => auditPath(buckets.map((_, i) => leaf(i)), b),
    };
  }

  it('gives the reference root and paths after any changes, at every stored height', async () => {
    await fc.assert(
      fc.asyncProperty(
        epochArb,
        fc.integer({ min: 0, max: 7 }),
        fc.array(fc.tuple(fc.nat(), contentArb, fc.boolean()), { maxLength: 12 }),
        async ({ epoch, bits, buckets }, storedBits, changes) => {
          const m = model(epoch, bits, buckets);
          const tree = new BucketTree(bits, m.leaf, { storedBits });
          expect(tree.low).toBe(Math.max(0, bits - storedBits));
          await tree.ready();
          expect(hex(tree.root())).toBe(hex(m.root()));
          for (const [pick, content, read] of changes) {
            const b = pick % m.buckets.length;
            m.buckets[b] = content;
            tree.changed(b);
            if (!read) continue; // several changes before the next read: one refresh
            await tree.ready();
            expect(hex(tree.root())).toBe(hex(m.root()));
            expect(tree.path(b).map(hex)).toEqual(m.path(b).map(hex));
          }
          await tree.ready();
          expect(hex(tree.root())).toBe(hex(m.root()));
          const any = (changes.length * 7) % m.buckets.length;
          expect(tree.path(any).map(hex)).toEqual(m.path(any).map(hex));
        },
      ),
      { numRuns: runs(200) },
    );
  });

  it('takes changes made while its first computation runs, and refreshes a large burst in slices', async () => {
    const bits = 12;
    const empty = { tags: new Uint8Array(0), capabilities: new Uint8Array(0) };
    const m = model(3, bits, Array.from({ length: 2 ** bits }, () => empty));
    const tree = new BucketTree(bits, m.leaf, { storedBits: 10 });
    const first = tree.ready();
    m.buckets[5] = bucketContent(TAG_BYTES, [Uint8Array.of(1, 2, 3, 4)], [1]);
    tree.changed(5);
    await first;
    expect(hex(tree.root())).toBe(hex(m.root()));
    for (let b = 0; b < 2 ** bits; b += 2) {
      m.buckets[b] = bucketContent(TAG_BYTES, [Uint8Array.of(b & 255, b >> 8, 0, 1)], [2]);
      tree.changed(b);
    }
    expect(tree.isReady).toBe(false); // too many to rehash in the step that reads the root
    await tree.ready();
    expect(tree.isReady).toBe(true);
    expect(hex(tree.root())).toBe(hex(m.root()));
    expect(tree.path(4094).map(hex)).toEqual(m.path(4094).map(hex));
  });

  it('says how far its first computation is and how long it has left', async () => {
    const bits = 15;
    const empty = { tags: new Uint8Array(0), capabilities: new Uint8Array(0) };
    const m = model(4, bits, Array.from({ length: 2 ** bits }, () => empty));
    const tree = new BucketTree(bits, m.leaf);
    expect(tree.etaSeconds()).toBeGreaterThan(0); // nothing computed yet: estimated
    const done = tree.ready(); // the first slice runs now, the rest after yields
    expect(tree.isReady).toBe(false);
    expect(tree.computing).toMatchObject({ first: true, total: 2 ** (bits + 1) - 1 });
    expect(tree.computing!.done).toBeGreaterThan(0);
    await done;
    expect(tree.etaSeconds()).toBe(0);
    expect(tree.computing).toBeUndefined();
    expect(hex(tree.root())).toBe(hex(m.root()));
  });

  it('refuses to be read before it is computed', () => {
    expect(() => new BucketTree(2, () => new Uint8Array(DIGEST_BYTES)).root()).toThrow(/await ready/);
  });
});

describe('a bucket table’s root (server/blinded/table.ts)', () => {
  it('follows registrations and removals; the ETag commits to the leaf', async () => {
    const bits = 3;
    const tagBytes = 8;
    const table = BucketTable.fromCounts(9, bits, tagBytes, new Uint32Array(2 ** bits), new Uint8Array(0), new Uint8Array(0));
    const reference = () => {
      const leaves: Digest[] = [];
      for (let b = 0; b < 2 ** bits; b++) leaves.push(bucketLeafHash({ epoch: 9, bucket: b, ...table.view(b) }));
      return merkleRoot(leaves);
    };
    await table.merkle.ready();
    const empty = hex(table.merkle.root());
    expect(empty).toBe(hex(reference()));
    const etag = table.etag(5);
    expect(etag).toBe(`"e9-b5-${hex(bucketLeafHash({ epoch: 9, bucket: 5, ...table.view(5) })).slice(0, 16)}"`);

    const tag = Uint8Array.from({ length: tagBytes }, (_, i) => i + 1);
    table.set(5, tag, 1);
    await table.merkle.ready();
    const one = hex(table.merkle.root());
    expect(one).not.toBe(empty);
    expect(one).toBe(hex(reference()));
    expect(table.etag(5)).not.toBe(etag);
    expect(verifyBucketPath({ epoch: 9, bucket: 5, ...table.view(5) }, table.merkle.path(5), table.merkle.root(), bits)).toBe(true);

    table.set(5, tag, 0); // removed again: the same content, the same root and ETag
    await table.merkle.ready();
    expect(hex(table.merkle.root())).toBe(empty);
    expect(table.etag(5)).toBe(etag);
    // Merging the overlay into the base changes no content: nothing to rehash.
    table.set(2, tag, 3);
    table.compact();
    await table.merkle.ready();
    expect(hex(table.merkle.root())).toBe(hex(reference()));
    // A bucket too large for the one-call path (over 1 KiB) hashes the same.
    for (let i = 0; i < 300; i++) table.set(6, Uint8Array.from({ length: tagBytes }, (_, k) => (k === 0 ? i >> 8 : k === 1 ? i & 255 : 7)), 1);
    await table.merkle.ready();
    expect(table.view(6).capabilities).toHaveLength(300);
    expect(hex(table.merkle.root())).toBe(hex(reference()));
  });
});
