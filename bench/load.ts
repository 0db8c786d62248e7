// The load side of `npm run bench`: server processes (spawn, readiness, stop), one probe
// review over HTTPS, and autocannon runs with latencies recorded at full resolution.

import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import autocannon from 'autocannon';
import { cpuTimeMs, stolenCpuSeconds, stolenSince } from '../test/support/proc.js';
import { median, percentile } from '../test/support/stats.js';

export const HOST = '127.0.0.1';

export interface ServerProcess {
  readonly name: string;
  readonly port: number;
  readonly child: ChildProcess;
  /** the file the server's stdout and stderr go to, as a container runtime writes a container's */
  readonly logFile: string;
  /** the end of that file, for the error message if the server dies */
  readonly output: () => string;
}

/**
 * Starts `node ARGS` with stdout and stderr appended to `logFile`: a container's stdout goes to a
 * file the runtime writes, not to a reader that could slow the server down or that the bench would
 * pay for on its own CPU.
 */
export function startServer(name: string, port: number, args: readonly string[], logFile: string): ServerProcess {
  const fd = openSync(logFile, 'a');
  const child = spawn(process.execPath, args, { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const output = (): string => {
    try {
      const text = readFileSync(logFile, 'utf8');
      return text.slice(-8192);
    } catch {
      return '';
    }
  };
  return { name, port, child, logFile, output };
}

function request(
  port: number,
  ca: Buffer,
  method: string,
  path: string,
  body?: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: HOST,
        port,
        method,
        path,
        ca,
        servername: 'localhost',
        headers: body === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        agent: false,
        timeout: 2000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

/** Waits until GET /healthz answers 200 over TLS verified against the bench CA. */
export async function waitReady(server: ServerProcess, ca: Buffer, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (server.child.exitCode !== null) {
      throw new Error(`${server.name} exited with code ${server.child.exitCode}:\n${server.output()}`);
    }
    try {
      if ((await request(server.port, ca, 'GET', '/healthz')).status === 200) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error(`${server.name} did not become ready within ${timeoutMs} ms:\n${server.output()}`);
}

export interface ReviewAnswer {
  readonly uid: string;
  readonly allowed: boolean;
  readonly patch: string | undefined;
}

/** Sends one review and returns the parsed response, to check what a server answers before loading it. */
export async function probe(server: ServerProcess, ca: Buffer, body: string): Promise<ReviewAnswer> {
  const res = await request(server.port, ca, 'POST', '/mutate?timeout=10s', body);
  if (res.status !== 200) throw new Error(`${server.name}: POST /mutate answered ${res.status}: ${res.body.slice(0, 300)}`);
  const review = JSON.parse(res.body) as { response?: { uid?: string; allowed?: boolean; patch?: string } };
  return { uid: review.response?.uid ?? '', allowed: review.response?.allowed === true, patch: review.response?.patch };
}

export async function stopServer(server: ServerProcess): Promise<void> {
  if (server.child.exitCode !== null || server.child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => server.child.once('exit', () => resolve()));
  server.child.kill('SIGTERM');
  const timer = setTimeout(() => server.child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

export interface LoadOptions {
  readonly port: number;
  readonly pid: number;
  readonly bodies: readonly string[];
  readonly connections: number;
  readonly durationSeconds: number;
  /** requests per second over all connections; omitted = as fast as the server answers (saturation) */
  readonly overallRate?: number;
}

/** One autocannon run against one server. */
export interface LoadSample {
  readonly requests: number;
  readonly seconds: number;
  /** response times of 2xx answers, in milliseconds */
  readonly latenciesMs: Float64Array;
  readonly serverCpuMs: number;
  readonly errors: number;
  readonly timeouts: number;
  readonly non2xx: number;
  /** paced runs: requests that found every connection busy and waited for one */
  readonly queued: number;
  /** CPU seconds the hypervisor took from the machine during the run (NaN: not known) */
  readonly stolenCpuSeconds: number;
}

export interface LoadResult {
  readonly rounds: number;
  readonly requests: number;
  /** the median over the rounds of each round's requests per second */
  readonly throughputPerSecond: number;
  /** latencies of every round's answers together */
  readonly latencyMs: { readonly p50: number; readonly p99: number; readonly mean: number; readonly max: number };
  /**
   * CPU time of the server process per review, the median over the rounds: what a review costs,
   * whatever else runs on the machine
   */
  readonly serverCpuUsPerReview: number;
  readonly errors: number;
  readonly timeouts: number;
  readonly non2xx: number;
  readonly queued: number;
  /** share of the machine's CPU time the hypervisor took during the runs, in percent (NaN: not known) */
  readonly stealPercent: number;
}

/**
 * Drives one server over HTTPS with keep-alive connections and no pipelining (as the apiserver does),
 * cycling through `bodies` on every connection. Latencies come from autocannon's per-response times
 * (fractional milliseconds), not its histogram, which rounds to whole milliseconds.
 */
export async function runLoad(options: LoadOptions): Promise<LoadSample> {
  let latencies = new Float64Array(1 << 16);
  let count = 0;
  const cpuBefore = cpuTimeMs(options.pid);
  const stolenBefore = stolenCpuSeconds();
  const instance = autocannon({
    url: `https://${HOST}:${options.port}/mutate?timeout=10s`,
    connections: options.connections,
    pipelining: 1,
    duration: options.durationSeconds,
    ...(options.overallRate === undefined ? {} : { overallRate: options.overallRate }),
    requests: options.bodies.map((body) => ({ method: 'POST', body, headers: { 'content-type': 'application/json' } })),
    timeout: 10,
  });
  instance.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTimeMs: number) => {
    if (statusCode < 200 || statusCode > 299) return;
    if (count === latencies.length) {
      const grown = new Float64Array(latencies.length * 2);
      grown.set(latencies);
      latencies = grown;
    }
    latencies[count++] = responseTimeMs;
  });
  const result = await instance;
  return {
    requests: result.requests.total,
    seconds: result.duration || options.durationSeconds,
    latenciesMs: latencies.subarray(0, count),
    serverCpuMs: cpuTimeMs(options.pid) - cpuBefore,
    errors: result.errors,
    timeouts: result.timeouts,
    non2xx: result.non2xx,
    queued: 0,
    stolenCpuSeconds: stolenSince(stolenBefore),
  };
}

/** The rounds of one server in one result: medians of the rounds' rates, latencies of all answers. */
export function summarize(samples: readonly LoadSample[]): LoadResult {
  const total = samples.reduce((n, s) => n + s.latenciesMs.length, 0);
  const latencies = new Float64Array(total);
  let offset = 0;
  for (const s of samples) {
    latencies.set(s.latenciesMs, offset);
    offset += s.latenciesMs.length;
  }
  let sum = 0;
  let max = Number.NaN;
  for (const value of latencies) {
    sum += value;
    if (!(value <= max)) max = value;
  }
  const seconds = samples.reduce((n, s) => n + s.seconds, 0);
  const sumOf = (field: 'requests' | 'errors' | 'timeouts' | 'non2xx' | 'queued'): number => samples.reduce((n, s) => n + s[field], 0);
  return {
    rounds: samples.length,
    requests: sumOf('requests'),
    throughputPerSecond: median(samples.map((s) => s.requests / s.seconds)),
    latencyMs: { p50: percentile(latencies, 50), p99: percentile(latencies, 99), mean: total ? sum / total : Number.NaN, max },
    serverCpuUsPerReview: median(samples.filter((s) => s.requests > 0).map((s) => (s.serverCpuMs * 1000) / s.requests)),
    errors: sumOf('errors'),
    timeouts: sumOf('timeouts'),
    non2xx: sumOf('non2xx'),
    queued: sumOf('queued'),
    stealPercent: (100 * samples.reduce((n, s) => n + s.stolenCpuSeconds, 0)) / (seconds * os.availableParallelism()),
  };
}
