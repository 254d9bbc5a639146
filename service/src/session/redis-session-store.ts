// The session store in Redis (RedisSessionStore; RedisSessionRevocation is the part `idgate sessions`
// needs): the only code that sends commands on idgate's keys (their names: redis-keys.ts), with the Lua
// scripts that keep pending logins and locks atomic across replicas. Every Redis failure becomes
// IdgateError('store_unavailable').
//
// Sessions at rest in Redis, so that a Redis dump alone yields neither tokens nor a usable cookie:
// the key is a hash of the session id and the value is AES-256-GCM encrypted under a key derived from
// the session id, which only the browser's cookie carries. Plaintext in Redis is limited to what
// revocation needs: per-subject indexes naming the session hashes, with user name and login time.
//
// express-session owns the cookie and the session lifecycle on the browser routes, through an adapter
// over this store (express-adapter.ts); why not connect-redis: docs/design-notes.md.
import crypto from 'node:crypto';
import type { RedisClient } from '../redis.js';
import type { Config } from '../config.js';
import { DurableWrites, type DurableWriteKind } from './durable-writes.js';
import { logoutTokenDigest, storeUnavailable, type IndexedSession, type SessionLock, type SessionRead, type SessionRef, type SessionRevocation, type SessionStore } from './session-store.js';
import { hashValue, isBindingOf, parsePendingLogin, retryAfterSeconds, type PendingLogin, type PendingLoginClaim, type SavedPendingLogin } from './pending-logins.js';
import { redisKeys, sessionKey, type KeyPrefix } from './redis-keys.js';
import { idpSessionHash, isPastMaxAge, openSession, parseRecord, sealSession, sessionHash, unreadableVersionOf, type StoredSession } from './session-record.js';
import { REFRESH_LOCK_LEASE_MS as LOCK_LEASE_MS } from '../limits.js';

interface IndexFields {
  subject: string;
  user: string;
  createdAt: number;
  idpSessionHash: string | undefined;
}

type StoreSettings = Pick<Config, 'redisKeyPrefix' | 'sessionIdleTtlSeconds' | 'sessionMaxAgeSeconds' | 'loginTtlSeconds' | 'loginMaxPendingPerBrowser' | 'loginMaxPending'>;

// Redis Cluster: a session is read by its id alone (the check knows nothing else), so it cannot share a
// hash slot with its subject's indexes, nor can a subject's, a user name's and an IdP session's index
// share one. No operation needs them together: each index key is written with its TTL in a MULTI of its
// own (one key, one slot), and revocation deletes each session and its index entry by single-key commands
// (deleting is idempotent; an entry left behind is dropped by the next list).

async function indexSession(redis: RedisClient, config: StoreSettings, sid: string, fields: IndexFields): Promise<void> {
  const hash = sessionHash(sid);
  const ttl = config.sessionMaxAgeSeconds;
  const bySubject = redisKeys.index(config, 'sub', fields.subject);
  const byUser = redisKeys.index(config, 'user', fields.user);
  const writes = [
    redis.multi().hset(bySubject, hash, JSON.stringify({ user: fields.user, createdAt: fields.createdAt })).expire(bySubject, ttl).exec(),
    redis.multi().sadd(byUser, fields.subject).expire(byUser, ttl).exec(),
  ];
  if (fields.idpSessionHash) {
    const byIdpSession = redisKeys.index(config, 'idpsid', fields.idpSessionHash);
    writes.push(redis.multi().sadd(byIdpSession, `${fields.subject}\0${hash}`).expire(byIdpSession, ttl).exec());
  }
  await Promise.all(writes);
}

const RELEASE_LOCK = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;
const RENEW_LEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;

// KEYS: the login, the overall index, the browser's index. ARGV: the login's member (hash of its state),
// its value, TTL (ms), per-browser bound, overall bound, the prefix of login keys (to delete a dropped
// login by its member). Returns {1, logins dropped} when saved, {0, ms until a place frees} when refused.
// Time is Redis's own, so replicas with skewed clocks agree on what has expired. A browser's logins expire
// in the order they were saved, a millisecond apart at least (logins saved in the same millisecond would
// tie, and ZPOPMIN would break the tie by member, not by age), so "its oldest" is the one saved first. The `#!lua` line (Redis
// 7) makes Redis refuse the whole script when it is out of memory, rather than run it part way. The
// logins it drops are keys it was not given (their names come from the index): Redis Cluster allows that
// because they share the slot of the keys it was given (the {logins} tag).
const SAVE_PENDING_LOGIN = `#!lua
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local dropped = 0
local over = redis.call('ZCARD', KEYS[3]) - tonumber(ARGV[4]) + 1
if over > 0 then
  local oldest = redis.call('ZPOPMIN', KEYS[3], over)
  for i = 1, #oldest, 2 do
    redis.call('DEL', ARGV[6] .. oldest[i])
    dropped = dropped + redis.call('ZREM', KEYS[2], oldest[i])
  end
end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return {0, math.max(0, tonumber(first[2]) - now)}
end
local expires = now + tonumber(ARGV[3])
local newest = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
if newest[2] ~= nil and tonumber(newest[2]) >= expires then expires = tonumber(newest[2]) + 1 end
local ttl = expires - now
redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
redis.call('ZADD', KEYS[2], expires, ARGV[1])
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('ZADD', KEYS[3], expires, ARGV[1])
redis.call('PEXPIRE', KEYS[3], ttl)
return {1, dropped}
`;

/**
 * Deletes KEYS[1] only while it still holds ARGV[1] (of two callbacks that read the same login, one wins),
 * and takes it out of the pending-login index KEYS[2] (member ARGV[2]).
 */
const DELETE_IF_UNCHANGED = "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('ZREM', KEYS[2], ARGV[2]) return redis.call('DEL', KEYS[1]) end return 0";

/**
 * Revocation over Redis: a user's sessions found through the indexes, and ended. It needs the key prefix
 * alone, so `idgate sessions` (which reads no session settings) builds one of these; idgate itself uses
 * RedisSessionStore, which is one too. A revocation is a durable write when `durable` is given.
 */
export class RedisSessionRevocation implements SessionRevocation {
  protected readonly durable: DurableWrites;

  constructor(
    protected readonly redis: RedisClient,
    protected readonly config: KeyPrefix,
    durable?: DurableWrites,
  ) {
    // Without one, writes go on the shared connection and wait for no replica.
    this.durable = durable ?? new DurableWrites(redis, { redisWaitReplicas: 0, redisWaitMs: 0, redisTimeoutMs: 0 }, () => undefined);
  }

  /** Sessions of a subject, or of every subject a user name maps to. Entries whose session is gone are dropped. */
  async list(who: { subject?: string; user?: string }): Promise<IndexedSession[]> {
    const { redis, config } = this;
    try {
      const subjects = who.subject ? [who.subject] : who.user ? await redis.smembers(redisKeys.index(config, 'user', who.user)) : [];
      const out: IndexedSession[] = [];
      for (const subject of subjects) {
        const entries = await redis.hgetall(redisKeys.index(config, 'sub', subject));
        for (const [hash, json] of Object.entries(entries)) {
          if (!(await redis.exists(redisKeys.sessionOfHash(config, hash)))) {
            await redis.hdel(redisKeys.index(config, 'sub', subject), hash);
            continue;
          }
          const meta = JSON.parse(json) as { user: string; createdAt: number };
          out.push({ hash, subject, user: meta.user, createdAt: meta.createdAt });
        }
      }
      return out.sort((a, b) => a.createdAt - b.createdAt);
    } catch (err) {
      throw storeUnavailable(err);
    }
  }

  /**
   * Deletes sessions by their hashes and tells every replica (pub/sub) to forget them. Returns how many existed.
   * A durable write: it waits for a Redis replica, so a failover does not bring the sessions back. Single-key
   * commands only (no MULTI across keys), so it works on Redis Cluster, where the keys sit in other slots.
   */
  async revoke(sessions: readonly SessionRef[]): Promise<number> {
    if (sessions.length === 0) return 0;
    const { config } = this;
    return this.write('revocation', async (redis) => {
      const deleted = await Promise.all(sessions.map(async (s) => {
        const [gone] = await Promise.all([redis.del(redisKeys.sessionOfHash(config, s.hash)), redis.hdel(redisKeys.index(config, 'sub', s.subject), s.hash)]);
        return gone;
      }));
      await redis.publish(redisKeys.revocations(config), JSON.stringify(sessions.map((s) => s.hash)));
      return deleted.reduce((sum, n) => sum + n, 0);
    }, (deleted) => deleted > 0);
  }

  /**
   * Sessions that came from one IdP session (the `sid` of a back-channel logout token), found by its hash.
   * Sessions indexed before hashing sit under the raw sid: read too (and dropped) until those have expired,
   * IDGATE_SESSION_MAX_AGE after the upgrade at most.
   */
  async sessionsOfIdpSession(idpSessionId: string): Promise<SessionRef[]> {
    const { redis, config } = this;
    try {
      const legacyKey = redisKeys.index(config, 'idpsid', idpSessionId);
      const [hashed, legacy] = await Promise.all([redis.smembers(redisKeys.index(config, 'idpsid', idpSessionHash(idpSessionId))), redis.smembers(legacyKey)]);
      if (legacy.length > 0) await redis.del(legacyKey);
      return [...new Set([...hashed, ...legacy])].map((m) => {
        const [subject = '', hash = ''] = m.split('\0');
        return { subject, hash };
      });
    } catch (err) {
      throw storeUnavailable(err);
    }
  }

  protected write<T>(kind: DurableWriteKind, write: (redis: RedisClient) => Promise<T>, changed?: (result: T) => boolean): Promise<T> {
    return this.durable.write(kind, write, changed).catch((err: unknown) => {
      throw storeUnavailable(err);
    });
  }
}

/**
 * The session store over Redis, encrypted and hashed as above. The key's TTL is the idle timeout. A login's
 * session, a renewal, a logout and a revocation are durable writes when `durable` is given: they wait for a
 * Redis replica (durable-writes.ts), each on a pooled connection of its own.
 */
export class RedisSessionStore extends RedisSessionRevocation implements SessionStore {
  constructor(
    redis: RedisClient,
    protected override readonly config: StoreSettings,
    durable?: DurableWrites,
  ) {
    super(redis, config, durable);
  }

  async read(sid: string, now: number): Promise<SessionRead> {
    let sealed: string | null;
    try {
      sealed = await this.redis.getex(sessionKey(this.config, sid), 'EX', this.config.sessionIdleTtlSeconds);
    } catch (err) {
      throw storeUnavailable(err);
    }
    return this.#opened(sid, sealed, now);
  }

  async readLatest(sid: string, now: number): Promise<SessionRead> {
    let sealed: string | null;
    try {
      sealed = await this.redis.get(sessionKey(this.config, sid));
    } catch (err) {
      throw storeUnavailable(err);
    }
    return this.#opened(sid, sealed, now);
  }

  #opened(sid: string, sealed: string | null, now: number): SessionRead {
    if (sealed === null) return EXPIRED;
    const parsed = parseRecord(sid, sealed);
    if (!parsed) {
      const unknownVersion = unreadableVersionOf(sid, sealed);
      return unknownVersion === undefined ? INVALID : { found: false, problem: 'session_invalid', unknownVersion };
    }
    if (isPastMaxAge(this.config, parsed.stored, now)) return EXPIRED;
    return { found: true, session: parsed.stored, record: parsed.record };
  }

  async load(sid: string): Promise<Record<string, unknown> | undefined> {
    let sealed: string | null;
    try {
      sealed = await this.redis.get(sessionKey(this.config, sid));
    } catch (err) {
      throw storeUnavailable(err);
    }
    const text = sealed === null ? undefined : openSession(sid, sealed);
    if (text === undefined) return undefined;
    try {
      const record = JSON.parse(text) as unknown;
      return typeof record === 'object' && record !== null ? (record as Record<string, unknown>) : undefined;
    } catch {
      return undefined;
    }
  }

  async save(sid: string, record: Record<string, unknown>): Promise<void> {
    const sealed = sealSession(sid, JSON.stringify(record));
    const stored = record.idgate as StoredSession | undefined;
    await this.write('session', (redis) => {
      const write = redis.set(sessionKey(this.config, sid), sealed, 'EX', this.config.sessionIdleTtlSeconds);
      const index = stored
        ? indexSession(redis, this.config, sid, { subject: stored.subject, user: stored.user, createdAt: stored.createdAt, idpSessionHash: stored.idpSessionHash })
        : Promise.resolve();
      return Promise.all([write, index]);
    });
  }

  async renew(sid: string, record: Record<string, unknown>): Promise<boolean> {
    // XX: a session logged out meanwhile stays logged out. KEEPTTL: the idle timeout is not reset here.
    const sealed = sealSession(sid, JSON.stringify(record));
    const written = await this.write('renewal', (conn) => conn.set(sessionKey(this.config, sid), sealed, 'KEEPTTL', 'XX'), (reply) => reply === 'OK');
    return written === 'OK';
  }

  async touch(sid: string): Promise<void> {
    try {
      await this.redis.expire(sessionKey(this.config, sid), this.config.sessionIdleTtlSeconds);
    } catch (err) {
      throw storeUnavailable(err);
    }
  }

  async destroy(sid: string): Promise<void> {
    const hash = sessionHash(sid);
    // Login regenerates the session id, destroying the browser's previous one, which mostly never existed:
    // only a delete that removed a session waits for a replica.
    await this.write(
      'revocation',
      async (redis) => {
        const deleted = await redis.del(sessionKey(this.config, sid));
        await redis.publish(redisKeys.revocations(this.config), JSON.stringify([hash]));
        return deleted;
      },
      (deleted) => deleted > 0,
    );
  }

  /** SET NX with a lease, renewed while held: a holder that dies loses the lock within LOCK_LEASE_MS. */
  async lock(sid: string): Promise<SessionLock | undefined> {
    const redis = this.redis;
    const key = redisKeys.refreshLock(this.config, sessionHash(sid));
    const token = crypto.randomBytes(16).toString('base64url');
    let won: boolean;
    try {
      won = (await redis.set(key, token, 'PX', LOCK_LEASE_MS, 'NX')) === 'OK';
    } catch (err) {
      throw storeUnavailable(err);
    }
    if (!won) return undefined;
    const lease = setInterval(() => void redis.eval(RENEW_LEASE, 1, key, token, String(LOCK_LEASE_MS)).catch(() => undefined), LOCK_LEASE_MS / 3);
    return {
      async release() {
        clearInterval(lease);
        await redis.eval(RELEASE_LOCK, 1, key, token).catch(() => undefined);
      },
    };
  }

  /**
   * Both bounds kept by one script (SAVE_PENDING_LOGIN). Rejects with store_unavailable when Redis cannot
   * take it (unreachable, or out of memory: with `maxmemory-policy noeviction` writes fail instead of
   * evicting sessions).
   */
  async savePendingLogin(state: string, pending: PendingLogin): Promise<SavedPendingLogin> {
    const { config } = this;
    const ttlMs = config.loginTtlSeconds * 1000;
    const member = hashValue(state);
    let result: unknown;
    try {
      result = await this.redis.eval(
        SAVE_PENDING_LOGIN,
        3,
        redisKeys.pendingLogin(config, member),
        redisKeys.pendingLoginIndex(config),
        redisKeys.browserPendingLogins(config, pending.bindingHash),
        member,
        JSON.stringify(pending),
        String(ttlMs),
        String(config.loginMaxPendingPerBrowser),
        String(config.loginMaxPending),
        redisKeys.pendingLogin(config, ''),
      );
    } catch (err) {
      throw storeUnavailable(err);
    }
    const [saved, n] = result as [number, number];
    if (saved === 1) return { saved: true, dropped: n };
    return { saved: false, retryAfterSeconds: retryAfterSeconds(config, n) };
  }

  /**
   * The login is read first and deleted only when the binding matches, so a request without the binding (or
   * with another browser's) cannot spend the login of the browser that started it; the delete is a
   * compare-and-delete, so a state is still good for one callback only.
   */
  async takePendingLogin(state: string, binding: string | undefined): Promise<PendingLoginClaim> {
    const member = hashValue(state);
    const key = redisKeys.pendingLogin(this.config, member);
    try {
      const text = await this.redis.get(key);
      const pending = text === null ? undefined : parsePendingLogin(text);
      if (!pending) return { outcome: 'unknown' };
      if (!isBindingOf(pending, binding)) return { outcome: 'other_browser' };
      // Out of the overall index at once (not at its expiry): a completed login frees its place.
      const deleted = await this.redis.eval(DELETE_IF_UNCHANGED, 2, key, redisKeys.pendingLoginIndex(this.config), text!, member);
      return deleted === 1 ? { outcome: 'taken', pending } : { outcome: 'unknown' };
    } catch (err) {
      throw storeUnavailable(err);
    }
  }

  async firstUseOfLogoutToken(issuer: string, jti: string, ttlSeconds: number): Promise<boolean> {
    try {
      return (await this.redis.set(redisKeys.logoutTokenId(this.config, logoutTokenDigest(issuer, jti)), '1', 'EX', ttlSeconds, 'NX')) === 'OK';
    } catch (err) {
      throw storeUnavailable(err);
    }
  }

  async firstUseOfDpopProof(digest: string, ttlSeconds: number, requestId: string): Promise<boolean> {
    const key = redisKeys.dpopProofId(this.config, digest);
    try {
      if ((await this.redis.set(key, requestId, 'EX', ttlSeconds, 'NX')) === 'OK') return true;
      return (await this.redis.get(key)) === requestId;
    } catch (err) {
      throw storeUnavailable(err);
    }
  }
}

const EXPIRED: SessionRead = Object.freeze({ found: false, problem: 'session_expired' });
const INVALID: SessionRead = Object.freeze({ found: false, problem: 'session_invalid' });
