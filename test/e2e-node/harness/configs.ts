// The configuration files of the test node: containerd (with the runsc handler beside runc), the gVisor
// shim's runsc.toml, the CNI network, and the kubelet. Plain text builders; node.ts writes and uses them.
// docs/gvisor-node.md shows an admin the same containerd and RuntimeClass settings.

export interface ContainerdPaths {
  root: string;
  state: string;
  /** containerd's gRPC socket, also the CRI endpoint. */
  socket: string;
  runc: string;
  cniBinDir: string;
  cniConfDir: string;
  /** The gVisor shim's own configuration file (runscToml). */
  runscConfig: string;
  /** The sandbox (pause) image, imported before the first pod: never pulled. */
  sandboxImage: string;
}

const q = (value: string): string => JSON.stringify(value);

/**
 * containerd v2 configuration, schema version 3 (containerd v2.x reads it as it is; v2.4 migrates it to
 * its version 4 in memory, which `containerd config migrate` prints). The CRI runtime plugin is
 * `io.containerd.cri.v1.runtime` in this schema; containerd 1.x's was `io.containerd.grpc.v1.cri`.
 */
export function containerdConfig(paths: ContainerdPaths): string {
  return `version = 3
root = ${q(paths.root)}
state = ${q(paths.state)}
# No drop-in files from the host (containerd v2.4 reads /etc/containerd/conf.d/*.toml by default).
imports = []

[grpc]
  address = ${q(paths.socket)}

[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = ${q(paths.sandboxImage)}

[plugins.'io.containerd.cri.v1.runtime']
  # Keeps container oom_score_adj at or above containerd's own: lowering it needs CAP_SYS_RESOURCE in the
  # host's user namespace, which a node run in a user namespace does not have.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = ${q(paths.runc)}
        SystemdCgroup = false
    # The handler a RuntimeClass names (handler: runsc): the gVisor shim, containerd-shim-runsc-v1 on
    # containerd's PATH.
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runsc]
      runtime_type = 'io.containerd.runsc.v1'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runsc.options]
        TypeUrl = 'io.containerd.runsc.v1.options'
        ConfigPath = ${q(paths.runscConfig)}
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = [${q(paths.cniBinDir)}]
    conf_dir = ${q(paths.cniConfDir)}

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = '127.0.0.1'
  stream_server_port = '0'
`;
}

export interface RunscPaths {
  runsc: string;
  /** runsc's state directory (--root). */
  root: string;
  /** Directory for the shim's and runsc's debug logs. */
  logDir: string;
}

/** The gVisor shim's runsc.toml (pkg/shim/v1/runsc/options.go in gvisor.dev/gvisor): runsc's path and flags. */
export function runscToml(paths: RunscPaths, platform: string): string {
  return `binary_name = ${q(paths.runsc)}
root = ${q(paths.root)}
log_level = "debug"
# A directory (trailing slash): the shim writes runsc-shim-<id>.log there (pkg/shim/v1/runsccmd/utils.go).
log_path = ${q(`${paths.logDir}/`)}

[runsc_config]
  platform = ${q(platform)}
  debug = "true"
  debug-log = ${q(`${paths.logDir}/runsc-%ID%-%COMMAND%.log`)}
`;
}

/** A bridge network for the node's pods (inside the node's own network namespace). */
export function cniConflist(options: { subnet: string; dataDir: string }): string {
  return JSON.stringify(
    {
      cniVersion: '1.0.0',
      name: 'e2e-node',
      plugins: [
        {
          type: 'bridge',
          bridge: 'cni0',
          isGateway: true,
          ipMasq: false,
          ipam: { type: 'host-local', ranges: [[{ subnet: options.subnet }]], dataDir: options.dataDir },
        },
        { type: 'loopback' },
      ],
    },
    null,
    2,
  );
}

export interface KubeletConfigOptions {
  runtimeEndpoint: string;
  cgroupRoot: string;
  address: string;
  port: number;
  healthzPort: number;
  clientCaFile: string;
  podLogsDir: string;
  taint: { key: string; value: string; effect: string };
}

/** KubeletConfiguration (kubelet.config.k8s.io/v1beta1) for a cgroup v1, cgroupfs node in a user namespace. */
export function kubeletConfig(options: KubeletConfigOptions): string {
  return JSON.stringify(
    {
      apiVersion: 'kubelet.config.k8s.io/v1beta1',
      kind: 'KubeletConfiguration',
      // Since v1.35 the kubelet refuses to start on a cgroup v1 host unless told (docs/kubernetes.md §7).
      failCgroupV1: false,
      cgroupDriver: 'cgroupfs',
      cgroupRoot: options.cgroupRoot,
      containerRuntimeEndpoint: options.runtimeEndpoint,
      address: options.address,
      port: options.port,
      readOnlyPort: 0,
      healthzBindAddress: '127.0.0.1',
      healthzPort: options.healthzPort,
      // Only the apiserver, with the client certificate of its --kubelet-client-certificate, may call.
      authentication: { anonymous: { enabled: false }, webhook: { enabled: false }, x509: { clientCAFile: options.clientCaFile } },
      authorization: { mode: 'AlwaysAllow' },
      // In a user namespace the kubelet cannot set the host's sysctls, its own oom_score_adj or read
      // /dev/kmsg; this gate makes those refusals warnings (and the host's settings stay untouched).
      featureGates: { KubeletInUserNamespace: true },
      oomScoreAdj: 0,
      failSwapOn: false,
      podLogsDir: options.podLogsDir,
      registerWithTaints: [options.taint],
      // A test node on a shared disk: no image garbage collection (the images are imported, not
      // pullable) and no eviction for a disk that other jobs fill.
      imageGCHighThresholdPercent: 100,
      imageGCLowThresholdPercent: 99,
      evictionHard: { 'memory.available': '1Mi', 'nodefs.available': '1%', 'imagefs.available': '1%', 'nodefs.inodesFree': '1%' },
      nodeStatusReportFrequency: '10s',
      syncFrequency: '10s',
    },
    null,
    2,
  );
}
