// The webhook's HTTPS server: routes, body handling, TLS, the limits of every connection, health.
// It decodes, calls the admission core, and encodes; no decision is taken here.
//   POST /mutate   AdmissionReview in, AdmissionReview out (v1 and v1beta1)
//   GET  /healthz  the process serves (liveness)
//   GET  /readyz   policy loaded, informers synced, not shutting down (readiness)
// GET /metrics is served on its own plain-HTTP port (metrics-server.ts), not on this one: the
// webhook's port is reachable by whatever reaches its Service.
//
// Every phase of a request has a deadline: the TLS handshake and the headers (headersTimeoutMs),
// the whole request with its body (readTimeoutMs, then 408 and the connection closed), an idle
// keep-alive connection (KEEP_ALIVE_TIMEOUT_MS), and the review's own decision budget
// (requestTimeoutMs, or less by the apiserver's ?timeout=). Open connections are capped
// (maxConnections): one past the cap is closed as soon as it is accepted, before TLS, and counted
// (sandbox_webhook_connections_dropped_total). To the apiserver that call failed, and it applies
// the webhook's failurePolicy (docs/kubernetes.md §1): Fail rejects the request, and the client's
// retry reaches whichever replica the Service picks; Ignore admits it unchecked, which the
// ValidatingAdmissionPolicy backstop exists for. The cap is far above what an apiserver holds (it
// reuses a few dozen connections under a burst, docs/kubernetes.md §9), so only a flood meets it.

import http from 'node:http';
import type { Socket } from 'node:net';
import https from 'node:https';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifySchema, type FastifyServerOptions } from 'fastify';
import { pino } from 'pino';
import { admit, rejected, type AdmissionResult } from '../admission/admit.js';
import type { ClusterFacts } from '../admission/facts.js';
import {
  decodeReview,
  REVIEW_REPLY_SCHEMA,
  reviewReply,
  type AdmissionRequest,
  type AdmissionResponse,
  type AdmissionReviewReply,
  type ReviewVersion,
} from '../admission/review.js';
import type { Policy } from '../policy/policy.js';
import { admissionLabels, decisionDenialReason, OTHER, type DenialReasonLabel, type FailClosedReason, type Metrics } from '../telemetry/metrics.js';
import type { Readiness } from '../telemetry/readiness.js';
import { BODY_LIMIT_BYTES, BodyBudget, BodyError, readBody, UnreadBody } from './body.js';
import { secureContextOptions } from './tls.js';

export { BODY_LIMIT_BYTES } from './body.js';

/** An idle keep-alive connection is closed after this. The apiserver reuses its connections, and reconnects when one was closed. */
export const KEEP_ALIVE_TIMEOUT_MS = 65_000;

/** How often Node checks the headers and read deadlines of open connections (its default, 30 s, would let them run far over). */
const DEADLINE_CHECK_INTERVAL_MS = 250;

/** The longest text from a request that reaches a log line. */
export const LOGGED_TEXT_MAX_CHARS = 256;

export interface AppOptions {
  /** the policy in force, read per request: hot reload swaps the whole object */
  readonly policy: () => Policy;
  readonly cluster: ClusterFacts;
  readonly metrics: Metrics;
  readonly readiness?: () => Readiness;
  /** true once shutdown began: answers ask clients to reconnect (to another replica) */
  readonly draining?: () => boolean;
  /** PEM key and certificate; without them the app speaks plain HTTP (for inject() tests only) */
  readonly tls?: { readonly key: string | Buffer; readonly cert: string | Buffer };
  readonly logger?: FastifyBaseLogger | boolean;
  readonly bodyLimitBytes?: number;
  /** bytes of bodies held at once beyond each one's first 16 KiB (body.ts) */
  readonly maxBufferedBodyBytes?: number;
  /**
   * answer fail-closed when a review takes longer than this since it arrived (well inside the
   * apiserver's timeoutSeconds; a shorter `?timeout=` from the apiserver wins)
   */
  readonly requestTimeoutMs?: number;
  /** the TLS handshake and the request headers must arrive within this */
  readonly headersTimeoutMs?: number;
  /** the whole request, body included, must arrive within this */
  readonly readTimeoutMs?: number;
  readonly maxConnections?: number;
  /** reviews awaiting a decision at once before new ones are shed (answered at once, fail-closed) */
  readonly maxInFlight?: number;
}

interface ErrorBody {
  statusCode: number;
  error: string;
  message: string;
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  404: 'Not Found',
  408: 'Request Timeout',
  405: 'Method Not Allowed',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

function errorBody(statusCode: number, message: string): ErrorBody {
  return { statusCode, error: STATUS_TEXT[statusCode] ?? 'Error', message };
}

const ROUTES: Record<string, string> = { '/mutate': 'POST', '/healthz': 'GET', '/readyz': 'GET' };

const ARRIVED_AT = Symbol('arrivedAt');

// Only the response is described: fastify compiles a serializer for answers (200) from it, and
// nothing validates or coerces the request.
const MUTATE_SCHEMA: FastifySchema = { response: { 200: REVIEW_REPLY_SCHEMA } };

/** A string from a request, cut to LOGGED_TEXT_MAX_CHARS for a log line. */
export function loggedText(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  return value.length <= LOGGED_TEXT_MAX_CHARS ? value : `${value.slice(0, LOGGED_TEXT_MAX_CHARS)}... (${value.length} characters)`;
}

const GO_DURATION_UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, 'μs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * The `?timeout=` the apiserver adds to each call: the time it will wait, as a Go duration
 * ("5s", "4.5s", "900ms"; docs/kubernetes.md §1). Undefined when absent or not a duration.
 */
export function apiserverTimeoutMs(query: unknown): number | undefined {
  const raw = (query as { timeout?: unknown } | undefined)?.timeout;
  if (typeof raw !== 'string' || raw.length > 64 || !/^(\d+(\.\d+)?(ns|us|µs|μs|ms|s|m|h))+$/.test(raw)) return undefined;
  let ms = 0;
  for (const [, value, unit] of raw.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|μs|ms|s|m|h)/g)) {
    ms += Number(value) * (GO_DURATION_UNIT_MS[unit ?? ''] ?? 0);
  }
  return ms > 0 ? ms : undefined;
}

/**
 * How long a review may take, counted from its arrival: our own limit, or less when the apiserver
 * waits less. A late answer is no answer: the apiserver then applies failurePolicy, and with
 * Ignore the pod would be admitted unsandboxed; an in-band denial in time holds either way. The
 * margin leaves time for the answer to travel back.
 */
export function reviewBudgetMs(requestTimeoutMs: number, apiserverMs: number | undefined): number {
  if (apiserverMs === undefined) return requestTimeoutMs;
  return Math.min(requestTimeoutMs, Math.max(apiserverMs - 1000, apiserverMs / 2));
}

/** The node:https (or, without TLS, node:http) server with every connection limit set. */
function createServer(
  options: AppOptions,
  handler: http.RequestListener,
  limits: { headersTimeoutMs: number; readTimeoutMs: number; requestTimeoutMs: number; maxConnections: number },
): http.Server | https.Server {
  const serverOptions: http.ServerOptions = {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.readTimeoutMs,
    keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
    connectionsCheckingInterval: DEADLINE_CHECK_INTERVAL_MS,
  };
  const server = options.tls
    ? // handshakeTimeout: a connection that opens and never completes its handshake is closed with the same deadline as headers.
      https.createServer({ ...serverOptions, ...secureContextOptions(options.tls), handshakeTimeout: limits.headersTimeoutMs }, handler)
    : http.createServer(serverOptions, handler);
  // Node's headers and request deadlines run only once a request has begun: a connection that
  // completes its handshake and then sends nothing would be held forever. So a new connection gets
  // the headers deadline as an inactivity timeout, and each request, once its headers are in, the
  // longest it can legitimately be silent (its body read, then its decision awaited); after each
  // answer Node sets the keep-alive timeout itself. On an inactivity timeout Node closes the socket.
  server.timeout = limits.readTimeoutMs + limits.requestTimeoutMs;
  server.on(options.tls ? 'secureConnection' : 'connection', (socket: Socket) => socket.setTimeout(limits.headersTimeoutMs));
  server.on('request', (request: http.IncomingMessage) => {
    if (request.socket.timeout !== server.timeout) request.socket.setTimeout(server.timeout);
  });
  server.maxConnections = limits.maxConnections;
  server.on('drop', () => options.metrics.connectionsDropped.inc());
  return server;
}

export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const bodyLimitBytes = options.bodyLimitBytes ?? BODY_LIMIT_BYTES;
  const budget = new BodyBudget(options.maxBufferedBodyBytes ?? 32 * 1024 * 1024);
  const requestTimeoutMs = options.requestTimeoutMs ?? 2500;
  const headersTimeoutMs = options.headersTimeoutMs ?? 2000;
  const limits = {
    headersTimeoutMs,
    readTimeoutMs: Math.max(headersTimeoutMs, options.readTimeoutMs ?? 5000),
    requestTimeoutMs,
    maxConnections: options.maxConnections ?? 256,
  };
  const maxInFlight = options.maxInFlight ?? 512;
  const { metrics } = options;
  const log: FastifyBaseLogger = typeof options.logger === 'object' ? options.logger : pino({ enabled: options.logger === true });
  const logsDecisions = (): boolean => (log as { isLevelEnabled?: (level: string) => boolean }).isLevelEnabled?.('info') ?? true;
  const serverOptions: FastifyServerOptions & { serverFactory: (handler: http.RequestListener) => http.Server | https.Server } = {
    serverFactory: (handler) => createServer(options, handler, limits),
    // One log line per decision is written by the route itself; fastify's per-request lines are noise.
    logController: new LogController({ disableRequestLogging: true }),
    // While draining on SIGTERM, requests already on an open connection are still answered (a 503
    // would fail an admission); new connections are refused and go to another replica.
    return503OnClosing: false,
    // fastify would derive a child logger for every request; the routes log through `log` below.
    logger: false,
  };
  const app = Fastify(serverOptions) as unknown as FastifyInstance;

  // One body reader and one JSON parse, our own: fastify's schema machinery never runs over the Pod
  //, and the size limit and budget decide what is kept (body.ts).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', (request, payload, done) => {
    const declared = request.headers['content-length'];
    const declaredBytes = declared === undefined ? undefined : Number(declared);
    readBody(payload, Number.isFinite(declaredBytes) ? declaredBytes : undefined, bodyLimitBytes, budget, (error, body) => {
      if (error) {
        done(error, undefined);
        return;
      }
      if (body instanceof UnreadBody) {
        done(null, body);
        return;
      }
      if (body === '' || body === undefined) {
        done(new BodyError('body is empty; send an AdmissionReview', 400), undefined);
        return;
      }
      let parsed: unknown;
      try {
        parsed = JSON.parse(body);
      } catch (failure) {
        done(new BodyError(`body is not valid JSON: ${(failure as Error).message}`, 400), undefined);
        return;
      }
      done(null, parsed);
    });
  });

  app.setErrorHandler((error: Error & { statusCode?: number; code?: string }, request, reply) => {
    let status = error.statusCode ?? 500;
    if (status < 400 || status > 599) status = 500;
    let message = error.message;
    if (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      message = `content type ${JSON.stringify(loggedText(request.headers['content-type']) ?? '')} is not supported; send application/json`;
      status = 415;
    }
    if (status >= 500) {
      log.error({ err: error, method: request.method, url: loggedText(request.url) }, 'request failed');
      message = 'internal error';
    }
    metrics.rejected(status);
    void reply.code(status).send(errorBody(status, message));
  });

  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?', 1)[0] ?? '';
    const allowed = ROUTES[path];
    if (allowed) {
      metrics.rejected(405);
      void reply.code(405).header('allow', allowed === 'GET' ? 'GET, HEAD' : allowed).send(errorBody(405, `${request.method} ${path} is not allowed; use ${allowed}`));
      return;
    }
    metrics.rejected(404);
    void reply.code(404).send(errorBody(404, `no route ${request.method} ${loggedText(path)}; routes: POST /mutate, GET /healthz, GET /readyz`));
  });

  type Arrived = { [ARRIVED_AT]?: number };
  const sinceArrivalMs = (raw: object): number => {
    const now = performance.now();
    return now - ((raw as Arrived)[ARRIVED_AT] ?? now);
  };
  const draining = options.draining ?? ((): boolean => false);
  app.addHook('onRequest', (request, reply, done) => {
    // When the request arrived (headers parsed): a review's time budget counts from here, not from
    // when its body was read and parsed, which is where time goes under load.
    (request.raw as Arrived)[ARRIVED_AT] = performance.now();
    // While draining on SIGTERM, every answer closes its connection, so that clients open the
    // next one to another replica instead of reusing one to a process about to stop listening.
    if (draining()) void reply.header('connection', 'close');
    done();
  });

  // The names of the rules of the policy last seen, for the `rule` label: recomputed when a
  // reload brings a new policy object.
  let labelled: { policy: Policy | undefined; ruleNames: ReadonlySet<string> } = { policy: undefined, ruleNames: new Set() };
  const ruleNames = (policy: Policy): ReadonlySet<string> => {
    if (labelled.policy !== policy) labelled = { policy, ruleNames: new Set(policy.rules.map((rule) => rule.name)) };
    return labelled.ruleNames;
  };

  let inFlight = 0;
  const failClosed = (admission: AdmissionRequest, reason: FailClosedReason, code: number, message: string): Decided => {
    metrics.failClosed.inc({ reason });
    return { result: rejected(admission, code, message), failClosed: reason };
  };
  const internalError = (admission: AdmissionRequest, error: unknown): Decided => {
    log.error({ err: error, uid: loggedText(admission.uid) }, 'admission failed');
    return failClosed(admission, 'internal_error', 500, 'internal error while deciding; denied fail-closed');
  };

  /** Metrics and the decision log line, then the answer in the version the apiserver sent. */
  const answer = (raw: object, admission: AdmissionRequest, apiVersion: ReviewVersion, policy: Policy, decided: Decided): AdmissionReviewReply => {
    const durationMs = sinceArrivalMs(raw);
    const { response, summary } = decided.result;
    const labels = admissionLabels(admission.operation, policy.mode, summary, ruleNames(policy));
    let denialReason: DenialReasonLabel | undefined;
    if (!response.allowed) denialReason = decided.failClosed ?? decisionDenialReason(summary);
    metrics.observeAdmission(labels, durationMs / 1000, denialReason);
    const object = admission.object as { metadata?: { generateName?: unknown } } | null | undefined;
    // The record is built only when it will be written; every string that came from the request is cut.
    if (logsDecisions()) {
      log.info(
        {
          uid: loggedText(admission.uid),
          operation: labels.operation === 'other' ? loggedText(admission.operation) : labels.operation,
          resource: loggedText(admission.subResource ? `${admission.resource.resource}/${admission.subResource}` : admission.resource.resource),
          namespace: loggedText(summary.namespace),
          pod: loggedText(summary.pod) || undefined,
          generateName: loggedText(object?.metadata?.generateName),
          dryRun: admission.dryRun || undefined,
          decision: summary.decision,
          rule: summary.rule || undefined,
          outcome: summary.outcome,
          allowed: response.allowed,
          denialReason,
          // Already capped by the admission core (the denial message's cap), and logged whole: it is
          // the same text the user saw, so an admin can find a denial by it.
          reason: summary.reason,
          durationMs: Math.round(durationMs * 1000) / 1000,
        },
        'admission',
      );
    }
    return reviewReply(apiVersion, response);
  };

  /**
   * The in-band denial of a review whose body was read but not kept (body.ts): counted like any
   * answered review, with what is known of it (nothing but its uid).
   */
  const unreadAnswer = (raw: object, body: UnreadBody, head: NonNullable<UnreadBody['head']>): AdmissionReviewReply => {
    metrics.failClosed.inc({ reason: body.reason });
    const labels = { operation: OTHER, decision: 'none', rule: '', mode: options.policy().mode, outcome: 'error' };
    metrics.observeAdmission(labels, sinceArrivalMs(raw) / 1000, body.reason);
    const message =
      body.reason === 'body_too_large'
        ? `sandbox-webhook: the review is ${body.bytes} bytes, more than the ${bodyLimitBytes} bytes any apiserver review can be; denied fail-closed`
        : `sandbox-webhook: the webhook is overloaded (too many large reviews at once); denied fail-closed, retry the request`;
    log.warn({ uid: loggedText(head.uid), bytes: body.bytes, reason: body.reason }, 'review body not kept; denied in-band');
    const response: AdmissionResponse = { uid: head.uid, allowed: false, status: { code: body.reason === 'body_too_large' ? 413 : 503, message } };
    return reviewReply(head.apiVersion, response);
  };

  app.post('/mutate', { schema: MUTATE_SCHEMA }, async (request, reply): Promise<AdmissionReviewReply | ErrorBody> => {
    if (request.body instanceof UnreadBody) {
      const body = request.body;
      if (body.head) return unreadAnswer(request.raw, body, body.head);
      // Nothing identifies the review, so no answer can be in-band.
      const status = body.reason === 'body_too_large' ? 413 : 503;
      metrics.rejected(status);
      void reply.code(status);
      return errorBody(
        status,
        body.reason === 'body_too_large'
          ? `body of ${body.bytes} bytes is larger than ${bodyLimitBytes} bytes and does not begin like an AdmissionReview`
          : 'the webhook is overloaded (too many large bodies at once); retry the request',
      );
    }
    const decoded = decodeReview(request.body);
    if (!decoded.ok) {
      metrics.rejected(400);
      void reply.code(400);
      return errorBody(400, `invalid AdmissionReview: ${decoded.message}`);
    }
    const { request: admission, apiVersion } = decoded;
    const policy = options.policy();
    const budgetMs = reviewBudgetMs(requestTimeoutMs, apiserverTimeoutMs(request.query));
    const leftMs = budgetMs - sinceArrivalMs(request.raw);
    if (inFlight >= maxInFlight || leftMs <= 0) {
      // Shed at once rather than queue past the apiserver's deadline: too many reviews await a
      // decision, or this one already waited its budget away. The answer fails closed.
      return answer(request.raw, admission, apiVersion, policy, failClosed(admission, 'overloaded', 503, 'the webhook is overloaded; denied fail-closed, retry the request'));
    }
    inFlight += 1;
    metrics.inFlight.inc();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<Decided>((resolve) => {
      // Whole milliseconds: each distinct fractional duration would cost its own timer list.
      timer = setTimeout(
        () => resolve(failClosed(admission, 'deadline', 500, `no decision within ${Math.round(budgetMs)} ms; denied fail-closed, retry the request`)),
        Math.ceil(leftMs),
      );
    });
    let decided: Decided;
    try {
      const decision = (async (): Promise<Decided> => ({ result: await admit(admission, policy, options.cluster) }))();
      decided = await Promise.race([decision, deadline]);
    } catch (error) {
      decided = internalError(admission, error);
    } finally {
      clearTimeout(timer);
      inFlight -= 1;
      metrics.inFlight.dec();
    }
    return answer(request.raw, admission, apiVersion, policy, decided);
  });

  app.get('/healthz', async () => ({ status: 'ok' }));

  app.get('/readyz', async (_request, reply) => {
    const readiness = options.readiness?.() ?? { ready: true, reasons: [] };
    if (!readiness.ready) return reply.code(503).send({ status: 'unready', reasons: readiness.reasons });
    return { status: 'ready' };
  });

  return app;
}

/** A review's result, and the reason when it was denied without a decision. */
interface Decided {
  readonly result: AdmissionResult;
  readonly failClosed?: FailClosedReason;
}
