// Every setting idgate reads, declared once: environment name, config-file key, kind (its type and
// parser), default, the `Config` field it fills, and its meaning, side by side. `Config`'s setting
// fields are derived from these rows (SettingFields), docs/configuration.md is generated from them
// (settings-doc.ts), and `idgate --help` lists them.
import { IDGATE_ADDRESS, SPOE_AGENT_ADDRESS } from '../defaults.js';
import { HOST_COOKIE_NAME, PLAIN_COOKIE_NAME } from './cookie-names.js';
import { flag, hostPorts, int, json, list, listen, listenOr, oneOf, proxies, replicas, secret, secretList, text, url, type Kind } from './kinds.js';

/** What every row of SETTINGS says. */
export interface Setting {
  /** Environment variable. */
  readonly env: string;
  /**
   * The `Config` field the parsed value fills as it is. Without one, the value is read only by the
   * cross-setting step of loadConfig, which derives a field from it and others (e.g. `redis`).
   */
  readonly field?: string;
  /** Key in the optional JSON config file (IDGATE_CONFIG_FILE). */
  readonly key: string;
  readonly kind: Kind<unknown, unknown>;
  /** undefined means required (unless `optional`). */
  readonly default?: string;
  readonly optional?: boolean;
  readonly doc: string;
  readonly example: string;
}

// Bearer tokens' signature algorithms idgate accepts: asymmetric only, so no shared secret (and never `none`).
export const ASYMMETRIC_ALGORITHMS: ReadonlySet<string> = new Set(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA']);
// DPoP proofs': those of the keys a proof may carry (tokens/dpop.ts proofKeyProblem), so not ES512 (P-521).
const DPOP_ALGORITHMS: ReadonlySet<string> = new Set([...ASYMMETRIC_ALGORITHMS].filter((alg) => alg !== 'ES512'));

const ROWS = [
  { env: 'IDGATE_ISSUER', field: 'issuer', key: 'issuer', kind: url, doc: 'OIDC issuer URL (discovery at <issuer>/.well-known/openid-configuration)', example: 'https://dev-123456.okta.com/oauth2/default' },
  { env: 'IDGATE_CLIENT_ID', field: 'clientId', key: 'client_id', kind: text, doc: 'OIDC client id of the idgate app', example: '0oa1b2c3d4e5f6g7h8i9' },
  { env: 'IDGATE_CLIENT_SECRET', field: 'clientSecret', key: 'client_secret', kind: secret, doc: 'OIDC client secret (sent with client_secret_basic)', example: '<the client secret from the IdP>' },
  { env: 'IDGATE_PUBLIC_URL', field: 'publicUrl', key: 'public_url', kind: url, doc: 'origin users see; the callback is <public_url>/_auth/callback', example: 'https://app.example.com' },
  { env: 'IDGATE_REDIRECT_URL', key: 'redirect_url', kind: url, optional: true, doc: 'callback URL registered at the IdP, when not <public_url>/_auth/callback', example: 'https://app.example.com/_auth/callback' },
  { env: 'IDGATE_REDIS_URL', field: 'redisUrl', key: 'redis_url', kind: text, default: 'redis://127.0.0.1:6380', doc: 'Redis holding sessions and pending logins, shared by every replica', example: 'redis://:password@10.0.0.5:6379/0' },
  { env: 'IDGATE_REDIS_TIMEOUT_MS', field: 'redisTimeoutMs', key: 'redis_timeout_ms', kind: int(), default: '500', doc: 'milliseconds a Redis command may take before the check answers 503', example: '500' },
  { env: 'IDGATE_REDIS_SENTINELS', key: 'redis_sentinels', kind: hostPorts, optional: true, doc: 'Redis Sentinel: comma-separated host:port of the sentinels (then IDGATE_REDIS_URL gives only the scheme, credentials and db; its host is not used)', example: '10.0.0.5:26379,10.0.0.6:26379,10.0.0.7:26379' },
  { env: 'IDGATE_REDIS_SENTINEL_NAME', key: 'redis_sentinel_name', kind: text, optional: true, doc: 'Redis Sentinel: the master group name (sentinel.conf `sentinel monitor <name> ...`)', example: 'idgate' },
  { env: 'IDGATE_REDIS_SENTINEL_USERNAME', key: 'redis_sentinel_username', kind: text, optional: true, doc: 'Redis Sentinel: ACL user on the sentinels (sentinel.conf `sentinel sentinel-user`)', example: 'idgate-sentinel' },
  { env: 'IDGATE_REDIS_SENTINEL_PASSWORD', key: 'redis_sentinel_password', kind: secret, optional: true, doc: 'Redis Sentinel: password of the sentinels themselves (sentinel.conf `requirepass`), not of the data nodes', example: '<the sentinels\' password>' },
  { env: 'IDGATE_REDIS_CLUSTER_NODES', key: 'redis_cluster_nodes', kind: hostPorts, optional: true, doc: 'Redis Cluster: comma-separated host:port of some nodes (the client learns the others); IDGATE_REDIS_URL then gives only the scheme and credentials', example: '10.0.0.5:6379,10.0.0.6:6379,10.0.0.7:6379' },
  { env: 'IDGATE_REDIS_USERNAME', key: 'redis_username', kind: text, optional: true, doc: 'ACL user on the Redis data nodes, in every topology (or in IDGATE_REDIS_URL, not both)', example: 'idgate' },
  { env: 'IDGATE_REDIS_PASSWORD', key: 'redis_password', kind: secret, optional: true, doc: 'password on the Redis data nodes, in every topology (or in IDGATE_REDIS_URL, not both)', example: '<the Redis password>' },
  { env: 'IDGATE_REDIS_TLS', key: 'redis_tls', kind: flag, default: '0', doc: 'TLS to every Redis node and sentinel (a rediss:// URL turns it on too)', example: '1' },
  { env: 'IDGATE_REDIS_CA_FILE', key: 'redis_ca_file', kind: text, optional: true, doc: 'PEM file of the CA(s) that sign the Redis servers\' certificates (unset: the system\'s CAs); needs TLS on', example: '/etc/idgate/redis-ca.pem' },
  { env: 'IDGATE_COOKIE_SECRETS', field: 'cookieSecrets', key: 'cookie_secrets', kind: secretList, doc: 'comma-separated secrets (32+ characters each), newest first: the first signs, all verify', example: '<openssl rand -base64 48>' },
  { env: 'IDGATE_COOKIE_NAME', key: 'cookie_name', kind: text, optional: true, doc: `session cookie name (the login-binding cookie adds "_login", and is always a __Host- cookie when Secure); unset: ${HOST_COOKIE_NAME} when cookies are Secure and IDGATE_COOKIE_DOMAIN is unset, else ${PLAIN_COOKIE_NAME}`, example: '__Host-idgate' },
  { env: 'IDGATE_COOKIE_DOMAIN', field: 'cookieDomain', key: 'cookie_domain', kind: text, optional: true, doc: 'session cookie Domain attribute, to share one login across subdomains (rules out the __Host- prefix for the session cookie; the login-binding cookie stays host-only and __Host-)', example: 'example.com' },
  { env: 'IDGATE_SESSION_IDLE_TTL', field: 'sessionIdleTtlSeconds', key: 'session_idle_ttl', kind: int(), default: '14400', doc: 'seconds of inactivity after which a session ends', example: '14400' },
  { env: 'IDGATE_SESSION_MAX_AGE', field: 'sessionMaxAgeSeconds', key: 'session_max_age', kind: int(), default: '86400', doc: 'seconds after login after which a session ends whatever its activity', example: '86400' },
  { env: 'IDGATE_LOGIN_TTL', field: 'loginTtlSeconds', key: 'login_ttl', kind: int(), default: '600', doc: 'seconds a started login may take before its state expires', example: '600' },
  { env: 'IDGATE_LOGIN_MAX_PENDING_PER_BROWSER', field: 'loginMaxPendingPerBrowser', key: 'login_max_pending_per_browser', kind: int(), default: '10', doc: 'started logins one browser may have pending (tabs signing in at once); beyond, its oldest is dropped', example: '10' },
  { env: 'IDGATE_LOGIN_MAX_PENDING', field: 'loginMaxPending', key: 'login_max_pending', kind: int(), default: '10000', doc: 'started logins pending in Redis at most, all browsers together (about 1 kB each); beyond, login answers 503 with Retry-After', example: '10000' },
  { env: 'IDGATE_SCOPES', field: 'scopes', key: 'scopes', kind: text, default: 'openid profile email', doc: 'scopes requested at login (add offline_access for silent renewal; groups only where the IdP defines that scope: not Okta\'s custom servers, whose groups come from a claim)', example: 'openid profile email offline_access' },
  { env: 'IDGATE_GROUPS_CLAIM', field: 'groupsClaim', key: 'groups_claim', kind: text, default: 'groups', doc: 'claim holding groups, or a dotted path into nested claims (read from userinfo when the ID token lacks it)', example: 'groups' },
  { env: 'IDGATE_ROLES_CLAIM', field: 'rolesClaim', key: 'roles_claim', kind: text, default: 'roles', doc: 'claim holding roles, or a dotted path into nested claims', example: 'realm_access.roles' },
  { env: 'IDGATE_TRUST_UNVERIFIED_EMAIL', field: 'trustUnverifiedEmail', key: 'trust_unverified_email', kind: flag, default: '0', doc: 'use the login\'s email (emails/email_domains conditions, X-Auth-Email) even without email_verified: true, for IdPs that never send it', example: '1' },
  { env: 'IDGATE_OKTA_EVENT_HOOK_SECRET', field: 'oktaEventHookSecret', key: 'okta_event_hook_secret', kind: secret, optional: true, doc: 'the Authorization header value Okta\'s event hook sends (24+ characters): turns on /_auth/okta-events, which ends a user\'s sessions when Okta deactivates, suspends, signs out or resets the password of that user, or unassigns them from the app; unset: that route does not exist', example: '<openssl rand -base64 32>' },
  { env: 'IDGATE_ALLOWED_REDIRECT_HOSTS', key: 'allowed_redirect_hosts', kind: list(), default: '', doc: 'hosts (or *.domain) that login may return to besides the public URL\'s host', example: 'app.example.com,*.apps.example.com' },
  { env: 'IDGATE_JWT_AUDIENCES', key: 'jwt_audiences', kind: list(), default: 'api://default', doc: 'accepted `aud` values of bearer access tokens from IDGATE_ISSUER (when IDGATE_BEARER_ISSUERS is unset); never IDGATE_CLIENT_ID, the audience of ID tokens', example: 'api://default' },
  { env: 'IDGATE_JWT_CLIENT_IDS', key: 'jwt_client_ids', kind: list(), optional: true, doc: 'the only client ids (`cid`, `client_id` or `azp`) whose bearer tokens from IDGATE_ISSUER count (when IDGATE_BEARER_ISSUERS is unset); unset: any client\'s, which with the audience api://default needs IDGATE_JWT_ANY_CLIENT or `clients` on every rule that takes tokens', example: '0oa-ci-bot,0oa-reports' },
  { env: 'IDGATE_JWT_ANY_CLIENT', key: 'jwt_any_client', kind: flag, default: '0', doc: 'accept tokens of the audience api://default from any app of the Okta org on rules that name no `clients` (Okta\'s default server puts that audience on every token, whichever app asked); 0: a policy where such a token would count is refused at check-config, at start and on reload (when IDGATE_BEARER_ISSUERS is set: each entry\'s `any_client`)', example: '1' },
  { env: 'IDGATE_JWT_ALGORITHMS', key: 'jwt_algorithms', kind: list({ values: ASYMMETRIC_ALGORITHMS, what: 'an accepted asymmetric algorithm' }), default: 'RS256', doc: 'accepted signature algorithms of bearer tokens (asymmetric only: none and HS* are refused)', example: 'RS256,ES256' },
  { env: 'IDGATE_BEARER_ISSUERS', key: 'bearer_issuers', kind: json, optional: true, doc: 'JSON list of issuers whose bearer tokens are accepted, each {issuer, audiences, algorithms, jwt, introspection, client_id, client_secret, jwks_uri, client_ids, any_client, trust_unverified_email}; unset: IDGATE_ISSUER with IDGATE_JWT_AUDIENCES', example: '[{"issuer":"https://example.okta.com/oauth2/default","audiences":["api://default"],"client_ids":["0oa9service1"]},{"issuer":"https://example.okta.com","jwt":false,"introspection":true,"client_ids":["0oa9service1"]}]' },
  { env: 'IDGATE_CLOCK_SKEW', field: 'clockSkewSeconds', key: 'clock_skew', kind: int(), default: '30', doc: 'seconds of clock difference tolerated on exp/nbf/iat', example: '30' },
  { env: 'IDGATE_DPOP_MAX_AGE', field: 'dpopMaxAgeSeconds', key: 'dpop_max_age', kind: int(), default: '300', doc: 'seconds a DPoP proof (RFC 9449) is good for after its `iat` (plus IDGATE_CLOCK_SKEW either way); its `jti` is remembered in Redis that long, so a replayed proof is refused on every replica', example: '300' },
  { env: 'IDGATE_DPOP_ALGORITHMS', field: 'dpopAlgorithms', key: 'dpop_algorithms', kind: list({ values: DPOP_ALGORITHMS, what: 'an accepted DPoP algorithm' }), default: 'ES256,RS256,PS256,EdDSA', doc: 'accepted signature algorithms of DPoP proofs, also announced in the `algs` of a DPoP challenge; whatever the algorithm, a proof\'s key must be EC P-256 or P-384, Ed25519, or RSA of 2048 to 4096 bits with exponent 65537 (others get 401 before any verification)', example: 'ES256,RS256' },
  { env: 'IDGATE_DPOP_NONCE', field: 'dpopNonceRequired', key: 'dpop_nonce', kind: flag, default: '0', doc: 'require a nonce idgate issued in DPoP proofs (RFC 9449 section 9): a proof without one, with a forged one or with one issued 5 to 10 minutes ago or earlier gets 401 `use_dpop_nonce` and a `DPoP-Nonce` header to retry with; turn on when proofs made in advance must not count. Stateless: nonces are keyed by the first IDGATE_COOKIE_SECRETS entry (every entry verifies), so every replica accepts every other\'s', example: '1' },
  { env: 'IDGATE_JWKS_CACHE', field: 'jwksCacheSeconds', key: 'jwks_cache', kind: int(), default: '600', doc: 'seconds after which signing keys are fetched again (in the background; cached keys keep working meanwhile)', example: '600' },
  { env: 'IDGATE_JWKS_COOLDOWN', field: 'jwksCooldownSeconds', key: 'jwks_cooldown', kind: int(), default: '30', doc: 'seconds between two key fetches caused by unknown key ids (a flood of bogus kids cannot hammer the IdP)', example: '30' },
  { env: 'IDGATE_INTROSPECTION_CACHE', field: 'introspectionCacheSeconds', key: 'introspection_cache', kind: int(), default: '300', doc: 'seconds an introspection answer is reused at most (never past the token\'s exp; inactive tokens: 30 s at most)', example: '300' },
  { env: 'IDGATE_INTROSPECTION_CACHE_SIZE', field: 'introspectionCacheSize', key: 'introspection_cache_size', kind: int(), default: '10000', doc: 'introspection answers kept at most (active and inactive answers each have a cache of this size)', example: '10000' },
  { env: 'IDGATE_INTROSPECTION_MAX_INFLIGHT_PER_SOURCE', field: 'introspectionMaxInflightPerSource', key: 'introspection_max_inflight_per_source', kind: int(), default: '8', doc: 'introspection calls under way at most for one client address (IPv6: its /64); beyond, its token checks answer 503', example: '8' },
  { env: 'IDGATE_INTROSPECTION_CALLS_PER_SOURCE', field: 'introspectionCallsPerSource', key: 'introspection_calls_per_source', kind: int(), default: '300', doc: 'introspection calls (cache misses) one client address (IPv6: its /64) may cause per minute; beyond, its token checks answer 503', example: '300' },
  { env: 'IDGATE_POLICY_FILE', field: 'policyFile', key: 'policy_file', kind: text, optional: true, doc: 'YAML policy file (reloaded on SIGHUP and on change); unset: any signed-in user (browser session) may pass everywhere, and bearer tokens count nowhere', example: '/etc/idgate/policy.yaml' },
  { env: 'IDGATE_LISTEN', field: 'listen', key: 'listen', kind: listen, default: IDGATE_ADDRESS, doc: 'address:port of the check and browser endpoints; port 0: any free port, logged in the "idgate listening" line (tests)', example: IDGATE_ADDRESS },
  { env: 'IDGATE_SPOE_LISTEN', field: 'spoeListen', key: 'spoe_listen', kind: listenOr('off'), optional: true, doc: 'address:port of the SPOE agent (HAProxy\'s binary offload protocol); unset or "off": no agent, no port; port 0: any free port, logged in the "SPOE agent listening" line (tests)', example: SPOE_AGENT_ADDRESS },
  { env: 'IDGATE_SPOE_MAX_CONNECTIONS', field: 'spoeMaxConnections', key: 'spoe_max_connections', kind: int(), default: '256', doc: 'connections the SPOE agent holds at most (HAProxy opens a few per agent); more are closed at once', example: '256' },
  { env: 'IDGATE_SPOE_MAX_INFLIGHT', field: 'spoeMaxInFlight', key: 'spoe_max_inflight', kind: int(), default: '64', doc: 'checks one SPOE connection may have running at once (HAProxy\'s max-waiting-frames: 20 by default); beyond it a frame is answered status 503 at once', example: '64' },
  { env: 'IDGATE_TRUSTED_PROXIES', key: 'trusted_proxies', kind: proxies, default: '127.0.0.0/8,::1', doc: 'addresses or CIDRs of the HAProxy nodes: the only peers whose checks are answered (others get 403 untrusted_peer) and whose SPOE connections are served', example: '127.0.0.1,10.0.0.0/8' },
  { env: 'IDGATE_CHECK_SECRETS', field: 'checkSecrets', key: 'check_secrets', kind: secretList, optional: true, doc: 'comma-separated secrets (32+ characters each: letters, digits, `+/=._~-`), newest first: HAProxy sends one with every check (its IDGATE_CHECK_SECRET), idgate answers a check only when it carries one of these, else 403 untrusted_peer; several during a rotation. Required, unless IDGATE_INSECURE_HTTP=1 (then unset lets any IDGATE_TRUSTED_PROXIES address ask, with a warning at start)', example: '<openssl rand -hex 32>' },
  { env: 'IDGATE_INSECURE_HTTP', field: 'insecureHttp', key: 'insecure_http', kind: flag, default: '0', doc: 'allow a plain-http issuer and non-Secure cookies (local demo and tests only; logged as a warning at start)', example: '1' },
  { env: 'IDGATE_SESSION_CACHE_MS', key: 'session_cache_ms', kind: int(0), default: '5000', doc: 'milliseconds a replica reuses a session read from Redis (revocations reach every replica at once); 0: off', example: '5000' },
  { env: 'IDGATE_SESSION_CACHE_SIZE', field: 'sessionCacheSize', key: 'session_cache_size', kind: int(), default: '10000', doc: 'sessions a replica keeps in that cache at most (about 1 kB each)', example: '10000' },
  { env: 'IDGATE_SHUTDOWN_DRAIN_MS', field: 'shutdownDrainMs', key: 'shutdown_drain_ms', kind: int(0), default: '3000', doc: 'milliseconds a stopping replica (SIGTERM) keeps answering while /readyz says 503, so HAProxy takes it out first (its health check: fall x inter, 2 s shipped); then it finishes what is running and exits', example: '3000' },
  { env: 'IDGATE_LOG_LEVEL', field: 'logLevel', key: 'log_level', kind: oneOf(['info', 'warn', 'error']), default: 'info', doc: 'lowest level logged: info (every decision), warn or error', example: 'info' },
  { env: 'IDGATE_LOG_FILE', field: 'logFile', key: 'log_file', kind: text, optional: true, doc: 'file the JSON log and audit lines are appended to; unset: standard output', example: '/var/log/idgate/audit.log' },
  { env: 'IDGATE_REDIS_PREFIX', field: 'redisKeyPrefix', key: 'redis_prefix', kind: text, default: 'idgate:', doc: 'prefix of every Redis key idgate writes', example: 'idgate:' },
  { env: 'IDGATE_REDIS_WAIT_REPLICAS', field: 'redisWaitReplicas', key: 'redis_wait_replicas', kind: replicas, default: 'auto', doc: 'replicas a login, renewal or revocation waits for (Redis WAIT) before answering: auto (1 when Redis reports an online replica, else none), 0 (never) or a count', example: 'auto' },
  { env: 'IDGATE_REDIS_WAIT_MS', field: 'redisWaitMs', key: 'redis_wait_ms', kind: int(), default: '100', doc: 'milliseconds such a write waits for its replicas at most; then it goes on (the write is on the primary), logged and counted', example: '100' },
] as const satisfies readonly Setting[];

/** The rows as every reader takes them; ROWS' own type keeps each row's literal names and kind, for the types below. */
export const SETTINGS: readonly Setting[] = ROWS;

type Row = (typeof ROWS)[number];

/** A setting's environment name. */
export type SettingEnv = Row['env'];

/** The value of a row's setting: its kind's type; an optional setting may also be unset (undefined, or [] for lists). */
type ValueOf<R> = R extends { readonly kind: Kind<infer T, infer Unset> } ? (R extends { readonly optional: true } ? T | Unset : T) : never;

/** Every setting's value by environment name, as loadConfig has parsed them. */
export type SettingValues = { readonly [R in Row as R['env']]: ValueOf<R> };

/** The fields of `Config` that settings fill as they are: one per row that names a `field`, of that row's type. */
export type SettingFields = { readonly [R in Row as R extends { readonly field: infer F extends string } ? F : never]: ValueOf<R> };

/** The words the settings reference uses for a setting's values. */
export function describeValues(setting: Setting): string {
  return setting.kind.describe;
}

/** A setting's row; throws on a name SETTINGS does not declare (a typo in the caller). */
export function settingNamed(env: string): Setting {
  const setting = SETTINGS.find((s) => s.env === env);
  if (!setting) throw new Error(`${env} is not a setting (service/src/config/settings.ts SETTINGS)`);
  return setting;
}

/** A setting's default as SETTINGS declares it, for the CLI's help and its fallbacks (never restated there). */
export function defaultOf(env: string): string {
  const { default: value } = settingNamed(env);
  if (value === undefined) throw new Error(`${env} has no default`);
  return value;
}
