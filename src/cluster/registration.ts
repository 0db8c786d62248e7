// Self-registration: the webhook's MutatingWebhookConfiguration is created by the webhook itself, once
// a replica can answer, instead of by Helm at install time (docs/operations.md "Registration").
//
// Why: with failurePolicy Fail, a configuration that exists before any replica is reachable fails every
// pod creation in the cluster until one is (and forever if the image cannot be pulled). So the chart
// renders the configuration into a file (WEBHOOK_CONFIGURATION_FILE, without a caBundle) and every
// replica, once it is ready itself AND the Service it is called through has a ready endpoint (an
// EndpointSlice lists one), applies it with server-side apply (field manager `sandbox-webhook`), the
// caBundle read from CA_BUNDLE_FILE. Replicas apply the same bytes, so they never fight; a changed file
// (helm upgrade updates the mounted ConfigMap) is applied by the first replica to see it, and every
// resync period an edited configuration is put back. A configuration deleted after this replica applied
// it is NOT created again until its content changes or the replica restarts: that deletion is the
// chart's pre-delete hook at uninstall, or an operator switching the webhook off in an emergency
// (docs/operations.md), and neither must be undone behind their back.
//
// Removal is mostly not done here (a replica stopping cannot tell a rollout from an uninstall): the
// chart's pre-delete hook deletes the configuration, and its ownerReference to the chart's ClusterRole lets
// the garbage collector delete it when Helm deletes that role, even when the hook did not run. The one
// removal done here: when the replica's own namespace is being deleted (it has a deletionTimestamp), no
// replica will ever answer again, so the first replica to see it deletes the configuration, before the
// namespace controller deletes the ServiceAccount its token depends on.
//
// The RBAC this needs is narrow: get, patch, create and delete on this one configuration name (the
// apiserver authorizes the create of a server-side apply with the object's name), get on the owner
// ClusterRole and on namespaces, list on EndpointSlices in the release namespace.

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { parse as parseYaml } from 'yaml';
import { isRecord } from '../json.js';

/** The part of the API client registration needs (HttpKubeApi): any request with a deadline. */
export interface RegistrationApi {
  send(
    method: string,
    path: string,
    options: { timeoutMs: number; body?: string; contentType?: string },
  ): Promise<{ status: number; body: unknown }>;
}

export interface RegistrationOptions {
  /** YAML of the MutatingWebhookConfiguration to apply (rendered by the chart, without caBundle). */
  readonly configurationFile: string;
  /** PEM of the CA that signed the serving certificate: written into every webhook's caBundle. */
  readonly caBundleFile: string;
  /** How often to check the gate and the files. */
  readonly intervalMs: number;
  /** Apply again at least this often, to restore a configuration deleted or edited by hand. */
  readonly resyncMs: number;
  /** Deadline of each API request. */
  readonly requestTimeoutMs: number;
  /** The replica's own namespace (POD_NAMESPACE); its deletion removes the configuration. */
  readonly namespace?: string;
}

/** The annotation by which the chart names the ClusterRole that owns the configuration. */
export const OWNER_ANNOTATION = 'sandbox-webhook.io/owner-clusterrole';
export const FIELD_MANAGER = 'sandbox-webhook';

export type RegistrationState =
  | { readonly state: 'waiting'; readonly reason: string }
  | { readonly state: 'deleted'; readonly name: string }
  | { readonly state: 'namespace-deleted'; readonly name: string }
  | { readonly state: 'registered'; readonly name: string; readonly appliedAt: number }
  | { readonly state: 'failed'; readonly error: string };

interface ServiceRef {
  readonly namespace: string;
  readonly name: string;
}

interface Configuration {
  readonly name: string;
  readonly object: Record<string, unknown>;
  readonly webhooks: Record<string, unknown>[];
  readonly services: ServiceRef[];
  readonly ownerClusterRole: string | undefined;
}

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Parses and checks the configuration file; every problem is named with its path, all at once. */
export function parseConfiguration(text: string, file: string): Configuration {
  let document: unknown;
  try {
    document = parseYaml(text);
  } catch (error) {
    throw new Error(`${file}: not YAML: ${(error as Error).message}`);
  }
  const errors: string[] = [];
  if (!isRecord(document)) throw new Error(`${file}: not a YAML mapping`);
  if (document.apiVersion !== 'admissionregistration.k8s.io/v1') errors.push('apiVersion: must be admissionregistration.k8s.io/v1');
  if (document.kind !== 'MutatingWebhookConfiguration') errors.push('kind: must be MutatingWebhookConfiguration');
  const metadata = isRecord(document.metadata) ? document.metadata : {};
  const name = typeof metadata.name === 'string' ? metadata.name : '';
  if (!DNS_SUBDOMAIN.test(name) || name.length > 253) errors.push('metadata.name: must be a DNS subdomain');
  const annotations = isRecord(metadata.annotations) ? metadata.annotations : {};
  const owner = annotations[OWNER_ANNOTATION];
  if (owner !== undefined && (typeof owner !== 'string' || !DNS_SUBDOMAIN.test(owner))) {
    errors.push(`metadata.annotations.${OWNER_ANNOTATION}: must be a ClusterRole name`);
  }
  const webhooks = Array.isArray(document.webhooks) ? document.webhooks : [];
  if (webhooks.length === 0) errors.push('webhooks: must list at least one webhook');
  const services: ServiceRef[] = [];
  webhooks.forEach((webhook: unknown, index) => {
    const clientConfig = isRecord(webhook) && isRecord(webhook.clientConfig) ? webhook.clientConfig : undefined;
    if (!clientConfig) {
      errors.push(`webhooks[${index}].clientConfig: required`);
      return;
    }
    const service = clientConfig.service;
    if (isRecord(service)) {
      if (typeof service.namespace !== 'string' || typeof service.name !== 'string') {
        errors.push(`webhooks[${index}].clientConfig.service: needs namespace and name`);
      } else if (!services.some((s) => s.namespace === service.namespace && s.name === service.name)) {
        services.push({ namespace: service.namespace, name: service.name });
      }
    } else if (typeof clientConfig.url !== 'string') {
      errors.push(`webhooks[${index}].clientConfig: needs service or url`);
    }
  });
  if (errors.length > 0) throw new Error(`${file}: ${errors.join('; ')}`);
  return {
    name,
    object: document,
    webhooks: webhooks as Record<string, unknown>[],
    services,
    ownerClusterRole: typeof owner === 'string' ? owner : undefined,
  };
}

/** The object to apply: the file's, with the caBundle set on every webhook and the owner reference. */
export function desiredObject(configuration: Configuration, caPem: string, owner: { name: string; uid: string } | undefined): Record<string, unknown> {
  if (!caPem.includes('-----BEGIN CERTIFICATE-----')) throw new Error('the CA bundle file holds no PEM certificate');
  const caBundle = Buffer.from(caPem).toString('base64');
  const metadata = { ...(configuration.object.metadata as Record<string, unknown>) };
  if (owner) {
    metadata.ownerReferences = [{ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', name: owner.name, uid: owner.uid }];
  }
  return {
    ...configuration.object,
    metadata,
    webhooks: configuration.webhooks.map((webhook) => ({
      ...webhook,
      clientConfig: { ...(webhook.clientConfig as Record<string, unknown>), caBundle },
    })),
  };
}

/** True when an EndpointSlice list holds an endpoint that is ready (a missing `ready` means ready). */
export function hasReadyEndpoint(list: unknown): boolean {
  const items = isRecord(list) && Array.isArray(list.items) ? list.items : [];
  return items.some((slice: unknown) => {
    const endpoints = isRecord(slice) && Array.isArray(slice.endpoints) ? slice.endpoints : [];
    return endpoints.some((endpoint: unknown) => {
      const conditions = isRecord(endpoint) && isRecord(endpoint.conditions) ? endpoint.conditions : {};
      return conditions.ready !== false;
    });
  });
}

function statusMessage(body: unknown, status: number): string {
  return isRecord(body) && typeof body.message === 'string' ? body.message : `HTTP ${status}`;
}

export interface Registration {
  state(): RegistrationState;
  /** One pass: check the gate and apply when needed. Exposed for tests; the loop calls it. */
  tick(): Promise<RegistrationState>;
  close(): void;
}

/**
 * Starts the loop. `ready` is the replica's own readiness (policy loaded, informers synced, not
 * shutting down): a replica that is not ready never registers.
 */
export function startRegistration(
  api: RegistrationApi,
  options: RegistrationOptions,
  ready: () => boolean,
  logger: Logger,
  { loop = true }: { loop?: boolean } = {},
): Registration {
  let current: RegistrationState = { state: 'waiting', reason: 'not checked yet' };
  let lastApplied: { hash: string; at: number } | undefined;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  let lastLogged = '';

  const request = (method: string, path: string, body?: string, contentType?: string) =>
    api.send(method, path, { timeoutMs: options.requestTimeoutMs, ...(body === undefined ? {} : { body, contentType }) });

  const gate = async (configuration: Configuration): Promise<string | undefined> => {
    if (!ready()) return 'this replica is not ready';
    for (const service of configuration.services) {
      const selector = encodeURIComponent(`kubernetes.io/service-name=${service.name}`);
      const { status, body } = await request('GET', `/apis/discovery.k8s.io/v1/namespaces/${service.namespace}/endpointslices?labelSelector=${selector}`);
      if (status !== 200) throw new Error(`cannot list the EndpointSlices of Service ${service.namespace}/${service.name}: ${statusMessage(body, status)}`);
      if (!hasReadyEndpoint(body)) return `Service ${service.namespace}/${service.name} has no ready endpoint yet`;
    }
    return undefined;
  };

  const owner = async (name: string | undefined): Promise<{ name: string; uid: string } | undefined> => {
    if (!name) return undefined;
    const { status, body } = await request('GET', `/apis/rbac.authorization.k8s.io/v1/clusterroles/${name}`);
    const uid = isRecord(body) && isRecord(body.metadata) ? body.metadata.uid : undefined;
    if (status !== 200 || typeof uid !== 'string') throw new Error(`cannot read the owner ClusterRole ${name}: ${statusMessage(body, status)}`);
    return { name, uid };
  };

  /** True (and the configuration deleted) when the replica's namespace is being deleted. */
  const namespaceGone = async (name: string): Promise<boolean> => {
    if (!options.namespace) return false;
    const { status, body } = await request('GET', `/api/v1/namespaces/${options.namespace}`);
    const metadata = isRecord(body) && isRecord(body.metadata) ? body.metadata : {};
    if (status !== 404 && !(status === 200 && typeof metadata.deletionTimestamp === 'string')) return false;
    const deleted = await request('DELETE', `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${name}`);
    if (deleted.status !== 200 && deleted.status !== 202 && deleted.status !== 404) {
      throw new Error(`namespace ${options.namespace} is being deleted, but deleting MutatingWebhookConfiguration ${name} failed: ${statusMessage(deleted.body, deleted.status)}`);
    }
    return true;
  };

  const tick = async (): Promise<RegistrationState> => {
    if (current.state === 'namespace-deleted') return current;
    try {
      const configuration = parseConfiguration(await readFile(options.configurationFile, 'utf8'), options.configurationFile);
      if (await namespaceGone(configuration.name)) {
        current = { state: 'namespace-deleted', name: configuration.name };
        logger.warn({ configuration: configuration.name, namespace: options.namespace }, 'namespace is being deleted: webhook configuration deleted');
        return current;
      }
      const waiting = await gate(configuration);
      if (waiting) {
        current = current.state === 'registered' ? current : { state: 'waiting', reason: waiting };
        return current;
      }
      const caPem = await readFile(options.caBundleFile, 'utf8');
      const desired = desiredObject(configuration, caPem, await owner(configuration.ownerClusterRole));
      const body = JSON.stringify(desired);
      const hash = createHash('sha256').update(body).digest('hex');
      const now = Date.now();
      const path = `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${configuration.name}`;
      if (lastApplied?.hash === hash) {
        if (now - lastApplied.at < options.resyncMs) return current;
        const { status } = await request('GET', path);
        if (status === 404) {
          lastApplied = { hash, at: now };
          current = { state: 'deleted', name: configuration.name };
          return current;
        }
      }
      const { status, body: answer } = await request(
        'PATCH',
        `${path}?fieldManager=${FIELD_MANAGER}&force=true`,
        body,
        'application/apply-patch+yaml',
      );
      if (status !== 200 && status !== 201) throw new Error(`cannot apply MutatingWebhookConfiguration ${configuration.name}: ${statusMessage(answer, status)}`);
      const changed = lastApplied?.hash !== hash;
      lastApplied = { hash, at: now };
      current = { state: 'registered', name: configuration.name, appliedAt: now };
      if (changed) logger.info({ configuration: configuration.name, sha256: hash.slice(0, 12) }, 'webhook configuration applied');
      return current;
    } catch (error) {
      current = { state: 'failed', error: (error as Error).message };
      return current;
    } finally {
      const line =
        current.state === 'registered' || current.state === 'namespace-deleted'
          ? ''
          : current.state === 'waiting'
            ? current.reason
            : current.state === 'failed'
              ? current.error
              : 'deleted';
      if (line !== lastLogged) {
        if (current.state === 'failed') logger.error({ error: line }, 'webhook registration failed; retrying');
        else if (current.state === 'waiting') logger.info({ reason: line }, 'webhook registration waiting');
        else if (current.state === 'deleted') {
          logger.warn({ configuration: current.name }, 'webhook configuration was deleted; not creating it again until its content changes or this replica restarts');
        }
        lastLogged = line;
      }
    }
  };

  const schedule = (): void => {
    if (closed) return;
    timer = setTimeout(() => {
      void tick().then(schedule);
    }, options.intervalMs);
    timer.unref();
  };
  if (loop) void tick().then(schedule);

  return {
    state: () => current,
    tick,
    close: () => {
      closed = true;
      if (timer) clearTimeout(timer);
    },
  };
}
