#!/usr/bin/env node
// @ts-check
// The floor for `npm run bench`: a bare node:https server with the TLS and keep-alive settings of
// src/server/app.ts that reads the review, parses it once and answers `allowed` with the echoed uid.
// No framework, no routing beyond the path, no logging, no metrics: what serving a review over TLS
// costs at the least on this Node. The fastify null webhook (null-webhook.mjs) adds the framework.
//
// With --patch-runtime-class NAME (the floor of `npm run bench:cluster`), it answers a pod's review
// as the webhook answers one it sandboxes: allowed, with the JSON patch of sandboxPatch in
// src/admission/admit.ts (runtimeClassName NAME, and the annotation sandbox-webhook.io/rule with the
// value of --patch-rule, default `bare`, as a map when the pod has no annotations), so that the
// apiserver applies the same patch as for a sandboxed pod.
//
// With --http2, it serves with node:http2 (createSecureServer, allowHTTP1, the compatibility API)
// instead of node:https, with the same TLS and keep-alive settings and the same handler: it offers h2
// and http/1.1 by ALPN, and the client picks. With --log-connections, it writes one line per TLS
// connection to stdout, `connection PROTOCOL` (the protocol ALPN settled on, `none` without ALPN),
// so that a bench can tell how many connections its client opened, and over what.
//
//   node bench/bare-webhook.mjs --port N --tls-cert FILE --tls-key FILE [--host 127.0.0.1]
//                               [--patch-runtime-class NAME [--patch-rule NAME]] [--http2] [--log-connections]

import { Buffer } from 'node:buffer';
import { readFileSync } from 'node:fs';
import { createSecureServer } from 'node:http2';
import { createServer } from 'node:https';
import { BODY_LIMIT_BYTES, baselineArgs } from './baseline-args.mjs';

const values = baselineArgs('bare-webhook.mjs', { 'patch-runtime-class': 'NAME', 'patch-rule': 'NAME', http2: true, 'log-connections': true });
const runtimeClassName = values.own['patch-runtime-class'];
const rule = values.own['patch-rule'] ?? 'bare';
const RULE_ANNOTATION = 'sandbox-webhook.io/rule';

/** @param {unknown} value @returns {value is Record<string, unknown>} */
const isRecord = (value) => typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * The operations of sandboxPatch (src/admission/admit.ts) for `pod` and `className`.
 * @param {unknown} pod @param {string} className
 */
function sandboxPatch(pod, className) {
  const patch = [];
  const object = isRecord(pod) ? pod : {};
  const spec = isRecord(object.spec) ? object.spec : {};
  if (spec.runtimeClassName !== className) {
    patch.push({ op: 'runtimeClassName' in spec ? 'replace' : 'add', path: '/spec/runtimeClassName', value: className });
  }
  const metadata = object.metadata;
  const annotations = isRecord(metadata) ? metadata.annotations : undefined;
  if (!isRecord(metadata)) {
    patch.push({ op: 'metadata' in object ? 'replace' : 'add', path: '/metadata', value: { annotations: { [RULE_ANNOTATION]: rule } } });
  } else if (!isRecord(annotations)) {
    patch.push({ op: 'annotations' in metadata ? 'replace' : 'add', path: '/metadata/annotations', value: { [RULE_ANNOTATION]: rule } });
  } else if (annotations[RULE_ANNOTATION] !== rule) {
    patch.push({ op: RULE_ANNOTATION in annotations ? 'replace' : 'add', path: '/metadata/annotations/sandbox-webhook.io~1rule', value: rule });
  }
  return patch;
}

/** @typedef {import('node:http').IncomingMessage | import('node:http2').Http2ServerRequest} Request */
/** @typedef {import('node:http').ServerResponse | import('node:http2').Http2ServerResponse} Response */

/** @param {Response} res @param {number} status @param {unknown} body */
function answer(res, status, body) {
  const text = JSON.stringify(body);
  // (the cast for the type checker alone: both kinds of response take writeHead(status, headers))
  /** @type {import('node:http').ServerResponse} */ (res).writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** @param {Request} req @param {Response} res */
const handler = (req, res) => {
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
    /** @type {{ uid: string, allowed: boolean, patch?: string, patchType?: string }} */
    const response = { uid: review?.request?.uid ?? '', allowed: true };
    if (runtimeClassName !== undefined && review?.request?.kind?.kind === 'Pod' && review.request.subResource === undefined) {
      const patch = sandboxPatch(review.request.object, runtimeClassName);
      if (patch.length > 0) {
        response.patch = Buffer.from(JSON.stringify(patch)).toString('base64');
        response.patchType = 'JSONPatch';
      }
    }
    answer(res, 200, { apiVersion: review?.apiVersion ?? 'admission.k8s.io/v1', kind: 'AdmissionReview', response });
  });
};

const tlsOptions = { key: readFileSync(values.tlsKey), cert: readFileSync(values.tlsCert), minVersion: /** @type {const} */ ('TLSv1.2'), keepAliveTimeout: 65_000 };
// keepAliveTimeout: node:http2 applies it to the connections that fall back to HTTP/1.1 (allowHTTP1).
const server = values.flags.http2 ? createSecureServer({ allowHTTP1: true, ...tlsOptions }, handler) : createServer(tlsOptions, handler);
if (values.flags['log-connections']) {
  server.on('secureConnection', (/** @type {import('node:tls').TLSSocket} */ socket) => {
    process.stdout.write(`connection ${socket.alpnProtocol || 'none'}\n`);
  });
}
// node:http2's close() waits for every open session to end, and the apiserver keeps its connections:
// with --http2, stopping also ends them.
/** @type {Set<import('node:tls').TLSSocket>} */
const sockets = new Set();
if (values.flags.http2) {
  server.on('secureConnection', (/** @type {import('node:tls').TLSSocket} */ socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
}
server.listen(values.port, values.host);
const stop = () => {
  server.close(() => process.exit(0));
  for (const socket of sockets) socket.destroy();
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
