// Writes that must not be lost: a session at login, its renewal, a revocation (logout, back-channel logout,
// a failed renewal, `idgate sessions revoke`). After such a write idgate asks Redis to WAIT until a replica
// has it, within a bound (IDGATE_REDIS_WAIT_MS), so that a failover right after the answer loses nothing:
// Sentinel promotes the most up-to-date replica, which then holds the write.
//
// WAIT counts the writes of the connection it is sent on, and blocks that connection until it returns, so
// these writes and their WAIT go on connections of their own (a small pool), never on the shared one the
// check path uses: a stalled replica must never delay a session check.
//
// When the bound passes without the replicas, the write goes on: it is on the primary (and in its AOF
// within a second), and the only loss would come from that primary dying before its replica caught up.
// Failing the login instead would turn a slow replica into an outage of sign-in, and failing a revocation
// would not undo it (the session is already gone from the primary, and every replica was told). Each such
// write is logged and counted (idgate_redis_replication_waits_total{result="timeout"}), so a replica that
// lags is seen.
//
// Redis Cluster: WAIT counts the writes of one connection to one shard, and the cluster client routes each
// key to its own shard, so a single WAIT cannot cover a write there. On Cluster these writes go on the
// shared client without waiting (docs/operations.md says so), rather than report a replication that
// WAIT did not check.
import type { Redis } from 'ioredis';
import type { RedisClient } from './redis.js';
import type { Logger } from './audit.js';
import type { Config } from './config.js';
import type { Metrics } from './metrics.js';

export type DurableWriteKind = 'session' | 'renewal' | 'revocation';

export type WaitResult =
  /** The replicas wanted have the write. */
  | 'replicated'
  /** The bound passed first: the write stands on the primary alone (for now). */
  | 'timeout'
  /** No connection of the pool was free within the bound: written on the shared connection, no WAIT. */
  | 'skipped'
  /** Asking how many replicas there are, or WAIT itself, failed after the write succeeded. */
  | 'error';

export interface WaitOutcome {
  readonly result: WaitResult;
  readonly wanted: number;
  readonly acked: number;
  readonly ms: number;
}

export type DurabilitySettings = Pick<Config, 'redisWaitReplicas' | 'redisWaitMs' | 'redisTimeoutMs'>;

/** Connections kept for these writes (each holds one write and its WAIT at a time). */
const POOL_SIZE = 4;

export class DurableWrites {
  readonly #redis: RedisClient;
  readonly #settings: DurabilitySettings;
  readonly #report: (kind: DurableWriteKind, outcome: WaitOutcome) => void;
  readonly #all = new Set<Redis>();
  readonly #idle: Redis[] = [];
  readonly #waiting: ((conn: Redis) => void)[] = [];

  /** `redis`: the shared client, duplicated for the pool. `report`: each WAIT's outcome (none when no replica is wanted). */
  constructor(redis: RedisClient, settings: DurabilitySettings, report: (kind: DurableWriteKind, outcome: WaitOutcome) => void) {
    this.#redis = redis;
    this.#settings = settings;
    this.#report = report;
  }

  /**
   * Runs `write` (its commands on the connection it is given), then waits for the replicas wanted. Resolves
   * with write's result once they have it or the bound has passed; rejects only when the write itself fails.
   * `changed(result)` false: the write changed nothing (a delete of a missing key), so nothing is waited for.
   */
  async write<T>(kind: DurableWriteKind, write: (redis: RedisClient) => Promise<T>, changed: (result: T) => boolean = () => true): Promise<T> {
    // Redis away (the shared client is not ready): fail as fast as every other write does.
    if (this.#settings.redisWaitReplicas === 0 || this.#redis.isCluster || this.#redis.status !== 'ready') return write(this.#redis);
    const started = Date.now();
    const conn = await this.#acquire();
    if (conn === undefined) {
      const result = await write(this.#redis);
      this.#report(kind, { result: 'skipped', wanted: 0, acked: 0, ms: Date.now() - started });
      return result;
    }
    try {
      const wanted = this.#replicasWanted(conn).catch(() => undefined);
      const result = await write(conn);
      if (!changed(result)) return result;
      const replicas = await wanted;
      if (replicas === 0) return result;
      let acked: number | undefined;
      if (replicas !== undefined) acked = await conn.wait(replicas, this.#settings.redisWaitMs).then(Number, () => undefined);
      const outcome: WaitResult = replicas === undefined || acked === undefined ? 'error' : acked >= replicas ? 'replicated' : 'timeout';
      this.#report(kind, { result: outcome, wanted: replicas ?? 0, acked: acked ?? 0, ms: Date.now() - started });
      return result;
    } finally {
      this.#release(conn);
    }
  }

  /** Closes the pool's connections (at shutdown). */
  close(): void {
    for (const conn of this.#all) conn.disconnect();
    this.#all.clear();
    this.#idle.length = 0;
  }

  /** 'auto': 1 when Redis reports an online replica (one in sync; a replica still loading cannot acknowledge), else 0. */
  async #replicasWanted(conn: Redis): Promise<number> {
    const wanted = this.#settings.redisWaitReplicas;
    if (wanted !== 'auto') return wanted;
    const info = await conn.info('replication');
    return /^slave\d+:.*\bstate=online\b/m.test(info) ? 1 : 0;
  }

  /** A ready connection of the pool, opened when needed; undefined when none frees within the wait bound. */
  async #acquire(): Promise<Redis | undefined> {
    const ready = this.#idle.findIndex((c) => c.status === 'ready');
    if (ready !== -1) return this.#idle.splice(ready, 1)[0];
    if (this.#all.size < POOL_SIZE) {
      // Commands on it may take the WAIT bound on top of the usual command timeout.
      // Never on Cluster (write() does not wait there), so the shared client is a single connection's.
      const conn = (this.#redis as Redis).duplicate({ commandTimeout: this.#settings.redisTimeoutMs + this.#settings.redisWaitMs });
      conn.on('error', () => undefined); // the shared client reports Redis being away
      this.#all.add(conn);
      try {
        await whenReady(conn, this.#settings.redisTimeoutMs + 2000);
        return conn;
      } catch {
        this.#idle.push(conn); // it keeps reconnecting; meanwhile this write does without it
        return undefined;
      }
    }
    return new Promise((resolve) => {
      const take = (conn: Redis) => {
        clearTimeout(timer);
        resolve(conn);
      };
      const timer = setTimeout(() => {
        this.#waiting.splice(this.#waiting.indexOf(take), 1);
        resolve(undefined);
      }, this.#settings.redisWaitMs);
      this.#waiting.push(take);
    });
  }

  #release(conn: Redis): void {
    if (!this.#all.has(conn)) return conn.disconnect(); // closed meanwhile
    const next = conn.status === 'ready' ? this.#waiting.shift() : undefined;
    if (next) next(conn);
    else this.#idle.push(conn);
  }
}

async function whenReady(conn: Redis, timeoutMs: number): Promise<void> {
  if (conn.status === 'ready') return;
  if (conn.status === 'wait') {
    await conn.connect(); // a client created with lazyConnect (the CLI's)
    return;
  }
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      conn.off('ready', onReady);
      reject(new Error('redis connection not ready'));
    }, timeoutMs);
    const onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    conn.once('ready', onReady);
  });
}

/** Reports outcomes as idgate's metrics and, for writes left unconfirmed, a warning in the log. */
export function reportWaits(logger: Logger, metrics: Metrics): (kind: DurableWriteKind, outcome: WaitOutcome) => void {
  return (kind, outcome) => {
    metrics.recordReplicationWait(kind, outcome.result);
    if (outcome.result !== 'replicated') {
      logger.log('warn', 'a write was not confirmed by a Redis replica in time; it stands on the primary', { write: kind, result: outcome.result, replicas_wanted: outcome.wanted, replicas_acked: outcome.acked, ms: outcome.ms });
    }
  };
}
