// Sessions at rest in Redis, so that a Redis dump alone yields neither tokens nor a usable cookie:
// the key is a hash of the session id and the value is AES-256-GCM encrypted under a key derived from
// the session id, which only the browser's cookie carries. Plaintext in Redis is limited to what
// revocation needs: per-subject indexes naming the session hashes, with user name and login time.
//
// This replaces connect-redis (our note on the stack): connect-redis keys Redis by the raw session id and
// its serializer never sees the id, so neither the hashed key nor a per-session key is possible with it.
// express-session still owns the cookie and the session lifecycle; this is its Store.
import crypto from 'node:crypto';
import session from 'express-session';
import type { RedisClient } from './redis.js';
import type { Config } from './config.js';
import type { DurableWrites } from './durable-writes.js';
import { IdgateError } from './errors.js';

/** The Redis key of a session: prefix + base64url(SHA-256(session id)). */
export function sessionKey(config: Config, sid: string): string {
  return `${config.redisKeyPrefix}sess:${sessionHash(sid)}`;
}

export function sessionHash(sid: string): string {
  let hash = sessionHashes.get(sid);
  if (hash === undefined) {
    hash = crypto.createHash('sha256').update(`idgate-session-key\0${sid}`).digest('base64url');
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

// Revocation indexes. idx:sub:<sub> is a hash: session hash → {user, createdAt};
// idx:user:<user> a set of subjects; idx:idpsid:<hash of the IdP's sid> a set of subject\0session hash
// (back-channel logout). The IdP's sid names the user's session at the IdP; a Redis dump gets only its hash.

/** How an IdP session id (`sid` claim) is stored and indexed: base64url(SHA-256(sid)). */
export function idpSessionHash(idpSessionId: string): string {
  return crypto.createHash('sha256').update(idpSessionId).digest('base64url');
}

export interface IndexedSession {
  readonly hash: string;
  readonly subject: string;
  readonly user: string;
  readonly createdAt: number;
}

interface IndexFields {
  subject: string;
  user: string;
  createdAt: number;
  idpSessionHash: string | undefined;
}

type Prefix = Pick<Config, 'redisKeyPrefix'>;

const idx = (config: Prefix, kind: 'sub' | 'user' | 'idpsid', value: string) => `${config.redisKeyPrefix}idx:${kind}:${value}`;

// Redis Cluster: a session is read by its id alone (the check knows nothing else), so it cannot share a
// hash slot with its subject's indexes, nor can a subject's, a user name's and an IdP session's index
// share one. No operation needs them together: each index key is written with its TTL in a MULTI of its
// own (one key, one slot), and revocation deletes each session and its index entry by single-key commands
// (deleting is idempotent; an entry left behind is dropped by the next listSessions).

export async function indexSession(redis: RedisClient, config: Config, sid: string, fields: IndexFields): Promise<void> {
  const hash = sessionHash(sid);
  const ttl = config.sessionMaxAgeSeconds;
  const bySubject = idx(config, 'sub', fields.subject);
  const byUser = idx(config, 'user', fields.user);
  const writes = [
    redis.multi().hset(bySubject, hash, JSON.stringify({ user: fields.user, createdAt: fields.createdAt })).expire(bySubject, ttl).exec(),
    redis.multi().sadd(byUser, fields.subject).expire(byUser, ttl).exec(),
  ];
  if (fields.idpSessionHash) {
    const byIdpSession = idx(config, 'idpsid', fields.idpSessionHash);
    writes.push(redis.multi().sadd(byIdpSession, `${fields.subject}\0${hash}`).expire(byIdpSession, ttl).exec());
  }
  await Promise.all(writes);
}

/** Sessions of a subject, or of every subject a user name maps to. Entries whose session is gone are dropped. */
export async function listSessions(redis: RedisClient, config: Prefix, who: { subject?: string; user?: string }): Promise<IndexedSession[]> {
  const subjects = who.subject ? [who.subject] : who.user ? await redis.smembers(idx(config, 'user', who.user)) : [];
  const out: IndexedSession[] = [];
  for (const subject of subjects) {
    const entries = await redis.hgetall(idx(config, 'sub', subject));
    for (const [hash, json] of Object.entries(entries)) {
      if (!(await redis.exists(`${config.redisKeyPrefix}sess:${hash}`))) {
        await redis.hdel(idx(config, 'sub', subject), hash);
        continue;
      }
      const meta = JSON.parse(json) as { user: string; createdAt: number };
      out.push({ hash, subject, user: meta.user, createdAt: meta.createdAt });
    }
  }
  return out.sort((a, b) => a.createdAt - b.createdAt);
}

/**
 * Deletes sessions by their hashes and tells every replica (pub/sub) to forget them. Returns how many existed.
 * A durable write: it waits for a Redis replica, so a failover does not bring the sessions back. Single-key
 * commands only (no MULTI across keys), so it works on Redis Cluster, where the keys sit in other slots.
 */
export async function revokeSessions(durable: DurableWrites, config: Prefix, sessions: readonly { hash: string; subject: string }[]): Promise<number> {
  if (sessions.length === 0) return 0;
  return durable.write('revocation', async (redis) => {
    const deleted = await Promise.all(sessions.map(async (s) => {
      const [gone] = await Promise.all([redis.del(`${config.redisKeyPrefix}sess:${s.hash}`), redis.hdel(idx(config, 'sub', s.subject), s.hash)]);
      return gone;
    }));
    await redis.publish(revocationChannel(config), JSON.stringify(sessions.map((s) => s.hash)));
    return deleted.reduce((sum, n) => sum + n, 0);
  }, (deleted) => deleted > 0);
}

/**
 * Sessions that came from one IdP session (the `sid` of a back-channel logout token), found by its hash.
 * Sessions indexed before hashing sit under the raw sid: read too (and dropped) until those have expired,
 * IDGATE_SESSION_MAX_AGE after the upgrade at most.
 */
export async function sessionsOfIdpSession(redis: RedisClient, config: Prefix, idpSessionId: string): Promise<{ hash: string; subject: string }[]> {
  const legacyKey = idx(config, 'idpsid', idpSessionId);
  const [hashed, legacy] = await Promise.all([redis.smembers(idx(config, 'idpsid', idpSessionHash(idpSessionId))), redis.smembers(legacyKey)]);
  if (legacy.length > 0) await redis.del(legacyKey);
  return [...new Set([...hashed, ...legacy])].map((m) => {
    const [subject = '', hash = ''] = m.split('\0');
    return { subject, hash };
  });
}

/** Pub/sub channel on which revoked session hashes are announced to every replica. */
export function revocationChannel(config: Prefix): string {
  return `${config.redisKeyPrefix}revoked`;
}

/**
 * express-session's Store over Redis, encrypted and hashed as above. The TTL is the idle timeout. Saving a
 * session (at login) and destroying it (logout) are durable writes when `durable` is given: they wait for
 * a Redis replica (durable-writes.ts).
 */
export class EncryptedRedisStore extends session.Store {
  constructor(
    private readonly redis: RedisClient,
    private readonly config: Config,
    private readonly durable?: DurableWrites,
  ) {
    super();
  }

  #write<T>(kind: 'session' | 'revocation', write: (redis: RedisClient) => Promise<T>, changed?: (result: T) => boolean): Promise<T> {
    return this.durable ? this.durable.write(kind, write, changed) : write(this.redis);
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
    this.redis.get(sessionKey(this.config, sid)).then(
      (sealed) => {
        const text = sealed === null ? undefined : openSession(sid, sealed);
        if (text === undefined) return callback(null, null);
        try {
          callback(null, JSON.parse(text) as session.SessionData);
        } catch {
          callback(null, null);
        }
      },
      (err: Error) => callback(new IdgateError('store_unavailable', 'session store unavailable', err.message)),
    );
  }

  override set(sid: string, data: session.SessionData, callback?: (err?: unknown) => void): void {
    const text = JSON.stringify(data);
    const digest = sameDataDigest(text);
    const last = this.#justWritten.get(sid);
    if (last !== undefined && last.digest === digest && Date.now() - last.at < 2000) return callback?.();
    const sealed = sealSession(sid, text);
    const stored = data.idgate;
    this.#write('session', (redis) => {
      const write = redis.set(sessionKey(this.config, sid), sealed, 'EX', this.config.sessionIdleTtlSeconds);
      const index = stored
        ? indexSession(redis, this.config, sid, { subject: stored.subject, user: stored.user, createdAt: stored.createdAt, idpSessionHash: stored.idpSessionHash })
        : Promise.resolve();
      return Promise.all([write, index]);
    }).then(
      () => {
        if (this.#justWritten.size >= 1000) this.#justWritten.delete(this.#justWritten.keys().next().value!);
        this.#justWritten.set(sid, { digest, at: Date.now() });
        callback?.();
      },
      (err: Error) => callback?.(new IdgateError('store_unavailable', 'session store unavailable', err.message)),
    );
  }

  override destroy(sid: string, callback?: (err?: unknown) => void): void {
    this.#justWritten.delete(sid);
    const hash = sessionHash(sid);
    // Login regenerates the session id, destroying the browser's previous one, which mostly never existed:
    // only a delete that removed a session waits for a replica.
    this.#write(
      'revocation',
      async (redis) => {
        const deleted = await redis.del(sessionKey(this.config, sid));
        await redis.publish(revocationChannel(this.config), JSON.stringify([hash]));
        return deleted;
      },
      (deleted) => deleted > 0,
    )
      .then(
        () => callback?.(),
        (err: Error) => callback?.(new IdgateError('store_unavailable', 'session store unavailable', err.message)),
      );
  }

  override touch(sid: string, _data: session.SessionData, callback?: (err?: unknown) => void): void {
    this.redis.expire(sessionKey(this.config, sid), this.config.sessionIdleTtlSeconds).then(
      () => callback?.(),
      (err: Error) => callback?.(new IdgateError('store_unavailable', 'session store unavailable', err.message)),
    );
  }
}

/** A digest of a session record as compared for a repeated save (all of it but the cookie's `expires`): no token is kept. */
function sameDataDigest(text: string): string {
  const record = JSON.parse(text) as { cookie?: { expires?: unknown } };
  if (record.cookie) delete record.cookie.expires;
  return crypto.createHash('sha256').update(JSON.stringify(record)).digest('base64url');
}
