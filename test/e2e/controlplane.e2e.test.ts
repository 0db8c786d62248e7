// Proves the end-to-end control plane itself, before any webhook test relies on it: the right
// Kubernetes version, pods accepted without ServiceAccount tokens, the RuntimeClass admission plugin
// (docs/kubernetes.md §2) and kube-scheduler binding pods to fake nodes.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CoreV1Api, VersionApi, type V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  GVISOR_NODE_LABEL,
  expectRuntimeClassApplied,
  createFakeNodes,
  createGvisorRuntimeClass,
  createNamespace,
  deleteFakeNodes,
  deleteNamespace,
  expectRejected,
  kubernetesBinaryVersion,
  loadKubeConfig,
  podCreateEvent,
  restartApiserver,
  waitForAuditEvent,
  waitForPod,
} from './harness/index.js';

const execFileAsync = promisify(execFile);

const kc = loadKubeConfig(inject('kubeconfig'));
const core = kc.makeApiClient(CoreV1Api);

function pod(name: string, spec: Partial<NonNullable<V1Pod['spec']>> = {}): V1Pod {
  return {
    metadata: { name },
    spec: { containers: [{ name: 'app', image: 'registry.k8s.io/pause:3.10' }], ...spec },
  };
}

describe('control plane', () => {
  let namespace: string;
  let nodes: { gvisor: string; runc: string };

  beforeAll(async () => {
    namespace = await createNamespace(kc, 'controlplane');
    await createGvisorRuntimeClass(kc);
    nodes = await createFakeNodes(kc);
  });

  afterAll(async () => {
    await deleteFakeNodes(kc, nodes);
    await deleteNamespace(kc, namespace);
  });

  it('reports the version its binaries were built for, to API clients, kubectl and helm', async () => {
    const binDir = inject('binDir');
    const pinned = inject('pinnedVersions');
    const builtByUs = inject('binarySources')['kube-apiserver'] === 'built';
    const expected = builtByUs ? pinned.kubernetes : await kubernetesBinaryVersion(join(binDir, 'kube-apiserver'));

    const server = await kc.makeApiClient(VersionApi).getCode();
    expect(server.gitVersion).toBe(expected);
    expect(`v${server.major}.${server.minor}`).toBe(expected.replace(/^(v\d+\.\d+).*/, '$1'));
    expect(inject('kubernetesVersion')).toBe(expected);

    if (inject('binarySources').kubectl === 'built') {
      const { stdout } = await execFileAsync(join(binDir, 'kubectl'), ['version', '-o', 'json']);
      const versions = JSON.parse(stdout) as { clientVersion: { gitVersion: string }; serverVersion: { gitVersion: string } };
      expect(versions.clientVersion.gitVersion).toBe(pinned.kubernetes);
      expect(versions.serverVersion.gitVersion).toBe(expected);
    }
    if (inject('binarySources').helm === 'built') {
      const { stdout } = await execFileAsync(join(binDir, 'helm'), ['version', '--template', '{{.Version}}']);
      expect(stdout.trim()).toBe(pinned.helm);
    }
  });

  it('accepts a pod without a ServiceAccount token (ServiceAccount admission is off)', async () => {
    const created = await core.createNamespacedPod({ namespace, body: pod('plain') });
    expect(created.metadata?.uid).toBeTruthy();
    expect(created.spec?.runtimeClassName).toBeUndefined();
    expect(created.spec?.volumes ?? []).toEqual([]);
    const event = await waitForAuditEvent(podCreateEvent(namespace, 'plain'));
    expect(event.responseStatus?.code).toBe(201);
  });

  it('applies the gvisor RuntimeClass overhead, node selector and toleration when a pod names it', async () => {
    const created = await core.createNamespacedPod({ namespace, body: pod('names-gvisor', { runtimeClassName: 'gvisor' }) });
    expectRuntimeClassApplied(created);
    expect(created.spec?.nodeSelector).toEqual({ [GVISOR_NODE_LABEL.key]: GVISOR_NODE_LABEL.value });
  });

  it('rejects a pod that names a RuntimeClass that does not exist', async () => {
    const status = await expectRejected(core.createNamespacedPod({ namespace, body: pod('names-missing', { runtimeClassName: 'kata' }) }));
    expect(status).toMatchObject({ code: 403, reason: 'Forbidden', message: expect.stringContaining('RuntimeClass "kata" not found') });
  });

  it('schedules a gvisor pod onto the gVisor node and a plain pod onto the other one', async () => {
    await core.createNamespacedPod({ namespace, body: pod('schedule-gvisor', { runtimeClassName: 'gvisor' }) });
    await core.createNamespacedPod({ namespace, body: pod('schedule-plain') });
    const bound = (p: V1Pod): boolean => Boolean(p.spec?.nodeName);
    const gvisorPod = await waitForPod(kc, namespace, 'schedule-gvisor', bound);
    const plainPod = await waitForPod(kc, namespace, 'schedule-plain', bound);
    expect(gvisorPod.spec?.nodeName).toBe(nodes.gvisor);
    // The gVisor node is tainted; only pods tolerating it (through the RuntimeClass) land there.
    expect(plainPod.spec?.nodeName).toBe(nodes.runc);
  });

  it('keeps its state across an apiserver restart', async () => {
    const { stopMs, startMs } = await restartApiserver('SIGKILL');
    expect(startMs).toBeGreaterThan(0);
    expect(stopMs).toBeGreaterThanOrEqual(0);
    const plain = await core.readNamespacedPod({ namespace, name: 'plain' });
    expect(plain.metadata?.name).toBe('plain');
  });
});
