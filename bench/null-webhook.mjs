#!/usr/bin/env node
// @ts-check
// The baseline for `npm run bench`: a "null webhook" with the same Node, fastify and TLS setup as
// src/server/app.ts (TLS 1.2 minimum, keep-alive 65 s, one JSON.parse of the body as a string, no
// schema, no request logging), answering every review `allowed` with the echoed uid and nothing else.
// What the webhook costs beyond this is its own work: envelope checks, policy, patch, metrics, logs.
//
// Plain JavaScript so that it runs on bare `node`, like dist/main.js, with no loader in the process.
//
//   node bench/null-webhook.mjs --port N --tls-cert FILE --tls-key FILE [--host 127.0.0.1]

import { readFileSync } from 'node:fs';
import Fastify, { LogController } from 'fastify';
import { BODY_LIMIT_BYTES, baselineArgs } from './baseline-args.mjs';

const values = baselineArgs('null-webhook.mjs');

const app = Fastify({
  bodyLimit: BODY_LIMIT_BYTES,
  logController: new LogController({ disableRequestLogging: true }),
  return503OnClosing: false,
  keepAliveTimeout: 65_000,
  logger: false,
  https: { key: readFileSync(values.tlsKey), cert: readFileSync(values.tlsCert), minVersion: 'TLSv1.2' },
});

app.removeAllContentTypeParsers();
app.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: BODY_LIMIT_BYTES }, (_request, body, done) => {
  try {
    done(null, JSON.parse(/** @type {string} */ (body)));
  } catch (error) {
    done(/** @type {Error} */ (error), undefined);
  }
});

app.post('/mutate', async (request) => {
  const review = /** @type {{ apiVersion?: string, request?: { uid?: string } }} */ (request.body);
  return {
    apiVersion: review.apiVersion ?? 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    response: { uid: review.request?.uid ?? '', allowed: true },
  };
});
app.get('/healthz', async () => ({ status: 'ok' }));

await app.listen({ port: values.port, host: values.host });
const stop = () => {
  void app.close().then(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
