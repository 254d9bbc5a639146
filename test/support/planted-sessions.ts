// Sessions written to Redis exactly as a login writes them (express-session's store: the sealed session
// and its revocation index entries), copied from a real login's record, for tests and the sizing bench
// that need many more sessions than browser sign-ins would make in their time.
import crypto from 'node:crypto';
import { Redis } from 'ioredis';
import type { Config } from '../../service/src/config.js';
import type { RedisClient } from '../../service/src/redis.js';
import { RedisSessionStore } from '../../service/src/session/redis-session-store.js';
import { sessionKey } from '../../service/src/session/redis-keys.js';
import { idpSessionHash, openSession, type StoredSession } from '../../service/src/session/session-record.js';
import { sessionCookiePair, unsignSessionId } from '../../service/src/session/cookies.js';
import type { Browser } from './browser.js';

export interface PlantedSession {
  readonly sid: string;
  /** The Cookie header a browser holding this session sends. */
  readonly cookie: string;
}

/** The express-session record of the session a signed-in browser holds, read from Redis and opened. */
export async function sessionRecordOf(redis: RedisClient, config: Pick<Config, 'cookieName' | 'cookieSecrets' | 'redisKeyPrefix'>, browser: Browser, host = '127.0.0.1'): Promise<{ sid: string; record: { idgate: StoredSession } & Record<string, unknown> }> {
  const value = browser.cookie(host, config.cookieName);
  const sid = value === undefined ? undefined : unsignSessionId(decodeURIComponent(value), config.cookieSecrets);
  if (sid === undefined) throw new Error('the browser holds no valid session cookie');
  const sealed = await redis.get(sessionKey(config, sid));
  const text = sealed === null ? undefined : openSession(sid, sealed);
  if (text === undefined) throw new Error('the browser\'s session is not in Redis');
  return { sid, record: JSON.parse(text) as { idgate: StoredSession } & Record<string, unknown> };
}

/**
 * The IdP's tokens idgate keeps for the session a signed-in browser holds, on the Redis of a stack started
 * with `cookieSecret` (startStack's other defaults).
 */
export async function storedTokensOnStack(redisPort: number, cookieSecret: string, browser: Browser): Promise<{ refreshToken: string; idToken: string }> {
  const redis = new Redis(redisPort);
  try {
    const { refreshToken, idToken } = (await sessionRecordOf(redis, { cookieName: '_idgate', cookieSecrets: [cookieSecret], redisKeyPrefix: 'idgate:' }, browser)).record.idgate;
    if (refreshToken === undefined || idToken === undefined) throw new Error('the session holds no refresh token or ID token');
    return { refreshToken, idToken };
  } finally {
    redis.disconnect();
  }
}

/**
 * `count` sessions like `template` (a real login's record), each for a subject and user of its own and its
 * own IdP session, written through the session store as login does. Fresh ids, login time now.
 */
export async function plantSessions(redis: RedisClient, config: Config, template: { idgate: StoredSession } & Record<string, unknown>, count: number, tag = 'planted'): Promise<PlantedSession[]> {
  const store = new RedisSessionStore(redis, config);
  const planted: PlantedSession[] = [];
  const now = Date.now();
  for (let start = 0; start < count; start += 200) {
    const batch = Array.from({ length: Math.min(200, count - start) }, (_, j) => {
      const i = start + j;
      const sid = crypto.randomBytes(32).toString('base64url');
      const idgate: StoredSession = {
        ...template.idgate,
        subject: `${template.idgate.subject}-${tag}-${i}`,
        user: `${template.idgate.user}-${tag}-${i}`,
        createdAt: now,
        tokensIssuedAt: now,
        idpSessionHash: idpSessionHash(crypto.randomUUID()),
      };
      planted.push({ sid, cookie: sessionCookiePair(config, sid) });
      return store.save(sid, { ...template, idgate });
    });
    await Promise.all(batch);
  }
  return planted;
}
