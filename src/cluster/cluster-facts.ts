// ClusterFacts (admission/facts.ts) from the informer caches, with a direct lookup for namespaces the
// cache does not know yet: a namespace created a moment before its first pod (kubectl apply of a
// namespace and a Deployment) reaches the webhook before its watch event reaches us.

import type { Logger } from 'pino';
import type { ClusterFacts } from '../admission/facts.js';
import type { NamespaceFacts, RuntimeClassFact } from '../policy/evaluate.js';
import type { Labels } from '../policy/selector.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { Informer } from './informer.js';
import { isRecord } from '../json.js';
import { ApiError, type KubeApi } from './kube-api.js';

export const NAMESPACES_PATH = '/api/v1/namespaces';
export const RUNTIME_CLASSES_PATH = '/apis/node.k8s.io/v1/runtimeclasses';

/** What we keep of a RuntimeClass: the fact the policy reads, plus what the RuntimeClass admission plugin applies. */
export type PresentRuntimeClass = Extract<RuntimeClassFact, { state: 'present' }> & {
  /** overhead.podFixed, which the RuntimeClass admission plugin copies into spec.overhead (docs/kubernetes.md §2) */
  readonly overheadPodFixed: Labels | undefined;
  /** scheduling.tolerations, which it unions into the pod's */
  readonly tolerations: readonly Record<string, unknown>[];
};

function stringMap(value: unknown): Record<string, string> | undefined {
  if (!isRecord(value)) return undefined;
  const out: Record<string, string> = {};
  for (const [key, entry] of Object.entries(value)) if (typeof entry === 'string') out[key] = entry;
  return out;
}

function objectName(object: Record<string, unknown>): string | undefined {
  const metadata = isRecord(object.metadata) ? object.metadata : {};
  return typeof metadata.name === 'string' && metadata.name !== '' ? metadata.name : undefined;
}

/** A Namespace (core/v1) as the policy sees it: its name and labels, frozen. */
export function namespaceFacts(object: Record<string, unknown>): NamespaceFacts | undefined {
  const name = objectName(object);
  if (name === undefined) return undefined;
  const metadata = object.metadata as Record<string, unknown>;
  return Object.freeze({ name, labels: Object.freeze(stringMap(metadata.labels) ?? {}) });
}

/** A RuntimeClass (node.k8s.io/v1). nodeSelector is undefined when the class has no `scheduling` at all. */
export function runtimeClassFact(object: Record<string, unknown>): PresentRuntimeClass | undefined {
  if (objectName(object) === undefined || typeof object.handler !== 'string') return undefined;
  const scheduling = isRecord(object.scheduling) ? object.scheduling : undefined;
  const overhead = isRecord(object.overhead) ? object.overhead : undefined;
  return Object.freeze({
    state: 'present' as const,
    handler: object.handler,
    nodeSelector: scheduling ? Object.freeze(stringMap(scheduling.nodeSelector) ?? {}) : undefined,
    overheadPodFixed: overhead ? stringMap(overhead.podFixed) : undefined,
    tolerations: scheduling && Array.isArray(scheduling.tolerations) ? scheduling.tolerations.filter(isRecord) : [],
  });
}

export interface ClusterFactsOptions {
  readonly namespaces: Pick<Informer<NamespaceFacts>, 'get' | 'status'>;
  readonly runtimeClasses: Pick<Informer<PresentRuntimeClass>, 'get' | 'status'>;
  readonly api: Pick<KubeApi, 'get'>;
  readonly metrics: Pick<Metrics, 'namespaceLookups'>;
  readonly logger: Logger;
  /** deadline of a direct namespace GET; well inside the webhook's own request timeout */
  readonly lookupTimeoutMs: number;
}

export class InformerFacts implements ClusterFacts {
  private readonly lookups = new Map<string, Promise<NamespaceFacts>>();

  constructor(private readonly options: ClusterFactsOptions) {}

  namespace(name: string): NamespaceFacts | Promise<NamespaceFacts> {
    const cached = this.options.namespaces.get(name);
    if (cached) return cached;
    // A burst of pods for a new namespace (a ReplicaSet scaling up) shares one GET.
    let pending = this.lookups.get(name);
    if (!pending) {
      pending = this.lookUp(name).finally(() => this.lookups.delete(name));
      this.lookups.set(name, pending);
    }
    return pending;
  }

  runtimeClass(name: string): RuntimeClassFact {
    const status = this.options.runtimeClasses.status();
    if (!status.synced) {
      return {
        state: 'unknown',
        reason: `RuntimeClasses not yet read from the API server${status.lastError ? ` (${status.lastError})` : ''}`,
      };
    }
    const present = this.options.runtimeClasses.get(name);
    if (present) return present;
    // While the watch reconnects, a class created meanwhile is not in the cache yet: "missing" would
    // tell the user something false. The apiserver's RuntimeClass admission plugin still rejects a
    // class that really is missing (docs/kubernetes.md §2), so nothing unsafe gets through.
    if (!status.live) {
      return { state: 'unknown', reason: `the RuntimeClass watch is reconnecting (${status.lastError ?? 'restarting'})` };
    }
    return { state: 'missing' };
  }

  private async lookUp(name: string): Promise<NamespaceFacts> {
    const { api, metrics, logger, lookupTimeoutMs } = this.options;
    const unknown = (reason: string): NamespaceFacts => ({ name, labels: undefined, unknownReason: reason });
    const started = Date.now();
    try {
      const { status, body } = await api.get(`${NAMESPACES_PATH}/${encodeURIComponent(name)}`, { timeoutMs: lookupTimeoutMs });
      const durationMs = Date.now() - started;
      if (status === 200) {
        const facts = isRecord(body) ? namespaceFacts(body) : undefined;
        if (facts && facts.name === name) {
          metrics.namespaceLookups.inc({ result: 'found' });
          logger.debug({ namespace: name, durationMs }, 'namespace not in the cache yet; read it directly');
          return facts;
        }
      }
      if (status === 404) {
        metrics.namespaceLookups.inc({ result: 'not_found' });
        logger.warn({ namespace: name, durationMs }, 'namespace lookup: not found');
        return unknown('the namespace was not found in the cluster');
      }
      const message = status === 200 ? 'the answer is not that Namespace' : ApiError.from(status, body, 'GET').message;
      metrics.namespaceLookups.inc({ result: 'error' });
      logger.warn({ namespace: name, durationMs, status, err: message }, 'namespace lookup failed');
      return unknown(`the API server lookup failed: ${message}`);
    } catch (error) {
      metrics.namespaceLookups.inc({ result: 'error' });
      const message = error instanceof Error ? error.message : String(error);
      logger.warn({ namespace: name, durationMs: Date.now() - started, err: message }, 'namespace lookup failed');
      return unknown(`the API server lookup failed: ${message}`);
    }
  }
}
