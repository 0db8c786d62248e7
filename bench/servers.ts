// The servers a bench run starts, the same way for every bench script: development certificates in
// a temporary directory, the image's Node flags, the webhook offline on bench/policy.yaml, and the
// null webhook.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer, type ServerProcess } from './load.js';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** A TCP port on 127.0.0.1 that was free a moment ago (the bench and the test harnesses use it). */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolvePort(address.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * The Node flags of the image: what its CMD passes to node before dist/main.js (the distroless
 * entrypoint is node itself), so that the benchmark measures the webhook as it is deployed.
 */
export function imageNodeFlags(dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')): string[] {
  const cmd = /^CMD (\[.*\])\s*$/m.exec(dockerfile)?.[1];
  const args: unknown = cmd === undefined ? undefined : JSON.parse(cmd);
  const main = Array.isArray(args) ? args.indexOf('dist/main.js') : -1;
  if (!Array.isArray(args) || main === -1) throw new Error('Dockerfile: no CMD ["...", "dist/main.js"] to take the Node flags from');
  return args.slice(0, main).map(String);
}

export interface BenchCertificates {
  readonly dir: string;
  readonly ca: Buffer;
  /** --tls-cert and --tls-key, for either server */
  readonly args: readonly string[];
  readonly remove: () => void;
}

/** Development certificates for 127.0.0.1 in a new temporary directory (certs/generate.sh, openssl). */
export function benchCertificates(): BenchCertificates {
  const dir = mkdtempSync(join(os.tmpdir(), 'sandbox-webhook-bench-'));
  const certs = join(dir, 'certs');
  execFileSync('sh', [join(ROOT, 'certs', 'generate.sh'), '--out', certs], { stdio: 'inherit' });
  return {
    dir,
    ca: readFileSync(join(certs, 'ca.crt')),
    args: ['--tls-cert', join(certs, 'tls.crt'), '--tls-key', join(certs, 'tls.key')],
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** A build of the webhook (its dist/main.js) serving bench/policy.yaml offline, with no log line per review. */
export function startWebhook(name: string, mainJs: string, port: number, certificates: BenchCertificates, nodeFlags: readonly string[]): ServerProcess {
  return startServer(name, port, [
    ...nodeFlags,
    mainJs,
    '--port', String(port),
    '--host', '127.0.0.1',
    '--policy', join(ROOT, 'bench', 'policy.yaml'),
    ...certificates.args,
    '--log-level', 'warn',
    '--offline',
    '--shutdown-delay-seconds', '0',
  ]);
}

export function startNullWebhook(port: number, certificates: BenchCertificates, nodeFlags: readonly string[]): ServerProcess {
  return startServer('null webhook', port, [...nodeFlags, join(ROOT, 'bench', 'null-webhook.mjs'), '--port', String(port), '--host', '127.0.0.1', ...certificates.args]);
}
