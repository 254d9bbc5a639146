// The session store in memory, on a clock the test moves: what the Redis store does, without Redis and
// without waiting. Values are sealed exactly as in Redis (the same record parsing and version checks run),
// the idle timeout is each session's expiry on this clock, and indexes, locks, pending logins (their two
// bounds) and logout-token ids behave as in Redis. Tests only: production has RedisSessionStore alone. test/unit/session-store.test.ts holds both to one suite.
import { parseRecord, unreadableVersionOf, type StoredSession, idpSessionHash, isPastMaxAge, openSession, sealSession, sessionHash } from '../../service/src/session/session-record.js';
import { hashValue, isBindingOf, parsePendingLogin, retryAfterSeconds, type PendingLogin, type PendingLoginClaim, type SavedPendingLogin } from '../../service/src/session/pending-logins.js';
import { logoutTokenDigest, storeUnavailable, type IndexedSession, type SessionLock, type SessionRead, type SessionRef, type SessionStore } from '../../service/src/session/session-store.js';
import type { Config } from '../../service/src/config.js';

export type MemoryStoreSettings = Pick<Config, 'sessionIdleTtlSeconds' | 'sessionMaxAgeSeconds' | 'loginTtlSeconds' | 'loginMaxPendingPerBrowser' | 'loginMaxPending'>;

/** Lease of a refresh lock, ms, as in Redis; here it is never renewed, so a holder must release in time. */
const LOCK_LEASE_MS = 6000;

export class MemorySessionStore implements SessionStore {
  /** session hash → sealed value and when it expires (idle timeout). */
  readonly #sessions = new Map<string, { sealed: string; expiresAt: number }>();
  readonly #bySubject = new Map<string, Map<string, { user: string; createdAt: number }>>();
  readonly #byUser = new Map<string, Set<string>>();
  readonly #byIdpSession = new Map<string, Set<string>>();
  readonly #locks = new Map<string, number>();
  /** Pending logins by the hash of their state (the member of both indexes): value and expiry. */
  readonly #pendingLogins = new Map<string, { text: string; expiresAt: number }>();
  /** Every pending login's member → expiry: the overall bound counts these (a taken login leaves at once). */
  readonly #pendingIndex = new Map<string, number>();
  /** A browser's (hash of its binding) pending logins, member → expiry; a taken login stays until it expires, as in Redis. */
  readonly #browserPending = new Map<string, Map<string, number>>();
  /** Logout-token digests seen, → when they are forgotten. */
  readonly #logoutTokens = new Map<string, number>();
  readonly #dpopProofs = new Map<string, { requestId: string; forgottenAt: number }>();
  /** While set, every operation fails as a Redis that cannot answer would. */
  unavailable: Error | undefined;

  constructor(
    private readonly settings: MemoryStoreSettings,
    /** ms since epoch: the store's own clock (Redis's, for the idle timeout and the lock lease). */
    private readonly now: () => number,
  ) {}

  #answer(): void {
    if (this.unavailable) throw storeUnavailable(this.unavailable);
  }

  #live(hash: string): { sealed: string; expiresAt: number } | undefined {
    const entry = this.#sessions.get(hash);
    if (entry && entry.expiresAt <= this.now()) {
      this.#sessions.delete(hash);
      return undefined;
    }
    return entry;
  }

  async read(sid: string, now: number): Promise<SessionRead> {
    this.#answer();
    const entry = this.#live(sessionHash(sid));
    if (entry) entry.expiresAt = this.now() + this.settings.sessionIdleTtlSeconds * 1000;
    return this.#opened(sid, entry?.sealed, now);
  }

  async readLatest(sid: string, now: number): Promise<SessionRead> {
    this.#answer();
    return this.#opened(sid, this.#live(sessionHash(sid))?.sealed, now);
  }

  #opened(sid: string, sealed: string | undefined, now: number): SessionRead {
    if (sealed === undefined) return { found: false, problem: 'session_expired' };
    const parsed = parseRecord(sid, sealed);
    if (!parsed) {
      const unknownVersion = unreadableVersionOf(sid, sealed);
      return unknownVersion === undefined ? { found: false, problem: 'session_invalid' } : { found: false, problem: 'session_invalid', unknownVersion };
    }
    if (isPastMaxAge(this.settings, parsed.stored, now)) return { found: false, problem: 'session_expired' };
    return { found: true, session: parsed.stored, record: parsed.record };
  }

  async load(sid: string): Promise<Record<string, unknown> | undefined> {
    this.#answer();
    const sealed = this.#live(sessionHash(sid))?.sealed;
    const text = sealed === undefined ? undefined : openSession(sid, sealed);
    return text === undefined ? undefined : (JSON.parse(text) as Record<string, unknown>);
  }

  async save(sid: string, record: Record<string, unknown>): Promise<void> {
    this.#answer();
    const hash = sessionHash(sid);
    this.#sessions.set(hash, { sealed: sealSession(sid, JSON.stringify(record)), expiresAt: this.now() + this.settings.sessionIdleTtlSeconds * 1000 });
    const stored = record.idgate as StoredSession | undefined;
    if (!stored) return;
    let bySubject = this.#bySubject.get(stored.subject);
    if (!bySubject) this.#bySubject.set(stored.subject, (bySubject = new Map()));
    bySubject.set(hash, { user: stored.user, createdAt: stored.createdAt });
    let byUser = this.#byUser.get(stored.user);
    if (!byUser) this.#byUser.set(stored.user, (byUser = new Set()));
    byUser.add(stored.subject);
    if (stored.idpSessionHash) {
      let byIdp = this.#byIdpSession.get(stored.idpSessionHash);
      if (!byIdp) this.#byIdpSession.set(stored.idpSessionHash, (byIdp = new Set()));
      byIdp.add(`${stored.subject}\0${hash}`);
    }
  }

  async renew(sid: string, record: Record<string, unknown>): Promise<boolean> {
    this.#answer();
    const entry = this.#live(sessionHash(sid));
    if (!entry) return false;
    entry.sealed = sealSession(sid, JSON.stringify(record));
    return true;
  }

  async touch(sid: string): Promise<void> {
    this.#answer();
    const entry = this.#live(sessionHash(sid));
    if (entry) entry.expiresAt = this.now() + this.settings.sessionIdleTtlSeconds * 1000;
  }

  async destroy(sid: string): Promise<void> {
    this.#answer();
    const hash = sessionHash(sid);
    this.#sessions.delete(hash);
  }

  async revoke(sessions: readonly SessionRef[]): Promise<number> {
    this.#answer();
    if (sessions.length === 0) return 0;
    let deleted = 0;
    for (const s of sessions) {
      if (this.#live(s.hash)) deleted++;
      this.#sessions.delete(s.hash);
      this.#bySubject.get(s.subject)?.delete(s.hash);
    }
    return deleted;
  }

  async list(who: { subject?: string; user?: string }): Promise<IndexedSession[]> {
    this.#answer();
    const subjects = who.subject ? [who.subject] : who.user ? [...(this.#byUser.get(who.user) ?? [])] : [];
    const out: IndexedSession[] = [];
    for (const subject of subjects) {
      const entries = this.#bySubject.get(subject);
      for (const [hash, meta] of entries ?? []) {
        if (!this.#live(hash)) {
          entries!.delete(hash);
          continue;
        }
        out.push({ hash, subject, user: meta.user, createdAt: meta.createdAt });
      }
    }
    return out.sort((a, b) => a.createdAt - b.createdAt);
  }

  async sessionsOfIdpSession(idpSessionId: string): Promise<SessionRef[]> {
    this.#answer();
    return [...(this.#byIdpSession.get(idpSessionHash(idpSessionId)) ?? [])].map((m) => {
      const [subject = '', hash = ''] = m.split('\0');
      return { subject, hash };
    });
  }

  async lock(sid: string): Promise<SessionLock | undefined> {
    this.#answer();
    const hash = sessionHash(sid);
    const heldUntil = this.#locks.get(hash);
    if (heldUntil !== undefined && heldUntil > this.now()) return undefined;
    const until = this.now() + LOCK_LEASE_MS;
    this.#locks.set(hash, until);
    return {
      release: async () => {
        if (this.#locks.get(hash) === until) this.#locks.delete(hash);
      },
    };
  }

  async savePendingLogin(state: string, pending: PendingLogin): Promise<SavedPendingLogin> {
    this.#answer();
    const now = this.now();
    const member = hashValue(state);
    let browser = this.#browserPending.get(pending.bindingHash);
    if (!browser) this.#browserPending.set(pending.bindingHash, (browser = new Map()));
    for (const index of [this.#pendingIndex, browser]) {
      for (const [m, expiresAt] of index) if (expiresAt <= now) index.delete(m);
    }
    // As ZPOPMIN: the lowest expiry first (a browser's expiries never tie, see below).
    const oldestFirst = [...browser].sort(([, x], [, y]) => x - y);
    let dropped = 0;
    for (const [m] of oldestFirst.slice(0, Math.max(0, browser.size - this.settings.loginMaxPendingPerBrowser + 1))) {
      browser.delete(m);
      this.#pendingLogins.delete(m);
      if (this.#pendingIndex.delete(m)) dropped++;
    }
    if (this.#pendingIndex.size >= this.settings.loginMaxPending) {
      const first = Math.min(...this.#pendingIndex.values());
      return { saved: false, retryAfterSeconds: retryAfterSeconds(this.settings, Math.max(0, first - now)) };
    }
    // As the Redis script: a millisecond after the browser's newest login at least, so the order of saving
    // is the order of expiry whatever the clock's resolution.
    const expiresAt = Math.max(now + this.settings.loginTtlSeconds * 1000, ...[...browser.values()].map((at) => at + 1));
    this.#pendingLogins.set(member, { text: JSON.stringify(pending), expiresAt });
    this.#pendingIndex.set(member, expiresAt);
    browser.set(member, expiresAt);
    return { saved: true, dropped };
  }

  async takePendingLogin(state: string, binding: string | undefined): Promise<PendingLoginClaim> {
    this.#answer();
    const member = hashValue(state);
    const entry = this.#pendingLogins.get(member);
    const pending = entry && entry.expiresAt > this.now() ? parsePendingLogin(entry.text) : undefined;
    if (!pending) return { outcome: 'unknown' };
    if (!isBindingOf(pending, binding)) return { outcome: 'other_browser' };
    this.#pendingLogins.delete(member);
    this.#pendingIndex.delete(member);
    return { outcome: 'taken', pending };
  }

  async firstUseOfLogoutToken(issuer: string, jti: string, ttlSeconds: number): Promise<boolean> {
    this.#answer();
    const digest = logoutTokenDigest(issuer, jti);
    const forgottenAt = this.#logoutTokens.get(digest);
    if (forgottenAt !== undefined && forgottenAt > this.now()) return false;
    this.#logoutTokens.set(digest, this.now() + ttlSeconds * 1000);
    return true;
  }

  async firstUseOfDpopProof(digest: string, ttlSeconds: number, requestId: string): Promise<boolean> {
    this.#answer();
    const seen = this.#dpopProofs.get(digest);
    if (seen !== undefined && seen.forgottenAt > this.now()) return seen.requestId === requestId;
    this.#dpopProofs.set(digest, { requestId, forgottenAt: this.now() + ttlSeconds * 1000 });
    return true;
  }
}
