/** `pcd`: the program of bin/program.ts, run on process.argv. */
import { buildErrorOutcome, buildProgram, errorOutcome } from './program.ts';

// `pcd sync list.txt | head`: a closed pipe ends the command quietly.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

let program;
try {
  program = buildProgram();
} catch (e) {
  const o = buildErrorOutcome(e);
  console.error(o.line);
  process.exit(o.code);
}

try {
  await program.parseAsync(process.argv);
} catch (e) {
  const o = errorOutcome(e);
  // Anything that is not a user error or a server condition is one line too; the stack only on request.
  if (o.code === 1 && process.env.PCD_DEBUG) throw e;
  if (o.line) console.error(o.line);
  process.exit(o.code);
}
