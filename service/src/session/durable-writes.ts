// Writes that must not be lost (a session at login, its renewal, a revocation) are followed by a WAIT
// for a replica, within IDGATE_REDIS_WAIT_MS, on connections of their own (WAIT blocks its connection,
// and the check path must never wait on a stalled replica). Past the bound the write goes on, logged and
// counted. On a Cluster each primary the write reached is asked for its own replicas. The reasons for
// each choice: docs/design-notes.md, "Durable writes".
import type { Cluster, Redis } from 'ioredis';
import type { RedisClient } from '../redis.js';
import type { Logger } from '../audit.js';
import type { Config } from '../config.js';
import { DURABLE_CLUSTER_POOL_SIZE as CLUSTER_POOL_SIZE, DURABLE_CONNECT_EXTRA_MS, DURABLE_POOL_SIZE as POOL_SIZE } from '../limits.js';
import type { Metrics } from '../metrics.js';

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


export class DurableWrites {
  readonly #redis: RedisClient;
  readonly #settings: DurabilitySettings;
  readonly #report: (kind: DurableWriteKind, outcome: WaitOutcome) => void;
  readonly #all = new Set<RedisClient>();
  readonly #idle: RedisClient[] = [];
  readonly #waiting: ((conn: RedisClient) => void)[] = [];
  /** Per pooled Cluster client: the slots its commands went to, since the start of its current write. */
  readonly #slotsWritten = new WeakMap<Cluster, Set<number>>();

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
    if (this.#settings.redisWaitReplicas === 0 || this.#redis.status !== 'ready') return write(this.#redis);
    const started = Date.now();
    const conn = await this.#acquire();
    if (conn === undefined) {
      const result = await write(this.#redis);
      this.#report(kind, { result: 'skipped', wanted: 0, acked: 0, ms: Date.now() - started });
      return result;
    }
    try {
      if (isCluster(conn)) return await this.#writeOnCluster(kind, conn, write, changed, started);
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

  /** write() on a pooled Cluster client: WAIT on each primary that took part of the write (header comment). */
  async #writeOnCluster<T>(kind: DurableWriteKind, conn: Cluster, write: (redis: RedisClient) => Promise<T>, changed: (result: T) => boolean, started: number): Promise<T> {
    const slots = this.#slotsWritten.get(conn)!;
    slots.clear();
    const result = await write(conn);
    if (!changed(result)) return result;
    const shards = await Promise.all(primariesOf(conn, slots).map((node) => (node === undefined ? undefined : this.#waitOnPrimary(node))));
    const outcome = combineShardWaits(shards);
    if (outcome !== undefined) this.#report(kind, { ...outcome, ms: Date.now() - started });
    return result;
  }

  /** On one primary of a Cluster: its replicas wanted, then WAIT for them; undefined when either failed. */
  async #waitOnPrimary(node: Redis): Promise<ShardWait | undefined> {
    try {
      const wanted = await this.#replicasWanted(node);
      if (wanted === 0) return { wanted, acked: 0 };
      return { wanted, acked: Number(await node.wait(wanted, this.#settings.redisWaitMs)) };
    } catch {
      return undefined;
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
  async #acquire(): Promise<RedisClient | undefined> {
    const ready = this.#idle.findIndex((c) => c.status === 'ready');
    if (ready !== -1) return this.#idle.splice(ready, 1)[0];
    if (this.#all.size < (this.#redis.isCluster ? CLUSTER_POOL_SIZE : POOL_SIZE)) {
      // Commands on it may take the WAIT bound on top of the usual command timeout.
      const commandTimeout = this.#settings.redisTimeoutMs + this.#settings.redisWaitMs;
      let conn: RedisClient;
      if (isCluster(this.#redis)) {
        const cluster = this.#redis.duplicate([], { redisOptions: { commandTimeout } });
        this.#slotsWritten.set(cluster, recordSlots(cluster));
        conn = cluster;
      } else {
        conn = this.#redis.duplicate({ commandTimeout });
      }
      conn.on('error', () => undefined); // the shared client reports Redis being away
      this.#all.add(conn);
      try {
        await whenReady(conn, this.#settings.redisTimeoutMs + DURABLE_CONNECT_EXTRA_MS);
        return conn;
      } catch {
        this.#idle.push(conn); // it keeps reconnecting; meanwhile this write does without it
        return undefined;
      }
    }
    return new Promise((resolve) => {
      const take = (conn: RedisClient) => {
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

  #release(conn: RedisClient): void {
    if (!this.#all.has(conn)) return conn.disconnect(); // closed meanwhile
    const next = conn.status === 'ready' ? this.#waiting.shift() : undefined;
    if (next) next(conn);
    else this.#idle.push(conn);
  }
}

/** What one primary of a Cluster answered for a write: replicas wanted there, and how many WAIT counted. */
export interface ShardWait {
  readonly wanted: number;
  readonly acked: number;
}

/**
 * One outcome for a write that went to several primaries (undefined: asking one of them failed), or
 * undefined when none wanted a replica (reported as nothing, like a single server without one). The
 * counts add up over the primaries, each one's acks counted up to its own want, so that `acked < wanted`
 * exactly when some primary fell short.
 */
export function combineShardWaits(shards: readonly (ShardWait | undefined)[]): Omit<WaitOutcome, 'ms'> | undefined {
  const known = shards.filter((s): s is ShardWait => s !== undefined);
  const wanted = known.reduce((sum, s) => sum + s.wanted, 0);
  const acked = known.reduce((sum, s) => sum + Math.min(s.acked, s.wanted), 0);
  if (known.length < shards.length) return { result: 'error', wanted, acked };
  if (wanted === 0) return undefined;
  return { result: acked >= wanted ? 'replicated' : 'timeout', wanted, acked };
}

/**
 * The primaries (this client's connections to them) serving these slots, each once, as the client's slot
 * map has them now (after any MOVED the write followed); undefined for a slot whose primary the client
 * does not know.
 */
function primariesOf(cluster: Cluster, slots: Iterable<number>): (Redis | undefined)[] {
  const byAddress = new Map(cluster.nodes('master').map((node) => [`${node.options.host}:${node.options.port}`, node]));
  const addresses = new Set([...slots].map((slot) => cluster.slots[slot]?.[0]));
  return [...addresses].map((address) => (address === undefined ? undefined : byAddress.get(address)));
}

/**
 * Records the slot of every command this (pooled, idgate's own) Cluster client sends: Cluster#sendCommand
 * is where ioredis routes each command, MULTI blocks included (given their slot as `node.slot`), so the
 * write functions stay plain code on a RedisClient. Keyless commands (PUBLISH: not replicated through the
 * replication stream on Cluster) have no slot and need no WAIT.
 */
function recordSlots(cluster: Cluster): Set<number> {
  const slots = new Set<number>();
  const send = cluster.sendCommand.bind(cluster);
  cluster.sendCommand = (command, stream, node?: { slot?: number | null }) => {
    const slot = node?.slot ?? command.getSlot();
    if (typeof slot === 'number') slots.add(slot);
    return send(command, stream, node);
  };
  return slots;
}

function isCluster(client: RedisClient): client is Cluster {
  return client.isCluster;
}

async function whenReady(conn: RedisClient, timeoutMs: number): Promise<void> {
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
