// Watches files that Kubernetes mounts from ConfigMaps and Secrets. The kubelet updates such a
// volume by writing a new timestamped directory and swapping the `..data` symlink, so a watch on the
// file's inode goes stale after the first update. Instead: watch the parent directory for any event,
// and poll as a backstop; on either, compare the files' contents to what was last seen.

import { createHash } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';

export interface FileWatch {
  close(): void;
  /** check now (also used by tests) */
  check(): Promise<void>;
}

/**
 * Calls `onChange(contents)` when the contents of any of `paths` differ from the last call (the
 * first check establishes the baseline and does not call). Read errors are passed to `onError`.
 */
export function watchFiles(
  paths: readonly string[],
  intervalMs: number,
  onChange: (contents: Buffer[]) => Promise<void> | void,
  onError: (error: Error) => void,
  initial?: readonly Buffer[],
): FileWatch {
  let lastDigest = initial ? digest(initial) : undefined;
  let running: Promise<void> | undefined;
  let again = false;
  let closed = false;

  const run = async (): Promise<void> => {
    try {
      const contents = await Promise.all(paths.map((path) => readFile(path)));
      const current = digest(contents);
      if (lastDigest === undefined) {
        lastDigest = current;
        return;
      }
      if (current === lastDigest) return;
      lastDigest = current;
      await onChange(contents);
    } catch (error) {
      onError(error as Error);
    }
  };

  const check = async (): Promise<void> => {
    if (closed) return;
    if (running) {
      again = true;
      return running;
    }
    running = run().finally(() => {
      running = undefined;
      if (again && !closed) {
        again = false;
        void check();
      }
    });
    return running;
  };

  let debounce: NodeJS.Timeout | undefined;
  const watchers: FSWatcher[] = [];
  for (const dir of new Set(paths.map((path) => dirname(path)))) {
    try {
      const watcher = watch(dir, { persistent: false }, () => {
        clearTimeout(debounce);
        debounce = setTimeout(() => void check(), 50);
      });
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
      clearTimeout(debounce);
      for (const watcher of watchers) watcher.close();
    },
  };
}

function digest(contents: readonly Buffer[]): string {
  const hash = createHash('sha256');
  for (const content of contents) hash.update(createHash('sha256').update(content).digest());
  return hash.digest('hex');
}
