// The one place that connects to Redis, in whichever topology the settings name: a single server, a
// Sentinel-managed primary (found again after a failover) or a Cluster. Every topology takes the same ACL
// user and password and the same TLS settings. The rest of idgate sees a `RedisClient` and uses only
// commands that work on all three: single-key commands, and multi-key operations (MULTI, Lua) whose keys
// share one hash slot (see the key layout in sessions.ts and session-store.ts).
import type { ConnectionOptions } from 'node:tls';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { Config, HostPort, RedisConnection } from './config.js';
import { CLI_REDIS_CONNECT_TIMEOUT_MS, REDIS_CLUSTER_RETRY_DELAY_MS, REDIS_CONNECT_TIMEOUT_MS, REDIS_RETRY_MAX_MS, REDIS_RETRY_STEP_MS, REDIS_TOPOLOGY_TIMEOUT_MS } from './limits.js';

/** A connection to idgate's Redis: `Redis` for a single server or Sentinel, `Cluster` for a Cluster. */
export type RedisClient = Redis | Cluster;

/**
 * What the connection is for:
 * - `commands` (the default): checks and logins. Fails fast instead of queueing, so that a check answers
 *   503 rather than hangs while Redis is away; reconnects for ever in the background.
 * - `subscriber`: the revocation subscription, which must come back by itself after any outage.
 * - `cli`: one-shot operator commands: connect once, no retries.
 */
export type RedisPurpose = 'commands' | 'subscriber' | 'cli';

type RedisSettings = Pick<Config, 'redis' | 'redisTimeoutMs'>;

export function createRedisClient(config: RedisSettings, purpose: RedisPurpose = 'commands'): RedisClient {
  const { redis } = config;
  const { topology } = redis;
  const node = nodeOptions(config, purpose);
  switch (topology.kind) {
    case 'server':
      // The URL first: what it names (address, credentials, db, query options) wins over the settings,
      // which config.ts never lets disagree with it.
      return new Redis(topology.url, node);
    case 'sentinel':
      return new Redis({
        ...node,
        sentinels: topology.sentinels.map(({ host, port }) => ({ host, port })),
        name: topology.name,
        db: topology.db,
        sentinelUsername: topology.sentinelUsername,
        sentinelPassword: topology.sentinelPassword,
        sentinelTLS: tlsOptions(redis),
        enableTLSForSentinelMode: redis.tls !== undefined,
        // ioredis's failoverDetector is left off: when it fires while the client is already reconnecting
        // (the primary died first, the usual case), ioredis 6.0 abandons the reconnection for good
        // (test/e2e/redis-sentinel.test.ts caught it). Without it, the client asks the sentinels again on
        // every reconnection, and a primary that comes back demoted is left on READONLY (below).
        failoverDetector: false,
        sentinelRetryStrategy: purpose === 'cli' ? () => null : (attempt) => Math.min(attempt * REDIS_RETRY_STEP_MS, REDIS_RETRY_MAX_MS),
        sentinelCommandTimeout: REDIS_TOPOLOGY_TIMEOUT_MS,
      });
    case 'cluster': {
      const { retryStrategy: _perNode, enableOfflineQueue, ...redisOptions } = node;
      const options: ClusterOptions = {
        redisOptions,
        enableOfflineQueue,
        lazyConnect: redisOptions.lazyConnect,
        clusterRetryStrategy: purpose === 'cli' ? () => null : (attempt) => Math.min(attempt * REDIS_RETRY_STEP_MS, REDIS_RETRY_MAX_MS),
        // A failover moves slots to a replica: ask again soon rather than answer from a stale map.
        retryDelayOnFailover: REDIS_CLUSTER_RETRY_DELAY_MS,
        retryDelayOnClusterDown: REDIS_CLUSTER_RETRY_DELAY_MS,
        slotsRefreshTimeout: REDIS_TOPOLOGY_TIMEOUT_MS,
      };
      return new Cluster(
        topology.nodes.map(({ host, port }: HostPort) => ({ host, port })),
        options,
      );
    }
  }
}

/** Options of every connection to a Redis node (or a Sentinel-managed primary). */
function nodeOptions(config: RedisSettings, purpose: RedisPurpose): RedisOptions {
  const { redis } = config;
  const shared: RedisOptions = {
    username: redis.username,
    password: redis.password,
    tls: tlsOptions(redis),
    connectTimeout: purpose === 'cli' ? CLI_REDIS_CONNECT_TIMEOUT_MS : REDIS_CONNECT_TIMEOUT_MS,
    // A primary demoted to replica (a failover it was cut off from) answers writes READONLY: reconnect,
    // which asks the sentinels for the current primary.
    reconnectOnError: (err) => err.message.startsWith('READONLY'),
  };
  switch (purpose) {
    case 'commands':
      return {
        ...shared,
        // Fail fast instead of queueing: the check answers 503 rather than hanging when Redis is away.
        enableOfflineQueue: false,
        maxRetriesPerRequest: 1,
        commandTimeout: config.redisTimeoutMs,
        retryStrategy: (attempt) => Math.min(attempt * REDIS_RETRY_STEP_MS, REDIS_RETRY_MAX_MS),
        lazyConnect: false,
      };
    case 'subscriber':
      // SUBSCRIBE is sent again by ioredis after every reconnect; it may wait for the connection.
      return { ...shared, enableOfflineQueue: true, retryStrategy: (attempt) => Math.min(attempt * REDIS_RETRY_STEP_MS, REDIS_RETRY_MAX_MS), lazyConnect: false };
    case 'cli':
      return { ...shared, enableOfflineQueue: true, maxRetriesPerRequest: 1, retryStrategy: () => null, lazyConnect: true };
  }
}

function tlsOptions(redis: RedisConnection): ConnectionOptions | undefined {
  if (!redis.tls) return undefined;
  return redis.tls.ca === undefined ? {} : { ca: redis.tls.ca };
}
