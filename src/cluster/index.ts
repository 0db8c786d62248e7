// Cluster awareness: Namespace labels and RuntimeClasses read from the API server with list+watch
// informers (informer.ts), served to the admission step as ClusterFacts (cluster-facts.ts).
// The only module that talks to the API server. It needs get, list and watch on namespaces and on
// runtimeclasses.node.k8s.io, nothing else.
// Without a kubeconfig or in-cluster credentials (or with --offline) the webhook runs offline: facts
// unknown, decided fail-safe.

import { existsSync } from 'node:fs';
import { delimiter } from 'node:path';
import type { Logger } from 'pino';
import type { ClusterFacts } from '../admission/facts.js';
import type { NamespaceFacts } from '../policy/evaluate.js';
import type { Readiness } from '../telemetry/readiness.js';
import type { Metrics } from '../telemetry/metrics.js';
import { InformerFacts, NAMESPACES_PATH, RUNTIME_CLASSES_PATH, namespaceFacts, runtimeClassFact, type PresentRuntimeClass } from './cluster-facts.js';
import { Informer, type InformerTiming } from './informer.js';
import { HttpKubeApi, type KubeApi } from './kube-api.js';
import { KubeConfig } from './kubeconfig.js';

export interface ClusterConnection {
  readonly facts: ClusterFacts;
  readiness(): Readiness;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  /** KUBECONFIG: a path, or several joined by the path delimiter (merged as kubectl does) */
  readonly kubeconfig: string | undefined;
  readonly offline: boolean;
  /** deadline of a direct namespace lookup on a cache miss; default 1000 ms (the apiserver gives us 5-10 s) */
  readonly lookupTimeoutMs?: number;
  readonly timing?: Partial<InformerTiming>;
  /** for tests: a directory prefixed to the ServiceAccount path (client-node loadFromCluster's pathPrefix) */
  readonly inClusterPathPrefix?: string;
}

export const DEFAULT_LOOKUP_TIMEOUT_MS = 1000;
const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

export interface LoadedKubeConfig {
  readonly kubeConfig: KubeConfig;
  /** where it came from, for the logs */
  readonly source: string;
}

/**
 * The kubeconfig named by options.kubeconfig, else the in-cluster one (KUBERNETES_SERVICE_HOST and a
 * ServiceAccount token, as client-node's loadFromCluster reads them), else undefined: offline.
 * Throws when a named kubeconfig cannot be used: an explicit configuration that fails must not
 * quietly turn into offline mode.
 */
export async function loadKubeConfig(options: ClusterOptions): Promise<LoadedKubeConfig | undefined> {
  if (options.offline) return undefined;
  const files = (options.kubeconfig ?? '').split(delimiter).filter((file) => file !== '');
  const env = process.env;
  const prefix = options.inClusterPathPrefix ?? '';
  const inCluster = Boolean(env.KUBERNETES_SERVICE_HOST && env.KUBERNETES_SERVICE_PORT && existsSync(`${prefix}${SERVICE_ACCOUNT_TOKEN}`));
  if (files.length === 0 && !inCluster) return undefined;
  const kubeConfig = new KubeConfig();
  if (files.length > 0) {
    const [first, ...rest] = files as [string, ...string[]];
    kubeConfig.loadFromFile(first);
    for (const file of rest) {
      const other = new KubeConfig();
      other.loadFromFile(file);
      // kubectl: the first file that sets current-context decides it.
      kubeConfig.mergeConfig(other, true);
    }
    if (!kubeConfig.getCurrentCluster()) {
      throw new Error(`${files.join(delimiter)}: no cluster for current-context "${kubeConfig.getCurrentContext()}"`);
    }
    return { kubeConfig, source: files.join(delimiter) };
  }
  // What client-node's loadFromCluster reads (src/config.ts): the service env variables and token.
  kubeConfig.loadFromCluster(prefix);
  return { kubeConfig, source: 'in-cluster ServiceAccount' };
}

/** Starts both informers over `api` and answers facts from them at once (misses are looked up directly). */
export function startCluster(
  api: KubeApi,
  logger: Logger,
  metrics: Metrics,
  options: Pick<ClusterOptions, 'lookupTimeoutMs' | 'timing'> = {},
): ClusterConnection {
  const namespaces = new Informer<NamespaceFacts>({
    resource: 'namespaces',
    path: NAMESPACES_PATH,
    toEntry: namespaceFacts,
    api,
    logger,
    metrics,
    ...(options.timing ? { timing: options.timing } : {}),
  });
  const runtimeClasses = new Informer<PresentRuntimeClass>({
    resource: 'runtimeclasses',
    path: RUNTIME_CLASSES_PATH,
    toEntry: runtimeClassFact,
    api,
    logger,
    metrics,
    ...(options.timing ? { timing: options.timing } : {}),
  });
  namespaces.start();
  runtimeClasses.start();
  const facts = new InformerFacts({
    namespaces,
    runtimeClasses,
    api,
    metrics,
    logger,
    lookupTimeoutMs: options.lookupTimeoutMs ?? DEFAULT_LOOKUP_TIMEOUT_MS,
  });
  return {
    facts,
    readiness() {
      // Ready once both caches were filled; later failures keep the last cache and stay ready.
      const reasons: string[] = [];
      for (const informer of [namespaces, runtimeClasses]) {
        const status = informer.status();
        if (!status.synced) {
          reasons.push(`${informer.resource} not yet listed from the API server${status.lastError ? ` (${status.lastError})` : ''}`);
        }
      }
      return { ready: reasons.length === 0, reasons };
    },
    async stop() {
      await Promise.all([namespaces.stop(), runtimeClasses.stop()]);
    },
  };
}

export async function connectCluster(options: ClusterOptions, logger: Logger, metrics: Metrics): Promise<ClusterConnection | undefined> {
  const loaded = await loadKubeConfig(options);
  if (!loaded) return undefined;
  const api = new HttpKubeApi(loaded.kubeConfig);
  const clusterLogger = logger.child({ component: 'cluster' });
  clusterLogger.info({ server: api.server, kubeconfig: loaded.source }, 'reading namespaces and RuntimeClasses from the API server');
  return startCluster(api, clusterLogger, metrics, options);
}
