// Cluster awareness against a real kube-apiserver: the webhook (dist/main.js, a real process) reads
// namespace labels and RuntimeClasses with list+watch informers, under RBAC that grants exactly
// get/list/watch on namespaces and runtimeclasses (as charts/sandbox-webhook/templates/rbac.yaml).
//
// Shown here: tenant-labelled namespaces get sandboxed pods and others do not; relabelling takes
// effect within a second, served by the watch (no direct lookups); a namespace created just before its
// pod is decided correctly (and the direct lookup behind it works with the webhook's credentials); the missing-RuntimeClass and nodeSelector-conflict denials reach
// client-node and kubectl verbatim; restarting the apiserver (SIGKILL and SIGTERM) heals the informers.
// Measured and printed: time to first sync, relabel-to-effect, heal time after a restart.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { ApiException, CoreV1Api, RbacAuthorizationV1Api, type V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { InformerFacts } from '../../src/cluster/cluster-facts.js';
import { DEFAULT_LOOKUP_TIMEOUT_MS } from '../../src/cluster/index.js';
import { HttpKubeApi } from '../../src/cluster/kube-api.js';
import { Metrics } from '../../src/telemetry/metrics.js';
import {
  createGvisorRuntimeClass,
  createNamespace,
  deleteNamespace,
  getUrl,
  GVISOR_NODE_LABEL,
  isApiError,
  loadKubeConfig,
  registerWebhook,
  restartApiserver,
  startWebhook,
  type RunningWebhook,
  type WebhookRegistration,
} from './harness/index.js';
import { setTimeout as sleep } from 'node:timers/promises';

const execFileAsync = promisify(execFile);

const TENANT = 'sandbox-webhook.io/tenant';
const TIER = 'sandbox-webhook.io/tier';
const MISSING_CLASS = 'kata-e2e-missing';
const NAME = 'sandbox-webhook-cluster-e2e';

const POLICY = `apiVersion: sandbox-webhook.io/v1alpha1
kind: SandboxPolicy
spec:
  runtimeClassName: gvisor
  defaultAction: allow
  rules:
    - name: tenants
      match: { namespaceSelector: { matchLabels: { ${TENANT}: "true" } } }
      action: sandbox
    - name: kata-tier
      match: { namespaceSelector: { matchLabels: { ${TIER}: kata } } }
      action: sandbox
      runtimeClassName: ${MISSING_CLASS}
`;

const admin = loadKubeConfig(inject('kubeconfig'));
const core = admin.makeApiClient(CoreV1Api);

/** What the tests measured, printed at the end (and read into the report). */
const figures: Record<string, number | string> = {};

function pod(name: string, spec: Partial<NonNullable<V1Pod['spec']>> = {}): V1Pod {
  return { metadata: { name }, spec: { containers: [{ name: 'app', image: 'registry.k8s.io/pause:3.10' }], ...spec } };
}

let podCounter = 0;
/** Dry-run creates a pod through the whole admission chain and returns the pod as it would be stored. */
async function dryRunPod(namespace: string, spec: Partial<NonNullable<V1Pod['spec']>> = {}): Promise<V1Pod> {
  return core.createNamespacedPod({ namespace, body: pod(`probe-${++podCounter}`, spec), dryRun: 'All' });
}

async function setLabels(name: string, change: (labels: Record<string, string>) => void): Promise<void> {
  for (;;) {
    const ns = await core.readNamespace({ name });
    const labels = { ...(ns.metadata?.labels ?? {}) };
    change(labels);
    ns.metadata = { ...ns.metadata, labels };
    try {
      await core.replaceNamespace({ name, body: ns });
      return;
    } catch (error) {
      if (!isApiError(error, 409)) throw error;
    }
  }
}

/** Polls dry-run pods until `predicate` holds; resolves with the milliseconds it took. Errors (apiserver not back yet) are retried. */
async function until(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<number> {
  const started = Date.now();
  let lastError = '';
  while (Date.now() - started < timeoutMs) {
    try {
      if (await check()) return Date.now() - started;
    } catch (error) {
      lastError = String(error);
    }
    await sleep(10);
  }
  throw new Error(`${what}: not within ${timeoutMs} ms (${lastError})`);
}

/** The ApiException of a rejected create: HTTP code and the Status message the client got. */
async function rejection(create: Promise<unknown>): Promise<{ code: number; message: string }> {
  try {
    await create;
  } catch (error) {
    if (!(error instanceof ApiException)) throw error;
    const status = (typeof error.body === 'string' ? JSON.parse(error.body) : error.body) as { message: string };
    return { code: error.code, message: status.message };
  }
  throw new Error('the create was not rejected');
}

describe('cluster awareness against a real apiserver', () => {
  let webhook: RunningWebhook;
  let registration: WebhookRegistration;
  const namespaces: string[] = [];
  let workDir: string;
  let serviceAccountNamespace: string;
  /** the webhook's own least-privilege kubeconfig (ServiceAccount token) */
  let kubeconfigPath: string;

  async function metrics(): Promise<string> {
    const { status, body } = await getUrl(webhook.metricsUrl, {}, 2_000);
    if (status !== 200) throw new Error(`GET /metrics: ${status}`);
    return body;
  }

  async function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
    const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
    let total = 0;
    for (const line of (await metrics()).split('\n')) {
      if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
      if (wanted.every((pair) => line.includes(pair))) total += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
    return total;
  }

  const lookups = (): Promise<number> => metric('sandbox_webhook_namespace_lookups_total');

  /**
   * The webhook's own log line for a decision on pod `name` in `namespace`. The server writes its log
   * asynchronously, so the line may reach the pipe a moment after the answer: waited for, up to 5 s.
   */
  async function admissionLog(namespace: string, name: string): Promise<{ reason: string; outcome: string } | undefined> {
    for (let i = 0; i < 50; i++) {
      const found = findAdmissionLog(namespace, name);
      if (found) return found;
      await sleep(100);
    }
    return undefined;
  }

  function findAdmissionLog(namespace: string, name: string): { reason: string; outcome: string } | undefined {
    for (const line of webhook.logs().split('\n')) {
      if (!line.startsWith('{')) continue;
      const entry = JSON.parse(line) as { msg?: string; namespace?: string; pod?: string; reason: string; outcome: string };
      if (entry.msg === 'admission' && entry.namespace === namespace && entry.pod === `${namespace}/${name}`) return entry;
      if (entry.msg === 'admission' && entry.namespace === namespace && entry.pod === name) return entry;
    }
    return undefined;
  }

  async function newNamespace(prefix: string, labels: Record<string, string> = {}): Promise<string> {
    const name = await createNamespace(admin, prefix, labels);
    namespaces.push(name);
    return name;
  }

  beforeAll(async () => {
    await createGvisorRuntimeClass(admin);
    workDir = mkdtempSync(join(tmpdir(), 'cluster-e2e-'));

    // The webhook's identity: a ServiceAccount bound to exactly the chart's ClusterRole rules.
    serviceAccountNamespace = await newNamespace('webhook-identity');
    const rbac = admin.makeApiClient(RbacAuthorizationV1Api);
    await core.createNamespacedServiceAccount({ namespace: serviceAccountNamespace, body: { metadata: { name: 'sandbox-webhook' } } });
    await rbac.deleteClusterRole({ name: NAME }).catch(() => undefined);
    await rbac.deleteClusterRoleBinding({ name: NAME }).catch(() => undefined);
    await rbac.createClusterRole({
      body: {
        metadata: { name: NAME },
        rules: [
          { apiGroups: [''], resources: ['namespaces'], verbs: ['get', 'list', 'watch'] },
          { apiGroups: ['node.k8s.io'], resources: ['runtimeclasses'], verbs: ['get', 'list', 'watch'] },
        ],
      },
    });
    await rbac.createClusterRoleBinding({
      body: {
        metadata: { name: NAME },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: NAME },
        subjects: [{ kind: 'ServiceAccount', name: 'sandbox-webhook', namespace: serviceAccountNamespace }],
      },
    });
    const token = await core.createNamespacedServiceAccountToken({
      name: 'sandbox-webhook',
      namespace: serviceAccountNamespace,
      body: { spec: { expirationSeconds: 3600, audiences: [] } },
    });
    const cluster = admin.getCurrentCluster();
    if (!cluster?.caData) throw new Error('the e2e kubeconfig has no embedded CA');
    kubeconfigPath = join(workDir, 'webhook.kubeconfig');
    writeFileSync(
      kubeconfigPath,
      `apiVersion: v1
kind: Config
clusters: [{ name: e2e, cluster: { server: "${cluster.server}", certificate-authority-data: ${cluster.caData} } }]
users: [{ name: sandbox-webhook, user: { token: "${token.status?.token ?? ''}" } }]
contexts: [{ name: webhook, context: { cluster: e2e, user: sandbox-webhook } }]
current-context: webhook
`,
    );

    const started = Date.now();
    webhook = await startWebhook({ policyYaml: POLICY, kubeconfig: kubeconfigPath });
    figures['webhook process start to /readyz 200 (ms)'] = Date.now() - started;
    // The server writes its log lines in batches, flushed at least every 250 ms.
    for (let i = 0; i < 30 && webhook.logs().split('"informer: synced"').length < 3; i++) await sleep(100);
    for (const line of webhook.logs().split('\n')) {
      if (!line.includes('"informer: synced"')) continue;
      const entry = JSON.parse(line) as { resource: string; durationMs: number; sinceStartMs: number };
      figures[`first sync of ${entry.resource}: list duration (ms)`] = entry.durationMs;
      figures[`first sync of ${entry.resource}: since informer start (ms)`] = entry.sinceStartMs;
    }
    registration = await registerWebhook(admin, {
      url: `${webhook.url}/mutate`,
      caBundle: webhook.caBundle,
      configurationName: NAME,
      excludedNamespaces: ['kube-system', serviceAccountNamespace],
    });
  });

  afterAll(async () => {
    process.stderr.write(`[e2e] cluster awareness figures:\n${Object.entries(figures).map(([k, v]) => `  ${k}: ${v}`).join('\n')}\n`);
    if (process.env.CLUSTER_E2E_LOG) writeFileSync(process.env.CLUSTER_E2E_LOG, webhook?.logs() ?? '');
    await registration?.delete({ waitUntilInactive: false });
    await webhook?.stop();
    const rbac = admin.makeApiClient(RbacAuthorizationV1Api);
    await rbac.deleteClusterRoleBinding({ name: NAME }).catch(() => undefined);
    await rbac.deleteClusterRole({ name: NAME }).catch(() => undefined);
    for (const name of namespaces) await deleteNamespace(admin, name);
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it('syncs both informers with nothing but get/list/watch on namespaces and runtimeclasses', async () => {
    expect(await metric('sandbox_webhook_informer_synced', { resource: 'namespaces' })).toBe(1);
    expect(await metric('sandbox_webhook_informer_synced', { resource: 'runtimeclasses' })).toBe(1);
    expect(await metric('sandbox_webhook_informer_restarts_total')).toBe(0);
    expect(webhook.logs()).not.toMatch(/forbidden/i);
    const ready = await getUrl(`${webhook.url}/readyz`, { ca: Buffer.from(webhook.caPem) });
    expect(ready.status).toBe(200);
  });

  it('sandboxes pods in a tenant-labelled namespace and leaves pods in an unlabelled one alone', async () => {
    const tenant = await newNamespace('tenant', { [TENANT]: 'true' });
    const plain = await newNamespace('plain');

    const sandboxed = await core.createNamespacedPod({ namespace: tenant, body: pod('app') });
    expect(sandboxed.spec?.runtimeClassName).toBe('gvisor');
    expect(sandboxed.metadata?.annotations?.['sandbox-webhook.io/rule']).toBe('tenants');
    // Applied by the apiserver's RuntimeClass plugin on the reinvocation pass (docs/kubernetes.md §2).
    expect(sandboxed.spec?.overhead).toEqual({ cpu: '100m', memory: '64Mi' });
    expect(sandboxed.spec?.nodeSelector).toEqual({ [GVISOR_NODE_LABEL.key]: GVISOR_NODE_LABEL.value });

    const untouched = await core.createNamespacedPod({ namespace: plain, body: pod('app') });
    expect(untouched.spec?.runtimeClassName).toBeUndefined();
    expect(untouched.metadata?.annotations?.['sandbox-webhook.io/rule']).toBeUndefined();
  });

  it('applies a relabel within a second, from the watch, in both directions', async () => {
    const name = await newNamespace('relabel');
    // Wait until the namespace is served from the cache: a decision that needs no direct lookup.
    await until('namespace in the cache', async () => {
      const before = await lookups();
      await dryRunPod(name);
      return (await lookups()) === before;
    });
    const lookupsBefore = await lookups();

    const timings: number[] = [];
    for (const [label, expected] of [
      [true, 'gvisor'],
      [false, undefined],
      [true, 'gvisor'],
    ] as const) {
      await setLabels(name, (labels) => {
        if (label) labels[TENANT] = 'true';
        else delete labels[TENANT];
      });
      timings.push(await until(`relabel ${label ? 'to' : 'away from'} tenant`, async () => (await dryRunPod(name)).spec?.runtimeClassName === expected, 5_000));
    }
    figures['relabel to effect, each of 3 changes (ms)'] = timings.join(', ');
    for (const ms of timings) expect(ms).toBeLessThan(1_000);
    // Every decision above came from the informer cache, none from a direct lookup.
    expect(await lookups()).toBe(lookupsBefore);
  });

  it('decides correctly for a namespace created immediately before its pod', async () => {
    const foundBefore = await metric('sandbox_webhook_namespace_lookups_total', { result: 'found' });
    const rounds = 10;
    for (let i = 0; i < rounds; i++) {
      const tenant = await newNamespace('fresh-tenant', { [TENANT]: 'true' });
      const created = await core.createNamespacedPod({ namespace: tenant, body: pod('first') });
      expect(created.spec?.runtimeClassName).toBe('gvisor');

      const plain = await newNamespace('fresh-plain');
      const allowed = await core.createNamespacedPod({ namespace: plain, body: pod('first') });
      expect(allowed.spec?.runtimeClassName).toBeUndefined();
    }
    const direct = (await metric('sandbox_webhook_namespace_lookups_total', { result: 'found' })) - foundBefore;
    figures[`fresh namespaces decided by a direct lookup (of ${2 * rounds})`] = direct;
    expect(await metric('sandbox_webhook_namespace_lookups_total', { result: 'error' })).toBe(0);
  });

  it('reads a namespace missing from the cache directly, with the webhook\'s own credentials, and reports a missing one as unknown', async () => {
    // The e2e cluster delivers watch events faster than a client can follow a namespace with a pod
    // (see the test above), so the fallback is driven here on its own: an empty cache, the real API.
    const labelled = await newNamespace('lookup', { [TENANT]: 'true' });
    const empty = { get: () => undefined, status: () => ({ synced: true, live: true, lastError: undefined, entries: 0 }) };
    const facts = new InformerFacts({
      namespaces: empty,
      runtimeClasses: empty,
      api: new HttpKubeApi(loadKubeConfig(kubeconfigPath)),
      metrics: new Metrics(),
      logger: pino({ level: 'silent' }),
      lookupTimeoutMs: DEFAULT_LOOKUP_TIMEOUT_MS,
    });
    const started = Date.now();
    const found = await facts.namespace(labelled);
    figures['direct namespace lookup (ms)'] = Date.now() - started;
    expect(found).toEqual({ name: labelled, labels: { 'kubernetes.io/metadata.name': labelled, [TENANT]: 'true' } });
    expect(await facts.namespace('no-such-namespace')).toEqual({
      name: 'no-such-namespace',
      labels: undefined,
      unknownReason: 'the namespace was not found in the cluster',
    });
  });

  it('denies with a how-to-fix message, verbatim at client-node and kubectl, when the RuntimeClass to inject does not exist', async () => {
    const namespace = await newNamespace('kata', { [TIER]: 'kata' });
    const { code, message } = await rejection(core.createNamespacedPod({ namespace, body: pod('needs-kata') }));
    const decided = await admissionLog(namespace, 'needs-kata');
    expect(decided?.outcome).toBe('denied');
    expect(code).toBe(403);
    expect(message).toBe(`admission webhook "${registration.webhookName}" denied the request: sandbox-webhook: ${decided?.reason}`);
    expect(message).toContain(`RuntimeClass "${MISSING_CLASS}" does not exist in the cluster`);
    figures['missing RuntimeClass, message at the client'] = message;

    const manifest = JSON.stringify({ apiVersion: 'v1', kind: 'Pod', ...pod('needs-kata-kubectl'), metadata: { name: 'needs-kata-kubectl', namespace } });
    const kubectl = execFileAsync('kubectl', ['create', '-f', '-'], { env: process.env });
    kubectl.child.stdin?.end(manifest);
    const failure = await kubectl.then(
      () => undefined,
      (error: { stderr: string }) => error.stderr,
    );
    const kubectlReason = (await admissionLog(namespace, 'needs-kata-kubectl'))?.reason;
    // kubectl prints the webhook's warnings even for a denied request, then the Status message.
    expect(failure?.trim().split('\n')).toEqual([
      `Warning: RuntimeClass "${MISSING_CLASS}" missing: denied by rule "kata-tier"`,
      `Error from server (Forbidden): error when creating "STDIN": admission webhook "${registration.webhookName}" denied the request: sandbox-webhook: ${kubectlReason}`,
    ]);
  });

  it("denies naming both values when the pod's nodeSelector conflicts with the RuntimeClass's", async () => {
    const namespace = await newNamespace('conflict', { [TENANT]: 'true' });
    const { code, message } = await rejection(
      core.createNamespacedPod({ namespace, body: pod('pinned', { nodeSelector: { [GVISOR_NODE_LABEL.key]: 'runc' } }) }),
    );
    const decided = await admissionLog(namespace, 'pinned');
    expect(code).toBe(403);
    expect(message).toBe(`admission webhook "${registration.webhookName}" denied the request: sandbox-webhook: ${decided?.reason}`);
    expect(message).toContain(`${GVISOR_NODE_LABEL.key}=runc`);
    expect(message).toContain(`${GVISOR_NODE_LABEL.key}=${GVISOR_NODE_LABEL.value}`);
    figures['nodeSelector conflict, message at the client'] = message;
  });

  for (const signal of ['SIGKILL', 'SIGTERM'] as const) {
    it(`heals after an apiserver restart (${signal}): synced again, and a relabel made afterwards takes effect`, async () => {
      const name = await newNamespace(`restart-${signal.toLowerCase()}`);
      await until('namespace in the cache', async () => {
        const before = await lookups();
        const decided = await dryRunPod(name);
        return decided.spec?.runtimeClassName === undefined && (await lookups()) === before;
      });
      const restartsBefore = await metric('sandbox_webhook_informer_restarts_total');

      const { stopMs, startMs } = await restartApiserver(signal);
      const syncedMs = await until('both informers synced again', async () => {
        return (
          (await metric('sandbox_webhook_informer_synced', { resource: 'namespaces' })) === 1 &&
          (await metric('sandbox_webhook_informer_synced', { resource: 'runtimeclasses' })) === 1 &&
          (await metric('sandbox_webhook_informer_restarts_total')) > restartsBefore
        );
      });
      // The webhook stayed ready throughout: its last cache kept serving.
      expect((await getUrl(`${webhook.url}/readyz`, { ca: Buffer.from(webhook.caPem) })).status).toBe(200);

      await until('apiserver accepts pods again', async () => (await dryRunPod(name)) !== undefined);
      await setLabels(name, (labels) => (labels[TENANT] = 'true'));
      const effectMs = await until('relabel after the restart', async () => (await dryRunPod(name)).spec?.runtimeClassName === 'gvisor', 30_000);
      const restarts = (await metric('sandbox_webhook_informer_restarts_total')) - restartsBefore;

      figures[`apiserver restart (${signal}): stop, start (ms)`] = `${stopMs}, ${startMs}`;
      figures[`apiserver restart (${signal}): apiserver ready to both informers watching again (ms)`] = syncedMs;
      figures[`apiserver restart (${signal}): relabel to effect afterwards (ms)`] = effectMs;
      figures[`apiserver restart (${signal}): informer restarts counted`] = restarts;
      expect(effectMs).toBeLessThan(1_000);
    });
  }
});
