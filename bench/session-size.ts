// Bytes per session and per pending login in Redis, measured: `node dist/bench/session-size.js` (after
// `npx tsc -p tsconfig.build.json`). Starts the demo stack on free ports, signs in once through the whole
// flow, then writes SESSIONS sessions copied from that real login's record exactly as login writes them
// (the sealed session and its revocation index entries: each with a subject, a user and an IdP session of
// its own, the most index a session can cost), and starts PENDING logins (each from a new browser, the
// most a pending login can cost). Reports Redis's used_memory growth per item and MEMORY USAGE of the
// keys each one made. Figures go to docs/operations.md, "Durability and sizing".
import { Redis } from 'ioredis';
import { startStack } from '../stack/stack.js';
import { loadConfig } from '../service/src/config.js';
import { redisKeys } from '../service/src/session/redis-keys.js';
import { Browser, signIn } from '../test/support/browser.js';
import { plantSessions, sessionRecordOf } from '../test/support/planted-sessions.js';

const SESSIONS = Number(process.env.SIZE_SESSIONS ?? 1000);
const PENDING = Number(process.env.SIZE_PENDING ?? 1000);

async function usedMemory(redis: Redis): Promise<number> {
  const info = await redis.info('memory');
  return Number(/^used_memory:(\d+)/m.exec(info)![1]);
}

async function memoryUsage(redis: Redis, keys: readonly string[]): Promise<number> {
  let total = 0;
  for (const key of keys) total += Number((await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0')) ?? 0);
  return total;
}

async function main(): Promise<void> {
  const stack = await startStack();
  const redis = new Redis(stack.ports.redis);
  try {
    const { config } = loadConfig({ ...process.env, ...stack.env });
    if (!config) throw new Error('stack settings do not load');
    const browser = new Browser();
    await signIn(browser, `${stack.frontUrl}/`, 'alice');
    const real = await sessionRecordOf(redis, config, browser);
    const realSealed = (await redis.get(redisKeys.session(config, real.sid)))!;
    const plaintextBytes = Buffer.byteLength(JSON.stringify(real.record));
    const idTokenBytes = real.record.idgate.idToken.length;

    // Sessions.
    const beforeSessions = await usedMemory(redis);
    const planted = await plantSessions(redis, config, real.record, SESSIONS, 'size');
    const afterSessions = await usedMemory(redis);
    const sessionKeys = planted.map((p) => redisKeys.session(config, p.sid));
    const indexKeys = [...(await redis.keys(redisKeys.index(config, 'sub', '*-size-*'))), ...(await redis.keys(redisKeys.index(config, 'user', '*-size-*'))), ...(await redis.keys(redisKeys.index(config, 'idpsid', '*')))];
    const sessionBytes = await memoryUsage(redis, sessionKeys);
    const indexBytes = await memoryUsage(redis, [...new Set(indexKeys)]);

    // Pending logins, each from a browser of its own (no binding cookie): a login key, a per-browser set, an entry in the overall set.
    const beforePending = await usedMemory(redis);
    for (let i = 0; i < PENDING; i += 20) {
      await Promise.all(
        Array.from({ length: Math.min(20, PENDING - i) }, async () => {
          // Straight to idgate, as HAProxy forwards it (HAProxy limits login starts per client address).
          const res = await fetch(`${stack.idgateUrls[0]}/_auth/login?rd=%2Fsome%2Fpage`, { redirect: 'manual', headers: { 'x-forwarded-host': new URL(stack.frontUrl).host, 'x-forwarded-proto': 'http' } });
          await res.arrayBuffer();
          if (res.status !== 302 || !res.headers.get('location')?.startsWith(stack.issuer)) throw new Error(`login start answered ${res.status} ${res.headers.get('location')}`);
        }),
      );
    }
    const afterPending = await usedMemory(redis);
    const loginKeys = await redis.keys(redisKeys.pendingLogin(config, '*'));
    const browserKeys = await redis.keys(redisKeys.browserPendingLogins(config, '*'));
    const pendingBytes = await memoryUsage(redis, [...loginKeys, ...browserKeys, redisKeys.pendingLoginIndex(config)]);

    const per = (bytes: number, n: number) => Math.round(bytes / n);
    const lines = [
      `Redis ${(await redis.info('server')).match(/^redis_version:(\S+)/m)![1]}, the demo IdP (ID token ${idTokenBytes} characters; session plaintext ${plaintextBytes} bytes, sealed ${realSealed.length})`,
      `per session (${SESSIONS} written as login writes them):`,
      `  used_memory growth      ${per(afterSessions - beforeSessions, SESSIONS)} bytes`,
      `  MEMORY USAGE, session   ${per(sessionBytes, SESSIONS)} bytes (key + sealed value + TTL)`,
      `  MEMORY USAGE, indexes   ${per(indexBytes, SESSIONS)} bytes (idx:sub, idx:user, idx:idpsid; one user, one IdP session each)`,
      `per pending login (${PENDING} started, one browser each):`,
      `  used_memory growth      ${per(afterPending - beforePending, PENDING)} bytes`,
      `  MEMORY USAGE            ${per(pendingBytes, PENDING)} bytes (login key, the browser's set, its entry in the overall set)`,
      `measured by: node dist/bench/session-size.js`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    redis.disconnect();
    await stack.stop();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`session-size: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
