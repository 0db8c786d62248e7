// The Helm chart, rendered offline: `helm lint --strict` and `helm template` for each certificate mode
// and option set, with the rendered objects parsed and checked against the contract the chart promises
// (docs/kubernetes.md §4: a webhook that can never lock itself out, least-privilege RBAC, a restricted pod,
// a policy the server accepts). Nothing here talks to the apiserver; the live `helm install` lives in
// its own file. It needs the helm binary, which hack/build-binaries.sh builds (or TEST_ASSET_HELM names).
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { parsePolicyText } from '../../src/config/policy-file.js';
import { pinnedVersions, REPO_ROOT, resolveBinary } from './harness/binaries.js';

const execFileAsync = promisify(execFile);

const CHART = join(REPO_ROOT, 'charts/sandbox-webhook');
const RELEASE = 'sw';
const NAMESPACE = 'sandbox-webhook';
const FULLNAME = `${RELEASE}-sandbox-webhook`;

type Values = Record<string, unknown>;

interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [field: string]: unknown;
}

interface LabelSelectorRequirement {
  key: string;
  operator: string;
  values?: string[];
}

interface MutatingWebhook {
  name: string;
  admissionReviewVersions: string[];
  sideEffects: string;
  failurePolicy: string;
  matchPolicy: string;
  reinvocationPolicy: string;
  timeoutSeconds: number;
  rules: { apiGroups: string[]; apiVersions: string[]; operations: string[]; resources: string[]; scope: string }[];
  namespaceSelector: { matchLabels?: Record<string, string>; matchExpressions?: LabelSelectorRequirement[] };
  objectSelector?: unknown;
  clientConfig: { url?: string; service?: { name: string; namespace: string; path: string; port: number }; caBundle?: string };
}

interface Container {
  name: string;
  image: string;
  args?: string[];
  env: { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  ports: { name: string; containerPort: number }[];
  livenessProbe: { httpGet: { path: string; port: string | number; scheme: string } };
  readinessProbe: { httpGet: { path: string; port: string | number; scheme: string } };
  resources: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext: {
    runAsNonRoot?: boolean;
    runAsUser?: number;
    allowPrivilegeEscalation?: boolean;
    privileged?: boolean;
    readOnlyRootFilesystem?: boolean;
    capabilities?: { drop?: string[]; add?: string[] };
    seccompProfile?: { type: string };
  };
  volumeMounts: { name: string; mountPath: string; subPath?: string }[];
}

interface PodSpec {
  serviceAccountName: string;
  automountServiceAccountToken?: boolean;
  priorityClassName?: string;
  terminationGracePeriodSeconds: number;
  securityContext: { runAsNonRoot?: boolean; runAsUser?: number; runAsGroup?: number; seccompProfile?: { type: string } };
  affinity?: { podAntiAffinity?: { preferredDuringSchedulingIgnoredDuringExecution?: { podAffinityTerm: { topologyKey: string } }[] } };
  topologySpreadConstraints?: { topologyKey: string; labelSelector?: { matchLabels: Record<string, string> } }[];
  containers: Container[];
  volumes: { name: string; configMap?: { name: string }; secret?: { secretName: string } }[];
}

interface Deployment extends Manifest {
  spec: { replicas: number; selector: { matchLabels: Record<string, string> }; template: { spec: PodSpec } };
}

interface PolicyRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}

interface Rendered {
  all: Manifest[];
  /** The only object of this kind (fails the test when there is not exactly one). */
  one<T extends Manifest = Manifest>(kind: string): T;
  /** Every object of this kind. */
  every<T extends Manifest = Manifest>(kind: string): T[];
  /** The MutatingWebhookConfiguration: the manifest (registration helm), or the one in the ConfigMap the replicas apply (server). */
  configuration(): Manifest & { webhooks: MutatingWebhook[] };
  /** Its pods webhook (the first). */
  webhook(): MutatingWebhook;
  deployment(): Deployment;
  configMap(suffix: string): Manifest & { data: Record<string, string> };
}

function parseManifests(text: string): Manifest[] {
  return parseAllDocuments(text)
    .map((doc) => doc.toJS() as Manifest | null)
    .filter((doc): doc is Manifest => doc !== null);
}

function rendered(text: string): Rendered {
  const all = parseManifests(text);
  const every = <T extends Manifest>(kind: string): T[] => all.filter((m) => m.kind === kind) as T[];
  const one = <T extends Manifest>(kind: string): T => {
    const found = every<T>(kind);
    if (found.length !== 1) throw new Error(`expected one ${kind}, rendered ${found.length}`);
    return found[0] as T;
  };
  const configMap = (suffix: string): Manifest & { data: Record<string, string> } => {
    const found = every<Manifest & { data: Record<string, string> }>('ConfigMap').find((m) => m.metadata.name === `${FULLNAME}-${suffix}`);
    if (!found) throw new Error(`no ConfigMap ${FULLNAME}-${suffix}`);
    return found;
  };
  const configuration = (): Manifest & { webhooks: MutatingWebhook[] } => {
    const manifests = every<Manifest & { webhooks: MutatingWebhook[] }>('MutatingWebhookConfiguration');
    if (manifests.length === 1) return manifests[0] as Manifest & { webhooks: MutatingWebhook[] };
    expect(manifests).toEqual([]);
    return parse(configMap('webhook').data['mutatingwebhookconfiguration.yaml'] ?? '') as Manifest & { webhooks: MutatingWebhook[] };
  };
  return {
    all,
    one,
    every,
    configuration,
    webhook: () => configuration().webhooks[0] as MutatingWebhook,
    deployment: () => one<Deployment>('Deployment'),
    configMap,
  };
}

let helmPath = '';
let workDir = '';
let valuesFileCount = 0;
/** The CA of a chart-generated certificate, as PEM: a real CA for the existingSecret cases. */
let somePemCa = '';

function valuesFile(values: Values): string {
  valuesFileCount += 1;
  const path = join(workDir, `values-${valuesFileCount}.json`);
  writeFileSync(path, JSON.stringify(values));
  return path;
}

interface HelmResult {
  code: number;
  stdout: string;
  stderr: string;
}

async function helm(args: readonly string[]): Promise<HelmResult> {
  try {
    const { stdout, stderr } = await execFileAsync(helmPath, args, { maxBuffer: 64 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failure = error as { code?: number; stdout?: string; stderr?: string };
    if (typeof failure.code !== 'number') throw error;
    return { code: failure.code, stdout: failure.stdout ?? '', stderr: failure.stderr ?? '' };
  }
}

/** Without a cluster helm assumes an old Kubernetes: name ours. Hooks (cleanup, helm test) are left out but where asked for. */
/** The CRD-served APIs the optional objects need, as a cluster with cert-manager and the Prometheus Operator serves them. */
const WITH_CRDS = ['--api-versions', 'cert-manager.io/v1', '--api-versions', 'monitoring.coreos.com/v1'];

function templateArgs(values: Values, namespace = NAMESPACE, extra: readonly string[] = ['--no-hooks', ...WITH_CRDS]): string[] {
  return ['template', RELEASE, CHART, '--namespace', namespace, '--kube-version', pinnedVersions().kubernetes, '-f', valuesFile(values), ...extra];
}

async function template(values: Values = {}, namespace = NAMESPACE, extra?: readonly string[]): Promise<Rendered> {
  const result = await helm(templateArgs(values, namespace, extra));
  if (result.code !== 0) throw new Error(`helm template failed (exit ${result.code}):\n${result.stderr}`);
  return rendered(result.stdout);
}

function decodeBase64(text: string): string {
  return Buffer.from(text, 'base64').toString('utf8');
}

function existingSecretValues(): Values {
  return { certificates: { mode: 'existingSecret', existingSecret: { name: 'webhook-tls', caBundle: somePemCa } } };
}

function excludedNamespaces(webhook: MutatingWebhook): string[] {
  const requirement = webhook.namespaceSelector.matchExpressions?.find((e) => e.key === 'kubernetes.io/metadata.name');
  expect(requirement?.operator).toBe('NotIn');
  return requirement?.values ?? [];
}

beforeAll(async () => {
  const resolved = resolveBinary('helm');
  if (!resolved) {
    throw new Error('helm not found: run hack/build-binaries.sh, or set TEST_ASSET_HELM to a helm v3 binary');
  }
  helmPath = resolved.path;
  workDir = mkdtempSync(join(tmpdir(), 'sandbox-webhook-chart-'));
  const generated = await template();
  const secret = generated.one<Manifest & { data: Record<string, string> }>('Secret');
  somePemCa = decodeBase64(secret.data['ca.crt'] ?? '');
});

afterAll(() => {
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

describe('helm lint --strict', () => {
  const cases: { name: string; values: () => Values }[] = [
    { name: 'the default values lint clean', values: () => ({}) },
    { name: 'certificates.mode=generate lints clean', values: () => ({ certificates: { mode: 'generate' } }) },
    { name: 'certificates.mode=certManager lints clean', values: () => ({ certificates: { mode: 'certManager' } }) },
    {
      name: 'certificates.mode=certManager with an existing issuer lints clean',
      values: () => ({
        certificates: { mode: 'certManager', certManager: { issuerRef: { name: 'cluster-ca', kind: 'ClusterIssuer' } } },
      }),
    },
    { name: 'certificates.mode=existingSecret with a Secret and a caBundle lints clean', values: existingSecretValues },
    {
      name: 'every optional resource switched on lints clean',
      values: () => ({
        runtimeClass: { create: true, scheduling: { nodeSelector: { 'sandbox-webhook.io/runsc': 'true' } } },
        networkPolicy: { enabled: true },
        grafanaDashboard: { enabled: true },
        hostNetwork: true,
        service: { ipFamilyPolicy: 'PreferDualStack', ipFamilies: ['IPv6', 'IPv4'] },
      }),
    },
  ];
  for (const { name, values } of cases) {
    it(name, async () => {
      const result = await helm(['lint', '--strict', CHART, '--namespace', NAMESPACE, '--kube-version', pinnedVersions().kubernetes, '-f', valuesFile(values())]);
      expect(result.stderr + result.stdout).toContain('0 chart(s) failed');
      expect(result.code).toBe(0);
    });
  }
});

describe('the MutatingWebhookConfiguration', () => {
  const modes: { name: string; values: () => Values }[] = [
    { name: 'with a generated certificate', values: () => ({}) },
    { name: 'with cert-manager', values: () => ({ certificates: { mode: 'certManager' } }) },
    { name: 'with an existing Secret', values: existingSecretValues },
  ];

  for (const { name, values } of modes) {
    it(`${name}, is never called for kube-system or its own namespace`, async () => {
      const webhook = (await template(values())).webhook();
      expect(excludedNamespaces(webhook)).toEqual(expect.arrayContaining(['kube-system', NAMESPACE]));
    });
  }

  for (const { name, values } of modes) {
    it(`${name}, follows the contract: pods CREATE and UPDATE, ephemeral containers, v1, no side effects, reinvoked if needed`, async () => {
      const webhook = (await template(values())).webhook();
      expect(webhook.name).toBe('sandbox.sandbox-webhook.io');
      expect(webhook.name.split('.').length).toBeGreaterThanOrEqual(3);
      expect(webhook.admissionReviewVersions).toEqual(['v1']);
      expect(webhook.sideEffects).toBe('None');
      expect(webhook.matchPolicy).toBe('Equivalent');
      expect(webhook.reinvocationPolicy).toBe('IfNeeded');
      expect(webhook.failurePolicy).toBe('Fail');
      expect(webhook.timeoutSeconds).toBe(5);
      expect(webhook.rules).toEqual([
        { apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE', 'UPDATE'], resources: ['pods'], scope: 'Namespaced' },
        { apiGroups: [''], apiVersions: ['v1'], operations: ['UPDATE'], resources: ['pods/ephemeralcontainers'], scope: 'Namespaced' },
      ]);
      // Pod labels belong to tenants: they must never exempt a pod (docs/kubernetes.md §4).
      expect(webhook.objectSelector).toBeUndefined();
    });
  }

  for (const { name, values } of modes) {
    it(`${name}, calls the chart Service on /mutate, which forwards 443 to the https port 8443`, async () => {
      const chart = await template(values());
      const webhook = chart.webhook();
      expect(webhook.clientConfig.url).toBeUndefined();
      expect(webhook.clientConfig.service).toEqual({ name: FULLNAME, namespace: NAMESPACE, path: '/mutate', port: 443 });
      const service = chart.every<Manifest & { spec: { ports: { port: number; targetPort: string }[] } }>('Service').find((m) => m.metadata.name === FULLNAME);
      if (!service) throw new Error('no webhook Service');
      expect(service.metadata.name).toBe(FULLNAME);
      expect(service.spec.ports).toEqual([expect.objectContaining({ port: 443, targetPort: 'https' })]);
      const container = chart.deployment().spec.template.spec.containers[0];
      expect(container?.ports).toEqual([
        expect.objectContaining({ name: 'https', containerPort: 8443 }),
        expect.objectContaining({ name: 'metrics', containerPort: 8080 }),
      ]);
    });
  }

  it('with a generated certificate, registers with exactly the CA stored in the Secret, which signed a certificate for the Service', async () => {
    const chart = await template();
    const webhook = chart.webhook();
    const secret = chart.one<Manifest & { type: string; data: Record<string, string> }>('Secret');
    expect(secret.type).toBe('kubernetes.io/tls');
    // The replicas write the caBundle from the mounted ca.crt of that Secret.
    expect(webhook.clientConfig.caBundle).toBeUndefined();
    const container = chart.deployment().spec.template.spec.containers[0] as Container;
    expect(container.env).toContainEqual({ name: 'CA_BUNDLE_FILE', value: '/etc/sandbox-webhook/tls/ca.crt' });
    const tlsVolume = chart.deployment().spec.template.spec.volumes.find((v) => v.name === 'tls') as { secret?: { items?: { key: string }[] } } | undefined;
    expect(tlsVolume?.secret?.items?.map((i) => i.key)).toEqual(['tls.crt', 'tls.key', 'ca.crt']);
    expect((await template({ webhook: { registration: 'helm' } })).webhook().clientConfig.caBundle).toBeDefined();
    const ca = new X509Certificate(decodeBase64(secret.data['ca.crt'] ?? ''));
    const serving = new X509Certificate(decodeBase64(secret.data['tls.crt'] ?? ''));
    expect(ca.ca).toBe(true);
    expect(serving.verify(ca.publicKey)).toBe(true);
    // The apiserver dials <service>.<namespace>.svc (docs/kubernetes.md §4).
    expect(serving.checkHost(`${FULLNAME}.${NAMESPACE}.svc`)).toBe(`${FULLNAME}.${NAMESPACE}.svc`);
    expect(decodeBase64(secret.data['tls.key'] ?? '')).toContain('PRIVATE KEY');
    const volume = chart.deployment().spec.template.spec.volumes.find((v) => v.name === 'tls');
    expect(volume?.secret?.secretName).toBe(secret.metadata.name);
  });

  it('with cert-manager and registration by Helm, leaves the caBundle to the cainjector, pointed at the serving Certificate', async () => {
    const chart = await template({ certificates: { mode: 'certManager' }, webhook: { registration: 'helm' } });
    const webhook = chart.webhook();
    expect(webhook.clientConfig.caBundle).toBeUndefined();
    const annotation = chart.one('MutatingWebhookConfiguration').metadata.annotations?.['cert-manager.io/inject-ca-from'];
    const certificates = chart.every<Manifest & { spec: { secretName: string; isCA?: boolean; dnsNames?: string[] } }>('Certificate');
    const serving = certificates.find((c) => !c.spec.isCA);
    expect(annotation).toBe(`${NAMESPACE}/${serving?.metadata.name ?? '?'}`);
    expect(serving?.spec.dnsNames).toContain(`${FULLNAME}.${NAMESPACE}.svc`);
    expect(certificates.filter((c) => c.spec.isCA)).toHaveLength(1);
    expect(chart.every('Issuer')).toHaveLength(2);
    expect(chart.every('Secret')).toHaveLength(0);
    const volume = chart.deployment().spec.template.spec.volumes.find((v) => v.name === 'tls');
    expect(volume?.secret?.secretName).toBe(serving?.spec.secretName);
  });

  it('with cert-manager and an existing issuer, makes only the serving Certificate', async () => {
    const chart = await template({
      certificates: { mode: 'certManager', certManager: { issuerRef: { name: 'cluster-ca', kind: 'ClusterIssuer', group: 'cert-manager.io' } } },
    });
    expect(chart.every('Issuer')).toHaveLength(0);
    const serving = chart.one<Manifest & { spec: { issuerRef: unknown } }>('Certificate');
    expect(serving.spec.issuerRef).toEqual({ name: 'cluster-ca', kind: 'ClusterIssuer', group: 'cert-manager.io' });
  });

  it('with an existing Secret, registers with the given CA and mounts that Secret', async () => {
    const chart = await template(existingSecretValues());
    expect(chart.configMap('webhook').data['ca.crt']?.trim()).toBe(somePemCa.trim());
    expect(chart.deployment().spec.template.spec.containers[0]?.env).toContainEqual({ name: 'CA_BUNDLE_FILE', value: '/etc/sandbox-webhook/registration/ca.crt' });
    const byHelm = await template({ ...existingSecretValues(), webhook: { registration: 'helm' } });
    expect(decodeBase64(byHelm.webhook().clientConfig.caBundle ?? '')).toBe(somePemCa);
    expect(chart.every('Secret')).toHaveLength(0);
    const volume = chart.deployment().spec.template.spec.volumes.find((v) => v.name === 'tls');
    expect(volume?.secret?.secretName).toBe('webhook-tls');
  });

  const options: { name: string; values: Values; check: (webhook: MutatingWebhook) => void }[] = [
    {
      name: 'failurePolicy is configurable',
      values: { webhook: { failurePolicy: 'Ignore' } },
      check: (webhook) => expect(webhook.failurePolicy).toBe('Ignore'),
    },
    {
      name: 'timeoutSeconds is configurable',
      values: { webhook: { timeoutSeconds: 12 } },
      check: (webhook) => expect(webhook.timeoutSeconds).toBe(12),
    },
    {
      name: 'excludedNamespaces are added to the fixed exclusions',
      values: { webhook: { excludedNamespaces: ['monitoring', 'kube-system'] } },
      check: (webhook) => expect(excludedNamespaces(webhook)).toEqual(['kube-system', NAMESPACE, 'monitoring']),
    },
    {
      name: 'webhook.url replaces the service reference',
      values: { webhook: { url: 'https://127.0.0.1:9443/mutate' } },
      check: (webhook) => {
        expect(webhook.clientConfig.url).toBe('https://127.0.0.1:9443/mutate');
        expect(webhook.clientConfig.service).toBeUndefined();
      },
    },
  ];
  for (const { name, values, check } of options) {
    it(name, async () => {
      check((await template(values)).webhook());
    });
  }

  it('excludes whatever namespace the release is installed into', async () => {
    expect(excludedNamespaces((await template({}, 'platform-admission')).webhook())).toEqual(['kube-system', 'platform-admission']);
  });

  it('with webhook.url and a generated certificate, certifies the URL host', async () => {
    const chart = await template({ webhook: { url: 'https://127.0.0.1:9443/mutate' } });
    const secret = chart.one<Manifest & { data: Record<string, string> }>('Secret');
    const serving = new X509Certificate(decodeBase64(secret.data['tls.crt'] ?? ''));
    expect(serving.checkIP('127.0.0.1')).toBe('127.0.0.1');
  });
});

describe('the Deployment', () => {
  it('runs under the restricted Pod Security Standard', async () => {
    const pod = (await template()).deployment().spec.template.spec;
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(pod.securityContext.runAsUser).toBe(65532);
    expect(pod.securityContext.seccompProfile).toEqual({ type: 'RuntimeDefault' });
    expect(pod.containers).toHaveLength(1);
    const container = pod.containers[0] as Container;
    expect(container.securityContext).toMatchObject({
      runAsNonRoot: true,
      allowPrivilegeEscalation: false,
      privileged: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(container.securityContext.capabilities?.add).toBeUndefined();
    expect(Number.isInteger(container.securityContext.runAsUser)).toBe(true);
  });

  it('probes /healthz for liveness and /readyz for readiness over HTTPS', async () => {
    const container = (await template()).deployment().spec.template.spec.containers[0] as Container;
    expect(container.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'https', scheme: 'HTTPS' });
    expect(container.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'https', scheme: 'HTTPS' });
  });

  it('runs two spread replicas with resources, a service account token, POD_NAMESPACE and a 30 s grace period', async () => {
    const deployment = (await template()).deployment();
    expect(deployment.spec.replicas).toBe(2);
    const pod = deployment.spec.template.spec;
    expect(pod.automountServiceAccountToken).toBe(true);
    expect(pod.serviceAccountName).toBe(FULLNAME);
    expect(pod.terminationGracePeriodSeconds).toBe(30);
    // A fail-closed webhook must not be preempted by tenant pods; throttling it would turn into denials.
    expect(pod.priorityClassName).toBe('system-cluster-critical');
    const term = pod.affinity?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution?.[0]?.podAffinityTerm;
    expect(term?.topologyKey).toBe('kubernetes.io/hostname');
    expect(pod.topologySpreadConstraints?.[0]?.labelSelector?.matchLabels).toEqual(deployment.spec.selector.matchLabels);
    const container = pod.containers[0] as Container;
    expect(container.resources.requests).toMatchObject({ cpu: expect.any(String), memory: expect.any(String) });
    expect(container.resources.limits).toEqual({ memory: expect.any(String) });
    expect(container.env).toContainEqual({ name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } });
    expect(container.image).toBe('sandbox-webhook:0.1.0');
  });

  it('points the server at the mounted policy and certificate, mounted whole so that updates reach it', async () => {
    const chart = await template();
    const container = chart.deployment().spec.template.spec.containers[0] as Container;
    const env = Object.fromEntries(container.env.filter((e) => e.value !== undefined).map((e) => [e.name, e.value]));
    expect(env).toMatchObject({
      PORT: '8443',
      POLICY_FILE: '/etc/sandbox-webhook/policy/policy.yaml',
      TLS_CERT_FILE: '/etc/sandbox-webhook/tls/tls.crt',
      TLS_KEY_FILE: '/etc/sandbox-webhook/tls/tls.key',
      LOG_LEVEL: 'info',
      REQUEST_TIMEOUT_MS: '2500',
      SHUTDOWN_DELAY_SECONDS: '5',
      HOST: '0.0.0.0',
      METRICS_PORT: '8080',
      WEBHOOK_CONFIGURATION_FILE: '/etc/sandbox-webhook/registration/mutatingwebhookconfiguration.yaml',
    });
    // A subPath mount is never updated by the kubelet, which would defeat the hot reload.
    expect(container.volumeMounts.filter((m) => m.subPath !== undefined)).toEqual([]);
    const volumes = chart.deployment().spec.template.spec.volumes;
    expect(volumes.find((v) => v.name === 'policy')?.configMap?.name).toBe(chart.configMap('policy').metadata.name);
  });

  it('tells the server to answer within half the apiserver timeout, so that its own fail-closed answer decides', async () => {
    const container = (await template({ webhook: { timeoutSeconds: 2 } })).deployment().spec.template.spec.containers[0] as Container;
    expect(container.env).toContainEqual({ name: 'REQUEST_TIMEOUT_MS', value: '1000' });
  });

  it('takes image, digest and priority class from values', async () => {
    const digest = `sha256:${'a'.repeat(64)}`;
    const pod = (
      await template({ image: { repository: 'registry.example.com/sandbox-webhook', digest }, priorityClassName: 'system-cluster-critical' })
    ).deployment().spec.template.spec;
    expect(pod.containers[0]?.image).toBe(`registry.example.com/sandbox-webhook@${digest}`);
    expect(pod.priorityClassName).toBe('system-cluster-critical');
  });

  const budgets: { name: string; values: Values; expected: number | undefined }[] = [
    { name: 'two replicas get a PodDisruptionBudget of minAvailable 1', values: {}, expected: 1 },
    { name: 'three replicas get a PodDisruptionBudget of minAvailable 1', values: { replicaCount: 3 }, expected: 1 },
    { name: 'one replica gets no PodDisruptionBudget (it would block every drain)', values: { replicaCount: 1 }, expected: undefined },
    { name: 'podDisruptionBudget.enabled=false gets none', values: { podDisruptionBudget: { enabled: false } }, expected: undefined },
  ];
  for (const { name, values, expected } of budgets) {
    it(name, async () => {
      const budgetsRendered = (await template(values)).every<Manifest & { spec: { minAvailable: number } }>('PodDisruptionBudget');
      expect(budgetsRendered.map((b) => b.spec.minAvailable)).toEqual(expected === undefined ? [] : [expected]);
    });
  }
});

describe('RBAC', () => {
  it('grants exactly get, list and watch on namespaces and runtimeclasses, to the chart service account', async () => {
    const chart = await template();
    const role = chart.one<Manifest & { rules: PolicyRule[] }>('ClusterRole');
    const normalised = role.rules
      .map((r) => ({ apiGroups: [...r.apiGroups].sort(), resources: [...r.resources].sort(), verbs: [...r.verbs].sort() }))
      .sort((a, b) => a.resources.join().localeCompare(b.resources.join()));
    expect(normalised).toEqual([
      { apiGroups: ['rbac.authorization.k8s.io'], resources: ['clusterroles'], verbs: ['get'] },
      { apiGroups: ['admissionregistration.k8s.io'], resources: ['mutatingwebhookconfigurations'], verbs: ['create', 'delete', 'get', 'patch'] },
      { apiGroups: [''], resources: ['namespaces'], verbs: ['get', 'list', 'watch'] },
      { apiGroups: ['node.k8s.io'], resources: ['runtimeclasses'], verbs: ['get', 'list', 'watch'] },
    ]);
    // Self-registration touches only its own configuration and reads only its own role.
    for (const rule of role.rules.filter((r) => r.resources.includes('mutatingwebhookconfigurations') || r.resources.includes('clusterroles'))) {
      expect((rule as PolicyRule & { resourceNames?: string[] }).resourceNames).toEqual([FULLNAME]);
    }
    const binding = chart.one<Manifest & { roleRef: { name: string }; subjects: unknown[] }>('ClusterRoleBinding');
    expect(binding.roleRef.name).toBe(role.metadata.name);
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: FULLNAME, namespace: NAMESPACE }]);
    const roles = chart.every<Manifest & { rules: PolicyRule[] }>('Role');
    expect(roles.map((r) => [r.metadata.namespace, r.rules])).toEqual([[NAMESPACE, [{ apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['list'] }]]]);
    const registrationByHelm = await template({ webhook: { registration: 'helm' } });
    expect(registrationByHelm.one<Manifest & { rules: PolicyRule[] }>('ClusterRole').rules).toHaveLength(2);
    expect(registrationByHelm.every('Role')).toEqual([]);
  });
});

describe('the policy ConfigMap', () => {
  async function renderedPolicy(values: Values = {}, namespace = NAMESPACE): Promise<string> {
    const configMap = (await template(values, namespace)).configMap('policy');
    return configMap.data['policy.yaml'] ?? '';
  }

  it('holds a SandboxPolicy that the server loads without errors or warnings', async () => {
    const result = parsePolicyText(await renderedPolicy());
    expect(result.warnings).toEqual([]);
    if (!result.ok) throw new Error(result.errors.join('\n'));
    expect(result.policy).toMatchObject({ runtimeClassName: 'gvisor', mode: 'enforce', defaultAction: 'sandbox', onConflict: 'deny' });
  });

  it('allows the system namespaces and the release namespace first, then sandboxes everything else', async () => {
    const result = parsePolicyText(await renderedPolicy({}, 'platform-admission'));
    if (!result.ok) throw new Error(result.errors.join('\n'));
    expect(result.policy.rules).toHaveLength(1);
    const first = result.policy.rules[0];
    expect(first?.action).toBe('allow');
    expect(first?.match.namespaces?.map((glob) => glob.source)).toEqual([
      'kube-system',
      'kube-public',
      'kube-node-lease',
      'platform-admission',
    ]);
    expect(result.policy.defaultAction).toBe('sandbox');
  });

  it('keeps the rules from values, in order, after the chart rule', async () => {
    const rules = [
      { name: 'platform-images', match: { namespaces: ['platform-*'], allImages: ['registry.example.com/platform/**'] }, action: 'allow' },
      {
        name: 'tenants',
        match: { namespaceSelector: { matchLabels: { 'sandbox-webhook.io/tenant': 'true' } } },
        action: 'sandbox',
        runtimeClassName: 'kata',
      },
      { name: 'crypto-miners', match: { anyImage: ['docker.io/**/xmrig*'] }, action: 'deny' },
    ];
    const result = parsePolicyText(
      await renderedPolicy({ policy: { rules, mode: 'enforce', onConflict: 'override' }, webhook: { excludedNamespaces: ['monitoring'] } }),
    );
    if (!result.ok) throw new Error(result.errors.join('\n'));
    expect(result.policy.onConflict).toBe('override');
    expect(result.policy.rules.map((r) => r.name)).toEqual(['chart-exempt-namespaces', 'platform-images', 'tenants', 'crypto-miners']);
    expect(result.policy.rules[0]?.match.namespaces?.map((glob) => glob.source)).toContain('monitoring');
    expect(result.policy.rules[2]?.runtimeClassName).toBe('kata');
  });
});

describe('values that the chart refuses', () => {
  const refusals: { name: string; values: () => Values; message: RegExp }[] = [
    {
      name: 'existingSecret without a caBundle fails, saying what to supply',
      values: () => ({ certificates: { mode: 'existingSecret', existingSecret: { name: 'webhook-tls' } } }),
      message: /certificates\.existingSecret\.caBundle is required when certificates\.mode is existingSecret/,
    },
    {
      name: 'existingSecret without a Secret name fails',
      values: () => ({ certificates: { mode: 'existingSecret', existingSecret: { caBundle: somePemCa } } }),
      message: /certificates\.existingSecret\.name is required/,
    },
    {
      name: 'a base64 caBundle fails, since the chart encodes the PEM itself',
      values: () => ({ certificates: { mode: 'existingSecret', existingSecret: { name: 'x', caBundle: Buffer.from(somePemCa).toString('base64') } } }),
      message: /caBundle must be a PEM certificate/,
    },
    {
      name: 'an existingSecret name outside existingSecret mode fails',
      values: () => ({ certificates: { existingSecret: { name: 'x' } } }),
      message: /certificates\.existingSecret\.name is set but certificates\.mode is generate/,
    },
    { name: 'an unknown certificates mode is rejected by the schema', values: () => ({ certificates: { mode: 'vault' } }), message: /certificates\/mode/ },
    { name: 'policy.mode bogus is rejected by the schema', values: () => ({ policy: { mode: 'bogus' } }), message: /policy\/mode.*enforce.*audit/ },
    { name: 'policy.onConflict outside deny|override is rejected', values: () => ({ policy: { onConflict: 'ignore' } }), message: /policy\/onConflict/ },
    { name: 'policy.incompatible outside deny|warn is rejected', values: () => ({ policy: { incompatible: 'allow' } }), message: /policy\/incompatible/ },
    { name: 'policy.defaultAction outside sandbox|allow|deny is rejected', values: () => ({ policy: { defaultAction: 'maybe' } }), message: /policy\/defaultAction/ },
    {
      name: 'a rule action outside sandbox|allow|deny is rejected',
      values: () => ({ policy: { rules: [{ name: 'r', match: {}, action: 'permit' }] } }),
      message: /policy\/rules\/0\/action/,
    },
    {
      name: 'an unknown field in a rule match is rejected',
      values: () => ({ policy: { rules: [{ name: 'r', match: { images: ['x'] }, action: 'allow' }] } }),
      message: /policy\/rules\/0\/match.*additional properties 'images'/,
    },
    { name: 'an unknown policy field is rejected', values: () => ({ policy: { extra: true } }), message: /policy.*additional properties 'extra'/ },
    {
      name: 'two rules with one name are rejected',
      values: () => ({ policy: { rules: [{ name: 'r', action: 'allow' }, { name: 'r', action: 'deny' }] } }),
      message: /rule name "r" is used twice/,
    },
    {
      name: 'a runtimeClassName on an allow rule is rejected',
      values: () => ({ policy: { rules: [{ name: 'r', action: 'allow', runtimeClassName: 'kata' }] } }),
      message: /only a sandbox rule injects a RuntimeClass/,
    },
    { name: 'timeoutSeconds 60 is rejected (1-30)', values: () => ({ webhook: { timeoutSeconds: 60 } }), message: /webhook\/timeoutSeconds.*maximum/ },
    { name: 'timeoutSeconds 0 is rejected (1-30)', values: () => ({ webhook: { timeoutSeconds: 0 } }), message: /webhook\/timeoutSeconds.*minimum/ },
    { name: 'a failurePolicy other than Fail|Ignore is rejected', values: () => ({ webhook: { failurePolicy: 'Retry' } }), message: /webhook\/failurePolicy/ },
    { name: 'a webhook name of two segments is rejected', values: () => ({ webhook: { name: 'sandbox.io' } }), message: /webhook\/name/ },
    { name: 'a plain http webhook.url is rejected', values: () => ({ webhook: { url: 'http://127.0.0.1:8443/mutate' } }), message: /webhook\/url/ },
    {
      name: 'a webhook.url with a query is rejected',
      values: () => ({ webhook: { url: 'https://127.0.0.1:8443/mutate?x=1' } }),
      message: /webhook\.url must not carry user info, a query or a fragment/,
    },
    {
      name: 'a denying ValidatingAdmissionPolicy with an audit-mode policy is rejected',
      values: () => ({ policy: { mode: 'audit' }, validatingAdmissionPolicy: { validationActions: ['Deny'] } }),
      message: /validationActions contains Deny but policy\.mode is audit/,
    },
    {
      name: 'a shutdown delay as long as the grace period is rejected',
      values: () => ({ shutdownDelaySeconds: 30, terminationGracePeriodSeconds: 30 }),
      message: /shutdownDelaySeconds \(30\) must be less than terminationGracePeriodSeconds/,
    },
    { name: 'an unknown top-level value is rejected', values: () => ({ replicas: 3 }), message: /additional properties 'replicas'/ },
  ];
  for (const { name, values, message } of refusals) {
    it(name, async () => {
      const result = await helm(templateArgs(values()));
      expect(result.code).not.toBe(0);
      expect(result.stderr).toMatch(message);
    });
  }
});

describe('optional resources', () => {
  it('renders no RuntimeClass, NetworkPolicy or ServiceMonitor by default, but the ValidatingAdmissionPolicy', async () => {
    const kinds = (await template()).all.map((m) => m.kind).sort();
    expect(kinds).toEqual(
      [
        'ClusterRole',
        'ClusterRoleBinding',
        'ConfigMap',
        'ConfigMap',
        'Deployment',
        'PodDisruptionBudget',
        'ResourceQuota',
        'Role',
        'RoleBinding',
        'Secret',
        'Service',
        'Service',
        'ServiceAccount',
        'ValidatingAdmissionPolicy',
        'ValidatingAdmissionPolicyBinding',
      ].sort(),
    );
  });

  it('the RuntimeClass runs runsc with overhead and scheduling, and is kept on uninstall', async () => {
    const scheduling = {
      nodeSelector: { 'sandbox-webhook.io/runsc': 'true' },
      tolerations: [{ key: 'sandbox', operator: 'Exists', effect: 'NoSchedule' }],
    };
    const runtimeClass = (await template({ runtimeClass: { create: true, scheduling } })).one<
      Manifest & { handler: string; overhead: { podFixed: Record<string, string> }; scheduling: unknown }
    >('RuntimeClass');
    expect(runtimeClass.metadata.name).toBe('gvisor');
    expect(runtimeClass.handler).toBe('runsc');
    expect(runtimeClass.overhead.podFixed).toEqual({ cpu: '100m', memory: '64Mi' });
    expect(runtimeClass.scheduling).toEqual(scheduling);
    expect(runtimeClass.metadata.annotations?.['helm.sh/resource-policy']).toBe('keep');
  });

  it('the ValidatingAdmissionPolicy denies pods without an accepted class in tenant namespaces, never in the excluded ones', async () => {
    const chart = await template({
      policy: { rules: [{ name: 'kata-tier', match: { namespaces: ['gold-*'] }, action: 'sandbox', runtimeClassName: 'kata' }] },
    });
    const policy = chart.one<
      Manifest & {
        spec: {
          failurePolicy: string;
          matchConstraints: { resourceRules: { operations: string[]; resources: string[] }[] };
          variables: { name: string; expression: string }[];
          validations: { expression: string; message: string }[];
        };
      }
    >('ValidatingAdmissionPolicy');
    expect(policy.apiVersion).toBe('admissionregistration.k8s.io/v1');
    expect(policy.spec.failurePolicy).toBe('Fail');
    expect(policy.spec.matchConstraints.resourceRules).toEqual([expect.objectContaining({ operations: ['CREATE', 'UPDATE'], resources: ['pods', 'pods/ephemeralcontainers'] })]);
    // The webhook's own choices (default class, accepted classes, per-rule classes) all pass the policy.
    expect(JSON.parse(policy.spec.variables.find((v) => v.name === 'accepted')?.expression ?? '[]')).toEqual(['gvisor', 'kata']);
    expect(policy.spec.validations[0]?.expression).toContain('object.spec.runtimeClassName in variables.accepted');
    expect(policy.spec.validations[0]?.message).toContain('must run in a sandbox');

    const binding = chart.one<
      Manifest & {
        spec: {
          policyName: string;
          validationActions: string[];
          matchResources: { namespaceSelector: { matchLabels: Record<string, string>; matchExpressions: LabelSelectorRequirement[] } };
        };
      }
    >('ValidatingAdmissionPolicyBinding');
    expect(binding.spec.policyName).toBe(policy.metadata.name);
    expect(binding.spec.validationActions).toEqual(['Deny']);
    expect(binding.spec.matchResources.namespaceSelector.matchLabels).toEqual({ 'sandbox-webhook.io/tenant': 'true' });
    expect(binding.spec.matchResources.namespaceSelector.matchExpressions).toContainEqual({
      key: 'kubernetes.io/metadata.name',
      operator: 'NotIn',
      values: ['kube-system', NAMESPACE],
    });
  });

  it('the ValidatingAdmissionPolicy only warns and audits with an audit-mode policy, when told so', async () => {
    const chart = await template({ policy: { mode: 'audit' }, validatingAdmissionPolicy: { validationActions: ['Warn', 'Audit'] } });
    const binding = chart.one<Manifest & { spec: { validationActions: string[] } }>('ValidatingAdmissionPolicyBinding');
    expect(binding.spec.validationActions).toEqual(['Warn', 'Audit']);
  });

  it('validatingAdmissionPolicy.enabled=false renders neither policy nor binding', async () => {
    const chart = await template({ validatingAdmissionPolicy: { enabled: false } });
    expect(chart.every('ValidatingAdmissionPolicy')).toEqual([]);
    expect(chart.every('ValidatingAdmissionPolicyBinding')).toEqual([]);
  });

  it('the NetworkPolicy admits 8443 from anywhere, 8080 only from the monitoring namespace, and lets the pods reach only the apiserver', async () => {
    const policy = (await template({ networkPolicy: { enabled: true } })).one<
      Manifest & { spec: { policyTypes: string[]; ingress: { from?: unknown; ports: unknown[] }[]; egress: { to?: unknown; ports: unknown[] }[] } }
    >('NetworkPolicy');
    expect(policy.spec.policyTypes).toEqual(['Ingress', 'Egress']);
    expect(policy.spec.ingress).toEqual([
      { ports: [{ protocol: 'TCP', port: 8443 }] },
      { ports: [{ protocol: 'TCP', port: 8080 }], from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }] },
    ]);
    expect(policy.spec.egress).toEqual([
      {
        ports: [
          { protocol: 'TCP', port: 443 },
          { protocol: 'TCP', port: 6443 },
        ],
      },
    ]);
  });

  it('the ServiceMonitor scrapes /metrics over plain HTTP from the metrics Service, which the webhook Service never exposes', async () => {
    const chart = await template({ serviceMonitor: { enabled: true } });
    const monitor = chart.one<Manifest & { spec: { selector: { matchLabels: Record<string, string> }; endpoints: { port: string; scheme: string; path: string; tlsConfig?: unknown }[] } }>(
      'ServiceMonitor',
    );
    expect(monitor.apiVersion).toBe('monitoring.coreos.com/v1');
    expect(monitor.spec.endpoints).toEqual([expect.objectContaining({ port: 'metrics', scheme: 'http', path: '/metrics' })]);
    const services = chart.every<Manifest & { spec: { ports: { name: string; port: number; targetPort: string }[] } }>('Service');
    const selected = services.filter((svc) => Object.entries(monitor.spec.selector.matchLabels).every(([k, v]) => svc.metadata.labels?.[k] === v));
    expect(selected.map((svc) => [svc.metadata.name, svc.spec.ports.map((p) => p.targetPort)])).toEqual([[`${FULLNAME}-metrics`, ['metrics']]]);
    const webhookService = services.find((svc) => svc.metadata.name === FULLNAME);
    expect(webhookService?.spec.ports.map((p) => p.targetPort)).toEqual(['https']);
  });
});

describe('install safety and operations values', () => {
  it('policy.mode=audit alone renders, and the ValidatingAdmissionPolicy then only warns and audits', async () => {
    const chart = await template({ policy: { mode: 'audit' } });
    expect(chart.one<Manifest & { spec: { validationActions: string[] } }>('ValidatingAdmissionPolicyBinding').spec.validationActions).toEqual(['Warn', 'Audit']);
    expect(chart.configMap('policy').data['policy.yaml']).toContain('mode: audit');
  });

  it('policy.workloads reaches the SandboxPolicy as spec.workloads', async () => {
    expect((await template({ policy: { workloads: 'deny' } })).configMap('policy').data['policy.yaml']).toMatch(/^ {2}workloads: deny$/m);
  });

  it('registers the workloads webhook on the same /mutate path, failurePolicy Ignore, for every pod-making kind', async () => {
    const configuration = (await template()).configuration();
    const workloads = configuration.webhooks[1];
    expect(workloads?.name).toBe('workloads.sandbox-webhook.io');
    expect(workloads?.failurePolicy).toBe('Ignore');
    expect(workloads?.clientConfig).toEqual(configuration.webhooks[0]?.clientConfig);
    expect(workloads?.namespaceSelector).toEqual(configuration.webhooks[0]?.namespaceSelector);
    expect(workloads?.rules.map((r) => [r.apiGroups, r.resources, r.operations])).toEqual([
      [['apps'], ['deployments', 'statefulsets', 'daemonsets', 'replicasets'], ['CREATE', 'UPDATE']],
      [[''], ['replicationcontrollers', 'podtemplates'], ['CREATE', 'UPDATE']],
      [['batch'], ['jobs', 'cronjobs'], ['CREATE', 'UPDATE']],
    ]);
    expect((await template({ webhook: { workloads: { enabled: false } } })).configuration().webhooks).toHaveLength(1);
  });

  it('with registration by the server, Helm renders no MutatingWebhookConfiguration but a ConfigMap the replicas apply, owned by the ClusterRole', async () => {
    const chart = await template();
    expect(chart.every('MutatingWebhookConfiguration')).toEqual([]);
    const configuration = chart.configuration();
    expect(configuration.metadata.name).toBe(FULLNAME);
    expect(configuration.metadata.annotations).toEqual({ 'sandbox-webhook.io/owner-clusterrole': FULLNAME });
    expect(configuration.metadata.labels?.['app.kubernetes.io/managed-by']).toBe('sandbox-webhook');
    expect(chart.one('ClusterRole').metadata.name).toBe(FULLNAME);
  });

  it('global.imageRegistry prefixes the webhook image and the hook images', async () => {
    const chart = await template({ global: { imageRegistry: 'mirror.example.com:5000/k8s' } }, NAMESPACE, [...WITH_CRDS]);
    expect(chart.deployment().spec.template.spec.containers[0]?.image).toBe('mirror.example.com:5000/k8s/sandbox-webhook:0.1.0');
    const hookImages = [
      ...chart.every<Manifest & { spec: { template: { spec: PodSpec } } }>('Job').map((j) => j.spec.template.spec.containers[0]?.image),
      ...chart.every<Manifest & { spec: PodSpec }>('Pod').map((p) => p.spec.containers[0]?.image),
    ];
    expect(hookImages).toEqual(['mirror.example.com:5000/k8s/sandbox-webhook:0.1.0', 'mirror.example.com:5000/k8s/sandbox-webhook:0.1.0']);
  });

  it('hostNetwork runs in the node network with ClusterFirstWithHostNet and the chosen webhook port', async () => {
    const pod = (await template({ hostNetwork: true, containerPorts: { webhook: 10260 } })).deployment().spec.template.spec as PodSpec & { hostNetwork?: boolean; dnsPolicy?: string };
    expect(pod.hostNetwork).toBe(true);
    expect(pod.dnsPolicy).toBe('ClusterFirstWithHostNet');
    expect(pod.containers[0]?.ports[0]).toMatchObject({ name: 'https', containerPort: 10260 });
    expect(pod.containers[0]?.env).toContainEqual({ name: 'PORT', value: '10260' });
  });

  it('an IPv6 or dual-stack Service makes the server listen on ::, and both Services carry the families', async () => {
    const chart = await template({ service: { ipFamilyPolicy: 'PreferDualStack', ipFamilies: ['IPv6', 'IPv4'] } });
    expect(chart.deployment().spec.template.spec.containers[0]?.env).toContainEqual({ name: 'HOST', value: '::' });
    for (const service of chart.every<Manifest & { spec: { ipFamilyPolicy?: string; ipFamilies?: string[] } }>('Service')) {
      expect(service.spec).toMatchObject({ ipFamilyPolicy: 'PreferDualStack', ipFamilies: ['IPv6', 'IPv4'] });
    }
    expect((await template({ listenAddress: '127.0.0.1' })).deployment().spec.template.spec.containers[0]?.env).toContainEqual({ name: 'HOST', value: '127.0.0.1' });
  });

  it('a system-* priority class comes with the ResourceQuota some platforms require; another class without it', async () => {
    const quota = (await template()).one<Manifest & { spec: { scopeSelector: unknown } }>('ResourceQuota');
    expect(quota.spec.scopeSelector).toEqual({ matchExpressions: [{ scopeName: 'PriorityClass', operator: 'In', values: ['system-node-critical', 'system-cluster-critical'] }] });
    expect((await template({ priorityClassName: 'tenant-high' })).every('ResourceQuota')).toEqual([]);
  });

  it('the pre-delete hook deletes exactly the configuration, with the webhook image and a role for that one name', async () => {
    const chart = await template({}, NAMESPACE, [...WITH_CRDS]);
    const job = chart.one<Manifest & { spec: { template: { spec: PodSpec } } }>('Job');
    expect(job.metadata.annotations?.['helm.sh/hook']).toBe('pre-delete');
    expect(job.spec.template.spec.containers[0]?.args).toEqual(['/etc/sandbox-webhook/hooks/hooks.mjs', 'cleanup', FULLNAME]);
    const role = chart.every<Manifest & { rules: (PolicyRule & { resourceNames?: string[] })[] }>('ClusterRole').find((r) => r.metadata.name === `${FULLNAME}-cleanup`);
    expect(role?.rules).toEqual([{ apiGroups: ['admissionregistration.k8s.io'], resources: ['mutatingwebhookconfigurations'], resourceNames: [FULLNAME], verbs: ['delete'] }]);
    expect((await template({ hooks: { webhooksCleanup: { enabled: false } } }, NAMESPACE, [...WITH_CRDS])).every('Job')).toEqual([]);
  });

  const expectations: { name: string; values: Values; expected: string }[] = [
    { name: 'the default policy: the helm test expects the sandbox class', values: {}, expected: 'gvisor' },
    { name: 'audit mode: the helm test expects no class', values: { policy: { mode: 'audit' } }, expected: '' },
    { name: 'an explicit expectation wins', values: { policy: { rules: [{ name: 'r', action: 'allow', match: { namespaces: ['x'] } }] }, validatingAdmissionPolicy: { enabled: false }, hooks: { tests: { expectRuntimeClassName: 'kata' } } }, expected: 'kata' },
  ];
  for (const { name, values, expected } of expectations) {
    it(name, async () => {
      const pod = (await template(values, NAMESPACE, [...WITH_CRDS])).one<Manifest & { spec: PodSpec }>('Pod');
      expect(pod.metadata.annotations?.['helm.sh/hook']).toBe('test');
      expect(pod.metadata.namespace).toBe(NAMESPACE);
      expect(pod.spec.containers[0]?.args).toEqual(['/etc/sandbox-webhook/hooks/hooks.mjs', 'test', `${FULLNAME}-test`, expected]);
    });
  }

  it('the Grafana dashboard ConfigMap is labelled for the sidecar and names this release\'s webhooks', async () => {
    const configMap = (await template({ grafanaDashboard: { enabled: true } })).configMap('dashboard');
    expect(configMap.metadata.labels?.grafana_dashboard).toBe('1');
    const dashboard = JSON.parse(configMap.data['sandbox-webhook.json'] ?? '{}') as { templating: { list: { name: string; query: unknown }[] } };
    expect(dashboard.templating.list.find((v) => v.name === 'webhook')?.query).toBe('sandbox.sandbox-webhook.io|workloads.sandbox-webhook.io');
    expect(dashboard.templating.list.find((v) => v.name === 'timeout_seconds')?.query).toBe('5');
  });

  const refusals: { name: string; values: Values; extra?: string[]; message: RegExp }[] = [
    { name: 'a glob in webhook.excludedNamespaces is refused by the schema', values: { webhook: { excludedNamespaces: ['team-*'] } }, message: /webhook\/excludedNamespaces\/0/ },
    { name: 'a global.imageRegistry with a scheme is refused', values: { global: { imageRegistry: 'https://mirror.example.com' } }, message: /global\/imageRegistry/ },
    { name: 'the metrics port on the webhook port is refused', values: { containerPorts: { metrics: 8443 } }, message: /the metrics port must differ from the webhook port/ },
    {
      name: 'a ValidatingAdmissionPolicy without a namespaceSelector next to an allow rule by images is refused (it cannot tell those pods apart)',
      values: { validatingAdmissionPolicy: { namespaceSelector: null }, policy: { rules: [{ name: 'r', action: 'allow', match: { allImages: ['registry.example.com/**'] } }] } },
      message: /validatingAdmissionPolicy\.namespaceSelector is unset, and policy\.rules\[\d+\] \("r"\) allows pods by labels or images/,
    },
    { name: 'a ServiceMonitor without the Prometheus Operator API is refused, saying how to render it', values: { serviceMonitor: { enabled: true } }, extra: ['--no-hooks'], message: /--api-versions monitoring\.coreos\.com\/v1/ },
    { name: 'certManager mode without cert-manager is refused', values: { certificates: { mode: 'certManager' } }, extra: ['--no-hooks'], message: /install cert-manager first/ },
  ];
  for (const { name, values, extra, message } of refusals) {
    it(name, async () => {
      const result = await helm(templateArgs(values, NAMESPACE, extra));
      expect(result.code).not.toBe(0);
      expect(result.stderr).toMatch(message);
    });
  }

  it('a Kubernetes older than 1.30 is refused by the chart kubeVersion', async () => {
    const result = await helm(['template', RELEASE, CHART, '--namespace', NAMESPACE, '--kube-version', 'v1.29.0']);
    expect(result.stderr).toContain('chart requires kubeVersion: >=1.30.0-0');
  });
});
