// One error type for everything idgate reports on purpose. The `code` is stable (callers and tests switch
// on it) and ERRORS says what it means; `expose` is what a user may see; `detail` goes to logs only.

/**
 * What each error code means, declared once (as fastify declares its errors): the HTTP status of an answer
 * it causes, the `error` of a JSON answer (RFC 6749/6750 style), the label it counts under in metrics, and
 * what a user is told when the throw site has nothing more precise to say (IdgateError.of).
 */
export interface ErrorSpec {
  readonly status: number;
  readonly wire: string;
  readonly metric: string;
  readonly text: string;
}

export const ERRORS = {
  idp_unavailable: { status: 503, wire: 'unavailable', metric: 'idp_unavailable', text: 'the identity provider is not reachable' },
  // Not an outage: the IdP answers, and refuses idgate's own client credentials (401/403 at introspection).
  // The client still gets the 503 of an outage; the audit line, log and /readyz say configuration.
  introspection_config_error: { status: 503, wire: 'unavailable', metric: 'introspection_config_error', text: "the identity provider refuses idgate's introspection credentials (a configuration error)" },
  store_unavailable: { status: 503, wire: 'unavailable', metric: 'store_unavailable', text: 'session store unavailable' },
  login_expired: { status: 400, wire: 'invalid_request', metric: 'login_expired', text: 'this sign-in has expired or was already used; please start again' },
  login_mismatch: { status: 400, wire: 'invalid_request', metric: 'login_mismatch', text: 'this sign-in was started in another browser; please start again' },
  login_failed: { status: 502, wire: 'server_error', metric: 'login_failed', text: 'the identity provider did not complete the login' },
  too_many_logins: { status: 503, wire: 'unavailable', metric: 'too_many_logins', text: 'too many sign-ins are under way right now; please try again in a minute' },
  invalid_request: { status: 400, wire: 'invalid_request', metric: 'invalid_request', text: 'the request is malformed' },
  // CONNECT and TRACE everywhere; a method outside the usual ones where no policy rule names it (policy.ts).
  method_not_allowed: { status: 405, wire: 'method_not_allowed', metric: 'method_not_allowed', text: 'this method is not allowed here' },
  // The check's 401 says `unauthorized`; its WWW-Authenticate challenge names the code itself (RFC 6750).
  invalid_token: { status: 401, wire: 'unauthorized', metric: 'invalid_token', text: 'the token is not valid' },
  // A DPoP proof (RFC 9449) that fails; its challenge is `DPoP error="invalid_dpop_proof"`.
  invalid_dpop_proof: { status: 401, wire: 'unauthorized', metric: 'invalid_dpop_proof', text: 'the DPoP proof is not valid' },
  // IDGATE_DPOP_NONCE: a proof without idgate's nonce, or with one idgate did not issue or issued too long
  // ago (RFC 9449 section 9); its challenge is `DPoP error="use_dpop_nonce"`, with a DPoP-Nonce to retry with.
  use_dpop_nonce: { status: 401, wire: 'unauthorized', metric: 'use_dpop_nonce', text: 'the DPoP proof must carry the nonce idgate gives (DPoP-Nonce)' },
  session_ended: { status: 401, wire: 'unauthorized', metric: 'session_ended', text: 'the session has ended' },
  not_found: { status: 404, wire: 'not_found', metric: 'not_found', text: 'there is no such idgate page' },
  // The check's answers (check.ts): the wire error of its JSON body, and the reason label of
  // idgate_decisions_total. A 401 names its credential problem (policy.ts CredentialProblem) in the label.
  untrusted_peer: { status: 403, wire: 'untrusted_peer', metric: 'untrusted_peer', text: 'only HAProxy may ask idgate for decisions' },
  no_credentials: { status: 401, wire: 'unauthorized', metric: 'no_credentials', text: 'no credentials' },
  session_expired: { status: 401, wire: 'unauthorized', metric: 'session_expired', text: 'the session expired' },
  session_invalid: { status: 401, wire: 'unauthorized', metric: 'session_invalid', text: 'the session cookie is invalid' },
  token_not_accepted: { status: 401, wire: 'unauthorized', metric: 'token_not_accepted', text: 'a bearer token does not count on this route; it needs a signed-in session' },
  access_denied: { status: 403, wire: 'access_denied', metric: 'policy', text: 'the policy denies this request' },
  no_rule: { status: 403, wire: 'access_denied', metric: 'no_rule', text: 'no policy rule matches this request' },
  insufficient_scope: { status: 403, wire: 'access_denied', metric: 'insufficient_scope', text: 'the token lacks a scope this route needs' },
  // Whatever the cause (Redis, the IdP, a fault), the check's 503 tells the client only this.
  internal_error: { status: 503, wire: 'unavailable', metric: 'internal_error', text: 'idgate cannot decide right now' },
} as const satisfies Record<string, ErrorSpec>;

export type IdgateErrorCode = keyof typeof ERRORS;

export class IdgateError extends Error {
  readonly code: IdgateErrorCode;
  readonly status: number;
  /** Safe to show to the user (no internals, no secrets). */
  readonly expose: string;
  /** For logs only; may name internals but never secrets or tokens. */
  readonly detail: string | undefined;

  /** `expose`: what the user is told here, more precise than the code's text in ERRORS. */
  constructor(code: IdgateErrorCode, expose: string, detail?: string) {
    super(`${code}: ${expose}${detail ? ` (${detail})` : ''}`);
    this.name = 'IdgateError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.expose = expose;
    this.detail = detail;
  }

  /** An error that tells the user its code's text from ERRORS. */
  static of(code: IdgateErrorCode, detail?: string): IdgateError {
    return new IdgateError(code, ERRORS[code].text, detail);
  }
}

/** The JSON body of every error answer, the check's and the routes' alike: `error` is the code's wire error. */
export interface ErrorBody {
  readonly error: string;
  /** What the client is told: the code's text from ERRORS unless the answer has something more precise. */
  readonly reason: string;
}

export function errorBody(code: IdgateErrorCode, reason: string = ERRORS[code].text): ErrorBody {
  return { error: ERRORS[code].wire, reason };
}

/** What sendError needs of a response; Express's satisfies it. */
interface JsonResponse {
  status(code: number): { json(body: unknown): unknown };
}

/**
 * Answers an Express route's request with an error of `code`: the code's status and errorBody's JSON.
 * `status`: a body parser's own 4xx (413 too large, 415 charset), kept as it said. `reasonField`:
 * 'error_description' where the answer is an OAuth 2.0 error response (RFC 6749 section 5.2), as OIDC
 * Back-Channel Logout's is.
 */
export function sendError(res: JsonResponse, code: IdgateErrorCode, reason?: string, options: { status?: number; reasonField?: 'reason' | 'error_description' } = {}): void {
  const { error, reason: text } = errorBody(code, reason);
  const body = options.reasonField === 'error_description' ? { error, error_description: text } : { error, reason: text };
  res.status(options.status ?? ERRORS[code].status).json(body);
}

export function isIdgateError(value: unknown): value is IdgateError {
  return value instanceof IdgateError;
}

/** A short description of any thrown value, for logs. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  return String(err);
}
