// Watches files that Kubernetes mounts from ConfigMaps and Secrets. The kubelet updates such a
// volume by writing a new timestamped directory and renaming a `..data_tmp` symlink over `..data`
// (pkg/volume/util/atomic_writer.go), so a watch on the file's inode goes stale after the first
// update. Instead: watch the parent directory for any event, and poll as a backstop (inotify is not
// available everywhere, and a subPath mount gets no events); on either, compare the files' contents
// to what was last seen.

import { createHash } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';

export interface FileWatch {
  close(): void;
  /** check now (also used by tests) */
  check(): Promise<void>;
}

/** Directory events come in bursts (new directory, symlink, rename, removal): read once after them. */
const SETTLE_MS = 50;

/**
 * Calls `onChange(contents)` once for each new set of contents of `paths` (in the order given).
 * `initial` is the contents already in use; without it, the first read sets the baseline and does
 * not call. A failed read or a throwing `onChange` goes to `onError`; the same read error is
 * reported once, not on every poll, until the files can be read again.
 */
export function watchFiles(
  paths: readonly string[],
  intervalMs: number,
  onChange: (contents: Buffer[]) => Promise<void> | void,
  onError: (error: Error) => void,
  initial?: readonly Buffer[],
): FileWatch {
  let lastDigest = initial ? digest(initial) : undefined;
  let lastReadError: string | undefined;
  let running: Promise<void> | undefined;
  let closed = false;

  const run = async (): Promise<void> => {
    let contents: Buffer[];
    try {
      contents = await Promise.all(paths.map((path) => readFile(path)));
    } catch (error) {
      const message = (error as Error).message;
      if (message !== lastReadError) {
        lastReadError = message;
        onError(error as Error);
      }
      return;
    }
    lastReadError = undefined;
    const current = digest(contents);
    if (lastDigest === undefined) {
      lastDigest = current;
      return;
    }
    if (current === lastDigest || closed) return;
    // Recorded before onChange runs: content that onChange rejects is not offered again on every
    // poll, only when it changes (a rotation that writes files one by one changes them again).
    lastDigest = current;
    try {
      await onChange(contents);
    } catch (error) {
      onError(error as Error);
    }
  };

  let queued: Promise<void> | undefined;
  const check = (): Promise<void> => {
    if (closed) return Promise.resolve();
    if (!running) {
      running = run().finally(() => {
        running = undefined;
      });
      return running;
    }
    // A read under way may predate the change that prompted this call: queue one more read after
    // it (one for all callers meanwhile), and let the caller wait for that one.
    queued ??= running.then(() => {
      queued = undefined;
      return check();
    });
    return queued;
  };

  let settle: NodeJS.Timeout | undefined;
  const watchers: FSWatcher[] = [];
  for (const dir of new Set(paths.map((path) => dirname(path)))) {
    try {
      const watcher = watch(dir, { persistent: false }, () => {
        clearTimeout(settle);
        settle = setTimeout(() => void check(), SETTLE_MS);
      });
      // Polling below still notices changes.
      watcher.on('error', () => watcher.close());
      watchers.push(watcher);
    } catch {
      // Polling below still notices changes.
    }
  }
  const timer = setInterval(() => void check(), intervalMs);
  timer.unref();
  if (!initial) void check();

  return {
    check,
    close() {
      closed = true;
      clearInterval(timer);
      clearTimeout(settle);
      for (const watcher of watchers) watcher.close();
    },
  };
}

function digest(contents: readonly Buffer[]): string {
  const hash = createHash('sha256');
  for (const content of contents) hash.update(createHash('sha256').update(content).digest());
  return hash.digest('hex');
}
