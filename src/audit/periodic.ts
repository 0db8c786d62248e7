// The audit in the server (opt-in: --audit-interval-seconds): a scan every interval, run only by
// the replica that holds the audit Lease (cluster/lease.ts), so that replicas never scan twice and a
// lost leader is replaced within the lease duration. A scan is cut short when leadership is lost or
// the server stops. Violations are logged (one line each, capped per scan) and counted in metrics.

import type { Logger } from 'pino';
import type { ClusterFacts } from '../admission/facts.js';
import type { KubeApi } from '../cluster/kube-api.js';
import type { Policy } from '../policy/policy.js';
import { PodTally, type AuditMetrics } from './metrics.js';
import { scanPods, type PodAudit } from './scan.js';

/** Violations logged per scan; the metrics count them all. */
const LOGGED_VIOLATIONS_MAX = 100;

export interface PeriodicAuditOptions {
  readonly api: Pick<KubeApi, 'get'>;
  readonly policy: () => Policy;
  readonly cluster: ClusterFacts;
  readonly intervalMs: number;
  readonly isLeader: () => boolean;
  /**
   * whether the namespace cache is filled: before, every pod of an unknown namespace would cost the
   * API server a namespace GET, so the scan waits for the next interval
   */
  readonly ready: () => boolean;
  readonly metrics: AuditMetrics;
  readonly logger: Logger;
  readonly pageSize?: number;
}

export interface PeriodicAudit {
  /** Runs one scan now if this replica leads (also used by tests); resolves when it ended. */
  scanNow(): Promise<void>;
  /** leadership changed (the Lease's onChange) */
  leading(isLeader: boolean): void;
  stop(): Promise<void>;
}

export function startPeriodicAudit(options: PeriodicAuditOptions): PeriodicAudit {
  const { logger, metrics } = options;
  let stopped = false;
  let running: Promise<void> | undefined;
  let abort: AbortController | undefined;
  let timer: NodeJS.Timeout | undefined;

  async function scanOnce(): Promise<void> {
    if (stopped || !options.isLeader()) return;
    if (!options.ready()) {
      logger.info('audit: namespaces and RuntimeClasses not read yet; scanning at the next interval');
      return;
    }
    abort = new AbortController();
    const tally = new PodTally();
    let logged = 0;
    const onPod = (audit: PodAudit): void => {
      tally.add(audit);
      if (audit.state === 'violation' && logged < LOGGED_VIOLATIONS_MAX) {
        logged += 1;
        logger.warn({ namespace: audit.namespace, pod: audit.name, rule: audit.rule, reason: audit.reason }, 'audit: pod violates the policy');
      }
    };
    try {
      const stats = await scanPods({
        api: options.api,
        policy: options.policy(),
        cluster: options.cluster,
        onPod,
        signal: abort.signal,
        ...(options.pageSize ? { pageSize: options.pageSize } : {}),
      });
      if (!options.isLeader()) return;
      metrics.completed(tally, stats);
      const counts: Record<string, number> = { sandboxed: 0, allowed: 0, violation: 0 };
      for (const series of tally.series(Number.POSITIVE_INFINITY)) counts[series.state] = (counts[series.state] ?? 0) + series.pods;
      logger.info({ ...stats, ...counts }, 'audit: scan complete');
    } catch (error) {
      metrics.failed();
      logger.warn({ err: (error as Error).message }, 'audit: scan failed; the next one starts at the next interval');
    } finally {
      abort = undefined;
    }
  }

  // Scans never overlap: each starts after the one before has ended.
  const serial = (): Promise<void> => (running = (running ?? Promise.resolve()).then(scanOnce));
  const schedule = (): void => {
    if (stopped) return;
    timer = setTimeout(() => void serial().finally(schedule), options.intervalMs);
  };
  schedule();

  return {
    scanNow: serial,
    leading(isLeader) {
      metrics.leading(isLeader);
      if (isLeader) {
        logger.info('audit: this replica holds the audit Lease; scanning');
        void serial();
      } else {
        abort?.abort(new Error('leadership lost'));
        logger.info('audit: this replica no longer holds the audit Lease');
      }
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      abort?.abort(new Error('shutting down'));
      await running?.catch(() => undefined);
    },
  };
}
