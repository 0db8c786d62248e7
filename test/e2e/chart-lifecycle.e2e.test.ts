// The chart's install, upgrade and uninstall on the real apiserver, with pods being created the whole time.
//
// The chart registers its webhook from the replicas (webhook.registration=server): Helm installs no
// MutatingWebhookConfiguration; a replica applies it once it is ready itself and the Service has a ready
// endpoint. `helm uninstall` deletes it first, from a pre-delete hook Job. There is no kubelet here, so
// the test does what one would (harness/chart-pods.ts): it runs the built webhook as the Deployment's
// replica, with the chart's ServiceAccount and the chart's ConfigMaps projected into files, and runs the
// hook Job's command (files/hooks/hooks.mjs) as the hook's ServiceAccount, then marks the Job complete.
// webhook.url points the configuration at the local replica; with the Service instead, the
// EndpointSlice gate is shown on its own (the Service has no real backend here).
//
// The pod loop dry-runs a pod in a tenant namespace every 100 ms throughout: every failure is counted,
// with its message. The design accepts none while a replica is running; the one window it accepts is
// "replicas gone, configuration still there" (the pods-already-gone uninstall below), which ends with
// the pre-delete hook.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { AdmissionregistrationV1Api, CoreV1Api, DiscoveryV1Api, NodeV1Api, RbacAuthorizationV1Api, type V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Helm, CHART } from './harness/helm.js';
import { runChartReplica, runHookJob, runHookPod, type ChartReplica } from './harness/chart-pods.js';
import { controllerManagerBinary, startControllerManager } from './harness/controller-manager.js';
import type { ManagedProcess } from './harness/process.js';
import {
  apiStatus,
  createNamespace,
  deleteNamespace,
  freePort,
  generateWebhookCerts,
  isApiError,
  loadKubeConfig,
  makeTempDir,
  removeTempDir,
} from './harness/index.js';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

const SUFFIX = randomBytes(3).toString('hex');
const RELEASE = `swl-${SUFFIX}`;
const FULLNAME = `${RELEASE}-sandbox-webhook`;
const RUNTIME_CLASS = `gvisor-lc-${SUFFIX}`;

const kc = loadKubeConfig(inject('kubeconfig'));
const core = kc.makeApiClient(CoreV1Api);
const admission = kc.makeApiClient(AdmissionregistrationV1Api);
const discovery = kc.makeApiClient(DiscoveryV1Api);
const figures: Record<string, number | string> = {};

let dir = '';
let helm: Helm;
let namespace = '';
let tenant = '';
let certDir = '';
let caPem = '';
let port = 0;
let replica: ChartReplica | undefined;
let installed = false;
/** The namespace controller (helm test deletes its scratch namespace and waits) and the garbage collector. */
let controllerManager: ManagedProcess | undefined;

function baseValues(): Record<string, unknown> {
  return {
    webhook: { url: `https://127.0.0.1:${port}/mutate`, failurePolicy: 'Fail', timeoutSeconds: 5 },
    certificates: { mode: 'existingSecret', existingSecret: { name: `${FULLNAME}-local-tls`, caBundle: caPem } },
    policy: { runtimeClassName: RUNTIME_CLASS, acceptedRuntimeClasses: [RUNTIME_CLASS] },
    runtimeClass: { create: true, name: RUNTIME_CLASS },
    validatingAdmissionPolicy: { enabled: false },
  };
}

/** Whether the configuration exists; its webhooks when it does. */
async function configuration(): Promise<{ name: string; timeoutSeconds?: number; failurePolicy?: string }[] | undefined> {
  try {
    const found = await admission.readMutatingWebhookConfiguration({ name: FULLNAME });
    return (found.webhooks ?? []).map((w) => ({ name: w.name, timeoutSeconds: w.timeoutSeconds, failurePolicy: w.failurePolicy }));
  } catch (error) {
    if (isApiError(error, 404)) return undefined;
    throw error;
  }
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    if (await check().catch(() => false)) return Date.now() - started;
    await sleep(50);
  }
  throw new Error(`${what}: not within ${timeoutMs} ms`);
}

// ---------------------------------------------------------------------------------------------
// the pod loop

interface Attempt {
  at: number;
  phase: string;
  ok: boolean;
  sandboxed: boolean;
  message: string;
}

const attempts: Attempt[] = [];
let phase = 'before install';
let looping = false;
let loop: Promise<void> | undefined;

function startPodLoop(): void {
  looping = true;
  loop = (async () => {
    let n = 0;
    while (looping) {
      n += 1;
      const body: V1Pod = { metadata: { name: `loop-${n}` }, spec: { containers: [{ name: 'app', image: 'registry.k8s.io/pause:3.10' }] } };
      const at = Date.now();
      try {
        const pod = await core.createNamespacedPod({ namespace: tenant, body, dryRun: 'All' });
        attempts.push({ at, phase, ok: true, sandboxed: pod.spec?.runtimeClassName === RUNTIME_CLASS, message: '' });
      } catch (error) {
        attempts.push({ at, phase, ok: false, sandboxed: false, message: apiStatus(error).message });
      }
      await sleep(100);
    }
  })();
}

async function stopPodLoop(): Promise<void> {
  looping = false;
  await loop;
}

function inPhase(name: string): Attempt[] {
  return attempts.filter((a) => a.phase === name);
}

beforeAll(async () => {
  dir = makeTempDir('chart-lifecycle');
  helm = new Helm(join(dir, 'helm'), inject('kubeconfig'));
  namespace = await createNamespace(kc, 'chart-lc');
  tenant = await createNamespace(kc, 'chart-lc-tenant');
  certDir = join(dir, 'certs');
  await generateWebhookCerts(certDir);
  caPem = readFileSync(join(certDir, 'ca.crt'), 'utf8');
  port = await freePort();
  if (controllerManagerBinary()) {
    controllerManager = await startControllerManager({
      kubeconfig: inject('kubeconfig'),
      controllers: ['namespace-controller', 'garbage-collector-controller'],
      logFile: join(dir, 'kube-controller-manager.log'),
    });
  }
  startPodLoop();
});

afterAll(async () => {
  await stopPodLoop();
  const failures = attempts.filter((a) => !a.ok);
  figures['pod creations attempted'] = attempts.length;
  figures['pod creations failed'] = failures.length;
  for (const name of [...new Set(attempts.map((a) => a.phase))]) {
    const all = inPhase(name);
    figures[`  ${name}`] = `${all.length} attempts, ${all.filter((a) => !a.ok).length} failed, ${all.filter((a) => a.sandboxed).length} sandboxed`;
  }
  process.stderr.write(`[e2e] chart lifecycle figures:\n${Object.entries(figures).map(([k, v]) => `  ${k}: ${v}`).join('\n')}\n`);
  await replica?.stop();
  await controllerManager?.stop();
  if (installed) await helm.run(['uninstall', RELEASE, '--namespace', namespace, '--no-hooks']);
  await admission.deleteMutatingWebhookConfiguration({ name: FULLNAME }).catch(() => undefined);
  await kc.makeApiClient(NodeV1Api).deleteRuntimeClass({ name: RUNTIME_CLASS }).catch(() => undefined);
  for (const ns of [namespace, tenant]) if (ns) await deleteNamespace(kc, ns);
  if (dir) removeTempDir(dir);
});

describe('helm install, upgrade and uninstall with pods created throughout', () => {
  it('helm install creates no webhook configuration: pods keep being admitted while no replica runs', async () => {
    phase = 'installed, no replica yet';
    installed = true;
    const started = Date.now();
    await helm.ok(['install', RELEASE, CHART, '--namespace', namespace, '-f', helm.valuesFile(baseValues())]);
    figures['helm install (ms)'] = Date.now() - started;
    await sleep(1500);
    expect(await configuration()).toBeUndefined();
    const during = inPhase(phase);
    expect(during.length).toBeGreaterThan(3);
    expect(during.filter((a) => !a.ok)).toEqual([]);
  });

  it('a ready replica registers the pods and workloads webhooks itself, and from then on pods are sandboxed', async () => {
    const started = Date.now();
    replica = await runChartReplica({ kc, namespace, fullname: FULLNAME, dir: join(dir, 'replica-1'), certDir, port });
    figures['replica start to /readyz (ms)'] = Date.now() - started;
    phase = 'replica running';
    figures['replica ready to configuration registered (ms)'] = await until('registered', async () => (await configuration()) !== undefined);
    expect(await configuration()).toEqual([
      { name: 'sandbox.sandbox-webhook.io', timeoutSeconds: 5, failurePolicy: 'Fail' },
      { name: 'workloads.sandbox-webhook.io', timeoutSeconds: 5, failurePolicy: 'Ignore' },
    ]);
    const stored = await admission.readMutatingWebhookConfiguration({ name: FULLNAME });
    expect(stored.metadata?.ownerReferences).toEqual([expect.objectContaining({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', name: FULLNAME })]);
    expect(stored.metadata?.managedFields?.map((f) => f.manager)).toEqual(['sandbox-webhook']);
    await until('pods sandboxed', async () => inPhase(phase).some((a) => a.sandboxed), 10_000);
    expect(replica.webhook.logs()).not.toMatch(/forbidden/i);
  });

  it('helm upgrade changes the configuration through the replica, with no pod creation failing', async () => {
    phase = 'helm upgrade';
    const started = Date.now();
    await helm.ok(['upgrade', RELEASE, CHART, '--namespace', namespace, '--reuse-values', '-f', helm.valuesFile({ webhook: { timeoutSeconds: 4 } })]);
    figures['helm upgrade (ms)'] = Date.now() - started;
    figures['upgrade applied by the replica (ms)'] = await until('timeout 4 applied', async () => (await configuration())?.[0]?.timeoutSeconds === 4);
    await sleep(1000);
    expect(inPhase(phase).filter((a) => !a.ok)).toEqual([]);
    expect(inPhase(phase).every((a) => a.sandboxed)).toBe(true);
  });

  it('helm test dry-runs a pod in a scratch namespace and finds the sandbox class', async (context) => {
    // helm deletes the scratch namespace after the test and waits for it: the namespace controller must run.
    if (!controllerManager) context.skip('kube-controller-manager not built (hack/build-binaries.sh --with-controller-manager)');
    phase = 'helm test';
    const test = helm.run(['test', RELEASE, '--namespace', namespace, '--timeout', '60s']);
    const pod = await runHookPod(kc, namespace, `${FULLNAME}-test`, join(dir, 'test-hook'));
    const result = await test;
    figures['helm test hook output'] = pod.output.trim();
    expect(pod.code, pod.output).toBe(0);
    expect(pod.output).toContain(`gets runtimeClassName "${RUNTIME_CLASS}"`);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('Phase:          Succeeded');
  });

  it('helm uninstall: the pre-delete hook deletes the configuration first, with no pod creation failing', async () => {
    phase = 'helm uninstall';
    const uninstall = helm.run(['uninstall', RELEASE, '--namespace', namespace, '--timeout', '60s']);
    const hook = await runHookJob(kc, namespace, `${FULLNAME}-cleanup`, join(dir, 'cleanup-1'));
    expect(hook.output).toContain(`MutatingWebhookConfiguration ${FULLNAME}: deleted`);
    expect(await configuration()).toBeUndefined();
    const result = await uninstall;
    expect(result.code, result.stderr).toBe(0);
    installed = false;
    // The Deployment is gone: its replica stops, as a kubelet would stop the pod.
    await replica?.stop();
    replica = undefined;
    await sleep(1000);
    expect(await configuration()).toBeUndefined();
    expect(inPhase(phase).filter((a) => !a.ok)).toEqual([]);
  });

  it('uninstall with the pods already gone: creations fail (failurePolicy Fail) until the pre-delete hook removes the configuration', async () => {
    phase = 'second install';
    installed = true;
    await helm.ok(['install', RELEASE, CHART, '--namespace', namespace, '-f', helm.valuesFile(baseValues())]);
    replica = await runChartReplica({ kc, namespace, fullname: FULLNAME, dir: join(dir, 'replica-2'), certDir, port });
    await until('registered again', async () => (await configuration()) !== undefined);
    phase = 'pods gone, configuration left';
    await replica.stop('SIGKILL');
    replica = undefined;
    await until('creations fail', async () => inPhase(phase).some((a) => !a.ok), 10_000);
    phase = 'uninstall with the pods gone';
    const started = Date.now();
    const uninstall = helm.run(['uninstall', RELEASE, '--namespace', namespace, '--timeout', '60s']);
    const hook = await runHookJob(kc, namespace, `${FULLNAME}-cleanup`, join(dir, 'cleanup-2'));
    expect(hook.code, hook.output).toBe(0);
    const result = await uninstall;
    expect(result.code, result.stderr).toBe(0);
    installed = false;
    figures['uninstall with the pods gone (ms)'] = Date.now() - started;
    expect(await configuration()).toBeUndefined();
    phase = 'after uninstall';
    await until('creations succeed again', async () => inPhase(phase).filter((a) => a.ok).length >= 3, 10_000);
    const gone = [...inPhase('pods gone, configuration left'), ...inPhase('uninstall with the pods gone')].filter((a) => !a.ok);
    figures['failures while the pods were gone, until the hook ran (the accepted window)'] = gone.length;
    expect(gone.every((a) => a.message.includes(`failed calling webhook "sandbox.sandbox-webhook.io"`))).toBe(true);
    expect(inPhase(phase).filter((a) => !a.ok)).toEqual([]);
  });
});

describe('helm uninstall when the pre-delete hook does not run (--no-hooks)', () => {
  it('the garbage collector deletes the configuration once Helm deletes the ClusterRole that owns it', async (context) => {
    if (!controllerManager) context.skip('kube-controller-manager not built (hack/build-binaries.sh --with-controller-manager)');
    phase = 'no-hooks uninstall';
    installed = true;
    await helm.ok(['install', RELEASE, CHART, '--namespace', namespace, '-f', helm.valuesFile(baseValues())]);
    replica = await runChartReplica({ kc, namespace, fullname: FULLNAME, dir: join(dir, 'replica-gc'), certDir, port });
    await until('registered', async () => (await configuration()) !== undefined);
    const result = await helm.run(['uninstall', RELEASE, '--namespace', namespace, '--no-hooks']);
    expect(result.code, result.stderr).toBe(0);
    installed = false;
    figures['ClusterRole deleted to configuration collected (ms)'] = await until('collected', async () => (await configuration()) === undefined);
    await replica.stop();
    replica = undefined;
  });
});

describe('the release namespace deleted under a running release', () => {
  it('a replica deletes the configuration as soon as its namespace is being deleted, and pod creation keeps working', async (context) => {
    if (!controllerManager) context.skip('kube-controller-manager not built (hack/build-binaries.sh --with-controller-manager)');
    const doomed = await createNamespace(kc, 'chart-lc-doomed');
    phase = 'namespace deleted';
    // The RuntimeClass kept by the earlier uninstalls belongs to the release in the other namespace.
    await helm.ok(['install', RELEASE, CHART, '--namespace', doomed, '-f', helm.valuesFile({ ...baseValues(), runtimeClass: { create: false } })]);
    const doomedReplica = await runChartReplica({ kc, namespace: doomed, fullname: FULLNAME, dir: join(dir, 'replica-doomed'), certDir, port });
    try {
      await until('registered', async () => (await configuration()) !== undefined);
      await until('pods sandboxed', async () => inPhase(phase).some((a) => a.sandboxed), 10_000);
      const started = Date.now();
      await core.deleteNamespace({ name: doomed });
      figures['namespace deletion to configuration deleted by the replica (ms)'] = await until('deleted', async () => (await configuration()) === undefined, 10_000);
      figures['namespace deletion to configuration deleted, measured from the delete call (ms)'] = Date.now() - started;
      // The server writes its log asynchronously: the line may reach the pipe a moment after the delete.
      const said = 'namespace is being deleted: webhook configuration deleted';
      await until('logged', async () => doomedReplica.webhook.logs().includes(said), 10_000).catch(() => undefined);
      expect(doomedReplica.webhook.logs()).toContain(said);
    } finally {
      await doomedReplica.stop();
      // Helm's record went with the namespace: the cluster-scoped objects of the release stay behind.
      const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
      await rbac.deleteClusterRoleBinding({ name: FULLNAME }).catch(() => undefined);
      await rbac.deleteClusterRole({ name: FULLNAME }).catch(() => undefined);
    }
    await sleep(500);
    expect(inPhase(phase).filter((a) => !a.ok)).toEqual([]);
  });
});

describe('the EndpointSlice gate (the configuration names the Service)', () => {
  it('a ready replica does not register while the Service has no ready endpoint, and does once it has one', async () => {
    phase = 'endpoint gate';
    const values = { ...baseValues(), webhook: { failurePolicy: 'Ignore', timeoutSeconds: 2 } };
    installed = true;
    await helm.ok(['install', RELEASE, CHART, '--namespace', namespace, '-f', helm.valuesFile(values)]);
    replica = await runChartReplica({ kc, namespace, fullname: FULLNAME, dir: join(dir, 'replica-3'), certDir, port: await freePort() });
    await sleep(2000);
    expect(await configuration()).toBeUndefined();
    expect(replica.webhook.logs()).toContain(`Service ${namespace}/${FULLNAME} has no ready endpoint yet`);
    // What the EndpointSlice controller writes once a pod of the Service is ready.
    await discovery.createNamespacedEndpointSlice({
      namespace,
      body: {
        metadata: { name: `${FULLNAME}-manual`, labels: { 'kubernetes.io/service-name': FULLNAME } },
        addressType: 'IPv4',
        endpoints: [{ addresses: ['10.0.0.77'], conditions: { ready: true } }],
        ports: [{ name: 'https', port: 8443, protocol: 'TCP' }],
      },
    });
    figures['endpoint ready to configuration registered (ms)'] = await until('registered', async () => (await configuration()) !== undefined);
    await replica.stop();
    replica = undefined;
    const uninstall = await helm.run(['uninstall', RELEASE, '--namespace', namespace, '--no-hooks']);
    expect(uninstall.code, uninstall.stderr).toBe(0);
    installed = false;
    // Collected by the garbage collector when it runs; otherwise deleted as the recovery command does.
    if (controllerManager) await until('collected', async () => (await configuration()) === undefined);
    else await admission.deleteMutatingWebhookConfiguration({ name: FULLNAME });
  });
});
