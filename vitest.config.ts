import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Rebuilds dist/ when src/ is newer (process tests run bin/npurun, i.e. dist/).
    globalSetup: ['test/global-setup.ts'],
    // Cluster tests own network namespaces and real sshd processes: one file at a time
    // keeps a 2-core machine predictable and the namespaces from colliding.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
