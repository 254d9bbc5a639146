// The check, the hot path HAProxy asks for every protected request, whichever transport carries it: one
// CheckInput in, one CheckOutcome out (contract.ts; http-check.ts and spoe-agent.ts are the transports).
// It reads top to bottom: request facts → matching rule → credentials → identity → decision → answer →
// audit. Only the credentials step does I/O (one Redis GETEX for a session, plus a token renewal when one
// is due; none for a bearer token once keys are cached); the decision itself is the pure `decide` of
// policy.ts.
import type { RedisClient } from '../redis.js';
import type { Logger } from '../audit.js';
import type { Config } from '../config.js';
import { ERRORS, IdgateError, errorBody, isIdgateError, describeError, type IdgateErrorCode } from '../errors.js';
import type { Metrics } from '../metrics.js';
import type { Clock } from '../clock.js';
import type { OidcRelyingParty } from '../idp/relying-party.js';
import { keepSessionFresh } from '../idp/session-refresh.js';
import { acceptedCredentials, allowedMethods, USUAL_METHODS, decideWithDestination, matchRule, NO_RULE, passesAsPreflight, TOKEN_NOT_ACCEPTED, type AcceptedCredentials, type CredentialProblem, type Decision, type Identity, type Policy, type PolicyRule, type RequestFacts } from '../policy/policy.js';
import type { SessionCache } from '../session/session-cache.js';
import type { SessionStore } from '../session/session-store.js';
import { sessionHash, describeSessionRecordVersions, SESSION_RECORD_VERSIONS_READ } from '../session/session-record.js';
import { TWO_SESSION_COOKIES_REASON } from '../session/cookies.js';
import { readSessionForCheck } from '../session/read-session-for-check.js';
import { DPOP_BOUND_AS_BEARER, type BearerVerifier } from '../tokens/tokens.js';
import { dpopChallenge, proofTargetUrl, verifyDpopRequest } from '../tokens/dpop.js';
import { dpopNoncesOf } from '../tokens/dpop-nonce.js';
import { forbiddenPage } from '../pages.js';
import { deniedUser, reusedIdentityFields } from './check-wire.js';
import { isWellFormedRequestId, readRequestFacts, type FactsProblem } from './request-facts.js';
import { checkOutcome, type Check, type CheckInput, type CheckOutcome, type OutcomeDetails, type OutcomeKind } from './contract.js';
import { LOGGED_PATH_LENGTH, MAX_HOST_LENGTH, UNTRUSTED_LOG_INTERVAL_MS, UNTRUSTED_PEERS_REMEMBERED } from '../limits.js';

export interface CheckDependencies {
  readonly config: Config;
  readonly redis: RedisClient;
  /** Sessions: the check reads them here, and renewals and revocations write here. */
  readonly sessions: SessionStore;
  readonly oidc: OidcRelyingParty;
  readonly bearer: BearerVerifier;
  readonly sessionCache: SessionCache;
  readonly policy: () => Policy;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Where time decides: a session's age, its tokens due or expired, a DPoP proof's window and nonce. */
  readonly clock: Clock;
}

/** The check as a function of the request: the one decision path both transports use. Never rejects. */
export function createCheck(deps: CheckDependencies): Check {
  const loginUrl = new URL('/_auth/login', deps.config.publicUrl).href;
  return (request) =>
    runCheck(deps, loginUrl, request).catch((err: unknown) => {
      // Nothing in runCheck should throw; if it does, fail closed.
      deps.logger.log('error', 'check failed unexpectedly', { error: describeError(err) });
      return UNAVAILABLE;
    });
}

async function runCheck(deps: CheckDependencies, loginUrl: string, request: CheckInput): Promise<CheckOutcome> {
  const started = performance.now();
  const { config } = deps;

  const facts = readRequestFacts(request, config);
  if ('problem' in facts) return refuseRequest(deps, request, facts, started);

  const policy = deps.policy();
  const rule = matchRule(policy, facts);
  // WebDAV's Destination is a second path the request writes to: judged too (decideWithDestination).
  const destinationRule = facts.destination === undefined ? undefined : matchRule(policy, { ...facts, path: facts.destination });
  // The credentials read are those of the first rule that needs any.
  const credentialRule = needsIdentity(rule, facts) ? rule : needsIdentity(destinationRule, facts) ? destinationRule : undefined;

  let identity: Identity | undefined;
  let problem: CredentialProblem | undefined;
  let setCookie: string | undefined;
  let dpopNonce: string | undefined;
  let scheme: AuthScheme | undefined;
  if (credentialRule) {
    try {
      ({ identity, problem, setCookie, dpopNonce, scheme } = await establishIdentity(deps, request, acceptedCredentials(credentialRule), facts));
    } catch (err) {
      const reason: IdgateErrorCode = isIdgateError(err) ? err.code : 'internal_error';
      // A configuration error is counted where it is found (introspection_credentials_refused), not as an IdP outage.
      if (reason !== 'introspection_config_error') deps.metrics.recordEvent(reason === 'store_unavailable' ? 'store_error' : 'idp_error');
      deps.logger.log('error', 'cannot decide', { request_id: facts.requestId, error: describeError(err) });
      audit(deps, facts, { outcome: 'unavailable', status: UNAVAILABLE.status, rule: credentialRule.id, reason }, ERRORS[reason].metric, undefined, started, scheme);
      return UNAVAILABLE;
    }
  }

  const decision = decideWithDestination(facts, rule, destinationRule, identity, problem);
  const outcome = outcomeFor(decision, problem, facts, identity, loginUrl, config, policy, scheme);
  audit(deps, facts, decision, reasonCode(decision, problem), identity, started, scheme);
  // A renewed session's cookie goes back with whatever the answer is (HAProxy passes every Set-Cookie on).
  if (setCookie) outcome.setCookie = setCookie;
  // A DPoP nonce to use next (IDGATE_DPOP_NONCE): the one a 401 use_dpop_nonce asks for, or a fresh one
  // for a client whose nonce is from the previous slot, with whatever the answer is (RFC 9449 section 8.2).
  if (dpopNonce) outcome.dpopNonce = dpopNonce;
  if (outcome.status === 200) {
    // What HAProxy forwards: the path just decided on, and the client's cookies without idgate's own (the
    // app never holds a session credential it could leak into a log).
    outcome.path = facts.path;
    outcome.appCookies = withoutIdgateCookies(request.cookie, config);
  }
  return outcome;
}

/** The rule judges a person: public rules and the preflights a rule passes never read credentials. */
function needsIdentity(rule: PolicyRule | undefined, facts: RequestFacts): rule is PolicyRule {
  return rule !== undefined && rule.access !== 'public' && !passesAsPreflight(rule, facts);
}

/**
 * The Cookie header without idgate's cookies (names compared ignoring case, as some frameworks do), or
 * undefined when it holds none of them. Every other cookie keeps its bytes and its place; pairs are
 * trimmed and joined with "; " (a browser's own form). One pass with index arithmetic, no split: this runs
 * on every allow. test/unit/check-helpers.test.ts holds it to the split-and-trim definition on random headers.
 */
export function withoutIdgateCookies(header: string | undefined, config: Pick<Config, 'cookieName' | 'bindingCookieName'>): string | undefined {
  if (!header) return undefined;
  const session = config.cookieName;
  const binding = config.bindingCookieName;
  let found = false;
  let kept = '';
  for (let from = 0; from < header.length; ) {
    let end = header.indexOf(';', from);
    if (end === -1) end = header.length;
    const pair = header.slice(from, end).trim();
    from = end + 1;
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const name = eq === -1 ? pair : pair.slice(0, eq).trim();
    // Lower-cased only when the length could match one of ours.
    if ((name.length === session.length || name.length === binding.length) && isOurs(name.toLowerCase(), session, binding)) {
      found = true;
      continue;
    }
    kept = kept === '' ? pair : `${kept}; ${pair}`;
  }
  return found ? kept : undefined;
}

function isOurs(lowerName: string, session: string, binding: string): boolean {
  return lowerName === session.toLowerCase() || lowerName === binding.toLowerCase();
}

/** How the caller presented credentials (the audit line's `scheme`). */
type AuthScheme = 'session' | 'bearer' | 'dpop';

interface Credentials {
  identity?: Identity;
  problem?: CredentialProblem;
  scheme?: AuthScheme;
  /** The session cookie again, after a renewal (signed with the newest secret). */
  setCookie?: string;
  /** The DPoP nonce the client is to use next (IDGATE_DPOP_NONCE). */
  dpopNonce?: string;
}

/**
 * Who the caller is, as far as this rule lets credentials count. A bearer token is read only where the
 * rule accepts tokens (a condition asks for them, or its `accept` says so); elsewhere the Authorization
 * header is not an identity at all (never verified) and the browser session, if any, decides.
 */
async function establishIdentity(deps: CheckDependencies, request: CheckInput, accepted: AcceptedCredentials, facts: RequestFacts): Promise<Credentials> {
  const presented = accessTokenOf(request.authorization);
  const token = presented?.token;
  if (presented !== undefined && accepted.token) {
    // Where tokens count, an explicit token wins over a cookie: a machine client means what it sends.
    const { scheme } = presented;
    try {
      if (scheme === 'dpop') {
        const { identity, nonce } = await verifyDpopRequest({ bearer: deps.bearer, replays: deps.sessions, config: deps.config, clock: deps.clock }, { proof: request.dpop, target: { method: facts.overriddenFrom ?? facts.method, url: proofTargetUrl(facts.proto, facts.host, request.pathq!) }, accessToken: presented.token, source: facts.clientIp, requestId: facts.requestId });
        return { identity, scheme, dpopNonce: nonce };
      }
      return { identity: await deps.bearer.verify(presented.token, { source: facts.clientIp }), scheme };
    } catch (err) {
      if (isIdgateError(err) && err.code === 'use_dpop_nonce') {
        return { problem: { code: err.code, description: err.expose, challenge: 'dpop' }, scheme, dpopNonce: dpopNoncesOf(deps.config).issue(deps.clock()) };
      }
      if (isIdgateError(err) && (err.code === 'invalid_token' || err.code === 'invalid_dpop_proof')) {
        const challenge = scheme === 'dpop' || err.expose === DPOP_BOUND_AS_BEARER ? 'dpop' : 'bearer';
        return { problem: { code: err.code, description: err.expose, challenge }, scheme };
      }
      throw err;
    }
  }
  // The session is read even where only tokens count: a signed-in person then gets a 403 that says a token
  // is needed, never a login page that would bring them straight back.
  const now = deps.clock();
  const lookup = await readSessionForCheck(deps.sessions, deps.config, request.cookie, now, deps.sessionCache);
  if (lookup.found) {
    const fresh = await keepSessionFresh(deps, lookup, now);
    switch (fresh.kind) {
      case 'current':
        // Renewed meanwhile by another request or replica: keep the newer copy.
        if (fresh.lookup !== lookup) deps.sessionCache.set(sessionHash(lookup.sid), fresh.lookup, now);
        return { identity: fresh.lookup.identity, scheme: 'session' };
      case 'refreshed':
        deps.sessionCache.set(sessionHash(lookup.sid), fresh.lookup, now);
        return { identity: fresh.lookup.identity, setCookie: fresh.setCookie, scheme: 'session' };
      case 'ended':
        deps.sessionCache.invalidate([sessionHash(lookup.sid)]);
        return { problem: { code: 'session_expired', description: 'the session ended at the identity provider' } };
      case 'unavailable':
        throw IdgateError.of('idp_unavailable', 'tokens expired and cannot be renewed now');
    }
  }
  if (lookup.problem === 'session_expired') return { problem: { code: 'session_expired', description: ERRORS.session_expired.text } };
  if (lookup.problem === 'session_invalid' && lookup.unknownVersion !== undefined) {
    // A newer idgate wrote it (a rollback during or after an upgrade): no session here, and the operator learns why.
    const description = `the session record is ${lookup.unknownVersion}, which this idgate does not read (${describeSessionRecordVersions()})`;
    deps.logger.log('warn', 'session record of an unknown version, treated as no session: a newer idgate wrote it', { version: lookup.unknownVersion, reads: SESSION_RECORD_VERSIONS_READ.map((v) => `v${v}`) });
    return { problem: { code: 'session_invalid', description } };
  }
  if (lookup.problem === 'session_invalid' && lookup.twoCookies) return { problem: TWO_SESSION_COOKIES };
  if (lookup.problem === 'session_invalid') return { problem: { code: 'session_invalid', description: ERRORS.session_invalid.text } };
  if (token !== undefined) return { problem: TOKEN_NOT_ACCEPTED };
  return {};
}

const TWO_SESSION_COOKIES: CredentialProblem = Object.freeze({ code: 'session_invalid', description: TWO_SESSION_COOKIES_REASON });

/** The access token of an Authorization header and its scheme: `Bearer` (RFC 6750) or `DPoP` (RFC 9449). */
function accessTokenOf(header: string | undefined): { scheme: 'bearer' | 'dpop'; token: string } | undefined {
  if (!header) return undefined;
  const space = header.indexOf(' ');
  if (space === -1) return undefined;
  const name = header.slice(0, space).toLowerCase();
  if (name !== 'bearer' && name !== 'dpop') return undefined;
  const token = header.slice(space + 1).trim();
  return token === '' ? undefined : { scheme: name, token };
}

/** Last time each untrusted peer was logged: one loud line per peer per interval, not one per request. */
const untrustedPeersLogged = new Map<string, number>();

/** A check that cannot be judged: 403 for a peer that may not ask, 400 for facts that have no single meaning. */
function refuseRequest(deps: CheckDependencies, request: CheckInput, problem: FactsProblem, started: number): CheckOutcome {
  const peer = request.peer ?? '';
  if (problem.problem === 'untrusted_peer') {
    const now = deps.clock();
    const key = `${request.refusedFor ?? 'address'} ${peer}`;
    const last = untrustedPeersLogged.get(key);
    if (last === undefined || now - last > UNTRUSTED_LOG_INTERVAL_MS) {
      if (untrustedPeersLogged.size > UNTRUSTED_PEERS_REMEMBERED) untrustedPeersLogged.clear();
      untrustedPeersLogged.set(key, now);
      if (request.refusedFor === 'secret') deps.logger.log('error', "check refused: it lacks HAProxy's check secret (HAProxy's IDGATE_CHECK_SECRET must be one of IDGATE_CHECK_SECRETS)", { peer });
      else deps.logger.log('error', 'check refused: the peer is not a trusted proxy (set IDGATE_TRUSTED_PROXIES to the HAProxy addresses)', { peer });
    }
    deps.metrics.recordDecision('refused', ERRORS.untrusted_peer.metric, (performance.now() - started) / 1000);
    return json('untrusted_peer', 'untrusted_peer', ERRORS.untrusted_peer.text);
  }
  const uri = request.pathq ?? '';
  const requestId = request.requestId;
  const seconds = (performance.now() - started) / 1000;
  const code = problem.problem;
  deps.metrics.recordDecision('refused', ERRORS[code].metric, seconds);
  deps.logger.decision({
    request_id: isWellFormedRequestId(requestId) ? requestId : null,
    decision: 'refused',
    status: ERRORS[code].status,
    reason: problem.reason,
    rule: null,
    sub: null,
    user: null,
    client: null,
    scheme: null,
    method: printable(request.method, 16),
    host: printable(request.host, MAX_HOST_LENGTH),
    // Never the query: it may carry tokens.
    // null when none was sent (a CONNECT's target names none): never a stand-in path.
    path: request.pathq === undefined ? null : printable(uri.split('?')[0], LOGGED_PATH_LENGTH),
    client_ip: request.clientAddress,
    latency_ms: Math.round(seconds * 1e6) / 1000,
  });
  // CONNECT and TRACE are refused before any path is read: their Allow names the methods every route takes.
  return json(code, code, problem.reason, code === 'method_not_allowed' ? { allow: USUAL_ALLOW } : {});
}

const USUAL_ALLOW = [...USUAL_METHODS].join(', ');

/** A client-chosen value fit for a log field: printable ASCII, bounded. */
function printable(value: string | undefined, max: number): string | null {
  if (value === undefined) return null;
  return value.slice(0, max).replace(/[^\x20-\x7e]/g, '?');
}

// ---- answers ------------------------------------------------------------------------------------

type Outcome = ReturnType<typeof checkOutcome>;

function outcomeFor(decision: Decision, problem: CredentialProblem | undefined, facts: RequestFacts, identity: Identity | undefined, loginUrl: string, config: Config, policy: Policy, scheme: AuthScheme | undefined): Outcome {
  switch (decision.outcome) {
    case 'public':
      return checkOutcome('public', 200, decision.reason, { requestId: facts.requestId });
    case 'refused':
      return decision.status === 400 ? json('invalid_request', 'invalid_request', decision.reason) : json('method_not_allowed', 'method_not_allowed', decision.reason, { allow: allowedMethods(policy, facts).join(', ') });
    case 'allow':
      return checkOutcome('allow', 200, decision.reason, { identity: reusedIdentityFields(identity!, decision, policy), requestId: facts.requestId });
    case 'login': {
      const here = `${facts.proto}://${facts.host}`;
      const returnTo = here === config.publicUrl.origin ? facts.uri : here + facts.uri;
      return checkOutcome('login', decision.status, decision.reason, { location: `${loginUrl}?rd=${encodeURIComponent(returnTo)}` });
    }
    case 'unauthenticated': {
      const challenge =
        problem?.challenge === 'dpop'
          ? dpopChallenge(config, decision.error, quotable(decision.reason))
          : decision.error
            ? `Bearer realm="idgate", error="${decision.error}", error_description="${quotable(decision.reason)}"`
            : 'Bearer realm="idgate"';
      return json('unauthenticated', errorCode(decision, problem), decision.reason, { challenge });
    }
    case 'deny': {
      // The user is for HAProxy's log line (neither transport passes it to the client).
      const denied = identity ? deniedUser(identity) : undefined;
      // In the scheme the token came in (RFC 9449 section 7.1: a DPoP-bound token is challenged as DPoP).
      const scope = decision.missingScope && `scope="${quotable(decision.missingScope)}"`;
      const challenge = scope && (scheme === 'dpop' ? `${dpopChallenge(config, 'insufficient_scope')}, ${scope}` : `Bearer realm="idgate", error="insufficient_scope", ${scope}`);
      if (facts.wantsHtml && !facts.isXhr && identity?.via === 'session') {
        return checkOutcome('deny', ERRORS[errorCode(decision, problem)].status, decision.reason, { identity: denied, challenge, contentType: 'text/html; charset=utf-8', body: forbiddenPage(identity.user, decision.reason, facts.requestId) });
      }
      return json('deny', errorCode(decision, problem), decision.reason, { identity: denied, challenge });
    }
  }
}

/** The answer when idgate cannot decide: the same for every request, so one frozen object. */
const UNAVAILABLE: CheckOutcome = Object.freeze(json('unavailable', 'internal_error', ERRORS.internal_error.text));

/** An answer with errorBody's JSON `{"error","reason"}`: its status and `error` are the code's in ERRORS. */
function json(kind: OutcomeKind, code: IdgateErrorCode, reason: string, details: OutcomeDetails = {}): Outcome {
  const body = errorBody(code, reason);
  return checkOutcome(kind, ERRORS[code].status, reason, { ...details, error: body.error, contentType: 'application/json', body: JSON.stringify(body) });
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
    default:
      return ERRORS[errorCode(decision, problem)].metric;
  }
}

/** The code in ERRORS of an answer that is not an allow: why the caller is sent to sign in, or refused. */
function errorCode(decision: Decision, problem: CredentialProblem | undefined): IdgateErrorCode {
  switch (decision.outcome) {
    case 'deny':
      return decision.missingScope ? 'insufficient_scope' : decision.rule === NO_RULE ? 'no_rule' : 'access_denied';
    case 'refused':
      return decision.status === 400 ? 'invalid_request' : 'method_not_allowed';
    default:
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
  scheme: AuthScheme | undefined,
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
    scheme: scheme ?? null,
    method: facts.method,
    host: facts.host,
    path: facts.path,
    client_ip: facts.clientIp,
    latency_ms: Math.round(seconds * 1e6) / 1000,
  });
}
