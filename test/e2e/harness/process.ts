// Child processes that never outlive the test run.
//
// Every process starts in its own process group (detached), so stopping it also stops anything it
// spawned, and a Ctrl-C in the terminal reaches our signal handler instead of killing half of the
// control plane behind our back. Three layers make sure nothing is left behind:
//   1. stop(): SIGTERM to the group, SIGKILL after a grace period;
//   2. process 'exit' and SIGINT/SIGTERM/SIGHUP handlers: SIGKILL every group still tracked, remove temp dirs;
//   3. a reaper: one small `sh` per Node.js process, in its own group, reading a pipe from us. When we
//      die in a way no handler sees (SIGKILL, a crashed vitest worker), the pipe closes and the reaper
//      kills whatever groups and removes whatever directories are still listed in its registry file.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const trackedGroups = new Set<number>();
const trackedDirs = new Set<string>();
let reaper: { child: ChildProcess; registryFile: string; dir: string } | undefined;
let handlersInstalled = false;

const REAPER_SCRIPT = `
cat >/dev/null
if [ -f "$1" ]; then
  while read -r kind value; do
    case "$kind" in
      group) kill -KILL "-$value" 2>/dev/null ;;
      dir) rm -rf -- "$value" ;;
    esac
  done <"$1"
fi
rm -rf -- "$2"
`;

function writeRegistry(): void {
  if (!reaper) return;
  const lines = [...[...trackedGroups].map((g) => `group ${g}`), ...[...trackedDirs].map((d) => `dir ${d}`)];
  // Write then rename: the reaper never reads a half-written list.
  const next = `${reaper.registryFile}.next`;
  writeFileSync(next, lines.length > 0 ? `${lines.join('\n')}\n` : '');
  renameSync(next, reaper.registryFile);
}

function ensureReaper(): void {
  if (reaper) return;
  const dir = mkdtempSync(join(tmpdir(), 'sandbox-webhook-reaper-'));
  const registryFile = join(dir, 'registry');
  const child = spawn('sh', ['-c', REAPER_SCRIPT, 'sandbox-webhook-reaper', registryFile, dir], {
    detached: true,
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  // Neither the reaper nor its pipe may keep the event loop alive; the pipe just has to stay open.
  child.unref();
  (child.stdin as Socket | null)?.unref();
  reaper = { child, registryFile, dir };
}

function killAllNow(): void {
  for (const group of trackedGroups) {
    try {
      process.kill(-group, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  trackedGroups.clear();
  for (const dir of trackedDirs) rmSync(dir, { recursive: true, force: true });
  trackedDirs.clear();
  writeRegistry();
}

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', killAllNow);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      process.removeListener(signal, onSignal);
      killAllNow();
      // Re-raise so the default action (or whoever else listens, e.g. vitest) still happens.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}

/** A temporary directory removed on stop of the run, however it ends. */
export function makeTempDir(prefix: string): string {
  installHandlers();
  ensureReaper();
  const dir = mkdtempSync(join(tmpdir(), `sandbox-webhook-${prefix}-`));
  trackedDirs.add(dir);
  writeRegistry();
  return dir;
}

export function removeTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  trackedDirs.delete(dir);
  writeRegistry();
}

export interface ManagedProcessOptions {
  /** Short name used in messages, e.g. "kube-apiserver". */
  name: string;
  command: string;
  args: readonly string[];
  /** stdout and stderr both go to this file (kept for post-mortems while the temp dir lives). */
  logFile: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

export interface ManagedProcess {
  readonly name: string;
  readonly pid: number;
  readonly logFile: string;
  /** Resolves with the exit code (or the signal name) once the process has exited. */
  readonly exited: Promise<number | string>;
  /** True until the process has exited. */
  running(): boolean;
  /** SIGTERM (or `signal`) to the whole group, SIGKILL after `graceMs`; resolves once it has exited. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<number | string>;
}

export function startProcess(options: ManagedProcessOptions): ManagedProcess {
  installHandlers();
  ensureReaper();
  const logFd = openSync(options.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(options.command, options.args, {
      detached: true,
      stdio: ['ignore', logFd, logFd],
      env: options.env ?? process.env,
      cwd: options.cwd,
    });
  } finally {
    closeSync(logFd);
  }
  let spawnError: Error | undefined;
  // Without a listener, a spawn failure (ENOENT, EACCES) would be an uncaught 'error' event.
  child.once('error', (error) => {
    spawnError = error;
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`${options.name}: could not start ${options.command}: ${String(spawnError ?? 'not found or not executable')}`);
  // The group id equals the pid of a detached child.
  trackedGroups.add(pid);
  writeRegistry();

  let isRunning = true;
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => {
      isRunning = false;
      // Kill stragglers the process may have left in its group, then forget the group.
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // group already empty
      }
      trackedGroups.delete(pid);
      writeRegistry();
      resolve(code ?? signal ?? 'unknown');
    });
  });

  return {
    name: options.name,
    pid,
    logFile: options.logFile,
    exited,
    running: () => isRunning,
    async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000) {
      if (!isRunning) return exited;
      try {
        process.kill(-pid, signal);
      } catch {
        // exited meanwhile
      }
      const timer = setTimeout(() => {
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          // exited meanwhile
        }
      }, graceMs);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
