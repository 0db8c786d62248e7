// Helpers for the operations tests: the built webhook as a real process (node dist/main.js), volumes
// laid out the way the kubelet writes ConfigMaps and Secrets, and HTTPS clients that speak
// AdmissionReview over real TLS sockets with keep-alive, recording every answer.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { freePort } from '../support/net.js';
import { imageNodeFlags } from '../support/image-flags.js';
export { percentile } from '../support/stats.js';
import { podReview as supportPodReview } from '../support/review.js';
import { setTimeout as sleep } from 'node:timers/promises';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
/** The built webhook; OPS_WEBHOOK_MAIN runs another build (e.g. of an older commit) for comparison. */
export const WEBHOOK_MAIN = process.env.OPS_WEBHOOK_MAIN ?? join(REPO_ROOT, 'dist/main.js');

export { AtomicVolume } from './atomic-volume.js';

const execFileAsync = promisify(execFile);
export { sleep };

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `sandbox-webhook-ops-${prefix}-`));
}

export interface CertSet {
  readonly caPem: string;
  readonly certPem: string;
  readonly keyPem: string;
  /** sha256 fingerprint of the serving certificate, as TLSSocket.getPeerCertificate() spells it */
  readonly fingerprint256: string;
}

/** A fresh CA and serving certificate from certs/generate.sh (SANs include localhost and 127.0.0.1). */
export async function generateCerts(): Promise<CertSet> {
  const dir = tempDir('certs');
  try {
    await execFileAsync('sh', [join(REPO_ROOT, 'certs/generate.sh'), '--out', dir], { cwd: REPO_ROOT });
    const certPem = readFileSync(join(dir, 'tls.crt'), 'utf8');
    return {
      caPem: readFileSync(join(dir, 'ca.crt'), 'utf8'),
      certPem,
      keyPem: readFileSync(join(dir, 'tls.key'), 'utf8'),
      fingerprint256: new X509Certificate(certPem).fingerprint256,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A work directory holding a fresh serving certificate and a policy, as the files startWebhook() reads. */
export async function servingFiles(prefix: string, policy: string): Promise<{
  readonly workDir: string;
  readonly certs: CertSet;
  readonly files: { policyFile: string; certFile: string; keyFile: string; ca: readonly string[] };
}> {
  const workDir = tempDir(prefix);
  const certs = await generateCerts();
  const files = { policyFile: join(workDir, 'policy.yaml'), certFile: join(workDir, 'tls.crt'), keyFile: join(workDir, 'tls.key'), ca: [certs.caPem] };
  writeFileSync(files.certFile, certs.certPem);
  writeFileSync(files.keyFile, certs.keyPem);
  writeFileSync(files.policyFile, policy);
  return { workDir, certs, files };
}

export { freePort };

export interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly [field: string]: unknown;
}

export interface WebhookProcess {
  readonly port: number;
  /** the plain-HTTP port of GET /metrics */
  readonly metricsPort: number;
  /** GET /metrics: the Prometheus text */
  scrape(): Promise<string>;
  /** resident set size of the process in bytes, from /proc (Linux); undefined elsewhere */
  rssBytes(): number | undefined;
  readonly child: ChildProcess;
  /** stdout, parsed line by line (pino JSON) */
  readonly logs: LogLine[];
  /** everything written to stdout and stderr, raw */
  output(): string;
  /** resolves with the exit code (or signal name) and the performance.now() of the exit */
  readonly exited: Promise<{ code: number | string; at: number }>;
  waitForLog(predicate: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  kill(signal?: NodeJS.Signals): void;
  /** CPU seconds (user + system) the process has used so far, from /proc (Linux); undefined elsewhere */
  cpuSeconds(): number | undefined;
}

// A test process that dies must not leave webhooks behind.
const running = new Set<WebhookProcess>();
process.once('exit', () => {
  for (const webhook of running) webhook.kill('SIGKILL');
});

export async function startWebhook(args: {
  policyFile: string;
  certFile: string;
  keyFile: string;
  /** CA PEMs to trust while waiting for /readyz */
  ca: readonly string[];
  extraArgs?: readonly string[];
}): Promise<WebhookProcess> {
  if (!existsSync(WEBHOOK_MAIN)) throw new Error(`${WEBHOOK_MAIN} is missing: run npm run build first`);
  const port = await freePort();
  const metricsPort = await freePort();
  const child = spawn(
    process.execPath,
    [
      // The image's Node flags (the Dockerfile's CMD), unless OPS_NODE_ARGS names others.
      ...(process.env.OPS_NODE_ARGS !== undefined ? process.env.OPS_NODE_ARGS.split(' ').filter(Boolean) : imageNodeFlags()),
      WEBHOOK_MAIN,
      '--port', String(port),
      '--metrics-port', String(metricsPort),
      '--host', '127.0.0.1',
      '--offline',
      '--policy', args.policyFile,
      '--tls-cert', args.certFile,
      '--tls-key', args.keyFile,
      ...(args.extraArgs ?? []),
    ],
    { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, KUBECONFIG: '' } },
  );
  const logs: LogLine[] = [];
  let raw = '';
  const waiters = new Set<() => void>();
  createInterface({ input: child.stdout! }).on('line', (line) => {
    raw += `${line}\n`;
    try {
      logs.push(JSON.parse(line) as LogLine);
    } catch {
      // not a log line; kept in raw output
    }
    for (const wake of waiters) wake();
  });
  child.stderr!.on('data', (chunk: Buffer) => {
    raw += chunk.toString('utf8');
  });
  const exited = new Promise<{ code: number | string; at: number }>((done) => {
    child.once('exit', (code, signal) => {
      done({ code: code ?? signal ?? 'unknown', at: performance.now() });
      for (const wake of waiters) wake();
    });
  });
  let hasExited = false;
  void exited.then(() => (hasExited = true));

  const waitForLog = (predicate: (line: LogLine) => boolean, timeoutMs = 15_000): Promise<LogLine> =>
    new Promise((done, fail) => {
      const check = (): boolean => {
        const found = logs.find(predicate);
        if (found) {
          finish();
          done(found);
          return true;
        }
        if (hasExited) {
          finish();
          fail(new Error(`webhook exited before the expected log line; output:\n${raw}`));
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        finish();
        fail(new Error(`no expected log line within ${timeoutMs} ms; output:\n${raw}`));
      }, timeoutMs);
      const wake = (): void => void check();
      const finish = (): void => {
        clearTimeout(timer);
        waiters.delete(wake);
      };
      waiters.add(wake);
      check();
    });

  const webhook: WebhookProcess = {
    port,
    metricsPort,
    scrape: async () => {
      const { status, text } = await getPlain(metricsPort, '/metrics');
      if (status !== 200) throw new Error(`GET /metrics on port ${metricsPort}: ${status} ${text.slice(0, 200)}`);
      return text;
    },
    rssBytes: () => {
      try {
        const pages = Number(readFileSync(`/proc/${child.pid}/statm`, 'utf8').split(' ')[1]);
        return pages * 4096;
      } catch {
        return undefined;
      }
    },
    child,
    logs,
    output: () => raw,
    exited,
    waitForLog,
    kill: (signal = 'SIGTERM') => {
      if (!hasExited) child.kill(signal);
    },
    cpuSeconds: () => {
      try {
        // Fields 14 and 15 of /proc/<pid>/stat, after the parenthesised command name.
        const fields = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
        return (Number(fields[11]) + Number(fields[12])) / 100;
      } catch {
        return undefined;
      }
    },
  };
  running.add(webhook);
  void exited.then(() => running.delete(webhook));
  const deadline = performance.now() + 20_000;
  for (;;) {
    if (hasExited) throw new Error(`webhook exited at start; output:\n${raw}`);
    if ((await get(port, args.ca, '/readyz')).status === 200) return webhook;
    if (performance.now() > deadline) {
      webhook.kill('SIGKILL');
      throw new Error(`webhook not ready within 20 s; output:\n${raw}`);
    }
    await sleep(50);
  }
}

// --- AdmissionReview fixtures -----------------------------------------------------------------

export interface PodSpecOptions {
  readonly namespace: string;
  readonly name?: string;
  readonly generateName?: string;
  readonly env?: Record<string, string>;
  /** containers in the pod (default 1) */
  readonly containers?: number;
}

export function podReview(uid: string, options: PodSpecOptions): Record<string, unknown> {
  const env = Object.entries(options.env ?? {}).map(([name, value]) => ({ name, value }));
  const containers = Array.from({ length: options.containers ?? 1 }, (_, i) => ({
    name: `app-${i}`,
    image: i % 2 === 0 ? 'nginx:1.27' : 'registry.example.com/tenant/app@sha256:' + 'a'.repeat(64),
    env,
    resources: { requests: { cpu: '100m', memory: '64Mi' } },
  }));
  const metadata: Record<string, unknown> = { namespace: options.namespace, labels: { app: 'web' } };
  if (options.name !== undefined) metadata.name = options.name;
  if (options.generateName !== undefined) metadata.generateName = options.generateName;
  return supportPodReview({
    uid,
    namespace: options.namespace,
    pod: { apiVersion: 'v1', kind: 'Pod', metadata, spec: { containers, restartPolicy: 'Always' } },
  });
}

/** A review serialized ahead of time, so that a load generator spends its CPU on the wire, not on JSON. */
export interface PreparedReview {
  readonly uid: string;
  readonly body: string;
}

function isPrepared(review: Record<string, unknown> | PreparedReview): review is PreparedReview {
  return typeof review.body === 'string' && typeof review.uid === 'string';
}

function prepare(review: Record<string, unknown>): PreparedReview {
  return { uid: (review.request as { uid: string }).uid, body: JSON.stringify(review) };
}

const TEMPLATE_UID = '00000000-0000-4000-8000-000000000000';

/** Returns a function that makes the review `make(uid)` with a fresh uid by text substitution. */
export function reviewTemplate(make: (uid: string) => Record<string, unknown>): () => PreparedReview {
  const [before, after] = JSON.stringify(make(TEMPLATE_UID)).split(`"${TEMPLATE_UID}"`);
  if (before === undefined || after === undefined || after.includes(TEMPLATE_UID)) throw new Error('the template uid must appear exactly once');
  return () => {
    const uid = randomUUID();
    return { uid, body: `${before}"${uid}"${after}` };
  };
}

export interface ReviewAnswer {
  readonly uid: string;
  readonly allowed: boolean;
  readonly code: number | undefined;
  readonly message: string | undefined;
  /** the decoded JSON Patch, if any */
  readonly patch: Array<{ op: string; path: string; value?: unknown }> | undefined;
  readonly auditAnnotations: Record<string, string> | undefined;
}

export interface Exchange {
  readonly port: number;
  readonly uid: string;
  readonly sentAt: number;
  readonly receivedAt: number;
  /** HTTP status, or undefined when the request failed at the transport */
  readonly status: number | undefined;
  readonly answer: ReviewAnswer | undefined;
  /** transport or protocol failure (reset, hang up, TLS, bad body) */
  readonly error: string | undefined;
  readonly fingerprint256: string | undefined;
  readonly reusedSocket: boolean;
}

function parseAnswer(uid: string, text: string): ReviewAnswer {
  const body = JSON.parse(text) as {
    apiVersion?: string;
    kind?: string;
    response?: {
      uid?: string;
      allowed?: boolean;
      status?: { code?: number; message?: string };
      patch?: string;
      patchType?: string;
      auditAnnotations?: Record<string, string>;
    };
  };
  const response = body.response;
  if (body.apiVersion !== 'admission.k8s.io/v1' || body.kind !== 'AdmissionReview' || !response) {
    throw new Error(`not an AdmissionReview answer: ${text.slice(0, 200)}`);
  }
  if (response.uid !== uid) throw new Error(`answer uid ${String(response.uid)} for request ${uid}`);
  if (typeof response.allowed !== 'boolean') throw new Error('answer without allowed');
  if ((response.patch === undefined) !== (response.patchType === undefined)) throw new Error('patch without patchType');
  return {
    uid,
    allowed: response.allowed,
    code: response.status?.code,
    message: response.status?.message,
    patch: response.patch ? (JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8')) as ReviewAnswer['patch']) : undefined,
    auditAnnotations: response.auditAnnotations,
  };
}

const clientContexts = new Map<string, SecureContext>();
const freshAgents = new Map<string, https.Agent>();

/**
 * One client TLS context per set of trusted CAs, as a Go client keeps one tls.Config: without it
 * Node parses the CAs again for every connection, and the test client would spend more CPU per
 * handshake than the server it is measuring.
 */
function clientContext(ca: readonly string[]): SecureContext {
  const key = ca.join('\n');
  let context = clientContexts.get(key);
  if (!context) {
    context = createSecureContext({ ca: [...ca] });
    clientContexts.set(key, context);
  }
  return context;
}

/**
 * An HTTPS agent trusting `ca`. Like the apiserver's client (client-go sets no TLS session cache),
 * every new connection makes a full handshake. keepAlive false: one connection per request.
 */
export function clientAgent(ca: readonly string[], keepAlive: boolean): https.Agent {
  const options = { secureContext: clientContext(ca), servername: 'localhost', maxCachedSessions: 0 };
  if (keepAlive) return new https.Agent({ ...options, keepAlive: true, maxSockets: 1 });
  const key = ca.join('\n');
  let agent = freshAgents.get(key);
  if (!agent) {
    agent = new https.Agent({ ...options, keepAlive: false });
    freshAgents.set(key, agent);
  }
  return agent;
}

/** POSTs one AdmissionReview to /mutate over `agent` (false: a fresh connection); never rejects. */
export function sendReview(
  port: number,
  agent: https.Agent | false,
  ca: readonly string[],
  review: Record<string, unknown> | PreparedReview,
  timeoutMs = 10_000,
): Promise<Exchange> {
  const { uid, body } = isPrepared(review) ? review : prepare(review);
  const sentAt = performance.now();
  return new Promise((done) => {
    let finished = false;
    let fingerprint256: string | undefined;
    let reusedSocket = false;
    const finish = (fields: Partial<Exchange>): void => {
      if (finished) return;
      finished = true;
      done({
        port,
        uid,
        sentAt,
        receivedAt: performance.now(),
        status: undefined,
        answer: undefined,
        error: undefined,
        fingerprint256,
        reusedSocket,
        ...fields,
      });
    };
    const request = https.request(
      {
        host: '127.0.0.1',
        servername: 'localhost',
        port,
        method: 'POST',
        path: '/mutate?timeout=5s',
        agent: agent === false ? clientAgent(ca, false) : agent,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          'user-agent': 'kube-apiserver-admission',
        },
        timeout: timeoutMs,
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('error', (error) => finish({ status: response.statusCode, error: `response: ${error.message}` }));
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if (response.statusCode !== 200) {
            finish({ status: response.statusCode, error: `HTTP ${response.statusCode}: ${text.slice(0, 200)}` });
            return;
          }
          try {
            finish({ status: 200, answer: parseAnswer(uid, text) });
          } catch (error) {
            finish({ status: 200, error: (error as Error).message });
          }
        });
      },
    );
    request.on('socket', (socket) => {
      reusedSocket = request.reusedSocket;
      const record = (): void => {
        fingerprint256 = (socket as TLSSocket).getPeerCertificate().fingerprint256;
      };
      if ((socket as TLSSocket).encrypted && !socket.connecting && (socket as TLSSocket).getPeerCertificate().fingerprint256) record();
      else socket.once('secureConnect', record);
    });
    request.on('timeout', () => request.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    request.on('error', (error: NodeJS.ErrnoException) => finish({ error: `${error.code ?? 'error'}: ${error.message}` }));
    request.end(body);
  });
}

/** GETs a path; resolves with status and body text (status 0 on transport failure). */
export function get(port: number, ca: readonly string[], path: string): Promise<{ status: number; text: string }> {
  return new Promise((done) => {
    const request = https.get(
      { host: '127.0.0.1', servername: 'localhost', port, path, agent: clientAgent(ca, false), timeout: 5000 },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => done({ status: response.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        response.on('error', (error) => done({ status: 0, text: error.message }));
      },
    );
    request.on('timeout', () => request.destroy(new Error('timeout')));
    request.on('error', (error) => done({ status: 0, text: error.message }));
  });
}

/** GETs a path over plain HTTP; resolves with status and body text (status 0 on transport failure). */
export function getPlain(port: number, path: string): Promise<{ status: number; text: string }> {
  return new Promise((done) => {
    const request = http.get({ host: '127.0.0.1', port, path, agent: false, timeout: 5000 }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => done({ status: response.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      response.on('error', (error) => done({ status: 0, text: error.message }));
    });
    request.on('timeout', () => request.destroy(new Error('timeout')));
    request.on('error', (error) => done({ status: 0, text: error.message }));
  });
}

/**
 * Keep-alive clients sending reviews in a loop, like the apiserver's connection pool: each worker
 * has its own agent (one socket) and, every `recycleEvery` requests, drops it and connects anew
 * so that TLS handshakes keep happening throughout (new connections see certificate rotations).
 */
export class LoadClients {
  readonly exchanges: Exchange[] = [];
  private stopped = false;
  private readonly workers: Promise<void>[] = [];

  constructor(
    private readonly options: {
      workers: number;
      /** which port each request goes to (models a Service choosing an endpoint) */
      target: () => number;
      /** CA PEMs trusted for new connections */
      trust: () => readonly string[];
      review: (uid: string) => Record<string, unknown>;
      recycleEvery?: number;
      /** pause between requests per worker */
      pauseMs?: number;
    },
  ) {}

  start(): this {
    for (let i = 0; i < this.options.workers; i++) this.workers.push(this.worker());
    return this;
  }

  private async worker(): Promise<void> {
    const agents = new Map<number, https.Agent>();
    const agentFor = (port: number): https.Agent => {
      let agent = agents.get(port);
      if (!agent) {
        agent = clientAgent(this.options.trust(), true);
        agents.set(port, agent);
      }
      return agent;
    };
    let sent = 0;
    while (!this.stopped) {
      const port = this.options.target();
      const exchange = await sendReview(port, agentFor(port), [], this.options.review(randomUUID()));
      this.exchanges.push(exchange);
      sent += 1;
      if (this.options.recycleEvery && sent % this.options.recycleEvery === 0) {
        for (const agent of agents.values()) agent.destroy();
        agents.clear();
      }
      if (this.options.pauseMs) await sleep(this.options.pauseMs);
    }
    for (const agent of agents.values()) agent.destroy();
  }

  async stop(): Promise<Exchange[]> {
    this.stopped = true;
    await Promise.all(this.workers);
    return this.exchanges;
  }
}

export function failures(exchanges: readonly Exchange[]): Exchange[] {
  return exchanges.filter((exchange) => exchange.error !== undefined || exchange.answer === undefined);
}

/** Prints a line of measurements for the run's report. */
export function report(name: string, data: Record<string, unknown>): void {
  const line = JSON.stringify({ test: name, ...data });
  process.stdout.write(`[ops] ${line}\n`);
}
