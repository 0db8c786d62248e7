// `npm run bench`: how fast the webhook answers as shipped, against two baselines on the same load.
//
//   1. policy scaling, in process: microseconds per review with 1 to 10,000 rules and image patterns
//   2. load: three processes on 127.0.0.1 over HTTPS, driven in alternating rounds by the same load:
//        webhook        the built webhook (dist/main.js) as shipped: the chart's log level (info: one
//                       line per decision) to a file as a container's stdout, metrics on
//        null webhook   bench/null-webhook.mjs: the same Node, fastify and TLS setup, answers `allowed`
//        bare           bench/bare-webhook.mjs: node:https alone, parses the review, answers `allowed`
//      saturation (autocannon), then a fixed rate of half the webhook's saturation throughput for each;
//      peak RSS from /proc/PID/status
//   3. bench/results/latest.json (and a timestamped copy), a table, and whether each target is met
//
// Options: --duration-seconds N (seconds of load per server and scenario, in rounds; four times that for the
//          small-pod mix, which the targets use; default 4), --connections N (default 8),
//          --profile (webhook under node --cpu-prof; the profile's path is printed),
//          --scenario NAME (repeatable: only these load scenarios), --skip-load, --skip-scaling,
//          --webhook PATH (another build's main.js, to compare builds), --node-flags="..." (Node
//          flags for every server instead of the image's, from its Dockerfile CMD; "" for none),
//          --log-level LEVEL (the webhook's, instead of the chart's), --strict (exit 1 when a target
//          is not met)

import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { buildFixtures, type Fixture, type FixtureName } from '../test/support/bench-reviews.js';
import { freePort } from '../test/support/net.js';
import { peakRssMB, stolenCpuSeconds } from '../test/support/proc.js';
import { probe, runLoad, stopServer, summarize, waitReady, type LoadResult, type LoadSample, type ServerProcess } from './load.js';
import { runPaced } from './paced.js';
import { runScaling, SCALES, type ScalingPoint } from './scaling.js';
import {
  benchCertificates,
  chartLogLevel,
  benchNodeFlags,
  ROOT,
  startBareWebhook,
  startNullWebhook,
  startWebhook,
  webhookFlavour,
} from './servers.js';

const RESULTS_DIR = join(ROOT, 'bench', 'results');

export const TARGETS = {
  /** webhook throughput / fastify null webhook throughput, small-pod mix at saturation, medians of rounds */
  minThroughputVsNull: 0.9,
  /** webhook throughput / bare node:https throughput, the same */
  minThroughputVsBare: 0.78,
  /** webhook p99 / null webhook p99, both at half the webhook's saturation rate, small-pod mix */
  maxP99VsNull: 1.5,
  /** engine cost per review with 10,000 rules (and with 10,000 image patterns), small-pod mix */
  maxEngineUsAt10k: 50,
  /** cost at 10,000 rules over cost at 1,000: linear growth would be 10 */
  maxGrowth1kTo10k: 3,
  /** peak RSS of the webhook process over the whole run, in MB (10^6 bytes) */
  maxPeakRssMB: 100,
} as const;

/** The three servers every load runs against, in the order of the table. */
const SERVERS = ['webhook', 'nullWebhook', 'bare'] as const;
type ServerKey = (typeof SERVERS)[number];
type PerServer<T> = Record<ServerKey, T>;
const SERVER_NAMES: PerServer<string> = { webhook: 'webhook', nullWebhook: 'null webhook (fastify)', bare: 'bare node:https' };

interface Scenario {
  readonly name: string;
  readonly description: string;
  readonly fixtures: readonly FixtureName[];
}

const SCENARIOS: readonly Scenario[] = [
  { name: 'small-mix', description: 'tenant, system and denied in turn', fixtures: ['tenant', 'system', 'denied'] },
  { name: 'tenant', description: 'small tenant pod, sandboxed (patch)', fixtures: ['tenant'] },
  { name: 'system', description: 'kube-system pod, allowed', fixtures: ['system'] },
  { name: 'denied', description: 'blocked registry, denied 403', fixtures: ['denied'] },
  { name: 'large', description: '~60 KB pod, sandboxed (patch)', fixtures: ['large'] },
];

interface ScenarioResult {
  readonly scenario: string;
  readonly description: string;
  readonly bodyBytes: readonly number[];
  readonly saturation: PerServer<LoadResult>;
  /** requests per second of the fixed-rate runs: half the webhook's saturation throughput */
  readonly fixedRatePerSecond: number;
  readonly fixedRate: PerServer<LoadResult>;
  /** webhook throughput over the null webhook's and over bare node:https's (medians of rounds) */
  readonly throughputVsNull: number;
  readonly throughputVsBare: number;
  /** webhook p99 over the null webhook's at the same fixed rate */
  readonly p99VsNull: number;
}

interface TargetCheck {
  readonly name: string;
  readonly target: string;
  readonly value: string;
  readonly met: boolean;
}

function machine(): Record<string, string | number> {
  const cpuinfo = existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8') : '';
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown';
  let commit = 'unknown';
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
  } catch {
    // not a git checkout
  }
  return {
    nproc: os.availableParallelism(),
    cpuModel: model,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    platform: `${os.type()} ${os.release()} ${os.arch()}`,
    commit,
  };
}

const fmt = (value: number, digits = 1): string => (Number.isFinite(value) ? value.toFixed(digits) : '-');
const row = (cells: readonly string[], widths: readonly number[]): string =>
  cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join('  ');

function printScaling(points: readonly ScalingPoint[]): void {
  const widths = [10, 7, 9, 11, 11, 11, 11, 11, 11];
  console.log('\nPolicy scaling (in process, microseconds per review; small mix = mean of tenant, system, denied)');
  console.log(row(['series', 'size', 'compile', 'engine', 'engine', 'engine', 'admit()', 'admit()', 'admit()'], widths));
  console.log(row(['', '', 'ms', 'small mix', 'large', 'tenant', 'small mix', 'large', 'tenant'], widths));
  for (const p of points) {
    console.log(
      row(
        [p.series, String(p.size), fmt(p.compileMs), fmt(p.engineSmallMixUs, 2), fmt(p.engineUs.large, 2), fmt(p.engineUs.tenant, 2), fmt(p.admitSmallMixUs, 2), fmt(p.admitUs.large, 2), fmt(p.admitUs.tenant, 2)],
        widths,
      ),
    );
  }
}

function printLoad(results: readonly ScenarioResult[], rss: PerServer<number>, connections: number): void {
  const widths = [10, 8, 8, 8, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6];
  console.log(`\nLoad over HTTPS, ${connections} keep-alive connections, no pipelining (reviews/s and CPU us per review: medians of rounds; latency ms)`);
  console.log('webhook as shipped (log level info to a file, metrics on); null = fastify null webhook; bare = node:https that only parses');
  console.log('columns: saturation (throughput, ratios, CPU per review, p99), then the paced runs at half the webhook\'s saturation (p50, p99s, CPU per review)');
  console.log(
    row(
      ['scenario', 'webhook/s', 'null/s', 'bare/s', 'vs nul', 'vs bar', 'cpu', 'null cpu', 'bare cpu', 'p99 sat', 'rate/s', 'p50', 'p99', 'null p99', 'bare p99', 'cpu', 'null cpu', 'steal%'],
      widths,
    ),
  );
  for (const r of results) {
    const { webhook, nullWebhook, bare } = r.saturation;
    console.log(
      row(
        [
          r.scenario,
          fmt(webhook.throughputPerSecond, 0),
          fmt(nullWebhook.throughputPerSecond, 0),
          fmt(bare.throughputPerSecond, 0),
          fmt(r.throughputVsNull, 2),
          fmt(r.throughputVsBare, 2),
          fmt(webhook.serverCpuUsPerReview, 0),
          fmt(nullWebhook.serverCpuUsPerReview, 0),
          fmt(bare.serverCpuUsPerReview, 0),
          fmt(webhook.latencyMs.p99, 2),
          String(r.fixedRatePerSecond),
          fmt(r.fixedRate.webhook.latencyMs.p50, 2),
          fmt(r.fixedRate.webhook.latencyMs.p99, 2),
          fmt(r.fixedRate.nullWebhook.latencyMs.p99, 2),
          fmt(r.fixedRate.bare.latencyMs.p99, 2),
          fmt(r.fixedRate.webhook.serverCpuUsPerReview, 0),
          fmt(r.fixedRate.nullWebhook.serverCpuUsPerReview, 0),
          fmt(stealPercent(r.fixedRate), 2),
        ],
        widths,
      ),
    );
  }
  console.log(`peak RSS (VmHWM): webhook ${fmt(rss.webhook)} MB, null webhook ${fmt(rss.nullWebhook)} MB, bare node:https ${fmt(rss.bare)} MB`);
  console.log('steal %: CPU time the hypervisor took from this machine during the paced runs; a request in flight then waits');
}

/** The share of CPU time stolen during the servers' paced runs (of equal length): their mean. */
function stealPercent(runs: PerServer<LoadResult>): number {
  return SERVERS.reduce((sum, key) => sum + runs[key].stealPercent, 0) / SERVERS.length;
}

function checkTargets(points: readonly ScalingPoint[], results: readonly ScenarioResult[], rssWebhookMB: number | undefined): TargetCheck[] {
  const checks: TargetCheck[] = [];
  const mix = results.find((r) => r.scenario === 'small-mix');
  if (mix) {
    checks.push({
      name: 'throughput vs fastify null webhook (small-pod mix, medians of rounds)',
      target: `>= ${TARGETS.minThroughputVsNull}`,
      value: `${fmt(mix.throughputVsNull, 3)} (${fmt(mix.saturation.webhook.throughputPerSecond, 0)} / ${fmt(mix.saturation.nullWebhook.throughputPerSecond, 0)} reviews/s)`,
      met: mix.throughputVsNull >= TARGETS.minThroughputVsNull,
    });
    checks.push({
      name: 'throughput vs bare node:https (small-pod mix, medians of rounds)',
      target: `>= ${TARGETS.minThroughputVsBare}`,
      value: `${fmt(mix.throughputVsBare, 3)} (${fmt(mix.saturation.webhook.throughputPerSecond, 0)} / ${fmt(mix.saturation.bare.throughputPerSecond, 0)} reviews/s)`,
      met: mix.throughputVsBare >= TARGETS.minThroughputVsBare,
    });
    checks.push({
      name: `p99 vs null webhook at half the webhook's saturation (${mix.fixedRatePerSecond}/s, small-pod mix)`,
      target: `<= ${TARGETS.maxP99VsNull}x`,
      value: `${fmt(mix.p99VsNull, 2)}x (${fmt(mix.fixedRate.webhook.latencyMs.p99, 2)} / ${fmt(mix.fixedRate.nullWebhook.latencyMs.p99, 2)} ms; CPU stolen by the host ${fmt(stealPercent(mix.fixedRate), 2)}%)`,
      met: mix.p99VsNull <= TARGETS.maxP99VsNull,
    });
  }
  for (const series of ['rules', 'patterns'] as const) {
    const at = (size: number): ScalingPoint | undefined => points.find((p) => p.series === series && p.size === size);
    const top = at(10_000);
    const mid = at(1_000);
    if (!top || !mid) continue;
    const worst = Math.max(top.engineSmallMixUs, top.engineUs.large);
    checks.push({
      name: `engine with 10,000 ${series === 'rules' ? 'rules' : 'image patterns'} (small mix; large pod)`,
      target: `< ${TARGETS.maxEngineUsAt10k} us`,
      value: `${fmt(top.engineSmallMixUs, 2)} us; ${fmt(top.engineUs.large, 2)} us`,
      met: worst < TARGETS.maxEngineUsAt10k,
    });
    const growth = top.engineSmallMixUs / mid.engineSmallMixUs;
    checks.push({
      name: `growth 1,000 -> 10,000 ${series === 'rules' ? 'rules' : 'image patterns'} (linear = 10x)`,
      target: `< ${TARGETS.maxGrowth1kTo10k}x`,
      value: `${fmt(growth, 2)}x`,
      met: growth < TARGETS.maxGrowth1kTo10k,
    });
  }
  if (rssWebhookMB !== undefined) {
    checks.push({
      name: 'peak RSS of the webhook',
      target: `< ${TARGETS.maxPeakRssMB} MB`,
      value: `${fmt(rssWebhookMB)} MB`,
      met: rssWebhookMB < TARGETS.maxPeakRssMB,
    });
  }
  return checks;
}

/**
 * The servers take turns, in short rounds, so that a change in what else runs on the machine hits
 * all alike; every other round goes in the reverse order, so that none always follows the same one.
 */
async function alternate(
  servers: PerServer<ServerProcess>,
  rounds: number,
  run: (server: ServerProcess) => Promise<LoadSample>,
): Promise<PerServer<LoadResult>> {
  const samples: PerServer<LoadSample[]> = { webhook: [], nullWebhook: [], bare: [] };
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? SERVERS : [...SERVERS].reverse();
    for (const key of order) samples[key].push(await run(servers[key]));
  }
  return { webhook: summarize(samples.webhook), nullWebhook: summarize(samples.nullWebhook), bare: summarize(samples.bare) };
}

async function loadRuns(
  scenarios: readonly Scenario[],
  fixtures: readonly Fixture[],
  servers: PerServer<ServerProcess>,
  ca: Buffer,
  durationSeconds: number,
  connections: number,
): Promise<ScenarioResult[]> {
  const byName = new Map(fixtures.map((f) => [f.name, f]));
  const results: ScenarioResult[] = [];
  // Every server starts cold: let the JIT optimise its paths on every fixture first.
  process.stdout.write('warm-up: every fixture, 3 s each server\n');
  await alternate(servers, 1, (server) =>
    runLoad({ port: server.port, pid: server.child.pid ?? 0, bodies: fixtures.map((f) => f.body), connections, durationSeconds: 3 }),
  );
  for (const scenario of scenarios) {
    const bodies = scenario.fixtures.map((name) => {
      const fixture = byName.get(name);
      if (!fixture) throw new Error(`no fixture ${name}`);
      return fixture.body;
    });
    // Short turns, many of them: whatever else runs on the machine changes from second to second.
    // The small-pod mix, which the targets use, gets 8 rounds of half --duration-seconds (2 s by
    // default); the others 4 rounds of a quarter.
    const mix = scenario.name === 'small-mix';
    const rounds = mix ? 8 : 4;
    const seconds = Math.max(1, ((mix ? 4 : 1) * durationSeconds) / rounds);
    const saturated = (server: ServerProcess): Promise<LoadSample> =>
      runLoad({ port: server.port, pid: server.child.pid ?? 0, bodies, connections, durationSeconds: seconds });
    process.stdout.write(`load ${scenario.name}: warm-up`);
    await alternate(servers, 1, (server) => runLoad({ port: server.port, pid: server.child.pid ?? 0, bodies, connections, durationSeconds: 1 }));
    process.stdout.write(`, saturation ${rounds} x ${seconds} s each`);
    const saturation = await alternate(servers, rounds, saturated);
    // The same paced load for all: half of what the webhook sustains.
    const rate = Math.max(1, Math.round(saturation.webhook.throughputPerSecond / 2));
    process.stdout.write(`, ${rate}/s paced`);
    const fixedRate = await alternate(servers, 4, (server) =>
      runPaced({ port: server.port, pid: server.child.pid ?? 0, ca, bodies, connections, ratePerSecond: rate, durationSeconds: seconds }),
    );
    process.stdout.write('\n');
    for (const key of SERVERS) {
      for (const [mode, r] of [['at saturation', saturation[key]], ['at fixed rate', fixedRate[key]]] as const) {
        if (r.errors > 0 || r.non2xx > 0 || r.timeouts > 0) {
          console.log(`  warning: ${SERVER_NAMES[key]} ${mode}: ${r.errors} errors, ${r.timeouts} timeouts, ${r.non2xx} non-2xx answers`);
        }
        if (r.queued > 0) console.log(`  note: ${SERVER_NAMES[key]} ${mode}: ${r.queued} requests waited for a free connection`);
      }
    }
    results.push({
      scenario: scenario.name,
      description: scenario.description,
      bodyBytes: bodies.map((b) => Buffer.byteLength(b)),
      saturation,
      fixedRatePerSecond: rate,
      fixedRate,
      throughputVsNull: saturation.webhook.throughputPerSecond / saturation.nullWebhook.throughputPerSecond,
      throughputVsBare: saturation.webhook.throughputPerSecond / saturation.bare.throughputPerSecond,
      p99VsNull: fixedRate.webhook.latencyMs.p99 / fixedRate.nullWebhook.latencyMs.p99,
    });
  }
  return results;
}

/** Checks, before any load, that each server answers each fixture the way the bench expects. */
async function checkAnswers(fixtures: readonly Fixture[], servers: PerServer<ServerProcess>, ca: Buffer): Promise<void> {
  for (const fixture of fixtures) {
    const uid = (JSON.parse(fixture.body) as { request: { uid: string } }).request.uid;
    const answer = await probe(servers.webhook, ca, fixture.body);
    const patched = answer.patch !== undefined;
    if (answer.uid !== uid || answer.allowed !== fixture.expect.allowed || patched !== fixture.expect.patched) {
      throw new Error(`webhook answered fixture ${fixture.name} with ${JSON.stringify(answer)}; expected ${JSON.stringify(fixture.expect)}`);
    }
    for (const key of ['nullWebhook', 'bare'] as const) {
      const other = await probe(servers[key], ca, fixture.body);
      if (other.uid !== uid || !other.allowed) throw new Error(`${SERVER_NAMES[key]} answered ${JSON.stringify(other)}`);
    }
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      'duration-seconds': { type: 'string', default: '4' },
      connections: { type: 'string', default: '8' },
      profile: { type: 'boolean', default: false },
      'skip-load': { type: 'boolean', default: false },
      'skip-scaling': { type: 'boolean', default: false },
      strict: { type: 'boolean', default: false },
      scenario: { type: 'string', multiple: true },
      webhook: { type: 'string' },
      'node-flags': { type: 'string' },
      'log-level': { type: 'string' },
    },
  });
  const durationSeconds = Number(values['duration-seconds']);
  const scenarios = values.scenario ? SCENARIOS.filter((s) => values.scenario?.includes(s.name)) : SCENARIOS;
  if (scenarios.length === 0) {
    console.error(`bench: --scenario must be one of ${SCENARIOS.map((s) => s.name).join(', ')}`);
    return 2;
  }
  const connections = Number(values.connections);
  if (!(durationSeconds >= 1 && durationSeconds <= 60) || !(connections >= 1 && connections <= 256)) {
    console.error('bench: --duration-seconds must be 1..60 and --connections 1..256');
    return 2;
  }
  const mainJs = resolve(values.webhook ?? join(ROOT, 'dist', 'main.js'));
  if (!values['skip-load'] && !existsSync(mainJs)) {
    console.error('bench: dist/main.js is missing; run `npm run bench` (it builds first)');
    return 2;
  }

  const startedAt = new Date();
  const info = machine();
  const loadAverageAtStart = os.loadavg()[0] ?? 0;
  console.log(`sandbox-webhook bench: ${info.cpuModel}, ${info.nproc} CPUs, Node ${info.node}, commit ${info.commit}`);
  console.log(`load average (1 min) before the run: ${fmt(loadAverageAtStart, 2)} (other work on the machine lowers throughput and raises latency; CPU per review much less)`);
  const fixtures = buildFixtures();
  for (const f of fixtures) console.log(`fixture ${f.name.padEnd(7)} ${String(Buffer.byteLength(f.body)).padStart(6)} bytes  ${f.description}`);

  let points: ScalingPoint[] = [];
  if (!values['skip-scaling']) {
    console.log(`\npolicy scaling: ${SCALES.join(', ')} rules, then image patterns...`);
    points = runScaling(fixtures, 150);
    printScaling(points);
  }

  // Both servers run on the Node flags the image runs with (the same Node setup), unless told otherwise.
  const nodeFlags = benchNodeFlags(values['node-flags']);
  let results: ScenarioResult[] = [];
  let rss: PerServer<number> | undefined;
  let profileDir: string | undefined;
  let logLevel: string | undefined;
  let webhookLogBytes: number | undefined;
  let stealPercentOfRun = Number.NaN;
  if (!values['skip-load']) {
    const certificates = benchCertificates();
    const { ca } = certificates;
    profileDir = values.profile ? join(certificates.dir, 'profiles') : undefined;
    const profiling = profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [];
    const flavour = await webhookFlavour(mainJs, values['log-level'] ?? chartLogLevel());
    logLevel = flavour.logLevel;
    const servers: PerServer<ServerProcess> = {
      webhook: startWebhook('webhook', mainJs, await freePort(), certificates, [...nodeFlags, ...profiling], flavour),
      nullWebhook: startNullWebhook(await freePort(), certificates, nodeFlags),
      bare: startBareWebhook(await freePort(), certificates, nodeFlags),
    };
    const stolenAtStart = stolenCpuSeconds();
    const loadStarted = Date.now();
    try {
      await Promise.all(SERVERS.map((key) => waitReady(servers[key], ca)));
      await checkAnswers(fixtures, servers, ca);
      console.log(
        `\nload: ${durationSeconds} s per server and scenario, ${connections} connections, node flags (every server, as in the image): ${nodeFlags.join(' ') || 'none'}; ` +
          `webhook log level ${flavour.logLevel} to ${servers.webhook.logFile}, metrics ${flavour.metricsPort === undefined ? 'on the webhook port' : `on port ${flavour.metricsPort}`}; ` +
          `pids: webhook ${servers.webhook.child.pid}, null webhook ${servers.nullWebhook.child.pid}, bare ${servers.bare.child.pid}`,
      );
      results = await loadRuns(scenarios, fixtures, servers, ca, durationSeconds, connections);
      rss = {
        webhook: peakRssMB(servers.webhook.child.pid ?? 0),
        nullWebhook: peakRssMB(servers.nullWebhook.child.pid ?? 0),
        bare: peakRssMB(servers.bare.child.pid ?? 0),
      };
      webhookLogBytes = statSync(servers.webhook.logFile).size;
      const stolen = stolenCpuSeconds();
      if (stolen !== undefined && stolenAtStart !== undefined) {
        stealPercentOfRun = (100 * (stolen - stolenAtStart)) / (((Date.now() - loadStarted) / 1000) * os.availableParallelism());
      }
      printLoad(results, rss, connections);
      console.log(`webhook log: ${(webhookLogBytes / 1e6).toFixed(1)} MB written; CPU stolen by the host over the whole load: ${fmt(stealPercentOfRun, 2)}%`);
    } finally {
      await Promise.all(SERVERS.map((key) => stopServer(servers[key])));
      // The profile is written when the webhook exits: keep it beside the results.
      const profiles = profileDir && existsSync(profileDir) ? readdirSync(profileDir) : [];
      for (const file of profiles) {
        const kept = join(RESULTS_DIR, `webhook-${startedAt.toISOString().replace(/[:.]/g, '-')}.cpuprofile`);
        mkdirSync(RESULTS_DIR, { recursive: true });
        copyFileSync(join(profileDir as string, file), kept);
        console.log(`\nCPU profile of the webhook: ${kept} (npx tsx bench/profile.ts ${kept})`);
      }
      certificates.remove();
    }
  }

  const checks = checkTargets(points, results, rss?.webhook);
  console.log('\nTargets');
  for (const c of checks) console.log(`  ${c.met ? 'MET    ' : 'NOT MET'}  ${c.name}: ${c.value} (target ${c.target})`);

  const report = {
    startedAt: startedAt.toISOString(),
    durationSeconds: Math.round((Date.now() - startedAt.getTime()) / 1000),
    machine: info,
    // Other processes on the machine during the run: throughput and latency depend on it; CPU per review much less.
    loadAverage1m: { start: loadAverageAtStart, end: os.loadavg()[0] ?? 0 },
    load: { connections, durationSecondsPerRun: durationSeconds, pipelining: 1, policy: 'bench/policy.yaml', webhook: mainJs, nodeFlags, logLevel, webhookLogBytes },
    stealPercentOfLoad: stealPercentOfRun,
    fixtures: fixtures.map((f) => ({ name: f.name, description: f.description, bytes: Buffer.byteLength(f.body) })),
    scaling: points,
    scenarios: results,
    peakRssMB: rss ?? null,
    targets: TARGETS,
    checks,
  };
  mkdirSync(RESULTS_DIR, { recursive: true });
  const text = `${JSON.stringify(report, null, 2)}\n`;
  writeFileSync(join(RESULTS_DIR, 'latest.json'), text);
  writeFileSync(join(RESULTS_DIR, `${startedAt.toISOString().replace(/[:.]/g, '-')}.json`), text);
  console.log(`\nresults: bench/results/latest.json (${report.durationSeconds} s)`);
  return values.strict && checks.some((c) => !c.met) ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`bench: ${(error as Error).stack ?? String(error)}`);
    process.exit(1);
  },
);
