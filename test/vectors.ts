/**
 * RFC 9497 Appendix A.1 (ristretto255-SHA512) test vectors, read from
 * test/vectors/rfc9497-ristretto255-SHA512.json (its source is in the file).
 */
import { readFileSync } from 'node:fs';

export interface VectorTest {
  name: string;
  Input: string[];
  Blind: string[];
  BlindedElement: string[];
  EvaluationElement: string[];
  Proof?: string;
  ProofRandomScalar?: string;
  Output: string[];
}
export interface VectorMode {
  Seed: string;
  KeyInfo: string;
  skSm: string;
  pkSm?: string;
  tests: VectorTest[];
}
export interface VectorFile {
  source: string;
  suite: string;
  modes: { OPRF: VectorMode; VOPRF: VectorMode };
}

export const vectors = JSON.parse(readFileSync(new URL('./vectors/rfc9497-ristretto255-SHA512.json', import.meta.url), 'utf8')) as VectorFile;
