// Half of the 10,000 noble/sodium cross-checks: voprf mode (test/backend-crosscheck.ts).
import { crossCheck } from './backend-crosscheck.ts';

crossCheck('voprf');
