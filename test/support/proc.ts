// What Linux's /proc says about a process and the machine (proc(5)): CPU time, resident memory and
// the hypervisor's steal time. The bench and the operations tests read their figures from here.

import { readFileSync } from 'node:fs';

// USER_HZ: 100 on every Linux architecture Node supports (sysconf(_SC_CLK_TCK)).
const CLOCK_TICKS_PER_SECOND = 100;

/** CPU time (user + system) a process has used so far, in milliseconds, from /proc/PID/stat. */
export function cpuTimeMs(pid: number): number {
  return parseCpuTimeMs(readFileSync(`/proc/${pid}/stat`, 'utf8'));
}

/** utime + stime of a /proc/PID/stat line, in milliseconds. */
export function parseCpuTimeMs(stat: string): number {
  // Fields after the command name, which is in parentheses and may contain spaces and parentheses.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15 of proc(5))
  if (!Number.isFinite(ticks)) throw new Error(`no utime and stime in ${JSON.stringify(stat.slice(0, 80))}`);
  return (ticks * 1000) / CLOCK_TICKS_PER_SECOND;
}

/** A `VmXXX:  N kB` line of /proc/PID/status, in MB (10^6 bytes). */
function statusMB(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status);
  if (!match) throw new Error(`no ${field} in /proc/${pid}/status`);
  return (Number(match[1]) * 1024) / 1e6;
}

/** The high-water mark of resident memory (VmHWM) in MB: the peak over the process's life. */
export function peakRssMB(pid: number): number {
  return statusMB(pid, 'VmHWM');
}

/** Resident memory now (VmRSS), in MB. */
export function rssMB(pid: number): number {
  return statusMB(pid, 'VmRSS');
}

/**
 * CPU time the hypervisor has taken from this virtual machine so far (steal, summed over its CPUs),
 * in seconds, from the first line of /proc/stat; undefined where there is none to read. While the
 * host runs something else on a CPU, whatever was running there waits.
 */
export function stolenCpuSeconds(): number | undefined {
  try {
    return parseStolenCpuSeconds(readFileSync('/proc/stat', 'utf8'));
  } catch {
    return undefined;
  }
}

/** The steal time of /proc/stat's summary line, in seconds; undefined when it has none. */
export function parseStolenCpuSeconds(stat: string): number | undefined {
  // cpu  user nice system idle iowait irq softirq steal guest guest_nice (proc(5)), in USER_HZ ticks
  const fields = /^cpu\s+(.*)$/m.exec(stat)?.[1]?.trim().split(/\s+/);
  const steal = fields?.[7];
  return steal !== undefined && /^\d+$/.test(steal) ? Number(steal) / CLOCK_TICKS_PER_SECOND : undefined;
}

/** Seconds stolen since `before` (from stolenCpuSeconds), or NaN where steal cannot be read. */
export function stolenSince(before: number | undefined): number {
  const now = stolenCpuSeconds();
  return before === undefined || now === undefined ? Number.NaN : now - before;
}
