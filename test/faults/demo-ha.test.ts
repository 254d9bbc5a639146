// `make demo-ha`'s stack on free ports: Redis Sentinel (a primary, a replica, three sentinels), two idgate
// replicas and HAProxy A and B, both balancing them. What the demo tells a newcomer to try holds: a
// sign-in through A is valid through B, a sign-in started at B comes back to B, and sessions keep working
// through both fronts after the sentinels fail the primary over, on request (SENTINEL FAILOVER) and when
// it is killed. idgate's session cache is off, so every check reads the session from Redis.
import fs from 'node:fs';
import { REDIS_CONF } from '../../stack/redis.js';
import { startStack, type Stack } from '../../stack/stack.js';
import { Browser, signIn } from '../support/browser.js';
import { pause, waitUntil } from '../../stack/wait.js';

let stack: Stack;
const shippedConf = fs.readFileSync(REDIS_CONF, 'utf8');

beforeAll(async () => {
  stack = await startStack({ idgateReplicas: 2, redis: 'sentinel', haproxyFronts: 2, idgateEnv: { IDGATE_SESSION_CACHE_MS: '0' } });
}, 40_000);

afterAll(async () => {
  await stack?.stop();
});

/** Status of GET <front>/whoami with `cookie` as an API client (401, not a redirect, without a session) and the user upstream saw. */
async function whoami(front: string, cookie: string): Promise<{ status: number; user?: string }> {
  const res = await fetch(`${front}/whoami`, { headers: { accept: 'application/json', cookie }, signal: AbortSignal.timeout(5000) });
  if (res.status !== 200) {
    await res.arrayBuffer();
    return { status: res.status };
  }
  const echo = (await res.json()) as { headers: Record<string, string> };
  return { status: 200, user: echo.headers['x-auth-user'] };
}

interface Session {
  cookie: string;
  user: string;
}

/** Every session through every front once: true when all answer 200 with their own user. */
async function everySessionServed(sessions: Session[], counts?: Map<string, number>): Promise<boolean> {
  const answers = await Promise.all(
    sessions.flatMap(({ cookie, user }) =>
      stack.frontUrls.map(async (front) => {
        const a = await whoami(front, cookie).catch(() => ({ status: -1, user: undefined }));
        // A 200 for someone else would be the worst answer: count it apart.
        const key = a.status === 200 && a.user !== user ? '200-wrong-user' : String(a.status);
        counts?.set(key, (counts.get(key) ?? 0) + 1);
        return key === '200';
      }),
    ),
  );
  return answers.every(Boolean);
}

/** Asks until every session is served through both fronts (at most `timeoutMs`); resolves with how long that took. */
async function untilEverySessionServed(sessions: Session[], timeoutMs = 15_000): Promise<number> {
  const started = Date.now();
  await waitUntil('sessions served through both fronts', () => everySessionServed(sessions), { timeoutMs, everyMs: 100 });
  return Date.now() - started;
}

/** Asks for every session through both fronts, back to back, until stopped; resolves with the answers counted. */
function watch(sessions: Session[]): { stop(): Promise<Map<string, number>> } {
  const counts = new Map<string, number>();
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      await everySessionServed(sessions, counts);
      await pause(20); // pacing: a steady load, not a flood (the behaviour watched)
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      return counts;
    },
  };
}

const table = (counts: Map<string, number>) => [...counts].sort(([a], [b]) => a.localeCompare(b)).map(([status, n]) => `${status}x${n}`).join(' ');

test('a sign-in through A is valid through B, and sessions survive a Sentinel failover and a killed primary on both fronts', async () => {
  const [frontA, frontB] = stack.frontUrls as [string, string];
  expect(frontB).not.toBe(frontA);

  // alice signs in through A; her browser then opens B: same session, no sign-in.
  const alice = new Browser();
  await signIn(alice, `${frontA}/`, 'alice');
  const aliceCookie = alice.cookieHeader(new URL(frontA))!;
  expect(await whoami(frontB, aliceCookie)).toEqual({ status: 200, user: 'alice' });

  // bob starts at B: he signs in at A (the public URL) and is sent back to the page on B he asked for.
  const bob = new Browser();
  const { res, url } = await signIn(bob, `${frontB}/from-b?x=1`, 'bob');
  expect(url.href).toBe(`${frontB}/from-b?x=1`);
  expect(res.status).toBe(200);
  expect(((await res.json()) as { headers: Record<string, string> }).headers['x-auth-user']).toBe('bob');
  const sessions = [{ cookie: aliceCookie, user: 'alice' }, { cookie: bob.cookieHeader(new URL(frontB))!, user: 'bob' }];
  expect(await everySessionServed(sessions)).toBe(true);

  const sentinel = stack.sentinel!;
  const first = await sentinel.primaryPort();
  const duringFailover = watch(sessions);
  const failoverAt = Date.now();
  const promoted = await sentinel.failover();
  const failoverMs = (await untilEverySessionServed(sessions)) + (Date.now() - failoverAt);
  const failoverCounts = await duringFailover.stop();

  // The old primary is a replica of the new one now; once the sentinels see it in sync, kill the new primary.
  await sentinel.waitForReplica();
  const duringKill = watch(sessions);
  const killedAt = Date.now();
  const killed = await sentinel.killPrimary();
  expect(killed).toBe(promoted);
  const promotedAgain = await sentinel.waitForFailover(killed);
  expect(promotedAgain).toBe(first);
  await untilEverySessionServed(sessions);
  const killMs = Date.now() - killedAt;
  const killCounts = await duringKill.stop();

  process.stdout.write(
    `[demo-ha] SENTINEL FAILOVER ${first} -> ${promoted}: every session served through A and B ${failoverMs} ms after it was asked; answers meanwhile: ${table(failoverCounts)}\n` +
      `[demo-ha] primary ${killed} killed, ${promotedAgain} promoted: every session served again ${(killMs / 1000).toFixed(1)} s after the kill; answers meanwhile: ${table(killCounts)}\n`,
  );
  // While Redis had no primary HAProxy answered 503, never 401 (a session lost) nor another's identity;
  // -1 (no answer within 5 s) would be a hung check.
  for (const status of [...failoverCounts.keys(), ...killCounts.keys()]) expect(['200', '503']).toContain(status);

  // A sign-in after both failovers works through A and is valid through B.
  const later = new Browser();
  await signIn(later, `${frontA}/`, 'alice');
  expect(await whoami(frontB, later.cookieHeader(new URL(frontA))!)).toEqual({ status: 200, user: 'alice' });
  // The sentinels rewrote the configs of the nodes they reconfigured: copies, never the shipped file.
  expect(fs.readFileSync(REDIS_CONF, 'utf8')).toBe(shippedConf);
}, 45_000);
