// Graceful shutdown of the built webhook (node dist/main.js) during a rolling update, under load.
// A Service is modelled honestly: it keeps sending to the old pod after SIGTERM until the endpoint
// update has propagated (here 1.5 s after /readyz turned unready), then only to the new pod. Every
// review sent to either must be answered: no reset, no 503, nothing dropped.

import { rmSync } from 'node:fs';
import { connect, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  failures,
  get,
  LoadClients,
  percentile,
  podReview,
  report,
  servingFiles,
  sleep,
  startWebhook,
  type CertSet,
  type WebhookProcess,
} from './harness.js';

const POLICY = `apiVersion: sandbox-webhook.io/v1alpha1
kind: SandboxPolicy
spec:
  defaultAction: sandbox
`;

/** The chart's defaults: terminationGracePeriodSeconds 30, --shutdown-delay-seconds 5. */
const GRACE_PERIOD_MS = 30_000;
const SHUTDOWN_DELAY_MS = 5_000;
/** How long after the old pod turns unready the Service still sends to it. */
const ENDPOINT_PROPAGATION_MS = 1_500;
const WORKERS = 6;

/**
 * Sends the headers and half of a review's body on a fresh TLS connection, then the rest when
 * told: a review still arriving when the server stops listening. Resolves with the raw answer.
 */
function slowReview(port: number, ca: string, uid: string): { connected: Promise<void>; finish: () => void; answer: Promise<string> } {
  const body = JSON.stringify(podReview(uid, { namespace: 'tenant-a', name: 'slow' }));
  const head = `POST /mutate?timeout=5s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`;
  const half = Math.floor(body.length / 2);
  let socket: TLSSocket | undefined;
  const connected = new Promise<void>((done, fail) => {
    socket = connect({ host: '127.0.0.1', port, servername: 'localhost', ca: [ca] }, () => {
      socket!.write(head + body.slice(0, half));
      done();
    });
    socket.once('error', fail);
  });
  const answer = new Promise<string>((done, fail) => {
    let text = '';
    socket!.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
    socket!.once('close', () => done(text));
    socket!.once('error', fail);
  });
  return { connected, finish: () => void connected.then(() => socket!.write(body.slice(half))), answer };
}

describe('graceful shutdown under load (node dist/main.js, real TLS sockets)', () => {
  let workDir: string;
  let certs: CertSet;
  let oldPod: WebhookProcess;
  let newPod: WebhookProcess;

  beforeAll(async () => {
    let files;
    ({ workDir, certs, files } = await servingFiles('shutdown', POLICY));
    [oldPod, newPod] = await Promise.all([
      startWebhook(files),
      // The replacement logs at warn: --log-level must silence the per-decision info lines.
      startWebhook({ ...files, extraArgs: ['--log-level', 'warn', '--shutdown-delay-seconds', '0'] }),
    ]);
  });

  afterAll(() => {
    oldPod?.kill('SIGKILL');
    newPod?.kill('SIGKILL');
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it('keeps answering while draining, finishes requests in flight, and exits well inside the grace period', async () => {
    let endpoints = [oldPod.port, newPod.port];
    let next = 0;
    const load = new LoadClients({
      workers: WORKERS,
      target: () => endpoints[next++ % endpoints.length]!,
      trust: () => [certs.caPem],
      review: (uid) => podReview(uid, { namespace: 'tenant-a', generateName: 'web-' }),
    }).start();
    await sleep(1000);

    const sigtermAt = performance.now();
    oldPod.kill('SIGTERM');
    // The endpoints controller's view: the old pod turns unready, and some time later the
    // Service stops sending to it.
    let unreadyAt: number | undefined;
    while (unreadyAt === undefined) {
      const readyz = await get(oldPod.port, [certs.caPem], '/readyz');
      if (readyz.status === 503) {
        expect(JSON.parse(readyz.text)).toEqual({ status: 'unready', reasons: ['shutting down'] });
        unreadyAt = performance.now();
      } else {
        expect(readyz.status).toBe(200);
        await sleep(25);
      }
    }
    expect((await get(oldPod.port, [certs.caPem], '/healthz')).status).toBe(200);
    await sleep(ENDPOINT_PROPAGATION_MS);
    const switchedAt = performance.now();
    endpoints = [newPod.port];

    // A review arriving slowly across the moment the old pod stops listening: its connection is
    // open and its headers are in well before, the rest of its body only after.
    await sleep(Math.max(0, sigtermAt + SHUTDOWN_DELAY_MS - 1500 - performance.now()));
    const slow = slowReview(oldPod.port, certs.caPem, 'slow-review');
    await slow.connected;
    await oldPod.waitForLog((line) => line.msg.startsWith('shutting down: stopped listening'));
    await sleep(300);
    slow.finish();
    const slowAnswer = await slow.answer;
    expect(slowAnswer).toMatch(/^HTTP\/1\.1 200 /);
    expect(slowAnswer).toMatch(/\r\nconnection: close\r\n/i);
    expect(slowAnswer).toContain('"uid":"slow-review","allowed":true');

    const exit = await oldPod.exited;
    await sleep(500);
    const exchanges = await load.stop();

    expect(exit.code).toBe(0);
    const exitMs = exit.at - sigtermAt;
    expect(exitMs).toBeLessThan(GRACE_PERIOD_MS);
    expect(oldPod.logs.find((line) => line.msg === 'shutdown complete')).toBeDefined();

    const toOldWhileDraining = exchanges.filter((x) => x.port === oldPod.port && x.sentAt > sigtermAt);
    expect(toOldWhileDraining.length).toBeGreaterThan(0);
    expect(failures(exchanges)).toEqual([]);
    expect(exchanges.every((x) => x.answer?.allowed === true && x.answer.patch !== undefined)).toBe(true);
    const latencies = exchanges.map((x) => x.receivedAt - x.sentAt);
    report('graceful-shutdown', {
      workers: WORKERS,
      requests: exchanges.length,
      failures: failures(exchanges).length,
      toOldAfterSigterm: toOldWhileDraining.length,
      unreadyAfterMs: Math.round(unreadyAt - sigtermAt),
      serviceSwitchedAfterMs: Math.round(switchedAt - sigtermAt),
      exitAfterMs: Math.round(exitMs),
      exitCode: exit.code,
      p99Ms: Math.round(percentile(latencies, 99)),
    });

    // The replacement answered its share at --log-level warn without a single info line.
    expect(exchanges.filter((x) => x.port === newPod.port).length).toBeGreaterThan(0);
    expect(newPod.logs.filter((line) => line.level < 40)).toEqual([]);
  });

  it('exits at once on SIGTERM with --shutdown-delay-seconds 0 and nothing in flight', async () => {
    const before = performance.now();
    newPod.kill('SIGTERM');
    const exit = await newPod.exited;
    expect(exit.code).toBe(0);
    expect(exit.at - before).toBeLessThan(5000);
  });
});
