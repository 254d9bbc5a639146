// The one place that connects to Redis, in whichever topology the settings name: a single server, a
// Sentinel-managed primary (found again after a failover) or a Cluster. Every topology takes the same ACL
// user and password and the same TLS settings. The rest of idgate sees a `RedisClient` and uses only
// commands that work on all three: single-key commands, and multi-key operations (MULTI, Lua) whose keys
// share one hash slot (see the key layout in session/redis-keys.ts).
import { isIP } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { Cluster, Redis, SentinelConnector, type ClusterOptions, type RedisOptions, type SentinelAddress } from 'ioredis';
// Not exported by ioredis's index: the connector of every plain (non-Sentinel) connection, subclassed below.
import standaloneConnectorModule from 'ioredis/built/connectors/StandaloneConnector.js';
import type { Config } from './config.js';
import type { HostPort } from './config/kinds.js';
import type { RedisConnection } from './config/redis-connection.js';
import { describeError } from './errors.js';
import { CLI_REDIS_CONNECT_TIMEOUT_MS, REDIS_CLUSTER_RETRY_DELAY_MS, REDIS_CONNECT_TIMEOUT_MS, REDIS_RETRY_MAX_MS, REDIS_RETRY_STEP_MS, REDIS_TOPOLOGY_TIMEOUT_MS, SENTINEL_STRAGGLER_MS, PRIMARY_SWITCH_TRUST_MS } from './limits.js';

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
    case 'sentinel': {
      const client = new Redis({
        ...node,
        sentinels: topology.sentinels.map(({ host, port }) => ({ host, port })),
        name: topology.name,
        db: topology.db,
        sentinelUsername: topology.sentinelUsername,
        sentinelPassword: topology.sentinelPassword,
        // TLS twice over: `sentinelTLS` for the sentinels themselves, and `enableTLSForSentinelMode`, without
        // which ioredis reaches the primary the sentinels name over plain TCP even with `tls` set. Its
        // certificate is checked against the address the sentinels announce (test/e2e/redis-tls-topologies.test.ts).
        sentinelTLS: tlsOptions(redis),
        enableTLSForSentinelMode: redis.tls !== undefined,
        Connector: connectorFor(redis, 'sentinel'),
        // ioredis's failoverDetector is left off: when it fires while the client is already reconnecting
        // (the primary died first, the usual case), ioredis 6.0 abandons the reconnection for good
        // (test/e2e/redis-sentinel.test.ts caught it). Instead, followPrimarySwitches (below) reconnects
        // only a client that is connected; the client asks the sentinels again on every reconnection, and
        // a primary that comes back demoted is left on READONLY (below).
        failoverDetector: false,
        sentinelRetryStrategy: purpose === 'cli' ? () => null : (attempt) => Math.min(attempt * REDIS_RETRY_STEP_MS, REDIS_RETRY_MAX_MS),
        sentinelCommandTimeout: REDIS_TOPOLOGY_TIMEOUT_MS,
      });
      if (purpose !== 'cli') followPrimarySwitches(client, config);
      return client;
    }
    case 'cluster': {
      const { retryStrategy: _perNode, enableOfflineQueue, ...redisOptions } = node;
      const options: ClusterOptions = {
        // `tls` (in redisOptions) serves every node ioredis learns from CLUSTER SLOTS and its pub/sub
        // subscriber alike; certificates are checked against the addresses the nodes announce.
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
    Connector: connectorFor(redis, 'node'),
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

/**
 * A Redis error in words an operator can act on. ioredis drops the cause from two of them: a Cluster that
 * reaches no node says only "Failed to refresh slots cache" (the node's own error, e.g. WRONGPASS, is kept
 * in `lastNodeError`), and a sentinel or cluster node refused over TLS (its certificate not signed by
 * IDGATE_REDIS_CA_FILE, or naming another address) ends as "Connection is closed", the TLS error having
 * gone to a connection ioredis listens to itself. That one is found again by a TLS handshake of our own
 * with the first sentinel or seed node, trusting the same CAs. No message holds a password.
 */
export async function describeRedisError(config: RedisSettings, err: unknown): Promise<string> {
  let text = describeError(err);
  const lastNodeError = (err as { lastNodeError?: unknown } | undefined)?.lastNodeError;
  if (lastNodeError instanceof Error) text += ` Last node error: ${lastNodeError.message}`;
  const { topology, tls } = config.redis;
  const first = topology.kind === 'sentinel' ? topology.sentinels[0] : topology.kind === 'cluster' ? topology.nodes[0] : undefined;
  if (tls && first && /Connection is closed/.test(text)) {
    const refused = await tlsRefusal(first, tlsOptions(config.redis)!);
    if (refused) text += ` TLS to ${topology.kind === 'sentinel' ? 'sentinel' : 'node'} ${first.host}:${first.port}: ${refused}`;
  }
  return text;
}

/** Why a TLS handshake with `node` fails (e.g. "self-signed certificate in certificate chain"); undefined if it succeeds or times out. */
function tlsRefusal(node: HostPort, tls: ConnectionOptions): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ ...tls, host: node.host, port: node.port });
    const done = (refused: string | undefined) => {
      socket.destroy();
      resolve(refused);
    };
    socket.once('secureConnect', () => done(undefined));
    // `on`, not `once`: a TLS socket may report a second error (the server's alert) after the first.
    socket.on('error', (err) => done(err.message));
    socket.setTimeout(2000, () => done(undefined));
  });
}

/** Per Sentinel master group: one subscription to the sentinels' announcements of a new primary, for every client of it in this process. */
const primarySwitches = new Map<string, PrimaryWatch>();

/**
 * The sentinels' announcements of a new primary. `+promoted-slave` comes first: the replica has been
 * promoted and takes writes, while the sentinels still name the old primary (SENTINEL MASTER) until
 * `+switch-master`, tens to hundreds of milliseconds later. A write to the old primary in between is lost
 * at its demotion; SENTINEL GET-MASTER-ADDR-BY-NAME already names the new one then (a login right after a
 * SENTINEL FAILOVER was lost 1 run in 3 in test/e2e/redis-tls-topologies.test.ts before idgate followed it).
 */
const PRIMARY_ANNOUNCEMENTS = ['+promoted-slave', '+switch-master'] as const;

/** The new primary of master group `name` that a sentinel's announcement on `channel` names, if it does. */
export function announcedPrimary(channel: string, message: string, name: string): { ip: string; port: number } | undefined {
  const fields = message.split(' ');
  // +switch-master: "<name> <old ip> <old port> <new ip> <new port>"
  // +promoted-slave: "slave <ip>:<port> <ip> <port> @ <name> <old primary ip> <old primary port>"
  const [group, ip, port] = channel === '+switch-master' ? [fields[0], fields[3], fields[4]] : channel === '+promoted-slave' && fields[0] === 'slave' && fields[4] === '@' ? [fields[5], fields[2], fields[3]] : [];
  if (group !== name || !ip || !port || !/^\d+$/.test(port)) return undefined;
  return { ip, port: Number(port) };
}

export interface PrimaryWatch {
  readonly followers: Set<Redis>;
  readonly sentinels: Redis[];
  /** The primary the latest announcement (PRIMARY_ANNOUNCEMENTS) named, and when (Date.now()). */
  primary?: { readonly ip: string; readonly port: number; readonly at: number };
}

/**
 * What an announcement of a new primary does: a connected follower elsewhere than on the new primary
 * reconnects (asking the sentinels again). One being made is left to finish (a client told to disconnect while it asks the
 * sentinels gives up for good: "Connection is closed." at every command, seen under load in a loop of
 * failovers); checkOnPrimary looks at it once it is ready.
 */
export function followPrimary(watch: PrimaryWatch, primary: { readonly ip: string; readonly port: number }, now = Date.now()): void {
  watch.primary = { ...primary, at: now };
  for (const follower of watch.followers) {
    if (follower.status === 'ready' && !onPrimary(follower, primary)) follower.disconnect(true);
  }
}

/**
 * At each 'ready' of a follower: in the seconds after an announcement of a new primary, a connection that
 * reached another node reconnects. After +promoted-slave the sentinels still name the old primary until
 * +switch-master, and ioredis's role check passes there until its demotion, 10 to 20 s later, which drops
 * what was written meanwhile. Only for PRIMARY_SWITCH_TRUST_MS: past it, the old primary is demoted, and
 * an announcement missed since (the sentinels out of reach) must not keep idgate off Redis.
 */
export function checkOnPrimary(watch: PrimaryWatch, client: Redis, now = Date.now()): void {
  const { primary } = watch;
  if (primary && now - primary.at < PRIMARY_SWITCH_TRUST_MS && !onPrimary(client, primary)) client.disconnect(true);
}

/** Whether `client` is connected to `primary`; true when that cannot be told (sentinels announcing host names). */
function onPrimary(client: Redis, primary: { readonly ip: string; readonly port: number }): boolean {
  if (isIP(primary.ip) === 0) return true;
  const on = client.stream;
  return on?.remotePort === primary.port && on.remoteAddress?.replace(/^::ffff:/, '') === primary.ip;
}

/**
 * Reconnects `client`, and the copies made of it by `duplicate()` (the durable-write pool), as soon as a
 * sentinel announces a new primary (PRIMARY_ANNOUNCEMENTS). Otherwise a client stays on an old primary that is
 * still up (SENTINEL FAILOVER, a partition healed) until the sentinels demote it, 10 to 20 s later, and
 * every write it makes there meanwhile (a login, a revocation) is lost at the demotion
 * (test/e2e/redis-tls-topologies.test.ts caught it). A client waiting to reconnect is left alone: its
 * next attempt asks the sentinels anyway; one connecting now is looked at once ready (checkOnPrimary).
 */
function followPrimarySwitches(client: Redis, config: RedisSettings): void {
  const { redis } = config;
  if (redis.topology.kind !== 'sentinel') return;
  const topology = redis.topology;
  const key = JSON.stringify([topology.name, topology.sentinels, topology.sentinelUsername]);
  let watch = primarySwitches.get(key);
  if (!watch) {
    const followers = new Set<Redis>();
    const sentinels = topology.sentinels.map(({ host, port }) => {
      const sentinel = new Redis({
        host, port, username: topology.sentinelUsername, password: topology.sentinelPassword, tls: tlsOptions(redis), Connector: connectorFor(redis, 'node'),
        connectTimeout: 2000, retryStrategy: (attempt) => Math.min(attempt * 200, 2000),
      });
      sentinel.on('error', () => undefined); // the clients report Redis being away
      sentinel.on('message', (channel: string, message: string) => {
        const primary = announcedPrimary(channel, message, topology.name);
        if (primary) followPrimary(watch!, primary);
      });
      void sentinel.subscribe(...PRIMARY_ANNOUNCEMENTS).catch(() => undefined);
      return sentinel;
    });
    watch = { followers, sentinels };
    primarySwitches.set(key, watch);
  }
  const { followers, sentinels } = watch;
  followers.add(client);
  const current = watch;
  client.on('ready', () => checkOnPrimary(current, client));
  client.once('end', () => {
    followers.delete(client);
    if (followers.size > 0 || primarySwitches.get(key) !== watch) return;
    primarySwitches.delete(key);
    for (const sentinel of sentinels) sentinel.disconnect();
  });
  const duplicate = client.duplicate.bind(client);
  client.duplicate = (override) => {
    const copy = duplicate(override);
    followPrimarySwitches(copy, config);
    return copy;
  };
}

// ioredis listens for one error per socket (`once`). A TLS socket whose server certificate it refuses can
// report a second one right after, the server's alert (ERR_SSL_TLSV1_ALERT_DECODE_ERROR), and an 'error'
// that nothing listens to ends the process: with an IDGATE_REDIS_CA_FILE that did not sign the servers,
// idgate crashed now and then instead of staying up and unready (test/e2e/redis-tls-topologies.test.ts).
// These connectors keep a listener on every socket they open, so that only the first error counts (ioredis
// still reports it). They serve every connection ioredis opens for idgate over TLS: to a single server,
// to cluster nodes (redisOptions), to a Sentinel-managed primary and to the sentinels themselves; not a
// Cluster's pub/sub connection, which ioredis opens with its own options only once the cluster is reached.
const StandaloneConnector = standaloneConnectorModule.default;

class TlsStandaloneConnector extends StandaloneConnector {
  override async connect(emitter: Parameters<InstanceType<typeof StandaloneConnector>['connect']>[0]) {
    const stream = await super.connect(emitter);
    stream.on('error', () => undefined);
    return stream;
  }
}

/** A Sentinel-managed primary over plain TCP, found by resolveNewestPrimary (below). */
class NewestPrimarySentinelConnector extends SentinelConnector {}

class TlsSentinelConnector extends SentinelConnector {
  override async connect(emitter: Parameters<SentinelConnector['connect']>[0]) {
    const stream = await super.connect(emitter);
    stream.on('error', () => undefined);
    return stream;
  }
}

// The sentinels' own connections are opened by a private method: give them the connector above too.
type ConnectToSentinel = (this: SentinelConnector, endpoint: Partial<SentinelAddress>, options?: Partial<RedisOptions>) => Redis;
const connectToSentinel = (SentinelConnector.prototype as unknown as { connectToSentinel: ConnectToSentinel }).connectToSentinel;
(TlsSentinelConnector.prototype as unknown as { connectToSentinel: ConnectToSentinel }).connectToSentinel = function (endpoint, options) {
  return connectToSentinel.call(this, endpoint, { ...options, Connector: TlsStandaloneConnector as unknown as RedisOptions['Connector'] });
};

/** The primary as one sentinel names it, with the configuration epoch of that naming. */
interface NamedPrimary {
  readonly host: string;
  readonly port: number;
  readonly epoch: number;
}

/**
 * Finds the primary the way the sentinels order their own configurations: by asking every sentinel and
 * taking the answer with the highest configuration epoch. ioredis asks one sentinel, and right after a
 * failover a sentinel that has not yet heard of it (they learn from each other, milliseconds to a few
 * hundred milliseconds later) still names the old primary, which takes writes until its demotion, 10 to
 * 20 s later, then drops them.
 * The answer of every sentinel is awaited while they answer quickly; one that does not answer within
 * SENTINEL_STRAGGLER_MS of the others is not waited for.
 */
export async function resolveNewestPrimary(this: SentinelConnector, endpoint: Partial<SentinelAddress>): Promise<{ host: string; port: number } | null> {
  const { options } = this as unknown as { options: { name?: string; sentinels?: Partial<SentinelAddress>[] } };
  const sentinels = [endpoint, ...(options.sentinels ?? []).filter((s) => s.host !== endpoint.host || s.port !== endpoint.port)];
  const clients: Redis[] = [];
  const ask = async (sentinel: Partial<SentinelAddress>): Promise<NamedPrimary> => {
    const client = (this as unknown as { connectToSentinel: (e: Partial<SentinelAddress>) => Redis }).connectToSentinel(sentinel);
    clients.push(client);
    client.on('error', () => undefined);
    try {
      const reply = (await client.call('SENTINEL', 'MASTER', options.name ?? '')) as string[];
      const fields = new Map<string, string>();
      for (let i = 0; i + 1 < reply.length; i += 2) fields.set(String(reply[i]), String(reply[i + 1]));
      const [host, port, epoch] = [fields.get('ip'), Number(fields.get('port')), Number(fields.get('config-epoch') ?? 0)];
      if (!host || !Number.isInteger(port) || port <= 0) throw new Error(`sentinel ${sentinel.host}:${sentinel.port} named no primary for ${options.name}`);
      return { host, port, epoch: Number.isFinite(epoch) ? epoch : 0 };
    } finally {
      client.disconnect();
    }
  };
  const answers = await settleWithStragglerBound(sentinels.map(ask), SENTINEL_STRAGGLER_MS);
  for (const client of clients) client.disconnect(); // a straggler's too
  const named = answers.filter((a): a is PromiseFulfilledResult<NamedPrimary> => a.status === 'fulfilled').map((a) => a.value);
  if (named.length === 0) {
    // As ioredis's own resolve: the error of the first sentinel asked, which it reports and retries.
    const first = answers[0];
    throw first?.status === 'rejected' ? first.reason : new Error('no sentinel answered');
  }
  const newest = named.reduce((a, b) => (b.epoch > a.epoch ? b : a));
  return { host: newest.host, port: newest.port };
}

/**
 * The outcomes of `promises`: all of them, or, once the first has settled, those settled within `graceMs`
 * (the others count as rejected).
 */
function settleWithStragglerBound<T>(promises: Promise<T>[], graceMs: number): Promise<PromiseSettledResult<T>[]> {
  const results: (PromiseSettledResult<T> | undefined)[] = promises.map(() => undefined);
  return new Promise((resolve) => {
    let settled = 0;
    let timer: NodeJS.Timeout | undefined;
    const finish = () => {
      clearTimeout(timer);
      resolve(results.map((r) => r ?? { status: 'rejected', reason: new Error('sentinel too slow to answer') }));
    };
    promises.forEach((promise, i) => {
      promise.then((value) => ({ status: 'fulfilled' as const, value }), (reason: unknown) => ({ status: 'rejected' as const, reason })).then((result) => {
        results[i] = result;
        settled += 1;
        if (settled === promises.length) finish();
        else if (result.status === 'fulfilled') timer ??= setTimeout(finish, graceMs);
      });
    });
  });
}

type Resolve = (this: SentinelConnector, endpoint: Partial<SentinelAddress>) => Promise<{ host: string; port: number } | null>;
for (const Connector of [NewestPrimarySentinelConnector, TlsSentinelConnector]) {
  (Connector.prototype as unknown as { resolve: Resolve }).resolve = resolveNewestPrimary;
}

/** The connector for a connection of `kind`: ioredis's own for a node without TLS. */
function connectorFor(redis: RedisConnection, kind: 'node' | 'sentinel'): RedisOptions['Connector'] {
  if (!redis.tls) return kind === 'sentinel' ? (NewestPrimarySentinelConnector as unknown as RedisOptions['Connector']) : undefined;
  return (kind === 'sentinel' ? TlsSentinelConnector : TlsStandaloneConnector) as unknown as RedisOptions['Connector'];
}
