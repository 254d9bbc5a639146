// Every setting idgate reads, declared once: environment name, config-file key, default, unit and meaning
// side by side. `loadConfig` parses them all, reports every problem together (never a secret's value), and
// returns a frozen object. docs/configuration.md is generated from SETTINGS below (settings-doc.ts).
import fs from 'node:fs';
import { parseTrustedProxies, type AddressMatcher } from './net.js';

/** One issuer whose bearer tokens idgate accepts. */
export interface BearerIssuer {
  /** Exactly as it appears in tokens' `iss`. */
  readonly issuer: string;
  readonly audiences: readonly string[];
  readonly algorithms: readonly string[];
  /** Verify JWT-shaped tokens locally against the issuer's JWKS (Okta custom authorization servers). */
  readonly jwt: boolean;
  /** Ask the issuer's introspection endpoint (RFC 7662) instead: opaque tokens, Okta's org server. */
  readonly introspection: boolean;
  /** Client credentials for introspection (default: IDGATE_CLIENT_ID / IDGATE_CLIENT_SECRET). */
  readonly clientId: string;
  readonly clientSecret: string;
  /** Overrides the jwks_uri from discovery. */
  readonly jwksUri: string | undefined;
  /** The only client ids (cid, client_id or azp) whose tokens count; undefined: any client. */
  readonly clientIds: readonly string[] | undefined;
  /** Take the tokens' `email` without `email_verified: true` (for issuers that never send it). */
  readonly trustUnverifiedEmail: boolean;
  /**
   * The operator accepts tokens of any client for the org-wide audience (ORG_WIDE_AUDIENCE) on rules that
   * name no `clients` (tokens/org-wide-audience.ts); false: such a policy is refused.
   */
  readonly anyClient: boolean;
}

/**
 * The audience of Okta's `default` authorization server: every access token it issues carries it,
 * whichever app of the org asked, so alone it says nothing about who the token is for.
 */
export const ORG_WIDE_AUDIENCE = 'api://default';

export interface Config {
  readonly issuer: URL;
  /** IDGATE_ISSUER exactly as configured (tokens' `iss` is compared with this, not with URL's href). */
  readonly issuerId: string;
  readonly clientId: string;
  readonly clientSecret: string;
  readonly publicUrl: URL;
  readonly redirectUrl: URL;
  readonly redisUrl: string;
  readonly redisTimeoutMs: number;
  /** How to reach Redis: one server, Sentinel or Cluster, with credentials and TLS (redis.ts connects). */
  readonly redis: RedisConnection;
  readonly cookieSecrets: readonly string[];
  /** The session cookie. */
  readonly cookieName: string;
  /** The login-binding cookie (`<cookieName>_login`): ties a callback to the browser that started the login. */
  readonly bindingCookieName: string;
  readonly cookieDomain: string | undefined;
  readonly cookieSecure: boolean;
  readonly sessionIdleTtlSeconds: number;
  readonly sessionMaxAgeSeconds: number;
  readonly loginTtlSeconds: number;
  readonly loginMaxPendingPerBrowser: number;
  readonly loginMaxPending: number;
  readonly scopes: string;
  readonly groupsClaim: string;
  readonly rolesClaim: string;
  /** Take the login's `email` without `email_verified: true` (IdPs that never send it). */
  readonly trustUnverifiedEmail: boolean;
  /** The Authorization header value Okta's event hook sends; undefined: POST /_auth/okta-events is off. */
  readonly oktaEventHookSecret: string | undefined;
  readonly allowedRedirectHosts: readonly string[];
  readonly bearerIssuers: readonly BearerIssuer[];
  readonly clockSkewSeconds: number;
  /** DPoP proofs (RFC 9449): how old a proof's `iat` may be, and the algorithms its key may sign with. */
  readonly dpopMaxAgeSeconds: number;
  readonly dpopAlgorithms: readonly string[];
  /** Proofs must carry a nonce idgate issued (RFC 9449 section 9; tokens/dpop-nonce.ts). */
  readonly dpopNonceRequired: boolean;
  readonly jwksCacheSeconds: number;
  readonly jwksCooldownSeconds: number;
  readonly introspectionCacheSeconds: number;
  readonly introspectionCacheSize: number;
  readonly introspectionMaxInflightPerSource: number;
  readonly introspectionCallsPerSource: number;
  readonly policyFile: string | undefined;
  readonly listen: { readonly host: string; readonly port: number };
  /** undefined: no SPOE agent (the default). */
  readonly spoeListen: { readonly host: string; readonly port: number } | undefined;
  readonly spoeMaxConnections: number;
  readonly spoeMaxInFlight: number;
  readonly trustedProxies: AddressMatcher;
  readonly trustedProxiesText: string;
  /**
   * IDGATE_CHECK_SECRETS, newest first: a check (HTTP or SPOE) is answered only when it carries one of
   * them. Empty only with IDGATE_INSECURE_HTTP=1: then any trusted-proxy address may ask.
   */
  readonly checkSecrets: readonly string[];
  readonly insecureHttp: boolean;
  readonly redisKeyPrefix: string;
  readonly logLevel: string;
  readonly logFile: string | undefined;
  readonly sessionCacheMs: number;
  readonly sessionCacheSize: number;
  readonly shutdownDrainMs: number;
  /** Replicas a session or revocation write waits for (Redis WAIT): a count, or 'auto' (1 when one is online). */
  readonly redisWaitReplicas: number | 'auto';
  /** How long such a write waits for them at most, ms. */
  readonly redisWaitMs: number;
}

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

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

/** What every row of SETTINGS says, whatever its kind. */
interface SettingRow {
  /** Environment variable. */
  env: string;
  /** Key in the optional JSON config file (IDGATE_CONFIG_FILE). */
  key: string;
  /** undefined means required (unless `optional`). */
  default?: string;
  optional?: boolean;
  doc: string;
  example: string;
}

/**
 * One setting: its row and its kind, with what that kind needs to check a value (bounds, the values
 * allowed...). KINDS below holds each kind's parser and the words the docs use for its values.
 */
export type Setting = SettingRow &
  (
    | { kind: 'url' | 'string' | 'secret' | 'secret-list' | 'bool' | 'proxies' | 'json' | 'hostports' | 'replicas' }
    /** `oneOf`: the only items allowed, and why (said when one is not). */
    | { kind: 'list'; oneOf?: { readonly values: ReadonlySet<string>; readonly what: string } }
    /** `min`: the smallest value (default 1). */
    | { kind: 'int'; min?: number }
    | { kind: 'enum'; values: readonly string[] }
    /** `off`: the word that turns the listener off (then the value is undefined). */
    | { kind: 'listen'; off?: string }
  );

export type Kind = Setting['kind'];

/** What is wrong with a value: one problem (shown with the setting's example), or whole lines of their own. */
type Invalid = { problem: string } | { problems: string[] };

const isInvalid = (value: unknown): value is Invalid => typeof value === 'object' && value !== null && ('problem' in value || 'problems' in value);

/** A kind: how its text becomes a value, and how the settings reference describes the values it takes. */
interface KindSpec<S extends Setting> {
  parse(value: string, setting: S): unknown;
  /** The "value" column of docs/configuration.md. */
  describe(setting: S): string;
}

type Kinds = { [K in Kind]: KindSpec<Extract<Setting, { kind: K }>> };

const listItems = (value: string) => value.split(',').map((v) => v.trim()).filter((v) => v !== '');

const HOST_PORT = /^(\[[0-9a-fA-F:]+\]|[^:\s]+):(\d{1,5})$/;

export const KINDS: Kinds = {
  url: {
    parse(value) {
      let url: URL;
      try {
        url = new URL(value);
      } catch {
        return { problem: 'not a URL' };
      }
      if (url.protocol !== 'https:' && url.protocol !== 'http:') return { problem: 'must be an http(s) URL' };
      if (url.username || url.password) return { problem: 'must not carry credentials' };
      return url;
    },
    describe: () => 'URL',
  },
  string: { parse: singleLine, describe: () => 'text' },
  secret: { parse: singleLine, describe: () => 'secret' },
  'secret-list': { parse: listItems, describe: () => 'secrets, comma-separated' },
  list: {
    parse(value, setting) {
      const items = listItems(value);
      const allowed = setting.oneOf;
      if (!allowed) return items;
      const problems = items.flatMap((item) => (allowed.values.has(item) ? [] : [`${setting.env}: "${item}" is not ${allowed.what} (one of ${[...allowed.values].join(', ')})`]));
      return problems.length > 0 ? { problems } : items;
    },
    describe: () => 'list, comma-separated',
  },
  int: {
    parse(value, setting) {
      if (!/^\d+$/.test(value.trim())) return { problem: `"${value}" is not a whole number` };
      const n = Number(value);
      const min = setting.min ?? 1;
      if (n < min || !Number.isSafeInteger(n)) return { problem: min === 0 ? 'must be a whole number, 0 or more' : 'must be a positive whole number' };
      return n;
    },
    describe: (setting) => ((setting.min ?? 1) === 0 ? 'whole number, 0 or more' : 'whole number, 1 or more'),
  },
  bool: {
    parse: (value) => parseFlag(value) ?? { problem: `"${value}" is not 1/0 or true/false` },
    describe: () => '`1` or `0`',
  },
  enum: {
    parse: (value, setting) => (setting.values.includes(value.trim()) ? value.trim() : { problem: `"${value.trim()}" is not ${orList(setting.values)}` }),
    describe: (setting) => orList(setting.values.map((v) => `\`${v}\``)),
  },
  listen: {
    parse(value, setting) {
      if (setting.off !== undefined && value.trim() === setting.off) return undefined;
      const m = HOST_PORT.exec(value.trim());
      if (!m || Number(m[2]) > 65535) return { problem: `"${value}" is not host:port${setting.off !== undefined ? `, or unset or "${setting.off}" for no agent` : ''}` };
      return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
    },
    describe: (setting) => (setting.off !== undefined ? `host:port or \`${setting.off}\`` : 'host:port'),
  },
  replicas: {
    parse(value) {
      const text = value.trim();
      return text === 'auto' ? 'auto' : /^\d{1,2}$/.test(text) ? Number(text) : { problem: `"${text}" is not auto, 0 or a count of replicas` };
    },
    describe: () => '`auto` or a count',
  },
  proxies: {
    parse(value) {
      const result = parseTrustedProxies(value);
      if (typeof result === 'string') return { problem: result };
      return { matcher: result, text: value };
    },
    describe: () => 'addresses and CIDRs, comma-separated',
  },
  json: {
    parse(value) {
      try {
        return JSON.parse(value) as unknown;
      } catch (err) {
        return { problem: `not valid JSON: ${(err as Error).message}` };
      }
    },
    describe: () => 'JSON',
  },
  hostports: {
    parse(value) {
      const out: HostPort[] = [];
      for (const item of listItems(value)) {
        const m = /^(\[[0-9a-fA-F:]+\]|[^:\s\[\]]+):(\d{1,5})$/.exec(item);
        if (!m || Number(m[2]) === 0 || Number(m[2]) > 65535) return { problem: `"${item}" is not host:port` };
        out.push({ host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) });
      }
      return out.length > 0 ? out : { problem: 'names no host:port' };
    },
    describe: () => 'host:port list, comma-separated',
  },
};

function singleLine(value: string): string | Invalid {
  if (/[\r\n\0]/.test(value)) return { problem: 'must be a single line' };
  return value.trim();
}

/** "a, b or c". */
function orList(values: readonly string[]): string {
  return values.length < 2 ? values.join('') : `${values.slice(0, -1).join(', ')} or ${values[values.length - 1]}`;
}

/** A setting's value parsed by its kind: the value, or what is wrong with it. */
function parseValue(setting: Setting, value: string): unknown {
  return (KINDS[setting.kind] as KindSpec<Setting>).parse(value, setting);
}

/** The words the settings reference uses for a setting's values. */
export function describeValues(setting: Setting): string {
  return (KINDS[setting.kind] as KindSpec<Setting>).describe(setting);
}

/** A setting's row; throws on a name SETTINGS does not declare (a typo in the caller). */
export function settingNamed(env: string): Setting {
  const setting = SETTINGS.find((s) => s.env === env);
  if (!setting) throw new Error(`${env} is not a setting (service/src/config.ts SETTINGS)`);
  return setting;
}

/** A setting's default as SETTINGS declares it, for the CLI's help and its fallbacks (never restated there). */
export function defaultOf(env: string): string {
  const { default: value } = settingNamed(env);
  if (value === undefined) throw new Error(`${env} has no default`);
  return value;
}

// The default cookie name. A `__Host-` cookie is one the browser accepts only when it is Secure, has Path=/
// and no Domain, so no sibling subdomain and no plain-http page can plant or overwrite it. It needs HTTPS,
// and it cannot be shared across subdomains: the plain name is the default when either is impossible.
const HOST_COOKIE_PREFIX = '__Host-';
const HOST_COOKIE_NAME = `${HOST_COOKIE_PREFIX}idgate`;
const PLAIN_COOKIE_NAME = '_idgate';

// Bearer tokens' signature algorithms idgate accepts: asymmetric only, so no shared secret (and never `none`).
const ASYMMETRIC_ALGORITHMS = new Set(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA']);
// DPoP proofs': those of the keys a proof may carry (tokens/dpop.ts proofKeyProblem), so not ES512 (P-521).
const DPOP_ALGORITHMS = new Set([...ASYMMETRIC_ALGORITHMS].filter((alg) => alg !== 'ES512'));

export const SETTINGS: readonly Setting[] = [
  { env: 'IDGATE_ISSUER', key: 'issuer', kind: 'url', doc: 'OIDC issuer URL (discovery at <issuer>/.well-known/openid-configuration)', example: 'https://dev-123456.okta.com/oauth2/default' },
  { env: 'IDGATE_CLIENT_ID', key: 'client_id', kind: 'string', doc: 'OIDC client id of the idgate app', example: '0oa1b2c3d4e5f6g7h8i9' },
  { env: 'IDGATE_CLIENT_SECRET', key: 'client_secret', kind: 'secret', doc: 'OIDC client secret (sent with client_secret_basic)', example: '<the client secret from the IdP>' },
  { env: 'IDGATE_PUBLIC_URL', key: 'public_url', kind: 'url', doc: 'origin users see; the callback is <public_url>/_auth/callback', example: 'https://app.example.com' },
  { env: 'IDGATE_REDIRECT_URL', key: 'redirect_url', kind: 'url', optional: true, doc: 'callback URL registered at the IdP, when not <public_url>/_auth/callback', example: 'https://app.example.com/_auth/callback' },
  { env: 'IDGATE_REDIS_URL', key: 'redis_url', kind: 'string', default: 'redis://127.0.0.1:6380', doc: 'Redis holding sessions and pending logins, shared by every replica', example: 'redis://:password@10.0.0.5:6379/0' },
  { env: 'IDGATE_REDIS_TIMEOUT_MS', key: 'redis_timeout_ms', kind: 'int', default: '500', doc: 'milliseconds a Redis command may take before the check answers 503', example: '500' },
  { env: 'IDGATE_REDIS_SENTINELS', key: 'redis_sentinels', kind: 'hostports', optional: true, doc: 'Redis Sentinel: comma-separated host:port of the sentinels (then IDGATE_REDIS_URL gives only the scheme, credentials and db; its host is not used)', example: '10.0.0.5:26379,10.0.0.6:26379,10.0.0.7:26379' },
  { env: 'IDGATE_REDIS_SENTINEL_NAME', key: 'redis_sentinel_name', kind: 'string', optional: true, doc: 'Redis Sentinel: the master group name (sentinel.conf `sentinel monitor <name> ...`)', example: 'idgate' },
  { env: 'IDGATE_REDIS_SENTINEL_USERNAME', key: 'redis_sentinel_username', kind: 'string', optional: true, doc: 'Redis Sentinel: ACL user on the sentinels (sentinel.conf `sentinel sentinel-user`)', example: 'idgate-sentinel' },
  { env: 'IDGATE_REDIS_SENTINEL_PASSWORD', key: 'redis_sentinel_password', kind: 'secret', optional: true, doc: 'Redis Sentinel: password of the sentinels themselves (sentinel.conf `requirepass`), not of the data nodes', example: '<the sentinels\' password>' },
  { env: 'IDGATE_REDIS_CLUSTER_NODES', key: 'redis_cluster_nodes', kind: 'hostports', optional: true, doc: 'Redis Cluster: comma-separated host:port of some nodes (the client learns the others); IDGATE_REDIS_URL then gives only the scheme and credentials', example: '10.0.0.5:6379,10.0.0.6:6379,10.0.0.7:6379' },
  { env: 'IDGATE_REDIS_USERNAME', key: 'redis_username', kind: 'string', optional: true, doc: 'ACL user on the Redis data nodes, in every topology (or in IDGATE_REDIS_URL, not both)', example: 'idgate' },
  { env: 'IDGATE_REDIS_PASSWORD', key: 'redis_password', kind: 'secret', optional: true, doc: 'password on the Redis data nodes, in every topology (or in IDGATE_REDIS_URL, not both)', example: '<the Redis password>' },
  { env: 'IDGATE_REDIS_TLS', key: 'redis_tls', kind: 'bool', default: '0', doc: 'TLS to every Redis node and sentinel (a rediss:// URL turns it on too)', example: '1' },
  { env: 'IDGATE_REDIS_CA_FILE', key: 'redis_ca_file', kind: 'string', optional: true, doc: 'PEM file of the CA(s) that sign the Redis servers\' certificates (unset: the system\'s CAs); needs TLS on', example: '/etc/idgate/redis-ca.pem' },
  { env: 'IDGATE_COOKIE_SECRETS', key: 'cookie_secrets', kind: 'secret-list', doc: 'comma-separated secrets (32+ characters each), newest first: the first signs, all verify', example: '<openssl rand -base64 48>' },
  { env: 'IDGATE_COOKIE_NAME', key: 'cookie_name', kind: 'string', optional: true, doc: `session cookie name (the login-binding cookie adds "_login", and is always a __Host- cookie when Secure); unset: ${HOST_COOKIE_NAME} when cookies are Secure and IDGATE_COOKIE_DOMAIN is unset, else ${PLAIN_COOKIE_NAME}`, example: '__Host-idgate' },
  { env: 'IDGATE_COOKIE_DOMAIN', key: 'cookie_domain', kind: 'string', optional: true, doc: 'session cookie Domain attribute, to share one login across subdomains (rules out the __Host- prefix for the session cookie; the login-binding cookie stays host-only and __Host-)', example: 'example.com' },
  { env: 'IDGATE_SESSION_IDLE_TTL', key: 'session_idle_ttl', kind: 'int', default: '14400', doc: 'seconds of inactivity after which a session ends', example: '14400' },
  { env: 'IDGATE_SESSION_MAX_AGE', key: 'session_max_age', kind: 'int', default: '86400', doc: 'seconds after login after which a session ends whatever its activity', example: '86400' },
  { env: 'IDGATE_LOGIN_TTL', key: 'login_ttl', kind: 'int', default: '600', doc: 'seconds a started login may take before its state expires', example: '600' },
  { env: 'IDGATE_LOGIN_MAX_PENDING_PER_BROWSER', key: 'login_max_pending_per_browser', kind: 'int', default: '10', doc: 'started logins one browser may have pending (tabs signing in at once); beyond, its oldest is dropped', example: '10' },
  { env: 'IDGATE_LOGIN_MAX_PENDING', key: 'login_max_pending', kind: 'int', default: '10000', doc: 'started logins pending in Redis at most, all browsers together (about 1 kB each); beyond, login answers 503 with Retry-After', example: '10000' },
  { env: 'IDGATE_SCOPES', key: 'scopes', kind: 'string', default: 'openid profile email', doc: 'scopes requested at login (add offline_access for silent renewal; groups only where the IdP defines that scope: not Okta\'s custom servers, whose groups come from a claim)', example: 'openid profile email offline_access' },
  { env: 'IDGATE_GROUPS_CLAIM', key: 'groups_claim', kind: 'string', default: 'groups', doc: 'claim holding groups, or a dotted path into nested claims (read from userinfo when the ID token lacks it)', example: 'groups' },
  { env: 'IDGATE_ROLES_CLAIM', key: 'roles_claim', kind: 'string', default: 'roles', doc: 'claim holding roles, or a dotted path into nested claims', example: 'realm_access.roles' },
  { env: 'IDGATE_TRUST_UNVERIFIED_EMAIL', key: 'trust_unverified_email', kind: 'bool', default: '0', doc: 'use the login\'s email (emails/email_domains conditions, X-Auth-Email) even without email_verified: true, for IdPs that never send it', example: '1' },
  { env: 'IDGATE_OKTA_EVENT_HOOK_SECRET', key: 'okta_event_hook_secret', kind: 'secret', optional: true, doc: 'the Authorization header value Okta\'s event hook sends (24+ characters): turns on /_auth/okta-events, which ends a user\'s sessions when Okta deactivates, suspends, signs out or resets the password of that user, or unassigns them from the app; unset: that route does not exist', example: '<openssl rand -base64 32>' },
  { env: 'IDGATE_ALLOWED_REDIRECT_HOSTS', key: 'allowed_redirect_hosts', kind: 'list', default: '', doc: 'hosts (or *.domain) that login may return to besides the public URL\'s host', example: 'app.example.com,*.apps.example.com' },
  { env: 'IDGATE_JWT_AUDIENCES', key: 'jwt_audiences', kind: 'list', default: 'api://default', doc: 'accepted `aud` values of bearer access tokens from IDGATE_ISSUER (when IDGATE_BEARER_ISSUERS is unset); never IDGATE_CLIENT_ID, the audience of ID tokens', example: 'api://default' },
  { env: 'IDGATE_JWT_CLIENT_IDS', key: 'jwt_client_ids', kind: 'list', optional: true, doc: 'the only client ids (`cid`, `client_id` or `azp`) whose bearer tokens from IDGATE_ISSUER count (when IDGATE_BEARER_ISSUERS is unset); unset: any client\'s, which with the audience api://default needs IDGATE_JWT_ANY_CLIENT or `clients` on every rule that takes tokens', example: '0oa-ci-bot,0oa-reports' },
  { env: 'IDGATE_JWT_ANY_CLIENT', key: 'jwt_any_client', kind: 'bool', default: '0', doc: 'accept tokens of the audience api://default from any app of the Okta org on rules that name no `clients` (Okta\'s default server puts that audience on every token, whichever app asked); 0: a policy where such a token would count is refused at check-config, at start and on reload (when IDGATE_BEARER_ISSUERS is set: each entry\'s `any_client`)', example: '1' },
  { env: 'IDGATE_JWT_ALGORITHMS', key: 'jwt_algorithms', kind: 'list', oneOf: { values: ASYMMETRIC_ALGORITHMS, what: 'an accepted asymmetric algorithm' }, default: 'RS256', doc: 'accepted signature algorithms of bearer tokens (asymmetric only: none and HS* are refused)', example: 'RS256,ES256' },
  { env: 'IDGATE_BEARER_ISSUERS', key: 'bearer_issuers', kind: 'json', optional: true, doc: 'JSON list of issuers whose bearer tokens are accepted, each {issuer, audiences, algorithms, jwt, introspection, client_id, client_secret, jwks_uri, client_ids, any_client, trust_unverified_email}; unset: IDGATE_ISSUER with IDGATE_JWT_AUDIENCES', example: '[{"issuer":"https://example.okta.com/oauth2/default","audiences":["api://default"],"client_ids":["0oa9service1"]},{"issuer":"https://example.okta.com","jwt":false,"introspection":true,"client_ids":["0oa9service1"]}]' },
  { env: 'IDGATE_CLOCK_SKEW', key: 'clock_skew', kind: 'int', default: '30', doc: 'seconds of clock difference tolerated on exp/nbf/iat', example: '30' },
  { env: 'IDGATE_DPOP_MAX_AGE', key: 'dpop_max_age', kind: 'int', default: '300', doc: 'seconds a DPoP proof (RFC 9449) is good for after its `iat` (plus IDGATE_CLOCK_SKEW either way); its `jti` is remembered in Redis that long, so a replayed proof is refused on every replica', example: '300' },
  { env: 'IDGATE_DPOP_ALGORITHMS', key: 'dpop_algorithms', kind: 'list', oneOf: { values: DPOP_ALGORITHMS, what: 'an accepted DPoP algorithm' }, default: 'ES256,RS256,PS256,EdDSA', doc: 'accepted signature algorithms of DPoP proofs, also announced in the `algs` of a DPoP challenge; whatever the algorithm, a proof\'s key must be EC P-256 or P-384, Ed25519, or RSA of 2048 to 4096 bits with exponent 65537 (others get 401 before any verification)', example: 'ES256,RS256' },
  { env: 'IDGATE_DPOP_NONCE', key: 'dpop_nonce', kind: 'bool', default: '0', doc: 'require a nonce idgate issued in DPoP proofs (RFC 9449 section 9): a proof without one, with a forged one or with one issued 5 to 10 minutes ago or earlier gets 401 `use_dpop_nonce` and a `DPoP-Nonce` header to retry with; turn on when proofs made in advance must not count. Stateless: nonces are keyed by the first IDGATE_COOKIE_SECRETS entry (every entry verifies), so every replica accepts every other\'s', example: '1' },
  { env: 'IDGATE_JWKS_CACHE', key: 'jwks_cache', kind: 'int', default: '600', doc: 'seconds after which signing keys are fetched again (in the background; cached keys keep working meanwhile)', example: '600' },
  { env: 'IDGATE_JWKS_COOLDOWN', key: 'jwks_cooldown', kind: 'int', default: '30', doc: 'seconds between two key fetches caused by unknown key ids (a flood of bogus kids cannot hammer the IdP)', example: '30' },
  { env: 'IDGATE_INTROSPECTION_CACHE', key: 'introspection_cache', kind: 'int', default: '300', doc: 'seconds an introspection answer is reused at most (never past the token\'s exp; inactive tokens: 30 s at most)', example: '300' },
  { env: 'IDGATE_INTROSPECTION_CACHE_SIZE', key: 'introspection_cache_size', kind: 'int', default: '10000', doc: 'introspection answers kept at most (active and inactive answers each have a cache of this size)', example: '10000' },
  { env: 'IDGATE_INTROSPECTION_MAX_INFLIGHT_PER_SOURCE', key: 'introspection_max_inflight_per_source', kind: 'int', default: '8', doc: 'introspection calls under way at most for one client address (IPv6: its /64); beyond, its token checks answer 503', example: '8' },
  { env: 'IDGATE_INTROSPECTION_CALLS_PER_SOURCE', key: 'introspection_calls_per_source', kind: 'int', default: '300', doc: 'introspection calls (cache misses) one client address (IPv6: its /64) may cause per minute; beyond, its token checks answer 503', example: '300' },
  { env: 'IDGATE_POLICY_FILE', key: 'policy_file', kind: 'string', optional: true, doc: 'YAML policy file (reloaded on SIGHUP and on change); unset: any signed-in user (browser session) may pass everywhere, and bearer tokens count nowhere', example: '/etc/idgate/policy.yaml' },
  { env: 'IDGATE_LISTEN', key: 'listen', kind: 'listen', default: '127.0.0.1:4180', doc: 'address:port of the check and browser endpoints; port 0: any free port, logged in the "idgate listening" line (tests)', example: '127.0.0.1:4180' },
  { env: 'IDGATE_SPOE_LISTEN', key: 'spoe_listen', kind: 'listen', off: 'off', optional: true, doc: 'address:port of the SPOE agent (HAProxy\'s binary offload protocol); unset or "off": no agent, no port; port 0: any free port, logged in the "SPOE agent listening" line (tests)', example: '127.0.0.1:4181' },
  { env: 'IDGATE_SPOE_MAX_CONNECTIONS', key: 'spoe_max_connections', kind: 'int', default: '256', doc: 'connections the SPOE agent holds at most (HAProxy opens a few per agent); more are closed at once', example: '256' },
  { env: 'IDGATE_SPOE_MAX_INFLIGHT', key: 'spoe_max_inflight', kind: 'int', default: '64', doc: 'checks one SPOE connection may have running at once (HAProxy\'s max-waiting-frames: 20 by default); beyond it a frame is answered status 503 at once', example: '64' },
  { env: 'IDGATE_TRUSTED_PROXIES', key: 'trusted_proxies', kind: 'proxies', default: '127.0.0.0/8,::1', doc: 'addresses or CIDRs of the HAProxy nodes: the only peers whose checks are answered (others get 403 untrusted_peer) and whose SPOE connections are served', example: '127.0.0.1,10.0.0.0/8' },
  { env: 'IDGATE_CHECK_SECRETS', key: 'check_secrets', kind: 'secret-list', optional: true, doc: 'comma-separated secrets (32+ characters each: letters, digits, `+/=._~-`), newest first: HAProxy sends one with every check (its IDGATE_CHECK_SECRET), idgate answers a check only when it carries one of these, else 403 untrusted_peer; several during a rotation. Required, unless IDGATE_INSECURE_HTTP=1 (then unset lets any IDGATE_TRUSTED_PROXIES address ask, with a warning at start)', example: '<openssl rand -hex 32>' },
  { env: 'IDGATE_INSECURE_HTTP', key: 'insecure_http', kind: 'bool', default: '0', doc: 'allow a plain-http issuer and non-Secure cookies (local demo and tests only; logged as a warning at start)', example: '1' },
  { env: 'IDGATE_SESSION_CACHE_MS', key: 'session_cache_ms', kind: 'int', min: 0, default: '5000', doc: 'milliseconds a replica reuses a session read from Redis (revocations reach every replica at once); 0: off', example: '5000' },
  { env: 'IDGATE_SESSION_CACHE_SIZE', key: 'session_cache_size', kind: 'int', default: '10000', doc: 'sessions a replica keeps in that cache at most (about 1 kB each)', example: '10000' },
  { env: 'IDGATE_SHUTDOWN_DRAIN_MS', key: 'shutdown_drain_ms', kind: 'int', min: 0, default: '3000', doc: 'milliseconds a stopping replica (SIGTERM) keeps answering while /readyz says 503, so HAProxy takes it out first (its health check: fall x inter, 2 s shipped); then it finishes what is running and exits', example: '3000' },
  { env: 'IDGATE_LOG_LEVEL', key: 'log_level', kind: 'enum', values: ['info', 'warn', 'error'], default: 'info', doc: 'lowest level logged: info (every decision), warn or error', example: 'info' },
  { env: 'IDGATE_LOG_FILE', key: 'log_file', kind: 'string', optional: true, doc: 'file the JSON log and audit lines are appended to; unset: standard output', example: '/var/log/idgate/audit.log' },
  { env: 'IDGATE_REDIS_PREFIX', key: 'redis_prefix', kind: 'string', default: 'idgate:', doc: 'prefix of every Redis key idgate writes', example: 'idgate:' },
  { env: 'IDGATE_REDIS_WAIT_REPLICAS', key: 'redis_wait_replicas', kind: 'replicas', default: 'auto', doc: 'replicas a login, renewal or revocation waits for (Redis WAIT) before answering: auto (1 when Redis reports an online replica, else none), 0 (never) or a count', example: 'auto' },
  { env: 'IDGATE_REDIS_WAIT_MS', key: 'redis_wait_ms', kind: 'int', default: '100', doc: 'milliseconds such a write waits for its replicas at most; then it goes on (the write is on the primary), logged and counted', example: '100' },
];

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

/** Raw and parsed values of `settings` from `env` and IDGATE_CONFIG_FILE; problems appended. */
function readSettings(settings: readonly Setting[], env: NodeJS.ProcessEnv, problems: string[]): { raw: Map<string, string | undefined>; parsed: Record<string, unknown> } {
  const fileValues = readConfigFile(env.IDGATE_CONFIG_FILE, problems);
  const raw = new Map<string, string | undefined>();
  for (const s of settings) {
    const fromEnv = env[s.env];
    const fromFile = fileValues[s.key];
    const fileText = fromFile === undefined ? undefined : typeof fromFile === 'string' ? fromFile : s.kind === 'json' ? JSON.stringify(fromFile) : Array.isArray(fromFile) ? fromFile.join(',') : String(fromFile);
    const value = fromEnv !== undefined && fromEnv !== '' ? fromEnv : fileText ?? s.default;
    raw.set(s.env, value);
  }
  const known = new Set(SETTINGS.map((s) => s.key));
  for (const key of Object.keys(fileValues)) {
    if (!known.has(key)) problems.push(`${env.IDGATE_CONFIG_FILE}: unknown setting "${key}" (known: ${[...known].join(', ')})`);
  }

  const parsed: Record<string, unknown> = {};
  for (const s of settings) {
    const value = raw.get(s.env);
    if (value === undefined || value === '') {
      if (s.default === undefined && !s.optional) problems.push(`${s.env}: required, ${s.doc} (e.g. ${s.example})`);
      parsed[s.env] = s.kind === 'list' || s.kind === 'secret-list' ? [] : undefined;
      continue;
    }
    const result = parseValue(s, value);
    if (!isInvalid(result)) parsed[s.env] = result;
    else if ('problem' in result) problems.push(`${s.env}: ${result.problem} (e.g. ${s.example})`);
    else problems.push(...result.problems);
  }

  return { raw, parsed };
}

/**
 * Reads settings from `env` and, when IDGATE_CONFIG_FILE names one, a JSON file of `key: value` pairs
 * (environment wins). Never throws: problems come back as lines `SETTING: what is wrong (e.g. example)`.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): ConfigResult {
  const problems: string[] = [];
  const { raw, parsed } = readSettings(SETTINGS, env, problems);
  const redis = redisConnectionFrom(parsed, problems);

  const insecureHttp = parsed.IDGATE_INSECURE_HTTP === true;
  const issuer = parsed.IDGATE_ISSUER as URL | undefined;
  const publicUrl = parsed.IDGATE_PUBLIC_URL as URL | undefined;
  if (issuer && issuer.protocol !== 'https:' && !insecureHttp) {
    problems.push('IDGATE_ISSUER: must use https (plain http only with IDGATE_INSECURE_HTTP=1, for local tests) (e.g. https://dev-123456.okta.com/oauth2/default)');
  }
  if (issuer && (issuer.search || issuer.hash)) problems.push('IDGATE_ISSUER: must not carry a query or fragment (e.g. https://dev-123456.okta.com/oauth2/default)');
  if (publicUrl) {
    if (publicUrl.protocol !== 'https:' && !insecureHttp) problems.push('IDGATE_PUBLIC_URL: must use https (plain http only with IDGATE_INSECURE_HTTP=1) (e.g. https://app.example.com)');
    if (publicUrl.pathname !== '/' || publicUrl.search || publicUrl.hash) problems.push('IDGATE_PUBLIC_URL: must be an origin only, without path, query or fragment (e.g. https://app.example.com)');
  }
  const secrets = parsed.IDGATE_COOKIE_SECRETS as string[];
  // The length only, never the secret. (Here rather than in a kind: docs/troubleshooting.md quotes this line.)
  secrets.forEach((secret, i) => {
    if (secret.length < 32) problems.push(`IDGATE_COOKIE_SECRETS: secret #${i + 1} is ${secret.length} characters; each needs 32 or more (e.g. output of \`openssl rand -base64 48\`)`);
  });
  const checkSecrets = parsed.IDGATE_CHECK_SECRETS as string[];
  // Without it any local process could ask for decisions (and renew a stolen session): only the demo and
  // the tests' insecure mode may go without.
  if (checkSecrets.length === 0 && !insecureHttp) problems.push('IDGATE_CHECK_SECRETS: required, the secret HAProxy sends with every check (its IDGATE_CHECK_SECRET), so that no other local process gets decisions (e.g. output of `openssl rand -hex 32`)');
  problems.push(...checkSecretProblems(checkSecrets));
  const algorithms = (parsed.IDGATE_JWT_ALGORITHMS as string[] | undefined) ?? [];
  const issuerId = (raw.get('IDGATE_ISSUER') ?? '').trim();
  const trustUnverifiedEmail = parsed.IDGATE_TRUST_UNVERIFIED_EMAIL === true;
  const jwtClientIds = parsed.IDGATE_JWT_CLIENT_IDS as string[];
  if (parsed.IDGATE_BEARER_ISSUERS !== undefined) {
    for (const env of ['IDGATE_JWT_CLIENT_IDS', 'IDGATE_JWT_ANY_CLIENT']) {
      if (raw.get(env) !== settingNamed(env).default) problems.push(`${env}: set together with IDGATE_BEARER_ISSUERS, which it does not apply to; use the entry's ${env === 'IDGATE_JWT_CLIENT_IDS' ? '"client_ids"' : '"any_client"'} (e.g. {"issuer": "https://example.okta.com/oauth2/default", "audiences": ["api://default"], "client_ids": ["0oa-ci-bot"]})`);
    }
  }
  const bearerIssuers: BearerIssuer[] = parsed.IDGATE_BEARER_ISSUERS === undefined
    ? [{ issuer: issuerId, audiences: parsed.IDGATE_JWT_AUDIENCES as string[], algorithms, jwt: true, introspection: false, clientId: parsed.IDGATE_CLIENT_ID as string, clientSecret: parsed.IDGATE_CLIENT_SECRET as string, jwksUri: undefined, clientIds: jwtClientIds.length > 0 ? jwtClientIds : undefined, anyClient: parsed.IDGATE_JWT_ANY_CLIENT === true, trustUnverifiedEmail }]
    : parseBearerIssuers(parsed.IDGATE_BEARER_ISSUERS, { algorithms, insecureHttp, clientId: parsed.IDGATE_CLIENT_ID as string, clientSecret: parsed.IDGATE_CLIENT_SECRET as string }, problems);
  // The login's ID tokens are issued to idgate's client id (their `aud`): an audience equal to it would let
  // an ID token pass as an access token.
  const ownClientId = parsed.IDGATE_CLIENT_ID as string | undefined;
  for (const entry of bearerIssuers) {
    if (ownClientId && entry.issuer === issuerId && entry.audiences.includes(ownClientId)) {
      problems.push(`${parsed.IDGATE_BEARER_ISSUERS === undefined ? 'IDGATE_JWT_AUDIENCES' : 'IDGATE_BEARER_ISSUERS'}: "${ownClientId}" is IDGATE_CLIENT_ID, the audience of the login's ID tokens; access tokens need an audience of their own (e.g. api://default)`);
    }
  }
  const oktaEventHookSecret = parsed.IDGATE_OKTA_EVENT_HOOK_SECRET as string | undefined;
  // The length only, never the secret: it is all that stands between the internet and ending anyone's sessions.
  if (oktaEventHookSecret !== undefined && oktaEventHookSecret.length < 24) problems.push(`IDGATE_OKTA_EVENT_HOOK_SECRET: is ${oktaEventHookSecret.length} characters; it needs 24 or more (e.g. output of \`openssl rand -base64 32\`)`);
  const idle = parsed.IDGATE_SESSION_IDLE_TTL as number | undefined;
  const maxAge = parsed.IDGATE_SESSION_MAX_AGE as number | undefined;
  if (idle !== undefined && maxAge !== undefined && idle > maxAge) problems.push(`IDGATE_SESSION_IDLE_TTL: ${idle} is longer than IDGATE_SESSION_MAX_AGE (${maxAge}) (e.g. 14400)`);
  const cookieDomain = parsed.IDGATE_COOKIE_DOMAIN as string | undefined;
  const configuredCookieName = parsed.IDGATE_COOKIE_NAME as string | undefined;
  if (configuredCookieName !== undefined) problems.push(...cookieNameProblems(configuredCookieName, { secure: !insecureHttp, domain: cookieDomain }));
  const cookieName = configuredCookieName ?? (!insecureHttp && cookieDomain === undefined ? HOST_COOKIE_NAME : PLAIN_COOKIE_NAME);

  if (problems.length > 0) return { config: undefined, problems };

  const redirectUrl = (parsed.IDGATE_REDIRECT_URL as URL | undefined) ?? new URL('/_auth/callback', publicUrl);
  const proxies = parsed.IDGATE_TRUSTED_PROXIES as { matcher: AddressMatcher; text: string };
  const config: Config = {
    issuer: issuer!,
    issuerId,
    clientId: parsed.IDGATE_CLIENT_ID as string,
    clientSecret: parsed.IDGATE_CLIENT_SECRET as string,
    publicUrl: publicUrl!,
    redirectUrl,
    redisUrl: parsed.IDGATE_REDIS_URL as string,
    redisTimeoutMs: parsed.IDGATE_REDIS_TIMEOUT_MS as number,
    redis: redis!,
    cookieSecrets: Object.freeze(secrets),
    cookieName,
    bindingCookieName: bindingCookieNameFor(cookieName, !insecureHttp),
    cookieDomain,
    cookieSecure: !insecureHttp,
    sessionIdleTtlSeconds: idle!,
    sessionMaxAgeSeconds: maxAge!,
    loginTtlSeconds: parsed.IDGATE_LOGIN_TTL as number,
    loginMaxPendingPerBrowser: parsed.IDGATE_LOGIN_MAX_PENDING_PER_BROWSER as number,
    loginMaxPending: parsed.IDGATE_LOGIN_MAX_PENDING as number,
    scopes: parsed.IDGATE_SCOPES as string,
    groupsClaim: parsed.IDGATE_GROUPS_CLAIM as string,
    rolesClaim: parsed.IDGATE_ROLES_CLAIM as string,
    trustUnverifiedEmail,
    oktaEventHookSecret,
    allowedRedirectHosts: Object.freeze([publicUrl!.host.toLowerCase(), ...(parsed.IDGATE_ALLOWED_REDIRECT_HOSTS as string[]).map((h) => h.toLowerCase())]),
    bearerIssuers: Object.freeze(bearerIssuers.map((b) => Object.freeze(b))),
    clockSkewSeconds: parsed.IDGATE_CLOCK_SKEW as number,
    dpopMaxAgeSeconds: parsed.IDGATE_DPOP_MAX_AGE as number,
    dpopAlgorithms: Object.freeze(parsed.IDGATE_DPOP_ALGORITHMS as string[]),
    dpopNonceRequired: parsed.IDGATE_DPOP_NONCE === true,
    jwksCacheSeconds: parsed.IDGATE_JWKS_CACHE as number,
    jwksCooldownSeconds: parsed.IDGATE_JWKS_COOLDOWN as number,
    introspectionCacheSeconds: parsed.IDGATE_INTROSPECTION_CACHE as number,
    introspectionCacheSize: parsed.IDGATE_INTROSPECTION_CACHE_SIZE as number,
    introspectionMaxInflightPerSource: parsed.IDGATE_INTROSPECTION_MAX_INFLIGHT_PER_SOURCE as number,
    introspectionCallsPerSource: parsed.IDGATE_INTROSPECTION_CALLS_PER_SOURCE as number,
    policyFile: parsed.IDGATE_POLICY_FILE as string | undefined,
    listen: parsed.IDGATE_LISTEN as { host: string; port: number },
    spoeListen: parsed.IDGATE_SPOE_LISTEN as { host: string; port: number } | undefined,
    spoeMaxConnections: parsed.IDGATE_SPOE_MAX_CONNECTIONS as number,
    spoeMaxInFlight: parsed.IDGATE_SPOE_MAX_INFLIGHT as number,
    trustedProxies: proxies.matcher,
    trustedProxiesText: proxies.text,
    checkSecrets: Object.freeze(checkSecrets),
    insecureHttp,
    redisKeyPrefix: parsed.IDGATE_REDIS_PREFIX as string,
    logLevel: parsed.IDGATE_LOG_LEVEL as string,
    // A cached session skips the GETEX that renews its idle timeout: keep the cache well inside it.
    sessionCacheMs: Math.min(parsed.IDGATE_SESSION_CACHE_MS as number, idle! * 500),
    sessionCacheSize: parsed.IDGATE_SESSION_CACHE_SIZE as number,
    shutdownDrainMs: parsed.IDGATE_SHUTDOWN_DRAIN_MS as number,
    redisWaitReplicas: parsed.IDGATE_REDIS_WAIT_REPLICAS as number | 'auto',
    redisWaitMs: parsed.IDGATE_REDIS_WAIT_MS as number,
    logFile: parsed.IDGATE_LOG_FILE as string | undefined,
  };
  return { config: Object.freeze(config), problems };
}

/** The Redis settings alone (IDGATE_REDIS_*), for `idgate sessions`, which needs no IdP settings. */
export function loadRedisConfig(env: NodeJS.ProcessEnv = process.env): { config: Pick<Config, 'redis' | 'redisTimeoutMs' | 'redisKeyPrefix' | 'redisWaitReplicas' | 'redisWaitMs'> | undefined; problems: string[] } {
  const problems: string[] = [];
  const { parsed } = readSettings(SETTINGS.filter((s) => s.env.startsWith('IDGATE_REDIS_')), env, problems);
  const redis = redisConnectionFrom(parsed, problems);
  if (problems.length > 0 || !redis) return { config: undefined, problems };
  return {
    config: Object.freeze({
      redis,
      redisTimeoutMs: parsed.IDGATE_REDIS_TIMEOUT_MS as number,
      redisKeyPrefix: parsed.IDGATE_REDIS_PREFIX as string,
      redisWaitReplicas: parsed.IDGATE_REDIS_WAIT_REPLICAS as number | 'auto',
      redisWaitMs: parsed.IDGATE_REDIS_WAIT_MS as number,
    }),
    problems,
  };
}

/**
 * The Redis topology, credentials and TLS, checked together: one topology at a time, every Sentinel
 * setting with its companions, a credential given once, a CA only with TLS, and a key prefix without hash
 * tags (idgate places its own: see session-store.ts, pending logins).
 */
function redisConnectionFrom(parsed: Record<string, unknown>, problems: string[]): RedisConnection | undefined {
  const before = problems.length;
  const url = parsed.IDGATE_REDIS_URL as string | undefined;
  const sentinels = parsed.IDGATE_REDIS_SENTINELS as HostPort[] | undefined;
  const clusterNodes = parsed.IDGATE_REDIS_CLUSTER_NODES as HostPort[] | undefined;
  const sentinelName = parsed.IDGATE_REDIS_SENTINEL_NAME as string | undefined;
  const sentinelUsername = parsed.IDGATE_REDIS_SENTINEL_USERNAME as string | undefined;
  const sentinelPassword = parsed.IDGATE_REDIS_SENTINEL_PASSWORD as string | undefined;
  const caFile = parsed.IDGATE_REDIS_CA_FILE as string | undefined;
  const prefix = parsed.IDGATE_REDIS_PREFIX as string | undefined;
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
  let username = parsed.IDGATE_REDIS_USERNAME as string | undefined;
  let password = parsed.IDGATE_REDIS_PASSWORD as string | undefined;
  if (urlParts?.username !== undefined && username !== undefined) problems.push('IDGATE_REDIS_USERNAME: IDGATE_REDIS_URL carries a user name too; give it once (e.g. remove it from the URL)');
  if (urlParts?.password !== undefined && password !== undefined) problems.push('IDGATE_REDIS_PASSWORD: IDGATE_REDIS_URL carries a password too; give it once (e.g. remove it from the URL)');
  if (sentinels || clusterNodes) {
    // Only the scheme, credentials and db of the URL count here: the nodes come from the sentinels or the cluster.
    username ??= urlParts?.username;
    password ??= urlParts?.password;
  }
  const db = urlParts?.db ?? 0;
  if (clusterNodes && db !== 0) problems.push(`IDGATE_REDIS_URL: names database ${db}, but Redis Cluster has database 0 only (e.g. rediss://10.0.0.5:6379)`);
  const tlsOn = parsed.IDGATE_REDIS_TLS === true || urlParts?.tls === true;
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

/**
 * The login-binding cookie's name: the session cookie's and `_login`. It is host-only whatever
 * IDGATE_COOKIE_DOMAIN says, so when cookies are Secure it is a `__Host-` cookie: a sibling subdomain
 * cannot plant one (a binding of its choosing would let it finish its own login in the victim's browser).
 */
function bindingCookieNameFor(cookieName: string, secure: boolean): string {
  if (!secure) return `${cookieName}_login`;
  const base = cookieName.replace(/^__(host|secure)-/i, '').replace(/^_+/, '');
  return `${HOST_COOKIE_PREFIX}${base}_login`;
}

/**
 * What is wrong with a configured cookie name. Browsers drop a cookie whose name has a prefix it does not
 * satisfy (`__Host-`: Secure, Path=/, no Domain; `__Secure-`: Secure), and match prefixes in any letter
 * case: idgate would then set cookies that never come back, so such settings are refused here.
 */
function cookieNameProblems(name: string, cookies: { secure: boolean; domain: string | undefined }): string[] {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name)) return [`IDGATE_COOKIE_NAME: letters, digits, "_", "-", "." only (e.g. ${HOST_COOKIE_NAME})`];
  const problems: string[] = [];
  const lower = name.toLowerCase();
  if (lower.startsWith('__host-')) {
    if (!cookies.secure) problems.push(`IDGATE_COOKIE_NAME: a __Host- cookie must be Secure, which IDGATE_INSECURE_HTTP=1 turns off (e.g. ${PLAIN_COOKIE_NAME})`);
    if (cookies.domain !== undefined) problems.push(`IDGATE_COOKIE_NAME: a __Host- cookie cannot carry a Domain; unset IDGATE_COOKIE_DOMAIN or use another name (e.g. ${PLAIN_COOKIE_NAME})`);
  } else if (lower.startsWith('__secure-') && !cookies.secure) {
    problems.push(`IDGATE_COOKIE_NAME: a __Secure- cookie must be Secure, which IDGATE_INSECURE_HTTP=1 turns off (e.g. ${PLAIN_COOKIE_NAME})`);
  }
  return problems;
}

const BEARER_ISSUER_KEYS = new Set(['issuer', 'audiences', 'algorithms', 'jwt', 'introspection', 'client_id', 'client_secret', 'jwks_uri', 'client_ids', 'any_client', 'trust_unverified_email']);

function parseBearerIssuers(
  value: unknown,
  defaults: { algorithms: string[]; insecureHttp: boolean; clientId: string; clientSecret: string },
  problems: string[],
): BearerIssuer[] {
  const where = 'IDGATE_BEARER_ISSUERS';
  if (!Array.isArray(value) || value.length === 0) {
    problems.push(`${where}: must be a non-empty JSON list of issuers (e.g. [{"issuer":"https://example.okta.com/oauth2/default","audiences":["api://default"]}])`);
    return [];
  }
  const out: BearerIssuer[] = [];
  value.forEach((entry: unknown, i) => {
    const at = `${where}[${i}]`;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
      problems.push(`${at}: must be an object like {"issuer": "https://example.okta.com/oauth2/default", "audiences": ["api://default"]}`);
      return;
    }
    const e = entry as Record<string, unknown>;
    for (const key of Object.keys(e)) if (!BEARER_ISSUER_KEYS.has(key)) problems.push(`${at}: unknown key "${key}" (known: ${[...BEARER_ISSUER_KEYS].join(', ')})`);
    const strings = (key: string): string[] | undefined => {
      const v = e[key];
      if (v === undefined) return undefined;
      if (Array.isArray(v) && v.every((x) => typeof x === 'string' && x !== '')) return v as string[];
      problems.push(`${at}.${key}: must be a list of strings`);
      return undefined;
    };
    const bool = (key: string, fallback: boolean): boolean => {
      const v = e[key];
      if (v === undefined) return fallback;
      if (typeof v === 'boolean') return v;
      problems.push(`${at}.${key}: must be true or false`);
      return fallback;
    };
    const text = (key: string): string | undefined => {
      const v = e[key];
      if (v === undefined) return undefined;
      if (typeof v === 'string' && v !== '') return v;
      problems.push(`${at}.${key}: must be a non-empty string`);
      return undefined;
    };
    const issuer = text('issuer');
    if (!issuer) {
      if (e.issuer === undefined) problems.push(`${at}.issuer: required (e.g. "https://example.okta.com/oauth2/default")`);
    } else if (!isHttpUrl(issuer, defaults.insecureHttp)) {
      problems.push(`${at}.issuer: must be an https URL${defaults.insecureHttp ? ' (or http)' : ''} (e.g. "https://example.okta.com/oauth2/default")`);
    } else if (out.some((o) => o.issuer === issuer)) {
      problems.push(`${at}.issuer: "${issuer}" is listed twice`);
    }
    const algorithms = strings('algorithms') ?? defaults.algorithms;
    for (const alg of algorithms) if (!ASYMMETRIC_ALGORITHMS.has(alg)) problems.push(`${at}.algorithms: "${alg}" is not an accepted asymmetric algorithm`);
    const jwt = bool('jwt', true);
    const introspection = bool('introspection', false);
    const audiences = strings('audiences') ?? [];
    if (jwt && audiences.length === 0) problems.push(`${at}.audiences: required when jwt is on (Okta's default: ["api://default"])`);
    if (!jwt && !introspection) problems.push(`${at}: accepts no token (jwt and introspection both off)`);
    const jwksUri = text('jwks_uri');
    if (jwksUri && !isHttpUrl(jwksUri, defaults.insecureHttp)) problems.push(`${at}.jwks_uri: must be an https URL`);
    const clientIds = strings('client_ids');
    if (clientIds?.length === 0) problems.push(`${at}.client_ids: must list at least one client id, or be left out to accept any client (e.g. ["0oa-ci-bot"])`);
    // An active answer says only that the issuer minted the token, for whichever of its apps: without an
    // audience or a client allow-list, every token of every app of that org would pass.
    if (introspection && audiences.length === 0 && clientIds === undefined) {
      problems.push(`${at}: introspection needs "audiences" or "client_ids", else any active token the issuer minted for any app passes (e.g. "audiences": ["https://example.okta.com"] or "client_ids": ["0oa9service1"])`);
    }
    const trustUnverifiedEmail = bool('trust_unverified_email', false);
    const anyClient = bool('any_client', false);
    if (issuer) {
      out.push({ issuer, audiences, algorithms, jwt, introspection, clientId: text('client_id') ?? defaults.clientId, clientSecret: text('client_secret') ?? defaults.clientSecret, jwksUri, clientIds, anyClient, trustUnverifiedEmail });
    }
  });
  return out;
}

function isHttpUrl(value: string, allowHttp: boolean): boolean {
  try {
    const url = new URL(value);
    return url.protocol === 'https:' || (allowHttp && url.protocol === 'http:');
  } catch {
    return false;
  }
}

function readConfigFile(file: string | undefined, problems: string[]): Record<string, unknown> {
  if (!file) return {};
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    problems.push(`IDGATE_CONFIG_FILE: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    return {};
  }
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      problems.push(`${file}: must hold one JSON object of settings (e.g. {"issuer": "https://dev-123456.okta.com/oauth2/default"})`);
      return {};
    }
    return value as Record<string, unknown>;
  } catch (err) {
    problems.push(`${file}: not valid JSON: ${(err as Error).message}`);
    return {};
  }
}

/** A boolean setting's value: 1/true/yes/on or 0/false/no/off, any case; undefined for anything else. */
export function parseFlag(value: string): boolean | undefined {
  if (['1', 'true', 'yes', 'on'].includes(value.toLowerCase())) return true;
  if (['0', 'false', 'no', 'off'].includes(value.toLowerCase())) return false;
  return undefined;
}

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
