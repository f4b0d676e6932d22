// Half of the 10,000 noble/sodium cross-checks: oprf mode (test/backend-crosscheck.ts).
import { crossCheck } from './backend-crosscheck.ts';

crossCheck('oprf');
