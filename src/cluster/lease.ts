// Leader election on a coordination.k8s.io/v1 Lease, so that work done once per cluster (the
// running-pod audit) runs in one replica. client-node has no leader election; this is the loop of
// client-go's leaderelection package (staging/src/k8s.io/client-go/tools/leaderelection/leaderelection.go)
// in the few lines we need:
//   - every retryPeriodMs each replica reads the Lease. Nobody holds it, or its holder has not renewed
//     it for leaseDurationSeconds as measured on OUR clock since we last saw the record change (so
//     clock skew between replicas does not matter): take it over with a PUT carrying the
//     resourceVersion read, so that of two replicas racing only one wins (the other gets 409).
//   - the holder renews (PUT renewTime) every retryPeriodMs; when no renewal succeeded for
//     renewDeadlineMs it stops leading at once, well before others may take over (leaseDurationSeconds).
//   - stop() gives the Lease up (holderIdentity emptied), so a successor need not wait out the duration.
// Defaults are client-go's: 15 s lease, 10 s renew deadline, 2 s retry period.

import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import { isRecord } from '../json.js';
import type { KubeWriteApi } from './kube-api.js';

export interface LeaseOptions {
  readonly api: KubeWriteApi;
  readonly namespace: string;
  readonly name: string;
  readonly identity?: string;
  readonly leaseDurationSeconds?: number;
  readonly renewDeadlineMs?: number;
  readonly retryPeriodMs?: number;
  /** called on every change of leadership */
  readonly onChange?: (leading: boolean) => void;
  readonly onError?: (error: Error) => void;
  readonly now?: () => number;
}

/** metav1.MicroTime: RFC 3339 with six fractional digits. */
function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/Z$/, '000Z');
}

export class LeaderElector {
  readonly identity: string;
  private leading = false;
  private lastRenewMs = 0;
  /** the record last read, and when (our clock) it last changed */
  private observed: { record: string; atMs: number } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly now: () => number;
  private readonly path: string;

  constructor(private readonly options: LeaseOptions) {
    this.identity = options.identity ?? `${hostname()}_${randomUUID()}`;
    this.leaseDurationMs = (options.leaseDurationSeconds ?? 15) * 1000;
    this.renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = options.retryPeriodMs ?? 2_000;
    this.now = options.now ?? Date.now;
    this.path = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(options.namespace)}/leases`;
  }

  isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    const tick = (): void => {
      if (this.stopped) return;
      this.running = this.tryOnce().finally(() => {
        if (!this.stopped) this.timer = setTimeout(tick, this.retryPeriodMs);
      });
    };
    tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
    if (this.leading) {
      this.setLeading(false);
      await this.release().catch((error: unknown) => this.options.onError?.(error as Error));
    }
  }

  private setLeading(leading: boolean): void {
    if (leading === this.leading) return;
    this.leading = leading;
    this.options.onChange?.(leading);
  }

  /** One round: read, then create, renew or take over. Never throws. */
  async tryOnce(): Promise<void> {
    try {
      if (await this.acquireOrRenew()) {
        this.lastRenewMs = this.now();
        this.setLeading(true);
      } else {
        // Another replica holds the Lease (or won the race to it).
        this.setLeading(false);
      }
      return;
    } catch (error) {
      this.options.onError?.(error as Error);
    }
    // A leader that cannot reach the API server keeps leading only until its renew deadline.
    if (this.leading && this.now() - this.lastRenewMs > this.renewDeadlineMs) this.setLeading(false);
  }

  private async acquireOrRenew(): Promise<boolean> {
    const { api, name } = this.options;
    const timeoutMs = Math.max(1000, Math.min(this.renewDeadlineMs, 5000));
    const read = await api.get(`${this.path}/${encodeURIComponent(name)}`, { timeoutMs });
    const nowMs = this.now();
    if (read.status === 404) {
      const created = await api.sendJson('POST', this.path, this.lease(nowMs, { metadata: { name }, spec: { leaseTransitions: 0, acquireTime: microTime(nowMs) } }), { timeoutMs });
      return created.status === 201 || created.status === 200;
    }
    if (read.status !== 200 || !isRecord(read.body)) throw new Error(`GET lease ${name}: HTTP ${read.status}`);
    const lease = read.body;
    const spec = isRecord(lease.spec) ? lease.spec : {};
    const holder = typeof spec.holderIdentity === 'string' ? spec.holderIdentity : '';
    const record = JSON.stringify({ holder, renewTime: spec.renewTime ?? null });
    if (this.observed?.record !== record) this.observed = { record, atMs: nowMs };
    const durationMs = typeof spec.leaseDurationSeconds === 'number' ? spec.leaseDurationSeconds * 1000 : this.leaseDurationMs;
    const expired = holder === '' || nowMs - this.observed.atMs > durationMs;
    if (holder !== this.identity && !expired) return false;
    const transitions = typeof spec.leaseTransitions === 'number' ? spec.leaseTransitions : 0;
    const update: { spec: Record<string, unknown> } =
      holder === this.identity
        ? { spec: { ...spec, renewTime: microTime(nowMs), leaseDurationSeconds: this.leaseDurationMs / 1000 } }
        : (this.lease(nowMs, { spec: { leaseTransitions: transitions + 1, acquireTime: microTime(nowMs) } }) as { spec: Record<string, unknown> });
    const body: Record<string, unknown> = { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: lease.metadata, ...update };
    const written = await api.sendJson('PUT', `${this.path}/${encodeURIComponent(name)}`, body, { timeoutMs });
    if (written.status === 200) {
      this.observed = { record: JSON.stringify({ holder: this.identity, renewTime: update.spec.renewTime }), atMs: nowMs };
      return true;
    }
    // 409: another replica wrote first; it holds the Lease now.
    if (written.status === 409) return false;
    throw new Error(`PUT lease ${name}: HTTP ${written.status}`);
  }

  private lease(nowMs: number, extra: { metadata?: Record<string, unknown>; spec: Record<string, unknown> }): Record<string, unknown> {
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      ...(extra.metadata ? { metadata: extra.metadata } : {}),
      spec: { holderIdentity: this.identity, leaseDurationSeconds: this.leaseDurationMs / 1000, renewTime: microTime(nowMs), ...extra.spec },
    };
  }

  private async release(): Promise<void> {
    const { api, name } = this.options;
    const read = await api.get(`${this.path}/${encodeURIComponent(name)}`, { timeoutMs: 5000 });
    if (read.status !== 200 || !isRecord(read.body)) return;
    const spec = isRecord(read.body.spec) ? read.body.spec : {};
    if (spec.holderIdentity !== this.identity) return;
    const body = { ...read.body, spec: { ...spec, holderIdentity: '', leaseDurationSeconds: 1 } };
    await api.sendJson('PUT', `${this.path}/${encodeURIComponent(name)}`, body, { timeoutMs: 5000 });
  }
}

const SERVICE_ACCOUNT_NAMESPACE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

/** The namespace the webhook runs in: POD_NAMESPACE (downward API), else its ServiceAccount's, else `default`. */
export function ownNamespace(env: NodeJS.ProcessEnv = process.env): string {
  if (env.POD_NAMESPACE) return env.POD_NAMESPACE;
  try {
    return readFileSync(SERVICE_ACCOUNT_NAMESPACE, 'utf8').trim() || 'default';
  } catch {
    return 'default';
  }
}
