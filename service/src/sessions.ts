// Sessions live in Redis so that every idgate replica behind every HAProxy sees the same ones.
// express-session + connect-redis own the session lifecycle on the browser endpoints (login regenerates the
// id, logout destroys it); the check path reads the very same Redis key directly (one GETEX, which also
// renews the idle TTL) instead of running the session middleware on every request.
import crypto from 'node:crypto';
import session from 'express-session';
import RedisStore from 'connect-redis';
import { Redis } from 'ioredis';
import signature from 'cookie-signature';
import type { Config } from './config.js';
import { IdgateError } from './errors.js';
import type { Identity } from './policy.js';

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
  /** ms since epoch, when the access token from login expires (refresh arrives with session lifecycle work). */
  readonly accessTokenExpiresAt: number | undefined;
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

export function sessionKeyPrefix(config: Config): string {
  return `${config.redisKeyPrefix}sess:`;
}

export function createSessionMiddleware(config: Config, redis: Redis) {
  const store = new RedisStore({
    client: redis,
    prefix: sessionKeyPrefix(config),
    // The key's TTL is the idle timeout; the check path renews it with GETEX.
    ttl: () => config.sessionIdleTtlSeconds,
  });
  return session({
    store,
    name: config.cookieName,
    secret: [...config.cookieSecrets],
    resave: false,
    saveUninitialized: false,
    rolling: false,
    unset: 'destroy',
    proxy: undefined, // follow express's `trust proxy`
    cookie: {
      httpOnly: true,
      sameSite: 'lax',
      secure: config.cookieSecure,
      domain: config.cookieDomain,
      path: '/',
      maxAge: config.sessionMaxAgeSeconds * 1000,
    },
  });
}

export type SessionLookup =
  | { readonly found: true; readonly identity: Identity; readonly session: StoredSession }
  | { readonly found: false; readonly problem: 'session_invalid' | 'session_expired' | undefined };

const NO_SESSION: SessionLookup = Object.freeze({ found: false, problem: undefined });

/**
 * The session behind a Cookie header, as the check path needs it. Throws IdgateError('store_unavailable')
 * when Redis cannot answer: the caller must then answer 503, never allow.
 */
export async function readSessionForCheck(redis: Redis, config: Config, cookieHeader: string | undefined, now: number): Promise<SessionLookup> {
  const raw = findCookie(cookieHeader, config.cookieName);
  if (raw === undefined) return NO_SESSION;
  const sid = unsignSessionId(raw, config.cookieSecrets);
  if (sid === undefined) return { found: false, problem: 'session_invalid' };
  let text: string | null;
  try {
    text = await redis.getex(sessionKeyPrefix(config) + sid, 'EX', config.sessionIdleTtlSeconds);
  } catch (err) {
    throw new IdgateError('store_unavailable', 'session store unavailable', (err as Error).message);
  }
  if (text === null) return { found: false, problem: 'session_expired' };
  const stored = parseStoredSession(text);
  if (!stored) return { found: false, problem: 'session_invalid' };
  if (now - stored.createdAt > config.sessionMaxAgeSeconds * 1000) return { found: false, problem: 'session_expired' };
  return { found: true, session: stored, identity: identityOf(stored) };
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
  };
}

/** express-session's JSON, checked field by field: a malformed entry is "no session", never a crash. */
function parseStoredSession(text: string): StoredSession | undefined {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    return undefined;
  }
  const s = (data as { idgate?: unknown } | null)?.idgate as Record<string, unknown> | undefined;
  if (!s || typeof s !== 'object' || s.v !== 1) return undefined;
  if (typeof s.subject !== 'string' || typeof s.user !== 'string' || typeof s.issuer !== 'string' || typeof s.createdAt !== 'number') return undefined;
  if (!Array.isArray(s.groups) || !s.groups.every((g) => typeof g === 'string')) return undefined;
  if (s.email !== undefined && typeof s.email !== 'string') return undefined;
  if (s.roles === undefined) s.roles = [];
  if (!Array.isArray(s.roles) || !s.roles.every((r) => typeof r === 'string')) return undefined;
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
  for (const secret of secrets) {
    const sid = signature.unsign(value.slice(2), secret);
    if (sid !== false) return sid;
  }
  return undefined;
}

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
