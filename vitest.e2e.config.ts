import { defineConfig } from 'vitest/config';

// End-to-end tests share one real control plane (etcd + kube-apiserver) started
// once in globalSetup; files run one after another because they register
// cluster-wide webhook configurations.
export default defineConfig({
  test: {
    include: ['test/e2e/**/*.e2e.test.ts'],
    globalSetup: ['test/e2e/global-setup.ts'],
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 600_000,
  },
});
