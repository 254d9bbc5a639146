// Sessions live in Redis so that every idgate replica behind every HAProxy sees the same ones.
// express-session owns the session lifecycle on the browser endpoints (login regenerates the id, logout
// destroys it) through the encrypted store of session-store.ts; the check path reads the very same Redis
// key directly (one GETEX, which also renews the idle TTL) instead of running the session middleware.
import crypto from 'node:crypto';
import session from 'express-session';
import { Redis } from 'ioredis';
import signature from 'cookie-signature';
import type { Config } from './config.js';
import { IdgateError } from './errors.js';
import type { Identity } from './policy.js';
import type { SessionCache } from './session-cache.js';
import { EncryptedRedisStore, openSession, sessionHash, sessionKey } from './session-store.js';

/** What idgate keeps in a session (under `req.session.idgate`). */
export interface StoredSession {
  readonly v: 1;
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
  /** The IdP's session id (`sid` claim), for back-channel logout. */
  readonly idpSessionId: string | undefined;
}

declare module 'express-session' {
  interface SessionData {
    idgate: StoredSession;
  }
}

export function createRedisClient(config: Config): Redis {
  return new Redis(config.redisUrl, {
    // Fail fast instead of queueing: the check answers 503 rather than hanging when Redis is away.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: config.redisTimeoutMs,
    connectTimeout: 2000,
    retryStrategy: (attempt) => Math.min(attempt * 200, 2000),
    lazyConnect: false,
  });
}

export function createSessionMiddleware(config: Config, redis: Redis) {
  return session({
    store: new EncryptedRedisStore(redis, config),
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

export function sessionCookieOptions(config: Config) {
  return {
    httpOnly: true,
    sameSite: 'lax' as const,
    secure: config.cookieSecure,
    domain: config.cookieDomain,
    path: '/',
    maxAge: config.sessionMaxAgeSeconds * 1000,
  };
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
  | { readonly found: false; readonly problem: 'session_invalid' | 'session_expired' | undefined };

const NO_SESSION: SessionLookup = Object.freeze({ found: false, problem: undefined });

/**
 * The session behind a Cookie header, as the check path needs it. Throws IdgateError('store_unavailable')
 * when Redis cannot answer: the caller must then answer 503, never allow.
 */
export async function readSessionForCheck(redis: Redis, config: Config, cookieHeader: string | undefined, now: number, cache?: SessionCache): Promise<SessionLookup> {
  const raw = findCookie(cookieHeader, config.cookieName);
  if (raw === undefined) return NO_SESSION;
  const sid = unsignSessionId(raw, config.cookieSecrets);
  if (sid === undefined) return { found: false, problem: 'session_invalid' };
  const hash = cache?.enabled ? sessionHash(sid) : undefined;
  const cached = hash !== undefined ? cache!.get(hash) : undefined;
  if (cached) {
    if (now - cached.session.createdAt > config.sessionMaxAgeSeconds * 1000) return { found: false, problem: 'session_expired' };
    return cached;
  }
  let sealed: string | null;
  try {
    sealed = await redis.getex(sessionKey(config, sid), 'EX', config.sessionIdleTtlSeconds);
  } catch (err) {
    throw new IdgateError('store_unavailable', 'session store unavailable', (err as Error).message);
  }
  if (sealed === null) return { found: false, problem: 'session_expired' };
  const parsed = parseRecord(sid, sealed);
  if (!parsed) return { found: false, problem: 'session_invalid' };
  if (now - parsed.stored.createdAt > config.sessionMaxAgeSeconds * 1000) return { found: false, problem: 'session_expired' };
  const found = { found: true as const, session: parsed.stored, identity: identityOf(parsed.stored), sid, record: parsed.record };
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
  if (!s || typeof s !== 'object' || s.v !== 1) return undefined;
  if (typeof s.subject !== 'string' || typeof s.user !== 'string' || typeof s.issuer !== 'string' || typeof s.createdAt !== 'number') return undefined;
  if (!Array.isArray(s.groups) || !s.groups.every((g) => typeof g === 'string')) return undefined;
  if (s.email !== undefined && typeof s.email !== 'string') return undefined;
  if (s.roles === undefined) s.roles = [];
  if (!Array.isArray(s.roles) || !s.roles.every((r) => typeof r === 'string')) return undefined;
  if (typeof s.tokensIssuedAt !== 'number') s.tokensIssuedAt = s.createdAt;
  return s as unknown as StoredSession;
}

/** The first cookie called `name` in a Cookie header, URI-decoded as express-session does. */
export function findCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  let from = 0;
  while (from < header.length) {
    const end = header.indexOf(';', from);
    const pair = header.slice(from, end === -1 ? header.length : end);
    from = end === -1 ? header.length : end + 1;
    const eq = pair.indexOf('=');
    if (eq === -1 || pair.slice(0, eq).trim() !== name) continue;
    let value = pair.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    try {
      return decodeURIComponent(value);
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/** Session id from an express-session cookie value ("s:<id>.<signature>"), checked against every secret. */
export function unsignSessionId(value: string, secrets: readonly string[]): string | undefined {
  if (!value.startsWith('s:')) return undefined;
  const known = verifiedCookies.get(value);
  if (known !== undefined && known.secrets === secrets) return known.sid;
  for (const secret of secrets) {
    const sid = signature.unsign(value.slice(2), secret);
    if (sid !== false) {
      if (verifiedCookies.size >= 10_000) verifiedCookies.delete(verifiedCookies.keys().next().value!);
      verifiedCookies.set(value, { sid, secrets });
      return sid;
    }
  }
  return undefined;
}

/**
 * Cookie values whose signature was already checked (an HMAC per request is the check path's biggest
 * cost): the same string with the same secrets verifies the same way. Failures are never kept.
 */
const verifiedCookies = new Map<string, { sid: string; secrets: readonly string[] }>();

// Pending logins: kept server-side under the OAuth `state`, so several tabs can log in at once without a
// cookie per attempt. One small cookie per browser (the binding) ties the callback to the browser that
// started the login (login CSRF): its hash is stored with the pending login.

export interface PendingLogin {
  readonly codeVerifier: string;
  readonly nonce: string;
  readonly returnTo: string;
  readonly bindingHash: string;
  readonly startedAt: number;
}

function pendingKey(config: Config, state: string): string {
  return `${config.redisKeyPrefix}login:${hashValue(state)}`;
}

export async function savePendingLogin(redis: Redis, config: Config, state: string, pending: PendingLogin): Promise<void> {
  try {
    await redis.set(pendingKey(config, state), JSON.stringify(pending), 'EX', config.loginTtlSeconds);
  } catch (err) {
    throw new IdgateError('store_unavailable', 'session store unavailable', (err as Error).message);
  }
}

/** Takes (and deletes) the pending login: a state is good for one callback only. */
export async function takePendingLogin(redis: Redis, config: Config, state: string): Promise<PendingLogin | undefined> {
  let text: string | null;
  try {
    text = await redis.getdel(pendingKey(config, state));
  } catch (err) {
    throw new IdgateError('store_unavailable', 'session store unavailable', (err as Error).message);
  }
  if (text === null) return undefined;
  try {
    return JSON.parse(text) as PendingLogin;
  } catch {
    return undefined;
  }
}

export function hashValue(value: string): string {
  return crypto.createHash('sha256').update(value).digest('base64url');
}
