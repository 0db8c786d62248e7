// A real, minimal Kubernetes control plane on loopback: etcd + kube-apiserver (+ kube-scheduler), the
// way envtest runs it, with certificates made on the spot and everything under one temp dir.
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { freePort } from '../../support/net.js';
import { generateControlPlaneCerts, type ControlPlaneCerts } from './certs.js';
import { makeTempDir, removeTempDir, startProcess, type ManagedProcess } from './process.js';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ControlPlaneBinaries {
  kubeApiserver: string;
  etcd: string;
  kubeScheduler?: string;
}

export interface ControlPlaneOptions {
  binaries: ControlPlaneBinaries;
  /** Start kube-scheduler too (needs binaries.kubeScheduler). Default false; see startScheduler(). */
  scheduler?: boolean;
  /** Extra kube-apiserver flags, appended last (so they win over ours). */
  apiserverArgs?: readonly string[];
  /** Service CIDR; the first address is the `kubernetes` service (in the serving certificate). */
  serviceClusterIpRange?: string;
  /** How long to wait for each component to become ready. Default 120 s. */
  readyTimeoutMs?: number;
  log?: (line: string) => void;
}

export interface ControlPlaneTimings {
  /** From spawning etcd until its /health answers. */
  etcdReadyMs: number;
  /** From spawning kube-apiserver until /readyz answers 200. */
  apiserverReadyMs: number;
  /** Certificates + etcd + kube-apiserver (+ kube-scheduler when started with it). */
  totalMs: number;
  schedulerReadyMs?: number;
}

export interface RestartResult {
  /** How long the apiserver took to exit. */
  stopMs: number;
  /** From spawning it again until /readyz answers 200. */
  startMs: number;
}

export interface ControlPlane {
  /** Temp dir holding certs, kubeconfig, etcd data and logs (removed by stop()). */
  readonly dir: string;
  readonly kubeconfigPath: string;
  /** https://127.0.0.1:<port> */
  readonly apiserverUrl: string;
  readonly etcdUrl: string;
  readonly certs: ControlPlaneCerts;
  readonly timings: ControlPlaneTimings;
  /** Log files, for post-mortems: etcd.log, kube-apiserver.log, kube-scheduler.log. */
  readonly logFiles: { etcd: string; apiserver: string; scheduler: string };
  /**
   * The apiserver's audit log (JSON lines, one audit.k8s.io/v1 Event each): pod requests at level
   * Metadata, which carries the webhooks' audit annotations (`<webhook name>/<key>`).
   */
  readonly auditLogPath: string;
  /** GET a path on the apiserver as the admin; resolves with the status and the body. */
  get(path: string): Promise<{ status: number; body: string }>;
  /** Stops kube-apiserver (default SIGTERM; SIGKILL drops every connection without a goodbye). */
  stopApiserver(signal?: NodeJS.Signals): Promise<number>;
  /** Starts kube-apiserver again on the same port and etcd; resolves once /readyz answers 200. */
  startApiserver(): Promise<number>;
  /** stopApiserver + startApiserver. */
  restartApiserver(signal?: NodeJS.Signals): Promise<RestartResult>;
  apiserverRunning(): boolean;
  /** Starts kube-scheduler if it is not running; resolves once its /healthz answers. */
  startScheduler(): Promise<number>;
  stopScheduler(): Promise<void>;
  schedulerRunning(): boolean;
  /** Stops everything and removes the temp dir. Safe to call twice. */
  stop(): Promise<void>;
}

export { freePort };


function tail(file: string, lines = 40): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

interface TlsOptions {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  rejectUnauthorized?: boolean;
}

/** One GET, no retries; resolves with status and body or rejects on a connection error. */
export function getUrl(url: string, tls: TlsOptions = {}, timeoutMs = 5_000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const request = target.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = request(target, { method: 'GET', timeout: timeoutMs, ...tls }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/**
 * Polls until `check` resolves true; fails early when `process` exits (with the tail of its log) and
 * after `timeoutMs`. Resolves with the milliseconds waited.
 */
async function waitUntil(
  what: string,
  check: () => Promise<boolean>,
  process: ManagedProcess,
  timeoutMs: number,
): Promise<number> {
  const started = Date.now();
  let lastError = '';
  while (Date.now() - started < timeoutMs) {
    if (!process.running()) {
      throw new Error(`${process.name} exited before ${what}; last log lines:\n${tail(process.logFile)}`);
    }
    try {
      if (await check()) return Date.now() - started;
    } catch (error) {
      lastError = String(error);
    }
    await sleep(100);
  }
  throw new Error(`${what}: not after ${timeoutMs} ms (${lastError}); last log lines of ${process.name}:\n${tail(process.logFile)}`);
}

// Pods only (what the webhook admits), at Metadata: enough for audit annotations, no request bodies.
const AUDIT_POLICY = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  resources: [{ group: "", resources: ["pods"] }]
- level: None
`;

function kubeconfigYaml(server: string, certs: ControlPlaneCerts): string {
  const b64 = (file: string): string => readFileSync(file).toString('base64');
  // Data embedded, not file paths: the file stays valid wherever it is copied.
  return `apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: ${server}
    certificate-authority-data: ${b64(certs.caCert)}
users:
- name: admin
  user:
    client-certificate-data: ${b64(certs.adminCert)}
    client-key-data: ${b64(certs.adminKey)}
contexts:
- name: e2e
  context:
    cluster: e2e
    user: admin
    namespace: default
current-context: e2e
`;
}

export async function startControlPlane(options: ControlPlaneOptions): Promise<ControlPlane> {
  const log = options.log ?? (() => undefined);
  const readyTimeoutMs = options.readyTimeoutMs ?? 120_000;
  const serviceRange = options.serviceClusterIpRange ?? '10.0.0.0/24';
  const serviceIp = serviceRange.replace(/\.0\/\d+$/, '.1');
  const started = Date.now();
  const dir = makeTempDir('controlplane');
  const logDir = join(dir, 'logs');
  mkdirSync(logDir);
  const logFiles = {
    etcd: join(logDir, 'etcd.log'),
    apiserver: join(logDir, 'kube-apiserver.log'),
    scheduler: join(logDir, 'kube-scheduler.log'),
  };

  let etcd: ManagedProcess | undefined;
  let apiserver: ManagedProcess | undefined;
  let scheduler: ManagedProcess | undefined;
  let stopped = false;

  const stopAll = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    // Clients first, storage last: the apiserver would only log etcd errors while shutting down.
    await scheduler?.stop('SIGTERM', 5_000);
    await apiserver?.stop('SIGTERM', 10_000);
    await etcd?.stop('SIGTERM', 5_000);
    removeTempDir(dir);
  };

  try {
    const certDir = join(dir, 'pki');
    mkdirSync(certDir);
    const certs = await generateControlPlaneCerts(certDir, { serviceClusterIp: serviceIp });
    const tls: TlsOptions = {
      ca: readFileSync(certs.caCert),
      cert: readFileSync(certs.adminCert),
      key: readFileSync(certs.adminKey),
    };

    const [etcdClientPort, etcdPeerPort, apiserverPort, schedulerPort] = [
      await freePort(), await freePort(), await freePort(), await freePort(),
    ] as [number, number, number, number];
    const etcdUrl = `http://127.0.0.1:${etcdClientPort}`;
    const peerUrl = `http://127.0.0.1:${etcdPeerPort}`;
    const apiserverUrl = `https://127.0.0.1:${apiserverPort}`;
    const kubeconfigPath = join(dir, 'kubeconfig');
    const auditLogPath = join(logDir, 'audit.log');
    const auditPolicyPath = join(dir, 'audit-policy.yaml');
    writeFileSync(auditPolicyPath, AUDIT_POLICY);
    writeFileSync(kubeconfigPath, kubeconfigYaml(apiserverUrl, certs), { mode: 0o600 });

    etcd = startProcess({
      name: 'etcd',
      command: options.binaries.etcd,
      logFile: logFiles.etcd,
      args: [
        '--name=e2e',
        `--data-dir=${join(dir, 'etcd')}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=${peerUrl}`,
        `--initial-advertise-peer-urls=${peerUrl}`,
        `--initial-cluster=e2e=${peerUrl}`,
        // Test data is thrown away: skip fsync, the slowest part of etcd on a shared disk.
        '--unsafe-no-fsync=true',
        '--log-level=warn',
      ],
    });
    const etcdProcess = etcd;
    const etcdReadyMs = await waitUntil(
      'etcd /health',
      async () => (await getUrl(`${etcdUrl}/health`)).status === 200,
      etcdProcess,
      readyTimeoutMs,
    );
    log(`etcd ready in ${etcdReadyMs} ms at ${etcdUrl}`);

    const apiserverArgs = [
      `--etcd-servers=${etcdUrl}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      `--secure-port=${apiserverPort}`,
      `--tls-cert-file=${certs.servingCert}`,
      `--tls-private-key-file=${certs.servingKey}`,
      `--client-ca-file=${certs.caCert}`,
      // kube-apiserver writes generated files into --cert-dir even when it does not need them.
      `--cert-dir=${join(dir, 'apiserver-certs')}`,
      `--service-cluster-ip-range=${serviceRange}`,
      `--service-account-issuer=${apiserverUrl}`,
      `--service-account-key-file=${certs.serviceAccountPublicKey}`,
      `--service-account-signing-key-file=${certs.serviceAccountKey}`,
      '--authorization-mode=Node,RBAC',
      // The default plugin set already has these on; naming them documents what the tests rely on.
      '--enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy,RuntimeClass',
      // No controller-manager mints tokens here, so pods without a ServiceAccount token must be accepted.
      '--disable-admission-plugins=ServiceAccount',
      // Tests create privileged/hostPath pods to check that the webhook rejects them itself.
      '--allow-privileged=true',
      '--profiling=false',
      // The reconciler would publish 127.0.0.1 as the endpoint of the `kubernetes` service, which
      // Endpoints validation rejects (loopback), and log that error every few seconds.
      '--endpoint-reconciler-type=none',
      // Without it, a graceful stop (SIGTERM) hangs for more than 30 s on open watches
      // (kube-scheduler's, the webhook's informers); with it, they are closed within 2 s.
      '--shutdown-watch-termination-grace-period=2s',
      `--audit-policy-file=${auditPolicyPath}`,
      `--audit-log-path=${auditLogPath}`,
      // Blocking: an event is in the file before the response reaches the client.
      '--audit-log-mode=blocking',
      ...(options.apiserverArgs ?? []),
    ];

    let apiserverStarts = 0;
    const startApiserver = async (): Promise<number> => {
      if (apiserver?.running()) throw new Error('kube-apiserver is already running');
      apiserverStarts += 1;
      writeFileSync(logFiles.apiserver, `\n==== start ${apiserverStarts} at ${new Date().toISOString()} ====\n`, { flag: 'a' });
      const process = startProcess({
        name: 'kube-apiserver',
        command: options.binaries.kubeApiserver,
        args: apiserverArgs,
        logFile: logFiles.apiserver,
      });
      apiserver = process;
      const ms = await waitUntil(
        'kube-apiserver /readyz',
        async () => (await getUrl(`${apiserverUrl}/readyz`, tls)).status === 200,
        process,
        readyTimeoutMs,
      );
      log(`kube-apiserver ready in ${ms} ms at ${apiserverUrl}`);
      return ms;
    };
    const stopApiserver = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<number> => {
      const t0 = Date.now();
      await apiserver?.stop(signal, 30_000);
      return Date.now() - t0;
    };

    const schedulerKubeconfig = kubeconfigPath;
    const startScheduler = async (): Promise<number> => {
      if (scheduler?.running()) return 0;
      const binary = options.binaries.kubeScheduler;
      if (!binary) throw new Error('no kube-scheduler binary given');
      const process = startProcess({
        name: 'kube-scheduler',
        command: binary,
        logFile: logFiles.scheduler,
        args: [
          `--kubeconfig=${schedulerKubeconfig}`,
          `--authentication-kubeconfig=${schedulerKubeconfig}`,
          `--authorization-kubeconfig=${schedulerKubeconfig}`,
          '--bind-address=127.0.0.1',
          `--secure-port=${schedulerPort}`,
          '--leader-elect=false',
        ],
      });
      scheduler = process;
      // /healthz is on the always-allowed paths; its certificate is self-signed.
      const ms = await waitUntil(
        'kube-scheduler /healthz',
        async () => (await getUrl(`https://127.0.0.1:${schedulerPort}/healthz`, { rejectUnauthorized: false })).status === 200,
        process,
        readyTimeoutMs,
      );
      log(`kube-scheduler ready in ${ms} ms`);
      return ms;
    };

    const apiserverReadyMs = await startApiserver();
    const timings: ControlPlaneTimings = { etcdReadyMs, apiserverReadyMs, totalMs: 0 };
    if (options.scheduler) timings.schedulerReadyMs = await startScheduler();
    timings.totalMs = Date.now() - started;

    return {
      dir,
      kubeconfigPath,
      apiserverUrl,
      etcdUrl,
      certs,
      timings,
      logFiles,
      auditLogPath,
      get: (path) => getUrl(`${apiserverUrl}${path}`, tls),
      stopApiserver,
      startApiserver,
      async restartApiserver(signal: NodeJS.Signals = 'SIGTERM') {
        const stopMs = await stopApiserver(signal);
        const startMs = await startApiserver();
        return { stopMs, startMs };
      },
      apiserverRunning: () => apiserver?.running() ?? false,
      startScheduler,
      async stopScheduler() {
        await scheduler?.stop('SIGTERM', 5_000);
      },
      schedulerRunning: () => scheduler?.running() ?? false,
      stop: stopAll,
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}
