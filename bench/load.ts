// Load generation for `make bench`: wrk (Debian's, in C, so the generator costs the shared cores as
// little as possible) for maximum rates, autocannon for a fixed rate. Loopback only.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export interface LoadResult {
  name: string;
  rps: number;
  p50_ms: number;
  p99_ms: number;
  errors: number;
  rss_mb: number;
}

export interface WrkOptions {
  url: string;
  headers?: Record<string, string>;
  /** seconds */
  duration?: number;
  connections?: number;
  /** A wrk Lua script (e.g. to vary cookies); its path. */
  script?: string;
}

function toMs(value: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(value.trim());
  if (!m) return NaN;
  const n = Number(m[1]);
  return m[2] === 'us' ? n / 1000 : m[2] === 's' ? n * 1000 : n;
}

/** Runs wrk and reads its report: requests/s, p50, p99, and every non-2xx/3xx answer or socket error. */
export async function runWrk(options: WrkOptions): Promise<Omit<LoadResult, 'name' | 'rss_mb'>> {
  const args = ['-t1', `-c${options.connections ?? 32}`, `-d${options.duration ?? 8}s`, '--latency', '--timeout', '2s'];
  for (const [k, v] of Object.entries(options.headers ?? {})) args.push('-H', `${k}: ${v}`);
  if (options.script) args.push('-s', options.script);
  args.push(options.url);
  const out = await new Promise<string>((resolve, reject) =>
    execFile('wrk', args, { maxBuffer: 1 << 20 }, (err, stdout, stderr) => (err ? reject(new Error(`wrk failed: ${stderr || err.message}`)) : resolve(stdout))),
  );
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
  const p50 = toMs(/^\s+50%\s+(\S+)/m.exec(out)?.[1] ?? '');
  const p99 = toMs(/^\s+99%\s+(\S+)/m.exec(out)?.[1] ?? '');
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const socketErrors = socket ? socket.slice(1).reduce((a, b) => a + Number(b), 0) : 0;
  return { rps: Math.round(rps), p50_ms: round(p50), p99_ms: round(p99), errors: non2xx + socketErrors };
}

/** A fixed request rate with autocannon; its p50/p99. */
export async function runAtRate(options: { url: string; headers: Record<string, string>; rate: number; duration: number; connections: number }): Promise<Omit<LoadResult, 'name' | 'rss_mb'>> {
  const { default: autocannon } = await import('autocannon');
  const result = await autocannon({ url: options.url, headers: options.headers, overallRate: options.rate, duration: options.duration, connections: options.connections });
  return {
    rps: Math.round(result.requests.average),
    p50_ms: round(result.latency.p50),
    p99_ms: round(result.latency.p99),
    errors: result.errors + result.timeouts + result.non2xx,
  };
}

/**
 * CPU ticks (user + system; USER_HZ 100, so one tick is 10 ms) of every process on the machine, with its
 * name (the script a node process runs, else the command), from /proc: who used the shared cores.
 */
export function cpuTicks(): Map<number, { name: string; ticks: number }> {
  const out = new Map<number, { name: string; ticks: number }>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const script = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').find((a) => a.endsWith('.js'));
      out.set(Number(entry), { name: script ? path.basename(script) : name, ticks: Number(fields[11]) + Number(fields[12]) });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** Resident memory of a process, MB (Linux /proc). */
export function rssMb(pid: number | undefined): number {
  if (!pid) return NaN;
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN);
    return Math.round(kb / 1024);
  } catch {
    return NaN;
  }
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}
