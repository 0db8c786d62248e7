// The Helm chart installed into the real kube-apiserver of the e2e control plane, end to end:
//   1. `helm install` with the RuntimeClass, the NetworkPolicy and the ValidatingAdmissionPolicy on:
//      every rendered object is accepted and stored, RBAC is exactly what the server needs;
//   2. the generated CA: the webhook's caBundle is the Secret's ca.crt, and `helm upgrade` keeps both;
//   3. the ValidatingAdmissionPolicy rejects an unsandboxed tenant pod while the webhook cannot be
//      reached (failurePolicy Ignore: the chart's Service has no endpoints, as no kubelet runs here);
//   4. the real webhook (dist/main.js) run locally, with the chart's rendered policy and the chart's
//      ServiceAccount identity, the chart upgraded to call it through webhook.url with failurePolicy
//      Fail: tenant pods are stored sandboxed, kube-system and the release namespace never reach it,
//      a hostNetwork tenant pod is denied with its message;
//   5. the process stopped: Fail rejects, and once switched to Ignore the policy alone still rejects;
//   6. `helm uninstall` removes everything but the RuntimeClass (resource-policy keep).
//
// The control plane is shared with the other e2e files: the install is failurePolicy Ignore until the
// local process serves it, names are unique per run (release, namespaces, RuntimeClass), and afterAll
// removes every cluster-scoped object the chart made, whatever failed before.
import { execFile } from 'node:child_process';
import { randomBytes, X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  AdmissionregistrationV1Api,
  ApiException,
  AuthorizationV1Api,
  CoreV1Api,
  KubernetesObjectApi,
  NodeV1Api,
  RbacAuthorizationV1Api,
  type KubernetesObject,
  type V1Pod,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import {
  createNamespace,
  deleteNamespace,
  GVISOR_NODE_LABEL,
  GVISOR_NODE_TAINT,
  isApiError,
  kubeRequest,
  loadKubeConfig,
  makeTempDir,
  REPO_ROOT,
  removeTempDir,
  startWebhook,
  type RunningWebhook,
} from './harness/index.js';
import { setTimeout as sleep } from 'node:timers/promises';

const execFileAsync = promisify(execFile);

const CHART = join(REPO_ROOT, 'charts/sandbox-webhook');
const SUFFIX = randomBytes(3).toString('hex');
const RELEASE = `swi-${SUFFIX}`;
const FULLNAME = `${RELEASE}-sandbox-webhook`;
const VAP_NAME = `${FULLNAME}-require-sandbox`;
const WEBHOOK_NAME = 'sandbox.sandbox-webhook.io';
const TENANT_LABEL = 'sandbox-webhook.io/tenant';
// Not `gvisor`: the other e2e files create a `gvisor` RuntimeClass of their own and leave it, and
// helm refuses to adopt an object it did not make. A per-run name also proves the chart carries
// runtimeClass.name through to the policy and the ValidatingAdmissionPolicy.
const RUNTIME_CLASS = `gvisor-e2e-${SUFFIX}`;
const OVERHEAD = { cpu: '100m', memory: '64Mi' };
const TOLERATION = { key: GVISOR_NODE_TAINT.key, operator: 'Equal', value: GVISOR_NODE_TAINT.value, effect: 'NoSchedule' };

const INSTALL_VALUES = {
  // Ignore until the local process serves the webhook: the chart's Service never has endpoints here.
  // How the apiserver's dial to its ClusterIP fails depends on the host's network (refused, answered by
  // something else, or silent until the timeout); 2 s bounds each failed-open call.
  // Registration by Helm: this file covers that mode; chart-lifecycle.e2e.test.ts covers the default,
  // registration by the replicas, and the hooks (no hook Job runs here without a kubelet).
  webhook: { failurePolicy: 'Ignore', timeoutSeconds: 2, registration: 'helm' },
  hooks: { webhooksCleanup: { enabled: false } },
  policy: { runtimeClassName: RUNTIME_CLASS, acceptedRuntimeClasses: [RUNTIME_CLASS] },
  runtimeClass: {
    create: true,
    name: RUNTIME_CLASS,
    overhead: { podFixed: OVERHEAD },
    scheduling: { nodeSelector: { [GVISOR_NODE_LABEL.key]: GVISOR_NODE_LABEL.value }, tolerations: [TOLERATION] },
  },
  networkPolicy: { enabled: true },
  validatingAdmissionPolicy: { enabled: true },
};

const EXPECTED_KINDS = [
  'ClusterRole',
  'ClusterRoleBinding',
  'ConfigMap',
  'Deployment',
  'MutatingWebhookConfiguration',
  'NetworkPolicy',
  'PodDisruptionBudget',
  'ResourceQuota',
  'RuntimeClass',
  'Secret',
  'Service',
  'Service',
  'ServiceAccount',
  'ValidatingAdmissionPolicy',
  'ValidatingAdmissionPolicyBinding',
];
const CLUSTER_SCOPED = new Set([
  'ClusterRole',
  'ClusterRoleBinding',
  'MutatingWebhookConfiguration',
  'RuntimeClass',
  'ValidatingAdmissionPolicy',
  'ValidatingAdmissionPolicyBinding',
]);

const kc = loadKubeConfig(inject('kubeconfig'));
const core = kc.makeApiClient(CoreV1Api);
const admissionApi = kc.makeApiClient(AdmissionregistrationV1Api);
const rbacApi = kc.makeApiClient(RbacAuthorizationV1Api);
const nodeApi = kc.makeApiClient(NodeV1Api);
const objects = KubernetesObjectApi.makeApiClient(kc);

/** What the tests measured, printed at the end. */
const figures: Record<string, number | string> = {};

/** The release namespace, a tenant-labelled one and an unlabelled one (created in beforeAll). */
let namespace = '';
let tenant = '';
let plain = '';
const extraNamespaces: string[] = [];
let installed = false;

// ---------------------------------------------------------------------------------------------
// helm

let helmHome = '';
let valuesFileCount = 0;

interface HelmResult {
  code: number;
  stdout: string;
  stderr: string;
}

function valuesFile(values: unknown): string {
  valuesFileCount += 1;
  const path = join(helmHome, `values-${valuesFileCount}.json`);
  writeFileSync(path, JSON.stringify(values));
  return path;
}

async function helm(args: readonly string[]): Promise<HelmResult> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    KUBECONFIG: inject('kubeconfig'),
    // Keep helm's own state (repositories, cache, plugins) out of the user's home.
    HELM_CACHE_HOME: join(helmHome, 'cache'),
    HELM_CONFIG_HOME: join(helmHome, 'config'),
    HELM_DATA_HOME: join(helmHome, 'data'),
  };
  try {
    const { stdout, stderr } = await execFileAsync(join(inject('binDir'), 'helm'), args, { env, maxBuffer: 64 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failure = error as { code?: number; stdout?: string; stderr?: string };
    if (typeof failure.code !== 'number') throw error;
    return { code: failure.code, stdout: failure.stdout ?? '', stderr: failure.stderr ?? '' };
  }
}

/** Runs helm, failing the test with helm's stderr when it exits non-zero; returns stdout. */
async function helmOk(args: readonly string[], timed?: string): Promise<string> {
  const started = Date.now();
  const result = await helm(args);
  if (result.code !== 0) throw new Error(`helm ${args.slice(0, 2).join(' ')} failed (exit ${result.code}):\n${result.stderr}`);
  if (timed) figures[`${timed} (ms)`] = Date.now() - started;
  return result.stdout;
}

async function upgrade(values: unknown, timed: string): Promise<string> {
  return helmOk(['upgrade', RELEASE, CHART, '--namespace', namespace, '--reuse-values', '-f', valuesFile(values)], timed);
}

interface Manifest extends KubernetesObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
}

async function releaseManifest(): Promise<Manifest[]> {
  const text = await helmOk(['get', 'manifest', RELEASE, '--namespace', namespace]);
  return parseAllDocuments(text)
    .map((doc) => doc.toJS() as Manifest | null)
    .filter((doc): doc is Manifest => doc !== null);
}

/** The header to read a rendered object back from the apiserver (namespaced objects may omit their namespace). */
function header(manifest: Manifest): Manifest {
  const { apiVersion, kind, metadata } = manifest;
  return {
    apiVersion,
    kind,
    metadata: CLUSTER_SCOPED.has(kind) ? { name: metadata.name } : { name: metadata.name, namespace: metadata.namespace ?? namespace },
  };
}

// ---------------------------------------------------------------------------------------------
// pods and admission

let podCounter = 0;
function pod(spec: Partial<NonNullable<V1Pod['spec']>> = {}, name = `p-${++podCounter}`): V1Pod {
  return { metadata: { name }, spec: { containers: [{ name: 'app', image: 'registry.k8s.io/pause:3.10' }], ...spec } };
}

/** Dry-run creates a pod through the whole admission chain; returns the pod as it would be stored. */
function dryRun(ns: string, body: V1Pod = pod()): Promise<V1Pod> {
  return core.createNamespacedPod({ namespace: ns, body, dryRun: 'All' });
}

interface Rejection {
  code: number;
  message: string;
}

/** The HTTP code and Status message of a rejected create; undefined when the create succeeded. */
async function outcome(create: Promise<unknown>): Promise<Rejection | undefined> {
  try {
    await create;
    return undefined;
  } catch (error) {
    if (!(error instanceof ApiException)) throw error;
    const status = (typeof error.body === 'string' ? JSON.parse(error.body) : error.body) as { message: string };
    return { code: error.code, message: status.message };
  }
}

async function rejection(create: Promise<unknown>): Promise<Rejection> {
  const result = await outcome(create);
  if (!result) throw new Error('the create was not rejected');
  return result;
}

/** Polls until `check` holds (errors count as "not yet"); resolves with the milliseconds it took. */
async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<number> {
  const started = Date.now();
  let last = '';
  while (Date.now() - started < timeoutMs) {
    try {
      if (await check()) return Date.now() - started;
      last = 'condition false';
    } catch (error) {
      last = String(error);
    }
    await sleep(50);
  }
  throw new Error(`${what}: not within ${timeoutMs} ms (last: ${last})`);
}

function vapMessage(podName: string, got: string): string {
  return (
    `pods "${podName}" is forbidden: ValidatingAdmissionPolicy '${VAP_NAME}' with binding '${VAP_NAME}' denied request: ` +
    `pods in this namespace must run in a sandbox: spec.runtimeClassName must be one of ${RUNTIME_CLASS} (got ${got})`
  );
}

/** Sum of an apiserver metric's samples whose labels include `labels`. */
async function apiserverMetric(name: string, labels: Record<string, string>): Promise<number> {
  const { status, body } = await kubeRequest(kc, '/metrics');
  if (status !== 200) throw new Error(`GET /metrics: ${status}`);
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  let total = 0;
  for (const line of body.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    if (wanted.every((pair) => line.includes(pair))) total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

// ---------------------------------------------------------------------------------------------
// the local webhook process

let webhook: RunningWebhook | undefined;

interface AdmissionLog {
  msg: string;
  namespace?: string;
  pod?: string;
  decision?: string;
  outcome?: string;
  reason?: string;
}

function admissionLogs(): AdmissionLog[] {
  const entries: AdmissionLog[] = [];
  for (const line of (webhook?.logs() ?? '').split('\n')) {
    if (!line.startsWith('{')) continue;
    const entry = JSON.parse(line) as AdmissionLog;
    if (entry.msg === 'admission') entries.push(entry);
  }
  return entries;
}

/** The webhook's log line for its decision on pod `name` in `ns`. */
function admissionLog(ns: string, name: string): AdmissionLog | undefined {
  return admissionLogs().find((e) => e.namespace === ns && (e.pod === name || e.pod === `${ns}/${name}`));
}

/** A kubeconfig for the chart's ServiceAccount: the local process runs with exactly the chart's RBAC. */
async function serviceAccountKubeconfig(): Promise<string> {
  const token = await core.createNamespacedServiceAccountToken({
    name: FULLNAME,
    namespace,
    body: { spec: { expirationSeconds: 3600, audiences: [] } },
  });
  const cluster = kc.getCurrentCluster();
  if (!cluster?.caData) throw new Error('the e2e kubeconfig has no embedded CA');
  const path = join(helmHome, 'webhook.kubeconfig');
  writeFileSync(
    path,
    `apiVersion: v1
kind: Config
clusters: [{ name: e2e, cluster: { server: "${cluster.server}", certificate-authority-data: ${cluster.caData} } }]
users: [{ name: ${FULLNAME}, user: { token: "${token.status?.token ?? ''}" } }]
contexts: [{ name: webhook, context: { cluster: e2e, user: ${FULLNAME} } }]
current-context: webhook
`,
  );
  return path;
}

// ---------------------------------------------------------------------------------------------

beforeAll(async () => {
  helmHome = makeTempDir('chart-install');
  namespace = await createNamespace(kc, 'chart-install');
  tenant = await createNamespace(kc, 'chart-tenant', { [TENANT_LABEL]: 'true' });
  plain = await createNamespace(kc, 'chart-plain');
});

afterAll(async () => {
  process.stderr.write(`[e2e] chart install figures:\n${Object.entries(figures).map(([k, v]) => `  ${k}: ${v}`).join('\n')}\n`);
  // Leave the shared control plane as we found it: no webhook configuration (above all none with
  // failurePolicy Fail pointing at a stopped process), no policy, no cluster-wide RBAC, no RuntimeClass.
  if (installed) await helm(['uninstall', RELEASE, '--namespace', namespace]);
  const ignore404 = async (call: () => Promise<unknown>): Promise<void> => {
    try {
      await call();
    } catch (error) {
      if (!isApiError(error, 404)) throw error;
    }
  };
  await ignore404(() => admissionApi.deleteMutatingWebhookConfiguration({ name: FULLNAME }));
  await ignore404(() => admissionApi.deleteValidatingAdmissionPolicyBinding({ name: VAP_NAME }));
  await ignore404(() => admissionApi.deleteValidatingAdmissionPolicy({ name: VAP_NAME }));
  await ignore404(() => rbacApi.deleteClusterRoleBinding({ name: FULLNAME }));
  await ignore404(() => rbacApi.deleteClusterRole({ name: FULLNAME }));
  await ignore404(() => nodeApi.deleteRuntimeClass({ name: RUNTIME_CLASS }));
  await webhook?.stop();
  for (const ns of [namespace, tenant, plain, ...extraNamespaces]) if (ns) await deleteNamespace(kc, ns);
  if (helmHome) removeTempDir(helmHome);
});

describe('helm install into the real apiserver', () => {
  let manifest: Manifest[] = [];

  it('installs with the RuntimeClass, NetworkPolicy and ValidatingAdmissionPolicy on, and every rendered object is stored', async () => {
    // Set first: a failed install can leave a release behind, which afterAll then uninstalls.
    installed = true;
    await helmOk(['install', RELEASE, CHART, '--namespace', namespace, '-f', valuesFile(INSTALL_VALUES)], 'helm install');
    manifest = await releaseManifest();
    expect(manifest.map((m) => m.kind).sort()).toEqual(EXPECTED_KINDS);
    for (const rendered of manifest) {
      const stored = await objects.read(header(rendered));
      expect(stored.metadata?.labels?.['app.kubernetes.io/managed-by'], `${rendered.kind}/${rendered.metadata.name}`).toBe('Helm');
      expect(stored.metadata?.annotations?.['meta.helm.sh/release-name'], `${rendered.kind}/${rendered.metadata.name}`).toBe(RELEASE);
    }
  });

  it('the ClusterRole grants exactly get, list and watch on namespaces and runtimeclasses, bound to the chart ServiceAccount', async () => {
    const role = await rbacApi.readClusterRole({ name: FULLNAME });
    expect(role.rules).toEqual([
      { apiGroups: [''], resources: ['namespaces'], verbs: ['get', 'list', 'watch'] },
      { apiGroups: ['node.k8s.io'], resources: ['runtimeclasses'], verbs: ['get', 'list', 'watch'] },
    ]);
    const binding = await rbacApi.readClusterRoleBinding({ name: FULLNAME });
    expect(binding.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: FULLNAME });
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: FULLNAME, namespace }]);
  });

  const access: { verb: string; resource: string; group?: string; inNamespace?: boolean; allowed: boolean }[] = [
    { verb: 'list', resource: 'namespaces', allowed: true },
    { verb: 'watch', resource: 'namespaces', allowed: true },
    { verb: 'get', resource: 'namespaces', allowed: true },
    { verb: 'list', resource: 'runtimeclasses', group: 'node.k8s.io', allowed: true },
    { verb: 'watch', resource: 'runtimeclasses', group: 'node.k8s.io', allowed: true },
    { verb: 'update', resource: 'namespaces', allowed: false },
    { verb: 'create', resource: 'pods', inNamespace: true, allowed: false },
    { verb: 'get', resource: 'secrets', inNamespace: true, allowed: false },
    { verb: 'list', resource: 'configmaps', inNamespace: true, allowed: false },
    { verb: 'update', resource: 'mutatingwebhookconfigurations', group: 'admissionregistration.k8s.io', allowed: false },
  ];
  for (const { verb, resource, group, inNamespace, allowed } of access) {
    it(`the apiserver ${allowed ? 'lets' : 'does not let'} the chart ServiceAccount ${verb} ${resource}`, async () => {
      const review = await kc.makeApiClient(AuthorizationV1Api).createSubjectAccessReview({
        body: {
          spec: {
            user: `system:serviceaccount:${namespace}:${FULLNAME}`,
            groups: ['system:serviceaccounts', `system:serviceaccounts:${namespace}`, 'system:authenticated'],
            resourceAttributes: { verb, resource, group: group ?? '', ...(inNamespace ? { namespace } : {}) },
          },
        },
      });
      expect(review.status?.allowed ?? false).toBe(allowed);
    });
  }

  it('the webhook trusts exactly the generated CA in the Secret, which signed a certificate for the Service', async () => {
    const secret = await core.readNamespacedSecret({ name: `${FULLNAME}-tls`, namespace });
    const configuration = await admissionApi.readMutatingWebhookConfiguration({ name: FULLNAME });
    const hook = configuration.webhooks?.[0];
    expect(hook?.failurePolicy).toBe('Ignore');
    expect(hook?.clientConfig.service).toMatchObject({ name: FULLNAME, namespace, path: '/mutate', port: 443 });
    // client-node hands caBundle over as the base64 text, as stored in the Secret's data.
    expect(hook?.clientConfig.caBundle).toBe(secret.data?.['ca.crt']);
    const ca = new X509Certificate(Buffer.from(secret.data?.['ca.crt'] ?? '', 'base64'));
    const serving = new X509Certificate(Buffer.from(secret.data?.['tls.crt'] ?? '', 'base64'));
    expect(serving.verify(ca.publicKey)).toBe(true);
    expect(serving.checkHost(`${FULLNAME}.${namespace}.svc`)).toBe(`${FULLNAME}.${namespace}.svc`);
  });

  it('helm upgrade --reuse-values keeps the generated CA, certificate, key and caBundle byte for byte', async () => {
    const secretBefore = (await core.readNamespacedSecret({ name: `${FULLNAME}-tls`, namespace })).data;
    const bundleBefore = (await admissionApi.readMutatingWebhookConfiguration({ name: FULLNAME })).webhooks?.[0]?.clientConfig.caBundle;
    await upgrade({ logLevel: 'debug' }, 'helm upgrade, generate mode');
    const secretAfter = (await core.readNamespacedSecret({ name: `${FULLNAME}-tls`, namespace })).data;
    const bundleAfter = (await admissionApi.readMutatingWebhookConfiguration({ name: FULLNAME })).webhooks?.[0]?.clientConfig.caBundle;
    expect(secretAfter).toEqual(secretBefore);
    expect(bundleAfter).toBe(bundleBefore);
    expect(bundleAfter).toBe(secretAfter?.['ca.crt']);
    // The upgrade did apply: the new value reached the Deployment.
    const deployment = await objects.read<KubernetesObject & { spec: { template: { spec: { containers: { env: { name: string; value?: string }[] }[] } } } }>({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: FULLNAME, namespace },
    });
    expect(deployment.spec.template.spec.containers[0]?.env.find((e) => e.name === 'LOG_LEVEL')?.value).toBe('debug');
  });
  it('helm upgrade with a new certificates.extraDNSNames issues a certificate for it, and the caBundle follows', async () => {
    const before = (await core.readNamespacedSecret({ name: `${FULLNAME}-tls`, namespace })).data;
    const extra = `webhook-${SUFFIX}.example.com`;
    await upgrade({ certificates: { extraDNSNames: [extra] } }, 'helm upgrade, new certificate names');
    const secret = await core.readNamespacedSecret({ name: `${FULLNAME}-tls`, namespace });
    const serving = new X509Certificate(Buffer.from(secret.data?.['tls.crt'] ?? '', 'base64'));
    expect(serving.checkHost(extra)).toBe(extra);
    expect(serving.checkHost(`${FULLNAME}.${namespace}.svc`)).toBe(`${FULLNAME}.${namespace}.svc`);
    expect(secret.data?.['ca.crt']).not.toBe(before?.['ca.crt']);
    expect(serving.verify(new X509Certificate(Buffer.from(secret.data?.['ca.crt'] ?? '', 'base64')).publicKey)).toBe(true);
    const bundle = (await admissionApi.readMutatingWebhookConfiguration({ name: FULLNAME })).webhooks?.[0]?.clientConfig.caBundle;
    expect(bundle).toBe(secret.data?.['ca.crt']);
  });
});

describe('the ValidatingAdmissionPolicy, with the webhook unreachable (failurePolicy Ignore)', () => {
  it('rejects an unsandboxed pod in a tenant namespace with its message, though the webhook call failed open', async () => {
    // The apiserver picks the policy and its binding up through informers.
    figures['VAP active after install (ms)'] = await until('the policy denies', async () => (await outcome(dryRun(tenant))) !== undefined);
    const failOpenBefore = await apiserverMetric('apiserver_admission_webhook_fail_open_count', { name: WEBHOOK_NAME });
    const started = Date.now();
    const denied = await rejection(dryRun(tenant, pod({}, 'unsandboxed')));
    figures['tenant pod create, webhook unreachable (ms)'] = Date.now() - started;
    expect(denied).toEqual({ code: 403, message: vapMessage('unsandboxed', 'none') });
    figures['VAP denial, message at the client'] = denied.message;
    // The webhook was called, could not be reached, and was skipped: only the policy stood in the way.
    expect(await apiserverMetric('apiserver_admission_webhook_fail_open_count', { name: WEBHOOK_NAME })).toBeGreaterThan(failOpenBefore);
  });

  it('admits a tenant pod that names the sandbox RuntimeClass, with the overhead and scheduling the apiserver applies', async () => {
    const admitted = await dryRun(tenant, pod({ runtimeClassName: RUNTIME_CLASS }));
    expect(admitted.spec?.runtimeClassName).toBe(RUNTIME_CLASS);
    expect(admitted.spec?.overhead).toEqual(OVERHEAD);
    expect(admitted.spec?.nodeSelector).toEqual({ [GVISOR_NODE_LABEL.key]: GVISOR_NODE_LABEL.value });
    expect(admitted.spec?.tolerations).toContainEqual(TOLERATION);
  });

  it('leaves pods in a namespace without the tenant label alone', async () => {
    const admitted = await dryRun(plain);
    expect(admitted.spec?.runtimeClassName).toBeUndefined();
  });

  it('never applies to the release namespace, even when it carries the tenant label', async () => {
    // Label the release namespace and a fresh one together: once the fresh one is enforced, the
    // apiserver has seen both labels.
    const late = await createNamespace(kc, 'chart-late');
    extraNamespaces.push(late);
    for (const name of [namespace, late]) {
      const ns = await core.readNamespace({ name });
      ns.metadata = { ...ns.metadata, labels: { ...ns.metadata?.labels, [TENANT_LABEL]: 'true' } };
      await core.replaceNamespace({ name, body: ns });
    }
    await until('the relabelled namespace is enforced', async () => (await outcome(dryRun(late))) !== undefined);
    const admitted = await dryRun(namespace);
    expect(admitted.spec?.runtimeClassName).toBeUndefined();
  });
});

describe('the real webhook process, called through webhook.url with failurePolicy Fail', () => {
  beforeAll(async () => {
    // The policy exactly as the chart rendered it into its ConfigMap, and the chart's identity.
    const configMap = await core.readNamespacedConfigMap({ name: `${FULLNAME}-policy`, namespace });
    const policyYaml = configMap.data?.['policy.yaml'];
    if (!policyYaml) throw new Error(`ConfigMap ${FULLNAME}-policy has no policy.yaml`);
    const started = Date.now();
    webhook = await startWebhook({
      policyYaml,
      kubeconfig: await serviceAccountKubeconfig(),
      // No Service endpoints to drain: stop at once when told to.
      env: { SHUTDOWN_DELAY_SECONDS: '0' },
    });
    figures['webhook process start to /readyz (ms)'] = Date.now() - started;
  });

  it('helm upgrade points the configuration at the process, trusting its CA, with failurePolicy Fail', async () => {
    if (!webhook) throw new Error('no webhook process');
    await upgrade({
      webhook: { url: `${webhook.url}/mutate`, failurePolicy: 'Fail' },
      certificates: { mode: 'existingSecret', existingSecret: { name: `${FULLNAME}-local-tls`, caBundle: webhook.caPem } },
    }, 'helm upgrade to webhook.url');
    const hook = (await admissionApi.readMutatingWebhookConfiguration({ name: FULLNAME })).webhooks?.[0];
    expect(hook?.failurePolicy).toBe('Fail');
    expect(hook?.clientConfig.url).toBe(`${webhook.url}/mutate`);
    expect(hook?.clientConfig.service).toBeUndefined();
    expect(hook?.clientConfig.caBundle).toBe(webhook.caBundle);
    figures['webhook serving after the upgrade (ms)'] = await until(
      'the apiserver calls the process',
      async () => (await dryRun(tenant)).spec?.runtimeClassName === RUNTIME_CLASS,
    );
    // The process reads the cluster as the chart's ServiceAccount without a single denial.
    expect(webhook.logs()).not.toMatch(/forbidden/i);
  });

  it('stores a tenant pod sandboxed: runtimeClassName from the webhook, overhead and scheduling from the RuntimeClass', async () => {
    await core.createNamespacedPod({ namespace: tenant, body: pod({}, 'tenant-app') });
    const stored = await core.readNamespacedPod({ namespace: tenant, name: 'tenant-app' });
    expect(stored.spec?.runtimeClassName).toBe(RUNTIME_CLASS);
    // The chart's default policy: no rule of its own matches a tenant pod, defaultAction sandbox decides.
    expect(stored.metadata?.annotations?.['sandbox-webhook.io/rule']).toBe('default');
    // Called twice: it patches, the RuntimeClass plugin then changes the pod on the reinvocation pass,
    // and with reinvocationPolicy IfNeeded the webhook sees its own result again and leaves it.
    const calls = (): AdmissionLog[] => admissionLogs().filter((e) => e.namespace === tenant && (e.pod === 'tenant-app' || e.pod === `${tenant}/tenant-app`));
    // The server writes its log lines in batches, flushed at least every 250 ms: wait for both.
    await until('both calls logged', async () => calls().length >= 2, 5_000).catch(() => undefined);
    expect(calls().map((e) => [e.decision, e.outcome])).toEqual([
      ['sandbox', 'patched'],
      ['sandbox', 'unchanged'],
    ]);
    // Applied by the apiserver's RuntimeClass plugin on the reinvocation pass (docs/kubernetes.md §2).
    expect(stored.spec?.overhead).toEqual(OVERHEAD);
    expect(stored.spec?.nodeSelector).toEqual({ [GVISOR_NODE_LABEL.key]: GVISOR_NODE_LABEL.value });
    expect(stored.spec?.tolerations).toContainEqual(TOLERATION);
  });

  it('never sees a pod in kube-system or in the release namespace', async () => {
    const skipped = [
      { ns: 'kube-system', name: `excluded-${SUFFIX}-system` },
      { ns: namespace, name: `excluded-${SUFFIX}-release` },
    ];
    for (const { ns, name } of skipped) {
      const admitted = await dryRun(ns, pod({}, name));
      expect(admitted.spec?.runtimeClassName, ns).toBeUndefined();
    }
    // A tenant pod after them: once its decision is logged, theirs would have been too.
    await dryRun(tenant, pod({}, `control-${SUFFIX}`));
    await until('the control pod is logged', async () => admissionLog(tenant, `control-${SUFFIX}`) !== undefined, 5_000);
    const seen = admissionLogs().filter((e) => e.namespace === 'kube-system' || e.namespace === namespace);
    expect(seen).toEqual([]);
  });

  it("denies a tenant pod asking for hostNetwork with the webhook's message, verbatim", async () => {
    const denied = await rejection(dryRun(tenant, pod({ hostNetwork: true }, 'host-network')));
    await until('the decision is logged', async () => admissionLog(tenant, 'host-network') !== undefined, 5_000).catch(() => undefined);
    const decided = admissionLog(tenant, 'host-network');
    expect(decided?.outcome).toBe('denied');
    expect(decided?.reason).toContain('hostNetwork');
    expect(denied).toEqual({ code: 403, message: `admission webhook "${WEBHOOK_NAME}" denied the request: sandbox-webhook: ${decided?.reason}` });
  });
});

describe('with the webhook process stopped', () => {
  it('failurePolicy Fail rejects the pods the webhook would have seen, and only those', async () => {
    await webhook?.stop();
    const failed = await rejection(dryRun(plain, pod({}, 'while-stopped')));
    expect(failed.code).toBe(500);
    expect(failed.message).toContain(`failed calling webhook "${WEBHOOK_NAME}"`);
    figures['Fail with the process stopped, message at the client'] = failed.message;
    expect((await dryRun(namespace)).spec?.runtimeClassName).toBeUndefined();
  });

  it('switched to failurePolicy Ignore, the ValidatingAdmissionPolicy alone still rejects an unsandboxed tenant pod', async () => {
    await upgrade({ webhook: { failurePolicy: 'Ignore' } }, 'helm upgrade to Ignore');
    figures['Ignore in effect after the upgrade (ms)'] = await until('plain pods admitted again', async () => (await outcome(dryRun(plain))) === undefined);
    expect(await rejection(dryRun(tenant, pod({}, 'still-unsandboxed')))).toEqual({ code: 403, message: vapMessage('still-unsandboxed', 'none') });
    expect((await dryRun(tenant, pod({ runtimeClassName: RUNTIME_CLASS }))).spec?.runtimeClassName).toBe(RUNTIME_CLASS);
  });
});

describe('helm uninstall', () => {
  it('removes every object but the RuntimeClass, which it keeps, and takes the webhook and the policy out of admission', async () => {
    const manifest = await releaseManifest();
    const output = await helmOk(['uninstall', RELEASE, '--namespace', namespace], 'helm uninstall');
    installed = false;
    expect(output).toContain(`[RuntimeClass] ${RUNTIME_CLASS}`);
    for (const rendered of manifest) {
      const gone = await objects.read(header(rendered)).then(
        () => false,
        (error: unknown) => isApiError(error, 404),
      );
      expect(gone, `${rendered.kind}/${rendered.metadata.name}`).toBe(rendered.kind !== 'RuntimeClass');
    }
    const kept = await nodeApi.readRuntimeClass({ name: RUNTIME_CLASS });
    expect(kept.metadata?.annotations?.['helm.sh/resource-policy']).toBe('keep');
    // Neither the policy nor the webhook is consulted any more: an unsandboxed tenant pod is admitted.
    figures['admission chain clear after uninstall (ms)'] = await until(
      'tenant pods admitted unsandboxed',
      async () => (await outcome(dryRun(tenant))) === undefined,
    );
    await nodeApi.deleteRuntimeClass({ name: RUNTIME_CLASS });
  });
});
