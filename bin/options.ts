/**
 * Command-line options that several commands share (client, server, bench),
 * built once here and added by each command that takes them.
 */
import { Option } from 'commander';
import { BACKEND_ENV, backendFromEnv } from '../shared/defaults.ts';
import { BACKENDS } from '../shared/suite.ts';

/** `--backend <name>`: the blinded design's crypto backend, defaulting to PCD_BACKEND, else the suite's default. */
export function backendOption(): Option {
  return new Option('--backend <name>', `crypto backend of the blinded design (env ${BACKEND_ENV})`).choices([...BACKENDS]).default(backendFromEnv());
}
