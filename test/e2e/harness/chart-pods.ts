// What a kubelet would do for the chart, done by the test (the e2e control plane has no kubelet):
//   - runChartReplica: run dist/main.js as one replica of the chart's Deployment, with the chart's
//     ServiceAccount identity, its environment, and its ConfigMaps projected into files that follow the
//     ConfigMaps as a kubelet volume does (polled, swapped atomically);
//   - runHookJob / runHookPod: run a hook's container command (files/hooks/hooks.mjs) with node, as the
//     hook's ServiceAccount, then report the Job complete or the Pod succeeded so that helm goes on.
// What this cannot show: the image pulling and starting, the kubelet's probes, the Service routing.
import { execFile } from 'node:child_process';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BatchV1Api, CoreV1Api, type KubeConfig, type V1Job, type V1Pod } from '@kubernetes/client-node';
import { isApiError } from './cluster.js';
import { startWebhook, type RunningWebhook } from './webhook.js';
import { setTimeout as sleep } from 'node:timers/promises';

const execFileAsync = promisify(execFile);

/** A kubeconfig file for a ServiceAccount (a bound token from the TokenRequest API). */
export async function serviceAccountKubeconfig(kc: KubeConfig, namespace: string, name: string, path: string): Promise<{ path: string; token: string }> {
  const core = kc.makeApiClient(CoreV1Api);
  const request = await core.createNamespacedServiceAccountToken({ name, namespace, body: { spec: { expirationSeconds: 3600, audiences: [] } } });
  const token = request.status?.token ?? '';
  const cluster = kc.getCurrentCluster();
  if (!cluster?.caData) throw new Error('the e2e kubeconfig has no embedded CA');
  writeFileSync(
    path,
    `apiVersion: v1
kind: Config
clusters: [{ name: e2e, cluster: { server: "${cluster.server}", certificate-authority-data: ${cluster.caData} } }]
users: [{ name: ${name}, user: { token: "${token}" } }]
contexts: [{ name: sa, context: { cluster: e2e, user: ${name} } }]
current-context: sa
`,
  );
  return { path, token };
}

/** Writes the keys of a ConfigMap as files into `dir`, swapped in atomically like a kubelet volume. */
function project(dir: string, data: Record<string, string>): void {
  mkdirSync(dir, { recursive: true });
  for (const [key, value] of Object.entries(data)) {
    const next = join(dir, `.${key}.next`);
    writeFileSync(next, value);
    renameSync(next, join(dir, key));
  }
}

export interface ChartReplicaOptions {
  kc: KubeConfig;
  namespace: string;
  /** The release's full name (Deployment, ServiceAccount, ConfigMaps <fullname>-policy and -webhook). */
  fullname: string;
  /** A directory for the projected files and the kubeconfig. */
  dir: string;
  /** Where the serving certificate is (ca.crt, tls.crt, tls.key): the one webhook.url's CA names. */
  certDir: string;
  port: number;
  /** Extra environment (e.g. a faster REGISTRATION_INTERVAL_MS). */
  env?: NodeJS.ProcessEnv;
}

export interface ChartReplica {
  webhook: RunningWebhook;
  /** Stops following the ConfigMaps and stops the process (SIGTERM, as a pod deletion does). */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts one replica of the chart's Deployment as a local process; resolves once /readyz answers. */
export async function runChartReplica(options: ChartReplicaOptions): Promise<ChartReplica> {
  const core = options.kc.makeApiClient(CoreV1Api);
  const read = async (name: string): Promise<Record<string, string> | undefined> => {
    try {
      return (await core.readNamespacedConfigMap({ name, namespace: options.namespace })).data ?? {};
    } catch (error) {
      if (isApiError(error, 404)) return undefined;
      throw error;
    }
  };
  const policyDir = join(options.dir, 'policy');
  const registrationDir = join(options.dir, 'registration');
  const sync = async (): Promise<void> => {
    const policy = await read(`${options.fullname}-policy`);
    if (policy) project(policyDir, policy);
    const registration = await read(`${options.fullname}-webhook`);
    if (registration) project(registrationDir, { 'ca.crt': '', ...registration });
  };
  await sync();
  const kubeconfig = await serviceAccountKubeconfig(options.kc, options.namespace, options.fullname, join(options.dir, 'kubeconfig'));
  const webhook = await startWebhook({
    policyFile: join(policyDir, 'policy.yaml'),
    kubeconfig: kubeconfig.path,
    certDir: options.certDir,
    port: options.port,
    env: {
      SHUTDOWN_DELAY_SECONDS: '0',
      WEBHOOK_CONFIGURATION_FILE: join(registrationDir, 'mutatingwebhookconfiguration.yaml'),
      CA_BUNDLE_FILE: join(registrationDir, 'ca.crt'),
      REGISTRATION_INTERVAL_MS: '200',
      POD_NAMESPACE: options.namespace,
      RELOAD_INTERVAL_MS: '200',
      ...options.env,
    },
  });
  let following = true;
  const follow = (async () => {
    while (following) {
      await sleep(300);
      if (following) await sync().catch(() => undefined);
    }
  })();
  return {
    webhook,
    async stop(signal = 'SIGTERM') {
      following = false;
      await follow;
      await webhook.stop(signal);
    },
  };
}

interface HookContainer {
  args: string[];
  serviceAccount: string;
  configMap: string;
}

function hookContainer(spec: V1Pod['spec']): HookContainer {
  const container = spec?.containers[0];
  const configMap = spec?.volumes?.find((v) => v.name === 'hooks')?.configMap?.name;
  if (!container?.args || !spec?.serviceAccountName || !configMap) throw new Error('not a chart hook pod spec');
  return { args: container.args, serviceAccount: spec.serviceAccountName, configMap };
}

/** Runs a hook container's command locally with node, as its ServiceAccount; resolves with its output. */
async function runHookContainer(kc: KubeConfig, namespace: string, hook: HookContainer, dir: string): Promise<{ code: number; output: string }> {
  const core = kc.makeApiClient(CoreV1Api);
  const scripts = (await core.readNamespacedConfigMap({ name: hook.configMap, namespace })).data ?? {};
  const hooksDir = join(dir, 'hooks');
  project(hooksDir, scripts);
  const { token } = await serviceAccountKubeconfig(kc, namespace, hook.serviceAccount, join(dir, 'hook.kubeconfig'));
  writeFileSync(join(dir, 'token'), token);
  const cluster = kc.getCurrentCluster();
  writeFileSync(join(dir, 'ca.crt'), Buffer.from(cluster?.caData ?? '', 'base64'));
  // The container's args name the script at its mount path; run the projected copy.
  const args = hook.args.map((arg) => (arg === '/etc/sandbox-webhook/hooks/hooks.mjs' ? join(hooksDir, 'hooks.mjs') : arg));
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, args, {
      env: { ...process.env, KUBE_API_URL: cluster?.server, KUBE_TOKEN_FILE: join(dir, 'token'), KUBE_CA_FILE: join(dir, 'ca.crt') },
      timeout: 30_000,
    });
    return { code: 0, output: stdout + stderr };
  } catch (error) {
    const failure = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof failure.code === 'number' ? failure.code : 1, output: (failure.stdout ?? '') + (failure.stderr ?? '') };
  }
}

async function waitFor<T>(what: string, read: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const started = Date.now();
  for (;;) {
    const value = await read().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() - started > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(100);
  }
}

/**
 * Waits for the hook Job `name` (helm creates it during install/uninstall), runs its container as a
 * kubelet would, and writes the Job's status as the Job controller would: Complete when the command
 * exited 0, Failed otherwise. Resolves with the command's output.
 */
export async function runHookJob(kc: KubeConfig, namespace: string, name: string, dir: string, timeoutMs = 60_000): Promise<{ code: number; output: string }> {
  const batch = kc.makeApiClient(BatchV1Api);
  const job: V1Job = await waitFor(`hook Job ${namespace}/${name}`, () => batch.readNamespacedJob({ name, namespace }), timeoutMs);
  const result = await runHookContainer(kc, namespace, hookContainer(job.spec?.template.spec), dir);
  const now = new Date();
  const condition = (type: string) => ({ type, status: 'True', lastProbeTime: now, lastTransitionTime: now, reason: result.code === 0 ? 'Completed' : 'BackoffLimitExceeded', message: '' });
  const status =
    result.code === 0
      ? { startTime: now, completionTime: now, succeeded: 1, conditions: [condition('SuccessCriteriaMet'), condition('Complete')] }
      : { startTime: now, failed: 1, conditions: [condition('FailureTarget'), condition('Failed')] };
  const current = await batch.readNamespacedJob({ name, namespace });
  await batch.replaceNamespacedJobStatus({ name, namespace, body: { ...current, status } });
  return result;
}

/** Like runHookJob for a bare hook Pod (helm test): phase Succeeded or Failed. */
export async function runHookPod(kc: KubeConfig, namespace: string, name: string, dir: string, timeoutMs = 60_000): Promise<{ code: number; output: string }> {
  const core = kc.makeApiClient(CoreV1Api);
  const pod: V1Pod = await waitFor(`hook Pod ${namespace}/${name}`, () => core.readNamespacedPod({ name, namespace }), timeoutMs);
  const result = await runHookContainer(kc, namespace, hookContainer(pod.spec), dir);
  const current = await core.readNamespacedPod({ name, namespace });
  await core.replaceNamespacedPodStatus({ name, namespace, body: { ...current, status: { ...current.status, phase: result.code === 0 ? 'Succeeded' : 'Failed' } } });
  return result;
}
