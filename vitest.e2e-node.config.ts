import { defineConfig } from 'vitest/config';

// The real-node suite (test/e2e-node/README in test/e2e/README.md): one control plane, one
// kube-controller-manager and one real node (containerd, runc, gVisor, kubelet) for the whole run,
// started in globalSetup. Files run one after another: they share the node and its chart release.
export default defineConfig({
  test: {
    include: ['test/e2e-node/**/*.e2e-node.test.ts'],
    globalSetup: ['test/e2e-node/global-setup.ts'],
    fileParallelism: false,
    testTimeout: 180_000,
    // Building the binaries from a cold cache happens in globalSetup, before any hook.
    hookTimeout: 300_000,
    teardownTimeout: 120_000,
  },
});
