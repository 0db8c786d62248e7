// Reading the cluster in pages, for the running-pod audit and the CLI: a collection is listed with
// `limit` and `continue` (the apiserver's chunked list, as client-go's pager does it:
// staging/src/k8s.io/client-go/tools/pager/pager.go) so that memory holds one page at a time however
// many pods there are, and each page has its own deadline.
// Also the CLI's way in: a kubeconfig chosen as kubectl chooses it (--kubeconfig, KUBECONFIG,
// ~/.kube/config; --context), and a one-time snapshot of namespaces and RuntimeClasses as
// ClusterFacts, where the webhook keeps informers.

import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { ClusterFacts } from '../admission/facts.js';
import type { NamespaceFacts } from '../policy/evaluate.js';
import { NAMESPACES_PATH, RUNTIME_CLASSES_PATH, namespaceFacts, runtimeClassFact, type PresentRuntimeClass } from './cluster-facts.js';
import { loadKubeConfig } from './index.js';
import { isRecord } from '../json.js';
import { ApiError, HttpKubeApi, type KubeApi } from './kube-api.js';

export const PODS_PATH = '/api/v1/pods';
export const DEFAULT_PAGE_SIZE = 500;
export const DEFAULT_PAGE_TIMEOUT_MS = 30_000;

// Pods that have ended run nothing: the audit is about what runs.
export const NOT_TERMINATED = 'status.phase!=Succeeded,status.phase!=Failed';

export interface ListOptions {
  readonly pageSize?: number;
  readonly pageTimeoutMs?: number;
  readonly fieldSelector?: string;
  readonly signal?: AbortSignal;
}

/**
 * The items of a collection, one page per request. Throws ApiError on an answer other than 200,
 * including 410 Expired when a scan outlives its continue token (about five minutes, the apiserver's
 * compaction interval): a scan is then started again from the beginning by its caller.
 */
export async function* listPages(api: Pick<KubeApi, 'get'>, path: string, options: ListOptions = {}): AsyncGenerator<Record<string, unknown>[]> {
  const pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE;
  let token: string | undefined;
  do {
    const query = new URLSearchParams({ limit: String(pageSize) });
    if (options.fieldSelector) query.set('fieldSelector', options.fieldSelector);
    if (token) query.set('continue', token);
    const { status, body } = await api.get(`${path}?${query.toString()}`, {
      timeoutMs: options.pageTimeoutMs ?? DEFAULT_PAGE_TIMEOUT_MS,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    if (status !== 200 || !isRecord(body)) throw ApiError.from(status, body, `list ${path}`);
    const items = Array.isArray(body.items) ? body.items.filter(isRecord) : [];
    const metadata = isRecord(body.metadata) ? body.metadata : {};
    token = typeof metadata.continue === 'string' && metadata.continue !== '' ? metadata.continue : undefined;
    yield items;
  } while (token);
}

export interface CliAccessOptions {
  /** --kubeconfig; else KUBECONFIG; else ~/.kube/config (kubectl's order) */
  readonly kubeconfig: string | undefined;
  readonly context: string | undefined;
}

/** The API server the kubeconfig names, as kubectl would reach it; throws with a clear message when it cannot. */
export async function cliKubeApi(options: CliAccessOptions): Promise<HttpKubeApi> {
  const fallback = join(homedir(), '.kube', 'config');
  const kubeconfig = options.kubeconfig ?? process.env.KUBECONFIG ?? (existsSync(fallback) ? fallback : undefined);
  if (!kubeconfig) throw new Error('no kubeconfig: pass --kubeconfig, set KUBECONFIG, or create ~/.kube/config');
  const loaded = await loadKubeConfig({ kubeconfig, offline: false });
  if (!loaded) throw new Error(`${kubeconfig}: no cluster configuration`);
  if (options.context !== undefined) {
    if (!loaded.kubeConfig.getContexts().some((context) => context.name === options.context)) {
      throw new Error(`${kubeconfig}: no context "${options.context}"`);
    }
    loaded.kubeConfig.setCurrentContext(options.context);
  }
  return new HttpKubeApi(loaded.kubeConfig);
}

/** Namespaces and RuntimeClasses listed once: the facts a scan or an offline evaluation decides with. */
export async function snapshotFacts(api: Pick<KubeApi, 'get'>, options: Pick<ListOptions, 'signal' | 'pageTimeoutMs'> = {}): Promise<ClusterFacts> {
  const namespaces = new Map<string, NamespaceFacts>();
  for await (const page of listPages(api, NAMESPACES_PATH, options)) {
    for (const item of page) {
      const facts = namespaceFacts(item);
      if (facts) namespaces.set(facts.name, facts);
    }
  }
  const classes = new Map<string, PresentRuntimeClass>();
  for await (const page of listPages(api, RUNTIME_CLASSES_PATH, options)) {
    for (const item of page) {
      const fact = runtimeClassFact(item);
      const name = isRecord(item.metadata) ? item.metadata.name : undefined;
      if (fact && typeof name === 'string') classes.set(name, fact);
    }
  }
  return {
    namespace: (name) => namespaces.get(name) ?? { name, labels: undefined, unknownReason: 'the namespace was not found in the cluster' },
    runtimeClass: (name) => classes.get(name) ?? { state: 'missing' },
  };
}
