// The load side of `npm run bench`: server processes (spawn, readiness, peak RSS, stop), one probe
// review over HTTPS, and autocannon runs with latencies recorded at full resolution.

import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import autocannon from 'autocannon';

export const HOST = '127.0.0.1';

export interface ServerProcess {
  readonly name: string;
  readonly port: number;
  readonly child: ChildProcess;
  /** stderr and stdout, kept for the error message if the server dies */
  readonly output: () => string;
}

export function startServer(name: string, port: number, args: readonly string[]): ServerProcess {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString('utf8')).slice(-8192);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return { name, port, child, output: () => output };
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

/** The high-water mark of resident memory (VmHWM), in MiB: the peak over the process's life. */
export function peakRssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /^VmHWM:\s+(\d+) kB$/m.exec(status);
  if (!match) throw new Error(`no VmHWM in /proc/${pid}/status`);
  return Number(match[1]) / 1024;
}

export async function stopServer(server: ServerProcess): Promise<void> {
  if (server.child.exitCode !== null || server.child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => server.child.once('exit', () => resolve()));
  server.child.kill('SIGTERM');
  const timer = setTimeout(() => server.child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/** CPU time (user + system) the process has used so far, in milliseconds, from /proc/PID/stat. */
export function cpuTimeMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may contain spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15 of proc(5))
  return (ticks * 1000) / CLOCK_TICKS_PER_SECOND;
}

// USER_HZ: 100 on every Linux architecture Node supports (sysconf(_SC_CLK_TCK)).
const CLOCK_TICKS_PER_SECOND = 100;

/**
 * CPU time the hypervisor has taken from this virtual machine so far (steal, summed over its CPUs),
 * in seconds, from the first line of /proc/stat; undefined where there is none to read. While the
 * host runs something else on a CPU, whatever was running there waits: a request in flight then
 * takes that long more, whichever server answers it.
 */
export function stolenCpuSeconds(): number | undefined {
  try {
    return parseStolenCpuSeconds(readFileSync('/proc/stat', 'utf8'));
  } catch {
    return undefined;
  }
}

/** The steal time of /proc/stat's summary line, in seconds; undefined when it has none. */
export function parseStolenCpuSeconds(stat: string): number | undefined {
  // cpu  user nice system idle iowait irq softirq steal guest guest_nice (proc(5)), in USER_HZ ticks
  const fields = /^cpu\s+(.*)$/m.exec(stat)?.[1]?.trim().split(/\s+/);
  const steal = fields?.[7];
  return steal !== undefined && /^\d+$/.test(steal) ? Number(steal) / CLOCK_TICKS_PER_SECOND : undefined;
}

/** Seconds stolen since `before` (from stolenCpuSeconds), or NaN where steal cannot be read. */
export function stolenSince(before: number | undefined): number {
  const now = stolenCpuSeconds();
  return before === undefined || now === undefined ? Number.NaN : now - before;
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
  readonly requests: number;
  readonly throughputPerSecond: number;
  readonly latencyMs: { readonly p50: number; readonly p99: number; readonly mean: number; readonly max: number };
  /** CPU time of the server process per review: what a review costs, whatever else runs on the machine */
  readonly serverCpuUsPerReview: number;
  readonly errors: number;
  readonly timeouts: number;
  readonly non2xx: number;
  readonly queued: number;
  /** share of the machine's CPU time the hypervisor took during the runs, in percent (NaN: not known) */
  readonly stealPercent: number;
}

/** The p-th percentile (nearest rank) of ascending values. */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index] ?? Number.NaN;
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

/** Merges the samples of several rounds into one result. */
export function summarize(samples: readonly LoadSample[]): LoadResult {
  const total = samples.reduce((n, s) => n + s.latenciesMs.length, 0);
  const sorted = new Float64Array(total);
  let offset = 0;
  for (const s of samples) {
    sorted.set(s.latenciesMs, offset);
    offset += s.latenciesMs.length;
  }
  sorted.sort();
  let sum = 0;
  for (const value of sorted) sum += value;
  const requests = samples.reduce((n, s) => n + s.requests, 0);
  const seconds = samples.reduce((n, s) => n + s.seconds, 0);
  const cpuMs = samples.reduce((n, s) => n + s.serverCpuMs, 0);
  return {
    requests,
    throughputPerSecond: requests / seconds,
    latencyMs: { p50: percentile(sorted, 50), p99: percentile(sorted, 99), mean: total ? sum / total : Number.NaN, max: sorted[total - 1] ?? Number.NaN },
    serverCpuUsPerReview: requests ? (cpuMs * 1000) / requests : Number.NaN,
    errors: samples.reduce((n, s) => n + s.errors, 0),
    timeouts: samples.reduce((n, s) => n + s.timeouts, 0),
    non2xx: samples.reduce((n, s) => n + s.non2xx, 0),
    queued: samples.reduce((n, s) => n + s.queued, 0),
    stealPercent: (100 * samples.reduce((n, s) => n + s.stolenCpuSeconds, 0)) / (seconds * os.availableParallelism()),
  };
}
