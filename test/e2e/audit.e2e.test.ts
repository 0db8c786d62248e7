// The running-pod audit on a real kube-apiserver: pods created while no webhook was registered are
// found (violation), sandboxed and allowed ones are told apart, by the CLI and by the server's
// periodic scan, which only the replica holding the audit Lease runs.
// SANDBOX_WEBHOOK_E2E_AUDIT_10K=1 adds the measurement of a scan over 10,000 pods (a few minutes).
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CoreV1Api, CoordinationV1Api, type V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { REPO_ROOT } from './harness/binaries.js';
import { getUrl } from './harness/controlplane.js';
import { createGvisorRuntimeClass, createNamespace, kubeRequest, loadKubeConfig, makeTempDir, removeTempDir, startWebhook, type RunningWebhook } from './harness/index.js';
import { setTimeout as sleep } from 'node:timers/promises';

const kc = loadKubeConfig(inject('kubeconfig'));
const core = kc.makeApiClient(CoreV1Api);
const CLI = join(REPO_ROOT, 'dist/cli.js');

const POLICY = `apiVersion: sandbox-webhook.io/v1alpha1
kind: SandboxPolicy
spec:
  defaultAction: allow
  rules:
    - name: tools
      match: { namespaces: ["tools-*"] }
      action: allow
    - name: tenants
      match: { namespaceSelector: { matchLabels: { sandbox-webhook.io/tenant: "true" } } }
      action: sandbox
`;

function pod(name: string, spec: Partial<NonNullable<V1Pod['spec']>> = {}): V1Pod {
  return { metadata: { name }, spec: { containers: [{ name: 'app', image: 'registry.k8s.io/pause:3.10' }], ...spec } };
}

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
  const started = performance.now();
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: process.env, maxBuffer: 256 * 1024 * 1024 }, (error, stdout, stderr) =>
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr, ms: Math.round(performance.now() - started) }),
    );
  });
}

interface Row {
  namespace: string;
  name: string;
  state: string;
  rule: string;
  reason: string;
}

async function metricsOf(webhook: RunningWebhook): Promise<string> {
  // The metrics port, plain HTTP (docs/metrics.md).
  const { status, body } = await getUrl(webhook.metricsUrl);
  if (status !== 200) throw new Error(`GET /metrics: ${status}`);
  return body;
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(250);
  }
}

describe('audit of running pods', () => {
  let dir: string;
  let policyFile: string;
  let tenant: string;
  let tools: string;

  beforeAll(async () => {
    dir = makeTempDir('audit');
    policyFile = join(dir, 'policy.yaml');
    writeFileSync(policyFile, POLICY);
    await createGvisorRuntimeClass(kc);
    tenant = await createNamespace(kc, 'tenant', { 'sandbox-webhook.io/tenant': 'true' });
    tools = await createNamespace(kc, 'tools');
    // No webhook is registered: these pods are stored as written, as before an install or while
    // a webhook with failurePolicy Ignore was down.
    await core.createNamespacedPod({ namespace: tenant, body: pod('legacy') });
    await core.createNamespacedPod({ namespace: tenant, body: pod('sandboxed', { runtimeClassName: 'gvisor' }) });
    await core.createNamespacedPod({ namespace: tools, body: pod('debug', { hostNetwork: true }) });
  });

  afterAll(() => removeTempDir(dir));

  it('the CLI finds the pod created without the webhook, and tells sandboxed and allowed pods apart', async () => {
    const result = await cli(['audit', '--policy', policyFile, '--kubeconfig', inject('kubeconfig'), '-o', 'json']);
    expect(result.code, result.stderr).toBe(0);
    const items = (JSON.parse(result.stdout) as { items: Row[] }).items.filter((row) => row.namespace === tenant || row.namespace === tools);
    expect(items).toEqual([
      { namespace: tenant, name: 'legacy', state: 'violation', rule: 'tenants', reason: 'runs unsandboxed; rule "tenants" would sandbox it' },
      { namespace: tenant, name: 'sandboxed', state: 'sandboxed', rule: 'tenants', runtimeClassName: 'gvisor', reason: 'runtimeClassName "gvisor"' },
      { namespace: tools, name: 'debug', state: 'allowed', rule: 'tools', reason: 'unsandboxed, allowed by rule "tools"' },
    ].sort((a, b) => a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name)));
  });

  it('the table reads like kubectl get, and --fail-on violation exits 1', async () => {
    const result = await cli(['audit', '--policy', policyFile, '--kubeconfig', inject('kubeconfig'), '--fail-on', 'violation']);
    expect(result.code).toBe(1);
    const lines = result.stdout.split('\n');
    expect(lines[0]).toMatch(/^NAMESPACE +POD +STATE +RULE +REASON$/);
    expect(lines.find((line) => line.startsWith(`${tenant} `) && line.includes(' legacy '))).toMatch(/ violation +tenants +runs unsandboxed; rule "tenants" would sandbox it$/);
  });

  it('the server scans only in the replica holding the Lease, publishes per-namespace counts, and hands over on shutdown', async () => {
    const leaseNamespace = await createNamespace(kc, 'webhook');
    const args = ['--audit-interval-seconds', '1', '--shutdown-delay-seconds', '0'];
    const env = { POD_NAMESPACE: leaseNamespace };
    const first = await startWebhook({ policyFile, args, env });
    const second = await startWebhook({ policyFile, args, env });
    try {
      const leader = await until('a leader', async () => {
        const [a, b] = await Promise.all([metricsOf(first), metricsOf(second)]);
        const leads = (text: string): boolean => text.includes('\nsandbox_webhook_audit_leader 1');
        if (leads(a) && leads(b)) throw new Error('two replicas lead at once');
        return leads(a) ? first : leads(b) ? second : undefined;
      });
      const follower = leader === first ? second : first;
      const text = await until('a complete scan', async () => {
        const body = await metricsOf(leader);
        return body.includes(`sandbox_webhook_pods{namespace="${tenant}",state="violation",rule="tenants"} 1`) ? body : undefined;
      });
      expect(text).toContain(`sandbox_webhook_pods{namespace="${tenant}",state="sandboxed",rule="tenants"} 1`);
      expect(text).toContain(`sandbox_webhook_pods{namespace="${tools}",state="allowed",rule="tools"} 1`);
      expect(text).toMatch(/\nsandbox_webhook_audit_last_complete_scan_age_seconds \d/);
      expect(await metricsOf(follower)).not.toContain('sandbox_webhook_pods{');
      const lease = await kc.makeApiClient(CoordinationV1Api).readNamespacedLease({ name: 'sandbox-webhook-audit', namespace: leaseNamespace });
      expect(lease.spec?.holderIdentity).toBeTruthy();

      // The leader gives the Lease up when it stops: the other replica takes over well within the 15 s lease.
      const stoppedAt = Date.now();
      await leader.stop();
      await until('the follower leads', async () => ((await metricsOf(follower)).includes('\nsandbox_webhook_audit_leader 1') ? true : undefined), 10_000);
      process.stderr.write(`[audit] leadership handed over ${Date.now() - stoppedAt} ms after the leader was stopped\n`);
    } finally {
      await first.stop();
      await second.stop();
    }
  });

  it.skipIf(process.env.SANDBOX_WEBHOOK_E2E_AUDIT_10K !== '1')('a scan of 10,000 pods: time, peak RSS and list requests', { timeout: 900_000 }, async () => {
    const namespace = await createNamespace(kc, 'scale', { 'sandbox-webhook.io/tenant': 'true' });
    const total = 10_000;
    const createStarted = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < total) {
          const i = next++;
          const { status, body } = await kubeRequest(kc, `/api/v1/namespaces/${namespace}/pods`, { method: 'POST', body: { apiVersion: 'v1', kind: 'Pod', ...pod(`p-${i}`) } });
          if (status !== 201) throw new Error(`create pod ${i}: ${status} ${body.slice(0, 200)}`);
        }
      }),
    );
    const createMs = Math.round(performance.now() - createStarted);
    const listRequests = async (): Promise<number> => {
      const { body } = await kubeRequest(kc, '/metrics');
      let sum = 0;
      for (const line of body.split('\n')) {
        if (line.startsWith('apiserver_request_total{') && line.includes('resource="pods"') && line.includes('verb="LIST"') && line.includes('scope="cluster"')) {
          sum += Number(line.slice(line.lastIndexOf(' ') + 1));
        }
      }
      return sum;
    };
    const before = await listRequests();
    const result = await cli(['audit', '--policy', policyFile, '--kubeconfig', inject('kubeconfig'), '-o', 'json', '--stats']);
    const after = await listRequests();
    expect(result.code, result.stderr).toBe(0);
    const items = (JSON.parse(result.stdout) as { items: Row[] }).items.filter((row) => row.namespace === namespace);
    expect(items).toHaveLength(total);
    expect(items.every((row) => row.state === 'violation')).toBe(true);
    process.stderr.write(`[audit 10k] created ${total} pods in ${createMs} ms; CLI wall ${result.ms} ms; ${result.stderr.trim()}; apiserver LIST pods requests: ${after - before}\n`);
    // Best effort: deleting 10,000 pods can outlast the request's 10 s timeout, and the control
    // plane of the run is thrown away anyway.
    await kubeRequest(kc, `/api/v1/namespaces/${namespace}/pods?gracePeriodSeconds=0`, { method: 'DELETE' }).catch(() => undefined);
  });
});
