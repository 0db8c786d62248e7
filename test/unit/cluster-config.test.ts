// Where the webhook's cluster access comes from (src/cluster/index.ts loadKubeConfig, connectCluster):
// a kubeconfig, the in-cluster ServiceAccount, or nothing (offline).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { connectCluster, loadKubeConfig } from '../../src/cluster/index.js';
import { Metrics } from '../../src/telemetry/metrics.js';
import { capturingLogger } from './cluster-fakes.js';

const dir = mkdtempSync(join(tmpdir(), 'cluster-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => vi.unstubAllEnvs());

function kubeconfig(name: string, server: string, context = 'ctx'): string {
  const path = join(dir, name);
  writeFileSync(
    path,
    `apiVersion: v1
kind: Config
clusters: [{ name: c-${name}, cluster: { server: "${server}" } }]
users: [{ name: u-${name}, user: { token: t } }]
contexts: [{ name: ${context}, context: { cluster: c-${name}, user: u-${name} } }]
current-context: ${context}
`,
  );
  return path;
}

/** A ServiceAccount directory under a prefix, as client-node's loadFromCluster(pathPrefix) expects it. */
function serviceAccount(): string {
  const prefix = join(dir, 'pod');
  const sa = join(prefix, 'var/run/secrets/kubernetes.io/serviceaccount');
  mkdirSync(sa, { recursive: true });
  writeFileSync(join(sa, 'token'), 'sa-token');
  writeFileSync(join(sa, 'ca.crt'), '');
  writeFileSync(join(sa, 'namespace'), 'sandbox-webhook');
  return prefix;
}

describe('loadKubeConfig', () => {
  it('loads the kubeconfig file it is given', async () => {
    const loaded = await loadKubeConfig({ kubeconfig: kubeconfig('one', 'https://one.example:6443'), offline: false });
    expect(loaded?.kubeConfig.getCurrentCluster()?.server).toBe('https://one.example:6443');
    expect(loaded?.source).toBe(join(dir, 'one'));
  });

  it('merges several kubeconfig files the way kubectl does, the first one deciding the context', async () => {
    const first = kubeconfig('first', 'https://first.example', 'first');
    const second = kubeconfig('second', 'https://second.example', 'second');
    const loaded = await loadKubeConfig({ kubeconfig: `${first}${delimiter}${second}`, offline: false });
    expect(loaded?.kubeConfig.getCurrentCluster()?.server).toBe('https://first.example');
    expect(loaded?.kubeConfig.getContexts().map((c) => c.name)).toEqual(['first', 'second']);
  });

  it('fails loudly when the named kubeconfig does not exist, instead of running offline', async () => {
    await expect(loadKubeConfig({ kubeconfig: join(dir, 'missing'), offline: false })).rejects.toThrow(/ENOENT/);
  });

  it('uses the in-cluster ServiceAccount when there is no kubeconfig and the pod has one', async () => {
    vi.stubEnv('KUBERNETES_SERVICE_HOST', '10.96.0.1');
    vi.stubEnv('KUBERNETES_SERVICE_PORT', '443');
    const loaded = await loadKubeConfig({ kubeconfig: undefined, offline: false, inClusterPathPrefix: serviceAccount() });
    expect(loaded?.source).toBe('in-cluster ServiceAccount');
    expect(loaded?.kubeConfig.getCurrentCluster()?.server).toBe('https://10.96.0.1:443');
  });

  it('runs offline without a kubeconfig outside a pod', async () => {
    vi.stubEnv('KUBERNETES_SERVICE_HOST', '');
    expect(await loadKubeConfig({ kubeconfig: undefined, offline: false, inClusterPathPrefix: serviceAccount() })).toBeUndefined();
  });

  it('runs offline in a pod whose ServiceAccount token is not mounted', async () => {
    vi.stubEnv('KUBERNETES_SERVICE_HOST', '10.96.0.1');
    vi.stubEnv('KUBERNETES_SERVICE_PORT', '443');
    expect(await loadKubeConfig({ kubeconfig: undefined, offline: false, inClusterPathPrefix: join(dir, 'nowhere') })).toBeUndefined();
  });

  it('runs offline when told to, even with a kubeconfig', async () => {
    expect(await loadKubeConfig({ kubeconfig: kubeconfig('ignored', 'https://x.example'), offline: true })).toBeUndefined();
  });
});

describe('connectCluster', () => {
  it('returns undefined offline, and a connection that is not ready until it has listed, otherwise', async () => {
    const { logger, lines } = capturingLogger();
    expect(await connectCluster({ kubeconfig: undefined, offline: true }, logger, new Metrics())).toBeUndefined();

    // Nothing listens on port 9 of loopback: the lists fail and the connection stays unready.
    const connection = await connectCluster(
      { kubeconfig: kubeconfig('closed', 'https://127.0.0.1:9'), offline: false, timing: { backoffInitialMs: 5, backoffMaxMs: 10 } },
      logger,
      new Metrics(),
    );
    try {
      expect(connection?.readiness().ready).toBe(false);
      expect(lines.find((l) => l.msg === 'reading namespaces and RuntimeClasses from the API server')).toMatchObject({
        component: 'cluster',
        server: 'https://127.0.0.1:9',
      });
    } finally {
      await connection?.stop();
    }
  });
});
