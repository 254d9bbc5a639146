// A bounded request loop for the fault tests: N keep-alive clients send the same request back to back
// until told to stop (or a deadline), and every answer is counted by status; transport failures
// (reset, refused, timed out) are counted apart. Failures keep their time, so a test can tell which
// happened while a process was being killed.
import http from 'node:http';

export interface LoadOptions {
  /** Absolute URL of the request. */
  readonly url: string;
  readonly headers?: Record<string, string>;
  /** Clients sending at once, each on its own keep-alive connection. Default 8. */
  readonly concurrency?: number;
  /** Milliseconds one request may take before it counts as `timeout`. Default 5000. */
  readonly requestTimeoutMs?: number;
  /** The loop ends after this many milliseconds at most, whatever happens. Default 60000. */
  readonly maxMs?: number;
}

export interface LoadCounts {
  total: number;
  /** Answers by HTTP status, e.g. { '200': 5231 }; transport failures under 'reset', 'timeout' and the like. */
  byStatus: Record<string, number>;
  /** Every answer that was not a 200: when (ms since the loop started) and what. */
  failures: { atMs: number; what: string }[];
  /** Longest time one request took, in milliseconds. */
  slowestMs: number;
  elapsedMs: number;
}

export interface RunningLoad {
  /** Resolves with the counts once every client has finished its last request. */
  stop(): Promise<LoadCounts>;
  /** Counts so far (live). */
  readonly counts: LoadCounts;
  /** Milliseconds since the loop started. */
  now(): number;
}

export function startLoad(options: LoadOptions): RunningLoad {
  const concurrency = options.concurrency ?? 8;
  const timeoutMs = options.requestTimeoutMs ?? 5000;
  const started = performance.now();
  const now = () => performance.now() - started;
  const deadline = options.maxMs ?? 60_000;
  const counts: LoadCounts = { total: 0, byStatus: {}, failures: [], slowestMs: 0, elapsedMs: 0 };
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  let running = true;
  const count = (what: string, tookMs: number, at: number) => {
    counts.total++;
    counts.byStatus[what] = (counts.byStatus[what] ?? 0) + 1;
    counts.slowestMs = Math.max(counts.slowestMs, tookMs);
    if (what !== '200') counts.failures.push({ atMs: Math.round(at), what });
  };
  const one = () =>
    new Promise<void>((resolve) => {
      const at = now();
      const req = http.get(options.url, { agent, headers: options.headers, timeout: timeoutMs }, (res) => {
        res.resume();
        res.once('end', () => {
          count(String(res.statusCode), now() - at, at);
          resolve();
        });
        res.once('error', () => {
          count('reset', now() - at, at);
          resolve();
        });
      });
      req.once('timeout', () => req.destroy(new Error('timeout')));
      req.once('error', (err: NodeJS.ErrnoException) => {
        count(err.message === 'timeout' ? 'timeout' : (err.code ?? 'error'), now() - at, at);
        resolve();
      });
    });
  const client = async () => {
    while (running && now() < deadline) await one();
  };
  const clients = Promise.all(Array.from({ length: concurrency }, client));
  return {
    counts,
    now,
    async stop() {
      running = false;
      await clients;
      agent.destroy();
      counts.elapsedMs = Math.round(now());
      return counts;
    },
  };
}

/** One line for the test output: "4711 requests in 8.0 s: 200 x4711; slowest 35 ms". */
export function describeCounts(label: string, counts: LoadCounts): string {
  const statuses = Object.entries(counts.byStatus)
    .map(([status, n]) => `${status} x${n}`)
    .join(', ');
  return `${label}: ${counts.total} requests in ${(counts.elapsedMs / 1000).toFixed(1)} s: ${statuses}; slowest ${Math.round(counts.slowestMs)} ms`;
}

/** The sum of every sample of a Prometheus counter (all label sets), from a replica's /metrics. */
export async function counterTotal(baseUrl: string, name: string): Promise<number> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  let total = 0;
  for (const line of text.split('\n')) if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) total += Number(line.slice(line.lastIndexOf(' ') + 1));
  return total;
}
