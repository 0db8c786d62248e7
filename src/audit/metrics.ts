// The audit's metrics (docs/audit.md). `sandbox_webhook_pods{namespace,state,rule}` is bounded: the
// rule label comes from the policy (its rule names and `default`), the state from three values, and
// the namespace label names at most `topNamespaces` namespaces, those with the most violations and
// then the most pods; every other namespace is summed under `_other` (no namespace can be called
// that: names are DNS labels). Only a complete scan replaces the series, so they never show half a
// scan; a replica that is not the leader shows none.

import { Counter, Gauge, type Registry } from 'prom-client';
import type { PodAudit, PodState } from './scan.js';

export const OTHER_NAMESPACES = '_other';
export const DEFAULT_TOP_NAMESPACES = 50;

/** Pods per namespace, state and rule, counted during a scan. */
export class PodTally {
  private readonly byNamespace = new Map<string, Map<string, { state: PodState; rule: string; pods: number }>>();

  add(audit: PodAudit): void {
    let series = this.byNamespace.get(audit.namespace);
    if (!series) this.byNamespace.set(audit.namespace, (series = new Map()));
    const key = `${audit.state}\u0000${audit.rule}`;
    const entry = series.get(key);
    if (entry) entry.pods += 1;
    else series.set(key, { state: audit.state, rule: audit.rule, pods: 1 });
  }

  /** The series to publish: the top namespaces by name, the rest summed under `_other`. */
  series(topNamespaces: number): { namespace: string; state: PodState; rule: string; pods: number }[] {
    const ranked = [...this.byNamespace.entries()].map(([namespace, series]) => {
      let violations = 0;
      let pods = 0;
      for (const entry of series.values()) {
        pods += entry.pods;
        if (entry.state === 'violation') violations += entry.pods;
      }
      return { namespace, series, violations, pods };
    });
    ranked.sort((a, b) => b.violations - a.violations || b.pods - a.pods || a.namespace.localeCompare(b.namespace));
    const out = new Map<string, { namespace: string; state: PodState; rule: string; pods: number }>();
    ranked.forEach(({ namespace, series }, i) => {
      const label = i < topNamespaces ? namespace : OTHER_NAMESPACES;
      for (const entry of series.values()) {
        const key = `${label}\u0000${entry.state}\u0000${entry.rule}`;
        const existing = out.get(key);
        if (existing) existing.pods += entry.pods;
        else out.set(key, { namespace: label, state: entry.state, rule: entry.rule, pods: entry.pods });
      }
    });
    return [...out.values()];
  }
}

export class AuditMetrics {
  readonly pods: Gauge<'namespace' | 'state' | 'rule'>;
  readonly scanDuration: Gauge;
  readonly scanPods: Gauge;
  readonly scanRequests: Gauge;
  readonly lastCompleteScan: Gauge;
  readonly lastCompleteScanAge: Gauge;
  readonly scans: Counter<'result'>;
  readonly leader: Gauge;
  private lastCompleteScanMs: number | undefined;

  constructor(
    registry: Registry,
    private readonly topNamespaces = DEFAULT_TOP_NAMESPACES,
    private readonly now: () => number = Date.now,
  ) {
    const registers = [registry];
    this.pods = new Gauge({
      name: 'sandbox_webhook_pods',
      help: `Pods that have not ended, by namespace (the ${topNamespaces} with the most violations, then pods; the rest as "${OTHER_NAMESPACES}"), state (sandboxed, allowed, violation) and deciding rule, as of the last complete audit scan.`,
      labelNames: ['namespace', 'state', 'rule'] as const,
      registers,
    });
    this.scanDuration = new Gauge({ name: 'sandbox_webhook_audit_scan_duration_seconds', help: 'Duration of the last complete audit scan, in seconds.', registers });
    this.scanPods = new Gauge({ name: 'sandbox_webhook_audit_scan_pods', help: 'Pods the last complete audit scan judged.', registers });
    this.scanRequests = new Gauge({ name: 'sandbox_webhook_audit_scan_requests', help: 'List requests (pages) the last complete audit scan sent to the API server.', registers });
    this.lastCompleteScan = new Gauge({
      name: 'sandbox_webhook_audit_last_complete_scan_timestamp_seconds',
      help: 'When the last complete audit scan ended (Unix seconds); 0 before the first.',
      registers,
    });
    this.lastCompleteScanAge = new Gauge({
      name: 'sandbox_webhook_audit_last_complete_scan_age_seconds',
      help: 'Seconds since the last complete audit scan ended; +Inf before the first.',
      registers,
      collect: () => {
        this.lastCompleteScanAge.set(this.lastCompleteScanMs === undefined ? Number.POSITIVE_INFINITY : (this.now() - this.lastCompleteScanMs) / 1000);
      },
    });
    this.scans = new Counter({
      name: 'sandbox_webhook_audit_scans_total',
      help: 'Audit scans by result (complete, failed) since start.',
      labelNames: ['result'] as const,
      registers,
    });
    this.leader = new Gauge({ name: 'sandbox_webhook_audit_leader', help: '1 while this replica holds the audit Lease and runs the scans, else 0.', registers });
    this.scans.inc({ result: 'complete' }, 0);
    this.scans.inc({ result: 'failed' }, 0);
    this.leader.set(0);
    this.lastCompleteScan.set(0);
  }

  completed(tally: PodTally, stats: { pods: number; requests: number; durationMs: number }): void {
    this.pods.reset();
    for (const { namespace, state, rule, pods } of tally.series(this.topNamespaces)) this.pods.set({ namespace, state, rule }, pods);
    this.scanDuration.set(stats.durationMs / 1000);
    this.scanPods.set(stats.pods);
    this.scanRequests.set(stats.requests);
    this.lastCompleteScanMs = this.now();
    this.lastCompleteScan.set(this.lastCompleteScanMs / 1000);
    this.scans.inc({ result: 'complete' });
  }

  failed(): void {
    this.scans.inc({ result: 'failed' });
  }

  /** Leadership changed: a replica that is not the leader publishes no pod counts (another one does). */
  leading(isLeader: boolean): void {
    this.leader.set(isLeader ? 1 : 0);
    if (!isLeader) this.pods.reset();
  }
}
