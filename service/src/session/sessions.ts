// Sessions live in Redis so that every idgate replica behind every HAProxy sees the same ones.
// express-session owns the session lifecycle on the browser endpoints (login regenerates the id, logout
// destroys it) through an adapter over the session store (session-store.ts); the check path reads the
// very same session through the store directly (one GETEX, which also renews the idle TTL) instead of
// running the session middleware.
import crypto from 'node:crypto';
import session from 'express-session';
import type { Config } from '../config.js';
import type { Identity } from '../identity.js';
import type { SessionCache } from './session-cache.js';
import { findCookie, hasSecondCookie, sessionCookieOptions, unsignSessionId } from './cookies.js';
import { idpSessionHash, isPastMaxAge, openSession, SEALED_VERSION, sealedVersionOf, sessionHash, type SessionStore } from './session-store.js';
import { SAME_SESSION_REMEMBERED, SAME_SESSION_WINDOW_MS } from '../limits.js';

/**
 * The version of the session record idgate writes (`v` below), and the versions it reads. A version that
 * changes what the fields mean gets a new number, and the release before it learns to read it first: so in
 * a rolling upgrade (or a rollback) every replica reads every session in Redis. `idgate version` prints both.
 */
export const SESSION_RECORD_VERSION = 1;
export const SESSION_RECORD_VERSIONS_READ: readonly number[] = [1];

/** "session records: reads v1, writes v1", as `idgate version` prints it. */
export function describeSessionRecordVersions(): string {
  return `session records: reads ${SESSION_RECORD_VERSIONS_READ.map((v) => `v${v}`).join(', ')}, writes v${SESSION_RECORD_VERSION}`;
}

/** What idgate keeps in a session (under `req.session.idgate`). */
export interface StoredSession {
  readonly v: typeof SESSION_RECORD_VERSION;
  readonly subject: string;
  readonly user: string;
  readonly email: string | undefined;
  readonly groups: readonly string[];
  readonly roles: readonly string[];
  readonly issuer: string;
  /** Login time, ms since epoch: the absolute lifetime counts from here. */
  readonly createdAt: number;
  /** For RP-initiated logout (id_token_hint). */
  readonly idToken: string;
  readonly refreshToken: string | undefined;
  /** ms since epoch, when the access token expires; with a refresh token, idgate renews before then. */
  readonly accessTokenExpiresAt: number | undefined;
  /** ms since epoch of the login or the last refresh (refresh is due after half the token's life at most). */
  readonly tokensIssuedAt: number;
  /** SHA-256 of the IdP's session id (`sid` claim), for back-channel logout; never the id itself. */
  readonly idpSessionHash: string | undefined;
  /**
   * The scopes the login was granted (the token response's `scope`, else IDGATE_SCOPES as asked), asked
   * again at every refresh: Okta sends a new ID token (and with it new groups) only when `openid` is
   * asked. Absent in sessions from before: IDGATE_SCOPES then.
   */
  readonly grantedScope?: string;
}

declare module 'express-session' {
  interface SessionData {
    idgate: StoredSession;
  }
}

/** express-session over the session store: login's save and logout's destroy go through `store`. */
export function createSessionMiddleware(config: Config, store: SessionStore) {
  return session({
    store: new ExpressSessionStore(store),
    name: config.cookieName,
    secret: [...config.cookieSecrets],
    // 256 random bits: the id is also the key that encrypts the session at rest.
    genid: () => crypto.randomBytes(32).toString('base64url'),
    resave: false,
    saveUninitialized: false,
    rolling: false,
    unset: 'destroy',
    proxy: undefined, // follow express's `trust proxy`
    cookie: sessionCookieOptions(config),
  });
}

/** express-session's Store interface over the session store. */
class ExpressSessionStore extends session.Store {
  constructor(private readonly store: SessionStore) {
    super();
  }

  /**
   * What was just written per session id. express-session saves a login's session twice: login.ts's
   * explicit save (the redirect leaves only once the session is stored) and its own at the end of the
   * request (regenerate leaves the new session unmarked as saved). The second is the same data a moment
   * later (only the cookie's `expires`, computed anew, differs by milliseconds): skipped, so a login
   * costs one write and one replica wait, not two.
   */
  readonly #justWritten = new Map<string, { digest: string; at: number }>();

  override get(sid: string, callback: (err: unknown, session?: session.SessionData | null) => void): void {
    this.store.load(sid).then(
      (record) => callback(null, (record as session.SessionData | undefined) ?? null),
      (err: unknown) => callback(err),
    );
  }

  override set(sid: string, data: session.SessionData, callback?: (err?: unknown) => void): void {
    const digest = sameDataDigest(data);
    const last = this.#justWritten.get(sid);
    if (last !== undefined && last.digest === digest && Date.now() - last.at < SAME_SESSION_WINDOW_MS) return callback?.();
    this.store.save(sid, data as unknown as Record<string, unknown>).then(
      () => {
        if (this.#justWritten.size >= SAME_SESSION_REMEMBERED) this.#justWritten.delete(this.#justWritten.keys().next().value!);
        this.#justWritten.set(sid, { digest, at: Date.now() });
        callback?.();
      },
      (err: unknown) => callback?.(err),
    );
  }

  override destroy(sid: string, callback?: (err?: unknown) => void): void {
    this.#justWritten.delete(sid);
    this.store.destroy(sid).then(
      () => callback?.(),
      (err: unknown) => callback?.(err),
    );
  }

  override touch(sid: string, _data: session.SessionData, callback?: (err?: unknown) => void): void {
    this.store.touch(sid).then(
      () => callback?.(),
      (err: unknown) => callback?.(err),
    );
  }
}

/** A digest of a session record as compared for a repeated save (all of it but the cookie's `expires`): no token is kept. */
function sameDataDigest(data: session.SessionData): string {
  const record = JSON.parse(JSON.stringify(data)) as { cookie?: { expires?: unknown } };
  if (record.cookie) delete record.cookie.expires;
  return crypto.hash('sha256', JSON.stringify(record), 'base64url');
}

export type SessionLookup =
  | {
      readonly found: true;
      readonly identity: Identity;
      readonly session: StoredSession;
      /** The session id (from the cookie): needed to write the session back, encrypted. */
      readonly sid: string;
      /** The whole express-session record, to write back with only `idgate` changed. */
      readonly record: Record<string, unknown>;
    }
  | {
      readonly found: false;
      readonly problem: 'session_invalid' | 'session_expired' | undefined;
      /** With session_invalid: the record is of a version this idgate does not read (e.g. "v2", from a newer idgate). */
      readonly unknownVersion?: string;
      /** With session_invalid: the Cookie header holds two session cookies (hasSecondCookie), and neither counts. */
      readonly twoCookies?: true;
    };

const NO_SESSION: SessionLookup = Object.freeze({ found: false, problem: undefined });
/** Two session cookies: which one is the browser's own cannot be told, so neither counts. */
const TWO_SESSION_COOKIES: SessionLookup = Object.freeze({ found: false, problem: 'session_invalid', twoCookies: true });

/**
 * The session behind a Cookie header, as the check path needs it. Throws IdgateError('store_unavailable')
 * when the store cannot answer: the caller must then answer 503, never allow.
 */
export async function readSessionForCheck(store: SessionStore, config: Config, cookieHeader: string | undefined, now: number, cache?: SessionCache): Promise<SessionLookup> {
  const raw = findCookie(cookieHeader, config.cookieName);
  if (raw === undefined) return NO_SESSION;
  if (hasSecondCookie(cookieHeader!, config.cookieName)) return TWO_SESSION_COOKIES;
  const sid = unsignSessionId(raw, config.cookieSecrets);
  if (sid === undefined) return { found: false, problem: 'session_invalid' };
  const hash = cache?.enabled ? sessionHash(sid) : undefined;
  const cached = hash !== undefined ? cache!.get(hash) : undefined;
  if (cached) {
    if (isPastMaxAge(config, cached.session, now)) return { found: false, problem: 'session_expired' };
    return cached;
  }
  const read = await store.read(sid, now);
  if (!read.found) return read;
  const found = { found: true as const, session: read.session, identity: identityOf(read.session), sid, record: read.record };
  if (hash !== undefined) cache!.set(hash, found, now);
  return found;
}

/** A sealed Redis value opened and checked, or undefined when it is not a valid session of ours. */
export function parseRecord(sid: string, sealed: string): { stored: StoredSession; record: Record<string, unknown> } | undefined {
  const text = openSession(sid, sealed);
  if (text === undefined) return undefined;
  let record: unknown;
  try {
    record = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof record !== 'object' || record === null) return undefined;
  const stored = parseStoredSession(record as Record<string, unknown>);
  return stored ? { stored, record: record as Record<string, unknown> } : undefined;
}

/**
 * Why a sealed value that parseRecord refused is not read, when the reason is its version: "v2" for a value
 * sealed or a record written by a newer idgate. Undefined when it is simply not a valid session.
 */
export function unreadableVersionOf(sid: string, sealed: string): string | undefined {
  const sealedAs = sealedVersionOf(sealed);
  if (sealedAs === undefined) return undefined;
  if (sealedAs !== SEALED_VERSION) return `v${sealedAs}`;
  const text = openSession(sid, sealed);
  if (text === undefined) return undefined;
  try {
    const v = (JSON.parse(text) as { idgate?: { v?: unknown } } | null)?.idgate?.v;
    return typeof v === 'number' && Number.isSafeInteger(v) && !SESSION_RECORD_VERSIONS_READ.includes(v) ? `v${v}` : undefined;
  } catch {
    return undefined;
  }
}

export function identityOf(stored: StoredSession): Identity {
  return {
    via: 'session',
    subject: stored.subject,
    user: stored.user,
    email: stored.email,
    groups: stored.groups,
    roles: stored.roles,
    scopes: [],
    clientId: undefined,
    issuer: stored.issuer,
    // Sessions come only from logins at IDGATE_ISSUER, whose ID tokens openid-client checked for that issuer.
    fromPrimaryIssuer: true,
  };
}

/** express-session's record, checked field by field: a malformed entry is "no session", never a crash. */
function parseStoredSession(data: Record<string, unknown>): StoredSession | undefined {
  const s = data.idgate as Record<string, unknown> | undefined;
  if (!s || typeof s !== 'object' || typeof s.v !== 'number' || !SESSION_RECORD_VERSIONS_READ.includes(s.v)) return undefined;
  if (typeof s.subject !== 'string' || typeof s.user !== 'string' || typeof s.issuer !== 'string' || typeof s.createdAt !== 'number') return undefined;
  if (!Array.isArray(s.groups) || !s.groups.every((g) => typeof g === 'string')) return undefined;
  if (s.email !== undefined && typeof s.email !== 'string') return undefined;
  if (s.roles === undefined) s.roles = [];
  if (!Array.isArray(s.roles) || !s.roles.every((r) => typeof r === 'string')) return undefined;
  if (typeof s.tokensIssuedAt !== 'number') s.tokensIssuedAt = s.createdAt;
  // Sessions from before hashing kept the IdP session id itself: hashed here, so a renewal never writes it back.
  if (typeof s.idpSessionId === 'string' && s.idpSessionHash === undefined) s.idpSessionHash = idpSessionHash(s.idpSessionId);
  delete s.idpSessionId;
  if (s.idpSessionHash !== undefined && typeof s.idpSessionHash !== 'string') return undefined;
  if (s.grantedScope !== undefined && typeof s.grantedScope !== 'string') return undefined;
  return s as unknown as StoredSession;
}
