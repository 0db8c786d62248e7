// The end-to-end harness: one import for test files.
export * from './audit.js';
export * from './binaries.js';
export * from './cluster.js';
export * from './controlplane.js';
export * from './remote.js';
export * from './webhook.js';
export { makeTempDir, removeTempDir, startProcess, type ManagedProcess, type ManagedProcessOptions } from './process.js';
