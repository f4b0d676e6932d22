/**
 * `pcd cluster` (npm run cluster): server/cluster.ts's shared Postgres and
 * nodes on this machine, what to try with them, and Ctrl-C to stop them.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { startCluster, PCD_BIN, type ClusterOptions } from '../../server/cluster.ts';
import { redactUrl } from '../../server/pg/connect.ts';
import { contactsDirFor, REQUESTERS_FILE } from '../../server/seed.ts';
import { DEFAULT_SIZE_CLASSES } from '../../shared/tokens.ts';
import { sizeClassList } from '../options.ts';
import { runsUntilStopped } from '../output.ts';

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
    .action(async (o: ClusterOptions) => {
      runsUntilStopped();
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
      const stop = () => {
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
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });
}
