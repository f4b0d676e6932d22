/**
 * Strict shape checks for wire messages: a few combinators, no dependency.
 *
 * A schema turns an untrusted decoded body into a typed value or throws a
 * PcdError whose message names the field path and what was wrong
 * (`elements[3]: expected 32 bytes, got 31`). Byte fields are Uint8Array in
 * MessagePack and base64 strings in JSON; `bytes()` accepts the form of the
 * format being read, so the rest of the code only ever sees Uint8Array.
 *
 * `object()` rejects unknown keys when `strict` (server reading requests) and
 * ignores them otherwise (client reading replies, so servers can add fields).
 */
import { base64ToBytes } from './bytes.ts';
import { ErrorCode, PcdError } from './errors.ts';

export type Format = 'msgpack' | 'json';

export interface CheckContext {
  readonly format: Format;
  /** Error code for a failed check: invalid_field on requests, malformed_reply on replies. */
  readonly code: ErrorCode;
  /** Reject keys an object schema does not name. */
  readonly strict: boolean;
}

export interface Schema<T> {
  readonly check: (value: unknown, path: string, ctx: CheckContext) => T;
}
export type Infer<S> = S extends Schema<infer T> ? T : never;

function fail(ctx: CheckContext, path: string, message: string, code: ErrorCode = ctx.code): never {
  throw new PcdError(code, path ? `${path}: ${message}` : message);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (value instanceof Uint8Array) return `${value.length} bytes`;
  if (typeof value === 'string') return value.length > 40 ? `a string of ${value.length} characters` : JSON.stringify(value);
  return typeof value;
}

export function string(opts: { max: number; min?: number; pattern?: RegExp; what?: string }): Schema<string> {
  return {
    check(value, path, ctx) {
      if (typeof value !== 'string') fail(ctx, path, `expected ${opts.what ?? 'a string'}, got ${describe(value)}`);
      if (value.length > opts.max) fail(ctx, path, `expected at most ${opts.max} characters, got ${value.length}`);
      if (value.length < (opts.min ?? 0)) fail(ctx, path, `expected at least ${opts.min} characters, got ${value.length}`);
      if (opts.pattern && !opts.pattern.test(value)) fail(ctx, path, `expected ${opts.what ?? `a string matching ${opts.pattern}`}, got ${describe(value)}`);
      return value;
    },
  };
}

export function integer(opts: { min: number; max: number }): Schema<number> {
  return {
    check(value, path, ctx) {
      if (typeof value !== 'number' || !Number.isInteger(value)) fail(ctx, path, `expected an integer, got ${describe(value)}`);
      if (value < opts.min || value > opts.max) fail(ctx, path, `expected an integer from ${opts.min} to ${opts.max}, got ${value}`);
      return value;
    },
  };
}

/** A finite number (fractions allowed) in [min, max]. */
export function number(opts: { min: number; max: number }): Schema<number> {
  return {
    check(value, path, ctx) {
      if (typeof value !== 'number' || !Number.isFinite(value)) fail(ctx, path, `expected a number, got ${describe(value)}`);
      if (value < opts.min || value > opts.max) fail(ctx, path, `expected a number from ${opts.min} to ${opts.max}, got ${value}`);
      return value;
    },
  };
}

/** A table cell as a log row holds it: a string of at most `max` characters, a finite number, or null. */
export function cell(opts: { max: number }): Schema<string | number | null> {
  return {
    check(value, path, ctx) {
      if (value === null || (typeof value === 'number' && Number.isFinite(value))) return value;
      if (typeof value !== 'string') fail(ctx, path, `expected a string, a number or null, got ${describe(value)}`);
      if (value.length > opts.max) fail(ctx, path, `expected at most ${opts.max} characters, got ${value.length}`);
      return value;
    },
  };
}

/** An object used as a map: at most `max` keys, each matching `key`, every value checked. */
export function record<T>(value: Schema<T>, opts: { max: number; key: RegExp }): Schema<Record<string, T>> {
  return {
    check(v, path, ctx) {
      if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array) fail(ctx, path, `expected an object, got ${describe(v)}`);
      const entries = Object.entries(v as Record<string, unknown>);
      if (entries.length > opts.max) fail(ctx, path, `expected at most ${opts.max} keys, got ${entries.length}`);
      const out: Record<string, T> = {};
      for (const [k, x] of entries) {
        if (!opts.key.test(k)) fail(ctx, path, `unexpected key ${describe(k)}`);
        out[k] = value.check(x, `${path}.${k.slice(0, 40)}`, ctx);
      }
      return out;
    },
  };
}

export function boolean(): Schema<boolean> {
  return {
    check(value, path, ctx) {
      if (typeof value !== 'boolean') fail(ctx, path, `expected a boolean, got ${describe(value)}`);
      return value;
    },
  };
}

export function literal<const L extends string>(...values: L[]): Schema<L> {
  return {
    check(value, path, ctx) {
      if (typeof value !== 'string' || !(values as string[]).includes(value)) {
        fail(ctx, path, `expected one of ${values.join(', ')}, got ${describe(value)}`);
      }
      return value as L;
    },
  };
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** A byte string: exactly `length` bytes, or up to `max` bytes. */
/**
 * Bytes: `bin` in MessagePack, base64 in JSON. `requestCode` is the code of a
 * failed check in a request when it is not invalid_field: a blinded element
 * of the wrong size is invalid_element, as the crypto's own element check
 * says of a bad encoding (shared/voprf.ts elementProblem); in a reply every
 * failure stays malformed_reply.
 */
export function bytes(opts: { length?: number; max?: number; multipleOf?: number; requestCode?: ErrorCode }): Schema<Uint8Array> {
  return {
    check(value, path, outer) {
      const ctx = opts.requestCode && outer.code === ErrorCode.InvalidField ? { ...outer, code: opts.requestCode } : outer;
      let out: Uint8Array;
      if (ctx.format === 'json') {
        if (typeof value !== 'string') fail(ctx, path, `expected base64 bytes, got ${describe(value)}`);
        // Bound the work before decoding: base64 is 4 characters per 3 bytes.
        const limit = opts.length ?? opts.max ?? Infinity;
        if (value.length > Math.ceil(limit / 3) * 4 || value.length % 4 !== 0 || !BASE64.test(value)) {
          fail(ctx, path, `expected base64 bytes${opts.length !== undefined ? ` (${opts.length} bytes)` : ''}, got ${describe(value)}`);
        }
        out = base64ToBytes(value);
      } else {
        if (!(value instanceof Uint8Array)) fail(ctx, path, `expected bytes, got ${describe(value)}`);
        out = value;
      }
      if (opts.length !== undefined && out.length !== opts.length) fail(ctx, path, `expected ${opts.length} bytes, got ${out.length}`);
      if (opts.max !== undefined && out.length > opts.max) fail(ctx, path, `expected at most ${opts.max} bytes, got ${out.length}`);
      if (opts.multipleOf !== undefined && out.length % opts.multipleOf !== 0) fail(ctx, path, `expected a multiple of ${opts.multipleOf} bytes, got ${out.length}`);
      return out;
    },
  };
}

/** An array of at most `max` items; too many is its own error code. */
export function array<T>(item: Schema<T>, opts: { max: number; min?: number }): Schema<T[]> {
  return {
    check(value, path, ctx) {
      if (!Array.isArray(value)) fail(ctx, path, `expected an array, got ${describe(value)}`);
      if (value.length > opts.max) {
        fail(ctx, path, `at most ${opts.max} items per request, got ${value.length}`, ctx.code === ErrorCode.InvalidField ? ErrorCode.TooManyItems : ctx.code);
      }
      if (value.length < (opts.min ?? 0)) fail(ctx, path, `expected at least ${opts.min} items, got ${value.length}`);
      const out = new Array<T>(value.length);
      for (let i = 0; i < value.length; i++) out[i] = item.check(value[i], `${path}[${i}]`, ctx);
      return out;
    },
  };
}

type Fields = Record<string, Schema<unknown>>;
type OptionalKeys<F extends Fields> = { [K in keyof F]: F[K] extends OptionalSchema<unknown> ? K : never }[keyof F];
export type ObjectOf<F extends Fields> = { [K in Exclude<keyof F, OptionalKeys<F>>]: Infer<F[K]> } & {
  [K in OptionalKeys<F>]?: Infer<F[K]>;
};

export interface OptionalSchema<T> extends Schema<T | undefined> {
  readonly optional: true;
}

export function optional<T>(inner: Schema<T>): OptionalSchema<T> {
  return {
    optional: true,
    check(value, path, ctx) {
      return value === undefined || value === null ? undefined : inner.check(value, path, ctx);
    },
  };
}

export function object<F extends Fields>(fields: F): Schema<ObjectOf<F>> {
  const names = Object.keys(fields);
  return {
    check(value, path, ctx) {
      if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array) {
        fail(ctx, path, `expected an object, got ${describe(value)}`);
      }
      const record = value as Record<string, unknown>;
      if (ctx.strict) {
        for (const key of Object.keys(record)) {
          if (!Object.hasOwn(fields, key)) fail(ctx, path, `unknown field '${key.slice(0, 40)}' (expected ${names.join(', ') || 'no fields'})`);
        }
      }
      const out: Record<string, unknown> = {};
      for (const name of names) {
        const schema = fields[name]!;
        const v = Object.hasOwn(record, name) ? record[name] : undefined;
        if (v === undefined && !('optional' in schema)) fail(ctx, path ? `${path}.${name}` : name, 'missing');
        const checked = schema.check(v, path ? `${path}.${name}` : name, ctx);
        if (checked !== undefined) out[name] = checked;
      }
      return out as ObjectOf<F>;
    },
  };
}

/** Checks a request body (strict, invalid_field). */
export function parseRequest<T>(schema: Schema<T>, value: unknown, format: Format): T {
  return schema.check(value, '', { format, code: ErrorCode.InvalidField, strict: true });
}

/** Checks a reply body (tolerant of extra fields, malformed_reply). */
export function parseReply<T>(schema: Schema<T>, value: unknown, format: Format): T {
  return schema.check(value, '', { format, code: ErrorCode.MalformedReply, strict: false });
}
