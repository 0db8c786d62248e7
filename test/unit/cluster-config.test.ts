// Where the webhook's cluster access comes from (src/cluster/index.ts loadKubeConfig, connectCluster):
// a kubeconfig, the in-cluster ServiceAccount, or nothing (offline).
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { RequestOptions } from 'node:https';
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

describe('the credentials a kubeconfig puts on a request (src/cluster/kubeconfig.ts, as client-node applies them)', () => {
  const ca = Buffer.from('-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n');
  const cert = Buffer.from('client certificate');
  const key = Buffer.from('client key');
  function file(name: string, cluster: string, user: string): string {
    const path = join(dir, name);
    writeFileSync(
      path,
      `apiVersion: v1
kind: Config
clusters: [{ name: c, cluster: ${cluster} }]
users: [{ name: u, user: ${user} }]
contexts: [{ name: x, context: { cluster: c, user: u } }]
current-context: x
`,
    );
    return path;
  }
  async function applied(path: string): Promise<RequestOptions> {
    const loaded = await loadKubeConfig({ kubeconfig: path, offline: false });
    const options: RequestOptions = { headers: {} };
    await loaded?.kubeConfig.applyToHTTPSOptions(options);
    return options;
  }

  it.each([
    [
      'a client certificate and CA embedded as data',
      `{ server: "https://k.example", certificate-authority-data: ${ca.toString('base64')} }`,
      `{ client-certificate-data: ${cert.toString('base64')}, client-key-data: ${key.toString('base64')} }`,
      { ca, cert, key },
    ],
    ['a bearer token', '{ server: "https://k.example" }', '{ token: abc }', { headers: { Authorization: 'Bearer abc' } }],
    ['a token file (read when applied)', '{ server: "https://k.example" }', `{ token-file: ${JSON.stringify(join(dir, 'token-file'))} }`, { headers: { Authorization: 'Bearer from-file' } }],
    ['insecure-skip-tls-verify and a TLS server name', '{ server: "https://k.example", insecure-skip-tls-verify: true, tls-server-name: api.internal }', '{ token: t }', { rejectUnauthorized: false, servername: 'api.internal' }],
    ['impersonation', '{ server: "https://k.example" }', '{ token: t, as: someone }', { headers: { Authorization: 'Bearer t', 'Impersonate-User': 'someone' } }],
    ['basic auth', '{ server: "https://k.example" }', '{ username: admin, password: secret }', { auth: 'admin:secret' }],
  ])('%s', async (_name, cluster, user, expected) => {
    writeFileSync(join(dir, 'token-file'), 'from-file');
    expect(await applied(file('creds', cluster, user))).toMatchObject(expected);
  });

  it('applies the in-cluster ServiceAccount token and CA', async () => {
    vi.stubEnv('KUBERNETES_SERVICE_HOST', 'fd00::1');
    vi.stubEnv('KUBERNETES_SERVICE_PORT', '443');
    const loaded = await loadKubeConfig({ kubeconfig: undefined, offline: false, inClusterPathPrefix: serviceAccount() });
    const options: RequestOptions = { headers: {} };
    await loaded?.kubeConfig.applyToHTTPSOptions(options);
    expect(loaded?.kubeConfig.getCurrentCluster()?.server).toBe('https://[fd00::1]:443');
    expect(options.headers).toMatchObject({ Authorization: 'Bearer sa-token' });
    expect(options.ca).toEqual(Buffer.from(''));
  });

  it.each([
    ['plain HTTP without insecure-skip-tls-verify', '{ server: "http://k.example" }', /HTTP protocol is not allowed/],
    ['a proxy-url', '{ server: "https://k.example", proxy-url: "http://proxy:3128" }', /proxy-url .* is not supported/],
  ])('refuses %s with a clear error', async (_name, cluster, message) => {
    await expect(applied(file('refused', cluster, '{ token: t }'))).rejects.toThrow(message);
  });

  it('refuses a cluster entry without a server, naming it', async () => {
    await expect(loadKubeConfig({ kubeconfig: file('no-server', '{ certificate-authority-data: eA== }', '{ token: t }'), offline: false })).rejects.toThrow(
      /clusters\[0\]\.cluster\.server is missing/,
    );
  });

  it('refuses two files that name the same cluster', async () => {
    const a = kubeconfig('dup-a', 'https://a.example', 'a');
    const b = join(dir, 'dup-b');
    writeFileSync(b, readFileSync(a, 'utf8').replace(/current-context: a/, 'current-context: b').replace(/name: a\b/g, 'name: b'));
    await expect(loadKubeConfig({ kubeconfig: `${a}${delimiter}${b}`, offline: false })).rejects.toThrow(/Duplicate cluster: c-dup-a/);
  });
});
