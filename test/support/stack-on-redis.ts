// The whole stack (stack/stack.ts: the IdP, the sample upstream, the compiled idgate, HAProxy) on either
// Redis the fault tests run on: one server as the stack runs it (redis/redis.conf, with its AOF), or a Redis Cluster
// of three primaries keeping an AOF each (redis-topologies.ts). Both give the test the same handles, so
// that one test body runs on each: describe.each(REDIS_TOPOLOGIES).
import { Cluster, Redis } from 'ioredis';
import { startOnFreePort, type ManagedProcess } from '../../stack/processes.js';
import { removeRedisDir, startRedisListening, tempRedisDir } from '../../stack/redis.js';
import { startStack, type Stack, type StackOptions } from '../../stack/stack.js';
import type { RedisClient } from '../../service/src/redis.js';
import { startDelayProxy, type DelayProxy } from './delay-proxy.js';
import { startCluster, type RedisCluster } from './redis-topologies.js';

export const REDIS_TOPOLOGIES = ['one Redis server', 'Redis Cluster'] as const;
export type RedisTopologyName = (typeof REDIS_TOPOLOGIES)[number];

export interface StackOnRedis {
  readonly stack: Stack;
  /** Stops all of Redis as an operator does (SIGTERM: every server writes out its AOF); resolves once it has exited. */
  stopRedis(): Promise<void>;
  /** Starts it again on the same ports and data (a Cluster node keeps its id); resolves once every server listens. */
  startRedis(): Promise<void>;
  /** Resolves once Redis serves every key (the Cluster: state ok, every slot served, on every node). */
  serving(): Promise<void>;
  /** A client of the test's own, for reading and writing keys; disconnect it after. */
  connect(): RedisClient;
  /** With `delayProxies`: every chunk to and from Redis (every node) waits this long from now on. */
  setDelay(ms: number): void;
  stop(): Promise<void>;
}

export interface RedisOptions {
  /** Clients reach Redis only through delay proxies (test/support/delay-proxy.ts), for a slow Redis. */
  readonly delayProxies?: boolean;
}

export async function startStackOnRedis(topology: RedisTopologyName, options: StackOptions = {}, redisOptions: RedisOptions = {}): Promise<StackOnRedis> {
  return topology === 'Redis Cluster' ? onCluster(options, redisOptions) : onOneServer(options, redisOptions);
}

async function onOneServer(options: StackOptions, { delayProxies }: RedisOptions): Promise<StackOnRedis> {
  // The server the stack would start (redis/redis.conf, its AOF in a temp dir), started here so that a
  // delay proxy can stand between it and idgate: on a picked port, and again on another if that was taken.
  const dir = tempRedisDir();
  let redis: ManagedProcess | undefined;
  let proxy: DelayProxy | undefined;
  const stopRedis = async () => {
    await redis?.stop();
    redis = undefined;
  };
  const stopAll = async () => {
    await stopRedis();
    await proxy?.close();
    removeRedisDir(dir);
  };
  let stack: Stack;
  let redisPort: number;
  try {
    ({ port: redisPort, started: redis } = await startOnFreePort((port) => startRedisListening({ port, dir })));
    proxy = delayProxies ? await startDelayProxy(redisPort) : undefined;
    stack = await startStack({
      ...options,
      redis: 'external',
      idgateEnv: { IDGATE_REDIS_URL: `redis://127.0.0.1:${proxy?.port ?? redisPort}`, ...options.idgateEnv },
    });
  } catch (err) {
    await stopAll();
    throw err;
  }
  return {
    stack,
    stopRedis,
    // The same port and data dir: the sessions in its AOF come back.
    startRedis: async () => {
      redis = await startRedisListening({ port: redisPort, dir });
    },
    serving: async () => undefined,
    connect: () => new Redis(redisPort),
    setDelay(ms) {
      proxy!.delayMs = ms;
    },
    async stop() {
      await stack.stop();
      await stopAll();
    },
  };
}

async function onCluster(options: StackOptions, { delayProxies }: RedisOptions): Promise<StackOnRedis> {
  const cluster: RedisCluster = await startCluster({ primaries: 3, persistent: true, delayProxies });
  const stack = await startStack({ ...options, redis: 'external', idgateEnv: { ...cluster.env, ...options.idgateEnv } }).catch(async (err: unknown) => {
    await cluster.stop();
    throw err;
  });
  return {
    stack,
    stopRedis: async () => {
      await Promise.all(cluster.ports.map((p) => cluster.stopNode(p)));
    },
    startRedis: async () => {
      await Promise.all(cluster.ports.map((p) => cluster.startNode(p)));
    },
    serving: () => cluster.waitForOk(),
    connect: () => new Cluster(cluster.ports.map((port) => ({ host: '127.0.0.1', port }))),
    setDelay(ms) {
      for (const p of cluster.proxies) p.delayMs = ms;
    },
    async stop() {
      await stack.stop();
      await cluster.stop();
    },
  };
}
