// One error type for everything idgate reports on purpose. The `code` is stable (callers and tests switch
// on it), `status` is what an HTTP answer uses, `expose` is what a user may see; `detail` goes to logs only.

export type IdgateErrorCode =
  | 'config_invalid'
  | 'idp_unavailable'
  | 'store_unavailable'
  | 'login_expired'
  | 'login_mismatch'
  | 'login_failed'
  | 'too_many_logins'
  | 'invalid_request'
  | 'invalid_token'
  | 'session_ended'
  | 'not_found';

const statusByCode: Record<IdgateErrorCode, number> = {
  config_invalid: 500,
  idp_unavailable: 503,
  store_unavailable: 503,
  login_expired: 400,
  login_mismatch: 400,
  login_failed: 502,
  too_many_logins: 503,
  invalid_request: 400,
  invalid_token: 401,
  session_ended: 401,
  not_found: 404,
};

export class IdgateError extends Error {
  readonly code: IdgateErrorCode;
  readonly status: number;
  /** Safe to show to the user (no internals, no secrets). */
  readonly expose: string;
  /** For logs only; may name internals but never secrets or tokens. */
  readonly detail: string | undefined;

  constructor(code: IdgateErrorCode, expose: string, detail?: string) {
    super(`${code}: ${expose}${detail ? ` (${detail})` : ''}`);
    this.name = 'IdgateError';
    this.code = code;
    this.status = statusByCode[code];
    this.expose = expose;
    this.detail = detail;
  }
}

export function isIdgateError(value: unknown): value is IdgateError {
  return value instanceof IdgateError;
}

/** A short description of any thrown value, for logs. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  return String(err);
}
