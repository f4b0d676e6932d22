/**
 * Each crypto backend runs on its own library. The cross-checks and the RFC
 * 9497 vectors would all pass if the sodium backend delegated to noble (or
 * the other way round), so this counts the calls each backend makes into
 * libsodium's ristretto255 functions and into @noble/curves' point
 * multiplication during one whole round: the sodium backend must call
 * libsodium and never noble's points, the noble backend the reverse.
 */
import { ristretto255 } from '@noble/curves/ed25519.js';
import { utf8ToBytes } from '@noble/hashes/utils.js';
import sodium from 'libsodium-wrappers-sumo';
import { describe, expect, it } from 'vitest';
import type { OprfBackend } from '../shared/suite.ts';
import { bothBackends } from './backends.ts';

const SODIUM_CALLS = ['crypto_scalarmult_ristretto255', 'crypto_scalarmult_ristretto255_base', 'crypto_core_ristretto255_from_hash'] as const;
const NOBLE_CALLS = ['multiply', 'multiplyUnsafe'] as const;

/** Wraps the named methods of `target` (found on it or up its prototype chain) to count calls; returns the counts and a restore. */
function counting(target: object, names: readonly string[]): { calls: () => number; restore: () => void } {
  let calls = 0;
  const restores: (() => void)[] = [];
  for (const name of names) {
    let owner: object | null = target;
    while (owner && !Object.prototype.hasOwnProperty.call(owner, name)) owner = Object.getPrototypeOf(owner);
    if (!owner) throw new Error(`no method ${name} to count`);
    const holder = owner as Record<string, unknown>;
    const original = holder[name] as (...a: unknown[]) => unknown;
    holder[name] = function (this: unknown, ...args: unknown[]) {
      calls++;
      return original.apply(this, args);
    };
    restores.push(() => (holder[name] = original));
  }
  return { calls: () => calls, restore: () => restores.forEach((r) => r()) };
}

/** One whole VOPRF round, the split batch, and Evaluate. */
function round(b: OprfBackend): void {
  const key = b.generateKeyPair();
  const inputs = ['+16505550100', '+16505550101', '+16505550102'].map((x) => utf8ToBytes(x));
  const { blinds, blinded } = b.blindBatch('voprf', inputs);
  const reply = b.blindEvaluateBatch('voprf', key, blinded);
  b.finalizeBatch('voprf', { inputs, blinds, blinded, evaluated: reply.evaluated }, key.publicKey, reply.proof);
  const part = b.evaluateChunk('voprf', key, blinded, 0);
  b.proveComposite(key, [part.composite!]);
  b.evaluate('voprf', key.secretKey, inputs[0]!);
}

describe('each backend runs on its own library', () => {
  it('sodium calls libsodium and never noble\u2019s points; noble calls its points and never libsodium', async () => {
    const { noble, sodium: sodiumBackend } = await bothBackends();
    await sodium.ready;
    const lib = counting(sodium, SODIUM_CALLS);
    const points = counting(ristretto255.Point.BASE, NOBLE_CALLS);
    try {
      round(sodiumBackend);
      expect(lib.calls()).toBeGreaterThan(10);
      expect(points.calls()).toBe(0);
      const before = lib.calls();
      round(noble);
      expect(points.calls()).toBeGreaterThan(10);
      expect(lib.calls()).toBe(before);
    } finally {
      lib.restore();
      points.restore();
    }
  });
});
