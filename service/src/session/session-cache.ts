// A short-lived, bounded, in-process cache of sessions read by the check path, keyed by the session's
// hash: most checks then skip Redis. Revocation stays immediate: every replica drops an entry as soon
// as a logout, back-channel logout, failed renewal or operator revocation is announced on Redis pub/sub
// (redis-session-store.ts publishes them); a read that raced with such an announcement is not cached; and the
// whole cache is dropped when the subscription reconnects, since announcements may have been missed.
import { REVOKED_REMEMBERED, REVOKED_REMEMBER_MS } from '../limits.js';
import { createRedisClient } from '../redis.js';
import type { Logger } from '../audit.js';
import type { Config } from '../config.js';
import { redisKeys } from './redis-keys.js';
import type { SessionLookup } from './session-record.js';

type FoundSession = Extract<SessionLookup, { found: true }>;

interface Entry {
  readonly lookup: FoundSession;
  readonly expiresAt: number;
}

export class SessionCache {
  readonly #entries = new Map<string, Entry>();
  /** hash → when its revocation was announced; kept a little longer than a Redis read can take. */
  readonly #revokedAt = new Map<string, number>();
  #clearedAt = 0;
  /** Off while the revocation subscription is down: a missed announcement must not leave a session alive. */
  #suspended = false;

  constructor(
    private readonly ttlMs: number,
    private readonly maxEntries: number,
    private readonly now: () => number = Date.now,
  ) {}

  get enabled(): boolean {
    return this.ttlMs > 0 && this.maxEntries > 0 && !this.#suspended;
  }

  /** Forgets everything and stops caching (the subscription is down). */
  suspend(): void {
    this.#suspended = true;
    this.clear();
  }

  /** Caches again, from empty (the subscription is back; what was announced meanwhile is unknown). */
  resume(): void {
    this.clear();
    this.#suspended = false;
  }

  get(hash: string): FoundSession | undefined {
    if (this.#suspended) return undefined;
    const entry = this.#entries.get(hash);
    if (!entry) return undefined;
    if (entry.expiresAt <= this.now()) {
      this.#entries.delete(hash);
      return undefined;
    }
    return entry.lookup;
  }

  /** Keeps a session read from Redis at `readStartedAt`, unless it was revoked since. */
  set(hash: string, lookup: FoundSession, readStartedAt: number): void {
    if (!this.enabled) return;
    const revokedAt = this.#revokedAt.get(hash);
    if ((revokedAt !== undefined && revokedAt >= readStartedAt) || this.#clearedAt >= readStartedAt) return;
    if (this.#entries.size >= this.maxEntries && !this.#entries.has(hash)) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
    this.#entries.delete(hash);
    // Only what a check reads: renewal re-reads the whole record from Redis under its lock.
    const slim: FoundSession = { ...lookup, record: {}, session: { ...lookup.session, idToken: '', refreshToken: lookup.session.refreshToken ? '(in Redis)' : undefined } };
    this.#entries.set(hash, { lookup: slim, expiresAt: this.now() + this.ttlMs });
  }

  invalidate(hashes: readonly string[]): void {
    const now = this.now();
    for (const hash of hashes) {
      this.#entries.delete(hash);
      this.#revokedAt.set(hash, now);
    }
    if (this.#revokedAt.size > REVOKED_REMEMBERED) {
      for (const [hash, at] of this.#revokedAt) if (now - at > REVOKED_REMEMBER_MS) this.#revokedAt.delete(hash);
    }
  }

  clear(): void {
    this.#entries.clear();
    this.#clearedAt = this.now();
  }

  get size(): number {
    return this.#entries.size;
  }
}

/**
 * Subscribes `cache` to revocation announcements on a connection of its own (a subscribed Redis
 * connection can do nothing else), in any topology: on a Cluster, PUBLISH reaches every node's
 * subscribers, so one subscription on any node hears every replica's announcements. Returns a function
 * that unsubscribes.
 */
export function subscribeToRevocations(config: Config, cache: SessionCache, logger: Logger): () => void {
  const subscriber = createRedisClient(config, 'subscriber');
  const channel = redisKeys.revocations(config);
  subscriber.on('message', (from: string, message: string) => {
    if (from !== channel) return;
    try {
      const hashes = JSON.parse(message) as unknown;
      if (Array.isArray(hashes)) cache.invalidate(hashes.filter((h): h is string => typeof h === 'string'));
    } catch {
      cache.clear();
    }
  });
  // Caching only while subscribed: announcements made while the subscription is down are lost.
  cache.suspend();
  // Said once per outage (while the cache was on), so operators and tests see when caching stopped;
  // not when idgate itself unsubscribes on its way out.
  let unsubscribed = false;
  const suspend = () => {
    if (cache.enabled && !unsubscribed) logger.log('warn', 'session cache off until the revocation subscription is back');
    cache.suspend();
  };
  subscriber.on('close', suspend);
  subscriber.on('error', suspend);
  subscriber.on('ready', () => {
    // ioredis re-subscribes on reconnect; the cache starts again empty.
    subscriber.subscribe(channel).then(
      () => cache.resume(),
      (err: Error) => logger.log('error', 'cannot subscribe to session revocations; the session cache stays off', { error: err.message }),
    );
  });
  return () => {
    unsubscribed = true;
    subscriber.disconnect();
  };
}
