// `npm run bench:cluster`: pod creation through a real kube-apiserver, with and without the webhook,
// at hosting-provider scale. What a cluster feels is not the webhook alone but every pod CREATE going
// through the apiserver, its admission chain and etcd, with the webhook's answer in the middle.
//
//   1. our control plane (etcd + kube-apiserver from the cached binaries, test/e2e/harness), no audit
//      log; N tenant namespaces created through the REST API (timed: the slow part at 20,000)
//   2. two RuntimeClasses: `gvisor` (handler only) and `gvisor-overhead` (overhead and scheduling, which
//      the apiserver's RuntimeClass plugin applies after our patch, so the webhook is called again:
//      reinvocation, docs/kubernetes.md §2)
//   3. the built webhook (dist/main.js) in cluster mode, as shipped (the chart's log level to a file,
//      the image's Node flags), KUBECONFIG to the test apiserver; time to ready (its first lists);
//      registered by a MutatingWebhookConfiguration that skips namespaces labelled
//      bench.sandbox-webhook.io/webhook=off or bench.sandbox-webhook.io/floor=bare
//   4. the floor: bench/bare-webhook.mjs (node:https alone, with the webhook's Node flags and
//      certificates, on a port of its own), answering every review with the webhook's patch for a
//      tenant pod (class gvisor, the rule annotation); a second entry of the same configuration, with
//      the same settings, sends it the pods of the namespaces labelled bench.sandbox-webhook.io/floor=bare
//      and no others. What any Node.js HTTPS server costs per review called by the real apiserver.
//   5. rounds of pods created at a fixed concurrency, taking turns: `off` (a namespace the webhook is
//      not registered for), `sandboxed` (tenant namespaces: class gvisor), `overhead` (class
//      gvisor-overhead), `floor` (the bare server's namespaces: class gvisor); per round: pods/s,
//      create latency, CPU per pod of the apiserver, etcd, the webhook and the bare server
//      (/proc/PID/stat), calls per pod of either (the apiserver's own counter). Every create must
//      succeed and every stored pod of a sandboxed or floor round must carry its class (checked on the
//      answer and again by listing them afterwards).
//   6. a table (the floor's column shows the bare server where the others show the webhook), the
//      webhook's CPU per sandboxed pod against the bare server's per floor pod, and
//      bench/results/cluster-latest.json (and a timestamped copy)
//
// Options: --namespaces N (tenant namespaces, default 20000), --pods N (per round, default 300),
//          --rounds N (per kind, default 3), --concurrency N (creates in flight, default 16),
//          --namespace-concurrency N (default 32),
//          --node-flags="..." (default: the Dockerfile CMD's), --profile (webhook under --cpu-prof),
//          --webhook PATH (another build's dist/main.js, to compare builds),
//          --floor-http2 (the bare server with --http2: node:http2 with allowHTTP1, offering h2 and
//          http/1.1; the bench reports what the apiserver's connections to it negotiated, from its log)

import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ensureBinaries } from '../test/e2e/harness/binaries.js';
import { startControlPlane, type ControlPlane } from '../test/e2e/harness/controlplane.js';
import { startWebhook, WEBHOOK_MAIN, type RunningWebhook } from '../test/e2e/harness/webhook.js';
import { buildFixtures } from '../test/support/bench-reviews.js';
import type { Json } from '../test/support/review.js';
import { cpuTimeMs, peakRssMB, rssMB, stolenCpuSeconds } from '../test/support/proc.js';
import { median, percentile } from '../test/support/stats.js';
import { freePort } from '../test/support/net.js';
import { startServer, stopServer, waitReady, type ServerProcess } from './load.js';
import { benchNodeFlags, chartLogLevel, ROOT, webhookFlavour } from './servers.js';

const RESULTS_DIR = join(ROOT, 'bench', 'results');
const OFF_LABEL = 'bench.sandbox-webhook.io/webhook';
const WEBHOOK_NAME = 'pods.sandbox-webhook.io';
/** The label of the floor's namespaces: the bare server's entry is called for them, the webhook's not. */
const FLOOR_LABEL = 'bench.sandbox-webhook.io/floor';
const BARE_WEBHOOK_NAME = 'floor.bench.sandbox-webhook.io';

export const TARGETS = {
  /** webhook CPU per admitted pod, ms (median of the sandboxed rounds) */
  maxWebhookCpuMsPerPod: 0.3,
  /** pods/s with the webhook over pods/s without (medians) */
  minThroughputRatio: 0.7,
  /** webhook RSS in cluster mode after the rounds, MB */
  maxRssMB: 110,
  /** spawn to /readyz 200 (both informers listed), ms */
  maxReadyMs: 3000,
} as const;

const POLICY = `apiVersion: sandbox-webhook.io/v1alpha1
kind: SandboxPolicy
spec:
  runtimeClassName: gvisor
  acceptedRuntimeClasses: [gvisor, gvisor-overhead]
  mode: enforce
  onConflict: deny
  incompatible: deny
  defaultAction: sandbox
  rules:
    - name: system
      match:
        namespaces: [kube-system, kube-public, kube-node-lease]
      action: allow
    - name: overhead
      match:
        namespaces: ["overhead-*"]
      action: sandbox
      runtimeClassName: gvisor-overhead
    - name: tenants
      match:
        namespaces: ["tenant-*"]
      action: sandbox
`;

const RUNTIME_CLASSES: Json[] = [
  { apiVersion: 'node.k8s.io/v1', kind: 'RuntimeClass', metadata: { name: 'gvisor' }, handler: 'runsc' },
  {
    apiVersion: 'node.k8s.io/v1',
    kind: 'RuntimeClass',
    metadata: { name: 'gvisor-overhead' },
    handler: 'runsc',
    overhead: { podFixed: { cpu: '100m', memory: '32Mi' } },
    scheduling: {
      nodeSelector: { 'sandbox-webhook.io/runtime': 'gvisor' },
      tolerations: [{ key: 'sandbox-webhook.io/runtime', operator: 'Equal', value: 'gvisor', effect: 'NoSchedule' }],
    },
  },
];

type Kind = 'off' | 'sandboxed' | 'overhead' | 'floor';
const KINDS: readonly Kind[] = ['off', 'sandboxed', 'overhead', 'floor'];
const EXPECTED_CLASS: Record<Kind, string | undefined> = { off: undefined, sandboxed: 'gvisor', overhead: 'gvisor-overhead', floor: 'gvisor' };
const KIND_HEADINGS: Record<Kind, string> = { off: 'not registered', sandboxed: 'sandboxed', overhead: 'overhead class', floor: 'floor: bare' };

// ---------------------------------------------------------------------------------------------
// A lean REST client: the load generator shares the machine's two CPUs with everything it measures.

interface Rest {
  call(method: string, path: string, body?: unknown): Promise<{ status: number; body: string }>;
  close(): void;
}

function restClient(cp: ControlPlane, maxSockets: number): Rest {
  const agent = new Agent({
    keepAlive: true,
    maxSockets,
    ca: readFileSync(cp.certs.caCert),
    cert: readFileSync(cp.certs.adminCert),
    key: readFileSync(cp.certs.adminKey),
  });
  const base = new URL(cp.apiserverUrl);
  return {
    call(method, path, body) {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      return new Promise((resolvePromise, reject) => {
        const req = request(
          {
            host: base.hostname,
            port: base.port,
            path,
            method,
            agent,
            headers: { accept: 'application/json', ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }) },
            timeout: 60_000,
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (chunk: Buffer) => chunks.push(chunk));
            res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
            res.on('error', reject);
          },
        );
        req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer within 60 s`)));
        req.on('error', reject);
        req.end(payload);
      });
    },
    close: () => agent.destroy(),
  };
}

async function must(rest: Rest, method: string, path: string, body?: unknown, okStatuses: readonly number[] = [200, 201]): Promise<Json> {
  const res = await rest.call(method, path, body);
  if (!okStatuses.includes(res.status)) throw new Error(`${method} ${path}: ${res.status} ${res.body.slice(0, 400)}`);
  return JSON.parse(res.body) as Json;
}

/** Runs `task(i)` for i in [0, count) with `concurrency` in flight; resolves with each one's duration in ms. */
async function inFlight(count: number, concurrency: number, task: (i: number) => Promise<void>): Promise<Float64Array> {
  const durations = new Float64Array(count);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      const started = performance.now();
      await task(i);
      durations[i] = performance.now() - started;
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return durations;
}

/** The pid of the process whose command line holds `needle` (the harness does not expose its pids). */
function pidOf(needle: string): number {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (cmdline.includes(needle)) return Number(entry);
    } catch {
      // exited meanwhile
    }
  }
  throw new Error(`no process with ${needle} on its command line`);
}

/**
 * The protocol a server picks when the bench's own probe offers h2 and http/1.1 (ALPN). What the
 * apiserver offers depends on the webhook's address (k8s.io/apiserver pkg/util/webhook/client.go):
 * h2 and http/1.1 for a URL on a loopback host, as here; http/1.1 alone for a Service reference or
 * any other URL. For the bare server, what the apiserver's connections negotiated is read from its
 * log (connectionsIn).
 */
function alpnOf(port: number, ca: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ca, servername: 'localhost', ALPNProtocols: ['h2', 'http/1.1'] }, () => {
      resolvePromise(socket.alpnProtocol || 'none (HTTP/1.1)');
      socket.destroy();
    });
    socket.once('error', reject);
  });
}

/** TCP connections established to a local port (/proc/net/tcp, IPv4): how many the apiserver keeps open to the webhook. */
function establishedTo(port: number): number {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .slice(1)
    .filter((line) => {
      const [, local, , state] = line.trim().split(/\s+/);
      return local?.endsWith(hex) === true && state === '01';
    }).length;
}

/**
 * The connections the bare server (started with --log-connections) accepted since `offset` bytes of its
 * log, by the protocol ALPN settled on (`none`: the client offered no ALPN). stdout to a file is written
 * synchronously, so the log is complete up to the last connection accepted.
 */
function connectionsIn(logFile: string, offset: number): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const line of readFileSync(logFile).subarray(offset).toString('utf8').split('\n')) {
    const match = /^connection (\S+)$/.exec(line);
    if (match?.[1] !== undefined) counts[match[1]] = (counts[match[1]] ?? 0) + 1;
  }
  return counts;
}

const byProtocol = (counts: Record<string, number>): string =>
  Object.entries(counts)
    .map(([protocol, n]) => `${protocol} ${n}`)
    .join(', ') || 'none';

interface Calls {
  readonly webhook: number;
  readonly bare: number;
}

/** Sums of the apiserver's call counter (apiserver_admission_webhook_admission_duration_seconds) for our webhook and the bare server. */
async function webhookCalls(rest: Rest): Promise<Calls> {
  const { status, body } = await rest.call('GET', '/metrics');
  if (status !== 200) throw new Error(`GET /metrics: ${status}`);
  const total = { webhook: 0, bare: 0 };
  for (const line of body.split('\n')) {
    if (!line.startsWith('apiserver_admission_webhook_admission_duration_seconds_count{')) continue;
    const count = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (line.includes(`name="${WEBHOOK_NAME}"`)) total.webhook += count;
    else if (line.includes(`name="${BARE_WEBHOOK_NAME}"`)) total.bare += count;
  }
  return total;
}

// ---------------------------------------------------------------------------------------------

/** The bench's small tenant pod as the apiserver receives it from a user: no owner, no managedFields. */
function podTemplate(): Json {
  const tenant = buildFixtures().find((f) => f.name === 'tenant');
  if (!tenant) throw new Error('no tenant fixture');
  const object = (JSON.parse(tenant.body) as { request: { object: Json } }).request.object;
  const metadata = object.metadata as Json;
  delete metadata.managedFields;
  delete metadata.ownerReferences;
  delete metadata.namespace;
  delete object.status;
  return object;
}

function namespaceName(kind: Kind, i: number): string {
  return kind === 'sandboxed' ? `tenant-${String(i).padStart(5, '0')}` : `${kind}-${String(i).padStart(4, '0')}`;
}

interface Round {
  readonly kind: Kind;
  readonly round: number;
  readonly pods: number;
  readonly seconds: number;
  readonly podsPerSecond: number;
  readonly latencyMs: { readonly p50: number; readonly p99: number };
  readonly cpuMsPerPod: { readonly apiserver: number; readonly etcd: number; readonly webhook: number; readonly bare: number };
  readonly webhookCallsPerPod: number;
  readonly bareCallsPerPod: number;
  readonly failed: number;
  readonly wrongClass: number;
  readonly stealPercent: number;
}

interface KindSummary {
  readonly podsPerSecond: number;
  readonly podsPerSecondRange: number[];
  readonly latencyP50Ms: number;
  readonly latencyP99Ms: number;
  readonly apiserverCpuMsPerPod: number;
  readonly etcdCpuMsPerPod: number;
  readonly webhookCpuMsPerPod: number;
  readonly webhookReviewCpuMsPerPod: number;
  readonly webhookCallsPerPod: number;
  /** the bare server's: its own kind, floor, calls it; the others should not */
  readonly bareCpuMsPerPod: number;
  readonly bareReviewCpuMsPerPod: number;
  readonly bareCallsPerPod: number;
  readonly failed: number;
  readonly wrongClassOnCreate: number;
}

interface Pids {
  readonly apiserver: number;
  readonly etcd: number;
  readonly webhook: number;
  /** the floor's bare node:https server */
  readonly bare: number;
}

async function runRound(
  rest: Rest,
  pids: Pids,
  template: Json,
  kind: Kind,
  round: number,
  count: number,
  namespaces: number,
  offset: number,
  concurrency: number,
): Promise<Round> {
  const expected = EXPECTED_CLASS[kind];
  let failed = 0;
  let wrongClass = 0;
  const errors: string[] = [];
  const callsBefore = await webhookCalls(rest);
  const cpu = { apiserver: cpuTimeMs(pids.apiserver), etcd: cpuTimeMs(pids.etcd), webhook: cpuTimeMs(pids.webhook), bare: cpuTimeMs(pids.bare) };
  const stolenBefore = stolenCpuSeconds();
  const started = performance.now();
  const latencies = await inFlight(count, concurrency, async (i) => {
    const namespace = namespaceName(kind, (offset + i) % namespaces);
    const res = await rest.call('POST', `/api/v1/namespaces/${namespace}/pods`, template);
    if (res.status !== 201) {
      failed += 1;
      if (errors.length < 3) errors.push(`${res.status} ${res.body.slice(0, 300)}`);
      return;
    }
    const pod = JSON.parse(res.body) as { spec?: { runtimeClassName?: string; overhead?: unknown } };
    if (pod.spec?.runtimeClassName !== expected || (kind === 'overhead' && pod.spec?.overhead === undefined)) wrongClass += 1;
  });
  const seconds = (performance.now() - started) / 1000;
  const stolen = stolenCpuSeconds();
  const used = {
    apiserver: cpuTimeMs(pids.apiserver) - cpu.apiserver,
    etcd: cpuTimeMs(pids.etcd) - cpu.etcd,
    webhook: cpuTimeMs(pids.webhook) - cpu.webhook,
    bare: cpuTimeMs(pids.bare) - cpu.bare,
  };
  const callsAfter = await webhookCalls(rest);
  for (const error of errors) console.log(`  ${kind} round ${round}: create failed: ${error}`);
  const ok = count - failed;
  return {
    kind,
    round,
    pods: count,
    seconds,
    podsPerSecond: ok / seconds,
    latencyMs: { p50: percentile(latencies, 50), p99: percentile(latencies, 99) },
    cpuMsPerPod: { apiserver: used.apiserver / ok, etcd: used.etcd / ok, webhook: used.webhook / ok, bare: used.bare / ok },
    webhookCallsPerPod: (callsAfter.webhook - callsBefore.webhook) / count,
    bareCallsPerPod: (callsAfter.bare - callsBefore.bare) / count,
    failed,
    wrongClass,
    stealPercent: stolen === undefined || stolenBefore === undefined ? Number.NaN : (100 * (stolen - stolenBefore)) / (seconds * os.availableParallelism()),
  };
}

/** Lists every pod (paged) and counts, per kind, those stored and those of a sandboxed kind without their class. */
async function checkStored(rest: Rest): Promise<Record<Kind, { stored: number; wrongClass: number }>> {
  const counts: Record<Kind, { stored: number; wrongClass: number }> = {
    off: { stored: 0, wrongClass: 0 },
    sandboxed: { stored: 0, wrongClass: 0 },
    overhead: { stored: 0, wrongClass: 0 },
    floor: { stored: 0, wrongClass: 0 },
  };
  let continueToken = '';
  do {
    const page = await must(rest, 'GET', `/api/v1/pods?limit=500${continueToken ? `&continue=${encodeURIComponent(continueToken)}` : ''}`);
    for (const item of (page.items as Json[] | undefined) ?? []) {
      const namespace = String((item.metadata as Json).namespace);
      const kind: Kind | undefined = namespace.startsWith('tenant-')
        ? 'sandboxed'
        : namespace.startsWith('overhead-')
          ? 'overhead'
          : namespace.startsWith('off-')
            ? 'off'
            : namespace.startsWith('floor-')
              ? 'floor'
              : undefined;
      if (!kind) continue;
      counts[kind].stored += 1;
      if ((item.spec as Json).runtimeClassName !== EXPECTED_CLASS[kind]) counts[kind].wrongClass += 1;
    }
    continueToken = String((page.metadata as Json).continue ?? '');
  } while (continueToken);
  return counts;
}

const fmt = (value: number, digits = 1): string => (Number.isFinite(value) ? value.toFixed(digits) : '-');

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      namespaces: { type: 'string', default: '20000' },
      pods: { type: 'string', default: '300' },
      rounds: { type: 'string', default: '3' },
      concurrency: { type: 'string', default: '16' },
      'namespace-concurrency': { type: 'string', default: '32' },
      'node-flags': { type: 'string' },
      profile: { type: 'boolean', default: false },
      'floor-http2': { type: 'boolean', default: false },
      webhook: { type: 'string' },
    },
  });
  const tenants = Number(values.namespaces);
  const podsPerRound = Number(values.pods);
  const rounds = Number(values.rounds);
  const concurrency = Number(values.concurrency);
  const namespaceConcurrency = Number(values['namespace-concurrency']);
  const floorHttp2 = values['floor-http2'] === true;
  const bad = (n: number, min: number, max: number): boolean => !(Number.isInteger(n) && n >= min && n <= max);
  if (bad(tenants, 1, 100_000) || bad(podsPerRound, 10, 5_000) || bad(rounds, 1, 20) || bad(concurrency, 1, 256) || bad(namespaceConcurrency, 1, 256)) {
    console.error('bench:cluster: --namespaces 1..100000, --pods 10..5000, --rounds 1..20, --concurrency and --namespace-concurrency 1..256');
    return 2;
  }
  // This checkout's build, or another's (--webhook), to compare builds.
  const mainJs = values.webhook === undefined ? WEBHOOK_MAIN : resolve(values.webhook);
  if (!existsSync(mainJs)) {
    console.error(`bench:cluster: ${mainJs} is missing; run \`npm run bench:cluster\` (it builds first)`);
    return 2;
  }
  const nodeFlags = benchNodeFlags(values['node-flags']);
  // The unregistered, the overhead and the floor rounds spread their pods over namespaces of their own.
  const extraNamespaces = Math.min(podsPerRound, 400);
  const startedAt = new Date();
  const log = (line: string): void => console.log(`[${((Date.now() - startedAt.getTime()) / 1000).toFixed(1)} s] ${line}`);
  log(`load average ${os.loadavg().map((n) => n.toFixed(2)).join(' ')}; ${os.availableParallelism()} CPUs; Node ${process.version}`);

  const binaries = await ensureBinaries({ log });
  const cp = await startControlPlane({
    binaries,
    log,
    // No audit log: the harness's blocking audit log costs the apiserver a file write per request,
    // which a benchmark of the admission path would count as the apiserver's own.
    apiserverArgs: ['--audit-log-path='],
  });
  let webhook: RunningWebhook | undefined;
  let bare: ServerProcess | undefined;
  const bareDir = mkdtempSync(join(os.tmpdir(), 'sandbox-webhook-bench-bare-'));
  const rest = restClient(cp, Math.max(concurrency, namespaceConcurrency));
  try {
    const apiserverPid = pidOf(`--secure-port=${new URL(cp.apiserverUrl).port}`);
    const etcdPid = pidOf(`--listen-client-urls=${cp.etcdUrl}`);
    const version = (await must(rest, 'GET', '/version')).gitVersion;
    log(`kube-apiserver ${String(version)} ready (pid ${apiserverPid}, etcd pid ${etcdPid})`);

    // Namespaces: the slow part at scale, timed on its own.
    const created = performance.now();
    const namespaceBody = (name: string, labels: Record<string, string>): Json => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });
    const all: Array<[string, Record<string, string>]> = [
      ...Array.from({ length: extraNamespaces }, (_, i): [string, Record<string, string>] => [namespaceName('off', i), { [OFF_LABEL]: 'off' }]),
      ...Array.from({ length: extraNamespaces }, (_, i): [string, Record<string, string>] => [namespaceName('overhead', i), {}]),
      ...Array.from({ length: extraNamespaces }, (_, i): [string, Record<string, string>] => [namespaceName('floor', i), { [FLOOR_LABEL]: 'bare' }]),
      ...Array.from({ length: tenants }, (_, i): [string, Record<string, string>] => [namespaceName('sandboxed', i), {}]),
    ];
    const apiserverCpuBefore = cpuTimeMs(apiserverPid);
    await inFlight(all.length, namespaceConcurrency, async (i) => {
      const [name, labels] = all[i] as [string, Record<string, string>];
      await must(rest, 'POST', '/api/v1/namespaces', namespaceBody(name, labels), [201]);
    });
    const namespaceSeconds = (performance.now() - created) / 1000;
    const namespaceApiserverCpuMs = cpuTimeMs(apiserverPid) - apiserverCpuBefore;
    log(`${all.length} namespaces created in ${fmt(namespaceSeconds)} s (${fmt(all.length / namespaceSeconds, 0)}/s at ${namespaceConcurrency} in flight; apiserver ${fmt(namespaceApiserverCpuMs / all.length, 2)} ms CPU each)`);
    for (const runtimeClass of RUNTIME_CLASSES) await must(rest, 'POST', '/apis/node.k8s.io/v1/runtimeclasses', runtimeClass, [201]);

    // The webhook, as shipped, in cluster mode.
    const flavour = await webhookFlavour(mainJs, chartLogLevel());
    const profileFile = values.profile ? join(RESULTS_DIR, `cluster-webhook-${startedAt.toISOString().replace(/[:.]/g, '-')}.cpuprofile`) : undefined;
    const nodeOptions = [...nodeFlags, ...(profileFile ? [`--import=${join(ROOT, 'bench', 'cpu-profile.mjs')}`] : [])].join(' ');
    if (profileFile) mkdirSync(RESULTS_DIR, { recursive: true });
    const spawned = performance.now();
    webhook = await startWebhook({
      policyYaml: POLICY,
      kubeconfig: cp.kubeconfigPath,
      main: mainJs,
      // flavour.args names the metrics port, where the build has one.
      metricsPort: false,
      logLevel: flavour.logLevel,
      args: flavour.args,
      env: { NODE_OPTIONS: nodeOptions, ...(profileFile ? { BENCH_CPU_PROFILE: profileFile } : {}) },
      readyTimeoutMs: 60_000,
    });
    const readyMs = performance.now() - spawned;
    const rssAtReadyMB = rssMB(webhook.pid);
    log(`webhook ready in ${fmt(readyMs, 0)} ms (spawn to /readyz 200, both informers listed), RSS ${fmt(rssAtReadyMB)} MB (pid ${webhook.pid}, NODE_OPTIONS ${nodeOptions})`);

    // The floor: bare node:https with the webhook's Node flags and certificates, patching as the webhook
    // patches a tenant pod (the same class, the same rule annotation). With --floor-http2, node:http2
    // (allowHTTP1) instead. It logs each connection it accepts and the protocol ALPN settled on.
    const barePort = await freePort();
    const bareName = floorHttp2 ? 'bare node:http2 (allowHTTP1)' : 'bare node:https';
    const bareLog = join(bareDir, 'bare.log');
    bare = startServer(
      bareName,
      barePort,
      [
        ...nodeFlags,
        join(ROOT, 'bench', 'bare-webhook.mjs'),
        '--port', String(barePort),
        '--host', '127.0.0.1',
        '--tls-cert', join(webhook.certDir, 'tls.crt'),
        '--tls-key', join(webhook.certDir, 'tls.key'),
        '--patch-runtime-class', 'gvisor',
        '--patch-rule', 'tenants',
        '--log-connections',
        ...(floorHttp2 ? ['--http2'] : []),
      ],
      bareLog,
    );
    await waitReady(bare, Buffer.from(webhook.caPem));
    const barePid = bare.child.pid;
    if (barePid === undefined) throw new Error(`${bareName}: no pid`);
    // The connections logged from here on are the apiserver's (the bench's own readiness probes are before).
    const bareLogOffset = statSync(bareLog).size;
    log(`${bareName} ready (pid ${barePid}, port ${barePort}, Node flags ${nodeFlags.join(' ')})`);

    // Two entries with the same settings: ours for every namespace but the unregistered and the
    // floor's, the bare server's for the floor's alone.
    const caBundle = webhook.caBundle;
    const entry = (name: string, url: string, matchExpressions: Json[]): Json => ({
      name,
      clientConfig: { url, caBundle },
      rules: [{ apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], operations: ['CREATE'], scope: '*' }],
      admissionReviewVersions: ['v1'],
      sideEffects: 'None',
      matchPolicy: 'Equivalent',
      reinvocationPolicy: 'IfNeeded',
      failurePolicy: 'Fail',
      timeoutSeconds: 5,
      namespaceSelector: { matchExpressions },
    });
    await must(rest, 'POST', '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations', {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'MutatingWebhookConfiguration',
      metadata: { name: 'sandbox-webhook-bench' },
      webhooks: [
        entry(WEBHOOK_NAME, `${webhook.url}/mutate`, [
          { key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['kube-system'] },
          { key: OFF_LABEL, operator: 'NotIn', values: ['off'] },
          { key: FLOOR_LABEL, operator: 'NotIn', values: ['bare'] },
        ]),
        entry(BARE_WEBHOOK_NAME, `https://127.0.0.1:${barePort}/mutate`, [{ key: FLOOR_LABEL, operator: 'In', values: ['bare'] }]),
      ],
    }, [201]);
    // The apiserver sees the configuration through an informer: probe with dry-run creates until it calls
    // us, and the bare server.
    const template = podTemplate();
    const activeBy = Date.now() + 30_000;
    for (const kind of ['sandboxed', 'floor'] as const) {
      for (;;) {
        const res = await rest.call('POST', `/api/v1/namespaces/${namespaceName(kind, 0)}/pods?dryRun=All`, template);
        if (res.status === 201 && (JSON.parse(res.body) as { spec: Json }).spec.runtimeClassName === 'gvisor') break;
        if (Date.now() > activeBy) throw new Error(`the apiserver did not call the ${kind === 'floor' ? 'bare server' : 'webhook'} within 30 s: ${res.status} ${res.body.slice(0, 300)}`);
        await new Promise((done) => setTimeout(done, 100));
      }
    }
    const pids: Pids = { apiserver: apiserverPid, etcd: etcdPid, webhook: webhook.pid, bare: barePid };

    // A short warm-up of every kind (the JIT, the apiserver's caches), not counted.
    for (const kind of KINDS) await runRound(rest, pids, template, kind, 0, Math.min(50, podsPerRound), kind === 'sandboxed' ? tenants : extraNamespaces, tenants - 50, concurrency);
    log(`warm-up done; ${rounds} rounds of ${podsPerRound} pods per kind, ${concurrency} creates in flight, kinds in turn`);
    const results: Round[] = [];
    for (let round = 1; round <= rounds; round++) {
      const order = round % 2 === 1 ? KINDS : [...KINDS].reverse();
      for (const kind of order) {
        const namespaces = kind === 'sandboxed' ? tenants : extraNamespaces;
        const result = await runRound(rest, pids, template, kind, round, podsPerRound, namespaces, (round - 1) * podsPerRound, concurrency);
        results.push(result);
        log(
          `${kind.padEnd(9)} round ${round}: ${fmt(result.podsPerSecond, 0)} pods/s, p50 ${fmt(result.latencyMs.p50)} / p99 ${fmt(result.latencyMs.p99)} ms, ` +
            `CPU ms/pod apiserver ${fmt(result.cpuMsPerPod.apiserver, 2)} etcd ${fmt(result.cpuMsPerPod.etcd, 2)} webhook ${fmt(result.cpuMsPerPod.webhook, 3)} bare ${fmt(result.cpuMsPerPod.bare, 3)}, ` +
            `calls/pod webhook ${fmt(result.webhookCallsPerPod, 2)} bare ${fmt(result.bareCallsPerPod, 2)}, failed ${result.failed}, wrong class ${result.wrongClass}, steal ${fmt(result.stealPercent, 2)}%`,
        );
      }
    }
    const connections = establishedTo(webhook.port);
    // Before the ALPN probes, which the bare server would log too.
    const bareOpened = connectionsIn(bareLog, bareLogOffset);
    const bareOpenedTotal = Object.values(bareOpened).reduce((n, count) => n + count, 0);
    const alpn = await alpnOf(webhook.port, webhook.caPem);
    const bareAlpn = await alpnOf(barePort, webhook.caPem);
    const stored = await checkStored(rest);
    const rssAfterMB = rssMB(webhook.pid);
    const peakMB = peakRssMB(webhook.pid);
    const bareConnections = establishedTo(barePort);

    // What the webhook spends while no review comes (reload polling, timers, GC): its CPU per second
    // in the rounds that do not call it. Subtracted, it leaves what the reviews themselves cost. The
    // same for the bare server (which has no timers: about 0).
    const offRounds = results.filter((r) => r.kind === 'off');
    const idleCpuMsPerSecond = median(offRounds.map((r) => (r.cpuMsPerPod.webhook * (r.pods - r.failed)) / r.seconds));
    const bareIdleCpuMsPerSecond = median(offRounds.map((r) => (r.cpuMsPerPod.bare * (r.pods - r.failed)) / r.seconds));
    const summary = Object.fromEntries(
      KINDS.map((kind) => {
        const of = results.filter((r) => r.kind === kind);
        const m = (pick: (r: Round) => number): number => median(of.map(pick));
        return [
          kind,
          {
            podsPerSecond: m((r) => r.podsPerSecond),
            podsPerSecondRange: [Math.min(...of.map((r) => r.podsPerSecond)), Math.max(...of.map((r) => r.podsPerSecond))],
            latencyP50Ms: m((r) => r.latencyMs.p50),
            latencyP99Ms: m((r) => r.latencyMs.p99),
            apiserverCpuMsPerPod: m((r) => r.cpuMsPerPod.apiserver),
            etcdCpuMsPerPod: m((r) => r.cpuMsPerPod.etcd),
            webhookCpuMsPerPod: m((r) => r.cpuMsPerPod.webhook),
            webhookReviewCpuMsPerPod: m((r) => r.cpuMsPerPod.webhook - (idleCpuMsPerSecond * r.seconds) / (r.pods - r.failed)),
            webhookCallsPerPod: m((r) => r.webhookCallsPerPod),
            bareCpuMsPerPod: m((r) => r.cpuMsPerPod.bare),
            bareReviewCpuMsPerPod: m((r) => r.cpuMsPerPod.bare - (bareIdleCpuMsPerSecond * r.seconds) / (r.pods - r.failed)),
            bareCallsPerPod: m((r) => r.bareCallsPerPod),
            failed: of.reduce((n, r) => n + r.failed, 0),
            wrongClassOnCreate: of.reduce((n, r) => n + r.wrongClass, 0),
          },
        ];
      }),
    ) as Record<Kind, KindSummary>;

    const rows: Array<[string, (kind: Kind) => string]> = [
      ['pod creates per second (median; range)', (k) => `${fmt(summary[k].podsPerSecond, 0)} (${fmt(summary[k].podsPerSecondRange[0] ?? Number.NaN, 0)}-${fmt(summary[k].podsPerSecondRange[1] ?? Number.NaN, 0)})`],
      ['  vs without the webhook', (k) => fmt(summary[k].podsPerSecond / summary.off.podsPerSecond, 2)],
      ['create latency p50 / p99, ms', (k) => `${fmt(summary[k].latencyP50Ms)} / ${fmt(summary[k].latencyP99Ms)}`],
      ['apiserver CPU per pod, ms', (k) => fmt(summary[k].apiserverCpuMsPerPod, 2)],
      ['etcd CPU per pod, ms', (k) => fmt(summary[k].etcdCpuMsPerPod, 2)],
      // The floor's column: the bare server's figures, where the others have the webhook's.
      ['webhook (floor: bare) CPU per pod, ms', (k) => (k === 'off' ? '-' : fmt(k === 'floor' ? summary[k].bareCpuMsPerPod : summary[k].webhookCpuMsPerPod, 3))],
      ['  less its idle CPU, ms', (k) => (k === 'off' ? '-' : fmt(k === 'floor' ? summary[k].bareReviewCpuMsPerPod : summary[k].webhookReviewCpuMsPerPod, 3))],
      ['webhook (floor: bare) calls per pod', (k) => fmt(k === 'floor' ? summary[k].bareCallsPerPod : summary[k].webhookCallsPerPod, 2)],
      ['failed creates', (k) => String(summary[k].failed)],
      ['stored pods / without their class', (k) => `${stored[k].stored} / ${k === 'off' ? '-' : stored[k].wrongClass + summary[k].wrongClassOnCreate}`],
    ];
    console.log(
      `\nPod creation through kube-apiserver ${String(version)}: ${tenants} tenant namespaces (+${3 * extraNamespaces}), ${rounds} rounds of ${podsPerRound} pods per kind, ${concurrency} in flight; medians of rounds; floor server: ${bareName}`,
    );
    console.log(['figure'.padEnd(42), ...KINDS.map((k) => KIND_HEADINGS[k].padStart(16))].join(''));
    for (const [name, cell] of rows) console.log([name.padEnd(42), ...KINDS.map((k) => cell(k).padStart(16))].join(''));
    console.log(`webhook: ready in ${fmt(readyMs, 0)} ms, RSS ${fmt(rssAtReadyMB)} MB at ready, ${fmt(rssAfterMB)} MB after the rounds, peak ${fmt(peakMB)} MB`);
    console.log(`connections from the apiserver to the webhook open after the rounds: ${connections} (kept alive and reused); ALPN with h2 and http/1.1 offered by the bench's probe: ${alpn}`);
    console.log(
      `connections the apiserver opened to the ${bareName} server over the run: ${bareOpenedTotal} (by the protocol negotiated, from its log: ${byProtocol(bareOpened)}), ` +
        `open after the rounds: ${bareConnections}; ALPN with h2 and http/1.1 offered by the bench's probe: ${bareAlpn}`,
    );
    console.log(`idle CPU (rounds that do not call them): webhook ${fmt(idleCpuMsPerSecond, 2)}, bare server ${fmt(bareIdleCpuMsPerSecond, 2)} ms per second`);
    console.log(`namespaces: ${all.length} created in ${fmt(namespaceSeconds)} s at ${namespaceConcurrency} in flight`);

    const withClass = KINDS.filter((k) => EXPECTED_CLASS[k] !== undefined);
    const withoutTheirClass = withClass.reduce((n, k) => n + stored[k].wrongClass + summary[k].wrongClassOnCreate, 0);
    const checks = [
      { name: 'webhook CPU per sandboxed pod', target: `<= ${TARGETS.maxWebhookCpuMsPerPod} ms`, value: `${fmt(summary.sandboxed.webhookCpuMsPerPod, 3)} ms`, met: summary.sandboxed.webhookCpuMsPerPod <= TARGETS.maxWebhookCpuMsPerPod },
      { name: 'pod creates per second, sandboxed vs not registered', target: `>= ${TARGETS.minThroughputRatio}`, value: fmt(summary.sandboxed.podsPerSecond / summary.off.podsPerSecond, 2), met: summary.sandboxed.podsPerSecond / summary.off.podsPerSecond >= TARGETS.minThroughputRatio },
      { name: 'webhook RSS after the rounds', target: `< ${TARGETS.maxRssMB} MB`, value: `${fmt(rssAfterMB)} MB (peak ${fmt(peakMB)} MB)`, met: rssAfterMB < TARGETS.maxRssMB },
      { name: 'webhook ready', target: `< ${TARGETS.maxReadyMs} ms`, value: `${fmt(readyMs, 0)} ms`, met: readyMs < TARGETS.maxReadyMs },
      {
        name: 'no failed create; every sandboxed (and floor) pod stored with its class',
        target: '0',
        value: `${KINDS.reduce((n, k) => n + summary[k].failed, 0)} failed, ${withoutTheirClass} without their class`,
        met: KINDS.every((k) => summary[k].failed === 0) && withoutTheirClass === 0,
      },
    ];
    console.log('\nTargets');
    for (const c of checks) console.log(`  ${c.met ? 'MET    ' : 'NOT MET'}  ${c.name}: ${c.value} (target ${c.target})`);
    const gap = summary.sandboxed.apiserverCpuMsPerPod - summary.off.apiserverCpuMsPerPod;
    console.log(`apiserver CPU per pod with the webhook minus without: ${fmt(gap, 2)} ms (its own webhook call: no webhook can remove it); webhook ${fmt(summary.sandboxed.webhookCpuMsPerPod, 3)} ms`);
    const floor = summary.floor;
    console.log(
      `webhook CPU per sandboxed pod vs the floor's (${bareName}, same patch, per floor pod): ${fmt(summary.sandboxed.webhookCpuMsPerPod, 3)} vs ${fmt(floor.bareCpuMsPerPod, 3)} ms ` +
        `(ratio ${fmt(summary.sandboxed.webhookCpuMsPerPod / floor.bareCpuMsPerPod, 2)}); less idle CPU ${fmt(summary.sandboxed.webhookReviewCpuMsPerPod, 3)} vs ${fmt(floor.bareReviewCpuMsPerPod, 3)} ms ` +
        `(ratio ${fmt(summary.sandboxed.webhookReviewCpuMsPerPod / floor.bareReviewCpuMsPerPod, 2)}); apiserver ${fmt(summary.sandboxed.apiserverCpuMsPerPod, 2)} vs ${fmt(floor.apiserverCpuMsPerPod, 2)} ms`,
    );

    if (profileFile) {
      // The profile is written when the process exits.
      await webhook.stop('SIGTERM');
      console.log(`CPU profile of the webhook: ${profileFile} (npx tsx bench/profile.ts ${profileFile})`);
    }

    const report = {
      startedAt: startedAt.toISOString(),
      durationSeconds: Math.round((Date.now() - startedAt.getTime()) / 1000),
      machine: { nproc: os.availableParallelism(), node: process.version, kubernetes: version, loadAverage1m: os.loadavg()[0] },
      options: { tenants, extraNamespaces, podsPerRound, rounds, concurrency, namespaceConcurrency, webhook: mainJs, nodeFlags, logLevel: flavour.logLevel, floorHttp2 },
      namespaces: { count: all.length, seconds: namespaceSeconds, apiserverCpuMsEach: namespaceApiserverCpuMs / all.length },
      webhook: { readyMs, rssAtReadyMB, rssAfterMB, peakRssMB: peakMB, idleCpuMsPerSecond, connectionsOpenAfterRounds: connections, alpn },
      bare: {
        server: bareName,
        idleCpuMsPerSecond: bareIdleCpuMsPerSecond,
        connectionsOpenedByApiserver: bareOpenedTotal,
        connectionsOpenedByProtocol: bareOpened,
        connectionsOpenAfterRounds: bareConnections,
        alpnProbe: bareAlpn,
        rssAfterMB: rssMB(barePid),
        peakRssMB: peakRssMB(barePid),
      },
      rounds: results,
      summary,
      stored,
      targets: TARGETS,
      checks,
    };
    mkdirSync(RESULTS_DIR, { recursive: true });
    const text = `${JSON.stringify(report, null, 2)}\n`;
    writeFileSync(join(RESULTS_DIR, 'cluster-latest.json'), text);
    writeFileSync(join(RESULTS_DIR, `cluster-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`), text);
    log(`results: bench/results/cluster-latest.json`);
    return 0;
  } finally {
    rest.close();
    if (bare) await stopServer(bare);
    await webhook?.stop('SIGTERM');
    await cp.stop();
    rmSync(bareDir, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`bench:cluster: ${(error as Error).stack ?? String(error)}`);
    process.exit(1);
  },
);
