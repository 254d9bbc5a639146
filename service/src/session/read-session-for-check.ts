// The check's read of a session: from the Cookie header to the session and its identity, through the
// in-process cache, else one store read (one GETEX in Redis, which also renews the idle TTL). Sessions live
// in Redis so that every idgate replica behind every HAProxy sees the same ones.
import type { Config } from '../config.js';
import type { SessionCache } from './session-cache.js';
import { findCookie, hasSecondCookie, unsignSessionId } from './cookies.js';
import type { SessionStore } from './session-store.js';
import { identityOf, isPastMaxAge, sessionHash, type SessionLookup } from './session-record.js';

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
