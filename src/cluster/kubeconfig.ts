// The part of client-node's KubeConfig (src/config.ts, 1.4.0) the webhook uses: load a kubeconfig
// file or the in-cluster ServiceAccount, merge files as kubectl does, and apply the current user's
// credentials to a request. client-node's own class imports the whole generated API client
// (src/gen, for makeApiClient) at module load: about 70 MB of resident memory and 2-3 s of start-up
// on a 2-CPU machine, for code the webhook never calls (`npm run bench:cluster`, bench/README.md).
// Here only what is used is imported from the package: the kubeconfig entry parsers
// (src/config_types.ts, the same validation and field names) and the authenticators
// (src/exec_auth.ts, file_auth.ts, azure_auth.ts, gcp_auth.ts, oidc_auth.ts), none of which load
// the generated client. The package has no `exports` map, so these paths are importable; the
// version is pinned by package-lock.json, and test/unit/cluster-config.test.ts loads each of them.

import { existsSync, readFileSync } from 'node:fs';
import type { OutgoingHttpHeaders } from 'node:http';
import type { RequestOptions } from 'node:https';
import { isIPv6 } from 'node:net';
import { AzureAuth } from '@kubernetes/client-node/dist/azure_auth.js';
import { newClusters, newContexts, newUsers, type Cluster, type Context, type User } from '@kubernetes/client-node/dist/config_types.js';
import { ExecAuth } from '@kubernetes/client-node/dist/exec_auth.js';
import { FileAuth } from '@kubernetes/client-node/dist/file_auth.js';
import { GoogleCloudPlatformAuth } from '@kubernetes/client-node/dist/gcp_auth.js';
import { OpenIDConnectAuth } from '@kubernetes/client-node/dist/oidc_auth.js';
import { parse } from 'yaml';

const SERVICE_ACCOUNT = '/var/run/secrets/kubernetes.io/serviceaccount';

export type { Cluster, Context, User };

/** What HttpKubeApi needs of a kubeconfig (client-node's KubeConfig has the same two methods). */
export interface Credentials {
  getCurrentCluster(): Cluster | null;
  applyToHTTPSOptions(options: RequestOptions): Promise<void>;
}

export class KubeConfig implements Credentials {
  private clusters: Cluster[] = [];
  private users: User[] = [];
  private contexts: Context[] = [];
  private currentContext = '';
  // client-node's order (KubeConfig constructor): the first that claims the user applies.
  private readonly authenticators = [new AzureAuth(), new GoogleCloudPlatformAuth(), new ExecAuth(), new FileAuth(), new OpenIDConnectAuth()];

  loadFromFile(file: string): void {
    const document = parse(readFileSync(file, 'utf8')) as Record<string, unknown> | null;
    this.clusters = newClusters(document?.clusters);
    this.contexts = newContexts(document?.contexts);
    this.users = newUsers(document?.users);
    this.currentContext = typeof document?.['current-context'] === 'string' ? document['current-context'] : '';
  }

  /** The pod's ServiceAccount, as client-node's loadFromCluster reads it (`prefix` is for tests). */
  loadFromCluster(prefix = ''): void {
    const host = process.env.KUBERNETES_SERVICE_HOST ?? '';
    const port = process.env.KUBERNETES_SERVICE_PORT ?? '';
    const scheme = port === '80' || port === '8080' || port === '8001' ? 'http' : 'https';
    const namespaceFile = `${prefix}${SERVICE_ACCOUNT}/namespace`;
    this.clusters = [
      { name: 'inCluster', caFile: `${prefix}${SERVICE_ACCOUNT}/ca.crt`, server: `${scheme}://${isIPv6(host) ? `[${host}]` : host}:${port}`, skipTLSVerify: false },
    ];
    this.users = [{ name: 'inClusterUser', authProvider: { name: 'tokenFile', config: { tokenFile: `${prefix}${SERVICE_ACCOUNT}/token` } } }];
    this.contexts = [
      {
        name: 'inClusterContext',
        cluster: 'inCluster',
        user: 'inClusterUser',
        ...(existsSync(namespaceFile) ? { namespace: readFileSync(namespaceFile, 'utf8') } : {}),
      },
    ];
    this.currentContext = 'inClusterContext';
  }

  /** Adds another file's entries (a name twice is an error); kubectl: the first current-context wins. */
  mergeConfig(other: KubeConfig, preserveContext = false): void {
    if (!preserveContext && other.currentContext) this.currentContext = other.currentContext;
    const add = <T extends { name: string }>(into: T[], entries: readonly T[], what: string): void => {
      for (const entry of entries) {
        if (into.some((existing) => existing.name === entry.name)) throw new Error(`Duplicate ${what}: ${entry.name}`);
        into.push(entry);
      }
    };
    add(this.clusters, other.clusters, 'cluster');
    add(this.users, other.users, 'user');
    add(this.contexts, other.contexts, 'context');
  }

  getContexts(): readonly Context[] {
    return this.contexts;
  }

  getCurrentContext(): string {
    return this.currentContext;
  }

  /** kubectl's --context: the context to use instead of the file's current-context. */
  setCurrentContext(name: string): void {
    this.currentContext = name;
  }

  getCurrentCluster(): Cluster | null {
    const context = this.contexts.find((c) => c.name === this.currentContext);
    return (context && this.clusters.find((c) => c.name === context.cluster)) ?? null;
  }

  private getCurrentUser(): User | null {
    const context = this.contexts.find((c) => c.name === this.currentContext);
    return (context && this.users.find((u) => u.name === context.user)) ?? null;
  }

  /**
   * The current cluster's trust and the current user's credentials on `options`, as client-node's
   * applyToHTTPSOptions sets them (TLS files re-read and tokens refreshed on every call), except the
   * agent: requests go through Node's global agent, which keeps connections per TLS setting.
   */
  async applyToHTTPSOptions(options: RequestOptions): Promise<void> {
    const cluster = this.getCurrentCluster();
    const user = this.getCurrentUser();
    if (cluster?.proxyUrl) throw new Error(`the kubeconfig's proxy-url (cluster ${cluster.name}) is not supported; reach the API server directly`);
    if (cluster?.server.startsWith('http:') && !cluster.skipTLSVerify) throw new Error('HTTP protocol is not allowed when skipTLSVerify is not set or false');
    if (!user) return;
    const bytes = (file: string | undefined, data: string | undefined): Buffer | undefined =>
      file ? readFileSync(file) : data ? Buffer.from(data, 'base64') : undefined;
    if (cluster?.skipTLSVerify) options.rejectUnauthorized = false;
    if (cluster?.tlsServerName) options.servername = cluster.tlsServerName;
    const ca = cluster ? bytes(cluster.caFile, cluster.caData) : undefined;
    if (ca) options.ca = ca;
    const cert = bytes(user.certFile, user.certData);
    if (cert) options.cert = cert;
    const key = bytes(user.keyFile, user.keyData);
    if (key) options.key = key;
    const headers: OutgoingHttpHeaders = Array.isArray(options.headers) || !options.headers ? {} : (options.headers as OutgoingHttpHeaders);
    options.headers = headers;
    if (user.impersonateUser) headers['Impersonate-User'] = user.impersonateUser;
    const authenticator = this.authenticators.find((a) => a.isAuthProvider(user));
    if (authenticator) await authenticator.applyAuthentication(user, options);
    if (user.token) headers.Authorization = `Bearer ${user.token}`;
    if (user.username) options.auth = `${user.username}:${user.password ?? ''}`;
  }
}
