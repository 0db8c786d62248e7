// Cluster fixtures for end-to-end tests: our MutatingWebhookConfiguration, the gvisor RuntimeClass,
// namespaces, and fake Nodes for the scheduler (there is no kubelet: nodes are API objects only).
import { request as httpsRequest, type RequestOptions } from 'node:https';
import {
  AdmissionregistrationV1Api,
  ApiException,
  CoreV1Api,
  KubeConfig,
  NodeV1Api,
  type V1MutatingWebhookConfiguration,
  type V1Node,
  type V1Pod,
  type V1RuntimeClass,
  type V1Taint,
} from '@kubernetes/client-node';
import { expect } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';

export function loadKubeConfig(kubeconfigPath: string | undefined = process.env.KUBECONFIG): KubeConfig {
  if (!kubeconfigPath) throw new Error('no kubeconfig: pass a path or set KUBECONFIG (test/e2e/global-setup.ts sets it)');
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfigPath);
  return kc;
}

export function isApiError(error: unknown, code: number): boolean {
  return error instanceof ApiException && error.code === code;
}

/** The Kubernetes Status inside an ApiException from @kubernetes/client-node. */
export interface ApiStatus {
  code: number;
  reason?: string;
  /** What kubectl would print, e.g. `admission webhook "x" denied the request: ...`. */
  message: string;
  /** The response headers (e.g. `warning`). */
  headers: Record<string, string>;
}

/**
 * Turns a rejected API call into its Status. client-node's ApiException keeps the Status as a JSON
 * string in `body` and a generic text in `message`, so a test asserting on the apiserver's message
 * needs this. Anything that is not an ApiException is rethrown.
 */
export function apiStatus(error: unknown): ApiStatus {
  if (!(error instanceof ApiException)) throw error;
  let status: { message?: string; reason?: string } = {};
  try {
    status = (typeof error.body === 'string' ? JSON.parse(error.body) : error.body) as typeof status;
  } catch {
    status = { message: String(error.body) };
  }
  return {
    code: error.code,
    message: status.message ?? '',
    ...(status.reason === undefined ? {} : { reason: status.reason }),
    headers: error.headers,
  };
}

/** Awaits a call that must fail and returns its Status; fails if the call succeeds. */
export async function expectRejected(call: Promise<unknown>): Promise<ApiStatus> {
  try {
    await call;
  } catch (error) {
    return apiStatus(error);
  }
  throw new Error('expected the API call to be rejected, but it succeeded');
}

/** A raw request to the apiserver with the kubeconfig's credentials (for /metrics, /version, ...). */
export async function kubeRequest(
  kc: KubeConfig,
  path: string,
  options: { method?: string; body?: unknown } = {},
): Promise<{ status: number; body: string }> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('kubeconfig has no current cluster');
  const requestOptions: RequestOptions = {};
  await kc.applyToHTTPSOptions(requestOptions);
  const url = new URL(path, cluster.server);
  const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      {
        ...requestOptions,
        method: options.method ?? 'GET',
        headers: { ...requestOptions.headers, ...(payload ? { 'content-type': 'application/json' } : {}) },
        timeout: 10_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${options.method ?? 'GET'} ${path}: timed out`)));
    req.on('error', reject);
    req.end(payload);
  });
}


// ---------------------------------------------------------------------------------------------
// Namespaces

/** Creates a namespace named `<prefix>-<random>` (generateName) with `labels`; returns its name. */
export async function createNamespace(kc: KubeConfig, prefix = 'e2e', labels: Record<string, string> = {}): Promise<string> {
  const core = kc.makeApiClient(CoreV1Api);
  const ns = await core.createNamespace({ body: { metadata: { generateName: `${prefix}-`, labels } } });
  const name = ns.metadata?.name;
  if (!name) throw new Error('created namespace has no name');
  return name;
}

/** Deletes a namespace without waiting (there is no namespace controller to finish it anyway). */
export async function deleteNamespace(kc: KubeConfig, name: string): Promise<void> {
  try {
    await kc.makeApiClient(CoreV1Api).deleteNamespace({ name });
  } catch (error) {
    if (!isApiError(error, 404)) throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// MutatingWebhookConfiguration

export interface RegisterWebhookOptions {
  /** https://127.0.0.1:<port>/mutate (clientConfig.url; docs/kubernetes.md §4). */
  url: string;
  /** Base64 of the PEM CA that signed the webhook's serving certificate. */
  caBundle: string;
  /** metadata.name of the configuration. Default "sandbox-webhook-e2e". */
  configurationName?: string;
  /** webhooks[0].name: a DNS subdomain with at least three segments. Default "pods.sandbox-webhook.io". */
  webhookName?: string;
  failurePolicy?: 'Fail' | 'Ignore';
  timeoutSeconds?: number;
  reinvocationPolicy?: 'IfNeeded' | 'Never';
  operations?: Array<'CREATE' | 'UPDATE' | 'DELETE' | 'CONNECT' | '*'>;
  /** Resources of the rule, subresources included (`pods/ephemeralcontainers`). Default ["pods"]. */
  resources?: string[];
  /** Excluded by the immutable kubernetes.io/metadata.name label. Default ["kube-system"]. */
  excludedNamespaces?: string[];
  /**
   * Wait until the apiserver actually calls the webhook (default true). The apiserver picks up new
   * configurations through an informer, so a pod created right after the POST may not see it yet.
   */
  waitUntilActive?: boolean;
  /** Namespace for the dry-run probe pods of waitUntilActive. Default "default". */
  probeNamespace?: string;
}

export interface WebhookRegistration {
  configurationName: string;
  webhookName: string;
  configuration: V1MutatingWebhookConfiguration;
  /** Deletes the configuration and (by default) waits until the apiserver stops calling it. */
  delete(options?: { waitUntilInactive?: boolean }): Promise<void>;
}

export function webhookConfiguration(options: RegisterWebhookOptions): V1MutatingWebhookConfiguration {
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: { name: options.configurationName ?? 'sandbox-webhook-e2e' },
    webhooks: [
      {
        name: options.webhookName ?? 'pods.sandbox-webhook.io',
        clientConfig: { url: options.url, caBundle: options.caBundle },
        rules: [
          {
            apiGroups: [''],
            apiVersions: ['v1'],
            resources: options.resources ?? ['pods'],
            operations: options.operations ?? ['CREATE'],
            scope: '*',
          },
        ],
        admissionReviewVersions: ['v1'],
        sideEffects: 'None',
        matchPolicy: 'Equivalent',
        reinvocationPolicy: options.reinvocationPolicy ?? 'IfNeeded',
        failurePolicy: options.failurePolicy ?? 'Fail',
        timeoutSeconds: options.timeoutSeconds ?? 5,
        namespaceSelector: {
          matchExpressions: [
            { key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: options.excludedNamespaces ?? ['kube-system'] },
          ],
        },
      },
    ],
  };
}

/** Sum of the apiserver's call counter for one webhook (apiserver_admission_webhook_admission_duration_seconds). */
export async function webhookCallCount(kc: KubeConfig, webhookName: string): Promise<number> {
  const { status, body } = await kubeRequest(kc, '/metrics');
  if (status !== 200) throw new Error(`GET /metrics: ${status}`);
  let total = 0;
  for (const line of body.split('\n')) {
    if (!line.startsWith('apiserver_admission_webhook_admission_duration_seconds_count{')) continue;
    if (!line.includes(`name="${webhookName}"`)) continue;
    total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

/** Dry-run creates a throwaway pod: whatever the webhook and the policy answer, the call is counted. */
async function probe(kc: KubeConfig, namespace: string): Promise<void> {
  try {
    await kc.makeApiClient(CoreV1Api).createNamespacedPod({
      namespace,
      dryRun: 'All',
      body: {
        metadata: { generateName: 'webhook-probe-' },
        spec: { containers: [{ name: 'probe', image: 'registry.k8s.io/pause:3.10' }] },
      },
    });
  } catch {
    // Denied, or the webhook is unreachable: both still mean the apiserver tried to call it.
  }
}

/** Polls with dry-run probe pods until the apiserver does (active) or does not (inactive) call the webhook. */
export async function waitForWebhook(
  kc: KubeConfig,
  webhookName: string,
  state: 'active' | 'inactive',
  options: { probeNamespace?: string; timeoutMs?: number } = {},
): Promise<void> {
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  // Inactive needs a few quiet probes in a row: one could race the informer's delete event.
  let quiet = 0;
  while (Date.now() < deadline) {
    const before = await webhookCallCount(kc, webhookName);
    await probe(kc, options.probeNamespace ?? 'default');
    const called = (await webhookCallCount(kc, webhookName)) > before;
    if (state === 'active' && called) return;
    if (state === 'inactive') {
      quiet = called ? 0 : quiet + 1;
      if (quiet >= 3) return;
    }
    await sleep(100);
  }
  throw new Error(`webhook ${webhookName} did not become ${state} within ${options.timeoutMs ?? 30_000} ms`);
}

/**
 * Creates (or replaces) the MutatingWebhookConfiguration for a webhook listening on `url`, with the
 * settings of docs/kubernetes.md §4, and by default waits until the apiserver calls it.
 */
export async function registerWebhook(kc: KubeConfig, options: RegisterWebhookOptions): Promise<WebhookRegistration> {
  const api = kc.makeApiClient(AdmissionregistrationV1Api);
  const body = webhookConfiguration(options);
  const configurationName = body.metadata?.name as string;
  const webhookName = body.webhooks?.[0]?.name as string;
  let configuration: V1MutatingWebhookConfiguration;
  try {
    configuration = await api.createMutatingWebhookConfiguration({ body });
  } catch (error) {
    if (!isApiError(error, 409)) throw error;
    const existing = await api.readMutatingWebhookConfiguration({ name: configurationName });
    body.metadata = { ...body.metadata, resourceVersion: existing.metadata?.resourceVersion };
    configuration = await api.replaceMutatingWebhookConfiguration({ name: configurationName, body });
  }
  const probeOptions = options.probeNamespace ? { probeNamespace: options.probeNamespace } : {};
  if (options.waitUntilActive ?? true) await waitForWebhook(kc, webhookName, 'active', probeOptions);
  return {
    configurationName,
    webhookName,
    configuration,
    async delete(deleteOptions = {}) {
      try {
        await api.deleteMutatingWebhookConfiguration({ name: configurationName });
      } catch (error) {
        if (!isApiError(error, 404)) throw error;
      }
      if (deleteOptions.waitUntilInactive ?? true) await waitForWebhook(kc, webhookName, 'inactive', probeOptions);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// RuntimeClass and nodes

/** The node label and taint that mark gVisor nodes; the gvisor RuntimeClass selects and tolerates them. */
export const GVISOR_NODE_LABEL = { key: 'sandbox.gvisor.dev/runtime', value: 'gvisor' } as const;
export const GVISOR_NODE_TAINT: V1Taint = { key: GVISOR_NODE_LABEL.key, value: GVISOR_NODE_LABEL.value, effect: 'NoSchedule' };

export function gvisorRuntimeClass(name = 'gvisor'): V1RuntimeClass {
  return {
    apiVersion: 'node.k8s.io/v1',
    kind: 'RuntimeClass',
    metadata: { name },
    handler: 'runsc',
    overhead: { podFixed: { cpu: '100m', memory: '64Mi' } },
    scheduling: {
      nodeSelector: { [GVISOR_NODE_LABEL.key]: GVISOR_NODE_LABEL.value },
      tolerations: [{ key: GVISOR_NODE_TAINT.key, operator: 'Equal', value: GVISOR_NODE_TAINT.value, effect: 'NoSchedule' }],
    },
  };
}

/** Creates RuntimeClass `gvisor` (handler runsc, overhead 100m/64Mi, gVisor node selector + toleration) if absent. */
export async function createGvisorRuntimeClass(kc: KubeConfig, name = 'gvisor'): Promise<V1RuntimeClass> {
  const api = kc.makeApiClient(NodeV1Api);
  try {
    return await api.createRuntimeClass({ body: gvisorRuntimeClass(name) });
  } catch (error) {
    if (!isApiError(error, 409)) throw error;
    return api.readRuntimeClass({ name });
  }
}

export async function deleteRuntimeClass(kc: KubeConfig, name = 'gvisor'): Promise<void> {
  try {
    await kc.makeApiClient(NodeV1Api).deleteRuntimeClass({ name });
  } catch (error) {
    if (!isApiError(error, 404)) throw error;
  }
}

export interface FakeNodesOptions {
  /** Default "node-gvisor". */
  gvisorNode?: string;
  /** Default "node-runc". */
  runcNode?: string;
  /** Taint the gVisor node so only pods tolerating it (via the RuntimeClass) land there. Default true. */
  taintGvisorNode?: boolean;
  /** Allocatable per node. Default cpu 4, memory 8Gi, pods 110. */
  allocatable?: { cpu?: string; memory?: string; pods?: string };
}

function nodeStatus(allocatable: Required<NonNullable<FakeNodesOptions['allocatable']>>): V1Node['status'] {
  const now = new Date();
  const condition = (type: string, status: string, reason: string) => ({
    type,
    status,
    reason,
    message: 'fake node for end-to-end tests',
    lastHeartbeatTime: now,
    lastTransitionTime: now,
  });
  return {
    capacity: { ...allocatable },
    allocatable: { ...allocatable },
    conditions: [
      condition('Ready', 'True', 'KubeletReady'),
      condition('MemoryPressure', 'False', 'KubeletHasSufficientMemory'),
      condition('DiskPressure', 'False', 'KubeletHasNoDiskPressure'),
      condition('PIDPressure', 'False', 'KubeletHasSufficientPID'),
    ],
    addresses: [{ type: 'InternalIP', address: '127.0.0.1' }],
  };
}

/**
 * Creates a gVisor node (labelled, and tainted unless told otherwise) and a plain runc node, both Ready
 * with allocatable resources, if they do not exist yet. Returns their names.
 *
 * The TaintNodesByCondition admission plugin gives every new Node the node.kubernetes.io/not-ready
 * taint; the node lifecycle controller would lift it once the node reports Ready, but no
 * controller-manager runs here, so the helper removes it itself.
 */
export async function createFakeNodes(kc: KubeConfig, options: FakeNodesOptions = {}): Promise<{ gvisor: string; runc: string }> {
  const core = kc.makeApiClient(CoreV1Api);
  const allocatable = { cpu: '4', memory: '8Gi', pods: '110', ...options.allocatable };
  const gvisor = options.gvisorNode ?? 'node-gvisor';
  const runc = options.runcNode ?? 'node-runc';
  const specs: Array<{ name: string; labels: Record<string, string>; taints: V1Taint[] }> = [
    {
      name: gvisor,
      labels: { [GVISOR_NODE_LABEL.key]: GVISOR_NODE_LABEL.value },
      taints: options.taintGvisorNode ?? true ? [GVISOR_NODE_TAINT] : [],
    },
    { name: runc, labels: {}, taints: [] },
  ];
  for (const spec of specs) {
    const labels = { 'kubernetes.io/hostname': spec.name, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64', ...spec.labels };
    try {
      await core.createNode({ body: { metadata: { name: spec.name, labels }, spec: { taints: spec.taints } } });
    } catch (error) {
      if (!isApiError(error, 409)) throw error;
    }
    const node = await core.readNode({ name: spec.name });
    node.spec = { ...node.spec, taints: spec.taints };
    const updated = await core.replaceNode({ name: spec.name, body: node });
    // Status is only writable through the status subresource; the main resource ignores it.
    updated.status = nodeStatus(allocatable);
    await core.replaceNodeStatus({ name: spec.name, body: updated });
  }
  return { gvisor, runc };
}

export async function deleteFakeNodes(kc: KubeConfig, names: { gvisor: string; runc: string }): Promise<void> {
  const core = kc.makeApiClient(CoreV1Api);
  for (const name of [names.gvisor, names.runc]) {
    try {
      await core.deleteNode({ name });
    } catch (error) {
      if (!isApiError(error, 404)) throw error;
    }
  }
}

/** Polls a pod until `predicate` holds; returns the pod. */
export async function waitForPod(
  kc: KubeConfig,
  namespace: string,
  name: string,
  predicate: (pod: V1Pod) => boolean,
  timeoutMs = 30_000,
): Promise<V1Pod> {
  const core = kc.makeApiClient(CoreV1Api);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pod = await core.readNamespacedPod({ namespace, name });
    if (predicate(pod)) return pod;
    if (Date.now() > deadline) throw new Error(`pod ${namespace}/${name}: condition not met within ${timeoutMs} ms`);
    await sleep(200);
  }
}

/**
 * Asserts that the apiserver's RuntimeClass admission plugin applied `runtimeClass` to a stored pod
 * (docs/kubernetes.md §2): spec.overhead is its overhead.podFixed, its scheduling.nodeSelector is merged
 * in, and its tolerations are among the pod's. The expectations are read from the class itself.
 */
export function expectRuntimeClassApplied(pod: V1Pod, runtimeClass: V1RuntimeClass = gvisorRuntimeClass()): void {
  expect(pod.spec?.runtimeClassName).toBe(runtimeClass.metadata?.name);
  expect(pod.spec?.overhead).toEqual(runtimeClass.overhead?.podFixed);
  expect(pod.spec?.nodeSelector).toMatchObject(runtimeClass.scheduling?.nodeSelector ?? {});
  for (const toleration of runtimeClass.scheduling?.tolerations ?? []) expect(pod.spec?.tolerations).toContainEqual(toleration);
}
