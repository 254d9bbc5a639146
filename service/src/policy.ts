// The policy and the decision. `matchRule` and `decide` are pure functions of (request facts, identity,
// policy): no I/O, no clock, so every answer idgate gives can be reproduced by `idgate explain` and by a
// table-driven test. The full policy file format arrives with the policy engine; today the built-in demo
// policy below is the policy.

export interface RequestFacts {
  readonly method: string;
  readonly proto: 'http' | 'https';
  /** Host header as the client sent it to HAProxy, lowercased, port included when not default. */
  readonly host: string;
  /** Path and query as received (what login should return to). */
  readonly uri: string;
  /** Normalised path used for matching (see normalizePath). */
  readonly path: string;
  readonly clientIp: string;
  readonly requestId: string;
  /** Accept prefers text/html: a browser navigating. */
  readonly wantsHtml: boolean;
  /** X-Requested-With: XMLHttpRequest. */
  readonly isXhr: boolean;
}

export interface Identity {
  /** How the caller proved who it is. */
  readonly via: 'session' | 'token';
  readonly subject: string;
  readonly user: string;
  readonly email: string | undefined;
  readonly groups: readonly string[];
  readonly scopes: readonly string[];
  /** Client id of a machine token. */
  readonly clientId: string | undefined;
  readonly issuer: string;
}

/** Why no identity could be established, when credentials were presented. */
export interface CredentialProblem {
  readonly code: 'session_invalid' | 'session_expired' | 'invalid_token';
  /** Safe to show to the client (RFC 6750 error_description). */
  readonly description: string;
}

/** All of the given conditions must hold; a list inside a condition means any of its values. */
export interface Requirement {
  readonly via?: 'session' | 'token';
  readonly groups?: readonly string[];
  readonly scopes?: readonly string[];
}

export interface PolicyRule {
  readonly id: string;
  /** Exact host, or "*.example.com" for any subdomain. Absent: any host. */
  readonly host?: string;
  /** Path prefix; "/admin/" also matches "/admin". Absent: any path. */
  readonly pathPrefix?: string;
  /** Upper-case methods. Absent: any method. */
  readonly methods?: readonly string[];
  /** public: no identity needed; authenticated: any identity; restricted: one of `allow` must hold. */
  readonly access: 'public' | 'authenticated' | 'restricted';
  readonly allow?: readonly Requirement[];
  /** API route: unauthenticated callers get 401, never a login redirect. */
  readonly api?: boolean;
  /** Backend pool HAProxy should use (X-Auth-Backend). */
  readonly backend?: string;
}

export interface Policy {
  readonly rules: readonly PolicyRule[];
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
      /** RFC 6750 error, when a credential was presented and failed. */
      readonly error: 'invalid_token' | undefined;
    }
  | {
      readonly outcome: 'deny';
      readonly status: 403;
      readonly rule: string;
      readonly reason: string;
      /** Set when a token lacks a scope the rule asks for (RFC 6750 insufficient_scope). */
      readonly missingScope: string | undefined;
    };

export const NO_RULE = 'no-rule';

/** The demo policy of the contract: /public/ public, /admin/ admins, /api/ API, the rest any signed-in user. */
export const DEMO_POLICY: Policy = Object.freeze({
  rules: Object.freeze([
    { id: 'public', pathPrefix: '/public/', access: 'public' },
    { id: 'admin-area', pathPrefix: '/admin/', access: 'restricted', allow: [{ groups: ['admins'] }] },
    { id: 'api', pathPrefix: '/api/', api: true, access: 'restricted', allow: [{ via: 'session' }, { scopes: ['api:read'] }] },
    { id: 'signed-in', access: 'authenticated' },
  ] satisfies PolicyRule[]),
});

export function matchRule(policy: Policy, facts: Pick<RequestFacts, 'host' | 'path' | 'method'>): PolicyRule | undefined {
  for (const rule of policy.rules) {
    if (rule.methods && !rule.methods.includes(facts.method)) continue;
    if (rule.host && !hostMatches(rule.host, facts.host)) continue;
    if (rule.pathPrefix && !pathMatches(rule.pathPrefix, facts.path)) continue;
    return rule;
  }
  return undefined;
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
  if (!rule) return { outcome: 'deny', status: 403, rule: NO_RULE, reason: 'no policy rule matches this request', missingScope: undefined };
  if (rule.access === 'public') return { outcome: 'public', status: 200, rule: rule.id, reason: 'public route' };

  if (!identity) {
    const reason = problem?.description ?? 'no credentials';
    // A failed bearer token is an API client's mistake: never answer it with a login page.
    const browser = facts.wantsHtml && !facts.isXhr && !rule.api && problem?.code !== 'invalid_token';
    if (browser) {
      const status = facts.method === 'GET' || facts.method === 'HEAD' ? 302 : 303;
      return { outcome: 'login', status, rule: rule.id, reason };
    }
    return { outcome: 'unauthenticated', status: 401, rule: rule.id, reason, error: problem?.code === 'invalid_token' ? 'invalid_token' : undefined };
  }

  if (rule.access === 'authenticated') return { outcome: 'allow', status: 200, rule: rule.id, reason: 'authenticated', backend: rule.backend };

  const alternatives = rule.allow ?? [];
  let firstUnmet: Unmet | undefined;
  for (const requirement of alternatives) {
    const unmet = unmetCondition(requirement, identity);
    if (!unmet) return { outcome: 'allow', status: 200, rule: rule.id, reason: describeRequirement(requirement), backend: rule.backend };
    firstUnmet ??= unmet;
  }
  // Report the alternative that fits this kind of caller: a token is told about scopes, a session about groups.
  const relevant = alternatives.map((r) => unmetCondition(r, identity)).find((u) => u && u.kind !== 'via') ?? firstUnmet;
  return {
    outcome: 'deny',
    status: 403,
    rule: rule.id,
    reason: relevant ? relevant.text : 'the rule allows nobody',
    missingScope: identity.via === 'token' && relevant?.kind === 'scopes' ? relevant.values.join(' ') : undefined,
  };
}

interface Unmet {
  kind: 'via' | 'groups' | 'scopes';
  values: readonly string[];
  text: string;
}

function unmetCondition(requirement: Requirement, identity: Identity): Unmet | undefined {
  if (requirement.via && identity.via !== requirement.via) {
    return { kind: 'via', values: [requirement.via], text: requirement.via === 'session' ? 'needs a signed-in session' : 'needs a bearer token' };
  }
  if (requirement.groups && !requirement.groups.some((g) => identity.groups.includes(g))) {
    return { kind: 'groups', values: requirement.groups, text: `needs group ${requirement.groups.join(' or ')}` };
  }
  if (requirement.scopes && !requirement.scopes.some((s) => identity.scopes.includes(s))) {
    return { kind: 'scopes', values: requirement.scopes, text: `needs scope ${requirement.scopes.join(' or ')}` };
  }
  return undefined;
}

function describeRequirement(requirement: Requirement): string {
  const parts: string[] = [];
  if (requirement.via) parts.push(requirement.via === 'session' ? 'signed-in session' : 'bearer token');
  if (requirement.groups) parts.push(`group ${requirement.groups.join(' or ')}`);
  if (requirement.scopes) parts.push(`scope ${requirement.scopes.join(' or ')}`);
  return parts.length ? `has ${parts.join(', ')}` : 'authenticated';
}

function hostMatches(pattern: string, host: string): boolean {
  const bare = stripPort(host);
  if (pattern.startsWith('*.')) return bare.endsWith(pattern.slice(1)) && bare.length > pattern.length - 1;
  return bare === pattern || host === pattern;
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

const UNRESERVED = /%(2[DdEe]|3[0-9]|4[1-9A-Fa-f]|5[0-9Aa]|5[Ff]|6[1-9A-Fa-f]|7[0-9Aa]|7[Ee])/g;

/**
 * The path that rules match against: percent-encoded unreserved characters decoded, repeated slashes
 * collapsed, dot segments resolved, so "/x/../admin/", "//admin/" and "/%61dmin/" all match "/admin/".
 * Encoded slashes and other reserved characters stay encoded: the app decides what they mean.
 */
export function normalizePath(uri: string): string {
  const q = uri.search(/[?#]/);
  let path = q === -1 ? uri : uri.slice(0, q);
  path = path.replace(UNRESERVED, (m) => String.fromCharCode(parseInt(m.slice(1), 16)));
  const out: string[] = [];
  const segments = path.split('/');
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i]!;
    const last = i === segments.length - 1;
    if (segment === '.' || (segment === '' && !last)) continue;
    if (segment === '..') {
      out.pop();
      continue;
    }
    out.push(segment);
  }
  const trailing = segments.length > 1 && (segments[segments.length - 1] === '' || segments[segments.length - 1] === '.' || segments[segments.length - 1] === '..');
  const joined = '/' + out.filter((s) => s !== '').join('/');
  return trailing && joined !== '/' ? joined + '/' : joined;
}

/** One line for operators and the audit log: "403 deny rule=admin-area: needs group admins". */
export function formatDecision(decision: Decision): string {
  return `${decision.status} ${decision.outcome} rule=${decision.rule}: ${decision.reason}`;
}
