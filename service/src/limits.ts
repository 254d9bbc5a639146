// idgate's internal tunables in one place: the bounds, cache sizes, timeouts and cool-downs that an operator
// should not need to touch. Those an operator may change are settings (config/settings.ts SETTINGS), never here.
// Each line says why its value is what it is; changing one changes behaviour under load or failure.

// ---- Transports: the HTTP check and the SPOE agent

/** Longest canonical path idgate decides on; longer ones are refused (rule regexes see bounded input). */
export const MAX_PATH_LENGTH = 4096;
/** Longest Host idgate decides on: a DNS name's most (255), so no real host is refused. */
export const MAX_HOST_LENGTH = 255;
/** Longest X-Forwarded-Uri (path and query) even looked at: room for a query beyond the longest path; longer is refused. */
export const MAX_URI_LENGTH = 8192;
/** A refused check's path is cut to this in its log line: junk a client sends cannot make the line long. */
export const LOGGED_PATH_LENGTH = 512;
/** Longest X-Auth-Groups / X-Auth-Scopes value: the headers must fit in HAProxy's rewrite room. */
export const MAX_LIST_HEADER = 4096;
/** One loud log line per untrusted peer per this interval, not one per request. */
export const UNTRUSTED_LOG_INTERVAL_MS = 10_000;
/** Untrusted peers remembered for that interval; beyond, the memory is cleared (a spoofed flood stays bounded). */
export const UNTRUSTED_PEERS_REMEMBERED = 1000;
/** Trusted-proxy answers cached per address; beyond, addresses are checked each time (the cache stays bounded). */
export const PEER_ANSWERS_CACHED = 1024;
/** SPOE: answers a peer may leave unread before its connection is closed (a peer that never reads holds no memory). */
export const SPOE_MAX_UNREAD_BYTES = 1 << 20;
/**
 * SPOE: our largest frame. HAProxy offers tune.bufsize - 4 (16380 by default, 32764 with the shipped
 * config) and the smaller of the two is used: a request's facts (a big Cookie header) must fit in one
 * frame, since fragments are refused.
 */
export const SPOE_MAX_FRAME_SIZE = 65532;
/** SPOE: a connection that has not said HAPROXY-HELLO by then is closed (HAProxy says it at once). */
export const SPOE_HELLO_TIMEOUT_MS = 2000;
/** SPOE: a silent connection is closed after this long (HAProxy closes its idle ones sooner: `timeout idle 30s` shipped). */
export const SPOE_IDLE_TIMEOUT_MS = 120_000;
/** SPOE: a closing connection whose peer does not read its last frames is cut after this long. */
export const SPOE_CLOSE_GRACE_MS = 1000;
/** SPOE: warnings a peer can cause at will are written once per this window per kind. */
export const SPOE_WARNING_WINDOW_MS = 10_000;
/** SPOE: peers that window tracks apart; beyond, they share one line ("many peers"). */
export const SPOE_WARNING_KEYS = 1000;

/** HTTP keep-alive: longer than HAProxy keeps its idle connections to idgate, so HAProxy closes them first. */
export const HTTP_KEEP_ALIVE_MS = 65_000;
/** HTTP: a request's headers must have arrived by then (just past the keep-alive, as node requires). */
export const HTTP_HEADERS_TIMEOUT_MS = 66_000;
/** HTTP: a whole request must have arrived by then (a slow client cannot hold a socket forever). */
export const HTTP_REQUEST_TIMEOUT_MS = 30_000;

// ---- Stopping

/** How long in-flight requests and SPOE frames may take to finish once a stopping replica stops accepting. */
export const FINISH_BOUND_MS = 5000;

// ---- Sessions

/** Lease of the refresh lock, so a crashed holder frees it soon; renewed every third of it while the grant runs. */
export const REFRESH_LOCK_LEASE_MS = 6000;
/** How long a request whose tokens expired waits for another request's renewal before answering 503. */
export const REFRESH_WAIT_FOR_OTHERS_MS = 3000;
/** Revocations a replica's session cache remembers before it sweeps old ones (a read that raced with one is not cached). */
export const REVOKED_REMEMBERED = 10_000;
/** How old a remembered revocation must be to be swept: far longer than a Redis read can take. */
export const REVOKED_REMEMBER_MS = 60_000;
/** express-session's second save of a login's session within this long, with the same data, is skipped (it follows in ms). */
export const SAME_SESSION_WINDOW_MS = 2000;
/** Sessions that window remembers; beyond, the oldest is forgotten (at worst one login costs two writes). */
export const SAME_SESSION_REMEMBERED = 1000;
/** Durable writes: connections kept for them (each holds one write and its WAIT at a time). */
export const DURABLE_POOL_SIZE = 4;
/** Durable writes on Redis Cluster: clients kept (each opens a connection to every node of the cluster). */
export const DURABLE_CLUSTER_POOL_SIZE = 2;
/** Durable writes: extra wait for a fresh connection to be ready, beyond the command timeout (TLS, AUTH, Sentinel). */
export const DURABLE_CONNECT_EXTRA_MS = 2000;

// ---- Browser routes

/** Longest return URL (`rd`) login honours; a longer one sends the browser to / (it is stored with each pending login). */
export const MAX_RETURN_URL_LENGTH = 4096;
/** Characters of an IdP's `error` a failed sign-in shows and logs: OAuth error codes are short, the rest is noise. */
export const IDP_ERROR_SHOWN = 100;

// ---- Policy

/** A change to the policy file is read this long after its last event: one editor save is several events. */
export const POLICY_RELOAD_DEBOUNCE_MS = 100;

// ---- Redis connections

/** Connect timeout of idgate's connections: a check must not wait long for an unreachable node. */
export const REDIS_CONNECT_TIMEOUT_MS = 2000;
/** Connect timeout of the CLI's: a person at a terminal can wait longer. */
export const CLI_REDIS_CONNECT_TIMEOUT_MS = 3000;
/** Redis command timeout of `idgate sessions revoke`'s waiting writes: a person at a terminal waits longer than a check. */
export const CLI_REDIS_TIMEOUT_MS = 3000;
/** Reconnection back-off: this much more per attempt... */
export const REDIS_RETRY_STEP_MS = 200;
/** ...up to this: an outage is noticed within 2 s of its end. */
export const REDIS_RETRY_MAX_MS = 2000;
/** Sentinel commands and Cluster slot refreshes: as patient as a connection. */
export const REDIS_TOPOLOGY_TIMEOUT_MS = 2000;
/**
 * Finding a Sentinel-managed primary asks every sentinel and takes the newest configuration: a sentinel
 * this much slower than the first to answer is not waited for (a stalled one must not hold reconnections up;
 * under load, TLS handshakes to three sentinels differ by hundreds of milliseconds).
 */
export const SENTINEL_STRAGGLER_MS = 1000;
/**
 * After a +switch-master, a connection that reaches another node than the primary announced reconnects, for
 * this long: longer than the old primary takes to be demoted (10 to 20 s), short enough that a switch missed
 * since cannot keep idgate off Redis for long.
 */
export const PRIMARY_SWITCH_TRUST_MS = 30_000;
/** Cluster: after a failover or CLUSTERDOWN, ask again soon rather than answer from a stale slot map. */
export const REDIS_CLUSTER_RETRY_DELAY_MS = 100;

// ---- Identity provider, keys and tokens

/** Discovery (login IdP and bearer issuers) that failed is tried again after this long. */
export const DISCOVERY_RETRY_MS = 5000;
/** A bearer issuer's discovery document may take this long. */
export const DISCOVERY_TIMEOUT_MS = 5000;
/** A JWKS fetch may take this long (keys.ts default). */
export const JWKS_FETCH_TIMEOUT_MS = 3000;
/** A JWKS larger than this is refused, its reading stopped there (tokens/bounded-body.ts): no IdP publishes that many keys. */
export const MAX_JWKS_BYTES = 512 * 1024;
/** A discovery document larger than this is refused, its reading stopped there: real ones are a few kB. */
export const MAX_DISCOVERY_BYTES = 256 * 1024;
/** Keys never loaded: a fetch is tried at most this often, so an unreachable IdP is not called per request. */
export const JWKS_RETRY_MIN_MS = 1000;
/** Tokens longer than this are refused unread (HAProxy's buffers could not carry them anyway). */
export const MAX_TOKEN_LENGTH = 16 * 1024;
/** Verified JWTs cached by hash (a JWT stays valid until its exp: re-verifying its signature per request is waste)... */
export const VERIFIED_CACHE_SIZE = 10_000;
/** ...for at most this long (never past their exp): a key the IdP retires stops counting within a minute. */
export const VERIFIED_CACHE_MS = 60_000;
/** Introspection: an inactive token's answer is reused at most this long, so a token activated later soon counts. */
export const INTROSPECTION_NEGATIVE_MAX_MS = 30_000;
/** Introspection: an answer larger than this is refused (503), its reading stopped there: room for long group lists. */
export const MAX_INTROSPECTION_BYTES = 256 * 1024;
/** Introspection: a call may take this long. */
export const INTROSPECTION_TIMEOUT_MS = 3000;
/** Introspection: calls under way at most; beyond, checks answer 503 (made-up tokens cannot pile onto the IdP). */
export const INTROSPECTION_MAX_INFLIGHT = 64;
/** Introspection: the window over which IDGATE_INTROSPECTION_CALLS_PER_SOURCE counts. */
export const INTROSPECTION_SOURCE_WINDOW_MS = 60_000;
/** Introspection: client addresses tracked at most; beyond, the longest-idle one is forgotten (the overall bound still holds). */
export const INTROSPECTION_MAX_SOURCES = 10_000;
/**
 * DPoP server nonces (IDGATE_DPOP_NONCE): one nonce per slot of this length, accepted during its slot and the
 * next, so a nonce lives between one and two slots (5 to 10 minutes). That bounds how far ahead a client
 * (or whoever borrowed its key for a while) can make proofs, to about IDGATE_DPOP_MAX_AGE's default, while
 * a busy client fetches a new nonce only once per slot, on an answer it gets anyway (never a failed request).
 */
export const DPOP_NONCE_SLOT_SECONDS = 300;
/** Back-channel logout tokens older than this are refused (and their jti remembered this long). */
export const LOGOUT_TOKEN_MAX_AGE_SECONDS = 300;
/** Largest Okta event hook delivery read: Okta batches up to 50 events, each a few kB. */
export const OKTA_EVENT_BODY_LIMIT = '1mb';

// ---- Logging

/** Decision lines are written in batches at least this often... */
export const LOG_BATCH_MS = 100;
/** ...or as soon as this many characters wait (a burst is not held in memory). */
export const LOG_BATCH_CHARS = 32_768;
