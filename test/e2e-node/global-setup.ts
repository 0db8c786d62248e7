// vitest globalSetup for the real-node suite (npm run test:e2e:node): builds or finds the binaries,
// starts the control plane of test/e2e (etcd, kube-apiserver, kube-scheduler), a kube-controller-manager
// running only the node lifecycle controller (it lifts the node's not-ready taint), and one real node
// (harness/node.ts); tears everything down at the end, or on the first failure.
//
// Test files read the coordinates with inject(); child processes (kubectl, helm) get KUBECONFIG and a
// PATH starting with the resolved control-plane binaries, as in test/e2e.
import { join } from 'node:path';
import type {} from 'vitest';
import type { TestProject } from 'vitest/node';
import { ensureBinaries, linkBinaries } from '../e2e/harness/binaries.js';
import { freePort, getUrl, startControlPlane, type ControlPlane } from '../e2e/harness/controlplane.js';
import { makeTempDir, removeTempDir, startProcess, type ManagedProcess } from '../e2e/harness/process.js';
import { ensureNodeBinaries } from './harness/binaries.js';
import { startNode, type TestNode } from './harness/node.js';
import { makeKubeletClientPki } from './harness/pki.js';
import { setTimeout as sleep } from 'node:timers/promises';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Admin kubeconfig of the control plane. */
    kubeconfig: string;
    /** Directory of symlinks to kubectl, helm and the other control-plane binaries (also first on PATH). */
    binDir: string;
    /** The real node: its name, address, cgroup root, images and log locations. */
    node: {
      name: string;
      ip: string;
      cgroupRoot: string;
      images: { busybox: string; pause: string };
      podLogsDir: string;
      runscLogDir: string;
      containerdLog: string;
      kubeletLog: string;
      timings: Record<string, number>;
    };
    /** The pins of hack/build-binaries.sh (KUBERNETES_VERSION, CONTAINERD_VERSION, GVISOR_VERSION). */
    nodeVersions: Record<string, string>;
  }
}

const log = (line: string): void => {
  process.stderr.write(`[e2e-node] ${line}\n`);
};

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const started = Date.now();
  const build = process.env.SANDBOX_WEBHOOK_E2E_BUILD !== '0';
  // The node's binaries first: that build (--with-controller-manager --with-node) covers the control plane's.
  const nodeBinaries = await ensureNodeBinaries({ build, log });
  const binaries = await ensureBinaries({ build, log });
  const pkiDir = makeTempDir('node-pki');
  let controlPlane: ControlPlane | undefined;
  let controllerManager: ManagedProcess | undefined;
  let node: TestNode | undefined;
  const restoreEnv = { ...process.env };
  const teardown = async (): Promise<void> => {
    for (const key of ['KUBECONFIG', 'PATH']) {
      if (restoreEnv[key] === undefined) delete process.env[key];
      else process.env[key] = restoreEnv[key];
    }
    await node?.stop();
    await controllerManager?.stop('SIGTERM', 5_000);
    await controlPlane?.stop();
    removeTempDir(pkiDir);
  };
  try {
    const pki = await makeKubeletClientPki(pkiDir);
    controlPlane = await startControlPlane({ binaries, scheduler: true, apiserverArgs: pki.apiserverArgs, log });
    const binDir = linkBinaries(binaries, join(controlPlane.dir, 'bin'));

    const kcmPort = await freePort();
    const kubeconfig = controlPlane.kubeconfigPath;
    controllerManager = startProcess({
      name: 'kube-controller-manager',
      command: nodeBinaries.kubeControllerManager,
      args: [
        `--kubeconfig=${kubeconfig}`,
        `--authentication-kubeconfig=${kubeconfig}`,
        `--authorization-kubeconfig=${kubeconfig}`,
        '--bind-address=127.0.0.1',
        `--secure-port=${kcmPort}`,
        '--leader-elect=false',
        // Only what a node needs to take pods: the not-ready taint lifted once the kubelet reports Ready.
        '--controllers=node-lifecycle-controller',
      ],
      logFile: join(controlPlane.dir, 'logs', 'kube-controller-manager.log'),
    });
    const kcmStart = Date.now();
    while (!(await getUrl(`https://127.0.0.1:${kcmPort}/healthz`, { rejectUnauthorized: false }).then((r) => r.status === 200, () => false))) {
      if (!controllerManager.running()) throw new Error(`kube-controller-manager exited; see ${controllerManager.logFile}`);
      if (Date.now() - kcmStart > 120_000) throw new Error('kube-controller-manager /healthz: not within 120 s');
      await sleep(200);
    }

    node = await startNode({
      binaries: nodeBinaries,
      kubeconfigPath: kubeconfig,
      kubeletClientCa: pki.caCert,
      // systrap (runsc's default) unless asked: kvm needs /dev/kvm, and on a VM without nested
      // virtualisation the sandbox boots but its first task never runs.
      runscPlatform: process.env.SANDBOX_WEBHOOK_E2E_RUNSC_PLATFORM || 'systrap',
      log,
    });

    project.provide('kubeconfig', kubeconfig);
    project.provide('binDir', binDir);
    project.provide('node', {
      name: node.name,
      ip: node.ip,
      cgroupRoot: node.cgroupRoot,
      images: node.images,
      podLogsDir: node.logs.podLogsDir,
      runscLogDir: node.logs.runscDir,
      containerdLog: node.logs.containerd,
      kubeletLog: node.logs.kubelet,
      timings: { ...node.timings, setupMs: Date.now() - started },
    });
    project.provide('nodeVersions', nodeBinaries.versions);
    process.env.KUBECONFIG = kubeconfig;
    process.env.PATH = `${binDir}:${process.env.PATH ?? ''}`;
    log(`ready in ${Date.now() - started} ms: node ${node.name} (${node.ip}), timings ${JSON.stringify(node.timings)}`);
    return teardown;
  } catch (error) {
    await teardown();
    throw error;
  }
}
