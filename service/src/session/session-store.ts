// The session store's interface: every operation idgate performs on what it keeps (sessions: read, renew,
// revoke, index, lock; pending logins; back-channel logout token ids; DPoP proof ids), whatever keeps it.
// RedisSessionStore (redis-session-store.ts) is the one production uses; the tests also run an in-memory
// one with a clock of their own (test/support/memory-session-store.ts), and one suite holds both to the
// same behaviour (test/unit/session-store.test.ts). Every failure of a store is one error,
// IdgateError('store_unavailable') (storeUnavailable).
import crypto from 'node:crypto';
import { IdgateError, isIdgateError } from '../errors.js';
import type { ReplayCache } from '../replay-cache.js';
import type { StoredSession } from './session-record.js';
import type { PendingLogin, PendingLoginClaim, SavedPendingLogin } from './pending-logins.js';

/** A session as the store reads it: its record checked, its idle and absolute timeouts applied. */
export type SessionRead =
  | {
      readonly found: true;
      readonly session: StoredSession;
      /** The whole express-session record, to write back with only `idgate` changed. */
      readonly record: Record<string, unknown>;
    }
  | {
      readonly found: false;
      /** expired: absent (idle timeout, revoked, never existed) or past its absolute timeout. */
      readonly problem: 'session_invalid' | 'session_expired';
      /** Why it is invalid: the record is of a version this idgate does not read (e.g. "v2", from a newer idgate). */
      readonly unknownVersion?: string;
    };

/** A session as revocation names it: the hash of its id, and its subject (whose index lists it). */
export interface SessionRef {
  readonly hash: string;
  readonly subject: string;
}

export interface IndexedSession extends SessionRef {
  readonly user: string;
  readonly createdAt: number;
}

/** A held refresh lock: released by the holder, or lost when the holder dies (its lease runs out). */
export interface SessionLock {
  release(): Promise<void>;
}

/**
 * Every operation on sessions. Each rejects with IdgateError('store_unavailable') when the store cannot
 * answer; callers fail closed on it. `now` is ms since epoch: the absolute timeout is judged at it.
 */
export interface SessionStore extends ReplayCache {
  /** The check's read: the session of `sid`, its idle timeout renewed (one round trip). */
  read(sid: string, now: number): Promise<SessionRead>;
  /** The session of `sid` as it is now, idle timeout untouched: a renewal reads it again under its lock. */
  readLatest(sid: string, now: number): Promise<SessionRead>;
  /** The stored record as it is, unchecked, or undefined: express-session's view (the browser routes). */
  load(sid: string): Promise<Record<string, unknown> | undefined>;
  /** A login's session: written with the idle timeout and indexed for revocation. Waits for a replica. */
  save(sid: string, record: Record<string, unknown>): Promise<void>;
  /**
   * Renewed tokens written back, only while the session still exists (one logged out meanwhile stays
   * out), without resetting its idle timeout. False when the session is gone. Waits for a replica.
   */
  renew(sid: string, record: Record<string, unknown>): Promise<boolean>;
  /** The idle timeout renewed. */
  touch(sid: string): Promise<void>;
  /** Logout: the session deleted and its revocation announced. Waits for a replica when it existed. */
  destroy(sid: string): Promise<void>;
  /** Sessions deleted by hash and their revocation announced; how many existed. Waits for a replica. */
  revoke(sessions: readonly SessionRef[]): Promise<number>;
  /** Sessions of a subject, or of every subject of a user name, oldest first. */
  list(who: { subject?: string; user?: string }): Promise<IndexedSession[]>;
  /** Sessions that came from one IdP session (the `sid` claim of a back-channel logout token). */
  sessionsOfIdpSession(idpSessionId: string): Promise<SessionRef[]>;
  /** The refresh lock of a session (one renewal at a time, across replicas), or undefined when another holds it. */
  lock(sid: string): Promise<SessionLock | undefined>;
  /**
   * A login under way, kept under its OAuth `state` for IDGATE_LOGIN_TTL within both bounds (pending-logins.ts):
   * beyond IDGATE_LOGIN_MAX_PENDING_PER_BROWSER this browser's oldest are dropped (`dropped`); at
   * IDGATE_LOGIN_MAX_PENDING overall a new one is refused (`saved: false`) until the oldest expires.
   */
  savePendingLogin(state: string, pending: PendingLogin): Promise<SavedPendingLogin>;
  /**
   * The pending login of `state`, taken once, and only by the browser whose binding cookie is `binding`:
   * a callback from any other browser (or none) leaves it for the browser that started it.
   */
  takePendingLogin(state: string, binding: string | undefined): Promise<PendingLoginClaim>;
  /** True the first time `issuer`'s back-channel logout token id `jti` is seen within `ttlSeconds`; false for a replay. */
  firstUseOfLogoutToken(issuer: string, jti: string, ttlSeconds: number): Promise<boolean>;
}

/** What revocation needs, and all `idgate sessions` does: find a user's sessions and end them. */
export type SessionRevocation = Pick<SessionStore, 'list' | 'revoke' | 'sessionsOfIdpSession'>;

/** How a logout token id is remembered: the digest of its issuer and jti (one issuer's jti is not another's). */
export function logoutTokenDigest(issuer: string, jti: string): string {
  return crypto.hash('sha256', `${issuer}\0${jti}`, 'base64url');
}

/** The one error for a store that cannot answer (Redis away, out of memory, timed out). */
export function storeUnavailable(err: unknown): IdgateError {
  if (isIdgateError(err)) return err;
  return IdgateError.of('store_unavailable', err instanceof Error ? err.message : String(err));
}
