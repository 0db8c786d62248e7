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
import { BODY_LIMIT_BYTES, buildApp, KEEP_ALIVE_TIMEOUT_MS } from '../../src/server/app.js';
import { readEnvelopeHead } from '../../src/server/body.js';
import { Metrics } from '../../src/telemetry/metrics.js';
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
    ['GET', '/metrics', 404],
    ['POST', '/validate', 404],
  ] as const)('%s %s gets %i', async (method, url, status) => {
    const response = await server.inject({ method, url });
    expect(response.statusCode).toBe(status);
    expect(response.json().statusCode).toBe(status);
  });

  it('keeps serving after bad input', async () => {
    await post('{');
    await post(Buffer.alloc(BODY_LIMIT_BYTES + 1, 32));
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

const MIB = 1024 * 1024;

/**
 * An UPDATE review whose object and oldObject each carry `bytes` of `<` in an annotation, written
 * the way the apiserver's Go encoding/json writes it: every `<` as the six bytes `\u003c`.
 */
function escapedUpdateReview(uid: string, bytes: number): string {
  const annotated = pod({}, { annotations: { note: '<'.repeat(bytes) } });
  const review = podReview({ uid, operation: 'UPDATE', pod: annotated });
  (review.request as Json).oldObject = annotated;
  return JSON.stringify(review).replaceAll('<', '\\u003c');
}

describe('request bodies up to the largest review an apiserver sends are answered in-band', () => {
  let server: FastifyInstance;
  const metrics = new Metrics();
  afterAll(() => server?.close());

  const post = (payload: string | Buffer) =>
    server.inject({ method: 'POST', url: '/mutate?timeout=10s', headers: { 'content-type': 'application/json' }, payload });

  it('the limit is two 1.5 MiB objects written six times larger, plus 1 MiB of envelope', () => {
    expect(BODY_LIMIT_BYTES).toBe(2 * 6 * 1.5 * MIB + MIB);
  });

  it("an UPDATE of two 1.5 MiB objects full of '<', escaped by Go (about 18 MiB), is read, decided and answered with its uid", async () => {
    server = await buildApp({ policy: () => policy, cluster: offlineFacts, metrics });
    const body = escapedUpdateReview('worst-case', 1.5 * MIB - 4096);
    expect(body.length).toBeGreaterThan(17.9 * MIB);
    expect(body.length).toBeLessThanOrEqual(BODY_LIMIT_BYTES);
    const response = await post(body);
    expect(response.statusCode).toBe(200);
    expect(response.json().response.uid).toBe('worst-case');
    expect(response.json().response.status?.code).not.toBe(413);
  });

  it('a review beyond the limit that begins like one is denied in-band with its uid, code 413', async () => {
    const body = escapedUpdateReview('too-large', 1.7 * MIB);
    expect(body.length).toBeGreaterThan(BODY_LIMIT_BYTES);
    const response = await post(body);
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      response: { uid: 'too-large', allowed: false, status: { code: 413, message: expect.stringMatching(/^sandbox-webhook: the review is \d+ bytes, more than the 19922944 bytes/) } },
    });
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/^sandbox_webhook_admission_denials_total\{reason="body_too_large"\} 1$/m);
    expect(text).toMatch(/^sandbox_webhook_admission_requests_total\{operation="other",decision="none",rule="",mode="enforce",outcome="error"\} 1$/m);
  });

  it('a body beyond the limit that does not begin like a review gets HTTP 413', async () => {
    const response = await post(Buffer.alloc(BODY_LIMIT_BYTES + 1, 32));
    expect(response.statusCode).toBe(413);
    expect(response.json().message).toContain(`larger than ${BODY_LIMIT_BYTES} bytes`);
  });

  it('a large review past the shared buffer budget is denied in-band as overloaded, and the budget is given back', async () => {
    const small = await buildApp({ policy: () => policy, cluster: offlineFacts, metrics: new Metrics(), maxBufferedBodyBytes: 1 * MIB });
    try {
      const large = JSON.stringify(podReview({ uid: 'large', pod: pod({}, { annotations: { note: 'x'.repeat(2 * MIB) } }) }));
      const shed = await small.inject({ method: 'POST', url: '/mutate', headers: { 'content-type': 'application/json' }, payload: large });
      expect(shed.json().response).toMatchObject({ uid: 'large', allowed: false, status: { code: 503, message: expect.stringContaining('overloaded') } });
      // A review that fits the budget once the large one gave it back is decided.
      const fits = JSON.stringify(podReview({ uid: 'fits', pod: pod({}, { annotations: { note: 'x'.repeat(0.9 * MIB) } }) }));
      const decided = await small.inject({ method: 'POST', url: '/mutate', headers: { 'content-type': 'application/json' }, payload: fits });
      expect(decided.json().response).toMatchObject({ uid: 'fits', allowed: true, patchType: 'JSONPatch' });
    } finally {
      await small.close();
    }
  });
});

describe('the limits of every connection', () => {
  it('the server carries the headers, read, keep-alive and connection limits it was given', async () => {
    const server = await buildApp({
      policy: () => policy,
      cluster: offlineFacts,
      metrics: new Metrics(),
      headersTimeoutMs: 1500,
      readTimeoutMs: 4000,
      requestTimeoutMs: 2000,
      maxConnections: 77,
    });
    try {
      expect(server.server).toMatchObject({
        headersTimeout: 1500,
        requestTimeout: 4000,
        keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
        // A request may be silent while its body is read and then while it is decided.
        timeout: 6000,
        maxConnections: 77,
      });
    } finally {
      await server.close();
    }
  });

  it('a read timeout shorter than the headers timeout is raised to it (Node requires it)', async () => {
    const server = await buildApp({ policy: () => policy, cluster: offlineFacts, metrics: new Metrics(), headersTimeoutMs: 3000, readTimeoutMs: 1000 });
    try {
      expect(server.server.requestTimeout).toBe(3000);
    } finally {
      await server.close();
    }
  });
});

describe('the first bytes of a review that is not kept', () => {
  const head = (review: Json): string => JSON.stringify(review).slice(0, 4096);
  it.each([
    ['a v1 review as the apiserver writes it', head(podReview({ uid: 'u-1' })), { apiVersion: 'admission.k8s.io/v1', uid: 'u-1' }],
    ['a v1beta1 review', head(podReview({ uid: 'u-2', apiVersion: 'admission.k8s.io/v1beta1' })), { apiVersion: 'admission.k8s.io/v1beta1', uid: 'u-2' }],
    ['a review with spaces between tokens', '{ "kind" : "AdmissionReview", "apiVersion" : "admission.k8s.io/v1", "request" : { "uid" : "u-3" ', { apiVersion: 'admission.k8s.io/v1', uid: 'u-3' }],
    ['another kind', '{"kind":"Pod","apiVersion":"admission.k8s.io/v1","request":{"uid":"u-4"', undefined],
    ['an unknown review version', '{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v2","request":{"uid":"u-5"', undefined],
    ['a request whose first field is not uid', '{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"kind":{},"uid":"u-6"', undefined],
    ['a uid longer than 256 characters', `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"${'u'.repeat(257)}"`, undefined],
    ['spaces only', ' '.repeat(4096), undefined],
  ])('%s', (_name, text, expected) => {
    expect(readEnvelopeHead(text)).toEqual(expected);
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

  it('a review decided after longer than the headers deadline is still answered on its connection', async () => {
    const labelled = policyFromSpec(`
  rules:
    - name: tenants
      match: { namespaceSelector: { matchLabels: { tenant: "true" } } }
      action: sandbox
`);
    const slow = await buildApp({
      policy: () => labelled,
      cluster: {
        namespace: (name) => new Promise((resolve) => setTimeout(() => resolve({ name, labels: { tenant: 'true' } }), 800)),
        runtimeClass: () => ({ state: 'present', handler: 'runsc', nodeSelector: undefined }),
      },
      metrics: new Metrics(),
      tls: { key: readFileSync(join(dir, 'tls.key')), cert: readFileSync(join(dir, 'tls.crt')) },
      headersTimeoutMs: 300,
      readTimeoutMs: 300,
    });
    await slow.listen({ port: 0, host: '127.0.0.1' });
    const slowPort = (slow.server.address() as { port: number }).port;
    try {
      const response = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = httpsRequest(
          { host: '127.0.0.1', port: slowPort, path: '/mutate?timeout=10s', method: 'POST', ca, servername: 'localhost', headers: { 'content-type': 'application/json' } },
          (res) => {
            let text = '';
            res.on('data', (chunk: Buffer) => (text += chunk.toString()));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
          },
        );
        req.on('error', reject);
        req.end(JSON.stringify(podReview({ uid: 'slow-decision' })));
      });
      expect(response.status).toBe(200);
      expect(JSON.parse(response.body).response).toMatchObject({ uid: 'slow-decision', allowed: true, patchType: 'JSONPatch' });
    } finally {
      await slow.close();
    }
  });

  it('refuses TLS 1.1', async () => {
    await expect(send(JSON.stringify(podReview()), { maxVersion: 'TLSv1.1' })).rejects.toThrow();
  });
});
