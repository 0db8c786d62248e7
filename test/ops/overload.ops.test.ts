// Overload of the built webhook (node dist/main.js) over real TLS sockets. The clients behave like
// an apiserver's webhook client during a burst of pod creations: a warm pool of keep-alive
// connections (client-go keeps 25 idle per host) and, beyond it, a fresh TLS connection per review
// (no session resumption). Every review must be answered in time, well inside the chart's
// timeoutSeconds of 5 s, and every answer must be the right decision or an in-band, fail-closed
// denial: never a transport error, never a dropped request.

import { connect } from 'node:tls';
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  clientAgent,
  percentile,
  podReview,
  report,
  reviewTemplate,
  sendReview,
  servingFiles,
  sleep,
  startWebhook,
  type CertSet,
  type Exchange,
  type WebhookProcess,
} from './harness.js';

const POLICY = `apiVersion: sandbox-webhook.io/v1alpha1
kind: SandboxPolicy
spec:
  defaultAction: sandbox
  rules:
    - name: system
      match: { namespaces: [kube-system] }
      action: allow
`;

const KEEP_ALIVE_CLIENTS = 25;
const FRESH_CONNECTION_CLIENTS = Number(process.env.OPS_OVERLOAD_FRESH_CLIENTS ?? 10);
const DURATION_MS = Number(process.env.OPS_OVERLOAD_SECONDS ?? 6) * 1000;
/** The bound asserted for every answer: half the chart's timeoutSeconds. */
const ANSWER_WITHIN_MS = 2500;

/** A pod of a realistic size: 8 containers with environment, ~8 KiB of JSON. */
const nextReview = reviewTemplate((uid) =>
  podReview(uid, {
    namespace: 'tenant-a',
    generateName: 'worker-6b7c9d-',
    containers: 8,
    env: Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`SETTING_${i}`, `value-${i}-${'x'.repeat(40)}`])),
  }),
);

type Kind = 'decision' | 'fail-closed' | 'wrong';

function classify(exchange: Exchange): Kind {
  const answer = exchange.answer;
  if (!answer) return 'wrong';
  if (answer.allowed) {
    const setsClass = answer.patch?.some((op) => op.path === '/spec/runtimeClassName' && op.value === 'gvisor') ?? false;
    return setsClass && answer.auditAnnotations?.rule === 'default' ? 'decision' : 'wrong';
  }
  return (answer.code === 503 || answer.code === 500) && answer.message?.startsWith('sandbox-webhook: ') ? 'fail-closed' : 'wrong';
}

const round = (ms: number): number => Math.round(ms);

describe('overload (node dist/main.js, real TLS sockets)', () => {
  let workDir: string;
  let certs: CertSet;
  let webhook: WebhookProcess;

  beforeAll(async () => {
    let files;
    ({ workDir, certs, files } = await servingFiles('overload', POLICY));
    webhook = await startWebhook(files);
  });

  afterAll(() => {
    webhook?.kill('SIGKILL');
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it('answers every review of a saturating burst in time, with a decision or a fail-closed denial', async () => {
    // The keep-alive pool is warm, as an apiserver's is in steady state.
    const pool = Array.from({ length: KEEP_ALIVE_CLIENTS }, () => clientAgent([certs.caPem], true));
    for (const agent of pool) expect((await sendReview(webhook.port, agent, [], nextReview())).error).toBeUndefined();

    const exchanges: Exchange[] = [];
    const cpuBefore = webhook.cpuSeconds();
    const startedAt = performance.now();
    const until = startedAt + DURATION_MS;
    const client = async (agent: ReturnType<typeof clientAgent> | false, delayMs = 0): Promise<void> => {
      await sleep(delayMs);
      while (performance.now() < until) exchanges.push(await sendReview(webhook.port, agent, [certs.caPem], nextReview()));
    };
    await Promise.all([...pool.map((agent) => client(agent)), ...Array.from({ length: FRESH_CONNECTION_CLIENTS }, (_, i) => client(false, i * 25))]);
    const wallSeconds = (performance.now() - startedAt) / 1000;
    const cpuAfter = webhook.cpuSeconds();
    for (const agent of pool) agent.destroy();
    await sleep(200);

    const latencies = exchanges.map((x) => x.receivedAt - x.sentAt);
    const fresh = exchanges.filter((x) => !x.reusedSocket).map((x) => x.receivedAt - x.sentAt);
    const kinds = { decision: 0, 'fail-closed': 0, wrong: 0 };
    for (const exchange of exchanges) kinds[classify(exchange)] += 1;
    const late = exchanges.filter((x) => x.receivedAt - x.sentAt >= ANSWER_WITHIN_MS);
    const serverMs = webhook.logs.filter((line) => line.msg === 'admission').map((line) => line.durationMs as number);
    const metrics = await webhook.scrape();
    const counted = [...metrics.matchAll(/^sandbox_webhook_admission_requests_total\{[^}]*\} (\d+)$/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
    report('overload', {
      keepAliveClients: KEEP_ALIVE_CLIENTS,
      freshConnectionClients: FRESH_CONNECTION_CLIENTS,
      seconds: Math.round(wallSeconds * 10) / 10,
      requests: exchanges.length,
      requestsPerSecond: Math.round(exchanges.length / wallSeconds),
      // Busy CPU of the webhook over the run: close to (or above, with GC threads) 1 = saturated.
      serverCpuCores: cpuBefore !== undefined && cpuAfter !== undefined ? Math.round(((cpuAfter - cpuBefore) / wallSeconds) * 100) / 100 : 'n/a',
      ...kinds,
      transportFailures: exchanges.filter((x) => x.error !== undefined).length,
      late: late.length,
      p50Ms: round(percentile(latencies, 50)),
      p99Ms: round(percentile(latencies, 99)),
      maxMs: round(Math.max(...latencies)),
      freshConnectionP99Ms: round(percentile(fresh, 99)),
      serverDecisionP99Ms: Math.round(percentile(serverMs, 99) * 10) / 10,
      answersCountedByServer: counted,
    });

    expect(exchanges.filter((x) => x.error !== undefined).map((x) => x.error)).toEqual([]);
    expect(kinds.wrong).toBe(0);
    expect(late.map((x) => `${round(x.receivedAt - x.sentAt)} ms (sent at +${round(x.sentAt - startedAt)} ms${x.reusedSocket ? '' : ', new connection'})`)).toEqual([]);
    // Nothing dropped: the server counted every review it answered (warm-up included), and the
    // clients got them all.
    expect(counted).toBe(exchanges.length + KEEP_ALIVE_CLIENTS);
  });

  it('denies in-band, at once, a review that used up its time budget before it was read', async () => {
    // The apiserver waits 1 s (?timeout=1s), so the review's budget is 500 ms from its headers;
    // its body takes longer than that to arrive. Deciding now would answer after the apiserver
    // gave up (and failurePolicy Ignore would admit the pod): deny it fail-closed instead.
    const body = nextReview().body;
    const socket = connect({ host: '127.0.0.1', port: webhook.port, servername: 'localhost', ca: [certs.caPem] });
    await new Promise<void>((done, fail) => socket.once('secureConnect', done).once('error', fail));
    const answer = new Promise<string>((done) => {
      let text = '';
      socket.on('data', (chunk: Buffer) => {
        text += chunk.toString('utf8');
        if (/\r\n\r\n[\s\S]*\}\}$/.test(text)) done(text);
      });
    });
    socket.write(
      `POST /mutate?timeout=1s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body.slice(0, 100)}`,
    );
    await sleep(800);
    const completedAt = performance.now();
    socket.write(body.slice(100));
    const text = await answer;
    const answeredMs = performance.now() - completedAt;
    socket.destroy();
    expect(text).toMatch(/^HTTP\/1\.1 200 /);
    const review = JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) as { response: { allowed: boolean; status?: { code: number; message: string } } };
    expect(review.response.allowed).toBe(false);
    expect(review.response.status?.code).toBe(503);
    expect(review.response.status?.message).toMatch(/^sandbox-webhook: the webhook is overloaded; denied fail-closed/);
    const metrics = await webhook.scrape();
    expect(metrics).toMatch(/^sandbox_webhook_admission_fail_closed_total\{reason="overloaded"\} [1-9]\d*$/m);
    report('late-review-shed', { bodyCompletedAfterHeadersMs: 800, answeredAfterBodyMs: round(answeredMs) });
  });
});
