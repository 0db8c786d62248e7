// The servers a bench run starts, the same way for every bench script: development certificates in
// a temporary directory, the image's Node flags, the webhook offline on bench/policy.yaml at the
// chart's log level, the fastify null webhook and the bare node:https server.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../test/support/net.js';
import { imageNodeFlags } from '../test/support/image-flags.js';
import { startServer, type ServerProcess } from './load.js';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** The Node flags of every server a bench starts: --node-flags="..." as given ("" for none), else the image's. */
export function benchNodeFlags(given: string | undefined): string[] {
  return given === undefined ? imageNodeFlags() : given.split(' ').filter(Boolean);
}

export interface BenchCertificates {
  readonly dir: string;
  readonly ca: Buffer;
  /** --tls-cert and --tls-key, for either server */
  readonly args: readonly string[];
  /** a file in the directory for a server's stdout and stderr */
  readonly logFile: (server: string) => string;
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
    logFile: (server) => join(dir, `${server.replace(/[^a-z0-9]+/gi, '-')}.log`),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** How a build of the webhook is run: its CLI differs between builds (--metrics-port is newer). */
export interface WebhookFlavour {
  /** extra flags: the log level the chart ships (values.yaml `logLevel`), a metrics port if it has one */
  readonly args: readonly string[];
  readonly logLevel: string;
  /** the port of its separate metrics listener, when the build has `--metrics-port` */
  readonly metricsPort: number | undefined;
}

/** The chart's default log level (charts/sandbox-webhook/values.yaml `logLevel:`), what clusters run. */
export function chartLogLevel(values = readFileSync(join(ROOT, 'charts', 'sandbox-webhook', 'values.yaml'), 'utf8')): string {
  const level = /^logLevel:\s*"?([a-z]+)"?\s*$/m.exec(values)?.[1];
  if (!level) throw new Error('charts/sandbox-webhook/values.yaml: no top-level logLevel to take the shipped log level from');
  return level;
}

/**
 * The flags that run `mainJs` as shipped: the chart's log level and, where the build serves metrics
 * on a port of their own (`--metrics-port` in its --help), that listener on a free port, so that
 * several builds run side by side. Older builds serve /metrics on the webhook port, always on.
 */
export async function webhookFlavour(mainJs: string, logLevel = chartLogLevel()): Promise<WebhookFlavour> {
  const help = execFileSync(process.execPath, [mainJs, '--help'], { encoding: 'utf8' });
  const metricsPort = help.includes('--metrics-port') ? await freePort() : undefined;
  return {
    args: ['--log-level', logLevel, ...(metricsPort === undefined ? [] : ['--metrics-port', String(metricsPort)])],
    logLevel,
    metricsPort,
  };
}

/**
 * A build of the webhook (its dist/main.js) serving bench/policy.yaml offline as shipped: one log
 * line per decision at info, to a file as a container's stdout, metrics on.
 */
export function startWebhook(
  name: string,
  mainJs: string,
  port: number,
  certificates: BenchCertificates,
  nodeFlags: readonly string[],
  flavour: WebhookFlavour,
): ServerProcess {
  return startServer(
    name,
    port,
    [
      ...nodeFlags,
      mainJs,
      '--port', String(port),
      '--host', '127.0.0.1',
      '--policy', join(ROOT, 'bench', 'policy.yaml'),
      ...certificates.args,
      '--offline',
      '--shutdown-delay-seconds', '0',
      ...flavour.args,
    ],
    certificates.logFile(name),
  );
}

/** The fastify null webhook (bench/null-webhook.mjs). */
export function startNullWebhook(port: number, certificates: BenchCertificates, nodeFlags: readonly string[]): ServerProcess {
  const name = 'null webhook';
  return startServer(name, port, [...nodeFlags, join(ROOT, 'bench', 'null-webhook.mjs'), '--port', String(port), '--host', '127.0.0.1', ...certificates.args], certificates.logFile(name));
}

/** The bare node:https server (bench/bare-webhook.mjs). */
export function startBareWebhook(port: number, certificates: BenchCertificates, nodeFlags: readonly string[]): ServerProcess {
  const name = 'bare node:https';
  return startServer(name, port, [...nodeFlags, join(ROOT, 'bench', 'bare-webhook.mjs'), '--port', String(port), '--host', '127.0.0.1', ...certificates.args], certificates.logFile(name));
}
