// A session at rest: the record idgate keeps (its fields and versions), how it is sealed for Redis (keyed
// by a hash of the session id, encrypted under a key derived from it), and how it is read back. Pure: no
// Redis, no express-session; the store and the check both build on it.
import crypto from 'node:crypto';
import type { Config } from '../config.js';
import type { Identity } from '../identity.js';

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

/** When a session ends however active it is (IDGATE_SESSION_MAX_AGE after login), ms since epoch: also its cookie's Expires. */
export function sessionEndsAt(config: Pick<Config, 'sessionMaxAgeSeconds'>, createdAt: number): number {
  return createdAt + config.sessionMaxAgeSeconds * 1000;
}

/** The absolute timeout, the one place it is judged: the check, its session cache and /_auth/userinfo ask here. */
export function isPastMaxAge(config: Pick<Config, 'sessionMaxAgeSeconds'>, session: Pick<StoredSession, 'createdAt'>, now: number): boolean {
  return now > sessionEndsAt(config, session.createdAt);
}

export function sessionHash(sid: string): string {
  let hash = sessionHashes.get(sid);
  if (hash === undefined) {
    hash = crypto.hash('sha256', `idgate-session-key\0${sid}`, 'base64url');
    if (sessionHashes.size >= 10_000) sessionHashes.delete(sessionHashes.keys().next().value!);
    sessionHashes.set(sid, hash);
  }
  return hash;
}

/** The check hashes the same few session ids over and over: remembered, bounded. */
const sessionHashes = new Map<string, string>();

function sessionCipherKey(sid: string): Buffer {
  return Buffer.from(crypto.hkdfSync('sha256', sid, 'idgate-session', 'idgate session encryption v1', 32));
}

/** The format of a sealed value ("v1." and what follows): a new cipher or key derivation gets a new number. */
export const SEALED_VERSION = 1;

/** The version a sealed value names ("v1." → 1), or undefined when it names none. */
export function sealedVersionOf(sealed: string): number | undefined {
  const m = /^v(\d{1,6})\./.exec(sealed);
  return m ? Number(m[1]) : undefined;
}

/** "v1." + base64url(iv ‖ ciphertext ‖ tag); the key's hash is bound as additional data. */
export function sealSession(sid: string, plaintext: string): string {
  const iv = crypto.randomBytes(12);
  const cipher = crypto.createCipheriv('aes-256-gcm', sessionCipherKey(sid), iv);
  cipher.setAAD(Buffer.from(sessionHash(sid)));
  const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return `v${SEALED_VERSION}.${Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64url')}`;
}

/** The plaintext, or undefined when the value is not ours or was tampered with. */
export function openSession(sid: string, sealed: string): string | undefined {
  if (sealedVersionOf(sealed) !== SEALED_VERSION) return undefined;
  const raw = Buffer.from(sealed.slice(sealed.indexOf('.') + 1), 'base64url');
  if (raw.length < 12 + 16) return undefined;
  try {
    const decipher = crypto.createDecipheriv('aes-256-gcm', sessionCipherKey(sid), raw.subarray(0, 12));
    decipher.setAAD(Buffer.from(sessionHash(sid)));
    decipher.setAuthTag(raw.subarray(raw.length - 16));
    return Buffer.concat([decipher.update(raw.subarray(12, raw.length - 16)), decipher.final()]).toString('utf8');
  } catch {
    return undefined;
  }
}

/** How an IdP session id (`sid` claim) is stored and indexed: base64url(SHA-256(sid)). */
export function idpSessionHash(idpSessionId: string): string {
  return crypto.hash('sha256', idpSessionId, 'base64url');
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
