// idgate on a real Redis Cluster (three primaries on loopback), two replicas in-process: a session made
// through one replica works through the other, logout and `idgate sessions revoke` end it on both (the
// revocation pub/sub crosses nodes), and the pending-login bounds hold, their keys sharing one slot.
import crypto from 'node:crypto';
import { Cluster } from 'ioredis';
import request from 'supertest';
import { hashValue, savePendingLogin, takePendingLogin } from '../../service/src/sessions.js';
import { Browser, signIn } from '../support/browser.js';
import { configFrom, startInProcess } from '../support/idgate.js';
import { idgateCli, startCluster, startIdgateReplicas, type IdgateReplicas, type RedisCluster } from '../support/redis-topologies.js';

let cluster: RedisCluster;
let idgates: IdgateReplicas;
let client: Cluster;

beforeAll(async () => {
  cluster = await startCluster(3);
  idgates = await startIdgateReplicas(cluster.env, 2);
  client = new Cluster(cluster.ports.map((port) => ({ host: '127.0.0.1', port })));
}, 60_000);

afterAll(async () => {
  client?.disconnect();
  await idgates?.stop();
  await cluster?.stop();
});

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
  expect([401, 302]).toContain(await idgates.check(1, cookie));
  expect([401, 302]).toContain(await idgates.check(0, cookie));
});

test('`idgate sessions revoke` against the cluster ends every session of a user on every replica', async () => {
  const [first, second] = [await signedIn('bob'), await signedIn('bob')];
  for (const b of [first, second]) for (const i of [0, 1]) expect(await idgates.check(i, cookieOf(b))).toBe(200);
  const listed = await idgateCli(['sessions', 'list', '--user', 'bob'], cluster.env);
  expect(listed.stderr).toBe('');
  expect(listed.stdout).toMatch(/\b[2-9] session\(s\)/);
  const revoked = await idgateCli(['sessions', 'revoke', '--user', 'bob'], cluster.env);
  expect(revoked.stdout).toMatch(/revoked [2-9] session\(s\)/);
  for (const b of [first, second]) for (const i of [0, 1]) expect(await idgates.check(i, cookieOf(b))).not.toBe(200);
});

test('pending logins share one hash slot, and both bounds hold across replicas on the cluster', async () => {
  const bounded = { ...idgates.env, IDGATE_REDIS_PREFIX: 'bounds:', IDGATE_LOGIN_MAX_PENDING: '4', IDGATE_LOGIN_MAX_PENDING_PER_BROWSER: '2' };
  const replicas = [await startInProcess(configFrom(bounded)), await startInProcess(configFrom(bounded))];
  const config = replicas[0]!.config;
  const slots = await Promise.all(['{logins}:login:x', '{logins}:all', '{logins}:browser:y'].map((k) => cluster.nodeOf(`${config.redisKeyPrefix}${k}`)));
  expect(new Set(slots).size).toBe(1);
  // Per browser: its third login drops its oldest (the script deletes keys named by the index: same slot).
  const binding = crypto.randomBytes(32).toString('base64url');
  const states = ['s1', 's2', 's3'].map((s) => `${s}-${crypto.randomBytes(8).toString('hex')}`);
  for (const state of states) {
    const saved = await savePendingLogin(client, config, state, { codeVerifier: 'v', nonce: 'n', returnTo: '/', bindingHash: hashValue(binding), startedAt: Date.now() });
    expect(saved.saved).toBe(true);
  }
  expect((await takePendingLogin(client, config, states[0]!, binding)).outcome).toBe('unknown');
  expect((await takePendingLogin(client, config, states[2]!, binding)).outcome).toBe('taken');
  // Overall: 4 at most (s2 still pends), from browsers that keep no cookie, whichever replica they reach.
  const answers: number[] = [];
  for (let i = 0; i < 8; i++) answers.push((await request(replicas[i % 2]!.server).get('/_auth/login?rd=%2F').set('X-Forwarded-Host', new URL(idgates.urls[0]!).host)).status);
  expect(answers).toEqual([302, 302, 302, 503, 503, 503, 503, 503]);
  expect(await client.zcard(`${config.redisKeyPrefix}{logins}:all`)).toBe(4);
});

test('the settings refuse a key prefix with a hash tag, which would put every key in one slot', () => {
  expect(() => configFrom({ ...idgates.env, IDGATE_REDIS_PREFIX: '{idgate}:' })).toThrow(/IDGATE_REDIS_PREFIX: must not contain/);
});

test('readiness pings the cluster', async () => {
  const res = await fetch(`${idgates.urls[1]}/readyz`);
  expect(res.status).toBe(200);
});
