/**
 * Command-line options and value parsers that several commands share (client,
 * server, bench), built once here and added by each command that takes them.
 */
import { InvalidArgumentError, Option } from 'commander';
import { BACKEND_ENV, backendFromEnv } from '../shared/defaults.ts';
import { ErrorCode, PcdError } from '../shared/errors.ts';
import { BACKENDS } from '../shared/suite.ts';
import { sizeClassProblem } from '../shared/tokens.ts';

/** `--backend <name>`: the blinded design's crypto backend, defaulting to PCD_BACKEND, else the suite's default. */
export function backendOption(): Option {
  return new Option('--backend <name>', `crypto backend of the blinded design (env ${BACKEND_ENV})`).choices([...BACKENDS]).default(backendFromEnv());
}

/** A commander parser for a whole number in [min, max]; anything else is a one-line error naming the option. */
export function int(name: string, min = 0, max = Number.MAX_SAFE_INTEGER) {
  return (v: string): number => {
    const n = /^\s*-?\d+\s*$/.test(v) ? Number(v) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      throw new PcdError(ErrorCode.InvalidField, `${name} must be a whole number from ${min} to ${max.toLocaleString('en-US')}, got '${v.slice(0, 40)}'`);
    }
    return n;
  };
}

/** A commander parser for a number in [min, max] (fractions allowed). */
export function num(name: string, min: number, max: number) {
  return (v: string): number => {
    const n = v.trim() === '' ? Number.NaN : Number(v);
    if (!Number.isFinite(n) || n < min || n > max) throw new PcdError(ErrorCode.InvalidField, `${name} must be a number from ${min} to ${max}, got '${v.slice(0, 40)}'`);
    return n;
  };
}

/** `--size-classes 1,16,256,4096`: ascending whole numbers up to the batch limit (shared/tokens.ts sizeClassProblem). */
export function sizeClassList(value: string): number[] {
  const classes = value.split(',').map((v) => Number(v.trim()));
  const problem = sizeClassProblem(classes);
  if (problem) throw new InvalidArgumentError(`${problem} (got '${value.slice(0, 80)}')`);
  return classes;
}
