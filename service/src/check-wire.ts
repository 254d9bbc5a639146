// The check's transport boundary. Each transport turns what HAProxy sent into one CheckInput (the HTTP
// check in http-check.ts, the SPOE agent in spoe.ts); the check (check.ts) answers one CheckOutcome, as
// data; the two renderers below write it as an HTTP response or as SPOE variables. OUTCOME_FIELDS is the
// one table of how each field travels on each transport: idgate.lua and the SPOE configuration read only
// what it lists, and docs/reference.md is generated from it.

/**
 * The request HAProxy asks about, as its transport carried it: nothing here is validated yet (check.ts
 * does that, the same way for both transports). One object shape for both transports, so that the hot
 * path sees one shape.
 */
export interface CheckInput {
  /**
   * The peer may speak for the client (IDGATE_TRUSTED_PROXIES). When false, the transport read nothing
   * else of the request: every fact below is absent, and the check refuses it.
   */
  readonly fromTrustedProxy: boolean;
  /** Address of the peer that asked (HAProxy). */
  readonly peer: string | undefined;
  readonly method: string | undefined;
  /** `http` or `https` as HAProxy saw the client's connection; anything else means the public URL's. */
  readonly scheme: string | undefined;
  /** Host as the client sent it. */
  readonly host: string | undefined;
  /** Path and query as the client sent them (origin form). */
  readonly pathq: string | undefined;
  /** The client's address as the nearest trusted proxy saw it, else the peer's; '' when neither is known. */
  readonly clientAddress: string;
  /** HAProxy's unique id for the request (used only when well-formed). */
  readonly requestId: string | undefined;
  // The credentials: the Cookie header (all its lines as one) and the Authorization header.
  readonly cookie: string | undefined;
  readonly authorization: string | undefined;
  // The kind of client: Accept and X-Requested-With tell a browser navigating from XHR and API clients.
  readonly accept: string | undefined;
  readonly requestedWith: string | undefined;
}

/** The address the nearest trusted proxy saw (the last entry of a forwarded list), else the peer's. */
export function clientAddressOf(forwarded: string | undefined, peer: string | undefined): string {
  if (forwarded !== undefined) {
    const last = forwarded.slice(forwarded.lastIndexOf(',') + 1).trim();
    if (/^[0-9a-fA-F:.]{2,45}$/.test(last)) return last;
  }
  return peer || '';
}

export type OutcomeKind = 'allow' | 'public' | 'login' | 'unauthenticated' | 'deny' | 'invalid_request' | 'untrusted_peer' | 'unavailable';

/** An identity as it travels: every value single-line and percent-encoded (check.ts `identityFields`). */
export interface WireIdentity {
  readonly user: string;
  readonly subject: string | undefined;
  readonly issuer: string | undefined;
  readonly email: string | undefined;
  /** Comma-separated (a comma inside a group is %2C). */
  readonly groups: string | undefined;
  readonly groupsTruncated: boolean;
  /** Space-separated (a space inside a scope is %20). */
  readonly scopes: string | undefined;
  readonly scopesTruncated: boolean;
  readonly client: string | undefined;
  readonly backend: string | undefined;
}

/** The check's answer, as data. Every field is always present (one object shape: see `checkOutcome`). */
export interface CheckOutcome {
  readonly kind: OutcomeKind;
  readonly status: number;
  /** Why, in words (audit lines carry it too); on the wire only with an `error`. */
  readonly reason: string;
  /** The JSON body's `error` (4xx and 503 answers in JSON); undefined for other bodies. */
  readonly error: string | undefined;
  /** On an allow, who to forward; on a denial, only `user` (for HAProxy's log line, never the client). */
  readonly identity: WireIdentity | undefined;
  /** On 200 answers: HAProxy's request id, forwarded to the app. */
  readonly requestId: string | undefined;
  /** Where to sign in (302/303). */
  readonly location: string | undefined;
  /** The WWW-Authenticate challenge (401, and 403 for a missing scope). */
  readonly challenge: string | undefined;
  readonly contentType: string | undefined;
  readonly body: string;
  /** A renewed session's cookie, sent back with any answer. */
  readonly setCookie: string | undefined;
  /** On 200 answers: the canonical path decided on, which HAProxy forwards instead of the one sent. */
  readonly path: string | undefined;
  /**
   * On 200 answers when the client sent idgate's cookies: the Cookie header without them, which HAProxy
   * forwards instead ('' for none left). Undefined: the Cookie header goes on untouched.
   */
  readonly appCookies: string | undefined;
}

export type OutcomeDetails = Partial<Omit<CheckOutcome, 'kind' | 'status' | 'reason'>>;

/**
 * An outcome with every field present, in one order: the renderers and the agent then see a single
 * object shape. Fields stay writable inside check.ts (a renewed cookie and the forwarded path are added
 * after the answer is chosen), readonly to everyone else.
 */
export function checkOutcome(kind: OutcomeKind, status: number, reason: string, d: OutcomeDetails = {}): { -readonly [K in keyof CheckOutcome]: CheckOutcome[K] } {
  return {
    kind,
    status,
    reason,
    error: d.error,
    identity: d.identity,
    requestId: d.requestId,
    location: d.location,
    challenge: d.challenge,
    contentType: d.contentType,
    body: d.body ?? '',
    setCookie: d.setCookie,
    path: d.path,
    appCookies: d.appCookies,
  };
}

// ---- how each field travels -------------------------------------------------------------------------

export interface OutcomeField {
  /** The HTTP check's response header, or undefined when HTTP carries it otherwise (body, status line). */
  readonly header: string | undefined;
  /** The SPOE variable (txn.idgate.<name>), or undefined when SPOE does not carry it. */
  readonly variable: string | undefined;
  /** A yes/no: written `true` as a header and 1 as a variable. */
  readonly flag: boolean;
  /** The value, or undefined when the answer has none. A variable is never set to ''. */
  readonly value: (outcome: CheckOutcome) => string | undefined;
  /** When it is there and what it means (docs/reference.md is generated from it). */
  readonly meaning: string;
}

const field = (header: string | undefined, variable: string | undefined, meaning: string, value: OutcomeField['value'], flag = false): OutcomeField => ({ header, variable, flag, value, meaning });
const isClientError = (o: CheckOutcome) => o.status >= 400 && o.status < 500;

/**
 * Every field of an answer besides its status (the status line; variable `status`), as each transport
 * writes it. HAProxy acts on nothing else: idgate.lua reads these headers, haproxy-spoe.cfg these
 * variables.
 */
export const OUTCOME_FIELDS: readonly OutcomeField[] = [
  field('Location', 'location', 'where to sign in (302, 303)', (o) => o.location),
  field('WWW-Authenticate', 'www_authenticate', 'the bearer challenge (401; 403 for a token lacking a scope)', (o) => o.challenge),
  field('Set-Cookie', 'set_cookie', 'a renewed session cookie, for the client with whatever answer', (o) => o.setCookie),
  field('Content-Type', 'content_type', 'of the body: `application/json`, or HTML for a browser denied', (o) => o.contentType),
  field(undefined, 'body', 'the body for the client (the HTTP check: its response body); SPOE: 4xx only', (o) => (isClientError(o) ? o.body : undefined)),
  field(undefined, 'reason', 'why, in words (the HTTP check: the JSON body\'s `reason`); JSON answers only', (o) => (o.error === undefined ? undefined : o.reason)),
  field('X-Auth-User', 'user', 'the user name; also on a denial, for HAProxy\'s log line only', (o) => o.identity?.user),
  field('X-Auth-Email', 'email', 'a verified email', (o) => o.identity?.email),
  field('X-Auth-Subject', 'subject', 'the `sub` claim', (o) => o.identity?.subject),
  field('X-Auth-Issuer', 'issuer', 'the `iss` claim (apps key a person on issuer and subject)', (o) => o.identity?.issuer),
  field('X-Auth-Groups', 'groups', 'groups, comma-separated', (o) => o.identity?.groups),
  field('X-Auth-Groups-Truncated', 'groups_truncated', 'some groups were left out (4096 characters at most)', (o) => (o.identity?.groupsTruncated ? 'true' : undefined), true),
  field('X-Auth-Scopes', 'scopes', 'scopes of a bearer token, space-separated', (o) => o.identity?.scopes),
  field('X-Auth-Scopes-Truncated', 'scopes_truncated', 'some scopes were left out (4096 characters at most)', (o) => (o.identity?.scopesTruncated ? 'true' : undefined), true),
  field('X-Auth-Client', 'client', 'the client id of a machine token', (o) => o.identity?.client),
  field('X-Auth-Backend', 'backend', 'the pool the matching rule names', (o) => o.identity?.backend),
  field('X-Auth-Request-Id', 'request_id', 'the request id (200 answers)', (o) => o.requestId),
  field('X-Idgate-Path', 'path', 'the canonical path decided on, forwarded instead of the one sent (200 answers; none: fail closed)', (o) => o.path),
  field(undefined, 'cookie_strip', 'the client sent idgate\'s cookies: its Cookie header is replaced (200 answers)', (o) => (o.appCookies === undefined ? undefined : 'true'), true),
  field('X-Idgate-Cookie', 'cookie', 'the Cookie header without idgate\'s cookies, forwarded instead (empty or absent: none left)', (o) => o.appCookies),
  field('Cache-Control', undefined, '`no-store` on every answer but 200', (o) => (o.status === 200 ? undefined : 'no-store')),
  field('Retry-After', undefined, '1 on a 503', (o) => (o.kind === 'unavailable' ? '1' : undefined)),
];

const HEADER_FIELDS = OUTCOME_FIELDS.filter((f) => f.header !== undefined);
const VARIABLE_FIELDS = OUTCOME_FIELDS.filter((f) => f.variable !== undefined);

/** The HTTP check's response headers for an outcome (its body is `outcome.body`). */
export function httpHeadersOf(outcome: CheckOutcome): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const f of HEADER_FIELDS) {
    const value = f.value(outcome);
    if (value !== undefined) headers[f.header!] = value;
  }
  headers['Content-Length'] = String(Buffer.byteLength(outcome.body));
  return headers;
}

/** The SPOE variables for an outcome (set in scope txn; HAProxy adds the `idgate.` prefix). */
export function spoeVariablesOf(outcome: CheckOutcome): Record<string, string | number> {
  const vars: Record<string, string | number> = { status: outcome.status };
  for (const f of VARIABLE_FIELDS) {
    const value = f.value(outcome);
    if (value !== undefined && value !== '') vars[f.variable!] = f.flag ? 1 : value;
  }
  return vars;
}

/** OUTCOME_FIELDS as the Markdown table of docs/reference.md. */
export function outcomeFieldsTable(): string {
  const code = (name: string | undefined, none: string) => (name === undefined ? none : `\`${name}\``);
  const rows = [
    '| HTTP check (response header) | SPOE variable (`txn.idgate.*`) | |',
    '|---|---|---|',
    '| the status line | `status` | 200, 302, 303, 400, 401, 403 or 503 |',
    ...OUTCOME_FIELDS.map((f) => `| ${code(f.header, f.variable === 'body' ? 'the body' : '—')}${f.flag && f.header ? ': `true`' : ''} | ${code(f.variable, '—')}${f.flag && f.variable ? ' = 1' : ''} | ${f.meaning} |`),
  ];
  return rows.join('\n');
}
