// The paths around the CREATE check, tried as a tenant would on a real kube-apiserver
// (docs/design.md, "What a decision does"; docs/kubernetes.md §7): an image swap with `kubectl set
// image`, an ephemeral container with `kubectl debug`, an image volume; the same on a sandboxed pod;
// and, with the webhook down under failurePolicy Ignore, the chart's backstop ValidatingAdmissionPolicy
// (rendered by the real helm) rejecting the image swap on its own.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  pinnedVersions,
  REPO_ROOT,
  createGvisorRuntimeClass,
  createNamespace,
  deleteNamespace,
  loadKubeConfig,
  registerWebhook,
  startWebhook,
  type RunningWebhook,
  type WebhookRegistration,
} from './harness/index.js';
import { setTimeout as sleep } from 'node:timers/promises';

const kc = loadKubeConfig(inject('kubeconfig'));
const core = kc.makeApiClient(CoreV1Api);

const WEBHOOK_NAME = 'security.sandbox-webhook.io';
const CONFIGURATION = 'sandbox-webhook-e2e-security';
const DENIED = `admission webhook "${WEBHOOK_NAME}" denied the request: sandbox-webhook: `;
const TRUSTED = 'registry.k8s.io/pause:3.10';
const UNTRUSTED = 'docker.io/library/busybox:1.36';
const RELEASE = 'sec-e2e';
const VAP_NAME = `${RELEASE}-sandbox-webhook-require-sandbox`;

// Pods in `sec-platform-*` namespaces run unsandboxed when every image is the pause image; every
// other pod is sandboxed; images from evil.example.com are denied everywhere.
const POLICY = `apiVersion: sandbox-webhook.io/v1alpha1
kind: SandboxPolicy
spec:
  defaultAction: sandbox
  rules:
    - name: blocked-registry
      match: { anyImage: ["evil.example.com/**"] }
      action: deny
    - name: platform-images
      match: { namespaces: ["sec-platform-*"], allImages: ["registry.k8s.io/pause"] }
      action: allow
`;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(command: string, args: readonly string[], input?: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(command, args, { env: process.env, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) =>
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
    child.stdin?.end(input ?? '');
  });
}

const kubectl = (...args: string[]): Promise<Run> => run(join(inject('binDir'), 'kubectl'), args);

function pod(name: string, spec: Partial<NonNullable<V1Pod['spec']>> = {}): V1Pod {
  return { metadata: { name }, spec: { containers: [{ name: 'app', image: TRUSTED }], ...spec } };
}

async function create(namespace: string, body: V1Pod): Promise<V1Pod> {
  return core.createNamespacedPod({ namespace, body });
}

const setImage = (namespace: string, name: string, image: string): Promise<Run> => kubectl('set', 'image', '-n', namespace, `pod/${name}`, `app=${image}`);
// No -it: kubectl adds the ephemeral container and returns, as in a script.
const debug = (namespace: string, name: string, image: string): Promise<Run> => kubectl('debug', '-n', namespace, `pod/${name}`, `--image=${image}`, '-c', 'debugger', '--profile=general');

/** `helm template` of the backstop alone, with `values` (JSON is YAML) in a values file. */
async function renderBackstop(values: object): Promise<Run> {
  const dir = mkdtempSync(join(tmpdir(), 'sec-e2e-values-'));
  try {
    writeFileSync(join(dir, 'values.yaml'), JSON.stringify(values));
    return await run(join(inject('binDir'), 'helm'), [
      'template', RELEASE, join(REPO_ROOT, 'charts/sandbox-webhook'), '--namespace', 'sec-e2e-system',
      // The chart declares the Kubernetes versions it supports; helm template without a cluster must be told.
      '--kube-version', pinnedVersions().kubernetes,
      '--show-only', 'templates/validatingadmissionpolicy.yaml', '-f', join(dir, 'values.yaml'),
    ]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function images(namespace: string, name: string): Promise<string[]> {
  const stored = await core.readNamespacedPod({ namespace, name });
  return [...(stored.spec?.containers ?? []), ...(stored.spec?.ephemeralContainers ?? [])].map((c) => c.image ?? '');
}

describe('the paths around the CREATE check, on a real apiserver', () => {
  let platform: string;
  let tenant: string;
  let webhook: RunningWebhook;
  let registration: WebhookRegistration | undefined;

  beforeAll(async () => {
    await createGvisorRuntimeClass(kc);
    // The platform namespace also carries the tenant label the chart's backstop selects by default.
    platform = await createNamespace(kc, 'sec-platform', { 'sandbox-webhook.io/tenant': 'true' });
    tenant = await createNamespace(kc, 'sec-tenant');
    webhook = await startWebhook({ policyYaml: POLICY, kubeconfig: null });
    registration = await registerWebhook(kc, {
      url: `${webhook.url}/mutate`,
      caBundle: webhook.caBundle,
      configurationName: CONFIGURATION,
      webhookName: WEBHOOK_NAME,
      operations: ['CREATE', 'UPDATE'],
      resources: ['pods', 'pods/ephemeralcontainers'],
      probeNamespace: tenant,
    });
  });

  afterAll(async () => {
    await kubectl('delete', 'validatingadmissionpolicybinding,validatingadmissionpolicy', VAP_NAME, '--ignore-not-found');
    await registration?.delete({ waitUntilInactive: false });
    await webhook?.stop();
    for (const ns of [platform, tenant]) if (ns) await deleteNamespace(kc, ns);
  });

  describe('a pod the policy lets run unsandboxed', () => {
    it('is stored without a runtimeClassName', async () => {
      const created = await create(platform, pod('allowed'));
      expect(created.spec?.runtimeClassName).toBeUndefined();
    });

    it('kubectl set image to an untrusted image is rejected with the webhook message naming container, image and rule', async () => {
      const result = await setImage(platform, 'allowed', UNTRUSTED);
      expect(result.code).not.toBe(0);
      expect(result.stderr).toContain(DENIED);
      expect(result.stderr).toContain(`"${UNTRUSTED}" of container "app" (spec.containers[0].image) must run sandboxed`);
      expect(result.stderr).toContain('denied by spec.defaultAction');
      expect(await images(platform, 'allowed')).toEqual([TRUSTED]);
    });

    it('kubectl set image to another trusted image goes through', async () => {
      const result = await setImage(platform, 'allowed', 'registry.k8s.io/pause:3.9');
      expect(result.stderr).toBe('');
      expect(await images(platform, 'allowed')).toEqual(['registry.k8s.io/pause:3.9']);
    });

    it('kubectl debug with an untrusted image is rejected', async () => {
      const result = await debug(platform, 'allowed', UNTRUSTED);
      expect(result.code).not.toBe(0);
      expect(result.stderr).toContain(DENIED);
      expect(result.stderr).toContain(`ephemeral container image "${UNTRUSTED}" of container "debugger"`);
      expect(await images(platform, 'allowed')).toEqual(['registry.k8s.io/pause:3.9']);
    });

    it('a label change is admitted untouched', async () => {
      const result = await kubectl('label', '-n', platform, 'pod/allowed', 'touched=yes');
      expect(result.code).toBe(0);
    });
  });

  describe('image volumes', () => {
    it('a pod with an untrusted image volume is sandboxed', async () => {
      const created = await create(platform, pod('with-image-volume', { volumes: [{ name: 'data', image: { reference: UNTRUSTED } }] }));
      expect(created.spec?.runtimeClassName).toBe('gvisor');
    });

    it('a pod with a denied image volume is denied, naming its path', async () => {
      const denied = await create(platform, pod('with-denied-volume', { volumes: [{ name: 'data', image: { reference: 'evil.example.com/weights:1' } }] })).then(
        () => undefined,
        (error: unknown) => error as { body?: string },
      );
      expect(String(denied?.body)).toContain('spec.volumes[0].image.reference');
    });
  });

  describe('a sandboxed pod', () => {
    it('takes an untrusted image with kubectl set image', async () => {
      const created = await create(tenant, pod('sandboxed'));
      expect(created.spec?.runtimeClassName).toBe('gvisor');
      const result = await setImage(tenant, 'sandboxed', UNTRUSTED);
      expect(result.stderr).toBe('');
      expect(await images(tenant, 'sandboxed')).toEqual([UNTRUSTED]);
    });

    it('takes an untrusted ephemeral container with kubectl debug', async () => {
      const result = await debug(tenant, 'sandboxed', UNTRUSTED);
      expect(result.code).toBe(0);
      expect(await images(tenant, 'sandboxed')).toEqual([UNTRUSTED, UNTRUSTED]);
    });

    it('still refuses a denied image', async () => {
      const result = await setImage(tenant, 'sandboxed', 'evil.example.com/miner:1');
      expect(result.code).not.toBe(0);
      expect(result.stderr).toContain(`${DENIED}pod sandboxed denied by rule "blocked-registry"`);
    });
  });

  describe('with the webhook down under failurePolicy Ignore, the backstop policy alone', () => {
    it('rejects the image swap on an unsandboxed pod, and admits a label change', async () => {
      await create(platform, pod('legacy'));
      // Fail open: the webhook is registered with Ignore and then stopped.
      registration = await registerWebhook(kc, {
        url: `${webhook.url}/mutate`,
        caBundle: webhook.caBundle,
        configurationName: CONFIGURATION,
        webhookName: WEBHOOK_NAME,
        operations: ['CREATE', 'UPDATE'],
        resources: ['pods', 'pods/ephemeralcontainers'],
        failurePolicy: 'Ignore',
        probeNamespace: tenant,
      });
      await webhook.stop();

      const rendered = await renderBackstop({});
      expect(rendered.code, rendered.stderr).toBe(0);
      const applied = await run(join(inject('binDir'), 'kubectl'), ['apply', '-f', '-'], rendered.stdout);
      expect(applied.code, applied.stderr).toBe(0);

      // The apiserver compiles the policy and its binding through informers: wait until a swap is refused,
      // probing with a server-side dry run, which goes through admission and changes nothing (a real swap
      // that got through would leave the pod with the new image, and a swap back would then be refused).
      const probe = (): Promise<Run> => kubectl('set', 'image', '--dry-run=server', '-n', platform, 'pod/legacy', `app=${UNTRUSTED}`);
      for (let i = 0; i < 150 && (await probe()).code === 0; i++) await sleep(200);
      const result = await setImage(platform, 'legacy', UNTRUSTED);
      expect(result.code).not.toBe(0);
      expect(result.stderr).toContain(
        `pods "legacy" is forbidden: ValidatingAdmissionPolicy '${VAP_NAME}' with binding '${VAP_NAME}' denied request: ` +
          'the images of a pod outside a sandbox cannot change in this namespace (runtimeClassName none); recreate the pod with spec.runtimeClassName one of gvisor',
      );
      expect(await images(platform, 'legacy')).toEqual([TRUSTED]);

      const debugged = await debug(platform, 'legacy', UNTRUSTED);
      expect(debugged.code).not.toBe(0);
      expect(debugged.stderr).toContain(`ValidatingAdmissionPolicy '${VAP_NAME}'`);

      const labelled = await kubectl('label', '-n', platform, 'pod/legacy', 'still=manageable');
      expect(labelled.code).toBe(0);
    });
  });
  describe('the backstop policy with its namespaceSelector unset', () => {
    it('does not deny a pod in a namespace the policy exempts by a namespace glob, and denies it elsewhere', async () => {
      await kubectl('delete', 'validatingadmissionpolicybinding,validatingadmissionpolicy', VAP_NAME, '--ignore-not-found');
      const rendered = await renderBackstop({
        validatingAdmissionPolicy: { namespaceSelector: null },
        policy: { rules: [{ name: 'platform', match: { namespaces: ['sec-platform-*'] }, action: 'allow' }] },
      });
      expect(rendered.code, rendered.stderr).toBe(0);
      const applied = await run(join(inject('binDir'), 'kubectl'), ['apply', '-f', '-'], rendered.stdout);
      expect(applied.code, applied.stderr).toBe(0);
      const dryRun = (namespace: string): Promise<unknown> =>
        core.createNamespacedPod({ namespace, dryRun: 'All', body: pod(`probe-${Date.now()}`) }).then(
          () => 'admitted',
          (error: unknown) => String((error as { body?: string }).body),
        );
      let tenantAnswer = await dryRun(tenant);
      for (let i = 0; i < 100 && tenantAnswer === 'admitted'; i++) {
        await sleep(200);
        tenantAnswer = await dryRun(tenant);
      }
      expect(tenantAnswer).toContain(`ValidatingAdmissionPolicy '${VAP_NAME}'`);
      expect(await dryRun(platform)).toBe('admitted');
    });

    it('is a render error when the policy exempts pods by labels or images, which the apiserver cannot tell apart', async () => {
      const rendered = await renderBackstop({
        validatingAdmissionPolicy: { namespaceSelector: null },
        policy: { rules: [{ name: 'trusted-images', match: { allImages: ['registry.example.com/**'] }, action: 'allow' }] },
      });
      expect(rendered.code).not.toBe(0);
      expect(rendered.stderr).toContain('validatingAdmissionPolicy.namespaceSelector is unset, and policy.rules[0] ("trusted-images") allows pods by labels or images');
    });
  });
});
