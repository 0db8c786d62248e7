// The audit as the server runs it (--audit-interval-seconds > 0): a Lease for leader election in the
// webhook's own namespace, the periodic scan, and its metrics (docs/audit.md). RBAC it needs: list
// pods cluster-wide, and get, create and update on leases.coordination.k8s.io in that namespace.

import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { ClusterFacts } from '../admission/facts.js';
import { loadKubeConfig } from '../cluster/index.js';
import { HttpKubeApi } from '../cluster/kube-api.js';
import { LeaderElector, ownNamespace } from '../cluster/lease.js';
import type { Policy } from '../policy/policy.js';
import { AuditMetrics } from './metrics.js';
import { startPeriodicAudit } from './periodic.js';

export const AUDIT_LEASE_NAME = 'sandbox-webhook-audit';

export interface ServerAuditOptions {
  readonly kubeconfig: string | undefined;
  readonly intervalSeconds: number;
  readonly policy: () => Policy;
  readonly cluster: ClusterFacts;
  /** the cluster connection's informers have synced */
  readonly ready: () => boolean;
  readonly registry: Registry;
  readonly logger: Logger;
}

export interface ServerAudit {
  stop(): Promise<void>;
}

/** Starts the leader election and the periodic scan; undefined when there is no cluster to audit. */
export async function startServerAudit(options: ServerAuditOptions): Promise<ServerAudit | undefined> {
  const loaded = await loadKubeConfig({ kubeconfig: options.kubeconfig, offline: false });
  if (!loaded) return undefined;
  const api = new HttpKubeApi(loaded.kubeConfig);
  const logger = options.logger.child({ component: 'audit' });
  const metrics = new AuditMetrics(options.registry);
  const namespace = ownNamespace();
  const audit = startPeriodicAudit({
    api,
    policy: options.policy,
    cluster: options.cluster,
    intervalMs: options.intervalSeconds * 1000,
    // Called from the scan's timer, after `elector` below exists.
    isLeader: () => elector.isLeader(),
    ready: options.ready,
    metrics,
    logger,
  });
  const elector: LeaderElector = new LeaderElector({
    api,
    namespace,
    name: AUDIT_LEASE_NAME,
    onChange: (leading) => audit.leading(leading),
    onError: (error) => logger.warn({ err: error.message, lease: `${namespace}/${AUDIT_LEASE_NAME}` }, 'audit: lease round failed'),
  });
  logger.info({ lease: `${namespace}/${AUDIT_LEASE_NAME}`, identity: elector.identity, intervalSeconds: options.intervalSeconds }, 'audit: enabled; electing a leader');
  elector.start();
  return {
    async stop() {
      await audit.stop();
      await elector.stop();
    },
  };
}
