import { defineConfig } from 'vitest/config';

// Operations tests: the built webhook (node dist/main.js) as real processes, real TLS sockets,
// continuous load. Run `npm run build` first (the global setup refuses a stale build). Files run one
// after another so that the load of one does not skew another on a small machine.
export default defineConfig({
  test: {
    include: ['test/ops/**/*.ops.test.ts'],
    globalSetup: ['test/ops/global-setup.ts'],
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
