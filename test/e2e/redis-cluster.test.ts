// idgate on a real Redis Cluster (three primaries with a replica each, on loopback), two idgate replicas
// in-process: a session made through one works through the other, logout and `idgate sessions revoke`
// end it on both (the revocation pub/sub crosses nodes), the pending-login bounds hold, their keys sharing
// one slot, and a primary killed under load costs only its own slots a bounded time of 503, no session.
import crypto from 'node:crypto';
import signature from 'cookie-signature';
import { Cluster } from 'ioredis';
import request from 'supertest';
import { RedisSessionStore } from '../../service/src/session/redis-session-store.js';
import { redisKeys, sessionKey } from '../../service/src/session/redis-keys.js';
import { hashValue } from '../../service/src/session/pending-logins.js';
import { Browser, signIn } from '../support/browser.js';
import { configFrom, startInProcess, type InProcessIdgate } from '../support/idgate.js';
import { idgateCli, startCluster, startIdgateReplicas, type IdgateReplicas, type RedisCluster } from '../support/redis-topologies.js';
import { underFailoverLoad } from '../support/failover-load.js';

let cluster: RedisCluster;
let idgates: IdgateReplicas;
let client: Cluster;

beforeAll(async () => {
  cluster = await startCluster({ primaries: 3, replicasEach: 1 });
  idgates = await startIdgateReplicas(cluster.env, 2);
  client = new Cluster(cluster.ports.map((port) => ({ host: '127.0.0.1', port })));
}, 60_000);

afterAll(async () => {
  client?.disconnect();
  await idgates?.stop();
  await cluster?.stop();
});

const check = (idgate: InProcessIdgate, cookie: string) =>
  request(idgate.server).get('/auth').set('Cookie', cookie).set('Accept', 'application/json').set('X-Forwarded-Method', 'GET').set('X-Forwarded-Uri', '/').set('X-Forwarded-Host', new URL(idgates.urls[0]!).host).timeout(5000);

const cookieOf = (browser: Browser) => browser.cookieHeader(new URL(idgates.urls[0]!));

async function signedIn(user: string): Promise<Browser> {
  const browser = new Browser();
  await signIn(browser, `${idgates.urls[0]}/_auth/login?rd=%2F`, user);
  if (browser.cookie('127.0.0.1', '_idgate') === undefined) throw new Error(`no session for ${user}: ${JSON.stringify(browser.hops)}`);
  return browser;
}

test('the cluster spreads sessions over its primaries, and each works through the other replica', async () => {
  const browsers = await Promise.all(['alice', 'bob', 'alice', 'bob', 'alice', 'bob'].map((u) => signedIn(u)));
  const sessionsPerNode = await Promise.all(client.nodes('master').map(async (node) => (await node.keys('idgate:sess:*')).length));
  expect(sessionsPerNode.filter((n) => n > 0).length).toBeGreaterThan(1);
  for (const b of browsers) expect(await idgates.check(1, cookieOf(b))).toBe(200);
});

test('a session made through one replica is valid through the other, and logout on one is refused on both', async () => {
  const browser = await signedIn('alice');
  const cookie = cookieOf(browser);
  expect(await idgates.check(0, cookie)).toBe(200);
  expect(await idgates.check(1, cookie)).toBe(200);
  const logout = await browser.fetch(`${idgates.urls[0]}/_auth/logout`, { method: 'POST', headers: { origin: idgates.urls[0]! } });
  expect(logout.status).toBe(303);
  // Replica 2 cached the session a moment ago: the announcement on the cluster's pub/sub drops it.
  expect([401, 302]).toContain(await idgates.checkAfterRevocation(1, cookie));
  expect([401, 302]).toContain(await idgates.checkAfterRevocation(0, cookie));
});

test('`idgate sessions revoke` against the cluster ends every session of a user on every replica', async () => {
  const [first, second] = [await signedIn('bob'), await signedIn('bob')];
  for (const b of [first, second]) for (const i of [0, 1]) expect(await idgates.check(i, cookieOf(b))).toBe(200);
  const listed = await idgateCli(['sessions', 'list', '--user', 'bob'], cluster.env);
  expect(listed.stderr).toBe('');
  expect(listed.stdout).toMatch(/\b[2-9] session\(s\)/);
  const revoked = await idgateCli(['sessions', 'revoke', '--user', 'bob'], cluster.env);
  expect(revoked.stdout).toMatch(/revoked [2-9] session\(s\)/);
  expect(revoked.stderr).toBe(''); // no warning: the replicas of every primary it deleted on confirmed it
  for (const b of [first, second]) for (const i of [0, 1]) expect(await idgates.checkAfterRevocation(i, cookieOf(b))).not.toBe(200);
});

test('pending logins share one hash slot, and both bounds hold across replicas on the cluster', async () => {
  const bounded = { ...idgates.env, IDGATE_REDIS_PREFIX: 'bounds:', IDGATE_LOGIN_MAX_PENDING: '4', IDGATE_LOGIN_MAX_PENDING_PER_BROWSER: '2' };
  const replicas = [await startInProcess(configFrom(bounded)), await startInProcess(configFrom(bounded))];
  const config = replicas[0]!.config;
  // The keys as idgate builds them (redis-keys.ts owns every key name).
  const slots = await Promise.all([redisKeys.pendingLogin(config, 'x'), redisKeys.pendingLoginIndex(config), redisKeys.browserPendingLogins(config, 'y')].map((k) => cluster.nodeOf(k)));
  expect(new Set(slots).size).toBe(1);
  // Per browser: its third login drops its oldest (the script deletes keys named by the index: same slot).
  const binding = crypto.randomBytes(32).toString('base64url');
  const states = ['s1', 's2', 's3'].map((s) => `${s}-${crypto.randomBytes(8).toString('hex')}`);
  const store = new RedisSessionStore(client, config);
  for (const state of states) {
    const saved = await store.savePendingLogin(state, { codeVerifier: 'v', nonce: 'n', returnTo: '/', bindingHash: hashValue(binding), startedAt: Date.now() });
    expect(saved.saved).toBe(true);
  }
  expect((await store.takePendingLogin(states[0]!, binding)).outcome).toBe('unknown');
  expect((await store.takePendingLogin(states[2]!, binding)).outcome).toBe('taken');
  // Overall: 4 at most (s2 still pends), from browsers that keep no cookie, whichever replica they reach.
  const answers: number[] = [];
  for (let i = 0; i < 8; i++) answers.push((await request(replicas[i % 2]!.server).get('/_auth/login?rd=%2F').set('X-Forwarded-Host', new URL(idgates.urls[0]!).host)).status);
  expect(answers).toEqual([302, 302, 302, 503, 503, 503, 503, 503]);
  expect(await client.zcard(redisKeys.pendingLoginIndex(config))).toBe(4);
});

test('the settings refuse a key prefix with a hash tag, which would put every key in one slot', () => {
  expect(() => configFrom({ ...idgates.env, IDGATE_REDIS_PREFIX: '{idgate}:' })).toThrow(/IDGATE_REDIS_PREFIX: must not contain/);
});

test('readiness pings the cluster', async () => {
  const res = await fetch(`${idgates.urls[1]}/readyz`);
  expect(res.status).toBe(200);
});

test('a primary killed under load: its sessions answer 503 for a bounded time, the others never notice, none is lost', async () => {
  const config = idgates.replicas[0]!.config;
  const browsers = await Promise.all(['alice', 'bob', 'alice', 'bob', 'alice', 'bob', 'alice', 'bob'].map((u) => signedIn(u)));
  const cookies = browsers.map((b) => cookieOf(b)!);
  const keyOf = (browser: Browser) => {
    const sid = signature.unsign(decodeURIComponent(browser.cookie('127.0.0.1', '_idgate')!).slice(2), idgates.env.IDGATE_COOKIE_SECRETS!);
    return sessionKey(config, sid as string);
  };
  const keys = browsers.map(keyOf);
  const homes = await Promise.all(keys.map((k) => cluster.nodeOf(k)));
  const victim = homes[0]!;
  const hit = homes.map((h) => h === victim);
  expect(hit.some((h) => !h)).toBe(true); // some sessions live elsewhere (8 sessions on 3 primaries)

  // The load goes through replicas without the session cache, so that every check reads Redis: with it
  // (the default), a session read in the last 5 s answers from memory and the outage hides behind it.
  const uncached = [await startInProcess(configFrom({ ...idgates.env, IDGATE_SESSION_CACHE_MS: '0' })), await startInProcess(configFrom({ ...idgates.env, IDGATE_SESSION_CACHE_MS: '0' }))];
  const checkUncached = async (replica: number, cookie: string) => (await check(uncached[replica]!, cookie)).status;
  const run = await underFailoverLoad({
    kinds: ['hit', 'spared'] as const,
    replicas: 2,
    sessions: cookies.length,
    pacingMs: 5,
    rounds: 80,
    round: async (replica, i, count) => {
      const n = i % cookies.length;
      count(hit[n] ? 'hit' : 'spared', await checkUncached(replica, cookies[n]!).catch(() => -1), hit[n]);
    },
    fault: async () => {
      await cluster.kill(victim);
      return cluster.waitForFailover(keys[0]!, victim, 20_000);
    },
    answers: () => Promise.all(cookies.flatMap((c) => [checkUncached(0, c), checkUncached(1, c)])),
    // The replicas with the cache (the default) answer for every session too.
    afterRecovery: async () => {
      for (const c of cookies) for (const i of [0, 1]) expect(await idgates.check(i, c)).toBe(200);
    },
  });
  const { counts, lost, seconds503, table, fault: promoted } = run;
  process.stdout.write(
    `[cluster failover, session cache off] primary ${victim} killed (${hit.filter(Boolean).length} of ${cookies.length} sessions in its slots), replica ${promoted} promoted after ` +
      `${((run.failedOverAt - run.killedAt) / 1000).toFixed(1)} s; checks answering again ${((run.recoveredAt - run.killedAt) / 1000).toFixed(1)} s after the kill; ` +
      `seconds of 503 for its sessions: ${seconds503.toFixed(1)}; sessions lost: ${lost} of ${cookies.length}\n` +
      `  sessions in its slots: ${table('hit')}\n  sessions elsewhere: ${table('spared')}\n`,
  );
  expect(lost).toBe(0);
  expect(seconds503).toBeLessThan(15);
  expect([...counts.hit.keys()].every((s) => s === 200 || s === 503)).toBe(true);
  expect(counts.spared.get(200)).toBeGreaterThan(0);
  expect([...counts.spared.keys()]).toEqual([200]); // sessions on the other primaries never noticed
  expect(counts.hit.get(503) ?? 0).toBeGreaterThan(0); // the outage was seen, not hidden by a cache
}, 60_000);
