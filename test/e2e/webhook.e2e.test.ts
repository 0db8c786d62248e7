// The webhook against a real kube-apiserver: what a cluster admin and a tenant would see.
// The built server runs as a real process; the apiserver calls it through a
// MutatingWebhookConfiguration (url + caBundle) exactly as in a cluster.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { CoreV1Api, NodeV1Api, type V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  GVISOR_NODE_LABEL,
  expectRuntimeClassApplied,
  createFakeNodes,
  createGvisorRuntimeClass,
  createNamespace,
  deleteFakeNodes,
  deleteNamespace,
  deleteRuntimeClass,
  expectRejected,
  isApiError,
  loadKubeConfig,
  registerWebhook,
  startWebhook,
  waitForPod,
  type RunningWebhook,
  type WebhookRegistration,
} from './harness/index.js';
import { setTimeout as sleep } from 'node:timers/promises';

const kc = loadKubeConfig(inject('kubeconfig'));
const core = kc.makeApiClient(CoreV1Api);

const WEBHOOK_NAME = 'pods.sandbox-webhook.io';
const DENIED_PREFIX = `admission webhook "${WEBHOOK_NAME}" denied the request: `;

function policy(mode: 'enforce' | 'audit'): string {
  return `apiVersion: sandbox-webhook.io/v1alpha1
kind: SandboxPolicy
spec:
  mode: ${mode}
  defaultAction: allow
  rules:
    - name: system
      match: { namespaces: [kube-system] }
      action: allow
    - name: blocked-registry
      match: { anyImage: ["evil.example.com/**"] }
      action: deny
    - name: tenants
      match: { namespaces: ["tenant-*"] }
      action: sandbox
`;
}

function pod(spec: Partial<NonNullable<V1Pod['spec']>> = {}, name?: string): V1Pod {
  return {
    metadata: name ? { name } : { generateName: 'app-' },
    spec: { containers: [{ name: 'app', image: 'registry.k8s.io/pause:3.10' }], ...spec },
  };
}

async function kubectlCreate(namespace: string, manifest: V1Pod): Promise<{ code: number; stdout: string; stderr: string }> {
  const kubectl = join(inject('binDir'), 'kubectl');
  const body = JSON.stringify({ apiVersion: 'v1', kind: 'Pod', ...manifest });
  return new Promise((resolve) => {
    const child = execFile(kubectl, ['create', '-n', namespace, '-o', 'json', '-f', '-'], { env: process.env }, (error, stdout, stderr) =>
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
    child.stdin?.end(body);
  });
}

describe('sandbox-webhook in a real cluster', () => {
  let tenant: string;
  let plain: string;
  let webhook: RunningWebhook;
  let registration: WebhookRegistration;
  let nodes: { gvisor: string; runc: string };

  beforeAll(async () => {
    await createGvisorRuntimeClass(kc);
    // A class outside acceptedRuntimeClasses, so the RuntimeClass plugin lets such pods reach the webhook.
    try {
      await kc.makeApiClient(NodeV1Api).createRuntimeClass({ body: { metadata: { name: 'runc' }, handler: 'runc' } });
    } catch (error) {
      if (!isApiError(error, 409)) throw error;
    }
    nodes = await createFakeNodes(kc);
    tenant = await createNamespace(kc, 'tenant');
    plain = await createNamespace(kc, 'plain');
    webhook = await startWebhook({ policyYaml: policy('enforce') });
    registration = await registerWebhook(kc, {
      url: `${webhook.url}/mutate`,
      caBundle: webhook.caBundle,
      configurationName: 'sandbox-webhook-e2e-core',
      webhookName: WEBHOOK_NAME,
      probeNamespace: plain,
    });
  });

  afterAll(async () => {
    await registration?.delete();
    await webhook?.stop();
    if (nodes) await deleteFakeNodes(kc, nodes);
    for (const ns of [tenant, plain]) if (ns) await deleteNamespace(kc, ns);
    await deleteRuntimeClass(kc, 'runc');
  });

  describe('enforce mode', () => {
    it('stores a tenant pod with runtimeClassName gvisor, the rule annotation, and the RuntimeClass overhead, nodeSelector and tolerations', async () => {
      const created = await core.createNamespacedPod({ namespace: tenant, body: pod() });
      expect(created.metadata?.name).toMatch(/^app-/);
      const stored = await core.readNamespacedPod({ namespace: tenant, name: created.metadata?.name as string });
      expect(stored.spec?.runtimeClassName).toBe('gvisor');
      expect(stored.metadata?.annotations?.['sandbox-webhook.io/rule']).toBe('tenants');
      // Applied by the apiserver's RuntimeClass admission plugin on the reinvocation pass (docs/kubernetes.md §2).
      expectRuntimeClassApplied(stored);
      expect(stored.spec?.nodeSelector).toEqual({ [GVISOR_NODE_LABEL.key]: GVISOR_NODE_LABEL.value });
    });

    it('is called again on reinvocation and leaves its own output alone (idempotent)', async () => {
      const before = webhook.logs().split('\n').filter((line) => line.includes('"msg":"admission"')).length;
      const created = await core.createNamespacedPod({ namespace: tenant, body: pod({}, 'reinvoked') });
      expect(created.spec?.runtimeClassName).toBe('gvisor');
      const decided = (): { pod?: string; outcome: string }[] =>
        webhook
          .logs()
          .split('\n')
          .filter((line) => line.includes('"msg":"admission"'))
          .slice(before)
          .map((line) => JSON.parse(line) as { pod?: string; outcome: string })
          .filter((entry) => entry.pod === 'reinvoked');
      // The server writes its log lines in batches (flushed at least every 250 ms): give the second line a moment.
      for (let i = 0; i < 50 && decided().length < 2; i++) await sleep(100);
      expect(decided().map((entry) => entry.outcome)).toEqual(['patched', 'unchanged']);
    });

    it('stores a pod in a namespace the policy allows untouched', async () => {
      const created = await core.createNamespacedPod({ namespace: plain, body: pod() });
      expect(created.spec?.runtimeClassName).toBeUndefined();
      expect(created.metadata?.annotations?.['sandbox-webhook.io/rule']).toBeUndefined();
    });

    it('never sees a kube-system pod (excluded by the namespaceSelector)', async () => {
      const created = await core.createNamespacedPod({ namespace: 'kube-system', body: pod({}, `system-${Date.now()}`) });
      expect(created.spec?.runtimeClassName).toBeUndefined();
      // The server writes its log lines in batches, flushed at least every 250 ms: a line it wrote would be there by now.
      await sleep(500);
      expect(webhook.logs()).not.toContain(`"namespace":"kube-system"`);
      await core.deleteNamespacedPod({ namespace: 'kube-system', name: created.metadata?.name as string });
    });

    it('shows the tenant the warning through kubectl', async () => {
      const result = await kubectlCreate(tenant, pod());
      expect(result.code).toBe(0);
      expect(result.stderr).toContain('Warning: runtimeClassName "gvisor" set by rule "tenants"');
      expect((JSON.parse(result.stdout) as V1Pod).spec?.runtimeClassName).toBe('gvisor');
    });

    it('returns a denial verbatim to the client, naming the rule and the image', async () => {
      const status = await expectRejected(
        core.createNamespacedPod({ namespace: tenant, body: pod({ containers: [{ name: 'x', image: 'evil.example.com/miner:1' }] }, 'miner') }),
      );
      expect(status.code).toBe(403);
      expect(status.message).toBe(
        `${DENIED_PREFIX}sandbox-webhook: pod miner denied by rule "blocked-registry": ` +
          'image "evil.example.com/miner:1" (spec.containers[0].image) matches "evil.example.com/**"',
      );
      const result = await kubectlCreate(tenant, pod({ containers: [{ name: 'x', image: 'evil.example.com/miner:1' }] }, 'miner'));
      expect(result.code).not.toBe(0);
      expect(result.stderr).toContain(`${DENIED_PREFIX}sandbox-webhook: pod miner denied by rule "blocked-registry"`);
      expect(result.stderr).toContain('Warning: image "evil.example.com/miner:1" (containers[0]): denied by rule "blocked-registry"');
    });

    it('denies a tenant pod that asks for hostNetwork and a hostPath, naming both fields', async () => {
      const status = await expectRejected(
        core.createNamespacedPod({
          namespace: tenant,
          body: pod({ hostNetwork: true, volumes: [{ name: 'host', hostPath: { path: '/var/run' } }] }, 'escape'),
        }),
      );
      expect(status.code).toBe(403);
      expect(status.message).toContain(DENIED_PREFIX);
      expect(status.message).toContain('spec.hostNetwork, spec.volumes[0].hostPath (volume "host")');
    });

    it('denies a tenant pod that asks for another RuntimeClass (onConflict deny)', async () => {
      const status = await expectRejected(core.createNamespacedPod({ namespace: tenant, body: pod({ runtimeClassName: 'runc' }, 'runc-pod') }));
      expect(status.code).toBe(403);
      expect(status.message).toContain('asks for runtimeClassName "runc" but must run sandboxed');
    });

    it('answers a server-side dry run with the mutated pod and stores nothing', async () => {
      const result = await core.createNamespacedPod({ namespace: tenant, dryRun: 'All', body: pod({}, 'dry') });
      expect(result.spec?.runtimeClassName).toBe('gvisor');
      expect(result.spec?.overhead).toEqual({ cpu: '100m', memory: '64Mi' });
      const status = await expectRejected(core.readNamespacedPod({ namespace: tenant, name: 'dry' }));
      expect(status.code).toBe(404);
    });

    it('lets kube-scheduler bind sandboxed pods only to the gVisor node, and ordinary pods elsewhere', async () => {
      const sandboxed: string[] = [];
      const ordinary: string[] = [];
      for (let i = 0; i < 4; i++) {
        sandboxed.push((await core.createNamespacedPod({ namespace: tenant, body: pod({}, `sched-sandboxed-${i}`) })).metadata?.name as string);
        ordinary.push((await core.createNamespacedPod({ namespace: plain, body: pod({}, `sched-ordinary-${i}`) })).metadata?.name as string);
      }
      for (const name of sandboxed) {
        const bound = await waitForPod(kc, tenant, name, (p) => Boolean(p.spec?.nodeName));
        expect(bound.spec?.nodeName).toBe(nodes.gvisor);
      }
      for (const name of ordinary) {
        const bound = await waitForPod(kc, plain, name, (p) => Boolean(p.spec?.nodeName));
        // The gVisor node is tainted for sandboxed pods only: ordinary pods land on the other one.
        expect(bound.spec?.nodeName).toBe(nodes.runc);
      }
    });
  });

  describe('audit mode', () => {
    let auditor: RunningWebhook;

    beforeAll(async () => {
      auditor = await startWebhook({ policyYaml: policy('audit') });
      registration = await registerWebhook(kc, {
        url: `${auditor.url}/mutate`,
        caBundle: auditor.caBundle,
        configurationName: 'sandbox-webhook-e2e-core',
        webhookName: WEBHOOK_NAME,
        probeNamespace: plain,
        waitUntilActive: false,
      });
      // The apiserver picks up the replaced configuration through an informer: wait until the
      // auditor, not the enforcing process, answers.
      const deadline = Date.now() + 30_000;
      while (!auditor.logs().includes('"msg":"admission"')) {
        if (Date.now() > deadline) throw new Error('the audit-mode webhook was never called');
        await core.createNamespacedPod({ namespace: plain, dryRun: 'All', body: pod() });
        await sleep(100);
      }
    });

    afterAll(async () => {
      await auditor?.stop();
    });

    it('stores a tenant pod unpatched and tells the user what enforcement would do', async () => {
      const result = await kubectlCreate(tenant, pod({}, 'audited'));
      expect(result.code).toBe(0);
      expect(result.stderr).toContain('Warning: audit: runtimeClassName "gvisor" set by rule "tenants"');
      const stored = await core.readNamespacedPod({ namespace: tenant, name: 'audited' });
      expect(stored.spec?.runtimeClassName).toBeUndefined();
    });

    it('admits a pod that enforcement would deny, with a warning', async () => {
      const result = await kubectlCreate(tenant, pod({ containers: [{ name: 'x', image: 'evil.example.com/miner:1' }] }, 'audited-miner'));
      expect(result.code).toBe(0);
      expect(result.stderr).toContain('Warning: audit: image "evil.example.com/miner:1" (containers[0]): denied by rule "blocked-registry"');
    });
  });

  describe('failurePolicy Fail with the webhook stopped', () => {
    beforeAll(async () => {
      await webhook.stop();
      registration = await registerWebhook(kc, {
        url: `${webhook.url}/mutate`,
        caBundle: webhook.caBundle,
        configurationName: 'sandbox-webhook-e2e-core',
        webhookName: WEBHOOK_NAME,
        failurePolicy: 'Fail',
        probeNamespace: plain,
      });
    });

    it('rejects tenant pods: none runs unsandboxed because the webhook is down', async () => {
      const status = await expectRejected(core.createNamespacedPod({ namespace: tenant, body: pod({}, 'while-down') }));
      expect(status.code).toBe(500);
      expect(status.message).toContain(`failed calling webhook "${WEBHOOK_NAME}"`);
    });

    it('still admits pods in the excluded kube-system namespace', async () => {
      const created = await core.createNamespacedPod({ namespace: 'kube-system', body: pod({}, `while-down-${Date.now()}`) });
      expect(created.metadata?.uid).toBeTruthy();
      await core.deleteNamespacedPod({ namespace: 'kube-system', name: created.metadata?.name as string });
    });
  });
});
