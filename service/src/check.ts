// The check endpoint (GET/HEAD /auth), the hot path HAProxy calls for every protected request.
// It reads top to bottom: request facts → matching rule → credentials → identity → decision → answer →
// audit. Only the credentials step does I/O (one Redis GETEX for a session, plus a token renewal when one
// is due; none for a bearer token once keys are cached); the decision itself is the pure `decide` of
// policy.ts. Plain node:http, no middleware.
import crypto from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RedisClient } from './redis.js';
import type { Logger } from './audit.js';
import type { Config } from './config.js';
import type { DurableWrites } from './durable-writes.js';
import { IdgateError, isIdgateError, describeError } from './errors.js';
import type { Metrics } from './metrics.js';
import type { OidcRelyingParty } from './oidc.js';
import { keepSessionFresh } from './refresh.js';
import { acceptedCredentials, decide, matchRule, NO_RULE, TOKEN_NOT_ACCEPTED, type AcceptedCredentials, type CredentialProblem, type Decision, type Identity, type Policy, type RequestFacts } from './policy.js';
import type { SessionCache } from './session-cache.js';
import { sessionHash } from './session-store.js';
import { describeSessionRecordVersions, readSessionForCheck, SESSION_RECORD_VERSIONS_READ } from './sessions.js';
import type { BearerVerifier } from './tokens.js';
import { forbiddenPage } from './pages.js';
import { canonicalPath } from './paths.js';

export interface CheckDependencies {
  readonly config: Config;
  readonly redis: RedisClient;
  /** Writes that must not be lost (renewal, revocation): never the check's reads, which need no replica. */
  readonly durable: DurableWrites;
  readonly oidc: OidcRelyingParty;
  readonly bearer: BearerVerifier;
  readonly sessionCache: SessionCache;
  readonly policy: () => Policy;
  readonly logger: Logger;
  readonly metrics: Metrics;
}

/** What a check needs of the request HAProxy forwarded, whichever transport carried it. */
export interface CheckRequest {
  /** Lower-case header names: cookie, authorization, accept, x-requested-with, x-forwarded-*, x-request-id. */
  readonly headers: Readonly<Record<string, string | undefined>>;
  /** Address of the peer that asked (HAProxy): X-Forwarded-* are believed only from trusted peers. */
  readonly peer: string | undefined;
}

/** The answer, as data: the HTTP check writes it as a response, the SPOE agent as variables. */
export interface CheckAnswer {
  readonly status: number;
  /** Response headers; identity headers are the X-Auth-* ones. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

export function createCheckHandler(deps: CheckDependencies): (req: IncomingMessage, res: ServerResponse) => void {
  const check = createCheck(deps);
  return (req, res) => {
    const headers: Record<string, string | undefined> = {};
    for (const [name, value] of Object.entries(req.headers)) headers[name] = Array.isArray(value) ? value.join(', ') : value;
    void check({ headers, peer: req.socket.remoteAddress }).then((answer) => {
      res.writeHead(answer.status, { ...answer.headers, 'Content-Length': String(Buffer.byteLength(answer.body)) });
      res.end(req.method === 'HEAD' ? undefined : answer.body);
    });
  };
}

/** The check as a function of the request: the one decision path both transports use. Never rejects. */
export function createCheck(deps: CheckDependencies): (request: CheckRequest) => Promise<CheckAnswer> {
  const loginUrl = new URL('/_auth/login', deps.config.publicUrl).href;
  return (request) =>
    runCheck(deps, loginUrl, request).catch((err: unknown) => {
      // Nothing in runCheck should throw; if it does, fail closed.
      deps.logger.log('error', 'check failed unexpectedly', { error: describeError(err) });
      return unavailable();
    });
}

async function runCheck(deps: CheckDependencies, loginUrl: string, request: CheckRequest): Promise<CheckAnswer> {
  const started = performance.now();
  const { config } = deps;

  const facts = readRequestFacts(request, config);
  if ('problem' in facts) return refuseRequest(deps, request, facts, started);

  const rule = matchRule(deps.policy(), facts);

  let identity: Identity | undefined;
  let problem: CredentialProblem | undefined;
  let setCookie: string | undefined;
  if (rule && rule.access !== 'public') {
    try {
      ({ identity, problem, setCookie } = await establishIdentity(deps, request, acceptedCredentials(rule), facts.clientIp));
    } catch (err) {
      const reason = isIdgateError(err) ? err.code : 'internal_error';
      deps.metrics.recordEvent(reason === 'store_unavailable' ? 'store_error' : 'idp_error');
      deps.logger.log('error', 'cannot decide', { request_id: facts.requestId, error: describeError(err) });
      audit(deps, facts, { outcome: 'unavailable', status: 503, rule: rule.id, reason }, reason, undefined, started);
      return unavailable();
    }
  }

  const decision = decide(facts, rule, identity, problem);
  const answer = answerFor(decision, facts, identity, loginUrl, config);
  audit(deps, facts, decision, reasonCode(decision, problem), identity, started);
  const headers: Record<string, string> = { ...answer.headers };
  // A renewed session's cookie goes back with whatever the answer is (HAProxy passes every Set-Cookie on).
  if (setCookie) headers['Set-Cookie'] = setCookie;
  if (answer.status === 200) {
    // What HAProxy forwards: the path just decided on, and the client's cookies without idgate's own (the
    // app never holds a session credential it could leak into a log).
    headers['X-Idgate-Path'] = facts.path;
    const appCookies = withoutIdgateCookies(request.headers.cookie, config);
    if (appCookies !== undefined) headers['X-Idgate-Cookie'] = appCookies;
  }
  return { ...answer, headers };
}

/**
 * The Cookie header without idgate's cookies (names compared ignoring case, as some frameworks do), or
 * undefined when it holds none of them. Every other cookie keeps its bytes and its place.
 */
export function withoutIdgateCookies(header: string | undefined, config: Pick<Config, 'cookieName' | 'bindingCookieName'>): string | undefined {
  if (!header) return undefined;
  const ours = [config.cookieName.toLowerCase(), config.bindingCookieName.toLowerCase()];
  let found = false;
  const kept: string[] = [];
  for (const part of header.split(';')) {
    const pair = part.trim();
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const name = (eq === -1 ? pair : pair.slice(0, eq)).trim().toLowerCase();
    if (ours.includes(name)) found = true;
    else kept.push(pair);
  }
  return found ? kept.join('; ') : undefined;
}

interface Credentials {
  identity?: Identity;
  problem?: CredentialProblem;
  /** The session cookie again, after a renewal (signed with the newest secret). */
  setCookie?: string;
}

/**
 * Who the caller is, as far as this rule lets credentials count. A bearer token is read only where the
 * rule accepts tokens (a condition asks for them, or its `accept` says so); elsewhere the Authorization
 * header is not an identity at all (never verified) and the browser session, if any, decides.
 */
async function establishIdentity(deps: CheckDependencies, request: CheckRequest, accepted: AcceptedCredentials, clientIp: string): Promise<Credentials> {
  const token = bearerToken(request.headers.authorization);
  if (token !== undefined && accepted.token) {
    // Where tokens count, an explicit bearer token wins over a cookie: a machine client means what it sends.
    try {
      return { identity: await deps.bearer.verify(token, { source: clientIp }) };
    } catch (err) {
      if (isIdgateError(err) && err.code === 'invalid_token') return { problem: { code: 'invalid_token', description: err.expose } };
      throw err;
    }
  }
  // The session is read even where only tokens count: a signed-in person then gets a 403 that says a token
  // is needed, never a login page that would bring them straight back.
  const now = Date.now();
  const lookup = await readSessionForCheck(deps.redis, deps.config, request.headers.cookie, now, deps.sessionCache);
  if (lookup.found) {
    const fresh = await keepSessionFresh(deps, lookup, now);
    switch (fresh.kind) {
      case 'current':
        // Renewed meanwhile by another request or replica: keep the newer copy.
        if (fresh.lookup !== lookup) deps.sessionCache.set(sessionHash(lookup.sid), fresh.lookup, now);
        return { identity: fresh.lookup.identity };
      case 'refreshed':
        deps.sessionCache.set(sessionHash(lookup.sid), fresh.lookup, now);
        return { identity: fresh.lookup.identity, setCookie: fresh.setCookie };
      case 'ended':
        deps.sessionCache.invalidate([sessionHash(lookup.sid)]);
        return { problem: { code: 'session_expired', description: 'the session ended at the identity provider' } };
      case 'unavailable':
        throw new IdgateError('idp_unavailable', 'the session cannot be renewed now', 'tokens expired and the IdP is not reachable');
    }
  }
  if (lookup.problem === 'session_expired') return { problem: { code: 'session_expired', description: 'the session expired' } };
  if (lookup.problem === 'session_invalid' && lookup.unknownVersion !== undefined) {
    // A newer idgate wrote it (a rollback during or after an upgrade): no session here, and the operator learns why.
    const description = `the session record is ${lookup.unknownVersion}, which this idgate does not read (${describeSessionRecordVersions()})`;
    deps.logger.log('warn', 'session record of an unknown version, treated as no session: a newer idgate wrote it', { version: lookup.unknownVersion, reads: SESSION_RECORD_VERSIONS_READ.map((v) => `v${v}`) });
    return { problem: { code: 'session_invalid', description } };
  }
  if (lookup.problem === 'session_invalid') return { problem: { code: 'session_invalid', description: 'the session cookie is invalid' } };
  if (token !== undefined) return { problem: TOKEN_NOT_ACCEPTED };
  return {};
}

function bearerToken(header: string | undefined): string | undefined {
  if (!header || header.length < 8 || header.slice(0, 7).toLowerCase() !== 'bearer ') return undefined;
  const token = header.slice(7).trim();
  return token === '' ? undefined : token;
}

// ---- request facts: X-Forwarded-* believed only from trusted proxies --------------------------------

const METHOD = /^[A-Z]{1,16}$/;
const HOST = /^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.?(?::\d{1,5})?$|^\[[0-9a-f:.]+\](?::\d{1,5})?$/;
const URI = /^\/[\x21-\x7e]*$/;
const REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;
import { MAX_PATH_LENGTH } from './limits.js';

/** Why a check cannot be judged at all: never answered as if it were some default request. */
export interface FactsProblem {
  readonly problem: 'untrusted_peer' | 'invalid_request';
  readonly reason: string;
}

/**
 * The facts of the original request, or why there are none. Only a trusted peer (HAProxy) speaks for the
 * client, and it must say which method, host and URI it asks about.
 */
export function readRequestFacts(request: CheckRequest, config: Config): RequestFacts | FactsProblem {
  const h = request.headers;
  if (!config.trustedProxies(request.peer)) return { problem: 'untrusted_peer', reason: `the check came from ${request.peer ?? 'an unknown peer'}, which is not in IDGATE_TRUSTED_PROXIES` };
  const methodHeader = h['x-forwarded-method'];
  const hostHeader = h['x-forwarded-host'];
  const uri = h['x-forwarded-uri'];
  if (methodHeader === undefined || hostHeader === undefined || uri === undefined) {
    const missing = [methodHeader === undefined && 'X-Forwarded-Method', hostHeader === undefined && 'X-Forwarded-Host', uri === undefined && 'X-Forwarded-Uri'].filter(Boolean);
    return { problem: 'invalid_request', reason: `the check lacks ${missing.join(', ')}` };
  }
  const method = methodHeader.toUpperCase();
  if (!METHOD.test(method)) return { problem: 'invalid_request', reason: 'X-Forwarded-Method is not a method' };
  const host = hostHeader.toLowerCase();
  if (host.length > 255 || !HOST.test(host)) return { problem: 'invalid_request', reason: 'X-Forwarded-Host is not a host name' };
  if (uri.length > 8192 || !URI.test(uri)) return { problem: 'invalid_request', reason: 'X-Forwarded-Uri is not an origin-form path' };
  const canonical = canonicalPath(uri);
  if (!canonical.ok) return { problem: 'invalid_request', reason: canonical.reason };
  if (canonical.path.length > MAX_PATH_LENGTH) return { problem: 'invalid_request', reason: `the path is longer than ${MAX_PATH_LENGTH} characters` };
  const protoHeader = h['x-forwarded-proto'];
  const proto = protoHeader === 'https' ? 'https' : protoHeader === 'http' ? 'http' : config.publicUrl.protocol === 'https:' ? 'https' : 'http';
  const requestIdHeader = h['x-request-id'];
  const requestId = typeof requestIdHeader === 'string' && REQUEST_ID.test(requestIdHeader) ? requestIdHeader : crypto.randomUUID();
  const accept = h.accept;
  const xrw = h['x-requested-with'];
  return {
    method,
    proto,
    host,
    uri: canonical.query === '' && !uri.includes('?') ? canonical.path : `${canonical.path}?${canonical.query}`,
    path: canonical.path,
    clientIp: lastForwardedFor(h['x-forwarded-for']) || request.peer || '',
    requestId,
    wantsHtml: prefersHtml(accept),
    isXhr: typeof xrw === 'string' && xrw.toLowerCase() === 'xmlhttprequest',
  };
}

/** Last time each untrusted peer was logged: one loud line per peer per interval, not one per request. */
const untrustedPeersLogged = new Map<string, number>();
import { UNTRUSTED_LOG_INTERVAL_MS, UNTRUSTED_PEERS_REMEMBERED } from './limits.js';

/** A check that cannot be judged: 403 for a peer that may not ask, 400 for facts that have no single meaning. */
function refuseRequest(deps: CheckDependencies, request: CheckRequest, problem: FactsProblem, started: number): CheckAnswer {
  const peer = request.peer ?? '';
  if (problem.problem === 'untrusted_peer') {
    const now = Date.now();
    const last = untrustedPeersLogged.get(peer);
    if (last === undefined || now - last > UNTRUSTED_LOG_INTERVAL_MS) {
      if (untrustedPeersLogged.size > UNTRUSTED_PEERS_REMEMBERED) untrustedPeersLogged.clear();
      untrustedPeersLogged.set(peer, now);
      deps.logger.log('error', 'check refused: the peer is not a trusted proxy (set IDGATE_TRUSTED_PROXIES to the HAProxy addresses)', { peer });
    }
    deps.metrics.recordDecision('refused', 'untrusted_peer', (performance.now() - started) / 1000);
    return json(403, { error: 'untrusted_peer', reason: 'this address may not ask idgate for decisions' });
  }
  const h = request.headers;
  const uri = h['x-forwarded-uri'] ?? '';
  const requestId = h['x-request-id'];
  const seconds = (performance.now() - started) / 1000;
  deps.metrics.recordDecision('refused', 'invalid_request', seconds);
  deps.logger.decision({
    request_id: typeof requestId === 'string' && REQUEST_ID.test(requestId) ? requestId : null,
    decision: 'refused',
    status: 400,
    reason: problem.reason,
    rule: null,
    sub: null,
    user: null,
    client: null,
    method: printable(h['x-forwarded-method'], 16),
    host: printable(h['x-forwarded-host'], 255),
    // Never the query: it may carry tokens.
    path: printable(uri.split('?')[0], 512),
    client_ip: lastForwardedFor(h['x-forwarded-for']) || peer,
    latency_ms: Math.round(seconds * 1e6) / 1000,
  });
  return json(400, { error: 'invalid_request', reason: problem.reason });
}

/** A client-chosen value fit for a log field: printable ASCII, bounded. */
function printable(value: string | undefined, max: number): string | null {
  if (value === undefined) return null;
  return value.slice(0, max).replace(/[^\x20-\x7e]/g, '?');
}

/** The address the nearest trusted proxy saw (the last X-Forwarded-For entry). */
function lastForwardedFor(header: string | undefined): string | undefined {
  if (typeof header !== 'string') return undefined;
  const last = header.slice(header.lastIndexOf(',') + 1).trim();
  return /^[0-9a-fA-F:.]{2,45}$/.test(last) ? last : undefined;
}

/** Accept puts text/html (or XHTML) at least as high as any other specific type: a browser navigating. */
export function prefersHtml(accept: string | undefined): boolean {
  if (!accept) return false;
  let html = 0;
  let other = 0;
  for (const part of accept.split(',')) {
    const [type = '', ...params] = part.split(';');
    const mediaType = type.trim().toLowerCase();
    let q = 1;
    for (const param of params) {
      const [k, v] = param.split('=');
      if (k?.trim() === 'q' && v !== undefined) q = Number.parseFloat(v) || 0;
    }
    if (mediaType === 'text/html' || mediaType === 'application/xhtml+xml') html = Math.max(html, q);
    else if (mediaType !== '*/*' && !mediaType.endsWith('/*') && !mediaType.startsWith('image/')) other = Math.max(other, q);
  }
  return html > 0 && html >= other;
}

// ---- answers ------------------------------------------------------------------------------------

function answerFor(decision: Decision, facts: RequestFacts, identity: Identity | undefined, loginUrl: string, config: Config): CheckAnswer {
  switch (decision.outcome) {
    case 'public':
      return { status: 200, headers: { 'X-Auth-Request-Id': facts.requestId }, body: '' };
    case 'allow':
      return { status: 200, headers: identityHeaders(identity!, decision.backend, facts.requestId), body: '' };
    case 'login': {
      const here = `${facts.proto}://${facts.host}`;
      const returnTo = here === config.publicUrl.origin ? facts.uri : here + facts.uri;
      return { status: decision.status, headers: { Location: `${loginUrl}?rd=${encodeURIComponent(returnTo)}`, 'Cache-Control': 'no-store' }, body: '' };
    }
    case 'unauthenticated': {
      const challenge = decision.error
        ? `Bearer realm="idgate", error="${decision.error}", error_description="${quotable(decision.reason)}"`
        : 'Bearer realm="idgate"';
      return json(401, { error: 'unauthorized', reason: decision.reason }, { 'WWW-Authenticate': challenge });
    }
    case 'deny': {
      // X-Auth-User is for HAProxy's log line (the Lua action never passes it to the client).
      const extra: Record<string, string> = identity ? { 'X-Auth-User': headerSafe(identity.user) } : {};
      if (decision.missingScope) extra['WWW-Authenticate'] = `Bearer realm="idgate", error="insufficient_scope", scope="${quotable(decision.missingScope)}"`;
      if (facts.wantsHtml && !facts.isXhr && identity?.via === 'session') {
        return { status: 403, headers: { ...extra, 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' }, body: forbiddenPage(identity.user, decision.reason, facts.requestId) };
      }
      return json(403, { error: 'access_denied', reason: decision.reason }, extra);
    }
  }
}

function unavailable(): CheckAnswer {
  return json(503, { error: 'unavailable', reason: 'idgate cannot decide right now' }, { 'Retry-After': '1' });
}

function json(status: number, body: object, headers: Record<string, string> = {}): CheckAnswer {
  return { status, headers: { ...headers, 'Content-Type': 'application/json', 'Cache-Control': 'no-store' }, body: JSON.stringify(body) };
}

import { MAX_LIST_HEADER } from './limits.js';

export function identityHeaders(identity: Identity, backend: string | undefined, requestId: string): Record<string, string> {
  const headers: Record<string, string> = {
    'X-Auth-User': headerSafe(identity.user),
    'X-Auth-Subject': headerSafe(identity.subject),
    'X-Auth-Issuer': headerSafe(identity.issuer),
    'X-Auth-Request-Id': requestId,
  };
  if (identity.email) headers['X-Auth-Email'] = headerSafe(identity.email);
  if (identity.groups.length) {
    const groups = joinBounded(identity.groups.map((g) => headerSafe(g).replaceAll(',', '%2C')), ',', MAX_LIST_HEADER);
    headers['X-Auth-Groups'] = groups.value;
    // Never a silently shorter list: an app that must know every group can refuse.
    if (groups.truncated) headers['X-Auth-Groups-Truncated'] = 'true';
  }
  if (identity.scopes.length) {
    const scopes = joinBounded(identity.scopes.map((s) => headerSafe(s).replaceAll(' ', '%20')), ' ', MAX_LIST_HEADER);
    headers['X-Auth-Scopes'] = scopes.value;
    if (scopes.truncated) headers['X-Auth-Scopes-Truncated'] = 'true';
  }
  if (identity.clientId) headers['X-Auth-Client'] = headerSafe(identity.clientId);
  if (backend) headers['X-Auth-Backend'] = headerSafe(backend);
  return headers;
}

/**
 * Printable ASCII stays, except `%`; anything else (`%`, controls, CR/LF, non-ASCII) is percent-encoded as
 * UTF-8, so every value decodes one way: a literal "%0A" arrives as "%250A".
 */
export function headerSafe(value: string): string {
  if (/^[\x20-\x24\x26-\x7e]*$/.test(value)) return value;
  return value.replace(/[^\x20-\x24\x26-\x7e]/gu, (c) => {
    try {
      return encodeURIComponent(c);
    } catch {
      return '%EF%BF%BD'; // a lone surrogate: U+FFFD
    }
  });
}

/** Joins whole items only, up to `max` characters, and says whether some were left out. */
function joinBounded(items: readonly string[], separator: string, max: number): { value: string; truncated: boolean } {
  let value = '';
  for (const item of items) {
    const next = value === '' ? item : value + separator + item;
    if (next.length > max) return { value, truncated: true };
    value = next;
  }
  return { value, truncated: false };
}

function quotable(text: string): string {
  return text.replace(/["\\]/g, "'");
}

/** A closed set of reasons, for metrics labels (the audit line carries the full reason). */
function reasonCode(decision: Decision, problem: CredentialProblem | undefined): string {
  switch (decision.outcome) {
    case 'public':
      return 'public';
    case 'allow':
      return 'ok';
    case 'deny':
      return decision.missingScope ? 'insufficient_scope' : decision.rule === NO_RULE ? 'no_rule' : 'policy';
    case 'login':
    case 'unauthenticated':
      return problem?.code ?? 'no_credentials';
  }
}

function audit(
  deps: CheckDependencies,
  facts: RequestFacts,
  decision: { readonly outcome: string; readonly status: number; readonly rule: string; readonly reason: string },
  code: string,
  identity: Identity | undefined,
  started: number,
): void {
  const seconds = (performance.now() - started) / 1000;
  deps.metrics.recordDecision(decision.outcome, code, seconds);
  deps.logger.decision({
    request_id: facts.requestId,
    decision: decision.outcome,
    status: decision.status,
    reason: decision.reason,
    rule: decision.rule,
    sub: identity?.subject ?? null,
    user: identity?.user ?? null,
    client: identity?.clientId ?? null,
    method: facts.method,
    host: facts.host,
    path: facts.path,
    client_ip: facts.clientIp,
    latency_ms: Math.round(seconds * 1e6) / 1000,
  });
}
