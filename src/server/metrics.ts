// Prometheus metrics (prom-client), one registry per process so tests can build many apps.

import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { AdmissionSummary } from '../admission/admit.js';
import { CounterFamily, HistogramFamily, type CounterSeries, type HistogramSeries } from './metric-families.js';

// The apiserver's own webhook latency buckets (apiserver/admission/metrics), in seconds.
export const ADMISSION_BUCKETS_SECONDS = [0.005, 0.025, 0.1, 0.5, 1, 2.5, 10];

/** The informers cluster/ runs; their series exist from the start (0 = not synced), also offline. */
export const INFORMER_RESOURCES = ['namespaces', 'runtimeclasses'] as const;

/** Why a review was denied fail-closed without a decision. */
export type FailClosedReason = 'overloaded' | 'deadline' | 'internal_error';
const FAIL_CLOSED_REASONS: readonly FailClosedReason[] = ['overloaded', 'deadline', 'internal_error'];

export class Metrics {
  readonly registry = new Registry();
  // The two families every review updates: see metric-families.ts for why they are not prom-client's.
  readonly admissions = new CounterFamily(
    'sandbox_webhook_admission_requests_total',
    'Admission reviews answered, by operation, decision, rule, mode and outcome.',
    ['operation', 'decision', 'rule', 'mode', 'outcome'],
    this.registry,
  );
  readonly admissionDuration = new HistogramFamily(
    'sandbox_webhook_admission_duration_seconds',
    'Time from review received to answer sent, in seconds.',
    ['outcome'],
    ADMISSION_BUCKETS_SECONDS,
    this.registry,
  );
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
  /** reviews being processed now; read when /metrics is scraped, so the review path only counts */
  inFlightReviews = 0;
  readonly inFlight: Gauge = new Gauge({
    name: 'sandbox_webhook_admission_in_flight',
    help: 'Admission reviews being processed.',
    registers: [this.registry],
    collect: (): void => this.inFlight.set(this.inFlightReviews),
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

  // The series of each label set, found without building a key: by rule name (a string from the
  // policy, whose hash V8 keeps), then among the few operation, decision, mode and outcome
  // combinations that rule has seen. Bounded as the families are: by the rules policies have named.
  private readonly admissionSeries = new Map<string, AdmissionSeries[]>();

  observeAdmission(operation: string, mode: string, summary: AdmissionSummary, durationSeconds: number): void {
    const { decision, rule, outcome } = summary;
    let seen = this.admissionSeries.get(rule);
    if (!seen) {
      seen = [];
      this.admissionSeries.set(rule, seen);
    }
    let series: AdmissionSeries | undefined;
    for (const s of seen) {
      if (s.operation === operation && s.decision === decision && s.mode === mode && s.outcome === outcome) {
        series = s;
        break;
      }
    }
    if (!series) {
      series = {
        operation,
        decision,
        mode,
        outcome,
        count: this.admissions.child(operation, decision, rule, mode, outcome),
        duration: this.admissionDuration.child(outcome),
      };
      seen.push(series);
    }
    series.count.value += 1;
    series.duration.observe(durationSeconds);
  }
}

interface AdmissionSeries {
  readonly operation: string;
  readonly decision: string;
  readonly mode: string;
  readonly outcome: string;
  readonly count: CounterSeries;
  readonly duration: HistogramSeries;
}
