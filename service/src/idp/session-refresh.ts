// Silent renewal of a session's tokens, race-free across tabs and replicas. IdPs with refresh-token
// rotation (Okta) revoke everything when a refresh token is redeemed twice, so exactly one request may
// redeem it: the one that takes the session's lock in the store (in Redis: SET NX with a lease renewed
// while the grant is under way). The others go on with the current tokens while those are still valid, or wait briefly for
// the winner's result when they are not.
import type { Logger } from '../audit.js';
import type { Config } from '../config.js';
import { sessionCookie } from '../session/cookies.js';
import { describeError, isIdgateError } from '../errors.js';
import type { Metrics } from '../metrics.js';
import type { Clock } from '../clock.js';
import type { OidcRelyingParty } from './relying-party.js';
import type { SessionLock, SessionStore } from '../session/session-store.js';
import { sessionHash, identityOf, type SessionLookup, type StoredSession } from '../session/session-record.js';
import { REFRESH_WAIT_FOR_OTHERS_MS as WAIT_FOR_OTHERS_MS } from '../limits.js';

export interface RefreshDependencies {
  readonly config: Config;
  /** The renewed session and a revocation are written here (they wait for a Redis replica). */
  readonly sessions: SessionStore;
  readonly oidc: OidcRelyingParty;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** The renewed tokens' lifetimes start at its time. (The wait for another request's renewal is a bound on real time.) */
  readonly clock: Clock;
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
  const { sessions, config } = deps;

  let lock: SessionLock | undefined;
  try {
    lock = await sessions.lock(lookup.sid);
  } catch (err) {
    // No lock, no renewal (a refresh token must be redeemed once). A Redis that refuses writes (out of
    // memory under noeviction) must not end sessions whose tokens are still valid: they renew later.
    if (!expired) return { kind: 'current', lookup };
    throw err;
  }
  if (!lock) {
    if (!expired) return { kind: 'current', lookup };
    return waitForRenewal(deps, lookup, now);
  }

  try {
    // Another request may have renewed between our read and our lock: read again under the lock.
    const latest = await reread(sessions, lookup, now);
    if (!latest) return { kind: 'ended' };
    const latestDue = refreshDueAt(latest.session);
    if (latestDue === undefined || now < latestDue) return { kind: 'current', lookup: latest };

    let renewed: StoredSession;
    try {
      renewed = await deps.oidc.refresh(latest.session, deps.clock());
    } catch (err) {
      if (isIdgateError(err) && err.code === 'session_ended') {
        deps.metrics.recordEvent('refresh_failed');
        deps.logger.event('session_ended', { reason: err.detail ?? err.code, sub: latest.session.subject, user: latest.session.user });
        deps.metrics.recordRevoked(await sessions.revoke([{ hash: sessionHash(latest.sid), subject: latest.session.subject }]));
        return { kind: 'ended' };
      }
      deps.metrics.recordEvent('refresh_unavailable');
      deps.logger.log('warn', 'session refresh failed; the session stays while its tokens are valid', { sub: latest.session.subject, error: describeError(err) });
      return expired ? { kind: 'unavailable' } : { kind: 'current', lookup: latest };
    }
    const record = { ...latest.record, idgate: renewed };
    // Written only while the session exists (one logged out meanwhile stays out), its idle timeout kept.
    if (!(await sessions.renew(latest.sid, record))) return { kind: 'ended' };
    deps.metrics.recordEvent('refresh_ok');
    deps.logger.event('refresh', { sub: renewed.subject, user: renewed.user });
    const refreshed: FoundSession = { found: true, sid: latest.sid, session: renewed, identity: identityOf(renewed), record };
    return { kind: 'refreshed', lookup: refreshed, setCookie: sessionCookie(config, latest.sid, renewed.createdAt) };
  } finally {
    await lock.release();
  }
}

async function reread(sessions: SessionStore, lookup: FoundSession, now: number): Promise<FoundSession | undefined> {
  const read = await sessions.readLatest(lookup.sid, now);
  if (!read.found) return undefined;
  return { found: true, sid: lookup.sid, session: read.session, identity: identityOf(read.session), record: read.record };
}

/** Another request holds the lock and our tokens have expired: wait for its result. */
async function waitForRenewal(deps: RefreshDependencies, lookup: FoundSession, now: number): Promise<FreshSession> {
  // A bound on a wait, not a lifetime: real time, whichever clock the tokens' ages are read on.
  const deadline = performance.now() + WAIT_FOR_OTHERS_MS;
  while (performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    const latest = await reread(deps.sessions, lookup, now);
    if (!latest) return { kind: 'ended' };
    if (latest.session.tokensIssuedAt !== lookup.session.tokensIssuedAt) return { kind: 'current', lookup: latest };
  }
  return { kind: 'unavailable' };
}
