// A fixed-rate load for latency: requests leave at evenly spaced times over keep-alive TLS
// connections, one request in flight per connection (no pipelining), like the apiserver's calls.
// autocannon's own rate limit is a per-second quota that each connection spends back to back, so its
// "fixed rate" runs are bursts at saturation followed by silence: no use for latency at a given load.
//
// Latency is from the request written to the response read. A request due while every connection is
// busy waits for one; that wait is counted in its latency (from when it was due) and reported.

import { connect, type TLSSocket } from 'node:tls';
import { cpuTimeMs, stolenCpuSeconds, stolenSince } from '../test/support/proc.js';
import { HOST, type LoadSample } from './load.js';

export interface PacedOptions {
  readonly port: number;
  readonly pid: number;
  readonly ca: Buffer;
  readonly bodies: readonly string[];
  readonly connections: number;
  readonly ratePerSecond: number;
  readonly durationSeconds: number;
}

const HEADER_END = Buffer.from('\r\n\r\n');

function requestBuffer(port: number, body: string): Buffer {
  const payload = Buffer.from(body);
  const head =
    `POST /mutate?timeout=10s HTTP/1.1\r\nHost: ${HOST}:${port}\r\nUser-Agent: kube-apiserver-admission\r\n` +
    `Accept: application/json, */*\r\nContent-Type: application/json\r\nContent-Length: ${payload.length}\r\n\r\n`;
  return Buffer.concat([Buffer.from(head), payload]);
}

interface Connection {
  readonly socket: TLSSocket;
  busy: boolean;
  /** when the request in flight was due (performance.now() ms) */
  dueMs: number;
  chunks: Buffer[];
}

function open(options: PacedOptions): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: HOST, port: options.port, servername: 'localhost', ca: options.ca }, () => resolve(socket));
    socket.once('error', reject);
  });
}

/** The response's length when complete (head and body), or undefined while more bytes are due. */
function completeLength(data: Buffer): { length: number; status: number } | undefined {
  const end = data.indexOf(HEADER_END);
  if (end === -1) return undefined;
  const head = data.subarray(0, end).toString('latin1');
  const status = Number(head.slice(9, 12));
  const match = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  if (!match) throw new Error(`response without content-length: ${head.split('\r\n')[0] ?? ''}`);
  const length = end + HEADER_END.length + Number(match[1]);
  return data.length >= length ? { length, status } : undefined;
}

export async function runPaced(options: PacedOptions): Promise<LoadSample> {
  const requests = options.bodies.map((body) => requestBuffer(options.port, body));
  const sockets = await Promise.all(Array.from({ length: options.connections }, () => open(options)));
  const latencies: number[] = [];
  let errors = 0;
  let non2xx = 0;
  let queued = 0;
  let sent = 0;
  const idle: Connection[] = [];
  const waiting: number[] = []; // due times of requests waiting for a connection

  const send = (connection: Connection, dueMs: number): void => {
    connection.busy = true;
    connection.dueMs = dueMs;
    connection.socket.write(requests[sent % requests.length] as Buffer);
    sent += 1;
  };

  const connections: Connection[] = sockets.map((socket) => {
    const connection: Connection = { socket, busy: false, dueMs: 0, chunks: [] };
    socket.on('data', (chunk: Buffer) => {
      connection.chunks.push(chunk);
      const data = connection.chunks.length === 1 ? chunk : Buffer.concat(connection.chunks);
      const done = completeLength(data);
      if (!done) return;
      if (done.length !== data.length) throw new Error('bytes after the response on a connection without pipelining');
      latencies.push(performance.now() - connection.dueMs);
      if (done.status < 200 || done.status > 299) non2xx += 1;
      connection.chunks = [];
      connection.busy = false;
      const next = waiting.shift();
      if (next !== undefined) send(connection, next);
      else idle.push(connection);
    });
    socket.on('error', () => {
      errors += 1;
    });
    return connection;
  });
  idle.push(...connections);

  const cpuBefore = cpuTimeMs(options.pid);
  const stolenBefore = stolenCpuSeconds();
  const intervalMs = 1000 / options.ratePerSecond;
  const startedMs = performance.now();
  const endMs = startedMs + options.durationSeconds * 1000;
  let nextDueMs = startedMs;
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const now = performance.now();
      // Every request due by now leaves now; timers fire on whole milliseconds, so at rates above
      // 1000/s a tick sends one or two.
      while (nextDueMs <= now && nextDueMs < endMs) {
        const connection = idle.pop();
        if (connection) {
          send(connection, now);
        } else {
          queued += 1;
          waiting.push(nextDueMs);
        }
        nextDueMs += intervalMs;
      }
      if (nextDueMs >= endMs) {
        resolve();
        return;
      }
      setTimeout(tick, Math.max(0, nextDueMs - performance.now()));
    };
    tick();
  });
  // Let the requests in flight finish (bounded), then close.
  const drainUntil = performance.now() + 5000;
  while ((connections.some((c) => c.busy) || waiting.length > 0) && performance.now() < drainUntil) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  const seconds = (performance.now() - startedMs) / 1000;
  const serverCpuMs = cpuTimeMs(options.pid) - cpuBefore;
  const stolen = stolenSince(stolenBefore);
  for (const socket of sockets) socket.destroy();
  return {
    requests: latencies.length,
    seconds,
    latenciesMs: Float64Array.from(latencies),
    serverCpuMs,
    errors,
    timeouts: waiting.length + connections.filter((c) => c.busy).length,
    non2xx,
    queued,
    stolenCpuSeconds: stolen,
  };
}
