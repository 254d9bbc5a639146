// Writes that must not be lost wait for Redis replicas on a Cluster too (IDGATE_REDIS_WAIT_REPLICAS=auto),
// on a real cluster of three primaries with a replica each, one idgate in-process:
//   - a login, a renewal and a logout are on the replicas of the primaries they wrote to when their
//     answers come back, counted as replicated;
//   - with the replica of one primary paused (SIGSTOP), a login that writes there and a logout of a session
//     there still complete, after about the bound, counted as timeouts, while checks of a session on that
//     same primary (through the shared client, the session cache off) do not wait;
//   - a logout of a session on another primary does not wait for the paused replica.
import { Redis } from 'ioredis';
import { redisCli } from '../../stack/redis.js';
import { redisKeys, sessionKey } from '../../service/src/session/redis-keys.js';
import { unsignSessionId } from '../../service/src/session/cookies.js';
import { Browser, signIn } from '../support/browser.js';
import { metricValue, movableClock } from '../support/idgate.js';
import { startCluster, startIdgateReplicas, type IdgateReplicas, type RedisCluster } from '../support/redis-topologies.js';
import { pause, probeUntil } from '../../stack/wait.js';

// Far above what a check takes on a loaded machine, so that "checks do not wait" can be told from a check
// that waited for the WAIT.
const WAIT_MS = 1000;
/**
 * The IdP's access tokens: a renewal is due half-way (8 s), past every step of the paused-replica test
 * even on a loaded machine (a check renewing a session there would itself wait for the paused replica).
 */
const TOKEN_TTL_S = 16;
/** be_idgate's server timeout for browser traffic in HAProxy: a sign-in or logout that hung would meet it. */
const HANG_MS = 10_000;
/** idgate's clock: moved to the renewal instead of waiting for it (the IdP keeps the machine's). */
const clock = movableClock();
let cluster: RedisCluster;
let idgates: IdgateReplicas;
const paused = new Set<number>();

beforeAll(async () => {
  cluster = await startCluster({ primaries: 3, replicasEach: 1 });
  // The IdP startIdgateReplicas starts inherits this process's environment.
  process.env.IDP_ACCESS_TOKEN_TTL = String(TOKEN_TTL_S);
  try {
    // Without the session cache every check reads Redis, on the shared client; offline_access: a refresh
    // token, so that sessions renew.
    idgates = await startIdgateReplicas(cluster.env, 1, { IDGATE_REDIS_WAIT_MS: String(WAIT_MS), IDGATE_SESSION_CACHE_MS: '0', IDGATE_SCOPES: 'openid profile email offline_access' }, { clock: clock.now });
  } finally {
    delete process.env.IDP_ACCESS_TOKEN_TTL;
  }
}, 60_000);

afterAll(async () => {
  for (const pid of paused) process.kill(pid, 'SIGCONT');
  await idgates?.stop();
  await cluster?.stop();
});

const config = () => idgates.replicas[0]!.config;
const cookieOf = (browser: Browser) => browser.cookieHeader(new URL(idgates.urls[0]!))!;

function sessionKeyOf(browser: Browser): string {
  const sid = unsignSessionId(decodeURIComponent(browser.cookie('127.0.0.1', config().cookieName)!), config().cookieSecrets)!;
  return sessionKey(config(), sid);
}

async function signedIn(user: string): Promise<Browser> {
  const browser = new Browser();
  await signIn(browser, `${idgates.urls[0]}/_auth/login?rd=%2F`, user);
  if (browser.cookie('127.0.0.1', config().cookieName) === undefined) throw new Error(`no session for ${user}: ${JSON.stringify(browser.hops)}`);
  return browser;
}

async function logout(browser: Browser): Promise<number> {
  const res = await browser.fetch(`${idgates.urls[0]}/_auth/logout`, { method: 'POST', headers: { origin: idgates.urls[0]! } });
  await res.arrayBuffer();
  return res.status;
}

async function waits(write: string, result: string): Promise<number> {
  return metricValue(await idgates.replicas[0]!.metrics.render(), `idgate_redis_replication_waits_total{write="${write}",result="${result}"}`);
}

/** The port of the replica of the primary on `port` (one each here). */
async function replicaOf(port: number): Promise<number> {
  const match = /^slave0:.*\bport=(\d+)/m.exec(await redisCli(port, ['info', 'replication']));
  if (!match) throw new Error(`primary ${port} has no replica`);
  return Number(match[1]);
}

/** Whether the replica on `port` holds `key` (READONLY: a replica answers for its primary's slots). */
async function onReplica(port: number, key: string): Promise<boolean> {
  const replica = new Redis(port);
  try {
    await replica.readonly();
    return (await replica.exists(key)) === 1;
  } finally {
    replica.disconnect();
  }
}

async function stopReplica(port: number): Promise<number> {
  const pid = Number(/^process_id:(\d+)/m.exec(await redisCli(port, ['info', 'server']))![1]);
  process.kill(pid, 'SIGSTOP');
  paused.add(pid);
  return pid;
}

function resume(pid: number): void {
  process.kill(pid, 'SIGCONT');
  paused.delete(pid);
}

async function timed<T>(action: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = Date.now();
  const value = await action();
  return { value, ms: Date.now() - started };
}

test('with the replicas in sync, a login, a renewal and a logout are on the replicas when they answer, counted as replicated', async () => {
  const alice = await signedIn('alice');
  const key = sessionKeyOf(alice);
  const replica = await replicaOf(await cluster.nodeOf(key));
  expect(await onReplica(replica, key)).toBe(true);
  expect(await waits('session', 'replicated')).toBe(1);

  // The behaviour under test: half the tokens' lifetime must pass, on idgate's clock, before a check renews them.
  clock.advance((TOKEN_TTL_S / 2) * 1000 + 300); // the tokens are due
  expect(await idgates.check(0, cookieOf(alice))).toBe(200);
  expect(await waits('renewal', 'replicated')).toBe(1);

  expect(await logout(alice)).toBe(303);
  expect(await onReplica(replica, key)).toBe(false);
  expect(await waits('revocation', 'replicated')).toBe(1);
  expect(await waits('session', 'timeout') + (await waits('revocation', 'timeout')) + (await waits('renewal', 'timeout'))).toBe(0);
}, 30_000);

test('with the replica of one primary paused, writes there answer after about the bound, counted as timeouts, and checks of sessions there do not wait', async () => {
  // Every login of bob writes his user-name index: its primary is the one whose replica is paused.
  const victim = await cluster.nodeOf(redisKeys.index(config(), 'user', 'bob'));
  const victimReplica = await replicaOf(victim);
  // A session on that primary, and one elsewhere (sessions land by their random id).
  let there: Browser | undefined;
  let elsewhere: Browser | undefined;
  for (let i = 0; i < 40 && (there === undefined || elsewhere === undefined); i++) {
    const browser = await signedIn('alice');
    if ((await cluster.nodeOf(sessionKeyOf(browser))) === victim) there ??= browser;
    else elsewhere ??= browser;
  }
  if (there === undefined || elsewhere === undefined) throw new Error('40 sessions, none on one side');
  // Counted from here: on a loaded machine a login of the loop above may itself have passed the bound.
  const replicatedBefore = await waits('session', 'replicated');
  const sessionTimeoutsBefore = await waits('session', 'timeout');
  const revocationsReplicatedBefore = await waits('revocation', 'replicated');
  const revocationTimeoutsBefore = await waits('revocation', 'timeout');

  // A login while the replica is paused, checks of the session on its primary meanwhile.
  const pid = await stopReplica(victimReplica);
  const checkLatencies: number[] = [];
  const checkStatuses = new Set<number>();
  let login: { value: Browser; ms: number } | undefined;
  const loggingIn = timed(() => signedIn('bob')).then((r) => (login = r));
  while (login === undefined) {
    const check = await timed(() => idgates.check(0, cookieOf(there!)));
    checkStatuses.add(check.value);
    checkLatencies.push(check.ms);
    await pause(20); // pacing: checks at a steady rate while the login waits (the behaviour measured)
  }
  await loggingIn;
  expect((await waits('session', 'timeout')) - sessionTimeoutsBefore).toBe(1);

  // A logout of a session on another primary: nothing to wait for there.
  const otherLogout = await timed(() => logout(elsewhere!));
  expect(otherLogout.value).toBe(303);
  expect((await waits('revocation', 'replicated')) - revocationsReplicatedBefore).toBe(1);
  // It did not wait for the paused replica: that WAIT would have ended at the bound, counted as a timeout.
  expect((await waits('revocation', 'timeout')) - revocationTimeoutsBefore).toBe(0);

  // A logout of the session on the paused replica's primary: after the bound.
  const thereKey = sessionKeyOf(there);
  const thereLogout = await timed(() => logout(there!));
  resume(pid);
  expect(thereLogout.value).toBe(303);
  expect((await waits('revocation', 'timeout')) - revocationTimeoutsBefore).toBe(1);
  // Resumed, the replica catches up.
  const caughtUp = !(await probeUntil(() => onReplica(victimReplica, thereKey), (present) => !present, { timeoutMs: 3000 }));

  const maxCheck = Math.max(...checkLatencies);
  process.stdout.write(
    `FAULT redis-cluster-wait: replica of primary ${victim} paused: login ${login!.ms} ms (bound ${WAIT_MS} ms), counted as timeout, ` +
      `${checkLatencies.length} checks of a session on that primary meanwhile (${[...checkStatuses].join(',')}), slowest ${maxCheck} ms; ` +
      `logout of a session there ${thereLogout.ms} ms, counted as timeout; logout of a session on another primary ${otherLogout.ms} ms, counted as replicated; ` +
      `replica caught up after resuming: ${caughtUp ? 'yes' : 'NO'}\n`,
  );
  expect(login!.ms).toBeGreaterThanOrEqual(WAIT_MS);
  expect(login!.ms).toBeLessThan(HANG_MS);
  expect(thereLogout.ms).toBeGreaterThanOrEqual(WAIT_MS);
  expect(thereLogout.ms).toBeLessThan(HANG_MS);
  expect([...checkStatuses]).toEqual([200]);
  expect(checkLatencies.length).toBeGreaterThan(3);
  expect(maxCheck).toBeLessThan(WAIT_MS);
  expect(caughtUp).toBe(true);
  expect(await waits('session', 'replicated')).toBe(replicatedBefore);
}, 60_000);
