// The policy and the decision. `matchRule` and `decide` are pure functions of (request facts, identity,
// policy): no I/O, no clock, so every answer idgate gives can be reproduced by `idgate explain` and by a
// table-driven test. Policies come from a YAML file (policy-file.ts), compiled into the shapes below.
// One file, though over 400 lines: the shapes, rule matching and `decide` are one pure unit, read together.

import { ERRORS } from '../errors.js';
import { caseFolded } from '../paths.js';
import { planOf, type Condition, type ConditionField, type UnmetKind } from './policy-conditions.js';
import type { Credential, Identity } from '../identity.js';

export type { Credential, Identity };

export type { Condition } from './policy-conditions.js';

export interface RequestFacts {
  /** The method judged: the one sent, or the one `_method` in the query names (see overriddenFrom). */
  readonly method: string;
  /** The method as sent, when the query's `_method` overrides it (check/method-override.ts); else undefined. */
  readonly overriddenFrom?: string;
  /** The canonical path of a WebDAV Destination header (check/destination.ts): judged as a second path. */
  readonly destination?: string;
  readonly proto: 'http' | 'https';
  /** Host header as the client sent it to HAProxy, lowercased, port included when not default. */
  readonly host: string;
  /** Canonical path and the query as received (what login returns to). */
  readonly uri: string;
  /** The canonical path (paths.ts): what the policy matches and what the app receives. */
  readonly path: string;
  readonly clientIp: string;
  readonly requestId: string;
  /** Accept prefers text/html: a browser navigating. */
  readonly wantsHtml: boolean;
  /** X-Requested-With: XMLHttpRequest. */
  readonly isXhr: boolean;
  /**
   * A browser's CORS preflight: OPTIONS with Origin and Access-Control-Request-Method. Browsers send it
   * without credentials, so it passes (unjudged, no identity) only where a rule says `cors_preflight: pass`.
   */
  readonly corsPreflight: boolean;
}

/**
 * The methods every rule takes. Any other method (WebDAV's PROPFIND or MOVE, a custom verb) matches only
 * the rules that name it in `methods`; where none does, 405: an app may give an unknown verb a meaning no
 * rule was written for.
 */
export const USUAL_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/**
 * Methods no rule may allow: after a 2xx to CONNECT, HAProxy tunnels the connection's next bytes to the app
 * unchecked; TRACE echoes the request back, cookies and credentials included (cross-site tracing).
 */
export const NEVER_ALLOWED_METHODS: ReadonlySet<string> = new Set(['CONNECT', 'TRACE']);


/** Why no identity could be established, when credentials were presented. */
export interface CredentialProblem {
  /** token_not_accepted: only a bearer token came, on a rule where tokens do not count (it was not read). */
  readonly code: 'session_invalid' | 'session_expired' | 'invalid_token' | 'invalid_dpop_proof' | 'use_dpop_nonce' | 'token_not_accepted';
  /** Safe to show to the client (RFC 6750 error_description). */
  readonly description: string;
  /** The scheme the 401's challenge names: `dpop` for a DPoP request, or a DPoP-bound token sent as Bearer (default: bearer). */
  readonly challenge?: 'bearer' | 'dpop';
}

export interface PathMatcher {
  test(path: string): boolean;
}

export interface PolicyRule {
  readonly id: string;
  /** Line of the rule in its policy file (0 for built-in rules). */
  readonly line: number;
  /** "app.example.com" (any port), "app.example.com:8443" (that port), "*.example.com" (any subdomain, not the apex). Absent: any host. */
  readonly hosts?: readonly string[];
  /** Path prefix; "/admin/" also matches "/admin". Lower-case unless the rule is case-sensitive. */
  readonly pathPrefix?: string;
  /**
   * Anchored at the start of the canonical path; linear-time (RE2), so no path can stall it. Also tried on
   * the spellings frameworks route to the same handler (routeMatches): the trailing slash taken off or put
   * on, and with formatSuffix, the path without its `.format` suffix.
   */
  readonly pathRegex?: PathMatcher;
  /**
   * The rule also matches its paths with a `.format` suffix on the last segment (`/reports/12.json`):
   * Rails routes those to the same handler.
   */
  readonly formatSuffix?: boolean;
  /**
   * Paths compare letter for letter. Off by default: many app servers route case-insensitively, so a rule
   * for /admin/ must also cover /ADMIN/.
   */
  readonly caseSensitive?: boolean;
  /**
   * Upper-case methods (a rule for GET also covers HEAD). Absent: any of USUAL_METHODS; a method outside
   * them matches only rules that name it.
   */
  readonly methods?: readonly string[];
  /** `cors_preflight: pass`: a CORS preflight on this rule goes to the app unjudged, without identity. */
  readonly corsPreflight?: 'pass';
  /** `method_override: true`: `_method` in the query counts here, and the method it names is the one judged. */
  readonly methodOverride?: boolean;
  /** public: no identity needed; authenticated: any identity; restricted: one of `allow` must hold; deny: nobody. */
  readonly access: 'public' | 'authenticated' | 'restricted' | 'deny';
  /** Alternatives: the first that holds allows. */
  readonly allow?: readonly Condition[];
  /** API route: unauthenticated callers get 401, never a login redirect. */
  readonly api: boolean;
  /** Pools by identity: the first whose condition holds; else `backend`. */
  readonly backends?: readonly { readonly when: Condition; readonly backend: string }[];
  readonly backend?: string;
  /** Shown as the reason of a `deny` rule. */
  readonly description?: string;
  /** The policy file's `accept`: which credentials count on this rule. Absent: see acceptedCredentials. */
  readonly accept?: readonly Credential[];
}

/**
 * Rules by the first path segment they can match, each list in policy order and including the rules that
 * can match any path, so a request tries only the rules that could match it. Built by indexRules.
 */
export interface RuleIndex {
  readonly bySegment: ReadonlyMap<string, readonly PolicyRule[]>;
  /** Rules for a segment no rule names: those that can match any path. */
  readonly anyPath: readonly PolicyRule[];
  /** Some rule has formatSuffix: a one-segment path with a dot (`/admin.json`) may be its route. */
  readonly formatSuffixes: boolean;
}

export interface Policy {
  readonly rules: readonly PolicyRule[];
  readonly index?: RuleIndex;
  /** What happens when no rule matches. */
  readonly defaultAccess: 'deny' | 'authenticated';
  /** Where it came from, for logs and explain. */
  readonly source: string;
}

export type Decision =
  | { readonly outcome: 'public'; readonly status: 200; readonly rule: string; readonly reason: string }
  | { readonly outcome: 'allow'; readonly status: 200; readonly rule: string; readonly reason: string; readonly backend: string | undefined }
  | { readonly outcome: 'login'; readonly status: 302 | 303; readonly rule: string; readonly reason: string }
  | {
      readonly outcome: 'unauthenticated';
      readonly status: 401;
      readonly rule: string;
      readonly reason: string;
      /** RFC 6750 (RFC 9449 for DPoP) error, when a token was presented and failed. */
      readonly error: 'invalid_token' | 'invalid_dpop_proof' | 'use_dpop_nonce' | undefined;
    }
  /** 405: a method no rule allows here; 400: a method override where the rule does not allow one. */
  | { readonly outcome: 'refused'; readonly status: 400 | 405; readonly rule: string; readonly reason: string }
  | {
      readonly outcome: 'deny';
      readonly status: 403;
      readonly rule: string;
      readonly reason: string;
      /** Set when a token lacks a scope the rule asks for (RFC 6750 insufficient_scope). */
      readonly missingScope: string | undefined;
    };

export const NO_RULE = 'no-rule';

/**
 * The policy without a policy file: every signed-in user, everywhere (what oauth2-proxy does by default).
 * Signed in means a browser session: its rule does not accept bearer tokens (see acceptedCredentials).
 */
export const SIGNED_IN_POLICY: Policy = Object.freeze({
  rules: Object.freeze([{ id: 'signed-in', line: 0, access: 'authenticated', api: false } satisfies PolicyRule]),
  defaultAccess: 'deny',
  source: '(built-in: any signed-in user)',
});

const DEFAULT_RULE: PolicyRule = Object.freeze({ id: 'default', line: 0, access: 'authenticated', api: false });

/**
 * The first rule that matches the request; the default rule when none does and the default is
 * authenticated. A method outside USUAL_METHODS matches only a rule that names it, never the default.
 */
export function matchRule(policy: Policy, facts: Pick<RequestFacts, 'host' | 'path' | 'method'>): PolicyRule | undefined {
  const usual = USUAL_METHODS.has(facts.method);
  const lowerPath = caseFolded(facts.path);
  const candidates = policy.index ? indexed(policy, policy.index, lowerPath) : policy.rules;
  // "app.example.com." names the same host as "app.example.com" (and HAProxy strips the dot before the app).
  const host = withoutTrailingDot(facts.host);
  let bareHost: string | undefined;
  for (const rule of candidates) {
    if (rule.methods ? !rule.methods.includes(facts.method) && !(facts.method === 'HEAD' && rule.methods.includes('GET')) : !usual) continue;
    if (rule.hosts) {
      bareHost ??= stripPort(host);
      if (!rule.hosts.some((h) => hostMatches(h, host, bareHost!))) continue;
    }
    const path = rule.caseSensitive ? facts.path : lowerPath;
    if ((rule.pathPrefix !== undefined || rule.pathRegex) && !routeMatches(rule, path)) continue;
    return rule;
  }
  return policy.defaultAccess === 'authenticated' && usual ? DEFAULT_RULE : undefined;
}

/**
 * The methods a 405 answer names in `Allow` (RFC 9110 section 15.5.6): every method that is not refused
 * with 405 here. The usual methods never are (without a rule they get 403), and a method outside them only
 * where a rule matching this host and path names it, at the Destination too when the request names one.
 * CONNECT and TRACE never appear (no rule may name them).
 */
export function allowedMethods(policy: Policy, facts: Pick<RequestFacts, 'host' | 'path' | 'destination'>): string[] {
  const named = new Set<string>();
  for (const rule of policy.rules) for (const m of rule.methods ?? []) if (!USUAL_METHODS.has(m) && !NEVER_ALLOWED_METHODS.has(m)) named.add(m);
  const allowed = [...USUAL_METHODS];
  for (const method of named) {
    if (matchRule(policy, { host: facts.host, path: facts.path, method }) === undefined) continue;
    if (facts.destination !== undefined && matchRule(policy, { host: facts.host, path: facts.destination, method }) === undefined) continue;
    allowed.push(method);
  }
  return allowed;
}

/** The rule lets this request through as a CORS preflight: to the app unjudged, without identity. */
export function passesAsPreflight(rule: PolicyRule | undefined, facts: Pick<RequestFacts, 'corsPreflight'>): boolean {
  return facts.corsPreflight && rule?.corsPreflight === 'pass';
}

/**
 * The decision for one request. `rule` is matchRule's result (passed in so the caller can skip loading
 * credentials on public routes); `identity` is undefined for anonymous callers, with `problem` saying why
 * when credentials were presented but failed.
 */
export function decide(
  facts: RequestFacts,
  rule: PolicyRule | undefined,
  identity: Identity | undefined,
  problem: CredentialProblem | undefined,
): Decision {
  if (NEVER_ALLOWED_METHODS.has(facts.method)) return { outcome: 'refused', status: 405, rule: rule?.id ?? NO_RULE, reason: `${facts.method} is never allowed` };
  if (facts.overriddenFrom !== undefined && !rule?.methodOverride) return { outcome: 'refused', status: 400, rule: rule?.id ?? NO_RULE, reason: `a method override (_method=${facts.method}) counts only on rules with method_override: true` };
  if (!rule && !USUAL_METHODS.has(facts.method)) return { outcome: 'refused', status: 405, rule: NO_RULE, reason: `no policy rule allows the method ${facts.method} here` };
  if (!rule) return { outcome: 'deny', status: 403, rule: NO_RULE, reason: ERRORS.no_rule.text, missingScope: undefined };
  if (rule.access === 'public') return { outcome: 'public', status: 200, rule: rule.id, reason: 'public route' };
  if (passesAsPreflight(rule, facts)) return { outcome: 'public', status: 200, rule: rule.id, reason: 'CORS preflight (cors_preflight: pass)' };

  if (!identity) {
    const reason = problem?.description ?? ERRORS.no_credentials.text;
    // A failed bearer token is an API client's mistake: never answer it with a login page.
    const tokenFailed = problem?.code === 'invalid_token' || problem?.code === 'invalid_dpop_proof' || problem?.code === 'use_dpop_nonce';
    const browser = facts.wantsHtml && !facts.isXhr && !rule.api && !tokenFailed;
    if (browser) {
      const status = facts.method === 'GET' || facts.method === 'HEAD' ? 302 : 303;
      return { outcome: 'login', status, rule: rule.id, reason };
    }
    return { outcome: 'unauthenticated', status: 401, rule: rule.id, reason, error: tokenFailed ? problem.code : undefined };
  }

  const accepted = acceptedCredentials(rule);
  if (!accepted[identity.via]) {
    // The check never reads a token here (the caller is then anonymous, or signed in by its session); a
    // token identity given anyway (idgate explain) is answered the same way. A session on a tokens-only
    // rule is a person who is signed in but needs a token: 403, never a login loop.
    if (identity.via === 'token') return decide(facts, rule, undefined, TOKEN_NOT_ACCEPTED);
    return { outcome: 'deny', status: 403, rule: rule.id, reason: 'needs a bearer token', missingScope: undefined };
  }
  if (rule.access === 'deny') return { outcome: 'deny', status: 403, rule: rule.id, reason: rule.description ?? 'this route is closed', missingScope: undefined };
  if (rule.access === 'authenticated') {
    if (!identity.fromPrimaryIssuer) return { outcome: 'deny', status: 403, rule: rule.id, reason: PRIMARY_ISSUER_ONLY, missingScope: undefined };
    return { outcome: 'allow', status: 200, rule: rule.id, reason: 'authenticated', backend: chooseBackend(rule, identity) };
  }

  const alternatives = rule.allow ?? [];
  const unmets: Unmet[] = [];
  for (const condition of alternatives) {
    const unmet = unmetCondition(condition, identity, rule);
    if (!unmet) return { outcome: 'allow', status: 200, rule: rule.id, reason: planOf(condition).reason, backend: chooseBackend(rule, identity) };
    unmets.push(unmet);
  }
  // Report the alternative that fits this kind of caller: a token is told about scopes, a session about
  // groups; alternatives for another credential or another issuer only when nothing else is left.
  const relevant = unmets.find((u) => u.kind !== 'via' && u.kind !== 'issuers') ?? unmets.find((u) => u.kind !== 'via') ?? unmets[0];
  return {
    outcome: 'deny',
    status: 403,
    rule: rule.id,
    reason: relevant ? relevant.text : 'the rule allows nobody',
    missingScope: identity.via === 'token' && relevant?.kind === 'scopes' ? (relevant.wanted as readonly string[]).join(' ') : undefined,
  };
}

/**
 * The decision for a request that names a second path (WebDAV's Destination): the caller needs both, the
 * request's own path under `rule` and the destination under `destinationRule` (matchRule's for it), with
 * the same method and identity. The first refusal stands; an allow is the request path's.
 */
export function decideWithDestination(
  facts: RequestFacts,
  rule: PolicyRule | undefined,
  destinationRule: PolicyRule | undefined,
  identity: Identity | undefined,
  problem: CredentialProblem | undefined,
): Decision {
  const decision = decide(facts, rule, identity, problem);
  if (facts.destination === undefined || (decision.outcome !== 'allow' && decision.outcome !== 'public')) return decision;
  const second = decide({ ...facts, path: facts.destination, corsPreflight: false }, destinationRule, identity, problem);
  if (second.outcome === 'allow' || second.outcome === 'public') return decision;
  return { ...second, reason: `the Destination ${facts.destination}: ${second.reason}` };
}

/** Which credentials make a caller signed in on a rule. */
export interface AcceptedCredentials {
  readonly session: boolean;
  readonly token: boolean;
}

const SESSION_ONLY: AcceptedCredentials = Object.freeze({ session: true, token: false });

/**
 * What a rule accepts: its `accept` when written; else a rule with conditions accepts a bearer token when
 * one of its alternatives asks for tokens (via: token, or a part only tokens have) and a session when one
 * does not; every other rule (authenticated, deny, the built-in ones) accepts a browser session only.
 * The check reads a bearer token only where this says tokens count: elsewhere a token is not a person.
 */
export function acceptedCredentials(rule: PolicyRule): AcceptedCredentials {
  if (rule.accept) return { session: rule.accept.includes('session'), token: rule.accept.includes('token') };
  if (rule.access !== 'restricted') return SESSION_ONLY;
  const alternatives = rule.allow ?? [];
  return { session: alternatives.some((c) => !asksForToken(c)), token: alternatives.some(asksForToken) };
}

/** The condition can only hold for a bearer token. */
export function asksForToken(c: Condition): boolean {
  return planOf(c).tokenOnly;
}

const JUST_SESSION: readonly Credential[] = Object.freeze(['session']);

/** Only a bearer token came, where tokens do not count: the caller is anonymous (401, or login for a browser). */
export const TOKEN_NOT_ACCEPTED: CredentialProblem = Object.freeze({
  code: 'token_not_accepted',
  description: ERRORS.token_not_accepted.text,
});
const PRIMARY_ISSUER_ONLY = 'needs an identity from the primary issuer (IDGATE_ISSUER)';

function chooseBackend(rule: PolicyRule, identity: Identity): string | undefined {
  if (rule.backends) {
    for (const choice of rule.backends) if (!unmetCondition(choice.when, identity, rule)) return choice.backend;
  }
  return rule.backend;
}

interface Unmet {
  kind: UnmetKind;
  /** The condition's value for it (for `scopes`, what insufficient_scope names). */
  wanted: Condition[ConditionField];
  text: string;
}

function unmetCondition(c: Condition, identity: Identity, rule: PolicyRule): Unmet | undefined {
  const plan = planOf(c);
  // The credentials that may satisfy it: its own say, else the rule's accept, else a browser session.
  const credentials = plan.credentials ?? rule.accept ?? JUST_SESSION;
  if (!credentials.includes(identity.via)) {
    return { kind: 'via', wanted: c.via, text: credentials.includes('session') ? 'needs a signed-in session' : 'needs a bearer token' };
  }
  if (c.issuers === undefined && !identity.fromPrimaryIssuer) return { kind: 'issuers', wanted: undefined, text: PRIMARY_ISSUER_ONLY };
  for (const { check, wanted } of plan.checks) {
    if (!check.holds(wanted, identity)) return { kind: check.reportedAs, wanted, text: check.unmet(wanted) };
  }
  return undefined;
}

function hostMatches(pattern: string, host: string, bareHost: string): boolean {
  if (pattern.startsWith('*.')) return bareHost.endsWith(pattern.slice(1)) && bareHost.length > pattern.length - 1;
  return pattern === host || pattern === bareHost;
}

function withoutTrailingDot(host: string): string {
  const bare = stripPort(host);
  return bare.endsWith('.') ? bare.slice(0, -1) + host.slice(bare.length) : host;
}

/** The rules the index gives for a (lower-cased) path. */
function indexed(policy: Policy, index: RuleIndex, lowerPath: string): readonly PolicyRule[] {
  const segment = firstSegment(lowerPath);
  // "/admin.json" is the route of a formatSuffix rule for "/admin/", which the index files under "admin".
  if (index.formatSuffixes && segment.includes('.') && lowerPath.length <= segment.length + 2) return policy.rules;
  return index.bySegment.get(segment) ?? index.anyPath;
}

/**
 * A rule's path matches the path, or one of the spellings common frameworks route to the same handler:
 * the path with its trailing slash taken off or put on (Express without strict routing, Laravel, Spring
 * up to 5.3), and with formatSuffix, without a `.format` suffix on its last segment (Rails).
 */
function routeMatches(rule: PolicyRule, path: string): boolean {
  if (matchesAsWritten(rule, path)) return true;
  // A prefix rule already matches both ("/a/" covers "/a"; "/a" covers "/a/"): only a regex needs the other.
  if (rule.pathRegex && path !== '/' && rule.pathRegex.test(otherSlash(path))) return true;
  if (rule.formatSuffix) {
    const bare = withoutFormat(path);
    if (bare !== undefined && (matchesAsWritten(rule, bare) || (rule.pathRegex !== undefined && rule.pathRegex.test(otherSlash(bare))))) return true;
  }
  return false;
}

function matchesAsWritten(rule: PolicyRule, path: string): boolean {
  if (rule.pathPrefix !== undefined) return pathMatches(rule.pathPrefix, path);
  return rule.pathRegex!.test(path);
}

function otherSlash(path: string): string {
  return path.endsWith('/') ? path.slice(0, -1) : `${path}/`;
}

/** The path without the `.format` suffix of its last segment ("/reports/12.json/" -> "/reports/12"), or undefined. */
function withoutFormat(path: string): string | undefined {
  const trimmed = path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
  const m = /\/([^/]+)\.[^./]+$/.exec(trimmed);
  if (!m || /^\.+$/.test(m[1]!)) return undefined;
  return trimmed.slice(0, trimmed.lastIndexOf('.'));
}

function firstSegment(path: string): string {
  const end = path.indexOf('/', 1);
  return end === -1 ? path.slice(1) : path.slice(1, end);
}

/**
 * The first path segment every path a rule matches must have, or undefined when the rule can match
 * paths with different first segments ("/", "/svc" matching "/svc1", a regex with alternatives).
 */
function segmentOf(rule: PolicyRule, regexSource: string | undefined): string | undefined {
  let literal: string | undefined = rule.pathPrefix;
  if (regexSource !== undefined) {
    if (regexSource.includes('|')) return undefined;
    literal = /^[^\\^$.|?*+()[\]{}]*/.exec(regexSource)![0];
    // A quantifier after the literal applies to its last character ("/x/?y" matches "/xy").
    if (/^[?*+{]/.test(regexSource.slice(literal.length))) literal = literal.slice(0, -1);
  }
  if (literal === undefined) return undefined;
  // The index is looked up by the lower-cased first segment; a case-sensitive rule is tried for every
  // spelling of its segment and then compares letter for letter.
  literal = caseFolded(literal);
  const end = literal.indexOf('/', 1);
  if (end !== -1) return literal.slice(1, end);
  // "/admin" (a prefix without a closing slash) also matches "/administrators": no single segment.
  return undefined;
}

/** The index matchRule uses; `regexSources` gives each rule's path_regex as written (by rule id). */
export function indexRules(rules: readonly PolicyRule[], regexSources: ReadonlyMap<string, string>): RuleIndex {
  const segments = new Map<PolicyRule, string | undefined>(rules.map((r) => [r, segmentOf(r, regexSources.get(r.id))]));
  const names = new Set([...segments.values()].filter((s): s is string => s !== undefined));
  const bySegment = new Map<string, readonly PolicyRule[]>();
  for (const name of names) bySegment.set(name, Object.freeze(rules.filter((r) => segments.get(r) === undefined || segments.get(r) === name)));
  return Object.freeze({ bySegment, anyPath: Object.freeze(rules.filter((r) => segments.get(r) === undefined)), formatSuffixes: rules.some((r) => r.formatSuffix) });
}

export function stripPort(host: string): string {
  if (host.startsWith('[')) return host.slice(0, host.indexOf(']') + 1);
  const colon = host.lastIndexOf(':');
  return colon === -1 ? host : host.slice(0, colon);
}

function pathMatches(prefix: string, path: string): boolean {
  if (path.startsWith(prefix)) return true;
  return prefix.endsWith('/') && path === prefix.slice(0, -1);
}

/** One line for operators and the audit log: "403 deny rule=admin-area: needs group admins". */
export function formatDecision(decision: Decision): string {
  const backend = decision.outcome === 'allow' && decision.backend ? ` backend=${decision.backend}` : '';
  return `${decision.status} ${decision.outcome} rule=${decision.rule}${backend}: ${decision.reason}`;
}
