// Workloads judged by their pod template on a real kube-apiserver: a tenant hears at `kubectl apply`
// that its Deployment's pods would be denied (spec.workloads: warn), or the Deployment is rejected
// (spec.workloads: deny). The webhook is registered for the workload resources here, as the chart does.
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AdmissionregistrationV1Api, AppsV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createGvisorRuntimeClass, createNamespace, isApiError, loadKubeConfig, startWebhook, waitForWebhook, webhookConfiguration, type RunningWebhook } from './harness/index.js';
import { setTimeout as sleep } from 'node:timers/promises';

const kc = loadKubeConfig(inject('kubeconfig'));
const admission = kc.makeApiClient(AdmissionregistrationV1Api);
const CONFIGURATION = 'sandbox-webhook-workloads-e2e';
const WEBHOOK_NAME = 'pods.sandbox-webhook.io';

function policy(workloads: 'warn' | 'deny'): string {
  return `apiVersion: sandbox-webhook.io/v1alpha1
kind: SandboxPolicy
spec:
  defaultAction: allow
  workloads: ${workloads}
  rules:
    - name: tenants
      match: { namespaceSelector: { matchLabels: { sandbox-webhook.io/tenant: "true" } } }
      action: sandbox
`;
}

function deployment(name: string, hostNetwork: boolean): string {
  return JSON.stringify({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name },
    spec: {
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: { hostNetwork, containers: [{ name: 'app', image: 'registry.k8s.io/pause:3.10' }] },
      },
    },
  });
}

function kubectlApply(namespace: string, manifest: string, extra: string[] = []): Promise<{ code: number; stdout: string; stderr: string }> {
  const kubectl = join(inject('binDir'), 'kubectl');
  return new Promise((resolve) => {
    const child = execFile(kubectl, ['apply', '-n', namespace, '-f', '-', ...extra], { env: process.env }, (error, stdout, stderr) =>
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
    child.stdin?.end(manifest);
  });
}

describe('workloads in a real cluster', () => {
  let webhook: RunningWebhook;
  let tenant: string;

  beforeAll(async () => {
    await createGvisorRuntimeClass(kc);
    tenant = await createNamespace(kc, 'tenant', { 'sandbox-webhook.io/tenant': 'true' });
    webhook = await startWebhook({ policyYaml: policy('warn'), args: ['--reload-interval-ms', '200'] });
    const body = webhookConfiguration({ url: `${webhook.url}/mutate`, caBundle: webhook.caBundle, configurationName: CONFIGURATION, operations: ['CREATE', 'UPDATE'] });
    // The pods rule of the harness, and the workload resources beside it (what the chart registers).
    body.webhooks?.[0]?.rules?.push(
      { apiGroups: ['apps'], apiVersions: ['v1'], resources: ['deployments', 'statefulsets', 'daemonsets', 'replicasets'], operations: ['CREATE', 'UPDATE'], scope: 'Namespaced' },
      { apiGroups: ['batch'], apiVersions: ['v1'], resources: ['jobs', 'cronjobs'], operations: ['CREATE', 'UPDATE'], scope: 'Namespaced' },
      { apiGroups: [''], apiVersions: ['v1'], resources: ['replicationcontrollers', 'podtemplates'], operations: ['CREATE', 'UPDATE'], scope: 'Namespaced' },
    );
    await admission.createMutatingWebhookConfiguration({ body });
    await waitForWebhook(kc, WEBHOOK_NAME, 'active');
  });

  afterAll(async () => {
    try {
      await admission.deleteMutatingWebhookConfiguration({ name: CONFIGURATION });
    } catch (error) {
      if (!isApiError(error, 404)) throw error;
    }
    await waitForWebhook(kc, WEBHOOK_NAME, 'inactive');
    await webhook?.stop();
  });

  it('a Deployment with hostNetwork in a tenant namespace is created, and kubectl shows the warning', async () => {
    const result = await kubectlApply(tenant, deployment('web', true));
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('deployment.apps/web created');
    expect(result.stderr).toContain('Warning: sandbox-webhook: spec.template.spec.hostNetwork: its pods would be denied by rule "tenants"');
    // Never patched: the stored template is the one applied.
    const stored = await kc.makeApiClient(AppsV1Api).readNamespacedDeployment({ name: 'web', namespace: tenant });
    expect(stored.spec?.template.spec?.runtimeClassName).toBeUndefined();
    expect(stored.spec?.template.spec?.hostNetwork).toBe(true);
  });

  it('a Deployment whose pods would be sandboxed is created without a word', async () => {
    const result = await kubectlApply(tenant, deployment('quiet', false));
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toBe('');
  });

  it('with workloads: deny, the Deployment with hostNetwork is rejected, naming why', async () => {
    writeFileSync(webhook.policyFile, policy('deny'));
    // The reload is polled every 200 ms: wait until a dry run is refused.
    const deadline = Date.now() + 20_000;
    let result = await kubectlApply(tenant, deployment('strict', true), ['--dry-run=server']);
    while (result.code === 0 && Date.now() < deadline) {
      await sleep(200);
      result = await kubectlApply(tenant, deployment('strict', true), ['--dry-run=server']);
    }
    result = await kubectlApply(tenant, deployment('strict', true));
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(
      `admission webhook "${WEBHOOK_NAME}" denied the request: sandbox-webhook: Deployment strict denied (spec.workloads: deny): its pods would be denied: pod strict-* denied by rule "tenants"`,
    );
    expect(result.stderr).toContain('spec.hostNetwork');
    await expect(kc.makeApiClient(AppsV1Api).readNamespacedDeployment({ name: 'strict', namespace: tenant })).rejects.toThrow();
  });
});
