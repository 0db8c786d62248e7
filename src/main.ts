#!/usr/bin/env node
// Wires the webhook: options -> policy -> certificate -> cluster -> HTTPS server, then keeps the
// policy and certificate fresh and shuts down gracefully.

import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Server as TlsServer } from 'node:tls';
import { pino, type Logger } from 'pino';
import { offlineFacts } from './admission/facts.js';
import { connectCluster } from './cluster/index.js';
import { watchFiles } from './config/file-watch.js';
import { packageRoot, parseOptions, USAGE, type Options } from './config/options.js';
import { loadPolicyFile, parsePolicyText } from './config/policy-file.js';
import type { Policy } from './policy/policy.js';
import { buildApp, type Readiness } from './server/app.js';
import { Metrics } from './server/metrics.js';
import { checkCertificate, loadCertificate, type ServingCertificate } from './server/tls.js';

function version(): string {
  const pkg = JSON.parse(readFileSync(resolve(packageRoot(), 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

async function main(): Promise<number> {
  const parsed = parseOptions(process.argv.slice(2), process.env);
  if (parsed.ok === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (parsed.ok === 'version') {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  if (!parsed.ok) {
    process.stderr.write(`sandbox-webhook: invalid options:\n${parsed.errors.map((e) => `  ${e}`).join('\n')}\n\n${USAGE}`);
    return 2;
  }
  const options = parsed.options;
  const logger = pino({ level: options.logLevel, base: { service: 'sandbox-webhook' } });
  return run(options, logger);
}

async function run(options: Options, logger: Logger): Promise<number> {
  const metrics = new Metrics({ processMetrics: true });

  const loaded = await loadPolicyFile(options.policyFile);
  for (const warning of loaded.warnings) logger.warn({ policyFile: options.policyFile }, `policy: ${warning}`);
  if (!loaded.ok) {
    process.stderr.write(
      `sandbox-webhook: invalid policy ${options.policyFile} (${loaded.errors.length} error${loaded.errors.length === 1 ? '' : 's'}):\n` +
        loaded.errors.map((e) => `  ${e}`).join('\n') +
        '\n',
    );
    return 1;
  }
  let policy: Policy = loaded.policy;
  metrics.policyRules.set(policy.rules.length);
  metrics.policyLoadedTimestamp.set(Date.now() / 1000);

  let certificate: ServingCertificate;
  try {
    certificate = await loadCertificate(options.tlsCertFile, options.tlsKeyFile);
  } catch (error) {
    process.stderr.write(`sandbox-webhook: ${(error as Error).message}\n`);
    return 1;
  }
  metrics.certificateExpiry.set(certificate.notAfter.getTime() / 1000);

  let cluster;
  try {
    cluster = await connectCluster({ kubeconfig: options.kubeconfig, offline: options.offline }, logger, metrics);
  } catch (error) {
    process.stderr.write(`sandbox-webhook: cannot use the cluster configuration: ${(error as Error).message}\n`);
    return 1;
  }
  if (!cluster) logger.warn('no cluster configuration: running offline; namespace labels are unknown and decided fail-safe');

  let shuttingDown = false;
  const readiness = (): Readiness => {
    const reasons: string[] = [];
    if (shuttingDown) reasons.push('shutting down');
    if (cluster) reasons.push(...cluster.readiness().reasons);
    return { ready: reasons.length === 0, reasons };
  };

  const app = await buildApp({
    policy: () => policy,
    cluster: cluster?.facts ?? offlineFacts,
    metrics,
    readiness,
    tls: { key: certificate.key, cert: certificate.cert },
    logger,
    requestTimeoutMs: options.requestTimeoutMs,
  });
  app.addHook('onRequest', async (_request, reply) => {
    // While draining, ask clients to open new connections (to another replica) after this answer.
    if (shuttingDown) void reply.header('connection', 'close');
  });

  const policyWatch = watchFiles(
    [options.policyFile],
    options.reloadIntervalMs,
    ([content]) => {
      const result = parsePolicyText(content?.toString('utf8') ?? '');
      for (const warning of result.warnings) logger.warn({ policyFile: options.policyFile }, `policy: ${warning}`);
      if (!result.ok) {
        metrics.policyReloads.inc({ result: 'failure' });
        logger.error({ policyFile: options.policyFile, errors: result.errors }, 'policy reload rejected; the previous policy stays in force');
        return;
      }
      policy = result.policy;
      metrics.policyReloads.inc({ result: 'success' });
      metrics.policyRules.set(policy.rules.length);
      metrics.policyLoadedTimestamp.set(Date.now() / 1000);
      logger.info({ policyFile: options.policyFile, rules: policy.rules.length, mode: policy.mode }, 'policy reloaded');
    },
    (error) => {
      metrics.policyReloads.inc({ result: 'failure' });
      logger.error({ err: error, policyFile: options.policyFile }, 'policy reload failed; the previous policy stays in force');
    },
  );

  const certificateWatch = watchFiles(
    [options.tlsCertFile, options.tlsKeyFile],
    options.reloadIntervalMs,
    ([cert, key]) => {
      try {
        const next = checkCertificate(key as Buffer, cert as Buffer);
        (app.server as unknown as TlsServer).setSecureContext({ key: next.key, cert: next.cert, minVersion: 'TLSv1.2' });
        certificate = next;
        metrics.certificateExpiry.set(next.notAfter.getTime() / 1000);
        metrics.certificateReloads.inc({ result: 'success' });
        logger.info({ notAfter: next.notAfter.toISOString(), fingerprint256: next.fingerprint256 }, 'serving certificate reloaded');
      } catch (error) {
        // A rotation writes key and certificate one after the other: a mismatch is retried on the
        // next change or poll, and the current certificate keeps serving meanwhile.
        metrics.certificateReloads.inc({ result: 'failure' });
        logger.warn({ err: error }, 'serving certificate not reloaded; keeping the current one');
        throw error;
      }
    },
    () => undefined,
  );

  try {
    await app.listen({ port: options.port, host: options.host });
  } catch (error) {
    process.stderr.write(`sandbox-webhook: cannot listen on ${options.host}:${options.port}: ${(error as Error).message}\n`);
    policyWatch.close();
    certificateWatch.close();
    await cluster?.stop();
    return 1;
  }
  logger.info(
    {
      port: options.port,
      policyFile: options.policyFile,
      rules: policy.rules.length,
      mode: policy.mode,
      cluster: cluster ? 'connected' : 'offline',
      certificateNotAfter: certificate.notAfter.toISOString(),
      version: version(),
    },
    'sandbox-webhook listening',
  );

  return new Promise<number>((resolveExit) => {
    const shutdown = (signal: NodeJS.Signals): void => {
      if (shuttingDown) return;
      shuttingDown = true;
      logger.info({ signal, delayMs: options.shutdownDelayMs }, 'shutting down: unready, draining');
      // Stay up while endpoints and load balancers stop sending here, then stop accepting and let
      // requests in flight finish; a hard deadline keeps us inside the pod's grace period.
      const hardStop = setTimeout(() => {
        logger.error('shutdown deadline passed; exiting');
        resolveExit(1);
      }, options.shutdownDelayMs + 15_000);
      hardStop.unref();
      setTimeout(() => {
        policyWatch.close();
        certificateWatch.close();
        void app
          .close()
          .then(() => cluster?.stop())
          .then(() => {
            logger.info('shutdown complete');
            resolveExit(0);
          })
          .catch((error: unknown) => {
            logger.error({ err: error }, 'shutdown failed');
            resolveExit(1);
          });
      }, options.shutdownDelayMs);
    };
    process.once('SIGTERM', shutdown);
    process.once('SIGINT', shutdown);
  });
}

main().then(
  (code) => {
    process.exitCode = code;
    // Timers of client libraries must not keep a finished process alive.
    setTimeout(() => process.exit(code), 200).unref();
  },
  (error: unknown) => {
    process.stderr.write(`sandbox-webhook: fatal: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  },
);
