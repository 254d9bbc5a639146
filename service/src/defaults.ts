// The values idgate, its command line and HAProxy's side (haproxy-conf/: the template, dropin/ and
// idgate.lua) would otherwise each write down: the documented addresses, the Lua check's socket and
// backstop, the /_auth/ rate limit, and the page HAProxy answers when the check cannot decide. Each is
// written here once; HAProxy's side gets them as generated lines (transports/haproxy-generated.ts),
// which test/unit/haproxy-generated.test.ts holds equal to this file.

// ---- Addresses (the README's and the demo's; every one configurable)

/** idgate's check and browser endpoints (IDGATE_LISTEN), as HAProxy reaches them (be_idgate). */
export const IDGATE_ADDRESS = '127.0.0.1:4180';
/** idgate's SPOE agent (IDGATE_SPOE_LISTEN, off unless set): the address HAProxy's SPOE lines expect. */
export const SPOE_AGENT_ADDRESS = '127.0.0.1:4181';
/** The template's public frontend. */
export const FRONT_ADDRESS = '127.0.0.1:8080';
/** The template's TLS frontend, when a certificate is given (IDGATE_TLS_CERT). */
export const TLS_FRONT_ADDRESS = '127.0.0.1:8443';
/** The protected app (the template's be_app). */
export const UPSTREAM_ADDRESS = '127.0.0.1:8081';
/** The app's canary pool (the template's be_app_canary). */
export const CANARY_ADDRESS = '127.0.0.1:8082';

// ---- The Lua transport

/** The socket file of the Lua check's listener (fe_idgate_check): beside a chroot, inside it. */
export const CHECK_SOCKET_NAME = 'idgate-check.sock';
/** Where the Lua check's listener listens by default: a directory only HAProxy's user can enter. */
export const CHECK_SOCKET = `unix@/run/haproxy/${CHECK_SOCKET_NAME}`;
/**
 * The Lua httpclient's own timeout, only a backstop: be_idgate's budget (dropin/backends.cfg) ends a check
 * well before it, since in HAProxy 2.6 an expired httpclient timeout re-sends the check up to 3 times.
 */
export const LUA_CHECK_BACKSTOP_MS = 2500;

// ---- Both transports

/** Requests to /_auth/ per client address per 10 s before HAProxy answers 429 (IDGATE_AUTH_RATE_LIMIT). */
export const AUTH_RATE_LIMIT = 120;

/**
 * When the check cannot decide (idgate unreachable, slow, an error, an answer HAProxy cannot act on), a
 * 503 with this Retry-After: idgate's own 503 (check-wire.ts) and HAProxy's page both say it. Short: a
 * replica that was restarting or a Redis failover is usually over by then.
 */
export const UNAVAILABLE_RETRY_AFTER_SECONDS = 1;

/** HAProxy's 503 page, from the Lua action and from HAProxy's own fail-closed lines of either transport. */
export const UNAVAILABLE_PAGE =
  '<!doctype html>\n<html><head><title>503 Service Unavailable</title></head>\n' +
  '<body><h1>503 Service Unavailable</h1>\n<p>authentication service unavailable</p></body></html>\n';
