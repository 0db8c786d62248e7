// Certificate and policy hot reload under continuous load, against the built webhook as a real
// process: Kubernetes-style volume swaps, keep-alive TLS clients, zero failed requests.

import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AtomicVolume,
  LoadClients,
  failures,
  generateCerts,
  get,
  percentile,
  podReview,
  report,
  sendReview,
  sleep,
  startWebhook,
  tempDir,
  type CertSet,
  type Exchange,
  type WebhookProcess,
} from './harness.js';

const POLICY_SANDBOX_TENANTS = `apiVersion: sandbox-webhook.io/v1alpha1
kind: SandboxPolicy
spec:
  runtimeClassName: gvisor
  defaultAction: sandbox
  rules:
    - name: system
      match: { namespaces: [kube-system, kube-public, kube-node-lease] }
      action: allow
`;

// The change under test: tenant-a becomes exempt, so its pods are allowed without a patch.
const POLICY_EXEMPT_TENANT_A = `${POLICY_SANDBOX_TENANTS}    - name: tenant-a-exempt
      match: { namespaces: [tenant-a] }
      action: allow
`;

// Two errors: an unknown field and a bad action. The previous policy must stay in force.
const POLICY_INVALID = `${POLICY_SANDBOX_TENANTS}    - name: broken
      mtach: { namespaces: [tenant-a] }
      action: permit
`;

const WORKERS = 6;

type Verdict = 'sandboxed' | 'exempt' | 'other';

function verdictOf(exchange: Exchange): Verdict {
  const answer = exchange.answer;
  if (!answer?.allowed) return 'other';
  const setsClass = answer.patch?.some((op) => op.path === '/spec/runtimeClassName' && op.value === 'gvisor') ?? false;
  if (setsClass && answer.auditAnnotations?.rule === 'default') return 'sandboxed';
  if (!answer.patch && answer.auditAnnotations?.rule === 'tenant-a-exempt') return 'exempt';
  return 'other';
}

describe('hot reload under load (node dist/main.js, real TLS sockets)', () => {
  let workDir: string;
  let certs: AtomicVolume;
  let policy: AtomicVolume;
  let first: CertSet;
  let second: CertSet;
  let webhook: WebhookProcess;
  let trust: string[];
  let load: LoadClients;

  beforeAll(async () => {
    workDir = tempDir('reload');
    [first, second] = await Promise.all([generateCerts(), generateCerts()]);
    certs = new AtomicVolume(`${workDir}/tls`);
    certs.write({ 'tls.crt': first.certPem, 'tls.key': first.keyPem, 'ca.crt': first.caPem });
    policy = new AtomicVolume(`${workDir}/policy`);
    policy.write({ 'policy.yaml': POLICY_SANDBOX_TENANTS });
    webhook = await startWebhook({
      policyFile: policy.path('policy.yaml'),
      certFile: certs.path('tls.crt'),
      keyFile: certs.path('tls.key'),
      ca: [first.caPem],
    });
    trust = [first.caPem];
    load = new LoadClients({
      workers: WORKERS,
      target: () => webhook.port,
      trust: () => trust,
      review: (uid) => podReview(uid, { namespace: 'tenant-a', generateName: 'web-7d9f8-' }),
      recycleEvery: 25,
    }).start();
    await sleep(500);
  });

  afterAll(async () => {
    await load?.stop();
    webhook?.kill('SIGKILL');
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it('lays the volumes out like the kubelet does', () => {
    const entries = certs.entries();
    expect(entries).toEqual(expect.arrayContaining(['..data', 'ca.crt', 'tls.crt', 'tls.key']));
    expect(entries.filter((name) => /^\.\.\d{4}_/.test(name))).toHaveLength(1);
  });

  it('serves a rotated certificate (new CA) to new connections without failing any request', async () => {
    // The caBundle is updated to hold both CAs before the serving certificate changes.
    trust = [first.caPem, second.caPem];
    const before = load.exchanges.length;
    const swappedAt = certs.write({ 'tls.crt': second.certPem, 'tls.key': second.keyPem, 'ca.crt': second.caPem });
    // Probe with a fresh connection every 20 ms until one is served the new certificate.
    let effectAt: number | undefined;
    for (let i = 0; i < 500 && effectAt === undefined; i++) {
      const probe = await sendReview(webhook.port, false, trust, podReview(randomUUID(), { namespace: 'tenant-a', name: 'probe' }));
      expect(probe.error).toBeUndefined();
      if (probe.fingerprint256 === second.fingerprint256) effectAt = probe.sentAt;
      else await sleep(20);
    }
    expect(effectAt, 'the new certificate was never served').toBeDefined();
    await sleep(1500);
    // Every connection opened after the effect gets the new certificate.
    const after = load.exchanges.slice(before).filter((x) => !x.reusedSocket && x.sentAt > effectAt! + 5);
    expect(after.length).toBeGreaterThan(0);
    expect(after.filter((x) => x.fingerprint256 !== second.fingerprint256)).toEqual([]);
    expect(failures(load.exchanges)).toEqual([]);
    const reloaded = await webhook.waitForLog((line) => line.msg === 'serving certificate reloaded');
    expect(reloaded.fingerprint256).toBe(second.fingerprint256);
    report('certificate-rotation', {
      changeToEffectMs: Math.round(effectAt! - swappedAt),
      requestsDuringStep: load.exchanges.length - before,
      newConnectionsAfter: after.length,
      // Connections opened before the rotation keep their certificate and keep working.
      requestsOnOlderConnectionsAfter: load.exchanges
        .slice(before)
        .filter((x) => x.reusedSocket && x.sentAt > effectAt! && x.fingerprint256 === first.fingerprint256).length,
    });
  });

  it('replaces the policy atomically when the ConfigMap changes, and keeps it when the next one is invalid', async () => {
    const before = load.exchanges.length;
    expect(load.exchanges.slice(before - 20).every((x) => verdictOf(x) === 'sandboxed')).toBe(true);
    const swappedAt = policy.write({ 'policy.yaml': POLICY_EXEMPT_TENANT_A });
    let effectAt: number | undefined;
    for (let i = 0; i < 500 && effectAt === undefined; i++) {
      await sleep(10);
      const seen = load.exchanges.slice(before).find((x) => verdictOf(x) === 'exempt');
      if (seen) effectAt = seen.receivedAt;
    }
    expect(effectAt, 'the new policy never took effect').toBeDefined();
    await sleep(1000);
    const during = load.exchanges.slice(before);
    // Atomic: every answer is one policy's or the other's, and no request sent after the new policy
    // was first seen gets the old answer.
    expect(during.filter((x) => verdictOf(x) === 'other')).toEqual([]);
    expect(during.filter((x) => x.sentAt > effectAt! && verdictOf(x) !== 'exempt')).toEqual([]);
    report('policy-reload', { changeToEffectMs: Math.round(effectAt! - swappedAt), requestsDuringStep: during.length });

    const beforeInvalid = load.exchanges.length;
    const invalidAt = policy.write({ 'policy.yaml': POLICY_INVALID });
    const rejected = await webhook.waitForLog((line) => line.msg.startsWith('policy reload rejected'));
    const rejectedAfterMs = Math.round(performance.now() - invalidAt);
    const errors = rejected.errors as string[];
    expect(errors.length).toBeGreaterThanOrEqual(2);
    expect(errors.join('\n')).toMatch(/mtach/);
    expect(errors.join('\n')).toMatch(/permit/);
    await sleep(1000);
    const afterInvalid = load.exchanges.slice(beforeInvalid);
    expect(afterInvalid.length).toBeGreaterThan(0);
    expect(afterInvalid.filter((x) => verdictOf(x) !== 'exempt')).toEqual([]);
    const metrics = await webhook.scrape();
    expect(metrics).toMatch(/^sandbox_webhook_policy_reloads_total\{result="failure"\} 1$/m);
    expect(metrics).toMatch(/^sandbox_webhook_policy_reloads_total\{result="success"\} 1$/m);
    report('policy-invalid', { changeToRejectionLoggedMs: rejectedAfterMs, errors: errors.length });
    expect(failures(load.exchanges)).toEqual([]);
  });

  it('exposes every required metric series after traffic', async () => {
    const text = await webhook.scrape();
    expect((await get(webhook.port, trust, '/metrics')).status).toBe(404);
    for (const series of [
      /^sandbox_webhook_admission_requests_total\{operation="CREATE",decision="sandbox",rule="default",mode="enforce",outcome="[a-z]+"\} \d+$/m,
      /^sandbox_webhook_admission_requests_total\{operation="CREATE",decision="allow",rule="tenant-a-exempt",mode="enforce",outcome="unchanged"\} \d+$/m,
      // From 0.5 ms, to resolve a sub-millisecond decision, up to the apiserver's longest timeout.
      ...['0.0005', '0.001', '0.005', '0.1', '1', '10', '30', '\\+Inf'].map(
        (le) => new RegExp(`^sandbox_webhook_admission_duration_seconds_bucket\\{le="${le}",outcome="[a-z]+"\\} \\d+$`, 'm'),
      ),
      /^sandbox_webhook_admission_duration_seconds_count\{outcome="[a-z]+"\} \d+$/m,
      /^sandbox_webhook_policy_reloads_total\{result="success"\} \d+$/m,
      /^sandbox_webhook_policy_reloads_total\{result="failure"\} \d+$/m,
      /^sandbox_webhook_informer_synced\{resource="[a-z]+"\} [01]$/m,
      /^sandbox_webhook_informer_restarts_total\{resource="[a-z]+"\} \d+$/m,
      /^sandbox_webhook_tls_certificate_expiry_timestamp_seconds \d+(\.\d+)?$/m,
      /^sandbox_webhook_tls_certificate_reloads_total\{result="success"\} 1$/m,
    ]) {
      expect(text).toMatch(series);
    }
  });

  it('logs one line per decision with uid, namespace, pod, decision, rule and duration, and no env values', async () => {
    const uid = randomUUID();
    const exchange = await sendReview(
      webhook.port,
      false,
      trust,
      podReview(uid, { namespace: 'tenant-b', generateName: 'api-5c4f-', env: { DB_PASSWORD: 's3cr3t', API_TOKEN: 's3cr3t-token' } }),
    );
    expect(exchange.answer?.allowed).toBe(true);
    const line = await webhook.waitForLog((l) => l.uid === uid);
    expect(line).toMatchObject({ msg: 'admission', namespace: 'tenant-b', pod: 'api-5c4f-*', decision: 'sandbox', rule: 'default' });
    expect(typeof line.durationMs).toBe('number');
    expect(webhook.logs.filter((l) => l.uid === uid)).toHaveLength(1);
    expect(webhook.output()).not.toContain('s3cr3t');
  });

  it('finished the whole run without a failed request, with one log line per answer', async () => {
    const exchanges = await load.stop();
    // Log lines arrive through a pipe, a little after the answers they describe.
    const answered = exchanges.filter((x) => x.answer).map((x) => x.uid);
    const unlogged = (): string[] => {
      const logged = new Set(webhook.logs.filter((l) => l.msg === 'admission').map((l) => l.uid));
      return answered.filter((uid) => !logged.has(uid));
    };
    for (let i = 0; i < 100 && unlogged().length > 0; i++) await sleep(50);
    expect(unlogged()).toEqual([]);
    const latencies = exchanges.map((x) => x.receivedAt - x.sentAt);
    report('reload-load', {
      workers: WORKERS,
      requests: exchanges.length,
      failures: failures(exchanges).length,
      newConnections: exchanges.filter((x) => !x.reusedSocket).length,
      p50Ms: Math.round(percentile(latencies, 50) * 10) / 10,
      p99Ms: Math.round(percentile(latencies, 99) * 10) / 10,
      maxMs: Math.round(Math.max(...latencies)),
    });
    expect(failures(exchanges)).toEqual([]);
  });
});
