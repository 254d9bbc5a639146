// express-session over the session store: it owns the session lifecycle on the browser endpoints (login
// regenerates the id, logout destroys it). The check path reads the very same session through the store
// directly (read-session-for-check.ts) instead of running the session middleware.
import crypto from 'node:crypto';
import session from 'express-session';
import type { Config } from '../config.js';
import { sessionCookieOptions } from './cookies.js';
import type { SessionStore } from './session-store.js';
import type { StoredSession } from './session-record.js';
import { SAME_SESSION_REMEMBERED, SAME_SESSION_WINDOW_MS } from '../limits.js';

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
