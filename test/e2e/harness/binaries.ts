// Finds the control-plane binaries, in the order hack/build-binaries.sh honours them:
//   1. TEST_ASSET_<NAME> (one binary, e.g. TEST_ASSET_KUBE_APISERVER=/opt/k8s/kube-apiserver);
//   2. KUBEBUILDER_ASSETS/<name> (a directory as setup-envtest lays it out);
//   3. the build cache, <cache>/bin/<name>, if its stamp says it was built for the pinned version.
// The pins live in hack/build-binaries.sh only; this file reads them from there.
import { execFile, spawn } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export const REPO_ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
export const BUILD_SCRIPT = join(REPO_ROOT, 'hack/build-binaries.sh');

export const BINARY_NAMES = ['kube-apiserver', 'etcd', 'kubectl', 'kube-scheduler', 'helm'] as const;
export type BinaryName = (typeof BINARY_NAMES)[number];

/** Where a binary came from: an explicit override, an envtest assets directory, or our build cache. */
export type BinarySource = 'TEST_ASSET' | 'KUBEBUILDER_ASSETS' | 'built';

export interface ResolvedBinary {
  path: string;
  source: BinarySource;
}

export interface Binaries {
  kubeApiserver: string;
  etcd: string;
  kubectl: string;
  kubeScheduler: string;
  helm: string;
  /** Where each binary came from. */
  sources: Record<BinaryName, BinarySource>;
  /** <cache>/bin: where hack/build-binaries.sh puts what it builds. */
  cacheBinDir: string;
}

export interface PinnedVersions {
  kubernetes: string;
  etcd: string;
  helm: string;
}

/** The version each binary is pinned to when we build it. */
const pinVariable: Record<BinaryName, keyof PinnedVersions> = {
  'kube-apiserver': 'kubernetes',
  'kube-scheduler': 'kubernetes',
  kubectl: 'kubernetes',
  etcd: 'etcd',
  helm: 'helm',
};

export function overrideVariable(name: BinaryName): string {
  return `TEST_ASSET_${name.toUpperCase().replace(/-/g, '_')}`;
}

export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.SANDBOX_WEBHOOK_CACHE) return env.SANDBOX_WEBHOOK_CACHE;
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'sandbox-webhook');
}

export function pinnedVersions(): PinnedVersions {
  const script = readFileSync(BUILD_SCRIPT, 'utf8');
  const pin = (variable: string): string => {
    const match = new RegExp(`^${variable}=(v[0-9][^\\s]*)$`, 'm').exec(script);
    if (!match?.[1]) throw new Error(`${BUILD_SCRIPT}: no ${variable}=v... line`);
    return match[1];
  };
  return { kubernetes: pin('KUBERNETES_VERSION'), etcd: pin('ETCD_VERSION'), helm: pin('HELM_VERSION') };
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Resolves one binary without building anything; undefined when it is neither supplied nor built for
 * its pin. An override that points at nothing executable is an error, not a silent fallback: the user
 * asked for that binary.
 */
export function resolveBinary(name: BinaryName, env: NodeJS.ProcessEnv = process.env): ResolvedBinary | undefined {
  const override = env[overrideVariable(name)];
  if (override) {
    if (!isExecutable(override)) throw new Error(`${overrideVariable(name)}=${override} is not an executable file`);
    return { path: override, source: 'TEST_ASSET' };
  }
  const assets = env.KUBEBUILDER_ASSETS;
  if (assets && isExecutable(join(assets, name))) return { path: join(assets, name), source: 'KUBEBUILDER_ASSETS' };
  const bin = join(cacheDir(env), 'bin');
  const built = join(bin, name);
  const stamp = join(bin, `.${name}.version`);
  if (isExecutable(built) && existsSync(stamp)) {
    const wanted = pinnedVersions()[pinVariable[name]];
    if (readFileSync(stamp, 'utf8').trim() === wanted) return { path: built, source: 'built' };
  }
  return undefined;
}

/** Runs hack/build-binaries.sh (builds only what is missing), streaming its progress to `log`. */
export async function buildBinaries(log: (line: string) => void = (line) => process.stderr.write(`${line}\n`)): Promise<void> {
  await new Promise<void>((resolvePromise, reject) => {
    const child = spawn('bash', [BUILD_SCRIPT], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let tail = '';
    const onData = (chunk: Buffer): void => {
      const text = chunk.toString();
      tail = (tail + text).slice(-4000);
      for (const line of text.split('\n')) if (line.startsWith('build-binaries.sh:')) log(line);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code === 0) resolvePromise();
      else reject(new Error(`hack/build-binaries.sh failed (exit ${String(code)}):\n${tail}`));
    });
  });
}

/**
 * Resolves every binary, building the missing ones first unless `build` is false (then a missing
 * binary is an error that says how to get it).
 */
export async function ensureBinaries(options: { build?: boolean; log?: (line: string) => void } = {}): Promise<Binaries> {
  const missing = (): BinaryName[] => BINARY_NAMES.filter((name) => resolveBinary(name) === undefined);
  if (missing().length > 0 && options.build !== false) await buildBinaries(options.log);
  const stillMissing = missing();
  if (stillMissing.length > 0) {
    throw new Error(
      `missing control-plane binaries: ${stillMissing.join(', ')}; run hack/build-binaries.sh, ` +
        `or point KUBEBUILDER_ASSETS or ${stillMissing.map(overrideVariable).join(', ')} at them`,
    );
  }
  const get = (name: BinaryName): ResolvedBinary => resolveBinary(name) as ResolvedBinary;
  const sources = Object.fromEntries(BINARY_NAMES.map((name) => [name, get(name).source])) as Record<BinaryName, BinarySource>;
  return {
    kubeApiserver: get('kube-apiserver').path,
    etcd: get('etcd').path,
    kubectl: get('kubectl').path,
    kubeScheduler: get('kube-scheduler').path,
    helm: get('helm').path,
    sources,
    cacheBinDir: join(cacheDir(), 'bin'),
  };
}

/**
 * Makes `dir` a directory of symlinks named kube-apiserver, etcd, kubectl, kube-scheduler and helm
 * pointing at the resolved binaries, so that one PATH entry puts exactly these first (ahead of, say, a
 * system kubectl of another version).
 */
export function linkBinaries(binaries: Binaries, dir: string): string {
  mkdirSync(dir, { recursive: true });
  const paths: Record<BinaryName, string> = {
    'kube-apiserver': binaries.kubeApiserver,
    etcd: binaries.etcd,
    kubectl: binaries.kubectl,
    'kube-scheduler': binaries.kubeScheduler,
    helm: binaries.helm,
  };
  for (const name of BINARY_NAMES) symlinkSync(resolve(paths[name]), join(dir, name));
  return dir;
}

/** `kube-apiserver --version` says "Kubernetes v1.36.3": returns "v1.36.3". */
export async function kubernetesBinaryVersion(path: string): Promise<string> {
  const { stdout } = await execFileAsync(path, ['--version']);
  const match = /Kubernetes (v\S+)/.exec(stdout);
  if (!match?.[1]) throw new Error(`${path} --version printed no Kubernetes version: ${stdout}`);
  return match[1];
}
