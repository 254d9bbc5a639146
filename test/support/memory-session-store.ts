// The session store in memory, on a clock the test moves: what the Redis store does, without Redis and
// without waiting. Values are sealed exactly as in Redis (the same record parsing and version checks run),
// the idle timeout is each session's expiry on this clock, and indexes and locks behave as in Redis. Tests
// only: production has RedisSessionStore alone. test/unit/session-store.test.ts holds both to one suite.
import { parseRecord, unreadableVersionOf, type StoredSession } from '../../service/src/session/sessions.js';
import {
  idpSessionHash,
  isPastMaxAge,
  openSession,
  sealSession,
  sessionHash,
  storeUnavailable,
  type IndexedSession,
  type SessionLock,
  type SessionRead,
  type SessionRef,
  type SessionStore,
} from '../../service/src/session/session-store.js';
import type { Config } from '../../service/src/config.js';

export type MemoryStoreSettings = Pick<Config, 'sessionIdleTtlSeconds' | 'sessionMaxAgeSeconds'>;

/** Lease of a refresh lock, ms, as in Redis; here it is never renewed, so a holder must release in time. */
const LOCK_LEASE_MS = 6000;

export class MemorySessionStore implements SessionStore {
  /** session hash → sealed value and when it expires (idle timeout). */
  readonly #sessions = new Map<string, { sealed: string; expiresAt: number }>();
  readonly #bySubject = new Map<string, Map<string, { user: string; createdAt: number }>>();
  readonly #byUser = new Map<string, Set<string>>();
  readonly #byIdpSession = new Map<string, Set<string>>();
  readonly #locks = new Map<string, number>();
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
}
