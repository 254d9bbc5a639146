// Fault: Redis restarted. redis-server gets SIGTERM and starts again on the same port with the same data
// dir; with the shipped redis/redis.conf (AOF, fsync every second) no session is lost. Users signed in
// through the whole flow, and many more sessions written as login writes them, are all still valid
// through HAProxy afterwards, without restarting idgate. On a Redis Cluster, every node is restarted at
// once (each with its AOF and nodes.conf), the sessions spread over its three primaries. Prints the counts.
import { Cluster } from 'ioredis';
import { Browser, signIn } from '../support/browser.js';
import { configFrom } from '../support/idgate.js';
import { plantSessions, sessionRecordOf } from '../support/planted-sessions.js';
import { REDIS_TOPOLOGIES, startStackOnRedis, type StackOnRedis } from '../support/stack-on-redis.js';
import { redisKeys } from '../../service/src/session/redis-keys.js';
import { probeUntil } from '../../stack/wait.js';

const SIGNED_IN = 10;
const PLANTED = 500;

describe.each(REDIS_TOPOLOGIES)('on %s', (topology) => {
  let onRedis: StackOnRedis;

  beforeAll(async () => {
    // No session cache: every check after the restart reads the session from Redis itself.
    onRedis = await startStackOnRedis(topology, { idgateEnv: { IDGATE_SESSION_CACHE_MS: '0' } });
  }, 60_000);

  afterAll(async () => {
    await onRedis?.stop();
  });

  /** How many of these cookies HAProxy lets through to the app (200 with an X-Auth-User), 16 requests at a time. */
  async function validSessions(cookies: readonly string[]): Promise<number> {
    const { stack } = onRedis;
    let valid = 0;
    for (let i = 0; i < cookies.length; i += 16) {
      const answers = await Promise.all(
        cookies.slice(i, i + 16).map(async (cookie) => {
          const res = await fetch(`${stack.frontUrl}/whoami`, { headers: { cookie, accept: 'application/json' }, redirect: 'manual' });
          const body = res.status === 200 ? ((await res.json()) as { headers: Record<string, string> }) : (await res.arrayBuffer(), undefined);
          return body?.headers['x-auth-user'] !== undefined;
        }),
      );
      valid += answers.filter(Boolean).length;
    }
    return valid;
  }

  async function readyAfter(sinceMs: number): Promise<number> {
    const { stack } = onRedis;
    const status = await probeUntil(async () => (await fetch(`${stack.idgateUrls[0]}/readyz`)).status, (s) => s === 200, { timeoutMs: 10_000 });
    if (status !== 200) throw new Error('idgate not ready 10 s after Redis came back');
    return Date.now() - sinceMs;
  }

  test('a Redis restart (SIGTERM, same port and data dir) loses no session: every one is still valid through HAProxy', async () => {
    const { stack } = onRedis;
    const browsers: Browser[] = [];
    for (let i = 0; i < SIGNED_IN; i++) {
      const browser = new Browser();
      await signIn(browser, `${stack.frontUrl}/`, i % 2 === 0 ? 'alice' : 'bob');
      browsers.push(browser);
    }
    const config = configFrom(stack.env);
    const redis = onRedis.connect();
    let cookies: string[];
    let perPrimary: number[];
    try {
      const { record } = await sessionRecordOf(redis, config, browsers[0]!);
      const planted = await plantSessions(redis, config, record, PLANTED);
      cookies = [...browsers.map((b) => b.cookieHeader(new URL(stack.frontUrl))!), ...planted.map((p) => p.cookie)];
      const servers = redis instanceof Cluster ? redis.nodes('master') : [redis];
      perPrimary = await Promise.all(servers.map(async (s) => (await s.keys(redisKeys.sessionOfHash(config, '*'))).length));
    } finally {
      redis.disconnect();
    }
    const idgatePid = stack.processes.idgate!.child.pid;
    const before = await validSessions(cookies);
    expect(before).toBe(cookies.length);

    const restartedAt = Date.now();
    await onRedis.stopRedis();
    await onRedis.startRedis();
    await onRedis.serving();
    const readyMs = await readyAfter(restartedAt);
    const after = await validSessions(cookies);
    const lost = cookies.length - after;
    process.stdout.write(
      `FAULT redis-restart (${topology}): ${cookies.length} sessions (${SIGNED_IN} signed in, ${PLANTED} written as login writes them); ${perPrimary.length > 1 ? `${perPrimary.join(' + ')} on the primaries; ` : ''}valid before ${before}, after ${after}; lost ${lost}; idgate ready again ${readyMs} ms after the restart began, not restarted\n`,
    );
    expect(lost).toBe(0);
    expect(stack.processes.idgate!.child.pid).toBe(idgatePid);
    expect(stack.processes.idgate!.child.exitCode).toBeNull();
  }, 120_000);
});
