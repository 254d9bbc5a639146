// Starting redis-server with the shipped redis/redis.conf for the demo and the tests. The config keeps an
// append-only file, so every server needs a data directory of its own: tests get a temp dir that goes when
// the server stops (tests run in parallel and leave nothing behind); the demo keeps .run/redis.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT, startProcess, type ManagedProcess } from './processes.js';

/** The shipped configuration every Redis of the demo and the tests runs with. */
export const REDIS_CONF = path.join(REPO_ROOT, 'redis/redis.conf');

export interface RedisServerOptions {
  port: number;
  /** Where the AOF lives; created when missing. Reuse it across restarts to keep the data. */
  dir: string;
  /** Process name in logs (default "redis"). */
  name?: string;
  /** More redis-server arguments, e.g. ['--replicaof', '127.0.0.1', '6380']. */
  args?: string[];
  /**
   * Run a copy of redis/redis.conf made in `dir` at each start, not the shipped file itself: a Sentinel
   * rewrites the config of the nodes it reconfigures (CONFIG REWRITE), which must not touch the repository.
   */
  privateConf?: boolean;
  echo?: boolean;
}

/** redis-server with redis/redis.conf on `port`, keeping its data in `dir`. Wait for the port before use. */
export function startRedisServer(options: RedisServerOptions): ManagedProcess {
  fs.mkdirSync(options.dir, { recursive: true });
  let conf = REDIS_CONF;
  if (options.privateConf) {
    conf = path.join(options.dir, 'redis.conf');
    fs.copyFileSync(REDIS_CONF, conf);
  }
  const args = [conf, '--port', String(options.port), '--dir', options.dir, ...(options.args ?? [])];
  return startProcess(options.name ?? 'redis', 'redis-server', args, { echo: options.echo });
}

/** A new empty temp dir for a Redis's data, removed by removeRedisDir or, at the latest, when this process exits. */
export function tempRedisDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'idgate-redis-'));
  tempDirs.add(dir);
  return dir;
}

export function removeRedisDir(dir: string): void {
  tempDirs.delete(dir);
  fs.rmSync(dir, { recursive: true, force: true });
}

const tempDirs = new Set<string>();
process.once('exit', () => {
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});

/**
 * A throwaway Redis for one test file: a temp data dir that is removed when the server stops. Restart it
 * with startRedisServer({ port, dir }) while keeping `dir` if the data must survive.
 */
export function startTempRedis(port: number, options: Omit<RedisServerOptions, 'port' | 'dir'> = {}): ManagedProcess & { readonly dir: string } {
  const dir = tempRedisDir();
  const server = startRedisServer({ ...options, port, dir });
  return {
    ...server,
    dir,
    async stop(graceMs?: number) {
      await server.stop(graceMs);
      removeRedisDir(dir);
    },
  };
}

/** One redis-cli command against 127.0.0.1:`port`; resolves with what it printed. */
export async function redisCli(port: number, args: string[], password?: string): Promise<string> {
  const auth = password ? ['--no-auth-warning', '-a', password] : [];
  const { stdout } = await promisify(execFile)('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...auth, ...args], { timeout: 10_000 });
  return stdout;
}
