// Prometheus metrics (prom-client), one registry per process so tests can build many apps.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { AdmissionSummary } from '../admission/admit.js';

// The apiserver's own webhook latency buckets (apiserver/admission/metrics), in seconds.
export const ADMISSION_BUCKETS_SECONDS = [0.005, 0.025, 0.1, 0.5, 1, 2.5, 10];

/** The informers cluster/ runs; their series exist from the start (0 = not synced), also offline. */
export const INFORMER_RESOURCES = ['namespaces', 'runtimeclasses'] as const;

/** Why a review was denied fail-closed without a decision. */
export type FailClosedReason = 'overloaded' | 'deadline' | 'internal_error';
const FAIL_CLOSED_REASONS: readonly FailClosedReason[] = ['overloaded', 'deadline', 'internal_error'];

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
    help: 'Time from review received to answer sent, in seconds.',
    labelNames: ['outcome'] as const,
    buckets: ADMISSION_BUCKETS_SECONDS,
    registers: [this.registry],
  });
  readonly rejectedRequests = new Counter({
    name: 'sandbox_webhook_http_rejected_total',
    help: 'HTTP requests rejected with an HTTP error before admission (malformed, too large, wrong type), by status code.',
    labelNames: ['code'] as const,
    registers: [this.registry],
  });
  readonly failClosed = new Counter({
    name: 'sandbox_webhook_admission_fail_closed_total',
    help: 'Reviews denied in-band without a decision, by reason (overloaded: shed at once; deadline: no decision in time; internal_error).',
    labelNames: ['reason'] as const,
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
  readonly policyLoadedTimestamp = new Gauge({
    name: 'sandbox_webhook_policy_loaded_timestamp_seconds',
    help: 'When the policy in force was loaded (Unix seconds).',
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
  readonly inFlight = new Gauge({
    name: 'sandbox_webhook_admission_in_flight',
    help: 'Admission reviews being processed.',
    registers: [this.registry],
  });

  constructor(options: { processMetrics?: boolean } = {}) {
    if (options.processMetrics) collectDefaultMetrics({ register: this.registry });
    // Every series an alert may use exists from the start, at zero: a counter that appears only on
    // its first increment hides that first increment from rate() and increase().
    for (const result of ['success', 'failure']) {
      this.policyReloads.inc({ result }, 0);
      this.certificateReloads.inc({ result }, 0);
    }
    for (const reason of FAIL_CLOSED_REASONS) this.failClosed.inc({ reason }, 0);
    for (const resource of INFORMER_RESOURCES) {
      this.informerSynced.set({ resource }, 0);
      this.informerRestarts.inc({ resource }, 0);
    }
  }

  // prom-client hashes a label object on every inc() and observe(); the series of a label set are
  // looked up once and kept (a policy has a bounded set of rules; the cache is reset past its cap).
  private readonly admissionSeries = new Map<string, { count: { inc(): void }; duration: { observe(value: number): void } }>();

  observeAdmission(operation: string, mode: string, summary: AdmissionSummary, durationSeconds: number): void {
    const key = `${operation}\u0000${summary.decision}\u0000${summary.rule}\u0000${mode}\u0000${summary.outcome}`;
    let series = this.admissionSeries.get(key);
    if (!series) {
      if (this.admissionSeries.size >= 10_000) this.admissionSeries.clear();
      series = {
        count: this.admissions.labels(operation, summary.decision, summary.rule, mode, summary.outcome),
        duration: this.admissionDuration.labels(summary.outcome),
      };
      this.admissionSeries.set(key, series);
    }
    series.count.inc();
    series.duration.observe(durationSeconds);
  }
}
