#!/usr/bin/env node
// Wires the webhook: options -> policy -> certificate -> cluster -> HTTPS server and metrics
// server, then keeps the policy and certificate fresh and shuts down gracefully.

import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { Server as HttpsServer } from 'node:https';
import { resolve } from 'node:path';
import { pino, type Logger } from 'pino';
import { offlineFacts } from './admission/facts.js';
import { startServerAudit, type ServerAudit } from './audit/index.js';
import { connectCluster, loadKubeConfig } from './cluster/index.js';
import { HttpKubeApi } from './cluster/kube-api.js';
import { startRegistration, type Registration } from './cluster/registration.js';
import { watchFiles } from './config/file-watch.js';
import { packageRoot, parseOptions, usage, type Options } from './config/options.js';
import { loadPolicyFile, parsePolicyText } from './config/policy-file.js';
import { registrationOptions } from './config/registration-options.js';
import type { Policy } from './policy/policy.js';
import { buildApp } from './server/app.js';
import { startMetricsServer, type MetricsServer } from './server/metrics-server.js';
import { checkCertificate, loadCertificate, secureContextOptions, type ServingCertificate } from './server/tls.js';
import { Metrics } from './telemetry/metrics.js';
import type { Readiness } from './telemetry/readiness.js';

function version(): string {
  const pkg = JSON.parse(readFileSync(resolve(packageRoot(), 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

async function main(): Promise<number> {
  const parsed = parseOptions(process.argv.slice(2), process.env);
  if (parsed.ok === 'help') {
    process.stdout.write(usage());
    return 0;
  }
  if (parsed.ok === 'version') {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  if (!parsed.ok) {
    process.stderr.write(`sandbox-webhook: invalid options:\n${parsed.errors.map((e) => `  ${e}`).join('\n')}\n\n${usage()}`);
    return 2;
  }
  const options = parsed.options;
  return run(options, logger(options));
}

/**
 * Every decision is logged at info, so lines are written in batches, asynchronously: pino's
 * destination (sonic-boom) keeps lines until LOG_BATCH_BYTES are buffered or LOG_FLUSH_MS have
 * passed, then writes them in one write(2) from libuv's thread pool, never blocking the event loop
 * on stdout. Written one line at a time (as before), each line cost a write(2), a hand-off to the
 * thread pool and back (futex and eventfd) and a wake-up of the event loop: strace of 1,000 reviews
 * on one connection counted 2,776 writes, 1,885 reads and 4,627 futex calls, against 1,007, 1,007
 * and 409 for the null webhook. Past LOG_BUFFER_MAX_BYTES (stdout blocked) lines are dropped, not
 * held. What is buffered is flushed before the process exits.
 */
const LOG_BATCH_BYTES = 4096;
const LOG_FLUSH_MS = 250;
const LOG_BUFFER_MAX_BYTES = 16 * 1024 * 1024;
const logDestination = pino.destination({ dest: 1, sync: false, minLength: LOG_BATCH_BYTES, periodicFlush: LOG_FLUSH_MS, maxLength: LOG_BUFFER_MAX_BYTES });

function logger(options: Options): Logger {
  return pino({ level: options.logLevel, base: { service: 'sandbox-webhook' } }, logDestination);
}

function flushLogs(): void {
  try {
    logDestination.flushSync();
  } catch {
    // nothing buffered, or stdout is gone: nothing to save
  }
}

async function run(options: Options, logger: Logger): Promise<number> {
  const registering = registrationOptions(options);
  const metrics = new Metrics({ processMetrics: true, version: version() });

  // The bytes the reload watch compares against, read before the policy is loaded: a change in
  // between then shows up as a change (at worst one needless reload), never as no change.
  const policyBaseline = await readFile(options.policyFile).catch(() => undefined);
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
  // The hash of the bytes read just before: if the file changed in between, the watch below sees a
  // change and reloads, which sets the hash of what is then in force.
  metrics.policyLoaded(policy.rules.length, policyBaseline ?? '');

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
    draining: () => shuttingDown,
    tls: certificate,
    logger,
    requestTimeoutMs: options.requestTimeoutMs,
    headersTimeoutMs: options.headersTimeoutMs,
    readTimeoutMs: options.readTimeoutMs,
    maxConnections: options.maxConnections,
    maxBufferedBodyBytes: options.maxBufferedBodyMiB * 1024 * 1024,
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
      metrics.policyLoaded(policy.rules.length, content ?? '');
      logger.info({ policyFile: options.policyFile, rules: policy.rules.length, mode: policy.mode }, 'policy reloaded');
    },
    (error) => {
      metrics.policyReloads.inc({ result: 'failure' });
      logger.error({ err: error, policyFile: options.policyFile }, 'policy reload failed; the previous policy stays in force');
    },
    policyBaseline ? [policyBaseline] : undefined,
  );

  const certificateWatch = watchFiles(
    [options.tlsCertFile, options.tlsKeyFile],
    options.reloadIntervalMs,
    ([cert, key]) => {
      let next: ServingCertificate;
      try {
        next = checkCertificate(key as Buffer, cert as Buffer);
      } catch (error) {
        // A rotation that writes key and certificate one after the other (not a kubelet volume
        // swap) can be read half done: the mismatch resolves on the next change, and the current
        // certificate keeps serving meanwhile.
        metrics.certificateReloads.inc({ result: 'failure' });
        logger.warn({ err: error, certFile: options.tlsCertFile }, 'serving certificate not reloaded; keeping the current one');
        return;
      }
      // Only new connections get the new context; connections already open keep theirs, so no
      // request in flight fails.
      (app.server as HttpsServer).setSecureContext(secureContextOptions(next));
      certificate = next;
      metrics.certificateExpiry.set(next.notAfter.getTime() / 1000);
      metrics.certificateReloads.inc({ result: 'success' });
      logger.info({ notAfter: next.notAfter.toISOString(), fingerprint256: next.fingerprint256 }, 'serving certificate reloaded');
    },
    (error) => {
      metrics.certificateReloads.inc({ result: 'failure' });
      logger.warn({ err: error, certFile: options.tlsCertFile }, 'serving certificate not reloaded; keeping the current one');
    },
    [certificate.cert, certificate.key],
  );

  let metricsServer: MetricsServer | undefined;
  // The running-pod audit (opt-in): scans in the replica holding its Lease (docs/audit.md).
  let audit: ServerAudit | undefined;
  if (options.auditIntervalSeconds > 0 && cluster) {
    audit = await startServerAudit({
      kubeconfig: options.kubeconfig,
      intervalSeconds: options.auditIntervalSeconds,
      policy: () => policy,
      cluster: cluster.facts,
      ready: () => cluster.readiness().ready,
      registry: metrics.registry,
      logger,
    });
  } else if (options.auditIntervalSeconds > 0) {
    logger.warn('--audit-interval-seconds is set but there is no cluster: the audit is off');
  }

  try {
    await app.listen({ port: options.port, host: options.host });
    if (options.metricsPort !== 0) metricsServer = await startMetricsServer(metrics.registry, options.metricsPort, options.host);
  } catch (error) {
    process.stderr.write(`sandbox-webhook: cannot listen on ${options.host}: ${(error as Error).message}\n`);
    policyWatch.close();
    certificateWatch.close();
    await app.close();
    await audit?.stop();
    await cluster?.stop();
    return 1;
  }
  // Self-registration (chart default): the webhook configuration appears once this replica is ready.
  let registration: Registration | undefined;
  if (registering) {
    const loadedConfig = await loadKubeConfig({ kubeconfig: options.kubeconfig, offline: options.offline });
    if (!loadedConfig) logger.error('self-registration needs cluster access; running offline, not registering');
    else registration = startRegistration(new HttpKubeApi(loadedConfig.kubeConfig), registering, () => readiness().ready, logger);
  }
  logger.info(
    {
      port: options.port,
      metricsPort: metricsServer?.port ?? 'off',
      maxConnections: options.maxConnections,
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
      registration?.close();
      const startedAt = performance.now();
      const elapsedMs = (): number => Math.round(performance.now() - startedAt);
      // The pod is being deleted: endpoints and kube-proxy stop sending here within a few seconds,
      // and until then reviews keep arriving and must be answered. So: report unready, keep
      // serving (each answer closes its connection), and only after the delay stop listening.
      const delayMs = options.shutdownDelaySeconds * 1000;
      logger.info({ signal, delayMs }, 'shutting down: unready, still serving until the delay ends');
      setTimeout(() => {
        logger.info({ elapsedMs: elapsedMs() }, 'shutting down: stopped listening; finishing requests in flight');
        policyWatch.close();
        certificateWatch.close();
        // Every request in flight ends within its deadlines (its body within the read timeout, its
        // decision within the review budget, both counted from its headers); past them plus a
        // margin, something is stuck: close what is left and exit rather than be killed at the end
        // of the grace period.
        const drainLimitMs = Math.max(options.readTimeoutMs, options.requestTimeoutMs) + 2000;
        const drainTimer = setTimeout(() => {
          logger.error({ elapsedMs: elapsedMs(), drainLimitMs }, 'shutting down: requests still open after the drain limit; closing them');
          (app.server as HttpsServer).closeAllConnections();
          resolveExit(1);
        }, drainLimitMs);
        drainTimer.unref();
        void app
          .close()
          .then(() => metricsServer?.close())
          .then(() => audit?.stop())
          .then(() => cluster?.stop())
          .then(() => {
            clearTimeout(drainTimer);
            logger.info({ elapsedMs: elapsedMs() }, 'shutdown complete');
            resolveExit(0);
          })
          .catch((error: unknown) => {
            logger.error({ err: error }, 'shutdown failed');
            resolveExit(1);
          });
      }, delayMs);
    };
    process.once('SIGTERM', shutdown);
    process.once('SIGINT', shutdown);
  });
}

main().then(
  (code) => {
    process.exitCode = code;
    flushLogs();
    // Timers of client libraries must not keep a finished process alive.
    setTimeout(() => process.exit(code), 200).unref();
  },
  (error: unknown) => {
    flushLogs();
    process.stderr.write(`sandbox-webhook: fatal: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  },
);
