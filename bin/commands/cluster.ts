/**
 * `pcd cluster` (npm run cluster): server/cluster.ts's shared Postgres and
 * nodes on this machine, what to try with them, and Ctrl-C to stop them.
 *
 * Ctrl-C in a terminal signals every process of the foreground process
 * group, not only the one in front: the nodes and Postgres too. Postgres
 * takes SIGINT as a fast shutdown and drops its connections at once, while
 * the nodes were still writing the log rows they held (their writes failed:
 * the rows went to spill files in the nodes' folders, not to the store), and
 * each node got the cluster's signal as a second one, which cuts its
 * requests in flight. So the command runs the cluster in a process group of
 * its own ({@link runInOwnGroup}) and stays in the terminal's to pass each
 * signal on: the cluster stops the nodes, each once, then Postgres.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { startCluster, PCD_BIN, type ClusterOptions } from '../../server/cluster.ts';
import { redactUrl } from '../../server/pg/connect.ts';
import { contactsDirFor, REQUESTERS_FILE } from '../../server/seed.ts';
import { DEFAULT_SIZE_CLASSES } from '../../shared/tokens.ts';
import { sizeClassList } from '../options.ts';
import { runsUntilStopped } from '../output.ts';

/** Set for the cluster process that {@link runInOwnGroup} starts, the leader of a process group of its own. */
const OWN_GROUP_ENV = 'PCD_CLUSTER_OWN_GROUP';

/**
 * Starts this command again, with the options it was given (every option
 * the command has: a new one needs no line here), as the leader of a new
 * process group (its nodes and Postgres join it), and passes on every
 * signal this process gets; exits with its exit code. The IPC channel ends
 * with this process, even killed, and the cluster then stops (below).
 */
function runInOwnGroup(cmd: Command): Promise<void> {
  const args = cmd.options.flatMap((opt) => {
    const name = opt.attributeName();
    if (cmd.getOptionValueSource(name) !== 'cli') return [];
    const value: unknown = cmd.getOptionValue(name);
    return [opt.long!, Array.isArray(value) ? value.join(',') : String(value)];
  });
  const child = spawn(process.execPath, [...process.execArgv, PCD_BIN, 'cluster', ...args], {
    detached: true,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, [OWN_GROUP_ENV]: '1' },
  });
  // A hung-up terminal (SIGHUP) stops the cluster as Ctrl-C does.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => child.kill(signal === 'SIGHUP' ? 'SIGTERM' : signal));
  return new Promise((_, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => process.exit(code ?? 128 + (signal ? os.constants.signals[signal] : 0)));
  });
}

function positive(name: string, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > max) throw new InvalidArgumentError(`${name} takes a whole number from 1 to ${max}`);
    return n;
  };
}

export function registerClusterCommand(program: Command): void {
  program
    .command('cluster')
    .description('a shared Postgres (from npm) and several pcd serve nodes on this machine, every design, one leader; Ctrl-C stops them')
    .option('--nodes <n>', 'nodes to start', positive('--nodes', 16), 3)
    .option('--dir <dir>', 'the cluster folder: Postgres, each node\'s data folder and log', 'cluster')
    .option('--port <port>', 'the first node\'s port (the next ones follow it; 0: free ports)', (v) => (v === '0' ? 0 : positive('--port', 65535)(v)), 8787)
    .option('--size <n>', 'numbers to seed into an empty store', positive('--size', 10_000_000), 10_000)
    .option('--size-classes <list>', `the blinded design's size classes on every node, as pcd serve takes them (default ${DEFAULT_SIZE_CLASSES.join(',')})`, sizeClassList)
    .action(async (o: ClusterOptions, cmd: Command) => {
      runsUntilStopped();
      if (process.env[OWN_GROUP_ENV] !== '1') return runInOwnGroup(cmd);
      delete process.env[OWN_GROUP_ENV];
      // A signal while the cluster starts (Postgres, the seeding, the nodes): every process of the group is stopped at
      // once, as a terminal's Ctrl-C did before (no node has flushed anything yet); after the start, the ordered stop below.
      let stop: (() => void) | undefined;
      let stoppingAtOnce = false;
      const onSignal = () => {
        if (stop) return stop();
        if (stoppingAtOnce) return;
        stoppingAtOnce = true;
        process.kill(-process.pid, 'SIGINT');
        process.exit(130);
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      // The terminal's process gone (runInOwnGroup), even killed: the cluster stops as if it had passed Ctrl-C on.
      if (process.channel) {
        process.channel.unref();
        process.once('disconnect', onSignal);
      }
      const say = (line: string) => console.log(line);
      const cluster = await startCluster(o, say);
      const requesters = path.join(contactsDirFor(o.dir), REQUESTERS_FILE);
      const requester = fs.existsSync(requesters) ? (JSON.parse(fs.readFileSync(requesters, 'utf8')) as { token: string; email: string }[])[0] : undefined;
      say('');
      say(`shared store: ${redactUrl(cluster.storeUrl)} (password in ${path.join(o.dir, 'postgres.password')})`);
      for (const n of cluster.nodes) say(`${n.name}: ${n.url}  (pid ${n.child.pid}, data ${n.dataDir}, log ${n.log})`);
      say(`admin token: ${path.join(o.dir, 'admin-token')} (every node's)`);
      if (requester) say(`requester: ${requester.email}, token in ${requesters}`);
      const first = cluster.nodes[0]!.url;
      const last = cluster.nodes.at(-1)!.url;
      say('');
      say('try: register a number through the first node, look it up through the last:');
      say(`  curl -s -X POST ${first}/v1/accounts -H "authorization: Bearer $(cat ${path.join(o.dir, 'admin-token')})" -H 'content-type: application/json' -d '{"email":"new@pcd.example","numbers":["+14155550123"],"capabilities":["messages"]}'`);
      if (requester) say(`  PCD_TOKEN=$(node -p "require('${path.resolve(requesters)}')[0].token") node ${path.relative(process.cwd(), PCD_BIN)} lookup +14155550123 --design blinded --server ${last}`);
      say('rotate the blinded key through any node (the leader builds the new epoch), and kill the leader while it builds:');
      say(`  curl -s -X POST ${last}/v1/admin/rotate-key -H "authorization: Bearer $(cat ${path.join(o.dir, 'admin-token')})" -H 'content-type: application/json' -d '{}'`);
      say(`  kill -9 <the leader's pid>   # another node takes the lead and finishes the build; the rotation call answers then`);
      say('Ctrl-C stops the nodes, then Postgres.');
      let stoppingNow = false;
      stop = () => {
        if (stoppingNow) return;
        stoppingNow = true;
        say('\nstopping the nodes (each flushes its query logs), then Postgres ...');
        cluster.stop().then(
          () => process.exit(0),
          (e: unknown) => {
            process.stderr.write(`pcd: stopping the cluster failed: ${(e as Error).message}\n`);
            process.exit(1);
          },
        );
      };
    });
}
