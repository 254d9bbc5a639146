// idgate on Redis Sentinel (a primary, one replica, three sentinels, passwords on the data nodes and on the
// sentinels), two replicas in-process: sessions shared, revoked everywhere, and the primary killed under
// load: checks answer 503 for a bounded time, never 200 without a verified session, and work again after
// the failover without restarting idgate. The sessions lost and the seconds of 503 are printed.
import crypto from 'node:crypto';
import signature from 'cookie-signature';
import { Browser, signIn } from '../support/browser.js';
import { startSentinelSet, type SentinelSet } from '../../stack/redis-sentinel.js';
import { idgateCli, startIdgateReplicas, type IdgateReplicas } from '../support/redis-topologies.js';
import { underFailoverLoad } from '../support/failover-load.js';

let sentinel: SentinelSet;
let idgates: IdgateReplicas;

beforeAll(async () => {
  sentinel = await startSentinelSet({ password: 'data-password-of-the-sentinel-tests', sentinelPassword: 'sentinel-password-of-the-tests' });
  idgates = await startIdgateReplicas(sentinel.env, 2);
}, 60_000);

afterAll(async () => {
  await idgates?.stop();
  await sentinel?.stop();
});

const cookieOf = (browser: Browser) => browser.cookieHeader(new URL(idgates.urls[0]!))!;

async function signedIn(user: string): Promise<string> {
  const browser = new Browser();
  await signIn(browser, `${idgates.urls[0]}/_auth/login?rd=%2F`, user);
  if (browser.cookie('127.0.0.1', '_idgate') === undefined) throw new Error(`no session for ${user}: ${JSON.stringify(browser.hops)}`);
  return cookieOf(browser);
}

/** A correctly signed cookie for a session id that was never stored: only Redis can say it is no session. */
function forgedCookie(): string {
  const sid = crypto.randomBytes(32).toString('base64url');
  return `_idgate=${encodeURIComponent(`s:${signature.sign(sid, idgates.env.IDGATE_COOKIE_SECRETS!)}`)}`;
}

test('a session made through one replica works through the other; `idgate sessions revoke` through the sentinels ends it on both', async () => {
  const cookie = await signedIn('alice');
  expect(await idgates.check(0, cookie)).toBe(200);
  expect(await idgates.check(1, cookie)).toBe(200);
  const revoked = await idgateCli(['sessions', 'revoke', '--user', 'alice'], sentinel.env);
  expect(revoked.stdout).toMatch(/revoked [1-9]\d* session\(s\)/);
  expect(revoked.stdout + revoked.stderr).not.toContain(sentinel.password!);
  expect(await idgates.checkAfterRevocation(0, cookie)).not.toBe(200);
  expect(await idgates.checkAfterRevocation(1, cookie)).not.toBe(200);
});

test('the sentinels refuse a wrong sentinel password: the CLI says so and prints no password', async () => {
  const wrong = await idgateCli(['sessions', 'list', '--user', 'alice'], { ...sentinel.env, IDGATE_REDIS_SENTINEL_PASSWORD: 'not-the-sentinel-password' });
  expect(wrong.code).not.toBe(0);
  expect(wrong.stdout + wrong.stderr).not.toMatch(/not-the-sentinel-password|data-password-of-the-sentinel-tests/);
});

test('the primary killed under load: 503 for a bounded time, never 200 without a session, then sessions work again with no restart', async () => {
  const sessions = [await signedIn('alice'), await signedIn('bob'), await signedIn('alice'), await signedIn('bob')];
  for (const cookie of sessions) expect(await idgates.check(1, cookie)).toBe(200);

  const run = await underFailoverLoad({
    kinds: ['valid', 'forged', 'none'] as const,
    replicas: 2,
    sessions: sessions.length,
    pacingMs: 10,
    rounds: 40,
    round: async (replica, i, count) => {
      count('valid', await idgates.check(replica, sessions[i % sessions.length]).catch(() => -1), true);
      count('forged', await idgates.check(replica, forgedCookie()).catch(() => -1));
      count('none', await idgates.check(replica, undefined).catch(() => -1));
    },
    fault: async () => {
      const oldPrimary = await sentinel.killPrimary();
      return { oldPrimary, newPrimary: await sentinel.waitForFailover(oldPrimary, 25_000) };
    },
    answers: () => Promise.all(sessions.flatMap((c) => [idgates.check(0, c), idgates.check(1, c)])),
  });
  const { counts, lost, seconds503, table, fault: { oldPrimary, newPrimary } } = run;
  process.stdout.write(
    `[sentinel failover] primary ${oldPrimary} killed, sentinels promoted ${newPrimary} after ${((run.failedOverAt - run.killedAt) / 1000).toFixed(1)} s; ` +
      `checks answering again ${((run.recoveredAt - run.killedAt) / 1000).toFixed(1)} s after the kill; seconds of 503: ${seconds503.toFixed(1)}; ` +
      `sessions lost: ${lost} of ${sessions.length}\n` +
      `  valid sessions: ${table('valid')}\n  forged cookie: ${table('forged')}\n  no cookie: ${table('none')}\n`,
  );
  expect(lost).toBe(0);
  expect(seconds503).toBeLessThan(20);
  // Never an allow without a session that Redis vouched for.
  expect(counts.forged.get(200) ?? 0).toBe(0);
  expect(counts.none.get(200) ?? 0).toBe(0);
  // While Redis was away the answers were 503 (or a session still in a replica's cache: 200), nothing else.
  expect([...counts.valid.keys()].every((s) => s === 200 || s === 503)).toBe(true);
  // A login after the failover works too, and its session is valid on both replicas.
  const fresh = await signedIn('bob');
  expect(await idgates.check(0, fresh)).toBe(200);
  expect(await idgates.check(1, fresh)).toBe(200);
}, 60_000);
