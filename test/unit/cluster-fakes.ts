// A scripted stand-in for the API server (cluster/kube-api.ts KubeApi), for the informer and facts
// tests: lists are answered from an in-memory collection, watches are streams the test pushes events
// into, ends, or breaks.
import { pino, type Logger } from 'pino';
import type { GetOptions, KubeApi, WatchEvent, WatchOptions, WatchStream } from '../../src/cluster/kube-api.js';
import { setTimeout as sleep } from 'node:timers/promises';

type Item = { event: WatchEvent } | { end: true } | { error: Error };

export class FakeWatch implements WatchStream {
  readonly query: URLSearchParams;
  closed = false;
  private readonly items: Item[] = [];
  private wake: (() => void) | undefined;

  constructor(
    readonly path: string,
    readonly options: WatchOptions,
  ) {
    this.query = new URL(path, 'http://x').searchParams;
    options.signal?.addEventListener('abort', () => this.close());
  }

  private add(item: Item): void {
    this.items.push(item);
    this.wake?.();
  }

  push(type: WatchEvent['type'], object: Record<string, unknown>): void {
    this.add({ event: { type, object } });
  }

  /** The server ends the watch normally (its timeoutSeconds passed). */
  end(): void {
    this.add({ end: true });
  }

  /** The connection breaks. */
  fail(error: Error): void {
    this.add({ error });
  }

  close(): void {
    this.closed = true;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<WatchEvent> {
    for (;;) {
      while (this.items.length === 0) {
        if (this.closed) return;
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = undefined;
      }
      const item = this.items.shift() as Item;
      if ('error' in item) throw item.error;
      if ('end' in item) return;
      yield item.event;
    }
  }
}

export type GetAnswer = { status: number; body: unknown } | Error;

export class FakeApi implements KubeApi {
  readonly server = 'https://fake.invalid';
  /** every GET path, in order */
  readonly gets: string[] = [];
  readonly watches: FakeWatch[] = [];
  /** answers for the next watch calls, in order (an Error fails the call); empty: a new FakeWatch */
  readonly watchFailures: Error[] = [];
  /** answers for GETs not handled by `collections`; default 404 */
  onGet: (path: string, options: GetOptions) => GetAnswer | Promise<GetAnswer> = () => ({ status: 404, body: { kind: 'Status', code: 404, message: 'not found' } });
  /** list answers by collection path: items and resourceVersion, or an Error to fail the list */
  readonly collections = new Map<string, { items: Record<string, unknown>[]; resourceVersion: string; pageSize?: number } | Error>();
  private watchWaiters: Array<(watch: FakeWatch) => void> = [];

  async get(path: string, options: GetOptions): Promise<{ status: number; body: unknown }> {
    this.gets.push(path);
    const url = new URL(path, 'http://x');
    const collection = this.collections.get(url.pathname);
    if (collection instanceof Error) throw collection;
    if (collection) {
      const pageSize = collection.pageSize ?? collection.items.length;
      const start = Number(url.searchParams.get('continue') ?? '0');
      const end = start + pageSize;
      return {
        status: 200,
        body: {
          kind: 'List',
          metadata: { resourceVersion: collection.resourceVersion, ...(end < collection.items.length ? { continue: String(end) } : {}) },
          items: collection.items.slice(start, end),
        },
      };
    }
    const answer = await this.onGet(path, options);
    if (answer instanceof Error) throw answer;
    return answer;
  }

  async watch(path: string, options: WatchOptions): Promise<WatchStream> {
    await Promise.resolve();
    const failure = this.watchFailures.shift();
    if (failure) throw failure;
    const watch = new FakeWatch(path, options);
    this.watches.push(watch);
    const waiters = this.watchWaiters;
    this.watchWaiters = [];
    for (const waiter of waiters) waiter(watch);
    return watch;
  }

  /** The watch opened after `count` watches already exist (default: the next one). */
  async nextWatch(count = this.watches.length): Promise<FakeWatch> {
    while (this.watches.length <= count) await new Promise<FakeWatch>((resolve) => this.watchWaiters.push(resolve));
    return this.watches[count] as FakeWatch;
  }
}

export function namespace(name: string, labels: Record<string, string> = {}, resourceVersion = '1'): Record<string, unknown> {
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels: { 'kubernetes.io/metadata.name': name, ...labels }, resourceVersion } };
}

export function runtimeClass(name: string, extra: Record<string, unknown> = {}, resourceVersion = '1'): Record<string, unknown> {
  return { apiVersion: 'node.k8s.io/v1', kind: 'RuntimeClass', metadata: { name, resourceVersion }, handler: 'runsc', ...extra };
}

export interface CapturedLog {
  readonly level: number;
  readonly msg: string;
  readonly [field: string]: unknown;
}

/** A pino logger whose lines land in `lines`, parsed. */
export function capturingLogger(): { logger: Logger; lines: CapturedLog[] } {
  const lines: CapturedLog[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as CapturedLog) });
  return { logger, lines };
}

export async function until(predicate: () => boolean, timeoutMs = 2_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(2);
  }
}
