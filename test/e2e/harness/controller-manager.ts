// kube-controller-manager with only the controllers a test names (e.g. the namespace controller, which
// finishes namespace deletions, and the garbage collector, which follows ownerReferences). Built by
// `hack/build-binaries.sh --with-controller-manager`; tests that need it skip, saying so, without it.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { cacheDir } from './binaries.js';
import { freePort, getUrl } from './controlplane.js';
import { startProcess, type ManagedProcess } from './process.js';
import { setTimeout as sleep } from 'node:timers/promises';


/** TEST_ASSET_KUBE_CONTROLLER_MANAGER, else the build cache's binary; undefined when neither exists. */
export function controllerManagerBinary(): string | undefined {
  const override = process.env.TEST_ASSET_KUBE_CONTROLLER_MANAGER;
  if (override) return override;
  const built = join(cacheDir(), 'bin', 'kube-controller-manager');
  return existsSync(built) ? built : undefined;
}

export async function startControllerManager(options: { kubeconfig: string; controllers: readonly string[]; logFile: string }): Promise<ManagedProcess> {
  const binary = controllerManagerBinary();
  if (!binary) throw new Error('kube-controller-manager not built: run hack/build-binaries.sh --with-controller-manager');
  const port = await freePort();
  const process = startProcess({
    name: 'kube-controller-manager',
    command: binary,
    logFile: options.logFile,
    args: [
      `--kubeconfig=${options.kubeconfig}`,
      `--authentication-kubeconfig=${options.kubeconfig}`,
      `--authorization-kubeconfig=${options.kubeconfig}`,
      `--controllers=${options.controllers.join(',')}`,
      '--leader-elect=false',
      '--bind-address=127.0.0.1',
      `--secure-port=${port}`,
    ],
  });
  for (let i = 0; ; i++) {
    if (!process.running()) throw new Error(`kube-controller-manager exited; see ${options.logFile}`);
    const health = await getUrl(`https://127.0.0.1:${port}/healthz`, { rejectUnauthorized: false }).catch(() => undefined);
    if (health?.status === 200) return process;
    if (i > 600) throw new Error('kube-controller-manager not healthy within 60 s');
    await sleep(100);
  }
}
