// Finds what a real node runs, beside the control plane of test/e2e/harness/binaries.ts:
//   - built by `hack/build-binaries.sh --with-controller-manager --with-node` (pinned there):
//     kubelet and kube-controller-manager (KUBERNETES_VERSION), containerd, ctr and
//     containerd-shim-runc-v2 (CONTAINERD_VERSION), runsc and containerd-shim-runsc-v1 (GVISOR_VERSION);
//   - unpacked from Debian packages by hack/fetch-node-debs.sh: runc, the CNI plugins, busybox.
// Each built binary is looked up like the control plane's: TEST_ASSET_<NAME>, then KUBEBUILDER_ASSETS/<name>,
// then the build cache if its stamp holds the pin. runc, the CNI plugin directory and busybox can be given
// with TEST_ASSET_RUNC, TEST_ASSET_CNI_BIN_DIR and TEST_ASSET_BUSYBOX.
import { spawn } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BUILD_SCRIPT, cacheDir, REPO_ROOT } from '../../e2e/harness/binaries.js';

export const FETCH_DEBS_SCRIPT = join(REPO_ROOT, 'hack/fetch-node-debs.sh');
export const BUILD_IMAGE_SCRIPT = join(REPO_ROOT, 'hack/build-test-image.sh');

export const NODE_BINARY_NAMES = [
  'kubelet',
  'kube-controller-manager',
  'containerd',
  'ctr',
  'containerd-shim-runc-v2',
  'runsc',
  'containerd-shim-runsc-v1',
] as const;
export type NodeBinaryName = (typeof NODE_BINARY_NAMES)[number];

/** The build-binaries.sh variable each binary's pin is read from. */
const pinVariable: Record<NodeBinaryName, string> = {
  kubelet: 'KUBERNETES_VERSION',
  'kube-controller-manager': 'KUBERNETES_VERSION',
  containerd: 'CONTAINERD_VERSION',
  ctr: 'CONTAINERD_VERSION',
  'containerd-shim-runc-v2': 'CONTAINERD_VERSION',
  runsc: 'GVISOR_VERSION',
  'containerd-shim-runsc-v1': 'GVISOR_VERSION',
};

export interface NodeBinaries {
  kubelet: string;
  kubeControllerManager: string;
  containerd: string;
  ctr: string;
  shimRuncV2: string;
  runsc: string;
  shimRunscV1: string;
  runc: string;
  /** Directory holding the CNI plugins bridge, host-local and loopback. */
  cniBinDir: string;
  /** A statically linked busybox, for the test images (hack/build-test-image.sh). */
  busybox: string;
  /** The pins of hack/build-binaries.sh, e.g. { CONTAINERD_VERSION: 'v2.4.2', ... }. */
  versions: Record<string, string>;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export function overrideVariable(name: string): string {
  return `TEST_ASSET_${name.toUpperCase().replace(/-/g, '_')}`;
}

/** The `NAME=v...` pins at the top of hack/build-binaries.sh. */
export function buildPins(): Record<string, string> {
  const script = readFileSync(BUILD_SCRIPT, 'utf8');
  const pins: Record<string, string> = {};
  for (const variable of new Set(Object.values(pinVariable))) {
    const match = new RegExp(`^${variable}=(v[0-9][^\\s]*)$`, 'm').exec(script);
    if (!match?.[1]) throw new Error(`${BUILD_SCRIPT}: no ${variable}=v... line`);
    pins[variable] = match[1];
  }
  return pins;
}

/** One binary, without building: undefined when neither supplied nor built for its pin. */
export function resolveNodeBinary(name: NodeBinaryName, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const override = env[overrideVariable(name)];
  if (override) {
    if (!isExecutable(override)) throw new Error(`${overrideVariable(name)}=${override} is not an executable file`);
    return override;
  }
  if (env.KUBEBUILDER_ASSETS && isExecutable(join(env.KUBEBUILDER_ASSETS, name))) return join(env.KUBEBUILDER_ASSETS, name);
  const built = join(cacheDir(env), 'bin', name);
  const stamp = join(cacheDir(env), 'bin', `.${name}.version`);
  if (isExecutable(built) && existsSync(stamp) && readFileSync(stamp, 'utf8').trim() === buildPins()[pinVariable[name]]) return built;
  return undefined;
}

interface DebianPart {
  variable: string;
  /** Path inside <cache>/node-debs. */
  cached: string;
  directory?: boolean;
}

const debianParts = {
  runc: { variable: 'TEST_ASSET_RUNC', cached: 'runc/usr/sbin/runc' },
  cniBinDir: { variable: 'TEST_ASSET_CNI_BIN_DIR', cached: 'containernetworking-plugins/usr/lib/cni', directory: true },
  busybox: { variable: 'TEST_ASSET_BUSYBOX', cached: 'busybox-static/bin/busybox' },
} satisfies Record<string, DebianPart>;

function resolveDebianPart(part: DebianPart, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const given = env[part.variable];
  if (given) {
    const ok = part.directory ? ['bridge', 'host-local', 'loopback'].every((p) => isExecutable(join(given, p))) : isExecutable(given);
    if (!ok) throw new Error(`${part.variable}=${given} is not ${part.directory ? 'a directory with bridge, host-local and loopback' : 'an executable file'}`);
    return given;
  }
  const cached = join(cacheDir(env), 'node-debs', part.cached);
  return existsSync(cached) ? cached : undefined;
}

function runScript(script: string, args: readonly string[], log: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [script, ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let tail = '';
    const onData = (chunk: Buffer): void => {
      const text = chunk.toString();
      tail = (tail + text).slice(-4000);
      for (const line of text.split('\n')) if (/^(build-binaries|fetch-node-debs)\.sh:/.test(line)) log(line);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code === 0) resolve();
      else reject(new Error(`${script} failed (exit ${String(code)}):\n${tail}`));
    });
  });
}

/**
 * Resolves the node's binaries, first building (hack/build-binaries.sh --with-controller-manager
 * --with-node, which also builds the control plane's) and fetching (hack/fetch-node-debs.sh) what is
 * missing, unless `build` is false: then a missing piece is an error that says how to get it.
 */
export async function ensureNodeBinaries(options: { build?: boolean; log?: (line: string) => void } = {}): Promise<NodeBinaries> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const missingBuilt = (): NodeBinaryName[] => NODE_BINARY_NAMES.filter((name) => resolveNodeBinary(name) === undefined);
  const missingDebian = (): string[] =>
    Object.entries(debianParts)
      .filter(([, part]) => resolveDebianPart(part) === undefined)
      .map(([, part]) => part.variable);
  if (options.build !== false) {
    if (missingBuilt().length > 0) await runScript(BUILD_SCRIPT, ['--with-controller-manager', '--with-node'], log);
    if (missingDebian().length > 0) await runScript(FETCH_DEBS_SCRIPT, [], log);
  }
  const problems = [
    ...missingBuilt().map((name) => `${name} (hack/build-binaries.sh --with-node, or ${overrideVariable(name)})`),
    ...missingDebian().map((variable) => `${variable} (hack/fetch-node-debs.sh)`),
  ];
  if (problems.length > 0) throw new Error(`missing node binaries: ${problems.join('; ')}`);
  const built = (name: NodeBinaryName): string => resolveNodeBinary(name) as string;
  const debian = (part: DebianPart): string => resolveDebianPart(part) as string;
  return {
    kubelet: built('kubelet'),
    kubeControllerManager: built('kube-controller-manager'),
    containerd: built('containerd'),
    ctr: built('ctr'),
    shimRuncV2: built('containerd-shim-runc-v2'),
    runsc: built('runsc'),
    shimRunscV1: built('containerd-shim-runsc-v1'),
    runc: debian(debianParts.runc),
    cniBinDir: debian(debianParts.cniBinDir),
    busybox: debian(debianParts.busybox),
    versions: buildPins(),
  };
}
