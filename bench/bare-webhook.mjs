#!/usr/bin/env node
// @ts-check
// The floor for `npm run bench`: a bare node:https server with the TLS and keep-alive settings of
// src/server/app.ts that reads the review, parses it once and answers `allowed` with the echoed uid.
// No framework, no routing beyond the path, no logging, no metrics: what serving a review over TLS
// costs at the least on this Node. The fastify null webhook (null-webhook.mjs) adds the framework.
//
//   node bench/bare-webhook.mjs --port N --tls-cert FILE --tls-key FILE [--host 127.0.0.1]

import { Buffer } from 'node:buffer';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { BODY_LIMIT_BYTES, baselineArgs } from './baseline-args.mjs';

const values = baselineArgs('bare-webhook.mjs');

/** @param {import('node:http').ServerResponse} res @param {number} status @param {unknown} body */
function answer(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const server = createServer(
  { key: readFileSync(values.tlsKey), cert: readFileSync(values.tlsCert), minVersion: 'TLSv1.2', keepAliveTimeout: 65_000 },
  (req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (req.method === 'GET' && path === '/healthz') return answer(res, 200, { status: 'ok' });
    if (req.method !== 'POST' || path !== '/mutate') return answer(res, 404, { message: 'not found' });
    /** @type {Buffer[]} */
    const chunks = [];
    let size = 0;
    req.on('data', (/** @type {Buffer} */ chunk) => {
      size += chunk.length;
      if (size > BODY_LIMIT_BYTES) req.destroy();
      else chunks.push(chunk);
    });
    req.on('end', () => {
      let review;
      try {
        review = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        return answer(res, 400, { message: 'not JSON' });
      }
      answer(res, 200, {
        apiVersion: review?.apiVersion ?? 'admission.k8s.io/v1',
        kind: 'AdmissionReview',
        response: { uid: review?.request?.uid ?? '', allowed: true },
      });
    });
  },
);
server.listen(values.port, values.host);
const stop = () => server.close(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
