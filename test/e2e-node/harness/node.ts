// A real Kubernetes node for the end-to-end tests: containerd (runc and the gVisor shim) and a kubelet
// registered against the test control plane, inside namespaces of their own, under one temp dir.
//
// Why namespaces (docs/gvisor-node.md "Nodes without CAP_SYS_RESOURCE"): on a host whose capability
// bounding set lacks CAP_SYS_RESOURCE, the gVisor shim fails at start ("failed to set OOM Score on shim:
// write /proc/N/oom_score_adj: permission denied"): it lowers its daemon's oom_score_adj to -999
// (gvisor.dev/gvisor pkg/shim/v1/manager.go, Start) and containerd's helper it calls tolerates the refusal
// only in a user namespace (github.com/containerd/containerd/v2 pkg/sys/oom_linux.go, SetOOMScore). So the
// node runs where a rootless Kubernetes node runs: a user namespace mapping ids to themselves (root stays
// root for files, cgroups and the rest), with its own mount, pid, network, uts and ipc namespaces:
//   - the kubelet's KubeletInUserNamespace gate turns its refused host sysctls into warnings, so the
//     host's sysctls are never changed;
//   - a veth pair links the node's network namespace to the host: the kubelet reaches the apiserver
//     through a TCP relay on the host end, the apiserver reaches the kubelet on the node end;
//   - /proc (for the node's pid namespace) and /run are the node's own;
//   - stopping it kills the namespaces' first process, and with it every shim, sandbox and container
//     (the pid namespace) and every mount (the mount namespace). Only the cgroups outlive it, under one
//     cgroup root per run that stop() removes (and a small reaper, when the test process dies first).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { parse, stringify } from 'yaml';
import { makeTempDir, removeTempDir, startProcess, type ManagedProcess } from '../../e2e/harness/process.js';
import { BUILD_IMAGE_SCRIPT, type NodeBinaries } from './binaries.js';
import { cniConflist, containerdConfig, kubeletConfig, runscToml } from './configs.js';
import { setTimeout as sleep } from 'node:timers/promises';

const execFileAsync = promisify(execFile);

/**
 * The label and taint the chart's RuntimeClass selects and tolerates: GVISOR_NODE_LABEL and
 * GVISOR_NODE_TAINT of test/e2e/harness/cluster.ts, which this file cannot import (it imports vitest's
 * expect, and globalSetup runs outside vitest's test context).
 */
const GVISOR_NODE_LABEL = { key: 'sandbox.gvisor.dev/runtime', value: 'gvisor' } as const;
const GVISOR_NODE_TAINT = { key: GVISOR_NODE_LABEL.key, value: GVISOR_NODE_LABEL.value, effect: 'NoSchedule' } as const;

/** Every cgroup root a run makes starts with this; a later run removes stale empty ones. */
const CGROUP_PREFIX = 'sandbox-webhook-e2e-node-';
const CGROUP_FS = '/sys/fs/cgroup';

export interface StartNodeOptions {
  binaries: NodeBinaries;
  /** Admin kubeconfig of the control plane (the kubelet registers with it). */
  kubeconfigPath: string;
  /** CA of the client certificate kube-apiserver presents to kubelets (pki.ts). */
  kubeletClientCa: string;
  /** runsc --platform. Default systrap (runsc's default; kvm needs /dev/kvm). */
  runscPlatform?: string;
  readyTimeoutMs?: number;
  log?: (line: string) => void;
}

export interface NodeTimings {
  containerdReadyMs: number;
  imagesImportedMs: number;
  /** From starting the kubelet until the Node reports Ready. */
  kubeletReadyMs: number;
  totalMs: number;
}

export interface TestNode {
  name: string;
  /** The node's address (its end of the veth pair): the Node's InternalIP. */
  ip: string;
  dir: string;
  /** The kubelet's cgroup root (same path in every cgroup v1 hierarchy). */
  cgroupRoot: string;
  images: { busybox: string; pause: string };
  logs: { containerd: string; kubelet: string; runscDir: string; podLogsDir: string };
  timings: NodeTimings;
  /** Runs ctr against the node's containerd, in its namespaces; resolves with stdout. */
  ctr(args: readonly string[]): Promise<string>;
  /** Stops everything, removes the cgroups and the temp dir. Safe to call twice. */
  stop(): Promise<void>;
}

function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

async function run(command: string, args: readonly string[], env?: NodeJS.ProcessEnv): Promise<string> {
  try {
    const { stdout } = await execFileAsync(command, args, { env: env ?? process.env, maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  } catch (error) {
    const failure = error as { stderr?: string; message?: string };
    throw new Error(`${command} ${args.join(' ')} failed: ${failure.stderr || failure.message || String(error)}`);
  }
}

async function waitFor(what: string, check: () => Promise<boolean>, processes: ManagedProcess[], timeoutMs: number): Promise<number> {
  const started = Date.now();
  let last = '';
  while (Date.now() - started < timeoutMs) {
    for (const p of processes) {
      if (!p.running()) throw new Error(`${p.name} exited before ${what}; last log lines:\n${tail(p.logFile)}`);
    }
    try {
      if (await check()) return Date.now() - started;
    } catch (error) {
      last = String(error);
    }
    await sleep(200);
  }
  throw new Error(`${what}: not within ${timeoutMs} ms (${last}); last log lines:\n${processes.map((p) => `${p.name}:\n${tail(p.logFile)}`).join('\n')}`);
}

/**
 * The cgroup hierarchies mounted under /sys/fs/cgroup: the v1 ones, and with `unified` also the cgroup2
 * one a hybrid host mounts there (the kubelet creates its cgroup root in it too).
 */
function cgroupHierarchies(unified = false): string[] {
  return readdirSync(CGROUP_FS)
    .filter((name) => (unified || name !== 'unified') && existsSync(join(CGROUP_FS, name, 'cgroup.procs')))
    .filter((name) => !lstatSync(join(CGROUP_FS, name)).isSymbolicLink());
}

/** rmdir a cgroup tree, deepest first; cgroups still holding processes stay (and are reported). */
function removeCgroupTree(path: string): string[] {
  const left: string[] = [];
  if (!existsSync(path)) return left;
  for (const entry of readdirSync(path, { withFileTypes: true })) {
    if (entry.isDirectory()) left.push(...removeCgroupTree(join(path, entry.name)));
  }
  try {
    rmdirSync(path);
  } catch {
    left.push(path);
  }
  return left;
}

/** Removes empty cgroup roots that earlier runs left behind (a crash before stop()). */
function removeStaleCgroupRoots(): void {
  for (const hierarchy of cgroupHierarchies(true)) {
    for (const entry of readdirSync(join(CGROUP_FS, hierarchy))) {
      if (entry.startsWith(CGROUP_PREFIX)) removeCgroupTree(join(CGROUP_FS, hierarchy, entry));
    }
  }
}

/** Creates the kubelet's cgroup root in every hierarchy (the kubelet requires it to exist). */
function createCgroupRoot(name: string): void {
  for (const hierarchy of cgroupHierarchies()) {
    const dir = join(CGROUP_FS, hierarchy, name);
    mkdirSync(dir, { recursive: true });
    if (hierarchy.split(',').includes('cpuset')) {
      // A new cpuset cgroup starts with no cpus and no memory nodes: inherit the parent's.
      for (const file of ['cpuset.cpus', 'cpuset.mems']) writeFileSync(join(dir, file), readFileSync(join(CGROUP_FS, hierarchy, file)));
    }
  }
}

// Removes the cgroup root once the test process is gone, however it ended (Ctrl-C, SIGKILL, a crashed
// worker): the process handlers of test/e2e/harness/process.ts kill the node's processes and remove its
// temp dir, but their cgroups can only go once those processes have exited. A small `sh` in a process
// group of its own reads a pipe from us; when the pipe closes it retries rmdir (deepest first) for up to
// 20 s. stop() closes the pipe after its own cleanup, and the reaper then finds nothing to do.
const CGROUP_REAPER_SCRIPT = `
cat >/dev/null
i=0
while [ $i -lt 100 ]; do
  left=0
  for path in "$@"; do
    [ -d "$path" ] || continue
    find "$path" -depth -type d -exec rmdir {} + 2>/dev/null
    [ -d "$path" ] && left=1
  done
  [ $left = 0 ] && exit 0
  i=$((i + 1))
  sleep 0.2
done
`;

function startCgroupReaper(paths: readonly string[]): ChildProcess {
  const child = spawn('sh', ['-c', CGROUP_REAPER_SCRIPT, 'sandbox-webhook-cgroup-reaper', ...paths], {
    detached: true,
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  // Neither the reaper nor its pipe may keep the event loop alive; the pipe just has to stay open.
  child.unref();
  (child.stdin as Socket | null)?.unref();
  return child;
}

// The first process of the node's namespaces. Waits until the harness has written the id maps, mounts
// the node's own /proc and /run, brings up lo, reports, and then only holds the namespaces.
const HOLDER_SCRIPT = `
while [ -z "$(cat /proc/self/uid_map)" ]; do sleep 0.05; done
mount -t proc proc /proc || exit 11
mount -t tmpfs -o mode=0755 tmpfs /run || exit 12
ip link set lo up || exit 13
echo ready >"$1"
exec sleep infinity
`;
const ID_MAP = '0 0 4294967294\n';
const NAMESPACES = ['--user', '--mount', '--pid', '--net', '--uts', '--ipc'];

/** A TCP relay: host address -> 127.0.0.1:port (the apiserver listens on loopback only). */
function relay(listenHost: string, targetPort: number): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = createConnection({ host: '127.0.0.1', port: targetPort });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, listenHost, () => {
      const address = server.address();
      if (address === null || typeof address === 'string') return reject(new Error('relay: no port'));
      resolve({
        port: address.port,
        close: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}

export async function startNode(options: StartNodeOptions): Promise<TestNode> {
  const log = options.log ?? (() => undefined);
  const readyTimeoutMs = options.readyTimeoutMs ?? 180_000;
  const { binaries } = options;
  const started = Date.now();
  const suffix = randomBytes(3).toString('hex');
  const name = `e2e-node-${suffix}`;
  const cgroupRoot = `/${CGROUP_PREFIX}${suffix}`;
  const hostInterface = `swe2e${suffix}`;
  // A /30 per run: the host end .1, the node .2.
  const third = randomBytes(1)[0] as number;
  const fourth = ((randomBytes(1)[0] as number) % 64) * 4;
  const hostIp = `10.213.${third}.${fourth + 1}`;
  const nodeIp = `10.213.${third}.${fourth + 2}`;

  const dir = makeTempDir('node');
  const path = (...parts: string[]): string => join(dir, ...parts);
  for (const sub of ['bin', 'logs', 'logs/runsc', 'logs/pods', 'images', 'cni/net.d', 'cni/data', 'containerd', 'kubelet', 'runsc-root']) {
    mkdirSync(path(sub), { recursive: true });
  }
  const logs = {
    containerd: path('logs', 'containerd.log'),
    kubelet: path('logs', 'kubelet.log'),
    runscDir: path('logs', 'runsc'),
    podLogsDir: path('logs', 'pods'),
  };

  let holder: ManagedProcess | undefined;
  let containerd: ManagedProcess | undefined;
  let kubelet: ManagedProcess | undefined;
  let apiserverRelay: { port: number; close(): Promise<void> } | undefined;
  let cgroupCreated = false;
  let cgroupReaper: ChildProcess | undefined;
  let stopped = false;

  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await kubelet?.stop('SIGTERM', 10_000);
    await containerd?.stop('SIGTERM', 10_000);
    // The namespaces' first process: its end kills everything left in the pid namespace.
    await holder?.stop('SIGKILL', 1_000);
    await apiserverRelay?.close();
    if (cgroupCreated) {
      let left: string[] = [];
      for (let attempt = 0; attempt < 50; attempt++) {
        left = cgroupHierarchies(true).flatMap((h) => removeCgroupTree(join(CGROUP_FS, h, cgroupRoot)));
        if (left.length === 0) break;
        await sleep(200);
      }
      if (left.length > 0) log(`cgroups not removed (still in use): ${left.join(', ')}`);
    }
    cgroupReaper?.stdin?.end();
    removeTempDir(dir);
  };

  try {
    if (existsSync(join(CGROUP_FS, 'cgroup.controllers'))) {
      // The cgroup handling here (a root per v1 hierarchy, the tests' limits read from v1 files) is
      // written for the cgroup v1 hosts this suite runs on.
      throw new Error(`${CGROUP_FS} is a cgroup v2 mount: this harness supports cgroup v1 (or hybrid) hosts only`);
    }
    removeStaleCgroupRoots();

    // Test images: busybox for the pods, and a pause image made of busybox's sleep for the sandbox.
    const images = { busybox: 'sandbox-webhook.local/busybox:e2e', pause: 'sandbox-webhook.local/pause:e2e' };
    await run('bash', [BUILD_IMAGE_SCRIPT, binaries.busybox, path('images', 'busybox.tar'), images.busybox]);
    await run('bash', [BUILD_IMAGE_SCRIPT, binaries.busybox, path('images', 'pause.tar'), images.pause, '/bin/sleep', '2147483647']);

    // containerd finds its shims (and the gVisor shim finds nothing else) on PATH.
    const links: Record<string, string> = {
      'containerd-shim-runc-v2': binaries.shimRuncV2,
      'containerd-shim-runsc-v1': binaries.shimRunscV1,
      runsc: binaries.runsc,
      runc: binaries.runc,
    };
    for (const [link, target] of Object.entries(links)) symlinkSync(target, path('bin', link));
    const nodeEnv: NodeJS.ProcessEnv = { PATH: `${path('bin')}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`, HOME: dir };

    // The namespaces, held by one process.
    const readyFile = path('holder.ready');
    holder = startProcess({
      name: 'node-namespaces',
      command: 'unshare',
      args: [...NAMESPACES, '--fork', '--kill-child', '--propagation', 'private', '--', 'sh', '-c', HOLDER_SCRIPT, 'node-holder', readyFile],
      logFile: path('logs', 'holder.log'),
    });
    // unshare made the user namespace before forking: map ids to themselves (root in the parent
    // namespace may; newuidmap is not needed). Retried until unshare has made it. All ids but the last:
    // the full map "0 0 4294967295" is what the initial namespace has, and runc and the shims
    // (github.com/moby/sys/userns RunningInUserNS) then believe they are not in a user namespace.
    const mapped = await waitFor(
      'the user namespace id maps',
      async () => {
        try {
          writeFileSync(`/proc/${holder?.pid}/uid_map`, ID_MAP);
          writeFileSync(`/proc/${holder?.pid}/gid_map`, ID_MAP);
          return true;
        } catch {
          return false;
        }
      },
      [holder],
      10_000,
    );
    await waitFor('the node namespaces', async () => existsSync(readyFile), [holder], 10_000);
    const children = readFileSync(`/proc/${holder.pid}/task/${holder.pid}/children`, 'utf8').trim().split(/\s+/);
    const nsPid = children[0];
    if (!nsPid) throw new Error('node namespaces: unshare has no child');
    log(`node namespaces ready (id maps after ${mapped} ms), first process ${nsPid}`);
    const enter = (command: string, args: readonly string[]): { command: string; args: string[] } => ({
      command: 'nsenter',
      args: ['-t', nsPid, ...NAMESPACES, '--', command, ...args],
    });

    // The link to the host.
    await run('ip', ['link', 'add', hostInterface, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', nsPid]);
    await run('ip', ['addr', 'add', `${hostIp}/30`, 'dev', hostInterface]);
    await run('ip', ['link', 'set', hostInterface, 'up']);
    await run('nsenter', ['-t', nsPid, '--net', 'ip', 'addr', 'add', `${nodeIp}/30`, 'dev', 'eth0']);
    await run('nsenter', ['-t', nsPid, '--net', 'ip', 'link', 'set', 'eth0', 'up']);

    cgroupReaper = startCgroupReaper(cgroupHierarchies(true).map((h) => join(CGROUP_FS, h, cgroupRoot)));
    createCgroupRoot(cgroupRoot);
    cgroupCreated = true;

    // containerd.
    const socket = path('containerd', 'containerd.sock');
    writeFileSync(path('cni', 'net.d', '10-e2e-node.conflist'), cniConflist({ subnet: '10.214.0.0/24', dataDir: path('cni', 'data') }));
    writeFileSync(
      path('runsc.toml'),
      runscToml({ runsc: binaries.runsc, root: path('runsc-root'), logDir: logs.runscDir }, options.runscPlatform ?? 'systrap'),
    );
    writeFileSync(
      path('containerd.toml'),
      containerdConfig({
        root: path('containerd', 'root'),
        state: path('containerd', 'state'),
        socket,
        runc: binaries.runc,
        cniBinDir: binaries.cniBinDir,
        cniConfDir: path('cni', 'net.d'),
        runscConfig: path('runsc.toml'),
        sandboxImage: images.pause,
      }),
    );
    const ctr = (args: readonly string[]): Promise<string> => {
      const c = enter(binaries.ctr, ['--address', socket, ...args]);
      return run(c.command, c.args, nodeEnv);
    };
    const containerdStart = Date.now();
    const containerdCommand = enter(binaries.containerd, ['--config', path('containerd.toml'), '--log-level', 'info']);
    containerd = startProcess({ name: 'containerd', ...containerdCommand, logFile: logs.containerd, env: nodeEnv });
    const containerdReadyMs = await waitFor('containerd answers', async () => (await ctr(['version'])).includes('Server:'), [holder, containerd], 60_000);
    log(`containerd ready in ${containerdReadyMs} ms (${Date.now() - containerdStart} ms with the wrapper)`);

    const importStart = Date.now();
    for (const image of ['pause', 'busybox']) await ctr(['-n', 'k8s.io', 'images', 'import', path('images', `${image}.tar`)]);
    const imagesImportedMs = Date.now() - importStart;

    // The kubelet, reaching the apiserver through the relay on the host end of the veth pair.
    const admin = parse(readFileSync(options.kubeconfigPath, 'utf8')) as {
      clusters: { cluster: { server: string; 'tls-server-name'?: string } }[];
    };
    const cluster = admin.clusters[0]?.cluster;
    if (!cluster) throw new Error(`${options.kubeconfigPath}: no cluster`);
    const apiserverPort = Number(new URL(cluster.server).port);
    apiserverRelay = await relay(hostIp, apiserverPort);
    cluster.server = `https://${hostIp}:${apiserverRelay.port}`;
    // The apiserver's serving certificate names 127.0.0.1 and localhost, not the relay's address.
    cluster['tls-server-name'] = 'localhost';
    writeFileSync(path('kubelet', 'kubeconfig'), stringify(admin), { mode: 0o600 });
    writeFileSync(
      path('kubelet', 'config.json'),
      kubeletConfig({
        runtimeEndpoint: `unix://${socket}`,
        cgroupRoot,
        address: nodeIp,
        port: 10250,
        healthzPort: 10248,
        clientCaFile: options.kubeletClientCa,
        podLogsDir: logs.podLogsDir,
        taint: GVISOR_NODE_TAINT,
      }),
    );
    kubelet = startProcess({
      name: 'kubelet',
      ...enter(binaries.kubelet, [
        `--config=${path('kubelet', 'config.json')}`,
        `--kubeconfig=${path('kubelet', 'kubeconfig')}`,
        `--root-dir=${path('kubelet', 'root')}`,
        `--hostname-override=${name}`,
        `--node-ip=${nodeIp}`,
        `--node-labels=${GVISOR_NODE_LABEL.key}=${GVISOR_NODE_LABEL.value}`,
        '--v=2',
      ]),
      logFile: logs.kubelet,
      env: nodeEnv,
    });
    const kc = new KubeConfig();
    kc.loadFromFile(options.kubeconfigPath);
    const core = kc.makeApiClient(CoreV1Api);
    const kubeletReadyMs = await waitFor(
      `node ${name} Ready`,
      async () => {
        const node = await core.readNode({ name });
        return node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
      },
      [holder, containerd, kubelet],
      readyTimeoutMs,
    );
    const totalMs = Date.now() - started;
    log(`node ${name} Ready ${kubeletReadyMs} ms after the kubelet started (${totalMs} ms in all); logs in ${path('logs')}`);

    return {
      name,
      ip: nodeIp,
      dir,
      cgroupRoot,
      images,
      logs,
      timings: { containerdReadyMs, imagesImportedMs, kubeletReadyMs, totalMs },
      ctr,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
