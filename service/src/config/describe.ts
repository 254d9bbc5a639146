// The settings as they may be shown, for `check-config` and start-up logs: secrets only as "(set)",
// Redis URLs without credentials or query values.
import type { Config } from '../config.js';
import type { HostPort } from './kinds.js';
import type { RedisConnection } from './redis-connection.js';

/** The settings as they may be shown (secrets replaced), for `check-config` and start-up logs. */
export function describeConfig(config: Config): Record<string, string> {
  return {
    issuer: config.issuer.href,
    client_id: config.clientId,
    client_secret: '(set)',
    public_url: config.publicUrl.origin,
    redirect_url: config.redirectUrl.href,
    // What to register at the IdP for front-channel logout (Okta: Single Logout), and whether Okta's event hook is on.
    frontchannel_logout_uri: new URL('/_auth/frontchannel-logout', config.publicUrl).href,
    okta_event_hook: config.oktaEventHookSecret === undefined ? '(off)' : `${new URL('/_auth/okta-events', config.publicUrl).href} (secret set)`,
    redis_url: redactRedisUrl(config.redisUrl),
    ...describeRedis(config.redis),
    cookie_secrets: `(${config.cookieSecrets.length} set)`,
    cookie_name: config.cookieName,
    binding_cookie_name: config.bindingCookieName,
    cookie_domain: config.cookieDomain ?? '(none: host-only cookies)',
    cookie_secure: String(config.cookieSecure),
    policy_file: config.policyFile ?? '(none: any signed-in user)',
    listen: `${config.listen.host}:${config.listen.port}`,
    spoe_listen: config.spoeListen ? `${config.spoeListen.host}:${config.spoeListen.port}` : '(off)',
    trusted_proxies: config.trustedProxiesText,
    check_secrets: config.checkSecrets.length === 0 ? '(none: any trusted proxy address may ask)' : `(${config.checkSecrets.length} set)`,
    redis_wait: config.redisWaitReplicas === 0 ? '(off)' : `${config.redisWaitReplicas === 'auto' ? 'auto' : `${config.redisWaitReplicas} replica(s)`}, ${config.redisWaitMs} ms at most`,
  };
}

/** The Redis topology as it may be shown: addresses, never a user name or password (only whether one is set). */
export function describeRedis(redis: RedisConnection): Record<string, string> {
  const { topology } = redis;
  const list = (nodes: readonly HostPort[]) => nodes.map((n) => (n.host.includes(':') ? `[${n.host}]:${n.port}` : `${n.host}:${n.port}`)).join(',');
  const out: Record<string, string> = {
    redis_topology: topology.kind === 'server' ? 'single server (IDGATE_REDIS_URL)' : topology.kind === 'sentinel' ? `sentinel, master group "${topology.name}" via ${list(topology.sentinels)}, db ${topology.db}` : `cluster, seed nodes ${list(topology.nodes)}`,
    redis_username: redis.username === undefined ? '(none)' : '(set)',
    redis_password: redis.password === undefined ? '(none)' : '(set)',
    redis_tls: redis.tls === undefined ? 'off' : redis.tls.ca === undefined ? "on (the system's CAs)" : 'on (IDGATE_REDIS_CA_FILE)',
  };
  if (topology.kind === 'sentinel') {
    out.redis_sentinel_username = topology.sentinelUsername === undefined ? '(none)' : '(set)';
    out.redis_sentinel_password = topology.sentinelPassword === undefined ? '(none)' : '(set)';
  }
  return out;
}

/**
 * A Redis URL as it may be shown: user name, password and every query value replaced by "***". ioredis
 * reads each query parameter as a connection option (`?password=`, `?username=`, `?sentinelPassword=`...),
 * so no query value is trusted to be harmless. URLs without a scheme are read as ioredis reads them.
 */
export function redactRedisUrl(value: string): string {
  // A Unix socket path, as ioredis takes it.
  if (value.startsWith('/') && !value.startsWith('//')) {
    const query = value.indexOf('?');
    return query === -1 ? value : `${value.slice(0, query)}${redactQuery(value.slice(query))}`;
  }
  const scheme = /^rediss?:\/\//i.test(value) ? '' : value.startsWith('//') ? 'redis:' : 'redis://';
  let url: URL;
  try {
    url = new URL(scheme + value);
  } catch {
    return '(unparsable)';
  }
  if (url.username) url.username = '***';
  if (url.password) url.password = '***';
  const query = redactQuery(url.search);
  url.search = '';
  url.hash = '';
  return url.href.slice(scheme.length) + query;
}

/** "?a=1&b" as "?a=***&***": only names that look like option names are shown, never a value. */
function redactQuery(search: string): string {
  if (search.length <= 1) return '';
  const parts = search.slice(1).split('&').map((part) => {
    const eq = part.indexOf('=');
    return eq > 0 && /^[A-Za-z][A-Za-z0-9_]{0,39}$/.test(part.slice(0, eq)) ? `${part.slice(0, eq)}=***` : '***';
  });
  return `?${parts.join('&')}`;
}
