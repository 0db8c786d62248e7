// The only module that knows fastify: routes, body handling, TLS, health and metrics. It decodes,
// calls the admission core, and encodes; no decision is taken here.
//   POST /mutate   AdmissionReview in, AdmissionReview out (v1 and v1beta1)
//   GET  /healthz  the process serves (liveness)
//   GET  /readyz   policy loaded, informers synced, not shutting down (readiness)
//   GET  /metrics  Prometheus text format

import type https from 'node:https';
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyHttpsOptions,
  type FastifyInstance,
  type FastifySchema,
  type FastifyServerOptions,
} from 'fastify';
import { pino } from 'pino';
import { admit, rejected, type AdmissionResult } from '../admission/admit.js';
import type { ClusterFacts } from '../admission/facts.js';
import { decodeReview, REVIEW_REPLY_SCHEMA, reviewReply, type AdmissionRequest, type AdmissionReviewReply, type ReviewVersion } from '../admission/review.js';
import type { Policy } from '../policy/policy.js';
import type { FailClosedReason, Metrics } from './metrics.js';
import { secureContextOptions } from './tls.js';

// An UPDATE review carries two pods of up to ~1.5 MiB each (etcd's request limit): 3 MiB.
export const BODY_LIMIT_BYTES = 3 * 1024 * 1024;

export interface Readiness {
  readonly ready: boolean;
  readonly reasons: readonly string[];
}

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
  /**
   * answer fail-closed when a review takes longer than this since it arrived (well inside the
   * apiserver's timeoutSeconds; a shorter `?timeout=` from the apiserver wins)
   */
  readonly requestTimeoutMs?: number;
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
  405: 'Method Not Allowed',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

function errorBody(statusCode: number, message: string): ErrorBody {
  return { statusCode, error: STATUS_TEXT[statusCode] ?? 'Error', message };
}

const ROUTES: Record<string, string> = { '/mutate': 'POST', '/healthz': 'GET', '/readyz': 'GET', '/metrics': 'GET' };

const ARRIVED_AT = Symbol('arrivedAt');

// Only the response is described: fastify compiles a serializer for answers (200) from it, and
// nothing validates or coerces the request.
const MUTATE_SCHEMA: FastifySchema = { response: { 200: REVIEW_REPLY_SCHEMA } };

function timeout<T>(ms: number, onTimeout: () => T): { promise: Promise<T>; cancel: () => void } {
  let timer: NodeJS.Timeout | undefined;
  const promise = new Promise<T>((resolve) => {
    // Whole milliseconds: a timer fires on the first libuv millisecond tick at or after its duration,
    // so rounding up changes nothing, while each distinct fractional duration costs its own timer list.
    timer = setTimeout(() => resolve(onTimeout()), Math.ceil(ms));
  });
  return { promise, cancel: () => clearTimeout(timer) };
}

let lastTimeout: { raw: unknown; ms: number | undefined } = { raw: undefined, ms: undefined };

const GO_DURATION_UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, 'μs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * The `?timeout=` the apiserver adds to each call: the time it will wait, as a Go duration
 * ("5s", "4.5s", "900ms"; KUBERNETES.md §1). Undefined when absent or not a duration.
 */
export function apiserverTimeoutMs(query: unknown): number | undefined {
  const raw = (query as { timeout?: unknown } | undefined)?.timeout;
  // The apiserver sends the same value on call after call: parse it once.
  if (raw !== lastTimeout.raw || typeof raw !== 'string') lastTimeout = { raw, ms: parseGoDurationMs(raw) };
  return lastTimeout.ms;
}

function parseGoDurationMs(raw: unknown): number | undefined {
  if (typeof raw !== 'string' || !/^(\d+(\.\d+)?(ns|us|µs|μs|ms|s|m|h))+$/.test(raw)) return undefined;
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

export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const bodyLimit = options.bodyLimitBytes ?? BODY_LIMIT_BYTES;
  const requestTimeoutMs = options.requestTimeoutMs ?? 2500;
  const maxInFlight = options.maxInFlight ?? 512;
  const log: FastifyBaseLogger = typeof options.logger === 'object' ? options.logger : pino({ enabled: options.logger === true });
  const logsDecisions = (): boolean => (log as { isLevelEnabled?: (level: string) => boolean }).isLevelEnabled?.('info') ?? true;
  const serverOptions: FastifyServerOptions = {
    bodyLimit,
    // One log line per decision is written by the route itself; fastify's per-request lines are noise.
    logController: new LogController({ disableRequestLogging: true }),
    // While draining on SIGTERM, requests already on an open connection are still answered (a 503
    // would fail an admission); new connections are refused and go to another replica.
    return503OnClosing: false,
    // The apiserver reuses connections (HTTP/1.1 keep-alive); keep them longer than its idle timeout.
    keepAliveTimeout: 65_000,
    // fastify would derive a child logger for every request; the routes log through `log` below
    // instead, so a review costs no logger allocation when its line is below the level.
    logger: false,
  };
  const app = (
    options.tls
      ? Fastify({
          ...(serverOptions as FastifyHttpsOptions<https.Server>),
          https: secureContextOptions(options.tls),
        })
      : Fastify(serverOptions)
  ) as unknown as FastifyInstance;

  // One JSON parse, our own: fastify's schema machinery never runs over the Pod (STYLE.md).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit }, (_request, body, done) => {
    if (body === '') {
      const empty = new Error('body is empty; send an AdmissionReview') as Error & { statusCode: number };
      empty.statusCode = 400;
      done(empty, undefined);
      return;
    }
    try {
      done(null, JSON.parse(body as string));
    } catch (error) {
      const failure = new Error(`body is not valid JSON: ${(error as Error).message}`) as Error & { statusCode: number };
      failure.statusCode = 400;
      done(failure, undefined);
    }
  });

  app.setErrorHandler((error: Error & { statusCode?: number; code?: string }, request, reply) => {
    let status = error.statusCode ?? 500;
    if (status < 400 || status > 599) status = 500;
    let message = error.message;
    if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') message = `body larger than ${bodyLimit} bytes`;
    if (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      message = `content type ${JSON.stringify(request.headers['content-type'] ?? '')} is not supported; send application/json`;
      status = 415;
    }
    if (error.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') message = 'body is empty; send an AdmissionReview';
    if (status >= 500) {
      log.error({ err: error, method: request.method, url: request.url }, 'request failed');
      message = 'internal error';
    }
    options.metrics.rejectedRequests.inc({ code: String(status) });
    void reply.code(status).send(errorBody(status, message));
  });

  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?', 1)[0] ?? '';
    const allowed = ROUTES[path];
    if (allowed) {
      void reply.code(405).header('allow', allowed === 'GET' ? 'GET, HEAD' : allowed).send(errorBody(405, `${request.method} ${path} is not allowed; use ${allowed}`));
      return;
    }
    void reply.code(404).send(errorBody(404, `no route ${request.method} ${path}; routes: POST /mutate, GET /healthz, /readyz, /metrics`));
  });

  type Arrived = { [ARRIVED_AT]?: number };
  const sinceArrivalMs = (raw: object): number => {
    const now = performance.now();
    return now - ((raw as Arrived)[ARRIVED_AT] ?? now);
  };
  const draining = options.draining ?? ((): boolean => false);
  // One hook for every request, in callback form: fastify runs it without the promise an async
  // hook costs on every review.
  app.addHook('onRequest', (request, reply, done) => {
    // When the request arrived (headers parsed): a review's time budget counts from here, not from
    // when its body was read and parsed, which is where time goes under load. Kept on the request
    // itself: a WeakMap entry per review is an ephemeron that every young-generation GC must process.
    (request.raw as Arrived)[ARRIVED_AT] = performance.now();
    // While draining on SIGTERM, every answer closes its connection, so that clients open the
    // next one to another replica instead of reusing one to a process about to stop listening.
    if (draining()) void reply.header('connection', 'close');
    done();
  });

  let inFlight = 0;
  const failClosed = (admission: AdmissionRequest, reason: FailClosedReason, code: number, message: string): AdmissionResult => {
    options.metrics.failClosed.inc({ reason });
    return rejected(admission, code, message);
  };
  const internalError = (admission: AdmissionRequest, error: unknown): AdmissionResult => {
    log.error({ err: error, uid: admission.uid }, 'admission failed');
    return failClosed(admission, 'internal_error', 500, 'internal error while deciding; denied fail-closed');
  };

  /** Metrics and the decision log line, then the answer in the version the apiserver sent. */
  const answer = (raw: object, admission: AdmissionRequest, apiVersion: ReviewVersion, mode: Policy['mode'], result: AdmissionResult): AdmissionReviewReply => {
    const durationMs = sinceArrivalMs(raw);
    const { summary } = result;
    options.metrics.observeAdmission(admission.operation, mode, summary, durationMs / 1000);
    const object = admission.object as { metadata?: { generateName?: unknown } } | null | undefined;
    // The record is built only when it will be written.
    if (logsDecisions()) log.info(
      {
        uid: admission.uid,
        operation: admission.operation,
        resource: admission.subResource ? `${admission.resource.resource}/${admission.subResource}` : admission.resource.resource,
        namespace: summary.namespace,
        pod: summary.pod || undefined,
        generateName: typeof object?.metadata?.generateName === 'string' ? object.metadata.generateName : undefined,
        dryRun: admission.dryRun || undefined,
        decision: summary.decision,
        rule: summary.rule || undefined,
        outcome: summary.outcome,
        allowed: result.response.allowed,
        reason: summary.reason,
        durationMs: Math.round(durationMs * 1000) / 1000,
      },
      'admission',
    );
    return reviewReply(apiVersion, result.response);
  };

  app.post(
    '/mutate',
    { schema: MUTATE_SCHEMA },
    // Not an async function: a review decided at once (the common case) is answered in this call,
    // with no promise or timer; only one that waits on the cluster returns a promise.
    (request, reply): AdmissionReviewReply | ErrorBody | Promise<AdmissionReviewReply> => {
      const decoded = decodeReview(request.body);
      if (!decoded.ok) {
        options.metrics.rejectedRequests.inc({ code: '400' });
        void reply.code(400);
        return errorBody(400, `invalid AdmissionReview: ${decoded.message}`);
      }
      const { request: admission, apiVersion } = decoded;
      const policy = options.policy();
      const budgetMs = reviewBudgetMs(requestTimeoutMs, apiserverTimeoutMs(request.query));
      const leftMs = budgetMs - sinceArrivalMs(request.raw);
      const done = (result: AdmissionResult): AdmissionReviewReply => answer(request.raw, admission, apiVersion, policy.mode, result);
      if (inFlight >= maxInFlight || leftMs <= 0) {
        // Shed at once rather than queue past the apiserver's deadline: too many reviews await
        // cluster lookups, or this one already waited its budget away. The answer fails closed.
        return done(failClosed(admission, 'overloaded', 503, 'the webhook is overloaded; denied fail-closed, retry the request'));
      }
      let decided: AdmissionResult | Promise<AdmissionResult>;
      try {
        decided = admit(admission, policy, options.cluster);
      } catch (error) {
        return done(internalError(admission, error));
      }
      if (!(decided instanceof Promise)) return done(decided);

      // Waiting on the cluster (a namespace the cache lacks): counted in flight, and raced against
      // what is left of the budget.
      inFlight += 1;
      options.metrics.inFlightReviews += 1;
      const deadline = timeout(leftMs, () =>
        failClosed(admission, 'deadline', 500, `no decision within ${Math.round(budgetMs)} ms; denied fail-closed, retry the request`),
      );
      return Promise.race([decided, deadline.promise])
        .catch((error: unknown) => internalError(admission, error))
        .then(done)
        .finally(() => {
          deadline.cancel();
          inFlight -= 1;
          options.metrics.inFlightReviews -= 1;
        });
    },
  );

  app.get('/healthz', async () => ({ status: 'ok' }));

  app.get('/readyz', async (_request, reply) => {
    const readiness = options.readiness?.() ?? { ready: true, reasons: [] };
    if (!readiness.ready) return reply.code(503).send({ status: 'unready', reasons: readiness.reasons });
    return { status: 'ready' };
  });

  app.get('/metrics', async (_request, reply) => {
    const text = await options.metrics.registry.metrics();
    return reply.type(options.metrics.registry.contentType).send(text);
  });

  return app;
}
