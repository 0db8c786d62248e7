// The HTTP transport to the API server (src/cluster/kube-api.ts) against a local HTTP server that plays
// the API server: credentials from the kubeconfig, JSON GETs with a hard deadline, watch streams split
// at arbitrary byte boundaries, refused watches, dropped connections, deadlines and cancellation.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ApiError, DeadlineError, HttpKubeApi, type WatchEvent } from '../../src/cluster/kube-api.js';
import { setTimeout as sleep } from 'node:timers/promises';

type Handler = (request: IncomingMessage, response: ServerResponse) => void;

let server: Server;
let handler: Handler;
const sockets = new Set<Socket>();
const seen: IncomingMessage[] = [];

beforeAll(async () => {
  server = createServer((request, response) => {
    seen.push(request);
    handler(request, response);
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
});

afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

beforeEach(() => {
  seen.length = 0;
});

function api(): HttpKubeApi {
  const kc = new KubeConfig();
  // A plain-HTTP server is accepted by client-node only with skipTLSVerify (config.ts createAgent).
  kc.loadFromOptions({
    clusters: [{ name: 'local', server: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, skipTLSVerify: true }],
    users: [{ name: 'tester', token: 'secret-token' }],
    contexts: [{ name: 'local', cluster: 'local', user: 'tester' }],
    currentContext: 'local',
  });
  return new HttpKubeApi(kc);
}

function json(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json' });
  response.end(JSON.stringify(body));
}

async function collect(stream: AsyncIterable<WatchEvent>): Promise<WatchEvent[]> {
  const events: WatchEvent[] = [];
  for await (const event of stream) events.push(event);
  return events;
}

describe('HttpKubeApi.get', () => {
  it('sends the kubeconfig credentials and parses the JSON answer', async () => {
    handler = (_request, response) => json(response, 200, { kind: 'Namespace', metadata: { name: 'team-a' } });
    const answer = await api().get('/api/v1/namespaces/team-a', { timeoutMs: 1000 });
    expect(answer).toEqual({ status: 200, body: { kind: 'Namespace', metadata: { name: 'team-a' } } });
    expect(seen[0]?.url).toBe('/api/v1/namespaces/team-a');
    expect(seen[0]?.headers.authorization).toBe('Bearer secret-token');
    expect(seen[0]?.headers.accept).toBe('application/json');
  });

  it('hands back an error status with its body for the caller to judge', async () => {
    handler = (_request, response) => json(response, 404, { kind: 'Status', code: 404, reason: 'NotFound', message: 'namespaces "x" not found' });
    expect(await api().get('/api/v1/namespaces/x', { timeoutMs: 1000 })).toEqual({
      status: 404,
      body: { kind: 'Status', code: 404, reason: 'NotFound', message: 'namespaces "x" not found' },
    });
  });

  it('gives up at its deadline when the server does not answer', async () => {
    handler = () => undefined;
    const started = Date.now();
    await expect(api().get('/api/v1/namespaces/slow', { timeoutMs: 150 })).rejects.toBeInstanceOf(DeadlineError);
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('gives up at its deadline when the server sends headers but never finishes the body', async () => {
    handler = (_request, response) => {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.write('{"kind":');
    };
    await expect(api().get('/api/v1/namespaces/slow', { timeoutMs: 150 })).rejects.toThrow(/no complete answer within 150 ms/);
  });

  it('rejects an answer that is not JSON', async () => {
    handler = (_request, response) => {
      response.writeHead(502);
      response.end('<html>Bad Gateway</html>');
    };
    await expect(api().get('/api/v1/namespaces/x', { timeoutMs: 1000 })).rejects.toThrow(/not JSON/);
  });
});

describe('HttpKubeApi.watch', () => {
  it('yields one event per line, whatever the chunk boundaries, then ends when the server ends', async () => {
    const lines = [
      JSON.stringify({ type: 'ADDED', object: { metadata: { name: 'a', resourceVersion: '2' } } }),
      JSON.stringify({ type: 'BOOKMARK', object: { metadata: { resourceVersion: '3' } } }),
      JSON.stringify({ type: 'DELETED', object: { metadata: { name: 'a', resourceVersion: '4' } } }),
    ];
    const text = `${lines.join('\n')}\n`;
    handler = (_request, response) => {
      response.writeHead(200, { 'content-type': 'application/json' });
      // Split mid-object and mid-line, as TCP may.
      response.write(text.slice(0, 10));
      setTimeout(() => response.write(text.slice(10, 70)), 5);
      setTimeout(() => response.end(text.slice(70)), 10);
    };
    const stream = await api().watch('/api/v1/namespaces?watch=true&resourceVersion=1', { connectTimeoutMs: 1000, deadlineMs: 5000 });
    expect((await collect(stream)).map((e) => e.type)).toEqual(['ADDED', 'BOOKMARK', 'DELETED']);
    expect(seen[0]?.url).toBe('/api/v1/namespaces?watch=true&resourceVersion=1');
  });

  it('rejects a refused watch with the Status message and code', async () => {
    handler = (_request, response) =>
      json(response, 403, { kind: 'Status', code: 403, reason: 'Forbidden', message: 'runtimeclasses.node.k8s.io is forbidden' });
    const refused = api().watch('/apis/node.k8s.io/v1/runtimeclasses?watch=true', { connectTimeoutMs: 1000, deadlineMs: 5000 });
    await expect(refused).rejects.toBeInstanceOf(ApiError);
    await expect(refused).rejects.toMatchObject({
      statusCode: 403,
      reason: 'Forbidden',
      message: 'watch /apis/node.k8s.io/v1/runtimeclasses: runtimeclasses.node.k8s.io is forbidden',
    });
  });

  it('throws when the connection drops in the middle of the stream (no clean end)', async () => {
    handler = (request, response) => {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.write(`${JSON.stringify({ type: 'ADDED', object: { metadata: { name: 'a' } } })}\n`);
      setTimeout(() => request.socket.destroy(), 10);
    };
    const stream = await api().watch('/api/v1/namespaces?watch=true', { connectTimeoutMs: 1000, deadlineMs: 5000 });
    const events: string[] = [];
    await expect(
      (async () => {
        for await (const event of stream) events.push(event.type);
      })(),
    ).rejects.toThrow();
    expect(events).toEqual(['ADDED']);
  });

  it('cuts a watch that stays open past its deadline', async () => {
    handler = (_request, response) => {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.write('\n');
    };
    const stream = await api().watch('/api/v1/namespaces?watch=true', { connectTimeoutMs: 1000, deadlineMs: 100 });
    await expect(collect(stream)).rejects.toThrow(/stayed open past its 100 ms deadline/);
  });

  it('throws on a line that is not a watch event instead of skipping it', async () => {
    handler = (_request, response) => {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end('{"type":"ADDED","object":{"metadata":{"name":"a"}}}\nnot json\n');
    };
    const stream = await api().watch('/api/v1/namespaces?watch=true', { connectTimeoutMs: 1000, deadlineMs: 5000 });
    await expect(collect(stream)).rejects.toThrow(/watch event: the API server sent a body that is not JSON/);
  });

  it('ends quietly when closed by its owner, and the server sees the connection go', async () => {
    let serverSawClose = false;
    handler = (request, response) => {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.write('\n');
      request.socket.on('close', () => (serverSawClose = true));
    };
    const stream = await api().watch('/api/v1/namespaces?watch=true', { connectTimeoutMs: 1000, deadlineMs: 5000 });
    const done = collect(stream);
    setTimeout(() => stream.close(), 20);
    expect(await done).toEqual([]);
    await sleep(20);
    expect(serverSawClose).toBe(true);
  });

  it('gives up connecting when the response headers do not come in time', async () => {
    handler = () => undefined;
    await expect(api().watch('/api/v1/namespaces?watch=true', { connectTimeoutMs: 100, deadlineMs: 5000 })).rejects.toBeInstanceOf(DeadlineError);
  });

  it('is cancelled by its abort signal while connecting', async () => {
    handler = () => undefined;
    const controller = new AbortController();
    const watch = api().watch('/api/v1/namespaces?watch=true', { connectTimeoutMs: 5000, deadlineMs: 5000, signal: controller.signal });
    setTimeout(() => controller.abort(), 20);
    await expect(watch).rejects.toMatchObject({ name: 'AbortError' });
  });
});
