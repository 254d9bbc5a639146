// Every Redis key name idgate uses, and the pub/sub channel: the Redis session store (and the session
// cache's subscription) build them here and nowhere else.
import type { Config } from '../config.js';
import { sessionHash } from './session-record.js';

/** What a key name depends on: the prefix of every key (IDGATE_REDIS_KEY_PREFIX). */
export type KeyPrefix = Pick<Config, 'redisKeyPrefix'>;

// Revocation indexes. idx:sub:<sub> is a hash: session hash → {user, createdAt};
// idx:user:<user> a set of subjects; idx:idpsid:<hash of the IdP's sid> a set of subject\0session hash
// (back-channel logout). The IdP's sid names the user's session at the IdP; a Redis dump gets only its hash.
//
// Pending logins carry the hash tag {logins}: one slot for all of them, so that one Lua script keeps
// their bounds on Redis Cluster (pending-logins.ts says why). Sessions and indexes spread over all slots
// (redis-session-store.ts says why).

/** Every Redis key (and the pub/sub channel) idgate uses, by what it holds. Nothing else builds one. */
export const redisKeys = {
  /** A session: prefix + "sess:" + base64url(SHA-256(session id)). */
  session: (config: KeyPrefix, sid: string) => redisKeys.sessionOfHash(config, sessionHash(sid)),
  sessionOfHash: (config: KeyPrefix, hash: string) => `${config.redisKeyPrefix}sess:${hash}`,
  index: (config: KeyPrefix, kind: 'sub' | 'user' | 'idpsid', value: string) => `${config.redisKeyPrefix}idx:${kind}:${value}`,
  refreshLock: (config: KeyPrefix, hash: string) => `${config.redisKeyPrefix}lock:refresh:${hash}`,
  /** Pub/sub channel on which revoked session hashes are announced to every replica. */
  revocations: (config: KeyPrefix) => `${config.redisKeyPrefix}revoked`,
  /** A back-channel logout token's id, as seen once (the digest of issuer and jti). */
  logoutTokenId: (config: KeyPrefix, digest: string) => `${config.redisKeyPrefix}bclo:jti:${digest}`,
  /** A DPoP proof's id, as seen once (the digest of its key's thumbprint and jti). */
  dpopProofId: (config: KeyPrefix, digest: string) => `${config.redisKeyPrefix}dpop:jti:${digest}`,
  /** Prefix of the pending-login keys: one hash slot for all of them (config.ts refuses braces in the prefix). */
  pendingLogins: (config: KeyPrefix) => `${config.redisKeyPrefix}{logins}:`,
  pendingLogin: (config: KeyPrefix, stateHash: string) => `${redisKeys.pendingLogins(config)}login:${stateHash}`,
  /** Every pending login, scored by its expiry (ms since epoch): the overall bound counts these. */
  pendingLoginIndex: (config: KeyPrefix) => `${redisKeys.pendingLogins(config)}all`,
  /** One browser's pending logins (by the hash of its binding cookie), scored by expiry. */
  browserPendingLogins: (config: KeyPrefix, bindingHash: string) => `${redisKeys.pendingLogins(config)}browser:${bindingHash}`,
};


/** The Redis key of a session: prefix + base64url(SHA-256(session id)). */
export function sessionKey(config: KeyPrefix, sid: string): string {
  return redisKeys.session(config, sid);
}

/** Pub/sub channel on which revoked session hashes are announced to every replica. */
export function revocationChannel(config: KeyPrefix): string {
  return redisKeys.revocations(config);
}
