// How the check's contract (contract.ts) travels. Each transport turns what HAProxy sent into one
// CheckInput (the HTTP check in http-check.ts, the SPOE agent in spoe-agent.ts); the check (check.ts) answers
// one CheckOutcome, as data; the two renderers below write it as an HTTP response or as SPOE variables.
// INPUT_FIELDS and OUTCOME_FIELDS are the one place that says how each field travels on each transport:
// idgate.lua and the SPOE configuration send and read only what they list, and docs/reference.md is
// generated from them. An identity's values are encoded here once for both.
import { UNAVAILABLE_RETRY_AFTER_SECONDS } from '../defaults.js';
import type { Identity } from '../identity.js';
import type { Policy } from '../policy/policy.js';
import { MAX_LIST_HEADER } from '../limits.js';
import { checkOutcome, type CheckInput, type CheckOutcome, type WireIdentity } from './contract.js';
import { oncePerObject } from '../per-object.js';

/** The address the nearest trusted proxy saw (the last entry of a forwarded list), else the peer's. */
export function clientAddressOf(forwarded: string | undefined, peer: string | undefined): string {
  if (forwarded !== undefined) {
    const last = forwarded.slice(forwarded.lastIndexOf(',') + 1).trim();
    if (/^[0-9a-fA-F:.]{2,45}$/.test(last)) return last;
  }
  return peer || '';
}

/** How each transport carries a field of CheckInput. */
export interface InputField {
  readonly name: keyof CheckInput;
  /** The HTTP check's request header (idgate.lua sends it). */
  readonly header: string;
  /** The argument of the SPOE message `idgate-check` (spoe-idgate.conf). */
  readonly argument: string;
  /** The HAProxy sample fetch that fills the argument. */
  readonly fetch: string;
  readonly meaning: string;
}

/**
 * Every fact a transport hands the check, as each carries it: the adapters (http-check.ts
 * `checkInputFromHttp`, spoe-agent.ts `checkInputFromMessage`) map exactly these, and docs/reference.md is
 * generated from this table. The peer (HAProxy) is the connection's own address on both.
 */
export const INPUT_FIELDS: readonly InputField[] = [
  { name: 'method', header: 'X-Forwarded-Method', argument: 'method', fetch: 'method', meaning: 'the request method' },
  { name: 'scheme', header: 'X-Forwarded-Proto', argument: 'proto', fetch: 'ssl_fc', meaning: '`https` behind TLS, else `http` (SPOE: a boolean)' },
  { name: 'host', header: 'X-Forwarded-Host', argument: 'host', fetch: 'req.fhdr(host)', meaning: 'the Host header' },
  { name: 'pathq', header: 'X-Forwarded-Uri', argument: 'pathq', fetch: 'pathq', meaning: 'path and query, as sent' },
  { name: 'clientAddress', header: 'X-Forwarded-For', argument: 'src', fetch: 'src', meaning: "the client's address (HTTP: the list's last entry); else the peer's" },
  { name: 'requestId', header: 'X-Request-Id', argument: 'id', fetch: 'unique-id', meaning: "HAProxy's unique id, used when well-formed" },
  { name: 'cookie', header: 'Cookie', argument: 'cookie', fetch: 'req.fhdr(cookie)', meaning: 'the session cookie, among the others (SPOE: several lines come as `cookie1`…`cookie4` of `idgate-cookies`)' },
  { name: 'authorization', header: 'Authorization', argument: 'authorization', fetch: 'req.fhdr(authorization)', meaning: 'a bearer token, or a DPoP-bound one (`DPoP <token>`)' },
  { name: 'dpop', header: 'DPoP', argument: 'dpop', fetch: 'req.fhdr(dpop)', meaning: 'the DPoP proof (RFC 9449) of an `Authorization: DPoP` request (HAProxy refuses two DPoP lines)' },
  { name: 'accept', header: 'Accept', argument: 'accept', fetch: 'req.fhdr(accept)', meaning: 'with X-Requested-With, tells a browser navigating from XHR and API clients' },
  { name: 'requestedWith', header: 'X-Requested-With', argument: 'xrw', fetch: 'req.fhdr(x-requested-with)', meaning: '`XMLHttpRequest`: not a navigation' },
  { name: 'origin', header: 'Origin', argument: 'origin', fetch: 'req.fhdr(origin)', meaning: 'with Access-Control-Request-Method on an OPTIONS: a CORS preflight' },
  { name: 'destination', header: 'Destination', argument: 'dest', fetch: 'req.fhdr(destination)', meaning: "WebDAV's second path (MOVE, COPY): judged too, for the same caller and method" },
  { name: 'corsRequestMethod', header: 'Access-Control-Request-Method', argument: 'acrm', fetch: 'req.fhdr(access-control-request-method)', meaning: 'the method a CORS preflight asks about (its presence is what counts)' },
];

// ---- an identity on the wire: one encoding for both transports --------------------------------------

/** Who to forward, as the values both transports carry (one encoding: `headerSafe`, bounded lists). */
export function identityFields(identity: Identity, backend: string | undefined): WireIdentity {
  const groups = identity.groups.length ? joinBounded(identity.groups.map((g) => headerSafe(g).replaceAll(',', '%2C')), ',', MAX_LIST_HEADER) : undefined;
  const scopes = identity.scopes.length ? joinBounded(identity.scopes.map((s) => headerSafe(s).replaceAll(' ', '%20')), ' ', MAX_LIST_HEADER) : undefined;
  return {
    user: headerSafe(identity.user),
    subject: headerSafe(identity.subject),
    issuer: headerSafe(identity.issuer),
    email: identity.email ? headerSafe(identity.email) : undefined,
    groups: groups?.value,
    // Never a silently shorter list: an app that must know every group can refuse.
    groupsTruncated: groups?.truncated ?? false,
    scopes: scopes?.value,
    scopesTruncated: scopes?.truncated ?? false,
    client: identity.clientId ? headerSafe(identity.clientId) : undefined,
    backend: backend ? headerSafe(backend) : undefined,
  };
}

/**
 * The identity values of the last allow for each identity object, with what they were rendered for.
 * An identity object stands for one verified state: the session cache hands out the same object for as
 * long as its entry lives (a revocation drops the entry, a renewal or a re-read from Redis makes a new
 * object), and the bearer verifier the same object per token until the token's cache entry ends (a
 * change of the issuer's keys empties that cache). Keyed further on the policy object (a reload makes
 * a new one), the rule and the backend, the values are the same answer every time: one frozen object,
 * which the transports render once (httpHeaderListOf below, spoe-codec.ts encodeAnswer) and splice the request's own values into.
 */
const lastIdentityFields = new WeakMap<Identity, { readonly policy: Policy; readonly rule: string; readonly backend: string | undefined; readonly fields: WireIdentity }>();

/** identityFields, the same frozen object again for the same identity, policy, rule and backend. */
export function reusedIdentityFields(identity: Identity, decision: { readonly rule: string; readonly backend: string | undefined }, policy: Policy): WireIdentity {
  const last = lastIdentityFields.get(identity);
  if (last !== undefined && last.policy === policy && last.rule === decision.rule && last.backend === decision.backend) return last.fields;
  const fields = Object.freeze(identityFields(identity, decision.backend));
  lastIdentityFields.set(identity, { policy, rule: decision.rule, backend: decision.backend, fields });
  return fields;
}

/** A denied caller: only the name, for HAProxy's log line. */
export function deniedUser(identity: Identity): WireIdentity {
  return { user: headerSafe(identity.user), subject: undefined, issuer: undefined, email: undefined, groups: undefined, groupsTruncated: false, scopes: undefined, scopesTruncated: false, client: undefined, backend: undefined };
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

// ---- how each field travels -------------------------------------------------------------------------

export interface OutcomeField {
  /** The CheckOutcome field it comes from. */
  readonly name: string;
  /** The HTTP check's response header, or undefined when HTTP carries it otherwise (`elsewhere`). */
  readonly header: string | undefined;
  /** Where the HTTP check carries a value that is not a header (the body). */
  readonly elsewhere?: string;
  /** The SPOE variable (txn.idgate.<name>), or undefined when SPOE does not carry it. */
  readonly variable: string | undefined;
  /** A yes/no: written `true` as a header and 1 as a variable. */
  readonly flag?: boolean;
  /** When it is there and what it means (docs/reference.md is generated from it). */
  readonly meaning: string;
  /** The value, or undefined when the answer has none. A variable is never set to ''. */
  readonly value: (outcome: CheckOutcome) => string | undefined;
}

const isClientError = (o: CheckOutcome) => o.status >= 400 && o.status < 500;
const RETRY_AFTER = String(UNAVAILABLE_RETRY_AFTER_SECONDS);

/**
 * Every field of an answer besides its status (the status line; variable `status`), as each transport
 * writes it. HAProxy acts on nothing else: idgate.lua reads these headers, the SPOE lines (dropin/frontend-spoe.cfg) these
 * variables. Values are single-line: identity values percent-encoded (`headerSafe` above).
 */
export const OUTCOME_FIELDS: readonly OutcomeField[] = [
  { name: 'location', header: 'Location', variable: 'location', meaning: 'where to sign in (302, 303)', value: (o) => o.location },
  { name: 'challenge', header: 'WWW-Authenticate', variable: 'www_authenticate', meaning: 'the bearer challenge (401; 403 for a token lacking a scope)', value: (o) => o.challenge },
  { name: 'allow', header: 'Allow', variable: 'allow', meaning: 'the methods not refused with 405 on this route (405; RFC 9110 asks for it): the usual seven and any other a rule here names', value: (o) => o.allow },
  { name: 'dpopNonce', header: 'DPoP-Nonce', variable: 'dpop_nonce', meaning: 'a DPoP nonce (RFC 9449) for the client\'s next proofs: on a 401 `use_dpop_nonce`, and on any answer to a proof whose nonce is due to expire (IDGATE_DPOP_NONCE); HAProxy adds it to the client\'s response', value: (o) => o.dpopNonce },
  { name: 'setCookie', header: 'Set-Cookie', variable: 'set_cookie', meaning: 'a renewed session cookie, for the client whatever the answer', value: (o) => o.setCookie },
  { name: 'contentType', header: 'Content-Type', variable: 'content_type', meaning: 'of the body: `application/json`, or HTML for a browser denied', value: (o) => o.contentType },
  { name: 'body', header: undefined, elsewhere: 'the response body', variable: 'body', meaning: 'for the client; as a variable, on 4xx answers only', value: (o) => (isClientError(o) ? o.body : undefined) },
  { name: 'reason', header: undefined, elsewhere: 'the JSON body\'s `reason`', variable: 'reason', meaning: 'why, in words; on answers with a JSON body only', value: (o) => (o.error === undefined ? undefined : o.reason) },
  { name: 'identity.user', header: 'X-Auth-User', variable: 'user', meaning: 'the user name; also on a denial, for HAProxy\'s log line only', value: (o) => o.identity?.user },
  { name: 'identity.email', header: 'X-Auth-Email', variable: 'email', meaning: 'a verified email', value: (o) => o.identity?.email },
  { name: 'identity.subject', header: 'X-Auth-Subject', variable: 'subject', meaning: 'the `sub` claim', value: (o) => o.identity?.subject },
  { name: 'identity.issuer', header: 'X-Auth-Issuer', variable: 'issuer', meaning: 'the `iss` claim (apps key a person on issuer and subject)', value: (o) => o.identity?.issuer },
  { name: 'identity.groups', header: 'X-Auth-Groups', variable: 'groups', meaning: 'groups, comma-separated', value: (o) => o.identity?.groups },
  { name: 'identity.groupsTruncated', header: 'X-Auth-Groups-Truncated', variable: 'groups_truncated', flag: true, meaning: 'some groups were left out (4096 characters at most)', value: (o) => (o.identity?.groupsTruncated ? 'true' : undefined) },
  { name: 'identity.scopes', header: 'X-Auth-Scopes', variable: 'scopes', meaning: 'scopes of a bearer token, space-separated', value: (o) => o.identity?.scopes },
  { name: 'identity.scopesTruncated', header: 'X-Auth-Scopes-Truncated', variable: 'scopes_truncated', flag: true, meaning: 'some scopes were left out (4096 characters at most)', value: (o) => (o.identity?.scopesTruncated ? 'true' : undefined) },
  { name: 'identity.client', header: 'X-Auth-Client', variable: 'client', meaning: 'the client id of a machine token', value: (o) => o.identity?.client },
  { name: 'identity.backend', header: 'X-Auth-Backend', variable: 'backend', meaning: 'the pool the matching rule names', value: (o) => o.identity?.backend },
  { name: 'requestId', header: 'X-Auth-Request-Id', variable: 'request_id', meaning: 'the request id (200 answers)', value: (o) => o.requestId },
  { name: 'path', header: 'X-Idgate-Path', variable: 'path', meaning: 'the canonical path decided on, forwarded instead of the one sent (200 answers; without it HAProxy fails closed)', value: (o) => o.path },
  { name: 'appCookies', header: undefined, elsewhere: '—', variable: 'cookie_strip', flag: true, meaning: 'the client sent idgate\'s cookies: its Cookie header is replaced (200 answers)', value: (o) => (o.appCookies === undefined ? undefined : 'true') },
  { name: 'appCookies', header: 'X-Idgate-Cookie', variable: 'cookie', meaning: 'the Cookie header without idgate\'s cookies, forwarded instead (none left: an empty header; no variable)', value: (o) => o.appCookies },
  { name: 'status', header: 'Cache-Control', variable: undefined, meaning: '`no-store` on every answer but 200', value: (o) => (o.status === 200 ? undefined : 'no-store') },
  { name: 'kind', header: 'Retry-After', variable: undefined, meaning: `\`${RETRY_AFTER}\` on a 503`, value: (o) => (o.kind === 'unavailable' ? RETRY_AFTER : undefined) },
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
  addVariables(vars, VARIABLE_FIELDS, outcome);
  return vars;
}

function addVariables(vars: Record<string, string | number>, fields: readonly OutcomeField[], outcome: CheckOutcome): Record<string, string | number> {
  for (const f of fields) {
    const value = f.value(outcome);
    if (value !== undefined && value !== '') vars[f.variable!] = f.flag ? 1 : value;
  }
  return vars;
}

// ---- an allow's answer, rendered around its identity ----------------------------------------------
// An allow for the same identity, policy, rule and backend carries the very same WireIdentity object
// (`reusedIdentityFields` above): its headers and variables are rendered once per object, and only
// the fields that differ per request (request id, path, cookies, a renewed cookie) are rendered per
// answer, in their places. The result is the same bytes as httpHeadersOf and spoeVariablesOf give.

/** The fields an outcome's identity fills, a run of OUTCOME_FIELDS; the fields before and after it. */
function aroundIdentity(fields: readonly OutcomeField[]): { before: readonly OutcomeField[]; identity: readonly OutcomeField[]; after: readonly OutcomeField[] } {
  const first = fields.findIndex((f) => f.name.startsWith('identity.'));
  const end = fields.length - [...fields].reverse().findIndex((f) => f.name.startsWith('identity.'));
  const identity = fields.slice(first, end);
  if (first === -1 || identity.some((f) => !f.name.startsWith('identity.'))) throw new Error('OUTCOME_FIELDS: the identity fields must follow one another');
  return { before: fields.slice(0, first), identity, after: fields.slice(end) };
}

const HEADERS = aroundIdentity(HEADER_FIELDS);
const VARIABLES = aroundIdentity(VARIABLE_FIELDS);

/** Only an answer's identity, for the identity fields' `value` (which read nothing else). */
const identityOnly = (identity: WireIdentity) => checkOutcome('allow', 200, '', { identity });

/** Per WireIdentity object: its headers as [name, value, ...], rendered once. */
const identityHeaderList = oncePerObject((identity: WireIdentity): readonly string[] => Object.freeze(pushHeaders([], HEADERS.identity, identityOnly(identity))));

function pushHeaders(list: string[], fields: readonly OutcomeField[], outcome: CheckOutcome): string[] {
  for (const f of fields) {
    const value = f.value(outcome);
    if (value !== undefined) list.push(f.header!, value);
  }
  return list;
}

/**
 * The HTTP check's response headers as node's `writeHead` takes them, [name, value, ...]: the same
 * headers in the same order as httpHeadersOf. An allow's identity headers come prerendered.
 */
export function httpHeaderListOf(outcome: CheckOutcome): string[] {
  const list: string[] = [];
  pushHeaders(list, HEADERS.before, outcome);
  if (outcome.status === 200 && outcome.identity !== undefined) {
    for (const item of identityHeaderList(outcome.identity)) list.push(item);
  } else pushHeaders(list, HEADERS.identity, outcome);
  pushHeaders(list, HEADERS.after, outcome);
  list.push('Content-Length', outcome.body === '' ? '0' : String(Buffer.byteLength(outcome.body)));
  return list;
}

/**
 * An allow's SPOE variables in three parts, in spoeVariablesOf's order: `status` and the variables before
 * the identity's, the identity's (for the agent to encode once per WireIdentity object), those after.
 * Undefined for any other answer (rendered whole, by spoeVariablesOf).
 */
export function spoeVariablesAroundIdentity(outcome: CheckOutcome): { before: Record<string, string | number>; identity: WireIdentity; after: Record<string, string | number> } | undefined {
  if (outcome.status !== 200 || outcome.identity === undefined) return undefined;
  return {
    before: addVariables({ status: outcome.status }, VARIABLES.before, outcome),
    identity: outcome.identity,
    after: addVariables({}, VARIABLES.after, outcome),
  };
}

/** The variables of an identity alone, in spoeVariablesOf's order. */
export function spoeIdentityVariablesOf(identity: WireIdentity): Record<string, string | number> {
  return addVariables({}, VARIABLES.identity, identityOnly(identity));
}

export const INPUT_FIELDS_BEGIN = '<!-- request fields: generated from INPUT_FIELDS in service/src/check/check-wire.ts; do not edit by hand -->';
export const INPUT_FIELDS_END = '<!-- end of the request fields -->';

/** INPUT_FIELDS as the Markdown table of docs/reference.md, between its markers. */
export function inputFieldsTable(): string {
  return [
    INPUT_FIELDS_BEGIN,
    '',
    '| input field | HTTP check (request header) | SPOE argument of `idgate-check` | meaning |',
    '|---|---|---|---|',
    ...INPUT_FIELDS.map((f) => `| \`${f.name}\` | \`${f.header}\` | \`${f.argument}\` (\`${f.fetch}\`) | ${f.meaning} |`),
    '',
    INPUT_FIELDS_END,
  ].join('\n');
}

export const OUTCOME_FIELDS_BEGIN = '<!-- answer fields: generated from OUTCOME_FIELDS in service/src/check/check-wire.ts; do not edit by hand -->';
export const OUTCOME_FIELDS_END = '<!-- end of the answer fields -->';

/** OUTCOME_FIELDS as the Markdown table of docs/reference.md, between its markers. */
export function outcomeFieldsTable(): string {
  const http = (f: OutcomeField) => (f.header === undefined ? f.elsewhere! : `\`${f.header}\`${f.flag ? ': `true`' : ''}`);
  const spoe = (f: OutcomeField) => (f.variable === undefined ? '—' : `\`${f.variable}\`${f.flag ? ' = 1' : ''}`);
  return [
    OUTCOME_FIELDS_BEGIN,
    '',
    '| outcome field | HTTP check | SPOE variable (`txn.idgate.*`) | meaning |',
    '|---|---|---|---|',
    '| `status` | the status line | `status` | 200, 302, 303, 400, 401, 403, 405 or 503 |',
    ...OUTCOME_FIELDS.map((f) => `| \`${f.name}\` | ${http(f)} | ${spoe(f)} | ${f.meaning} |`),
    '',
    OUTCOME_FIELDS_END,
  ].join('\n');
}
