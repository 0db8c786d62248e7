import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hasReadyEndpoint, parseConfiguration, startRegistration, type RegistrationApi } from '../../src/cluster/registration.js';
import { parseOptions } from '../../src/config/options.js';
import { registrationOptions } from '../../src/config/registration-options.js';

const CA_PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const CONFIGURATION = `apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: rel-sandbox-webhook
  annotations: { sandbox-webhook.io/owner-clusterrole: rel-sandbox-webhook }
webhooks:
  - name: sandbox.sandbox-webhook.io
    clientConfig: { service: { namespace: sw, name: rel-sandbox-webhook, path: /mutate, port: 443 } }
  - name: workloads.sandbox-webhook.io
    clientConfig: { service: { namespace: sw, name: rel-sandbox-webhook, path: /mutate, port: 443 } }
`;

interface Call {
  method: string;
  path: string;
  body?: string;
  contentType?: string;
}

/** An API that answers from a table keyed by method and path prefix, and records every call. */
function fakeApi(answers: { ready: boolean; exists?: boolean; namespaceDeleting?: boolean }): RegistrationApi & { calls: Call[] } {
  const calls: Call[] = [];
  return {
    calls,
    async send(method, path, options) {
      calls.push({ method, path, body: options.body, contentType: options.contentType });
      if (path.startsWith('/apis/discovery.k8s.io/v1/namespaces/sw/endpointslices')) {
        return { status: 200, body: { items: [{ endpoints: [{ conditions: { ready: answers.ready } }] }] } };
      }
      if (path === '/apis/rbac.authorization.k8s.io/v1/clusterroles/rel-sandbox-webhook') {
        return { status: 200, body: { metadata: { uid: 'uid-1' } } };
      }
      if (method === 'PATCH' || method === 'DELETE') return { status: 200, body: {} };
      if (path === '/api/v1/namespaces/sw') {
        return { status: 200, body: { metadata: answers.namespaceDeleting ? { deletionTimestamp: '2026-11-30T07:00:00Z' } : {} } };
      }
      if (path.startsWith('/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/')) {
        return answers.exists === false ? { status: 404, body: { message: 'not found' } } : { status: 200, body: {} };
      }
      return { status: 404, body: { message: 'not found' } };
    },
  };
}

let dir = '';
const logger = pino({ level: 'silent' });
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'registration-'));
  writeFileSync(join(dir, 'configuration.yaml'), CONFIGURATION);
  writeFileSync(join(dir, 'ca.crt'), CA_PEM);
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function options(resyncMs = 60_000) {
  return { configurationFile: join(dir, 'configuration.yaml'), caBundleFile: join(dir, 'ca.crt'), intervalMs: 1000, resyncMs, requestTimeoutMs: 1000 };
}

describe('self-registration', () => {
  it('does nothing, not even a request, while the replica itself is not ready', async () => {
    const api = fakeApi({ ready: true });
    const registration = startRegistration(api, options(), () => false, logger, { loop: false });
    expect(await registration.tick()).toEqual({ state: 'waiting', reason: 'this replica is not ready' });
    expect(api.calls).toEqual([]);
  });

  it('waits while the Service has no ready endpoint, and applies nothing', async () => {
    const api = fakeApi({ ready: false });
    const registration = startRegistration(api, options(), () => true, logger, { loop: false });
    expect(await registration.tick()).toEqual({ state: 'waiting', reason: 'Service sw/rel-sandbox-webhook has no ready endpoint yet' });
    expect(api.calls.filter((c) => c.method !== 'GET')).toEqual([]);
  });

  it('applies the file with the caBundle on every webhook and the ClusterRole as owner, by server-side apply', async () => {
    const api = fakeApi({ ready: true });
    const registration = startRegistration(api, options(), () => true, logger, { loop: false });
    expect((await registration.tick()).state).toBe('registered');
    const patch = api.calls.find((c) => c.method === 'PATCH');
    expect(patch?.path).toBe('/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/rel-sandbox-webhook?fieldManager=sandbox-webhook&force=true');
    expect(patch?.contentType).toBe('application/apply-patch+yaml');
    const applied = JSON.parse(patch?.body ?? '{}') as { metadata: { ownerReferences: unknown[] }; webhooks: { clientConfig: { caBundle: string } }[] };
    expect(applied.metadata.ownerReferences).toEqual([{ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', name: 'rel-sandbox-webhook', uid: 'uid-1' }]);
    expect(applied.webhooks.map((w) => Buffer.from(w.clientConfig.caBundle, 'base64').toString())).toEqual([CA_PEM, CA_PEM]);
  });

  it('applies unchanged content once per resync period, and a changed file at once', async () => {
    const api = fakeApi({ ready: true });
    const registration = startRegistration(api, options(), () => true, logger, { loop: false });
    await registration.tick();
    await registration.tick();
    expect(api.calls.filter((c) => c.method === 'PATCH')).toHaveLength(1);
    writeFileSync(join(dir, 'configuration.yaml'), CONFIGURATION.replace('sandbox.sandbox-webhook.io', 'other.sandbox-webhook.io'));
    await registration.tick();
    expect(api.calls.filter((c) => c.method === 'PATCH')).toHaveLength(2);
  });

  it('stays registered, without applying, while the endpoints come and go after it registered', async () => {
    const answers = { ready: true };
    const api = fakeApi(answers);
    const registration = startRegistration(api, options(0), () => true, logger, { loop: false });
    await registration.tick();
    answers.ready = false;
    expect((await registration.tick()).state).toBe('registered');
    expect(api.calls.filter((c) => c.method === 'PATCH')).toHaveLength(1);
  });

  it('puts an existing configuration back every resync period, but never re-creates one deleted after it applied it', async () => {
    const answers = { ready: true, exists: true };
    const api = fakeApi(answers);
    const registration = startRegistration(api, options(0), () => true, logger, { loop: false });
    await registration.tick();
    await registration.tick();
    expect(api.calls.filter((c) => c.method === 'PATCH')).toHaveLength(2);
    answers.exists = false;
    expect(await registration.tick()).toEqual({ state: 'deleted', name: 'rel-sandbox-webhook' });
    expect(api.calls.filter((c) => c.method === 'PATCH')).toHaveLength(2);
    writeFileSync(join(dir, 'configuration.yaml'), CONFIGURATION.replace('sandbox.sandbox-webhook.io', 'other.sandbox-webhook.io'));
    expect((await registration.tick()).state).toBe('registered');
    expect(api.calls.filter((c) => c.method === 'PATCH')).toHaveLength(3);
  });

  it('deletes the configuration once its own namespace is being deleted, and never applies it again', async () => {
    const answers = { ready: true, namespaceDeleting: false };
    const api = fakeApi(answers);
    const registration = startRegistration(api, { ...options(0), namespace: 'sw' }, () => true, logger, { loop: false });
    expect((await registration.tick()).state).toBe('registered');
    answers.namespaceDeleting = true;
    expect(await registration.tick()).toEqual({ state: 'namespace-deleted', name: 'rel-sandbox-webhook' });
    expect(api.calls.filter((c) => c.method === 'DELETE').map((c) => c.path)).toEqual([
      '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/rel-sandbox-webhook',
    ]);
    await registration.tick();
    expect(api.calls.filter((c) => c.method === 'PATCH')).toHaveLength(1);
  });

  it('reports a CA file without a certificate as a failure and applies nothing', async () => {
    writeFileSync(join(dir, 'ca.crt'), 'not a certificate');
    const api = fakeApi({ ready: true });
    const state = await startRegistration(api, options(), () => true, logger, { loop: false }).tick();
    expect(state).toEqual({ state: 'failed', error: 'the CA bundle file holds no PEM certificate' });
    expect(api.calls.filter((c) => c.method === 'PATCH')).toEqual([]);
  });
});

describe('the configuration file', () => {
  const bad: { name: string; text: string; message: RegExp }[] = [
    { name: 'another kind is refused', text: CONFIGURATION.replace('MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration'), message: /kind: must be MutatingWebhookConfiguration/ },
    { name: 'no webhooks is refused', text: 'apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata: { name: x }\n', message: /webhooks: must list at least one webhook/ },
    { name: 'a webhook without service or url is refused', text: CONFIGURATION.replace(/clientConfig: \{ service.*\n/, 'clientConfig: {}\n'), message: /webhooks\[0\]\.clientConfig: needs service or url/ },
    { name: 'a name that is no DNS subdomain is refused', text: CONFIGURATION.replace('name: rel-sandbox-webhook\n', 'name: Rel_Hook\n'), message: /metadata\.name: must be a DNS subdomain/ },
  ];
  for (const { name, text, message } of bad) {
    it(name, () => {
      expect(() => parseConfiguration(text, 'f.yaml')).toThrow(message);
    });
  }

  it('names the Service every webhook is called through, once', () => {
    expect(parseConfiguration(CONFIGURATION, 'f.yaml').services).toEqual([{ namespace: 'sw', name: 'rel-sandbox-webhook' }]);
  });
});

describe('hasReadyEndpoint', () => {
  const cases: { name: string; list: unknown; ready: boolean }[] = [
    { name: 'no slices: not ready', list: { items: [] }, ready: false },
    { name: 'a slice without endpoints: not ready', list: { items: [{ endpoints: null }] }, ready: false },
    { name: 'an endpoint with ready false: not ready', list: { items: [{ endpoints: [{ conditions: { ready: false } }] }] }, ready: false },
    { name: 'an endpoint without conditions counts as ready (the API says so)', list: { items: [{ endpoints: [{}] }] }, ready: true },
    { name: 'one ready endpoint among unready ones: ready', list: { items: [{ endpoints: [{ conditions: { ready: false } }, { conditions: { ready: true } }] }] }, ready: true },
  ];
  for (const { name, list, ready } of cases) it(name, () => expect(hasReadyEndpoint(list)).toBe(ready));
});

describe('registration options', () => {
  const fromEnv = (env: NodeJS.ProcessEnv) => {
    const parsed = parseOptions([], env);
    return parsed.ok === true ? { ok: true, registration: registrationOptions(parsed.options) } : parsed;
  };
  it('are off without WEBHOOK_CONFIGURATION_FILE', () => expect(fromEnv({})).toEqual({ ok: true, registration: undefined }));
  it('need CA_BUNDLE_FILE with it', () => {
    expect(fromEnv({ WEBHOOK_CONFIGURATION_FILE: '/x' })).toEqual({
      ok: false,
      errors: ['--ca-bundle-file (CA_BUNDLE_FILE): required with --webhook-configuration-file (WEBHOOK_CONFIGURATION_FILE)'],
    });
  });
  it('reject an interval that is no integer', () => {
    const result = fromEnv({ WEBHOOK_CONFIGURATION_FILE: '/x', CA_BUNDLE_FILE: '/ca', REGISTRATION_INTERVAL_MS: 'soon' });
    expect(result).toEqual({ ok: false, errors: ['REGISTRATION_INTERVAL_MS: must be an integer from 100 to 600000, got "soon"'] });
  });
  it('come from the environment the chart sets, or from flags', () => {
    const env = { WEBHOOK_CONFIGURATION_FILE: '/etc/sw/webhook.yaml', CA_BUNDLE_FILE: '/etc/sw/ca.crt', REGISTRATION_RESYNC_SECONDS: '30', POD_NAMESPACE: 'sw' };
    expect(fromEnv(env)).toEqual({
      ok: true,
      registration: { configurationFile: '/etc/sw/webhook.yaml', caBundleFile: '/etc/sw/ca.crt', intervalMs: 2000, resyncMs: 30_000, requestTimeoutMs: 5000, namespace: 'sw' },
    });
    const parsed = parseOptions(['--webhook-configuration-file', '/w.yaml', '--ca-bundle-file', '/ca.crt', '--registration-interval-ms', '500'], {});
    expect(parsed.ok === true && registrationOptions(parsed.options)).toMatchObject({ configurationFile: '/w.yaml', caBundleFile: '/ca.crt', intervalMs: 500 });
  });
});
