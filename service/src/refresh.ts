// Silent renewal of a session's tokens, race-free across tabs and replicas. IdPs with refresh-token
// rotation (Okta) revoke everything when a refresh token is redeemed twice, so exactly one request may
// redeem it: the one that takes the session's Redis lock (SET NX with a lease renewed while the grant is
// under way). The others go on with the current tokens while those are still valid, or wait briefly for
// the winner's result when they are not.
import crypto from 'node:crypto';
import signature from 'cookie-signature';
import type { RedisClient } from './redis.js';
import type { Logger } from './audit.js';
import type { Config } from './config.js';
import type { DurableWrites } from './durable-writes.js';
import { describeError, isIdgateError } from './errors.js';
import type { Metrics } from './metrics.js';
import type { OidcRelyingParty } from './oidc.js';
import { revokeSessions, sealSession, sessionHash, sessionKey } from './session-store.js';
import { identityOf, parseRecord, type SessionLookup, type StoredSession } from './sessions.js';

export interface RefreshDependencies {
  readonly config: Config;
  readonly redis: RedisClient;
  /** The renewed session and a revocation are written through this (they wait for a Redis replica). */
  readonly durable: DurableWrites;
  readonly oidc: OidcRelyingParty;
  readonly logger: Logger;
  readonly metrics: Metrics;
}

type FoundSession = Extract<SessionLookup, { found: true }>;

export type FreshSession =
  /** Nothing to do, or another request is renewing and the tokens are still good. */
  | { readonly kind: 'current'; readonly lookup: FoundSession }
  /** Renewed by this request: the cookie goes back to the browser, signed with the newest secret. */
  | { readonly kind: 'refreshed'; readonly lookup: FoundSession; readonly setCookie: string }
  /** The IdP refused the renewal (or answered for someone else): the session is gone. */
  | { readonly kind: 'ended' }
  /** The tokens expired and cannot be renewed right now: idgate cannot decide (503). */
  | { readonly kind: 'unavailable' };

import { REFRESH_LOCK_LEASE_MS as LOCK_LEASE_MS, REFRESH_WAIT_FOR_OTHERS_MS as WAIT_FOR_OTHERS_MS } from './limits.js';

const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;
const RENEW = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;

/** When a session's tokens are due for renewal: a minute before expiry, or half-way for short-lived tokens. */
export function refreshDueAt(stored: StoredSession): number | undefined {
  if (!stored.refreshToken || stored.accessTokenExpiresAt === undefined) return undefined;
  const lifetime = stored.accessTokenExpiresAt - stored.tokensIssuedAt;
  return stored.accessTokenExpiresAt - Math.min(60_000, lifetime / 2);
}

export async function keepSessionFresh(deps: RefreshDependencies, lookup: FoundSession, now: number): Promise<FreshSession> {
  const due = refreshDueAt(lookup.session);
  if (due === undefined || now < due) return { kind: 'current', lookup };
  const expired = now >= lookup.session.accessTokenExpiresAt!;
  const { redis, config } = deps;
  const lockKey = `${config.redisKeyPrefix}lock:refresh:${sessionHash(lookup.sid)}`;
  const token = crypto.randomBytes(16).toString('base64url');

  let won: boolean;
  try {
    won = (await redis.set(lockKey, token, 'PX', LOCK_LEASE_MS, 'NX')) === 'OK';
  } catch (err) {
    // No lock, no renewal (a refresh token must be redeemed once). A Redis that refuses writes (out of
    // memory under noeviction) must not end sessions whose tokens are still valid: they renew later.
    if (!expired) return { kind: 'current', lookup };
    throw err;
  }
  if (!won) {
    if (!expired) return { kind: 'current', lookup };
    return waitForRenewal(deps, lookup, now);
  }

  const lease = setInterval(() => void redis.eval(RENEW, 1, lockKey, token, String(LOCK_LEASE_MS)).catch(() => undefined), LOCK_LEASE_MS / 3);
  try {
    // Another request may have renewed between our read and our lock: read again under the lock.
    const latest = await reread(redis, config, lookup);
    if (!latest) return { kind: 'ended' };
    const latestDue = refreshDueAt(latest.session);
    if (latestDue === undefined || now < latestDue) return { kind: 'current', lookup: latest };

    let renewed: StoredSession;
    try {
      renewed = await deps.oidc.refresh(latest.session, Date.now());
    } catch (err) {
      if (isIdgateError(err) && err.code === 'session_ended') {
        deps.metrics.recordEvent('refresh_failed');
        deps.logger.event('session_ended', { reason: err.detail ?? err.code, sub: latest.session.subject, user: latest.session.user });
        deps.metrics.recordRevoked(await revokeSessions(deps.durable, config, [{ hash: sessionHash(latest.sid), subject: latest.session.subject }]));
        return { kind: 'ended' };
      }
      deps.metrics.recordEvent('refresh_unavailable');
      deps.logger.log('warn', 'session refresh failed; the session stays while its tokens are valid', { sub: latest.session.subject, error: describeError(err) });
      return expired ? { kind: 'unavailable' } : { kind: 'current', lookup: latest };
    }
    const record = { ...latest.record, idgate: renewed };
    // XX: a session logged out meanwhile stays logged out. KEEPTTL: the idle timeout is not reset here.
    const sealed = sealSession(latest.sid, JSON.stringify(record));
    const written = await deps.durable.write('renewal', (conn) => conn.set(sessionKey(config, latest.sid), sealed, 'KEEPTTL', 'XX'), (reply) => reply === 'OK');
    if (written !== 'OK') return { kind: 'ended' };
    deps.metrics.recordEvent('refresh_ok');
    deps.logger.event('refresh', { sub: renewed.subject, user: renewed.user });
    const refreshed: FoundSession = { found: true, sid: latest.sid, session: renewed, identity: identityOf(renewed), record };
    return { kind: 'refreshed', lookup: refreshed, setCookie: sessionCookie(config, latest.sid, renewed.createdAt) };
  } finally {
    clearInterval(lease);
    await redis.eval(RELEASE, 1, lockKey, token).catch(() => undefined);
  }
}

async function reread(redis: RedisClient, config: Config, lookup: FoundSession): Promise<FoundSession | undefined> {
  const sealed = await redis.get(sessionKey(config, lookup.sid));
  const parsed = sealed === null ? undefined : parseRecord(lookup.sid, sealed);
  if (!parsed) return undefined;
  return { found: true, sid: lookup.sid, session: parsed.stored, identity: identityOf(parsed.stored), record: parsed.record };
}

/** Another request holds the lock and our tokens have expired: wait for its result. */
async function waitForRenewal(deps: RefreshDependencies, lookup: FoundSession, now: number): Promise<FreshSession> {
  const deadline = now + WAIT_FOR_OTHERS_MS;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    const latest = await reread(deps.redis, deps.config, lookup);
    if (!latest) return { kind: 'ended' };
    if (latest.session.tokensIssuedAt !== lookup.session.tokensIssuedAt) return { kind: 'current', lookup: latest };
  }
  return { kind: 'unavailable' };
}

/** The session cookie as express-session writes it, signed with the newest secret. */
export function sessionCookie(config: Config, sid: string, createdAt: number): string {
  const value = encodeURIComponent(`s:${signature.sign(sid, config.cookieSecrets[0]!)}`);
  const expires = new Date(createdAt + config.sessionMaxAgeSeconds * 1000).toUTCString();
  const parts = [`${config.cookieName}=${value}`, 'Path=/', `Expires=${expires}`, 'HttpOnly', 'SameSite=Lax'];
  if (config.cookieDomain) parts.push(`Domain=${config.cookieDomain}`);
  if (config.cookieSecure) parts.push('Secure');
  return parts.join('; ');
}
