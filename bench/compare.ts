// `npm run bench:compare -- PATH/TO/OTHER/dist/main.js`: this build, another build of the webhook (both
// as shipped: the chart's log level to a file, metrics on), the null webhook and bare node:https, in
// alternating rounds of the small-pod mix at saturation. On a machine whose
// speed moves from one minute to the next (a shared VM), two `npm run bench` runs differ by more
// than most changes; rounds that take turns within the same minutes, and their medians, do not.
//
// Options: --rounds N (default 16), --round-seconds N (default 2), --connections N (default 8),
//          --node-flags="..." (for all three servers; default: the Dockerfile CMD's)

import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { buildFixtures } from '../test/support/bench-reviews.js';
import { freePort } from '../test/support/net.js';
import { peakRssMB } from '../test/support/proc.js';
import { median } from '../test/support/stats.js';
import { runLoad, stopServer, waitReady, type ServerProcess } from './load.js';
import { benchCertificates, benchNodeFlags, ROOT, startBareWebhook, startNullWebhook, startWebhook, webhookFlavour } from './servers.js';

interface Rounds {
  readonly server: ServerProcess;
  readonly cpuUsPerReview: number[];
  readonly reviewsPerSecond: number[];
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      rounds: { type: 'string', default: '16' },
      'round-seconds': { type: 'string', default: '2' },
      connections: { type: 'string', default: '8' },
      'node-flags': { type: 'string' },
    },
  });
  const rounds = Number(values.rounds);
  const roundSeconds = Number(values['round-seconds']);
  const connections = Number(values.connections);
  const other = positionals[0] === undefined ? undefined : resolve(positionals[0]);
  if (positionals.length !== 1 || other === undefined || !existsSync(other)) {
    console.error('usage: npm run bench:compare -- PATH/TO/OTHER/dist/main.js [--rounds N] [--round-seconds N] [--connections N] [--node-flags="..."]');
    return 2;
  }
  if (!(rounds >= 2 && rounds <= 200) || !(roundSeconds >= 1 && roundSeconds <= 60) || !(connections >= 1 && connections <= 256)) {
    console.error('bench:compare: --rounds must be 2..200, --round-seconds 1..60 and --connections 1..256');
    return 2;
  }
  const nodeFlags = benchNodeFlags(values['node-flags']);
  const bodies = buildFixtures()
    .filter((f) => f.name !== 'large')
    .map((f) => f.body);

  const certificates = benchCertificates();
  const thisMain = join(ROOT, 'dist', 'main.js');
  const servers = [
    startWebhook('this build', thisMain, await freePort(), certificates, nodeFlags, await webhookFlavour(thisMain)),
    startWebhook('other build', other, await freePort(), certificates, nodeFlags, await webhookFlavour(other)),
    startNullWebhook(await freePort(), certificates, nodeFlags),
    startBareWebhook(await freePort(), certificates, nodeFlags),
  ];
  try {
    await Promise.all(servers.map((server) => waitReady(server, certificates.ca)));
    const run = (server: ServerProcess, seconds: number) =>
      runLoad({ port: server.port, pid: server.child.pid ?? 0, bodies, connections, durationSeconds: seconds });
    console.log(`small-pod mix at saturation, ${connections} connections, ${rounds} rounds of ${roundSeconds} s per server in turn; node flags: ${nodeFlags.join(' ') || 'none'}`);
    for (const server of servers) await run(server, 3); // warm-up: let the JIT optimise each server's path
    const results: Rounds[] = servers.map((server) => ({ server, cpuUsPerReview: [], reviewsPerSecond: [] }));
    for (let round = 0; round < rounds; round++) {
      for (const result of results) {
        const sample = await run(result.server, roundSeconds);
        if (sample.errors > 0 || sample.non2xx > 0 || sample.timeouts > 0) throw new Error(`${result.server.name}: errors in round ${round + 1}`);
        result.cpuUsPerReview.push((sample.serverCpuMs * 1000) / sample.requests);
        result.reviewsPerSecond.push(sample.requests / sample.seconds);
      }
    }
    const nullCpu = median(results[2]?.cpuUsPerReview ?? []);
    const nullRate = median(results[2]?.reviewsPerSecond ?? []);
    const bareRate = median(results[3]?.reviewsPerSecond ?? []);
    console.log('\nserver                       CPU us/review (median, min-max)   reviews/s (median)   vs null: CPU   throughput   vs bare   peak RSS MB');
    for (const r of results) {
      const cpu = median(r.cpuUsPerReview);
      const rate = median(r.reviewsPerSecond);
      console.log(
        [
          r.server.name.slice(0, 28).padEnd(28),
          `${cpu.toFixed(0)} (${Math.min(...r.cpuUsPerReview).toFixed(0)}-${Math.max(...r.cpuUsPerReview).toFixed(0)})`.padStart(33),
          rate.toFixed(0).padStart(20),
          (nullCpu / cpu).toFixed(3).padStart(14),
          (rate / nullRate).toFixed(3).padStart(12),
          (rate / bareRate).toFixed(3).padStart(9),
          peakRssMB(r.server.child.pid ?? 0).toFixed(1).padStart(13),
        ].join(' '),
      );
    }
    return 0;
  } finally {
    await Promise.all(servers.map((server) => stopServer(server)));
    certificates.remove();
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`bench:compare: ${(error as Error).stack ?? String(error)}`);
    process.exit(1);
  },
);
