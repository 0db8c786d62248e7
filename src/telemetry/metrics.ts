// Prometheus metrics (prom-client), one registry per process so that tests can build many apps.
// Shared by server/ (reviews, HTTP) and cluster/ (informers, lookups); docs/metrics.md lists every
// metric with its labels.
//
// Every label value comes from a closed set declared here: a label value is a series kept in memory
// until the process ends, so nothing a client sends may choose one. Values outside a set are
// counted under `other` (a review that reaches the counter with an operation outside CREATE,
// UPDATE, DELETE, CONNECT, or a rule name the policy in force does not have).
//
// prom-client is used as designed, labels passed on every call: in a tight loop (Node 20, this
// 2-vCPU VM) counting one review and observing its duration cost 3.8-6.7 µs, and pre-bound
// `labels()` children no less (4.3-6.0 µs); against the ~230 µs of CPU a review costs end to end,
// that is about 2%, not worth a second series cache.

import { createHash } from 'node:crypto';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { DENIAL_REASONS } from '../policy/evaluate.js';

/**
 * Admission latency buckets, in seconds: from 0.5 ms, to resolve a webhook that decides in well
 * under a millisecond, up to 30 s, the longest timeoutSeconds the apiserver allows for a webhook
 * (docs/kubernetes.md §4).
 */
export const ADMISSION_BUCKETS_SECONDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** The informers cluster/ runs; their series exist from the start (0 = not synced), also offline. */
export const INFORMER_RESOURCES = ['namespaces', 'runtimeclasses'] as const;

/** The value of a label whose input was outside its closed set. */
export const OTHER = 'other';

/** The operations of an AdmissionReview (docs/kubernetes.md §1). */
export const OPERATIONS = ['CREATE', 'UPDATE', 'DELETE', 'CONNECT'] as const;
export const DECISIONS = ['sandbox', 'allow', 'deny', 'none'] as const;
export const OUTCOMES = ['patched', 'unchanged', 'denied', 'audited', 'skipped', 'error'] as const;
export const MODES = ['enforce', 'audit'] as const;
/** Rule label values that are not names of the policy's rules: `default` (spec.defaultAction), none (''), a kubelet's mirror pod. */
export const RULE_SOURCES = ['default', '', 'mirror-pod'] as const;


/** Why a review was denied in-band without a decision (fail-closed). */
export const FAIL_CLOSED_REASONS = ['overloaded', 'deadline', 'internal_error', 'body_too_large'] as const;
export type FailClosedReason = (typeof FAIL_CLOSED_REASONS)[number];

/** Every value of the denial counter's `reason`; `unspecified` is a denial that named no reason (a bug). */
export const DENIAL_REASONS_LABELS = [...DENIAL_REASONS, ...FAIL_CLOSED_REASONS, 'unspecified'] as const;
export type DenialReasonLabel = (typeof DENIAL_REASONS_LABELS)[number];

/** HTTP statuses the server answers with before admission; anything else is counted as `other`. */
const HTTP_ERROR_CODES = ['400', '404', '405', '408', '413', '415', '500', '503'] as const;

/** What a review's summary says, read defensively: only these fields reach labels. */
export interface SummaryLabels {
  readonly decision: string;
  readonly rule: string;
  readonly outcome: string;
  readonly denialReason?: unknown;
}

export interface AdmissionLabels {
  readonly operation: string;
  readonly decision: string;
  readonly rule: string;
  readonly mode: string;
  readonly outcome: string;
}

function oneOf(value: unknown, allowed: readonly string[]): string {
  return typeof value === 'string' && allowed.includes(value) ? value : OTHER;
}

/**
 * The labels of one answered review, each from its closed set. `ruleNames` are the names of the
 * rules of the policy that decided it.
 */
export function admissionLabels(operation: unknown, mode: unknown, summary: SummaryLabels, ruleNames: ReadonlySet<string>): AdmissionLabels {
  const rule = summary.rule;
  return {
    operation: oneOf(operation, OPERATIONS),
    decision: oneOf(summary.decision, DECISIONS),
    rule: ruleNames.has(rule) || (RULE_SOURCES as readonly string[]).includes(rule) ? rule : OTHER,
    mode: oneOf(mode, MODES),
    outcome: oneOf(summary.outcome, OUTCOMES),
  };
}

/**
 * The reason of a denial the policy decided: the summary's `denialReason` when it is one of the
 * set; otherwise what the summary shows (a deny rule, a request that could not be read).
 */
export function decisionDenialReason(summary: SummaryLabels): DenialReasonLabel {
  const named = summary.denialReason;
  if (typeof named === 'string' && (DENIAL_REASONS as readonly string[]).includes(named)) return named as DenialReasonLabel;
  if (summary.decision === 'deny') return 'deny_rule';
  if (summary.outcome === 'error') return 'invalid_request';
  return 'unspecified';
}

export interface MetricsOptions {
  /** Node's process metrics (CPU, memory, event loop lag, file descriptors) */
  readonly processMetrics?: boolean;
  /** the webhook's version, for sandbox_webhook_build_info */
  readonly version?: string;
}

export class Metrics {
  readonly registry = new Registry();
  readonly admissions = new Counter({
    name: 'sandbox_webhook_admission_requests_total',
    help: 'Admission reviews answered, by operation, decision, rule, mode and outcome.',
    labelNames: ['operation', 'decision', 'rule', 'mode', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly admissionDuration = new Histogram({
    name: 'sandbox_webhook_admission_duration_seconds',
    help: 'Time from review received (headers read) to answer written, in seconds, by outcome.',
    labelNames: ['outcome'] as const,
    buckets: ADMISSION_BUCKETS_SECONDS,
    registers: [this.registry],
  });
  readonly denials = new Counter({
    name: 'sandbox_webhook_admission_denials_total',
    help: 'Reviews answered allowed=false, by reason (the policy decided it, or fail-closed).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly rejectedRequests = new Counter({
    name: 'sandbox_webhook_http_rejected_total',
    help: 'HTTP requests rejected with an HTTP error before admission (malformed, too large, wrong type, timed out), by status code.',
    labelNames: ['code'] as const,
    registers: [this.registry],
  });
  readonly failClosed = new Counter({
    name: 'sandbox_webhook_admission_fail_closed_total',
    help: 'Reviews denied in-band without a decision, by reason (overloaded, deadline, internal_error, body_too_large).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly connectionsDropped = new Counter({
    name: 'sandbox_webhook_connections_dropped_total',
    help: 'Connections to the webhook port closed at once because the server already held its maximum.',
    registers: [this.registry],
  });
  readonly inFlight = new Gauge({
    name: 'sandbox_webhook_admission_in_flight',
    help: 'Admission reviews waiting for a decision (on the cluster).',
    registers: [this.registry],
  });
  readonly policyReloads = new Counter({
    name: 'sandbox_webhook_policy_reloads_total',
    help: 'Policy reloads after start, by result (success; failure: unreadable or invalid, the previous policy stays).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly policyRules = new Gauge({
    name: 'sandbox_webhook_policy_rules',
    help: 'Rules in the policy in force.',
    registers: [this.registry],
  });
  readonly policyLastReloadSuccess = new Gauge({
    name: 'sandbox_webhook_policy_last_reload_success_timestamp_seconds',
    help: 'When the policy in force was loaded, at start or by the last successful reload (Unix seconds).',
    registers: [this.registry],
  });
  readonly policyInfo = new Gauge({
    name: 'sandbox_webhook_policy_info',
    help: 'Always 1; sha256 is the first 12 hex digits of the SHA-256 of the policy file in force (replicas that differ run different policies).',
    labelNames: ['sha256'] as const,
    registers: [this.registry],
  });
  readonly buildInfo = new Gauge({
    name: 'sandbox_webhook_build_info',
    help: 'Always 1; the webhook version and the Node.js version running it.',
    labelNames: ['version', 'node_version'] as const,
    registers: [this.registry],
  });
  readonly informerSynced = new Gauge({
    name: 'sandbox_webhook_informer_synced',
    help: '1 when the informer for a resource has synced and is watching, else 0.',
    labelNames: ['resource'] as const,
    registers: [this.registry],
  });
  readonly informerRestarts = new Counter({
    name: 'sandbox_webhook_informer_restarts_total',
    help: 'Informer restarts after errors, by resource.',
    labelNames: ['resource'] as const,
    registers: [this.registry],
  });
  readonly namespaceLookups = new Counter({
    name: 'sandbox_webhook_namespace_lookups_total',
    help: 'Namespace label lookups that missed the cache, by result (found, not_found, error).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly certificateExpiry = new Gauge({
    name: 'sandbox_webhook_tls_certificate_expiry_timestamp_seconds',
    help: 'notAfter of the serving certificate in use (Unix seconds).',
    registers: [this.registry],
  });
  readonly certificateReloads = new Counter({
    name: 'sandbox_webhook_tls_certificate_reloads_total',
    help: 'Serving certificate reloads, by result (success; failure: unreadable or invalid, the current certificate stays).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  constructor(options: MetricsOptions = {}) {
    // The event-loop lag histogram samples every 10 ms by default: 5-11 ms of CPU a second at idle,
    // measured in bench:cluster (bench/README.md). 50 ms halved that and still resolves the lag an
    // admin alerts on (tens of milliseconds and more).
    if (options.processMetrics) collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 50 });
    this.buildInfo.set({ version: options.version ?? 'unknown', node_version: process.version }, 1);
    // Every series an alert may use exists from the start, at zero: a counter that appears only on
    // its first increment hides that first increment from rate() and increase().
    for (const result of ['success', 'failure']) {
      this.policyReloads.inc({ result }, 0);
      this.certificateReloads.inc({ result }, 0);
    }
    for (const reason of FAIL_CLOSED_REASONS) this.failClosed.inc({ reason }, 0);
    for (const reason of DENIAL_REASONS_LABELS) this.denials.inc({ reason }, 0);
    for (const resource of INFORMER_RESOURCES) {
      this.informerSynced.set({ resource }, 0);
      this.informerRestarts.inc({ resource }, 0);
    }
  }

  /** One answered review: its count, its duration and, when denied, the denial's reason. */
  observeAdmission(labels: AdmissionLabels, durationSeconds: number, denialReason: DenialReasonLabel | undefined): void {
    this.admissions.inc(labels);
    this.admissionDuration.observe({ outcome: labels.outcome }, durationSeconds);
    if (denialReason !== undefined) this.denials.inc({ reason: denialReason });
  }

  /** A request answered with an HTTP error instead of an AdmissionReview. */
  rejected(status: number): void {
    this.rejectedRequests.inc({ code: oneOf(String(status), HTTP_ERROR_CODES) });
  }

  /** The policy now in force: its rule count, the hash of the file's bytes it was read from, and when. */
  policyLoaded(rules: number, file: Buffer | string, at: Date = new Date()): void {
    this.policyRules.set(rules);
    this.policyInfo.reset();
    this.policyInfo.set({ sha256: createHash('sha256').update(file).digest('hex').slice(0, 12) }, 1);
    this.policyLastReloadSuccess.set(at.getTime() / 1000);
  }
}
