// How idgate reaches Redis, from the IDGATE_REDIS_* settings read together: one server, Sentinel or
// Cluster, with credentials and TLS (redis.ts connects).
import fs from 'node:fs';
import type { HostPort } from './kinds.js';
import type { SettingValues } from './settings.js';

/** Which Redis deployment idgate talks to. */
export type RedisTopology =
  /** One server: IDGATE_REDIS_URL, passed to ioredis as it is. */
  | { readonly kind: 'server'; readonly url: string }
  /** Sentinel: the primary of master group `name`, found through `sentinels` (and found again after a failover). */
  | { readonly kind: 'sentinel'; readonly sentinels: readonly HostPort[]; readonly name: string; readonly sentinelUsername: string | undefined; readonly sentinelPassword: string | undefined; readonly db: number }
  /** Cluster: the seed nodes; the client learns the rest and follows slot moves. */
  | { readonly kind: 'cluster'; readonly nodes: readonly HostPort[] };

export interface RedisConnection {
  readonly topology: RedisTopology;
  /** ACL user and password of the data nodes (single server: unless the URL carries them). */
  readonly username: string | undefined;
  readonly password: string | undefined;
  /** TLS to every Redis node and sentinel; `ca`: the PEM of IDGATE_REDIS_CA_FILE (undefined: the system's CAs). */
  readonly tls: { readonly ca: string | undefined } | undefined;
}

/**
 * The Redis topology, credentials and TLS, checked together: one topology at a time, every Sentinel
 * setting with its companions, a credential given once, a CA only with TLS, and a key prefix without hash
 * tags (idgate places its own: see session/pending-logins.ts).
 */
export function redisConnectionFrom(values: Partial<SettingValues>, problems: string[]): RedisConnection | undefined {
  const before = problems.length;
  const {
    IDGATE_REDIS_URL: url,
    IDGATE_REDIS_SENTINELS: sentinels,
    IDGATE_REDIS_CLUSTER_NODES: clusterNodes,
    IDGATE_REDIS_SENTINEL_NAME: sentinelName,
    IDGATE_REDIS_SENTINEL_USERNAME: sentinelUsername,
    IDGATE_REDIS_SENTINEL_PASSWORD: sentinelPassword,
    IDGATE_REDIS_CA_FILE: caFile,
    IDGATE_REDIS_PREFIX: prefix,
  } = values;
  if (sentinels && clusterNodes) problems.push('IDGATE_REDIS_CLUSTER_NODES: set together with IDGATE_REDIS_SENTINELS; give one topology (e.g. unset IDGATE_REDIS_SENTINELS)');
  if (sentinels && !sentinelName) problems.push('IDGATE_REDIS_SENTINEL_NAME: required with IDGATE_REDIS_SENTINELS, the master group name the sentinels monitor (e.g. idgate)');
  if (!sentinels) {
    for (const [name, value] of [['IDGATE_REDIS_SENTINEL_NAME', sentinelName], ['IDGATE_REDIS_SENTINEL_USERNAME', sentinelUsername], ['IDGATE_REDIS_SENTINEL_PASSWORD', sentinelPassword]] as const) {
      if (value !== undefined) problems.push(`${name}: set without IDGATE_REDIS_SENTINELS (e.g. IDGATE_REDIS_SENTINELS=10.0.0.5:26379,10.0.0.6:26379,10.0.0.7:26379)`);
    }
  }
  if (prefix !== undefined && /[{}]/.test(prefix)) problems.push('IDGATE_REDIS_PREFIX: must not contain "{" or "}" (idgate places the Redis Cluster hash tags itself) (e.g. idgate:)');
  const fromUrl = url === undefined ? undefined : redisUrlParts(url);
  if (fromUrl === 'invalid') problems.push('IDGATE_REDIS_URL: not a redis:// or rediss:// URL, host:port or socket path (e.g. redis://:password@10.0.0.5:6379/0)');
  const urlParts = fromUrl === 'invalid' ? undefined : fromUrl;
  let username = values.IDGATE_REDIS_USERNAME;
  let password = values.IDGATE_REDIS_PASSWORD;
  if (urlParts?.username !== undefined && username !== undefined) problems.push('IDGATE_REDIS_USERNAME: IDGATE_REDIS_URL carries a user name too; give it once (e.g. remove it from the URL)');
  if (urlParts?.password !== undefined && password !== undefined) problems.push('IDGATE_REDIS_PASSWORD: IDGATE_REDIS_URL carries a password too; give it once (e.g. remove it from the URL)');
  if (sentinels || clusterNodes) {
    // Only the scheme, credentials and db of the URL count here: the nodes come from the sentinels or the cluster.
    username ??= urlParts?.username;
    password ??= urlParts?.password;
  }
  const db = urlParts?.db ?? 0;
  if (clusterNodes && db !== 0) problems.push(`IDGATE_REDIS_URL: names database ${db}, but Redis Cluster has database 0 only (e.g. rediss://10.0.0.5:6379)`);
  const tlsOn = values.IDGATE_REDIS_TLS === true || urlParts?.tls === true;
  let ca: string | undefined;
  if (caFile !== undefined) {
    if (!tlsOn) problems.push('IDGATE_REDIS_CA_FILE: set while TLS is off; use a rediss:// URL or IDGATE_REDIS_TLS=1 (e.g. IDGATE_REDIS_TLS=1)');
    try {
      ca = fs.readFileSync(caFile, 'utf8');
      if (!ca.includes('-----BEGIN CERTIFICATE-----')) problems.push(`IDGATE_REDIS_CA_FILE: ${caFile} holds no PEM certificate (e.g. /etc/idgate/redis-ca.pem)`);
    } catch (err) {
      problems.push(`IDGATE_REDIS_CA_FILE: cannot read ${caFile}: ${(err as NodeJS.ErrnoException).code ?? 'error'} (e.g. /etc/idgate/redis-ca.pem)`);
    }
  }
  if (problems.length > before || url === undefined) return undefined;
  const topology: RedisTopology = sentinels
    ? { kind: 'sentinel', sentinels: Object.freeze(sentinels), name: sentinelName!, sentinelUsername, sentinelPassword, db }
    : clusterNodes
      ? { kind: 'cluster', nodes: Object.freeze(clusterNodes) }
      : { kind: 'server', url };
  return Object.freeze({ topology: Object.freeze(topology), username, password, tls: tlsOn ? Object.freeze({ ca }) : undefined });
}

/** What a Redis URL says beyond the address, as ioredis reads it (query values name options too); 'invalid' when unreadable. */
function redisUrlParts(value: string): { username: string | undefined; password: string | undefined; db: number | undefined; tls: boolean } | 'invalid' {
  if (value.startsWith('/') && !value.startsWith('//')) return { username: undefined, password: undefined, db: undefined, tls: false };
  const scheme = /^rediss?:\/\//i.test(value) ? '' : value.startsWith('//') ? 'redis:' : 'redis://';
  let url: URL;
  try {
    url = new URL(scheme + value);
  } catch {
    return 'invalid';
  }
  const decoded = (text: string) => (text === '' ? undefined : decodeURIComponent(text));
  const dbText = scheme === '' || scheme === 'redis:' ? url.pathname.slice(1) || url.searchParams.get('db') || '' : url.searchParams.get('db') ?? '';
  if (dbText !== '' && !/^\d+$/.test(dbText)) return 'invalid';
  return {
    username: url.searchParams.get('username') ?? decoded(url.username),
    password: url.searchParams.get('password') ?? decoded(url.password),
    db: dbText === '' ? undefined : Number(dbText),
    tls: url.protocol === 'rediss:',
  };
}
