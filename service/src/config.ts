// idgate's settings as one frozen object. Each setting is declared once, in SETTINGS (config/settings.ts),
// whose rows give `Config` its setting fields and their types; the fields below are the ones several
// settings make together. `loadConfig` reads them all, checks them together, reports every problem at once
// (never a secret's value), and returns the frozen object.
import type { AddressMatcher } from './net.js';
import { bearerIssuersFrom, type BearerIssuer } from './config/bearer-issuers.js';
import { bindingCookieNameFor, cookieNameProblems, defaultCookieName } from './config/cookie-names.js';
import { isComplete, readSettings, settingFields } from './config/read.js';
import { redisConnectionFrom, type RedisConnection } from './config/redis-connection.js';
import { SETTINGS, type SettingFields } from './config/settings.js';

/** The settings: those a row fills as it is (SettingFields), and those made of several settings. */
export interface Config extends SettingFields {
  /** IDGATE_ISSUER exactly as configured (tokens' `iss` is compared with this, not with URL's href). */
  readonly issuerId: string;
  /** IDGATE_REDIRECT_URL, else <IDGATE_PUBLIC_URL>/_auth/callback. */
  readonly redirectUrl: URL;
  /** How to reach Redis: one server, Sentinel or Cluster, with credentials and TLS (redis.ts connects). */
  readonly redis: RedisConnection;
  /** The session cookie: IDGATE_COOKIE_NAME, else a default that fits IDGATE_INSECURE_HTTP and IDGATE_COOKIE_DOMAIN. */
  readonly cookieName: string;
  /** The login-binding cookie (`<cookieName>_login`): ties a callback to the browser that started the login. */
  readonly bindingCookieName: string;
  /** Cookies are Secure unless IDGATE_INSECURE_HTTP=1. */
  readonly cookieSecure: boolean;
  /** The public URL's host and IDGATE_ALLOWED_REDIRECT_HOSTS, lower case. */
  readonly allowedRedirectHosts: readonly string[];
  readonly bearerIssuers: readonly BearerIssuer[];
  /** IDGATE_TRUSTED_PROXIES: the matcher, and the text as configured (for describeConfig). */
  readonly trustedProxies: AddressMatcher;
  readonly trustedProxiesText: string;
  /** IDGATE_SESSION_CACHE_MS, kept well inside the idle timeout. */
  readonly sessionCacheMs: number;
}

export interface ConfigResult {
  config: Config | undefined;
  problems: string[];
}

/**
 * What is wrong with IDGATE_CHECK_SECRETS' values: the length and the characters only, never a secret.
 * HAProxy writes the secret into a header and a config line: characters outside these would need quoting.
 */
export function checkSecretProblems(secrets: readonly string[]): string[] {
  return secrets.flatMap((secret, i) => {
    if (secret.length < 32) return [`IDGATE_CHECK_SECRETS: secret #${i + 1} is ${secret.length} characters; each needs 32 or more (e.g. output of \`openssl rand -hex 32\`)`];
    if (!/^[A-Za-z0-9+/=._~-]+$/.test(secret)) return [`IDGATE_CHECK_SECRETS: secret #${i + 1} has a character other than letters, digits and +/=._~- (e.g. output of \`openssl rand -hex 32\`)`];
    return [];
  });
}

/**
 * Reads settings from `env` and, when IDGATE_CONFIG_FILE names one, a JSON file of `key: value` pairs
 * (environment wins). Never throws: problems come back as lines `SETTING: what is wrong (e.g. example)`.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): ConfigResult {
  const problems: string[] = [];
  const { raw, values } = readSettings(SETTINGS, env, problems);
  const redis = redisConnectionFrom(values, problems);

  const insecureHttp = values.IDGATE_INSECURE_HTTP === true;
  const { IDGATE_ISSUER: issuer, IDGATE_PUBLIC_URL: publicUrl } = values;
  if (issuer && issuer.protocol !== 'https:' && !insecureHttp) {
    problems.push('IDGATE_ISSUER: must use https (plain http only with IDGATE_INSECURE_HTTP=1, for local tests) (e.g. https://dev-123456.okta.com/oauth2/default)');
  }
  if (issuer && (issuer.search || issuer.hash)) problems.push('IDGATE_ISSUER: must not carry a query or fragment (e.g. https://dev-123456.okta.com/oauth2/default)');
  if (publicUrl) {
    if (publicUrl.protocol !== 'https:' && !insecureHttp) problems.push('IDGATE_PUBLIC_URL: must use https (plain http only with IDGATE_INSECURE_HTTP=1) (e.g. https://app.example.com)');
    if (publicUrl.pathname !== '/' || publicUrl.search || publicUrl.hash) problems.push('IDGATE_PUBLIC_URL: must be an origin only, without path, query or fragment (e.g. https://app.example.com)');
  }
  // The length only, never the secret. (Here rather than in a kind: docs/troubleshooting.md quotes this line.)
  (values.IDGATE_COOKIE_SECRETS ?? []).forEach((secret, i) => {
    if (secret.length < 32) problems.push(`IDGATE_COOKIE_SECRETS: secret #${i + 1} is ${secret.length} characters; each needs 32 or more (e.g. output of \`openssl rand -base64 48\`)`);
  });
  const checkSecrets = values.IDGATE_CHECK_SECRETS ?? [];
  // Without it any local process could ask for decisions (and renew a stolen session): only the demo and
  // the tests' insecure mode may go without.
  if (checkSecrets.length === 0 && !insecureHttp) problems.push('IDGATE_CHECK_SECRETS: required, the secret HAProxy sends with every check (its IDGATE_CHECK_SECRET), so that no other local process gets decisions (e.g. output of `openssl rand -hex 32`)');
  problems.push(...checkSecretProblems(checkSecrets));
  const bearerIssuers = bearerIssuersFrom(values, raw, problems);
  const oktaEventHookSecret = values.IDGATE_OKTA_EVENT_HOOK_SECRET;
  // The length only, never the secret: it is all that stands between the internet and ending anyone's sessions.
  if (oktaEventHookSecret !== undefined && oktaEventHookSecret.length < 24) problems.push(`IDGATE_OKTA_EVENT_HOOK_SECRET: is ${oktaEventHookSecret.length} characters; it needs 24 or more (e.g. output of \`openssl rand -base64 32\`)`);
  const { IDGATE_SESSION_IDLE_TTL: idle, IDGATE_SESSION_MAX_AGE: maxAge } = values;
  if (idle !== undefined && maxAge !== undefined && idle > maxAge) problems.push(`IDGATE_SESSION_IDLE_TTL: ${idle} is longer than IDGATE_SESSION_MAX_AGE (${maxAge}) (e.g. 14400)`);
  const cookies = { secure: !insecureHttp, domain: values.IDGATE_COOKIE_DOMAIN };
  const configuredCookieName = values.IDGATE_COOKIE_NAME;
  if (configuredCookieName !== undefined) problems.push(...cookieNameProblems(configuredCookieName, cookies));

  if (problems.length > 0 || !isComplete(values) || redis === undefined) return { config: undefined, problems };

  const cookieName = configuredCookieName ?? defaultCookieName(cookies);
  const config: Config = {
    ...settingFields(values),
    issuerId: (raw.get('IDGATE_ISSUER') ?? '').trim(),
    redirectUrl: values.IDGATE_REDIRECT_URL ?? new URL('/_auth/callback', values.IDGATE_PUBLIC_URL),
    redis,
    cookieName,
    bindingCookieName: bindingCookieNameFor(cookieName, cookies.secure),
    cookieSecure: cookies.secure,
    allowedRedirectHosts: Object.freeze([values.IDGATE_PUBLIC_URL.host.toLowerCase(), ...values.IDGATE_ALLOWED_REDIRECT_HOSTS.map((h) => h.toLowerCase())]),
    bearerIssuers: Object.freeze(bearerIssuers.map((b) => Object.freeze(b))),
    trustedProxies: values.IDGATE_TRUSTED_PROXIES.matcher,
    trustedProxiesText: values.IDGATE_TRUSTED_PROXIES.text,
    // A cached session skips the GETEX that renews its idle timeout: keep the cache well inside it.
    sessionCacheMs: Math.min(values.IDGATE_SESSION_CACHE_MS, values.IDGATE_SESSION_IDLE_TTL * 500),
  };
  return { config: Object.freeze(config), problems };
}

/** The Redis settings alone (IDGATE_REDIS_*), for `idgate sessions`, which needs no IdP settings. */
export function loadRedisConfig(env: NodeJS.ProcessEnv = process.env): { config: Pick<Config, 'redis' | 'redisTimeoutMs' | 'redisKeyPrefix' | 'redisWaitReplicas' | 'redisWaitMs'> | undefined; problems: string[] } {
  const problems: string[] = [];
  const { values } = readSettings(SETTINGS.filter((s) => s.env.startsWith('IDGATE_REDIS_')), env, problems);
  const redis = redisConnectionFrom(values, problems);
  const { IDGATE_REDIS_TIMEOUT_MS: redisTimeoutMs, IDGATE_REDIS_PREFIX: redisKeyPrefix, IDGATE_REDIS_WAIT_REPLICAS: redisWaitReplicas, IDGATE_REDIS_WAIT_MS: redisWaitMs } = values;
  // Each of these has a default: undefined only when its text did not parse, which a problem says.
  if (problems.length > 0 || !redis || redisTimeoutMs === undefined || redisKeyPrefix === undefined || redisWaitReplicas === undefined || redisWaitMs === undefined) return { config: undefined, problems };
  return { config: Object.freeze({ redis, redisTimeoutMs, redisKeyPrefix, redisWaitReplicas, redisWaitMs }), problems };
}
