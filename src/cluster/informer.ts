// A list+watch cache of one cluster-scoped resource that never gives up: the Reflector loop of
// client-go (staging/src/k8s.io/client-go/tools/cache/reflector.go) in the few lines we need.
//
// Why not client-node's ListWatch (src/cache.ts, 1.4.0): it stops for good on any list or watch
// error (it only calls the `error` callbacks), it re-watches at once without backoff after a watch
// closes, also after an ERROR event other than 410 (a tight loop against a failing API server), and it
// drops lines it cannot parse, i.e. silently loses events. Here:
//   - the cache is replaced atomically by each successful list and kept through every failure: after the
//     first sync a stale cache beats none (cache misses are looked up directly, see cluster-facts.ts);
//   - each failure (list or watch error, connection drop, ERROR event, a watch that stays open past its
//     deadline, a watch closed within a second without events) restarts the loop after an exponential
//     backoff with jitter: 0.5 s doubling to a 30 s cap, each delay drawn from [d/2, d]. Like client-go
//     (NewExponentialBackoffManager(800ms, 30s, 2min, 2.0, 1.0)), the backoff resets once no failure
//     happened for 2 minutes, so a flapping API server keeps being asked gently. 403 is retried too: a
//     restarted kube-apiserver serves before its RBAC caches are filled and refuses a ServiceAccount
//     for a moment (seen in test/e2e/cluster.e2e.test.ts);
//   - a watch that ends normally (the server's timeoutSeconds) resumes from the last resourceVersion at
//     once; 410 Gone (resourceVersion too old, e.g. after an API server restart) relists at once, once,
//     and only with backoff if the relisted watch is told 410 again;
//   - watches ask for bookmarks (allowWatchBookmarks) so the resourceVersion stays fresh, and for a
//     server-side timeout drawn from [5, 10) minutes (client-go minWatchTimeout); a watch still open 30 s
//     past that is treated as a dead connection.

import { setTimeout as sleepMs } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { Metrics } from '../telemetry/metrics.js';
import { isRecord } from '../json.js';
import { ApiError, type KubeApi, type WatchEvent } from './kube-api.js';

export interface InformerTiming {
  readonly backoffInitialMs: number;
  readonly backoffMaxMs: number;
  /** a failure this long after the previous one starts the backoff again from backoffInitialMs */
  readonly backoffResetMs: number;
  /** server-side watch timeout is drawn from [minWatchSeconds, 2 * minWatchSeconds) */
  readonly minWatchSeconds: number;
  /** a watch still open this long past its server-side timeout is considered dead */
  readonly watchDeadlineGraceMs: number;
  /** a watch that ends normally sooner than this without a single event counts as a failure */
  readonly shortWatchMs: number;
  /** per list page, and for a watch until the response headers */
  readonly requestTimeoutMs: number;
  readonly listPageSize: number;
}

export const DEFAULT_TIMING: InformerTiming = {
  backoffInitialMs: 500,
  backoffMaxMs: 30_000,
  backoffResetMs: 120_000,
  minWatchSeconds: 300,
  watchDeadlineGraceMs: 30_000,
  shortWatchMs: 1_000,
  requestTimeoutMs: 10_000,
  listPageSize: 500,
};

/** The delay before restart number `failures` (1, 2, ...): exponential, capped, jittered into [d/2, d]. */
export function backoffDelayMs(failures: number, timing: Pick<InformerTiming, 'backoffInitialMs' | 'backoffMaxMs'>, random: () => number): number {
  const ceiling = Math.min(timing.backoffMaxMs, timing.backoffInitialMs * 2 ** Math.max(0, failures - 1));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

export interface InformerOptions<T> {
  /** the resource's plural name: metric label and log field (`namespaces`, `runtimeclasses`) */
  readonly resource: string;
  /** the collection's path, e.g. /api/v1/namespaces */
  readonly path: string;
  /** the cached value for an object; undefined skips an object that lacks what we need */
  readonly toEntry: (object: Record<string, unknown>) => T | undefined;
  readonly api: KubeApi;
  readonly logger: Logger;
  readonly metrics: Pick<Metrics, 'informerSynced' | 'informerRestarts'>;
  readonly timing?: Partial<InformerTiming>;
  readonly random?: () => number;
  readonly now?: () => number;
}

export interface InformerStatus {
  /** a list has succeeded at least once: the cache holds the cluster's state, or a recent one */
  readonly synced: boolean;
  /** synced, and no failure since the last successful list or watch connection */
  readonly live: boolean;
  readonly lastError: string | undefined;
  readonly entries: number;
}

class ExpiredError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ExpiredError';
  }
}

function metadataOf(object: Record<string, unknown>): Record<string, unknown> {
  return isRecord(object.metadata) ? object.metadata : {};
}

function nameOf(object: Record<string, unknown>): string | undefined {
  const name = metadataOf(object).name;
  return typeof name === 'string' && name !== '' ? name : undefined;
}

function resourceVersionOf(object: Record<string, unknown>): string | undefined {
  const version = metadataOf(object).resourceVersion;
  return typeof version === 'string' && version !== '' ? version : undefined;
}

function describeError(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === 'string' && !error.message.includes(code) ? `${error.message} (${code})` : error.message;
  }
  return String(error);
}

export class Informer<T> {
  private cache = new Map<string, T>();
  private resourceVersion = '';
  private hasSynced = false;
  private isLive = false;
  private lastError: string | undefined;
  private failures = 0;
  private lastFailureAt = Number.NEGATIVE_INFINITY;
  private readonly stopping = new AbortController();
  private loop: Promise<void> | undefined;
  private readonly timing: InformerTiming;
  private readonly random: () => number;
  private readonly now: () => number;
  private readonly startedAt: number;

  constructor(private readonly options: InformerOptions<T>) {
    this.timing = { ...DEFAULT_TIMING, ...options.timing };
    this.random = options.random ?? Math.random;
    this.now = options.now ?? Date.now;
    this.startedAt = this.now();
    options.metrics.informerSynced.set({ resource: options.resource }, 0);
  }

  get resource(): string {
    return this.options.resource;
  }

  get(name: string): T | undefined {
    return this.cache.get(name);
  }

  status(): InformerStatus {
    return { synced: this.hasSynced, live: this.isLive, lastError: this.lastError, entries: this.cache.size };
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Stops the loop, cutting the list or watch in flight; resolves once it has ended. */
  async stop(): Promise<void> {
    this.stopping.abort();
    await this.loop;
    this.setLive(false);
  }

  private get log(): Logger {
    return this.options.logger;
  }

  private setLive(live: boolean): void {
    this.isLive = live;
    this.options.metrics.informerSynced.set({ resource: this.options.resource }, live ? 1 : 0);
  }

  private async run(): Promise<void> {
    const { signal } = this.stopping;
    // A 410 relists at once, unless the watch that failed is the one right after such a relist, or the
    // list itself expired (a continue token): then it waits like any other failure.
    let watchFollowsExpiryRelist = false;
    while (!signal.aborted) {
      try {
        if (this.resourceVersion === '') await this.relist();
        await this.watch();
        watchFollowsExpiryRelist = false;
      } catch (error) {
        if (signal.aborted) break;
        if (error instanceof ExpiredError || (error instanceof ApiError && error.statusCode === 410)) {
          const again = watchFollowsExpiryRelist || this.resourceVersion === '';
          this.resourceVersion = '';
          if (!again) {
            watchFollowsExpiryRelist = true;
            this.options.metrics.informerRestarts.inc({ resource: this.options.resource });
            this.log.info({ resource: this.options.resource, reason: describeError(error) }, 'informer: resourceVersion expired; relisting');
            continue;
          }
        }
        watchFollowsExpiryRelist = false;
        await this.backOff(error);
      }
    }
  }

  private async backOff(error: unknown): Promise<void> {
    const now = this.now();
    if (now - this.lastFailureAt >= this.timing.backoffResetMs) this.failures = 0;
    this.failures += 1;
    this.lastFailureAt = now;
    this.lastError = describeError(error);
    this.setLive(false);
    this.options.metrics.informerRestarts.inc({ resource: this.options.resource });
    const delayMs = backoffDelayMs(this.failures, this.timing, this.random);
    this.log.warn(
      {
        resource: this.options.resource,
        err: this.lastError,
        failures: this.failures,
        delayMs,
        cachedEntries: this.hasSynced ? this.cache.size : undefined,
      },
      this.hasSynced
        ? 'informer: list/watch failed; serving the last cache and restarting after backoff'
        : 'informer: list/watch failed before the first sync; restarting after backoff',
    );
    try {
      await sleepMs(delayMs, undefined, { signal: this.stopping.signal });
    } catch {
      // stopped while waiting
    }
  }

  /** Lists the whole collection page by page and swaps the cache in one step. */
  private async relist(): Promise<void> {
    const { api, path, toEntry, resource } = this.options;
    const started = this.now();
    const next = new Map<string, T>();
    let resourceVersion = '';
    let continueToken = '';
    do {
      const query = new URLSearchParams({ limit: String(this.timing.listPageSize) });
      if (continueToken !== '') query.set('continue', continueToken);
      const { status, body } = await api.get(`${path}?${query.toString()}`, { timeoutMs: this.timing.requestTimeoutMs, signal: this.stopping.signal });
      if (status !== 200) throw ApiError.from(status, body, `list ${resource}`);
      if (!isRecord(body) || !Array.isArray(body.items)) throw new Error(`list ${resource}: the answer has no items`);
      for (const item of body.items as unknown[]) {
        if (!isRecord(item)) continue;
        const name = nameOf(item);
        const entry = name === undefined ? undefined : toEntry(item);
        if (name !== undefined && entry !== undefined) next.set(name, entry);
      }
      const metadata = isRecord(body.metadata) ? body.metadata : {};
      // Every page of a paginated list carries the resourceVersion of the first page's snapshot.
      resourceVersion = typeof metadata.resourceVersion === 'string' ? metadata.resourceVersion : '';
      continueToken = typeof metadata.continue === 'string' ? metadata.continue : '';
    } while (continueToken !== '');
    if (resourceVersion === '') throw new Error(`list ${resource}: the answer has no resourceVersion`);

    this.cache = next;
    this.resourceVersion = resourceVersion;
    const firstSync = !this.hasSynced;
    this.hasSynced = true;
    this.lastError = undefined;
    this.setLive(true);
    const fields = { resource, entries: next.size, resourceVersion, durationMs: this.now() - started };
    if (firstSync) this.log.info({ ...fields, sinceStartMs: this.now() - this.startedAt }, 'informer: synced');
    else this.log.info(fields, 'informer: relisted');
  }

  /** One watch from the current resourceVersion; resolves when the server ends it normally. */
  private async watch(): Promise<void> {
    const { api, path } = this.options;
    const timeoutSeconds = Math.floor(this.timing.minWatchSeconds * (1 + this.random()));
    const query = new URLSearchParams({
      watch: 'true',
      resourceVersion: this.resourceVersion,
      allowWatchBookmarks: 'true',
      timeoutSeconds: String(timeoutSeconds),
    });
    const started = this.now();
    const stream = await api.watch(`${path}?${query.toString()}`, {
      connectTimeoutMs: this.timing.requestTimeoutMs,
      deadlineMs: timeoutSeconds * 1000 + this.timing.watchDeadlineGraceMs,
      signal: this.stopping.signal,
    });
    if (!this.isLive) {
      this.setLive(true);
      if (this.lastError !== undefined) {
        this.log.info({ resource: this.options.resource, resourceVersion: this.resourceVersion }, 'informer: watching again');
        this.lastError = undefined;
      }
    }
    let events = 0;
    try {
      for await (const event of stream) {
        events += 1;
        this.apply(event);
      }
    } finally {
      stream.close();
    }
    // client-go treats this the same way ("very short watch"): a server or proxy that closes
    // watches at once must not be hammered.
    if (events === 0 && this.now() - started < this.timing.shortWatchMs) {
      throw new Error(`the watch was closed after ${this.now() - started} ms without any event`);
    }
  }

  private apply(event: WatchEvent): void {
    const { object } = event;
    if (event.type === 'ERROR') {
      const code = typeof object.code === 'number' ? object.code : 0;
      const message = typeof object.message === 'string' ? object.message : JSON.stringify(object);
      // 410 Gone: the resourceVersion is older than the server's watch window (apiserver storage/cacher).
      if (code === 410) throw new ExpiredError(`watch ${this.options.resource}: ${message}`);
      throw new ApiError(code, `watch ${this.options.resource}: ${message}`, typeof object.reason === 'string' ? object.reason : undefined);
    }
    const name = nameOf(object);
    if (event.type === 'ADDED' || event.type === 'MODIFIED') {
      const entry = name === undefined ? undefined : this.options.toEntry(object);
      if (name !== undefined && entry !== undefined) this.cache.set(name, entry);
      else if (name !== undefined) this.cache.delete(name);
    } else if (event.type === 'DELETED' && name !== undefined) {
      this.cache.delete(name);
    }
    const version = resourceVersionOf(object);
    if (version !== undefined) this.resourceVersion = version;
  }
}
