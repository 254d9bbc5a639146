// Pending logins, in any store: what one holds and how its state and binding are compared.
import crypto from 'node:crypto';
import type { Config } from '../config.js';

// Pending logins: kept server-side under the OAuth `state`, so several tabs can log in at once without a
// cookie per attempt. One small cookie per browser (the binding) ties the callback to the browser that
// started the login (login CSRF): its hash is stored with the pending login.
//
// Anyone can start a login, so pending logins are bounded: per browser (a sorted set per binding, its
// oldest dropped beyond IDGATE_LOGIN_MAX_PENDING_PER_BROWSER, so many tabs still work) and overall (one
// sorted set of every pending login, scored by expiry; at IDGATE_LOGIN_MAX_PENDING a new login is refused
// until the oldest expires). A client that drops its cookies gets a new binding each time: the overall
// bound is the one that holds it. Both bounds are kept by one Lua script (atomic across replicas); the
// check path never reads these keys.
//
// Redis Cluster runs a script only on keys of one hash slot, and the overall bound needs one count of
// every pending login: so every pending-login key (the logins, the per-browser indexes, the overall
// index) carries the hash tag {logins} and lives in one slot, on one primary. Logins are rare next to
// checks (three commands per login) and their memory is capped by IDGATE_LOGIN_MAX_PENDING, so that one
// primary carries little. Sessions, which every check reads, spread over all slots (redis-session-store.ts).

export interface PendingLogin {
  readonly codeVerifier: string;
  readonly nonce: string;
  readonly returnTo: string;
  /** hashValue of the browser's binding cookie. */
  readonly bindingHash: string;
  readonly startedAt: number;
}

export type SavedPendingLogin =
  /** `dropped`: this browser's oldest pending logins dropped to stay within its bound. */
  | { readonly saved: true; readonly dropped: number }
  /** The overall bound is reached; a place frees in `retryAfterSeconds`. */
  | { readonly saved: false; readonly retryAfterSeconds: number };

export type PendingLoginClaim =
  | { readonly outcome: 'taken'; readonly pending: PendingLogin }
  | { readonly outcome: 'unknown' }
  | { readonly outcome: 'other_browser' };

/** How a login's `state` and its browser's binding cookie are stored: base64url(SHA-256(value)). */
export function hashValue(value: string): string {
  return crypto.hash('sha256', value, 'base64url');
}

/** A stored pending login read back, or undefined when it is not one (any store: the same check). */
export function parsePendingLogin(text: string): PendingLogin | undefined {
  try {
    const value = JSON.parse(text) as Partial<PendingLogin> | null;
    return value && typeof value.bindingHash === 'string' ? (value as PendingLogin) : undefined;
  } catch {
    return undefined;
  }
}

/** Whether `binding` (the cookie) is the one a pending login was started with, compared in constant time. */
export function isBindingOf(pending: PendingLogin, binding: string | undefined): boolean {
  if (binding === undefined) return false;
  const a = hashValue(binding);
  const b = pending.bindingHash;
  return a.length === b.length && crypto.timingSafeEqual(Buffer.from(a), Buffer.from(b));
}

/** When the overall bound refuses a login: in how many seconds a place frees (ms until the oldest expires), within 1 s and the login TTL. */
export function retryAfterSeconds(config: Pick<Config, 'loginTtlSeconds'>, msUntilFree: number): number {
  return Math.min(config.loginTtlSeconds, Math.max(1, Math.ceil(msUntilFree / 1000)));
}
