// Sessions live in Redis so that every idgate replica behind every HAProxy sees the same ones.
// express-session owns the session lifecycle on the browser endpoints (login regenerates the id, logout
// destroys it) through an adapter over the session store (session-store.ts); the check path reads the
// very same session through the store directly (one GETEX, which also renews the idle TTL) instead of
// running the session middleware.
import crypto from 'node:crypto';
import session from 'express-session';
import type { Config } from '../config.js';
import type { Identity } from '../policy/policy.js';
import type { RedisClient } from '../redis.js';
import type { SessionCache } from './session-cache.js';
import { findCookie, sessionCookieOptions, unsignSessionId } from './cookies.js';
import { idpSessionHash, isPastMaxAge, openSession, redisKeys, SEALED_VERSION, sealedVersionOf, sessionHash, storeUnavailable, type SessionStore } from './session-store.js';
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
  return crypto.createHash('sha256').update(JSON.stringify(record)).digest('base64url');
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
    };

const NO_SESSION: SessionLookup = Object.freeze({ found: false, problem: undefined });

/**
 * The session behind a Cookie header, as the check path needs it. Throws IdgateError('store_unavailable')
 * when the store cannot answer: the caller must then answer 503, never allow.
 */
export async function readSessionForCheck(store: SessionStore, config: Config, cookieHeader: string | undefined, now: number, cache?: SessionCache): Promise<SessionLookup> {
  const raw = findCookie(cookieHeader, config.cookieName);
  if (raw === undefined) return NO_SESSION;
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
// primary carries little. Sessions, which every check reads, spread over all slots (session-store.ts).

export interface PendingLogin {
  readonly codeVerifier: string;
  readonly nonce: string;
  readonly returnTo: string;
  readonly bindingHash: string;
  readonly startedAt: number;
}

const pendingKey = (config: Config, state: string) => redisKeys.pendingLogin(config, hashValue(state));
const pendingIndexKey = (config: Config) => redisKeys.pendingLoginIndex(config);
const browserPendingKey = (config: Config, bindingHash: string) => redisKeys.browserPendingLogins(config, bindingHash);

// KEYS: the login, the overall index, the browser's index. ARGV: the login's member (hash of its state),
// its value, TTL (ms), per-browser bound, overall bound, the prefix of login keys (to delete a dropped
// login by its member). Returns {1, logins dropped} when saved, {0, ms until a place frees} when refused.
// Time is Redis's own, so replicas with skewed clocks agree on what has expired. The `#!lua` line (Redis
// 7) makes Redis refuse the whole script when it is out of memory, rather than run it part way. The
// logins it drops are keys it was not given (their names come from the index): Redis Cluster allows that
// because they share the slot of the keys it was given (the {logins} tag).
const SAVE_PENDING_LOGIN = `#!lua
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local dropped = 0
local over = redis.call('ZCARD', KEYS[3]) - tonumber(ARGV[4]) + 1
if over > 0 then
  local oldest = redis.call('ZPOPMIN', KEYS[3], over)
  for i = 1, #oldest, 2 do
    redis.call('DEL', ARGV[6] .. oldest[i])
    dropped = dropped + redis.call('ZREM', KEYS[2], oldest[i])
  end
end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return {0, math.max(0, tonumber(first[2]) - now)}
end
local expires = now + tonumber(ARGV[3])
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[2], expires, ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[3], expires, ARGV[1])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
return {1, dropped}
`;

export type SavedPendingLogin =
  /** `dropped`: this browser's oldest pending logins dropped to stay within its bound. */
  | { readonly saved: true; readonly dropped: number }
  /** The overall bound is reached; a place frees in `retryAfterSeconds`. */
  | { readonly saved: false; readonly retryAfterSeconds: number };

/**
 * Stores a pending login within both bounds. Throws IdgateError('store_unavailable') when Redis cannot
 * take it (unreachable, or out of memory: with `maxmemory-policy noeviction` writes fail instead of
 * evicting sessions).
 */
export async function savePendingLogin(redis: RedisClient, config: Config, state: string, pending: PendingLogin): Promise<SavedPendingLogin> {
  const ttlMs = config.loginTtlSeconds * 1000;
  let result: unknown;
  try {
    result = await redis.eval(
      SAVE_PENDING_LOGIN,
      3,
      pendingKey(config, state),
      pendingIndexKey(config),
      browserPendingKey(config, pending.bindingHash),
      hashValue(state),
      JSON.stringify(pending),
      String(ttlMs),
      String(config.loginMaxPendingPerBrowser),
      String(config.loginMaxPending),
      redisKeys.pendingLogin(config, ''),
    );
  } catch (err) {
    throw storeUnavailable(err);
  }
  const [saved, n] = result as [number, number];
  if (saved === 1) return { saved: true, dropped: n };
  return { saved: false, retryAfterSeconds: Math.min(config.loginTtlSeconds, Math.max(1, Math.ceil(n / 1000))) };
}

export type PendingLoginClaim =
  | { readonly outcome: 'taken'; readonly pending: PendingLogin }
  | { readonly outcome: 'unknown' }
  | { readonly outcome: 'other_browser' };

/**
 * Deletes KEYS[1] only while it still holds ARGV[1] (of two callbacks that read the same login, one wins),
 * and takes it out of the pending-login index KEYS[2] (member ARGV[2]).
 */
const DELETE_IF_UNCHANGED = "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('ZREM', KEYS[2], ARGV[2]) return redis.call('DEL', KEYS[1]) end return 0";

/**
 * Takes the pending login of `state` for the browser whose binding cookie is `binding`. The login is
 * read first and deleted only when the binding matches, so a request without the binding (or with
 * another browser's) cannot spend the login of the browser that started it; the delete is a
 * compare-and-delete, so a state is still good for one callback only.
 */
export async function takePendingLogin(redis: RedisClient, config: Config, state: string, binding: string | undefined): Promise<PendingLoginClaim> {
  const key = pendingKey(config, state);
  try {
    const text = await redis.get(key);
    const pending = text === null ? undefined : parsePendingLogin(text);
    if (!pending) return { outcome: 'unknown' };
    if (binding === undefined || !sameHash(hashValue(binding), pending.bindingHash)) return { outcome: 'other_browser' };
    // Out of the overall index at once (not at its expiry): a completed login frees its place.
    const deleted = await redis.eval(DELETE_IF_UNCHANGED, 2, key, pendingIndexKey(config), text!, hashValue(state));
    return deleted === 1 ? { outcome: 'taken', pending } : { outcome: 'unknown' };
  } catch (err) {
    throw storeUnavailable(err);
  }
}

function parsePendingLogin(text: string): PendingLogin | undefined {
  try {
    const value = JSON.parse(text) as Partial<PendingLogin> | null;
    return value && typeof value.bindingHash === 'string' ? (value as PendingLogin) : undefined;
  } catch {
    return undefined;
  }
}

function sameHash(a: string, b: string): boolean {
  return a.length === b.length && crypto.timingSafeEqual(Buffer.from(a), Buffer.from(b));
}

export function hashValue(value: string): string {
  return crypto.createHash('sha256').update(value).digest('base64url');
}
