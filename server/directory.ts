/**
 * The in-memory directory index: every registered number's capability mask,
 * keyed by the number's digits (e164ToKey) in a compact KeyTable. Loaded
 * from the store at start; every registration or deletion updates it before
 * the admin call returns, so the very next lookup sees it.
 */
import type { CapabilityMask } from '../shared/capabilities.ts';
import type { DirectoryChange } from '../shared/design.ts';
import { e164ToKey, keyToE164, type E164 } from '../shared/e164.ts';
import { KeyTable } from './keytable.ts';
import type { Store } from './store.ts';

export class Directory {
  private readonly table: KeyTable;

  private constructor(expected: number) {
    this.table = new KeyTable(Uint8Array, false, expected);
  }

  static load(store: Store): Directory {
    const d = new Directory(store.directorySize());
    for (const { number, mask } of store.directory()) d.table.set(e164ToKey(number), mask);
    return d;
  }

  get size(): number {
    return this.table.size;
  }

  get byteLength(): number {
    return this.table.byteLength;
  }

  /** Capability mask of a number; 0 when it is not registered. */
  mask(number: E164): CapabilityMask {
    return this.table.get(e164ToKey(number));
  }

  apply(changes: readonly DirectoryChange[]): void {
    for (const { number, mask } of changes) {
      if (mask === 0) this.table.delete(e164ToKey(number));
      else this.table.set(e164ToKey(number), mask);
    }
  }

  *entries(): Generator<DirectoryChange> {
    for (const [key, mask] of this.table.entries()) yield { number: keyToE164(key), mask };
  }
}
