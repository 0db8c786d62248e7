// vitest globalSetup for the end-to-end suite: resolves (or builds) the control-plane binaries, starts
// one control plane (etcd, kube-apiserver, kube-scheduler) for the whole run, hands its coordinates to
// the test files, and tears it down at the end.
//
// Test files read them with `inject('kubeconfig')` etc.; child processes (the webhook, kubectl, helm)
// get them from the environment: KUBECONFIG, and PATH starting with a directory holding exactly the
// resolved kube-apiserver, etcd, kubectl, kube-scheduler and helm.
import { join } from 'node:path';
import type {} from 'vitest';
import type { TestProject } from 'vitest/node';
import { ensureBinaries, linkBinaries, pinnedVersions, type BinaryName, type BinarySource, type PinnedVersions } from './harness/binaries.js';
import { AUDIT_LOG_ENV } from './harness/audit.js';
import { startControlPlane } from './harness/controlplane.js';
import { CONTROL_TOKEN_ENV, CONTROL_URL_ENV, serveControlPlane } from './harness/remote.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Admin kubeconfig (client certificate in O=system:masters). */
    kubeconfig: string;
    /** https://127.0.0.1:<port> */
    apiserverUrl: string;
    /** Directory of symlinks to the resolved binaries (also first on PATH). */
    binDir: string;
    /** gitVersion the running apiserver reports, e.g. "v1.36.3". */
    kubernetesVersion: string;
    /** The versions hack/build-binaries.sh pins. */
    pinnedVersions: PinnedVersions;
    /** Where each binary came from (TEST_ASSET, KUBEBUILDER_ASSETS or built). */
    binarySources: Record<BinaryName, BinarySource>;
    /** Milliseconds from nothing to a ready control plane (certificates, etcd, apiserver, scheduler). */
    controlPlaneStartMs: number;
    /** The apiserver's audit log: pod requests at level Metadata (JSON lines). */
    auditLogPath: string;
  }
}

const log = (line: string): void => {
  process.stderr.write(`[e2e] ${line}\n`);
};

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const binaries = await ensureBinaries({ build: process.env.SANDBOX_WEBHOOK_E2E_BUILD !== '0', log });
  const controlPlane = await startControlPlane({
    binaries,
    scheduler: process.env.SANDBOX_WEBHOOK_E2E_SCHEDULER !== '0',
    log,
  });
  const restoreEnv = { ...process.env };
  try {
    const binDir = linkBinaries(binaries, join(controlPlane.dir, 'bin'));
    const control = await serveControlPlane(controlPlane);
    const version = await controlPlane.get('/version');
    const kubernetesVersion = (JSON.parse(version.body) as { gitVersion: string }).gitVersion;
    log(
      `control plane ${kubernetesVersion} ready in ${controlPlane.timings.totalMs} ms ` +
        `(etcd ${controlPlane.timings.etcdReadyMs} ms, kube-apiserver ${controlPlane.timings.apiserverReadyMs} ms` +
        `${controlPlane.timings.schedulerReadyMs === undefined ? '' : `, kube-scheduler ${controlPlane.timings.schedulerReadyMs} ms`})` +
        `; logs in ${join(controlPlane.dir, 'logs')}`,
    );

    project.provide('kubeconfig', controlPlane.kubeconfigPath);
    project.provide('apiserverUrl', controlPlane.apiserverUrl);
    project.provide('binDir', binDir);
    project.provide('kubernetesVersion', kubernetesVersion);
    project.provide('pinnedVersions', pinnedVersions());
    project.provide('binarySources', binaries.sources);
    project.provide('controlPlaneStartMs', controlPlane.timings.totalMs);
    project.provide('auditLogPath', controlPlane.auditLogPath);

    // Workers and every process they spawn inherit these.
    process.env.KUBECONFIG = controlPlane.kubeconfigPath;
    process.env.PATH = `${binDir}:${process.env.PATH ?? ''}`;
    process.env[CONTROL_URL_ENV] = control.url;
    process.env[CONTROL_TOKEN_ENV] = control.token;
    process.env[AUDIT_LOG_ENV] = controlPlane.auditLogPath;

    return async () => {
      for (const key of ['KUBECONFIG', 'PATH', CONTROL_URL_ENV, CONTROL_TOKEN_ENV, AUDIT_LOG_ENV]) {
        if (restoreEnv[key] === undefined) delete process.env[key];
        else process.env[key] = restoreEnv[key];
      }
      await control.close();
      await controlPlane.stop();
    };
  } catch (error) {
    await controlPlane.stop();
    throw error;
  }
}
