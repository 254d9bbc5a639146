// The session store's behaviour, once for each implementation: in memory (a clock the test moves) and on a
// real redis-server (its TTLs shortened as if the time had passed). The suite is test/support/session-store-suite.ts.
import { Redis } from 'ioredis';
import { startFreeTempRedis, type startTempRedis } from '../../stack/redis.js';
import { RedisSessionStore } from '../../service/src/session/redis-session-store.js';
import { MemorySessionStore } from '../support/memory-session-store.js';
import { runSessionStoreTests, SUITE_SETTINGS } from '../support/session-store-suite.js';

runSessionStoreTests('in memory', async () => {
  let clock = Date.now();
  const store = new MemorySessionStore(SUITE_SETTINGS, () => clock);
  return {
    store,
    now: () => clock,
    advance: async (ms) => {
      clock += ms;
    },
    breakStore: async () => {
      store.unavailable = new Error('connection refused');
    },
    close: async () => undefined,
  };
});

let server: ReturnType<typeof startTempRedis> | undefined;
let port = 0;
let stores = 0;

beforeAll(async () => {
  ({ port, server } = await startFreeTempRedis());
}, 30_000);

afterAll(async () => {
  await server?.stop();
});

runSessionStoreTests('Redis', async () => {
  // As idgate's own connection: no offline queue, so a Redis that cannot answer fails at once.
  const redis = new Redis(port, '127.0.0.1', { enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: true });
  redis.on('error', () => undefined);
  await redis.connect();
  const settings = { ...SUITE_SETTINGS, redisKeyPrefix: `suite${++stores}:` };
  let clock = Date.now();
  return {
    store: new RedisSessionStore(redis, settings),
    now: () => clock,
    // Redis's clock cannot be moved: every key of this store ages by `ms` instead (what has run out goes).
    advance: async (ms) => {
      clock += ms;
      for (const key of await redis.keys(`${settings.redisKeyPrefix}*`)) {
        const left = await redis.pttl(key);
        if (left < 0) continue;
        if (left <= ms) await redis.del(key);
        else await redis.pexpire(key, left - ms);
      }
    },
    breakStore: async () => {
      redis.disconnect();
    },
    close: async () => {
      redis.disconnect();
    },
  };
});
