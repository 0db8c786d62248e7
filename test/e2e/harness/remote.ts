// The control plane lives in vitest's main process (globalSetup); test files run in workers. This is
// the small loopback HTTP bridge that lets a test stop, start or restart kube-apiserver (e.g. to cut
// every watch connection the webhook holds) and kube-scheduler.
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { ControlPlane } from './controlplane.js';

export const CONTROL_URL_ENV = 'SANDBOX_WEBHOOK_E2E_CONTROL_URL';
export const CONTROL_TOKEN_ENV = 'SANDBOX_WEBHOOK_E2E_CONTROL_TOKEN';

const SIGNALS = new Set<NodeJS.Signals>(['SIGTERM', 'SIGKILL', 'SIGINT']);

export interface ControlServer {
  url: string;
  token: string;
  close(): Promise<void>;
}

/**
 * Serves POST /apiserver/{stop,start,restart}?signal=SIGTERM|SIGKILL and POST /scheduler/{start,stop}
 * on 127.0.0.1, behind a random bearer token. Each answers JSON with the timings once done.
 */
export async function serveControlPlane(controlPlane: ControlPlane): Promise<ControlServer> {
  const token = randomBytes(24).toString('hex');
  // One operation at a time: a restart racing a stop would leave the apiserver in an unknown state.
  let queue: Promise<unknown> = Promise.resolve();
  const server = createServer((req, res) => {
    const reply = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.headers.authorization !== `Bearer ${token}`) return reply(401, { error: 'unauthorized' });
    if (req.method !== 'POST') return reply(405, { error: 'POST only' });
    const url = new URL(req.url ?? '/', 'http://localhost');
    const signal = (url.searchParams.get('signal') ?? 'SIGTERM') as NodeJS.Signals;
    if (!SIGNALS.has(signal)) return reply(400, { error: `unsupported signal ${signal}` });
    const operations: Record<string, () => Promise<unknown>> = {
      '/apiserver/stop': async () => ({ stopMs: await controlPlane.stopApiserver(signal) }),
      '/apiserver/start': async () => ({ startMs: await controlPlane.startApiserver() }),
      '/apiserver/restart': () => controlPlane.restartApiserver(signal),
      '/scheduler/start': async () => ({ startMs: await controlPlane.startScheduler() }),
      '/scheduler/stop': async () => {
        await controlPlane.stopScheduler();
        return {};
      },
    };
    const operation = operations[url.pathname];
    if (!operation) return reply(404, { error: `unknown operation ${url.pathname}` });
    const run = queue.then(operation);
    queue = run.catch(() => undefined);
    run.then(
      (result) => reply(200, result),
      (error: unknown) => reply(500, { error: String(error) }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (!address || typeof address !== 'object') throw new Error('control server has no address');
  return {
    url: `http://127.0.0.1:${address.port}`,
    token,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function call<T>(path: string, signal?: NodeJS.Signals): Promise<T> {
  const base = process.env[CONTROL_URL_ENV];
  const token = process.env[CONTROL_TOKEN_ENV];
  if (!base || !token) throw new Error(`${CONTROL_URL_ENV} is not set: run under vitest.e2e.config.ts (global-setup.ts)`);
  const url = new URL(path, base);
  if (signal) url.searchParams.set('signal', signal);
  const response = await fetch(url, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
  const body = (await response.json()) as T & { error?: string };
  if (!response.ok) throw new Error(`${path}: ${response.status} ${body.error ?? ''}`);
  return body;
}

/** Stops kube-apiserver (SIGKILL: connections drop without a goodbye). Resolves once it has exited. */
export function stopApiserver(signal: NodeJS.Signals = 'SIGTERM'): Promise<{ stopMs: number }> {
  return call('/apiserver/stop', signal);
}

/** Starts kube-apiserver again on the same port and etcd; resolves once /readyz answers 200. */
export function startApiserver(): Promise<{ startMs: number }> {
  return call('/apiserver/start');
}

/** Stop + start; every watch and keep-alive connection to the apiserver is cut. */
export function restartApiserver(signal: NodeJS.Signals = 'SIGTERM'): Promise<{ stopMs: number; startMs: number }> {
  return call('/apiserver/restart', signal);
}

export function startScheduler(): Promise<{ startMs: number }> {
  return call('/scheduler/start');
}

export function stopScheduler(): Promise<Record<string, never>> {
  return call('/scheduler/stop');
}
