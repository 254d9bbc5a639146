// Starting redis-server with the shipped redis/redis.conf for the demo and the tests. The config keeps an
// append-only file, so every server needs a data directory of its own: tests get a temp dir that goes when
// the server stops (tests run in parallel and leave nothing behind); the demo keeps .run/redis.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { REDIS_CLI_BIN, REDIS_SERVER_BIN } from './binaries.js';
import { REPO_ROOT, startOnFreePort, startProcess, waitForPort, waitForReport, type ManagedProcess } from './processes.js';

/** The shipped configuration every Redis of the demo and the tests runs with. */
export const REDIS_CONF = path.join(REPO_ROOT, 'redis/redis.conf');

/**
 * The log level of every Redis and sentinel the demo and the tests start: notice, for the lines that say one
 * is ready ("Server initialized", "Ready to accept connections", "Sentinel ID is"), which Redis 8 and Valkey
 * log as notices (Redis 7 logs them as warnings, which redis.conf's level shows).
 */
export const REDIS_LOGLEVEL = 'notice';

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
  const args = [conf, '--port', String(options.port), '--dir', options.dir, '--loglevel', REDIS_LOGLEVEL, ...(options.args ?? [])];
  return startProcess(options.name ?? 'redis', REDIS_SERVER_BIN, args, { echo: options.echo });
}

/**
 * startRedisServer, resolved once it accepts connections: its own server, not another process already on
 * the port. "Server initialized" (shown at REDIS_LOGLEVEL) comes after Redis bound its port, which it exits
 * on failing to do; rejects then with its output ("Address already in use", which startOnFreePort recognises).
 */
export async function startRedisListening(options: RedisServerOptions): Promise<ManagedProcess> {
  return listening(startRedisServer(options), options.port);
}

/**
 * Resolves with `server` (a redis-server just started on `port`, logging at REDIS_LOGLEVEL) once it listens
 * there; stops it and rejects with its output if it exits first, e.g.
 * "Address already in use", which startOnFreePort recognises.
 */
export async function redisListening<T extends ManagedProcess>(server: T, port: number): Promise<T> {
  return listening(server, port);
}

async function listening<T extends ManagedProcess>(server: T, port: number): Promise<T> {
  try {
    await waitForReport(server, (line) => (/Server initialized|Ready to accept connections/.test(line) ? true : undefined));
    await waitForPort(port);
  } catch (err) {
    await server.stop();
    throw err;
  }
  return server;
}

/** startTempRedis on a free port, listening; started again on another port if that one was taken (startOnFreePort). */
export async function startFreeTempRedis(options: Omit<RedisServerOptions, 'port' | 'dir'> = {}): Promise<{ port: number; server: ManagedProcess & { readonly dir: string } }> {
  const { port, started } = await startOnFreePort((port) => listening(startTempRedis(port, options), port));
  return { port, server: started };
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

/** How redis-cli logs in: a password alone (requirepass), or an ACL user, and over TLS trusting `caFile`. */
export interface RedisCliAuth {
  readonly user?: string;
  readonly password?: string;
  readonly caFile?: string;
}

/** One redis-cli command against 127.0.0.1:`port`; resolves with what it printed. */
export async function redisCli(port: number, args: string[], auth?: string | RedisCliAuth): Promise<string> {
  const { user, password, caFile } = typeof auth === 'string' ? { password: auth } : (auth ?? {});
  const login = [...(user ? ['--user', user] : []), ...(password ? ['--no-auth-warning', '--pass', password] : [])];
  const tls = caFile ? ['--tls', '--cacert', caFile] : [];
  const { stdout } = await promisify(execFile)(REDIS_CLI_BIN, ['-h', '127.0.0.1', '-p', String(port), ...tls, ...login, ...args], { timeout: 10_000 });
  return stdout;
}

/** A certificate and key (for 127.0.0.1) and the CA that signed them, for Redis nodes and sentinels on TLS. */
export interface RedisTlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile: string;
}

/**
 * The settings of a node or sentinel reachable over TLS only, on `port`: no plain port, and TLS too for
 * what it connects to itself (its primary, the other sentinels, the cluster bus). Clients need no certificate.
 */
export function tlsOnlyArgs(port: number, tls: RedisTlsFiles): string[] {
  return [
    '--port', '0', '--tls-port', String(port), '--tls-replication', 'yes',
    '--tls-cert-file', tls.certFile, '--tls-key-file', tls.keyFile, '--tls-ca-cert-file', tls.caFile, '--tls-auth-clients', 'no',
  ];
}

/**
 * ACL users of test and demo data nodes, instead of requirepass: `admin` (every right) is how replicas
 * (masteruser), sentinels (auth-user) and the helpers' redis-cli log in; `idgate` reaches only the keys and
 * channels under idgate: (IDGATE_REDIS_PREFIX), with the rights redis/cluster-example.conf gives it.
 */
export interface RedisAcl {
  readonly admin: { readonly user: string; readonly password: string };
  readonly idgate: { readonly user: string; readonly password: string };
}

/** An ACL file for `acl` (the default user off), to pass as --aclfile. */
export function aclFileText(acl: RedisAcl): string {
  return [
    'user default off',
    `user ${acl.admin.user} on >${acl.admin.password} ~* &* +@all`,
    `user ${acl.idgate.user} on >${acl.idgate.password} ~idgate:* &idgate:* +@all -@dangerous +info +cluster|slots +cluster|shards +cluster|info`,
    '',
  ].join('\n');
}
