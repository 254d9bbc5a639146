// idgate on Redis Sentinel (a primary, one replica, three sentinels, passwords on the data nodes and on the
// sentinels), two replicas in-process: sessions shared, revoked everywhere, and the primary killed under
// load: checks answer 503 for a bounded time, never 200 without a verified session, and work again after
// the failover without restarting idgate. The sessions lost and the seconds of 503 are printed.
import crypto from 'node:crypto';
import signature from 'cookie-signature';
import { Browser, signIn } from '../support/browser.js';
import { startSentinelSet, type SentinelSet } from '../../stack/redis-sentinel.js';
import { idgateCli, startIdgateReplicas, type IdgateReplicas } from '../support/redis-topologies.js';
import { waitUntil } from '../support/wait.js';

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

  const counts = { valid: new Map<number, number>(), forged: new Map<number, number>(), none: new Map<number, number>() };
  const bump = (m: Map<number, number>, status: number) => m.set(status, (m.get(status) ?? 0) + 1);
  let first503: number | undefined;
  let last503: number | undefined;
  let stopLoad = false;
  /** Rounds the load loops have done: the test lets the load run a number of rounds, not a number of milliseconds. */
  let rounds = 0;
  const load = async (replica: number) => {
    for (let i = 0; !stopLoad; i++) {
      const status = await idgates.check(replica, sessions[i % sessions.length]).catch(() => -1);
      bump(counts.valid, status);
      if (status === 503) {
        first503 ??= Date.now();
        last503 = Date.now();
      }
      bump(counts.forged, await idgates.check(replica, forgedCookie()).catch(() => -1));
      bump(counts.none, await idgates.check(replica, undefined).catch(() => -1));
      rounds += 1;
      await new Promise((r) => setTimeout(r, 10)); // pacing: a steady load, not a flood
    }
  };
  const loops = [load(0), load(1)];
  await waitUntil(() => rounds >= 40, 10_000); // a baseline before the failure
  const killedAt = Date.now();
  const oldPrimary = await sentinel.killPrimary();
  const newPrimary = await sentinel.waitForFailover(oldPrimary, 25_000);
  const failedOverAt = Date.now();
  // Checks work again by themselves: wait (bounded) until every session answers 200 on both replicas.
  const deadline = Date.now() + 15_000;
  let answering: number[] = [];
  while (Date.now() < deadline) {
    answering = await Promise.all(sessions.flatMap((c) => [idgates.check(0, c), idgates.check(1, c)]));
    if (answering.every((s) => s === 200)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const recoveredAt = Date.now();
  const roundsAtRecovery = rounds;
  await waitUntil(() => rounds >= roundsAtRecovery + 40, 10_000); // the load goes on after the recovery
  stopLoad = true;
  await Promise.all(loops);

  const lost = sessions.filter((_, i) => answering[2 * i] !== 200 || answering[2 * i + 1] !== 200).length;
  const seconds503 = first503 === undefined ? 0 : (last503! - first503) / 1000;
  const table = (m: Map<number, number>) => [...m].sort(([a], [b]) => a - b).map(([s, n]) => `${s}x${n}`).join(' ');
  process.stdout.write(
    `[sentinel failover] primary ${oldPrimary} killed, sentinels promoted ${newPrimary} after ${((failedOverAt - killedAt) / 1000).toFixed(1)} s; ` +
      `checks answering again ${((recoveredAt - killedAt) / 1000).toFixed(1)} s after the kill; seconds of 503: ${seconds503.toFixed(1)}; ` +
      `sessions lost: ${lost} of ${sessions.length}\n` +
      `  valid sessions: ${table(counts.valid)}\n  forged cookie: ${table(counts.forged)}\n  no cookie: ${table(counts.none)}\n`,
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
