// Writes that must not be lost wait for a Redis replica (WAIT, IDGATE_REDIS_WAIT_REPLICAS=auto), with a
// real replica (a second redis-server with --replicaof) on loopback:
//   - the session a login writes is on the replica when the login's answer comes back;
//   - with the replica paused (SIGSTOP) the login still completes, after the bound, counted as a timeout,
//     and session checks meanwhile do not wait (WAIT runs on connections of its own);
//   - a replica that resumes within the bound has the session when the answer comes back;
//   - a logout's delete is on the replica when its answer comes back.
import { Redis } from 'ioredis';
import { type ManagedProcess } from '../../stack/processes.js';
import { startFreeTempRedis } from '../../stack/redis.js';
import { startStack, type Stack } from '../../stack/stack.js';
import { sessionKey } from '../../service/src/session/redis-keys.js';
import { unsignSessionId } from '../../service/src/session/cookies.js';
import type { Config } from '../../service/src/config.js';
import { Browser, parseForm } from '../support/browser.js';
import { configFrom, metricValue } from '../support/idgate.js';
import { pause, probeUntil, waitUntil } from '../../stack/wait.js';

// Far above HAProxy's 800 ms check budget, so that a check queued behind a WAIT would be answered 503;
// and far above the 150 ms pause below, so that a late timer on a loaded machine still resumes within it.
const WAIT_MS = 2000;
/** be_idgate's server timeout for browser traffic (the callback): an answer that never came would meet it. */
const HANG_MS = 10_000;
let stack: Stack;
let config: Config;
let replica: ManagedProcess;
let primaryClient: Redis;
let replicaClient: Redis;

beforeAll(async () => {
  stack = await startStack({ idgateEnv: { IDGATE_REDIS_WAIT_MS: String(WAIT_MS) } });
  config = configFrom(stack.env);
  let replicaPort: number;
  ({ port: replicaPort, server: replica } = await startFreeTempRedis({ name: 'redis-replica', args: ['--replicaof', '127.0.0.1', String(stack.ports.redis)] }));
  primaryClient = new Redis(stack.ports.redis);
  replicaClient = new Redis(replicaPort);
  await waitUntil('the replica online', async () => /^slave0:.*state=online/m.test(await primaryClient.info('replication')), { timeoutMs: 10_000, everyMs: 100 }).catch((err: Error) => {
    throw new Error(`${err.message}\n${replica.output()}`);
  });
}, 60_000);

afterAll(async () => {
  primaryClient?.disconnect();
  replicaClient?.disconnect();
  replica?.child.kill('SIGCONT');
  await replica?.stop();
  await stack?.stop();
});

/** Signs in as `user`; returns how long the callback (the request whose answer means "signed in") took. */
async function signInTimed(browser: Browser, user: string, beforeCallback: () => void = () => undefined): Promise<{ callbackMs: number; status: number }> {
  const first = await browser.navigate(`${stack.frontUrl}/`);
  const html = await first.res.text();
  const form = parseForm(html);
  let res = await browser.fetch(new URL(form.action || first.url.href, first.url), {
    method: form.method,
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: first.url.origin },
    body: new URLSearchParams({ ...form.fields, login: user, password: user }).toString(),
  });
  let at = first.url;
  for (let hop = 0; hop < 10; hop++) {
    const location = res.headers.get('location');
    if (!location) break;
    await res.arrayBuffer();
    at = new URL(location, at);
    if (at.pathname === '/_auth/callback') {
      beforeCallback();
      const started = Date.now();
      const callback = await browser.fetch(at);
      const callbackMs = Date.now() - started;
      await callback.arrayBuffer();
      return { callbackMs, status: callback.status };
    }
    res = await browser.fetch(at);
  }
  throw new Error(`the sign-in never reached /_auth/callback: ${JSON.stringify(browser.hops.slice(-10))}`);
}

function sessionKeyOf(browser: Browser): string {
  const sid = unsignSessionId(decodeURIComponent(browser.cookie('127.0.0.1', config.cookieName)!), config.cookieSecrets)!;
  return sessionKey(config, sid);
}

async function waits(result: string): Promise<number> {
  const text = await (await fetch(`${stack.idgateUrls[0]}/metrics`)).text();
  return metricValue(text, `idgate_redis_replication_waits_total{write="session",result="${result}"}`);
}

test('a login answers only once its session is on the replica; with the replica paused it completes after the bound, and checks do not wait', async () => {
  // Healthy replica.
  const alice = new Browser();
  const healthy = await signInTimed(alice, 'alice');
  expect(healthy.status).toBe(302);
  const onReplica = await replicaClient.exists(sessionKeyOf(alice));
  expect(onReplica).toBe(1);
  expect(await waits('replicated')).toBe(1);

  // Paused replica: the login waits for the bound, then goes on; checks of alice's session meanwhile do not wait.
  const bob = new Browser();
  const checkLatencies: number[] = [];
  let pausedLogin: { callbackMs: number; status: number } | undefined;
  const login = signInTimed(bob, 'bob', () => replica.child.kill('SIGSTOP')).then((r) => (pausedLogin = r));
  const aliceCookie = alice.cookieHeader(new URL(stack.frontUrl))!;
  while (pausedLogin === undefined) {
    const started = Date.now();
    const res = await fetch(`${stack.frontUrl}/whoami`, { headers: { cookie: aliceCookie, accept: 'application/json' } });
    await res.arrayBuffer();
    expect(res.status).toBe(200);
    checkLatencies.push(Date.now() - started);
    await pause(20); // pacing: checks at a steady rate while the login waits (the behaviour measured)
  }
  await login;
  replica.child.kill('SIGCONT');
  expect(pausedLogin.status).toBe(302);
  expect(pausedLogin.callbackMs).toBeGreaterThanOrEqual(WAIT_MS);
  expect(pausedLogin.callbackMs).toBeLessThan(HANG_MS);
  expect(await primaryClient.exists(sessionKeyOf(bob))).toBe(1);
  expect(await waits('timeout')).toBe(1);
  const bobOnReplica = sessionKeyOf(bob);
  expect(await probeUntil(() => replicaClient.exists(bobOnReplica), (n) => n === 1, { timeoutMs: 3000 })).toBe(1);

  // Replica paused, resumed 150 ms later: within the bound, so the answer waits for it and the session is there.
  const carol = new Browser();
  let resumeTimer: NodeJS.Timeout | undefined;
  const resumed = await signInTimed(carol, 'alice', () => {
    replica.child.kill('SIGSTOP');
    resumeTimer = setTimeout(() => replica.child.kill('SIGCONT'), 150); // the pause under test: shorter than the bound
  });
  clearTimeout(resumeTimer);
  replica.child.kill('SIGCONT');
  const carolOnReplica = await replicaClient.exists(sessionKeyOf(carol));
  expect(resumed.status).toBe(302);
  expect(carolOnReplica).toBe(1);
  expect(resumed.callbackMs).toBeGreaterThanOrEqual(140);
  expect(await waits('replicated')).toBe(2);

  // A logout is a revocation: the session is gone from the replica too when its answer comes back.
  const aliceKey = sessionKeyOf(alice);
  const logout = await alice.fetch(`${stack.frontUrl}/_auth/logout`, { method: 'POST', headers: { origin: stack.frontUrl } });
  await logout.arrayBuffer();
  expect(logout.status).toBe(303);
  const goneFromReplica = (await replicaClient.exists(aliceKey)) === 0;
  expect(goneFromReplica).toBe(true);
  const metrics = await (await fetch(`${stack.idgateUrls[0]}/metrics`)).text();
  expect(metricValue(metrics, 'idgate_redis_replication_waits_total{write="revocation",result="replicated"}')).toBe(1);

  const maxCheck = Math.max(...checkLatencies);
  process.stdout.write(
    `FAULT redis-wait: healthy replica: login callback ${healthy.callbackMs} ms, session on the replica at the answer: ${onReplica === 1 ? 'yes' : 'NO'}; ` +
      `replica paused: login callback ${pausedLogin.callbackMs} ms (bound ${WAIT_MS} ms), counted as timeout, ${checkLatencies.length} session checks meanwhile all 200, slowest ${maxCheck} ms; ` +
      `replica paused then resumed after 150 ms: login callback ${resumed.callbackMs} ms, session on the replica at the answer: ${carolOnReplica === 1 ? 'yes' : 'NO'}; ` +
      `logout: session gone from the replica at the answer: ${goneFromReplica ? 'yes' : 'NO'}\n`,
  );
  // Every check answered 200 (above): none waited for the WAIT, which would have run into the check budget.
  expect(maxCheck).toBeLessThan(WAIT_MS);
}, 60_000);
