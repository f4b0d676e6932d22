/**
 * The blinded design's `epochs` table as the server writes it and the audit
 * reads it, and the rule that picks the current epoch (both apply it).
 */

/** A row of the `epochs` table. */
export interface EpochRow {
  epoch: number;
  public_key: Buffer;
  mode: string;
  bucket_bits: number;
  tag_bytes: number;
  created_at: number;
  retires_at: number | null;
  destroyed_at: number | null;
}

/** The current epoch among live ones, oldest first: the newest that is not retiring, else the newest. The audit applies the same rule. */
export function pickCurrent<T>(live: readonly T[], retiring: (e: T) => boolean): T | undefined {
  return live.filter((e) => !retiring(e)).at(-1) ?? live.at(-1);
}
