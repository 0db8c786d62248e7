// Operations through inject(): the metric series Prometheus scrapes, the one log line per decision
// (and what it must never contain), load shedding and deadlines that fail closed in-band, and the
// draining behaviour of answers during shutdown.

import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { ClusterFacts } from '../../src/admission/facts.js';
import type { NamespaceFacts } from '../../src/policy/evaluate.js';
import { apiserverTimeoutMs, buildApp, reviewBudgetMs, type AppOptions } from '../../src/server/app.js';
import { ADMISSION_BUCKETS_SECONDS, Metrics } from '../../src/telemetry/metrics.js';
import { policyFromSpec } from '../support/policy.js';
import { pod, podReview, type Json } from '../support/review.js';

const policy = policyFromSpec(`
  rules:
    - name: system
      match: { namespaces: [kube-system] }
      action: allow
    - name: tenants
      match: { namespaceSelector: { matchLabels: { tenant: "true" } } }
      action: sandbox
    - name: blocked
      match: { anyImage: ["evil.example.com/**"] }
      action: deny
`);

interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** A cluster where every namespace is known and unlabelled, and the gvisor RuntimeClass exists. */
const cluster: ClusterFacts = {
  namespace: async (name) => ({ name, labels: {} }),
  runtimeClass: () => ({ state: 'present', handler: 'runsc', nodeSelector: undefined }),
};

/** Namespace lookups that wait until the test releases them (a slow or stuck API server). */
function gatedCluster(): { cluster: ClusterFacts; release: () => void; waiting: () => number } {
  const waiting: Array<() => void> = [];
  return {
    cluster: {
      namespace: (name) =>
        new Promise<NamespaceFacts>((resolve) => waiting.push(() => resolve({ name, labels: { tenant: 'true' } }))),
      runtimeClass: () => ({ state: 'present', handler: 'runsc', nodeSelector: undefined }),
    },
    release: () => waiting.splice(0).forEach((wake) => wake()),
    waiting: () => waiting.length,
  };
}

let app: FastifyInstance | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
});

async function start(options: Partial<AppOptions> = {}): Promise<{ app: FastifyInstance; metrics: Metrics; logs: LogLine[] }> {
  const logs: LogLine[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as LogLine) });
  const metrics = new Metrics();
  app = await buildApp({ policy: () => policy, cluster, metrics, logger, ...options });
  return { app, metrics, logs };
}

function review(uid: string, namespace: string, podJson: Json = pod()): Json {
  return podReview({ uid, namespace, pod: podJson });
}

const post = (server: FastifyInstance, body: Json, query = '?timeout=10s') =>
  server.inject({ method: 'POST', url: `/mutate${query}`, headers: { 'content-type': 'application/json' }, payload: JSON.stringify(body) });

describe('metrics', () => {
  it('exposes every series the issue asks for after some traffic', async () => {
    const { app: server, metrics } = await start();
    await post(server, review('a', 'team-a'));
    await post(server, review('b', 'kube-system'));
    await post(server, podReview({ uid: 'c', namespace: 'team-a', operation: 'DELETE' }));
    await post(server, review('d', 'team-a', pod({ containers: [{ name: 'miner', image: 'evil.example.com/miner:1' }] })));
    const text = await metrics.registry.metrics();
    for (const series of [
      /^sandbox_webhook_admission_requests_total\{operation="CREATE",decision="sandbox",rule="default",mode="enforce",outcome="patched"\} 1$/m,
      /^sandbox_webhook_admission_requests_total\{operation="CREATE",decision="allow",rule="system",mode="enforce",outcome="unchanged"\} 1$/m,
      /^sandbox_webhook_admission_requests_total\{operation="DELETE",decision="none",rule="",mode="enforce",outcome="skipped"\} 1$/m,
      /^sandbox_webhook_admission_duration_seconds_count\{outcome="patched"\} 1$/m,
      /^sandbox_webhook_policy_reloads_total\{result="success"\} 0$/m,
      /^sandbox_webhook_policy_reloads_total\{result="failure"\} 0$/m,
      /^sandbox_webhook_informer_synced\{resource="namespaces"\} 0$/m,
      /^sandbox_webhook_informer_synced\{resource="runtimeclasses"\} 0$/m,
      /^sandbox_webhook_informer_restarts_total\{resource="namespaces"\} 0$/m,
      /^sandbox_webhook_informer_restarts_total\{resource="runtimeclasses"\} 0$/m,
      /^sandbox_webhook_tls_certificate_reloads_total\{result="failure"\} 0$/m,
      /^sandbox_webhook_admission_fail_closed_total\{reason="overloaded"\} 0$/m,
      /^sandbox_webhook_admission_fail_closed_total\{reason="deadline"\} 0$/m,
      /^sandbox_webhook_admission_fail_closed_total\{reason="body_too_large"\} 0$/m,
      /^sandbox_webhook_admission_requests_total\{operation="CREATE",decision="deny",rule="blocked",mode="enforce",outcome="denied"\} 1$/m,
      /^sandbox_webhook_admission_denials_total\{reason="deny_rule"\} 1$/m,
      /^sandbox_webhook_admission_denials_total\{reason="incompatible"\} 0$/m,
      /^sandbox_webhook_connections_dropped_total 0$/m,
      /^sandbox_webhook_build_info\{version="unknown",node_version="v\d+\.\d+\.\d+"\} 1$/m,
      /^# TYPE sandbox_webhook_tls_certificate_expiry_timestamp_seconds gauge$/m,
    ]) {
      expect(text).toMatch(series);
    }
  });

  it("resolves a sub-millisecond webhook: buckets from 0.5 ms up to 30 s, the apiserver's longest webhook timeout", async () => {
    expect(ADMISSION_BUCKETS_SECONDS[0]).toBe(0.0005);
    expect(ADMISSION_BUCKETS_SECONDS.at(-1)).toBe(30);
    const { app: server, metrics } = await start();
    await post(server, review('a', 'team-a'));
    const text = await metrics.registry.metrics();
    const buckets = [...text.matchAll(/^sandbox_webhook_admission_duration_seconds_bucket\{le="([^"]+)",outcome="patched"\} \d+$/gm)].map((m) => m[1]);
    expect(buckets).toEqual(['0.0005', '0.001', '0.0025', '0.005', '0.01', '0.025', '0.05', '0.1', '0.25', '0.5', '1', '2.5', '5', '10', '30', '+Inf']);
  });
});

describe('one log line per decision', () => {
  it('carries uid, namespace, pod or generateName, decision, rule and durationMs', async () => {
    const { app: server, logs } = await start();
    await post(server, review('uid-1', 'team-a', pod({}, { name: undefined, generateName: 'web-5d8f-' })));
    const lines = logs.filter((line) => line.msg === 'admission');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      level: 30,
      uid: 'uid-1',
      operation: 'CREATE',
      namespace: 'team-a',
      pod: 'web-5d8f-*',
      generateName: 'web-5d8f-',
      decision: 'sandbox',
      rule: 'default',
      outcome: 'patched',
      allowed: true,
    });
    expect(typeof lines[0]!.durationMs).toBe('number');
  });

  it('never contains env values, whatever the pod and whatever the answer', async () => {
    const secretEnv = [
      { name: 'DB_PASSWORD', value: 's3cr3t' },
      { name: 'TOKEN', valueFrom: { secretKeyRef: { name: 'db', key: 's3cr3t-key' } } },
    ];
    const { app: server, logs } = await start();
    const tenant = pod({ containers: [{ name: 'app', image: 'nginx', env: secretEnv }] });
    const privileged = pod({ containers: [{ name: 'app', image: 'nginx', env: secretEnv, securityContext: { privileged: true } }] });
    const malformed = pod({ containers: [{ name: 'app', image: 42, env: secretEnv }] });
    await post(server, review('ok', 'team-a', tenant));
    await post(server, review('denied', 'team-a', privileged));
    await post(server, review('malformed', 'team-a', malformed));
    const raw = JSON.stringify(logs);
    expect(logs.filter((line) => line.msg === 'admission')).toHaveLength(3);
    expect(raw).not.toContain('s3cr3t');
  });

  it('is not written below the configured level', async () => {
    const logs: LogLine[] = [];
    const metrics = new Metrics();
    app = await buildApp({
      policy: () => policy,
      cluster,
      metrics,
      logger: pino({ level: 'warn' }, { write: (line: string) => void logs.push(JSON.parse(line) as LogLine) }),
    });
    await post(app, review('quiet', 'team-a'));
    expect(logs).toEqual([]);
  });
});

describe('load shedding and deadlines fail closed, in-band', () => {
  it('sheds reviews beyond the in-flight limit at once, while earlier ones still get decisions', async () => {
    const gate = gatedCluster();
    const { app: server, metrics } = await start({ cluster: gate.cluster, maxInFlight: 2 });
    const first = [post(server, review('1', 'team-a')), post(server, review('2', 'team-a'))];
    while (gate.waiting() < 2) await new Promise((done) => setTimeout(done, 1));
    const scrape = (): Promise<string> => metrics.registry.metrics();
    expect(await scrape()).toMatch(/^sandbox_webhook_admission_in_flight 2$/m);
    const shed = await Promise.all([post(server, review('3', 'team-a')), post(server, review('4', 'team-a'))]);
    for (const response of shed) {
      expect(response.statusCode).toBe(200);
      expect(response.json().response).toMatchObject({
        allowed: false,
        status: { code: 503, message: expect.stringMatching(/^sandbox-webhook: the webhook is overloaded; denied fail-closed/) },
      });
    }
    gate.release();
    for (const response of await Promise.all(first)) {
      expect(response.json().response).toMatchObject({ allowed: true, patchType: 'JSONPatch' });
    }
    expect(await scrape()).toMatch(/^sandbox_webhook_admission_in_flight 0$/m);
    expect(await metrics.failClosed.get()).toMatchObject({ values: expect.arrayContaining([expect.objectContaining({ labels: { reason: 'overloaded' }, value: 2 })]) });
  });

  it('denies a review that gets no decision within the request timeout', async () => {
    const gate = gatedCluster();
    const { app: server, logs } = await start({ cluster: gate.cluster, requestTimeoutMs: 100 });
    const response = await post(server, review('stuck', 'team-a'));
    expect(response.json().response).toMatchObject({
      uid: 'stuck',
      allowed: false,
      status: { code: 500, message: 'sandbox-webhook: no decision within 100 ms; denied fail-closed, retry the request' },
    });
    expect(logs.find((line) => line.uid === 'stuck')).toMatchObject({ decision: 'none', outcome: 'error', allowed: false });
    gate.release();
  });

  it("shortens the budget to fit the apiserver's own ?timeout=", async () => {
    const gate = gatedCluster();
    const { app: server } = await start({ cluster: gate.cluster, requestTimeoutMs: 2500 });
    const response = await post(server, review('short', 'team-a'), '?timeout=1s');
    expect(response.json().response.status.message).toContain('no decision within 500 ms');
    gate.release();
  });

  it.each([
    ['10s', 10_000],
    ['5s', 5000],
    ['4.5s', 4500],
    ['900ms', 900],
    ['1m0s', 60_000],
    ['1h0m1.5s', 3_601_500],
    ['', undefined],
    ['10', undefined],
    ['soon', undefined],
    ['-5s', undefined],
  ])('reads the apiserver timeout %j as %s ms', (raw, ms) => {
    expect(apiserverTimeoutMs({ timeout: raw })).toBe(ms);
  });

  it.each([
    ['no apiserver timeout: our own limit', 2500, undefined, 2500],
    ['a 10 s apiserver timeout leaves our 2.5 s limit', 2500, 10_000, 2500],
    ['a 2 s apiserver timeout: answer within 1 s', 2500, 2000, 1000],
    ['a 1 s apiserver timeout: answer within half of it', 2500, 1000, 500],
    ['a 3 s apiserver timeout: keep 1 s for the way back', 2500, 3000, 2000],
  ])('%s', (_name, own, apiserver, budget) => {
    expect(reviewBudgetMs(own, apiserver)).toBe(budget);
  });
});

describe('draining', () => {
  it('asks clients to close the connection after each answer once draining, and not before', async () => {
    let draining = false;
    const { app: server } = await start({ draining: () => draining, readiness: () => ({ ready: !draining, reasons: draining ? ['shutting down'] : [] }) });
    expect((await post(server, review('before', 'team-a'))).headers.connection).not.toBe('close');
    draining = true;
    const during = await post(server, review('during', 'team-a'));
    expect(during.statusCode).toBe(200);
    expect(during.headers.connection).toBe('close');
    expect(during.json().response).toMatchObject({ uid: 'during', allowed: true });
    const readyz = await server.inject({ method: 'GET', url: '/readyz' });
    expect(readyz.statusCode).toBe(503);
    expect(readyz.json()).toEqual({ status: 'unready', reasons: ['shutting down'] });
    expect((await server.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
  });
});
