// The HTTP contract: envelope errors through inject(), upstream fixtures in both review versions,
// and a real TLS socket.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { admit } from '../../src/admission/admit.js';
import { offlineFacts } from '../../src/admission/facts.js';
import { decodeReview, reviewReply } from '../../src/admission/review.js';
import { buildApp } from '../../src/server/app.js';
import { Metrics } from '../../src/server/metrics.js';
import { policyFromSpec } from '../support/policy.js';
import { decodePatch, fixture, FIXTURES, HAVE_SHARED_FIXTURES, pod, podReview, SHARED_FIXTURES, type Json } from '../support/review.js';

const policy = policyFromSpec(`
  rules:
    - name: system
      match: { namespaces: [kube-system] }
      action: allow
`);

async function app(): Promise<FastifyInstance> {
  return buildApp({ policy: () => policy, cluster: offlineFacts, metrics: new Metrics() });
}

describe('POST /mutate envelope', () => {
  let server: FastifyInstance;
  beforeAll(async () => {
    server = await app();
  });
  afterAll(() => server.close());

  const post = (payload: string | Buffer, contentType = 'application/json') =>
    server.inject({ method: 'POST', url: '/mutate?timeout=10s', headers: { 'content-type': contentType }, payload });

  it.each([
    ['malformed JSON', 400, '{"apiVersion":', 'body is not valid JSON'],
    ['an empty body', 400, '', 'body is empty'],
    ['a JSON array', 400, '[]', 'body must be a JSON object'],
    ['another kind', 400, '{"kind":"Pod","apiVersion":"v1"}', 'kind must be "AdmissionReview"'],
    ['an unknown review version', 400, '{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v2","request":{}}', 'apiVersion must be one of'],
    ['no request', 400, '{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}', 'request is missing'],
    ['no uid', 400, JSON.stringify({ ...podReview(), request: { ...(podReview().request as Json), uid: '' } }), 'request.uid is missing'],
    ['no operation', 400, JSON.stringify({ ...podReview(), request: { ...(podReview().request as Json), operation: undefined } }), 'request.operation is missing'],
  ])('%s gets a %i with a clear message', async (_name, status, body, message) => {
    const response = await post(body);
    expect(response.statusCode).toBe(status);
    expect(response.json()).toMatchObject({ statusCode: status });
    expect(response.json().message).toContain(message);
  });

  it('a body over 3 MiB gets 413', async () => {
    const response = await post(Buffer.alloc(3 * 1024 * 1024 + 1, 32));
    expect(response.statusCode).toBe(413);
    expect(response.json().message).toContain('larger than 3145728 bytes');
  });

  it('a wrong content type gets 415', async () => {
    const response = await post(JSON.stringify(podReview()), 'text/plain');
    expect(response.statusCode).toBe(415);
    expect(response.json().message).toContain('send application/json');
  });

  it('application/json with a charset is accepted', async () => {
    const response = await post(JSON.stringify(podReview()), 'application/json; charset=utf-8');
    expect(response.statusCode).toBe(200);
  });

  it.each([
    ['GET', '/mutate', 405],
    ['POST', '/healthz', 405],
    ['GET', '/nope', 404],
    ['POST', '/validate', 404],
  ] as const)('%s %s gets %i', async (method, url, status) => {
    const response = await server.inject({ method, url });
    expect(response.statusCode).toBe(status);
    expect(response.json().statusCode).toBe(status);
  });

  it('keeps serving after bad input', async () => {
    await post('{');
    await post(Buffer.alloc(4 * 1024 * 1024, 32));
    const response = await post(JSON.stringify(podReview()));
    expect(response.statusCode).toBe(200);
    expect(response.json().response.allowed).toBe(true);
  });

  it('answers v1 and v1beta1 in the version sent, with the uid echoed', async () => {
    for (const apiVersion of ['admission.k8s.io/v1', 'admission.k8s.io/v1beta1']) {
      const response = await post(JSON.stringify(podReview({ apiVersion, uid: `uid-${apiVersion}` })));
      const body = response.json();
      expect(body).toMatchObject({ apiVersion, kind: 'AdmissionReview', response: { uid: `uid-${apiVersion}`, allowed: true, patchType: 'JSONPatch' } });
    }
  });

  it('the sample review from test/fixtures gets the runtimeClassName patch', async () => {
    const response = await post(readFileSync(join(FIXTURES, 'review-tenant-pod.json')));
    const body = response.json() as { response: Json };
    expect(decodePatch(body.response)).toEqual([
      { op: 'add', path: '/spec/runtimeClassName', value: 'gvisor' },
      { op: 'add', path: '/metadata/annotations', value: { 'sandbox-webhook.io/rule': 'default' } },
    ]);
  });
});

describe('answers are written by the compiled serializer without losing a field', () => {
  // A policy that gives every kind of answer: patches, warnings, denials with a reason, audit.
  const policies = {
    enforce: policyFromSpec(`
  incompatible: warn
  rules:
    - name: system
      match: { namespaces: [kube-system] }
      action: allow
    - name: blocked
      match: { anyImage: ["evil.example.com/**"] }
      action: deny
`),
    // Namespace labels are unknown offline: a pod the rule "trusted" may allow is sandboxed fail-safe.
    audit: policyFromSpec(`
  mode: audit
  rules:
    - name: blocked
      match: { anyImage: ["evil.example.com/**"] }
      action: deny
    - name: trusted
      match: { namespaceSelector: { matchLabels: { trusted: "true" } } }
      action: allow
`),
  };
  const reviews: [string, Json][] = [
    ['a sandboxed pod', podReview()],
    ['a sandboxed pod with hostNetwork (a warning on top)', podReview({ pod: pod({ hostNetwork: true }) })],
    ['a pod with another runtimeClassName, a control character and quotes in it', podReview({ pod: pod({ runtimeClassName: 'run"c\u0007' }) })],
    ['an allowed system pod', podReview({ namespace: 'kube-system' })],
    ['a denied pod', podReview({ pod: pod({ containers: [{ name: 'x', image: 'evil.example.com/miner:1' }] }) })],
    ['a pod that is not a pod', { ...podReview(), request: { ...(podReview().request as Json), object: { spec: 'x' } } }],
    ['a v1beta1 review of a pod with a unicode name', podReview({ apiVersion: 'admission.k8s.io/v1beta1', pod: pod({}, { name: 'pöd-☃' }) })],
    ['a DELETE', podReview({ operation: 'DELETE' })],
  ];

  for (const [mode, policy] of Object.entries(policies)) {
    for (const [name, review] of reviews) {
      it(`${mode} mode: ${name} reads back as the answer admit() gave`, async () => {
        const server = await buildApp({ policy: () => policy, cluster: offlineFacts, metrics: new Metrics() });
        try {
          const response = await server.inject({ method: 'POST', url: '/mutate', headers: { 'content-type': 'application/json' }, payload: review });
          expect(response.statusCode).toBe(200);
          const decoded = decodeReview(review);
          if (!decoded.ok) throw new Error(decoded.message);
          const answer = await admit(decoded.request, policy, offlineFacts);
          expect(response.json()).toEqual(JSON.parse(JSON.stringify(reviewReply(decoded.apiVersion, answer.response))));
          if (mode === 'audit' && answer.summary.decision === 'sandbox') expect(answer.response.auditAnnotations?.['fail-safe']).toBe('true');
        } finally {
          await server.close();
        }
      });
    }
  }
});

describe.runIf(HAVE_SHARED_FIXTURES)('upstream fixtures (every field set)', () => {
  const files = (HAVE_SHARED_FIXTURES ? readdirSync(SHARED_FIXTURES) : []).filter((f) => f.endsWith('.json') && !f.startsWith('admission.'));
  let server: FastifyInstance;
  beforeAll(async () => {
    server = await app();
  });
  afterAll(() => server.close());

  for (const reviewFile of ['admission.k8s.io.v1.AdmissionReview.json', 'admission.k8s.io.v1beta1.AdmissionReview.json']) {
    it(`the upstream ${reviewFile} itself, whose operation is a placeholder, gets a 400 naming the field`, async () => {
      const response = await server.inject({
        method: 'POST',
        url: '/mutate',
        headers: { 'content-type': 'application/json' },
        payload: readFileSync(join(SHARED_FIXTURES, reviewFile)),
      });
      // "operationValue" is outside the closed set of operations: a bad request, never a label value.
      expect(response.statusCode).toBe(400);
      expect(response.json().message).toContain('operation');
    });

    it(`the upstream ${reviewFile} with a real operation (DELETE) is answered in-band`, async () => {
      const review = fixture(join(SHARED_FIXTURES, reviewFile));
      (review.request as Json).operation = 'DELETE';
      const response = await server.inject({
        method: 'POST',
        url: '/mutate',
        headers: { 'content-type': 'application/json' },
        payload: review,
      });
      expect(response.statusCode).toBe(200);
      expect(response.json().response).toEqual({ uid: 'uidValue', allowed: true });
    });

    for (const file of files) {
      it(`a ${reviewFile.split('.')[3]} review of ${file} as a pod CREATE is answered without a 5xx`, async () => {
        const review = fixture(join(SHARED_FIXTURES, reviewFile));
        const object = fixture(join(SHARED_FIXTURES, file));
        // Workload objects carry their pod in spec.template (or spec.jobTemplate.spec.template).
        const template = ((object.spec as Json | undefined)?.template ??
          (((object.spec as Json | undefined)?.jobTemplate as Json | undefined)?.spec as Json | undefined)?.template ??
          (object as Json).template) as Json | undefined;
        const podObject = file === 'core.v1.Pod.json' ? object : template ? { apiVersion: 'v1', kind: 'Pod', ...template } : object;
        Object.assign(review.request as Json, {
          kind: { group: '', version: 'v1', kind: 'Pod' },
          resource: { group: '', version: 'v1', resource: 'pods' },
          subResource: '',
          operation: 'CREATE',
          object: podObject,
        });
        const response = await server.inject({ method: 'POST', url: '/mutate', headers: { 'content-type': 'application/json' }, payload: review });
        expect(response.statusCode).toBeLessThan(500);
        const body = response.json();
        expect(body.response.uid).toBe('uidValue');
        if (body.response.allowed && body.response.patch) {
          // The patch must apply to the fully populated pod.
          const fjp = await import('fast-json-patch');
          const result = fjp.default.applyPatch(structuredClone(podObject), decodePatch(body.response) as never, true, false);
          expect((result.newDocument as { spec: Json }).spec.runtimeClassName).toBe('gvisor');
        } else {
          expect(body.response.status.message).toMatch(/sandbox-webhook: /);
        }
      });
    }
  }
});

describe('a real TLS socket', () => {
  let dir: string;
  let server: FastifyInstance;
  let port: number;
  let ca: Buffer;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sandbox-webhook-tls-'));
    execFileSync('sh', ['certs/generate.sh', '--out', dir], { stdio: 'ignore' });
    ca = readFileSync(join(dir, 'ca.crt'));
    server = await buildApp({
      policy: () => policy,
      cluster: offlineFacts,
      metrics: new Metrics(),
      tls: { key: readFileSync(join(dir, 'tls.key')), cert: readFileSync(join(dir, 'tls.crt')) },
    });
    await server.listen({ port: 0, host: '127.0.0.1' });
    port = (server.server.address() as { port: number }).port;
  });
  afterAll(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function send(body: string, options: { maxVersion?: 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3'; servername?: string } = {}) {
    return new Promise<{ status: number; body: string; protocol: string | null }>((resolve, reject) => {
      const req = httpsRequest(
        {
          host: '127.0.0.1',
          port,
          path: '/mutate?timeout=10s',
          method: 'POST',
          ca,
          servername: options.servername ?? 'localhost',
          maxVersion: options.maxVersion,
          minVersion: options.maxVersion === 'TLSv1.1' ? 'TLSv1.1' : undefined,
          headers: { 'content-type': 'application/json', 'user-agent': 'kube-apiserver-admission' },
        },
        (res) => {
          let text = '';
          const protocol = (res.socket as TLSSocket).getProtocol();
          res.on('data', (chunk: Buffer) => (text += chunk.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, protocol }));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }

  it('answers a review over TLS, verified against the generated CA', async () => {
    const response = await send(JSON.stringify(podReview({ uid: 'tls-1' })));
    expect(response.status).toBe(200);
    expect(JSON.parse(response.body).response).toMatchObject({ uid: 'tls-1', allowed: true, patchType: 'JSONPatch' });
  });

  it('the certificate is valid for the in-cluster service name', async () => {
    const response = await send(JSON.stringify(podReview()), { servername: 'sandbox-webhook.sandbox-webhook.svc' });
    expect(response.status).toBe(200);
  });

  it('speaks TLS 1.2 (the apiserver minimum)', async () => {
    const response = await send(JSON.stringify(podReview()), { maxVersion: 'TLSv1.2' });
    expect(response.protocol).toBe('TLSv1.2');
  });

  it('refuses TLS 1.1', async () => {
    await expect(send(JSON.stringify(podReview()), { maxVersion: 'TLSv1.1' })).rejects.toThrow();
  });
});
