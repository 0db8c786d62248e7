// Cluster awareness: Namespace labels and RuntimeClasses read from the API server.
// Until informers are wired in, the webhook runs offline (facts unknown, decided fail-safe).

import type { Logger } from 'pino';
import type { ClusterFacts } from '../admission/facts.js';
import type { Readiness } from '../server/app.js';
import type { Metrics } from '../server/metrics.js';

export interface ClusterConnection {
  readonly facts: ClusterFacts;
  readiness(): Readiness;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  readonly kubeconfig: string | undefined;
  readonly offline: boolean;
}

export async function connectCluster(
  _options: ClusterOptions,
  _logger: Logger,
  _metrics: Metrics,
): Promise<ClusterConnection | undefined> {
  return undefined;
}
