// idgate on Redis Sentinel and on Redis Cluster, each reachable over TLS only (every node and sentinel
// with `tls-port` and `port 0`, replication, monitoring and the cluster bus over TLS too, certificates from
// a CA made for the run) and only by ACL users (the default user off on the data nodes and the sentinels).
// For each: a session made through one idgate works through another, `idgate sessions revoke` reaches both
// by pub/sub, /readyz is ready; a wrong password or a CA that did not sign the servers leaves a running,
// unready idgate that names the cause and no secret. Sentinel also fails over (SENTINEL FAILOVER) under TLS
// and the session survives it.
import path from 'node:path';
import { startSentinelSet, type SentinelSet } from '../../stack/redis-sentinel.js';
import { loggedPort, REPO_ROOT, startProcess, waitForReport, type ManagedProcess } from '../../stack/processes.js';
import { pause, waitUntil } from '../../stack/wait.js';
import type { RedisAcl } from '../../stack/redis.js';
import request from 'supertest';
import { Browser, signIn } from '../support/browser.js';
import { configFrom, startInProcess } from '../support/idgate.js';
import { idgateCli, makeTestCa, startCluster, startIdgateReplicas, type IdgateReplicas, type RedisCluster, type TestCa } from '../support/redis-topologies.js';

const ACL: RedisAcl = {
  admin: { user: 'admin', password: 'admin-password-of-the-tls-topology-tests' },
  idgate: { user: 'idgate-app', password: 'idgate-password-of-the-tls-topology-tests' },
};
const SENTINEL_USER = 'sentinel-user';
const SENTINEL_PASSWORD = 'sentinel-password-of-the-tls-topology-tests';
const WRONG_PASSWORD = 'not-the-password-of-the-tls-topology-tests';
/** No output of idgate or of its CLI may hold any of these. */
const SECRETS = [ACL.admin.password, ACL.idgate.password, SENTINEL_PASSWORD, WRONG_PASSWORD];

let ca: TestCa;

beforeAll(async () => {
  ca = await makeTestCa();
}, 30_000);

afterAll(() => ca?.remove());

type Topology = { kind: 'sentinel'; redis: SentinelSet } | { kind: 'cluster'; redis: RedisCluster };

/** Settings that must each keep idgate from Redis, with what its log and the CLI must say about it. */
const WRONG_SETTINGS: [string, Topology['kind'][], () => Record<string, string>, RegExp][] = [
  ['a wrong data password', ['sentinel', 'cluster'], () => ({ IDGATE_REDIS_PASSWORD: WRONG_PASSWORD }), /WRONGPASS/],
  ['a CA that did not sign the servers', ['sentinel', 'cluster'], () => ({ IDGATE_REDIS_CA_FILE: ca.otherCaFile }), /certificate/],
  ['a wrong sentinel password', ['sentinel'], () => ({ IDGATE_REDIS_SENTINEL_PASSWORD: WRONG_PASSWORD }), /WRONGPASS/],
];

describe.each([
  ['Sentinel', 'sentinel', async (): Promise<Topology> => ({ kind: 'sentinel', redis: await startSentinelSet({ tls: ca, acl: ACL, sentinelUser: SENTINEL_USER, sentinelPassword: SENTINEL_PASSWORD }) })],
  ['Cluster', 'cluster', async (): Promise<Topology> => ({ kind: 'cluster', redis: await startCluster({ primaries: 3, replicasEach: 1, tls: ca, acl: ACL }) })],
] as const)('%s over TLS with ACL users', (_name, kind, start) => {
  let topology: Topology;
  let idgates: IdgateReplicas;
  const spawned: ManagedProcess[] = [];

  beforeAll(async () => {
    topology = await start();
    idgates = await startIdgateReplicas(topology.redis.env, 2);
  }, 90_000);

  afterAll(async () => {
    await Promise.all(spawned.map((p) => p.stop()));
    await idgates?.stop();
    await topology?.redis.stop();
  });

  async function signedIn(user: string): Promise<string> {
    const browser = new Browser();
    await signIn(browser, `${idgates.urls[0]}/_auth/login?rd=%2F`, user);
    if (browser.cookie('127.0.0.1', '_idgate') === undefined) throw new Error(`no session for ${user}: ${JSON.stringify(browser.hops)}`);
    return browser.cookieHeader(new URL(idgates.urls[0]!))!;
  }

  test('a session made through one idgate is valid through another; `idgate sessions revoke` ends it on both', async () => {
    const cookie = await signedIn('alice');
    expect(await idgates.check(0, cookie)).toBe(200);
    expect(await idgates.check(1, cookie)).toBe(200);
    const revoked = await idgateCli(['sessions', 'revoke', '--user', 'alice'], topology.redis.env);
    expect(revoked.stderr).toBe('');
    expect(revoked.stdout).toMatch(/revoked 1 session\(s\)/);
    // Replica 1 cached the session a moment ago: only the announcement over pub/sub (TLS too) drops it.
    expect(await idgates.checkAfterRevocation(1, cookie)).not.toBe(200);
    expect(await idgates.checkAfterRevocation(0, cookie)).not.toBe(200);
  });

  test('/readyz is ready', async () => {
    const res = await fetch(`${idgates.urls[1]}/readyz`);
    expect(await res.text()).toMatch(/redis=ok/);
    expect(res.status).toBe(200);
  });

  describe.each(WRONG_SETTINGS.filter(([, kinds]) => kinds.includes(kind)))('with %s', (_what, _kinds, change, cause) => {
    test('idgate keeps running, unready, logs the cause and no secret; the CLI fails with the cause', async () => {
      const env = { PATH: process.env.PATH!, ...idgates.env, IDGATE_LISTEN: '127.0.0.1:0', IDGATE_SHUTDOWN_DRAIN_MS: '0', ...change() };
      const idgate = startProcess('idgate-unready', process.execPath, [path.join(REPO_ROOT, 'dist/service/src/cli.js'), 'serve'], { env });
      spawned.push(idgate);
      const httpPort = await waitForReport(idgate, loggedPort('idgate listening on '));
      const readyz = async () => {
        const res = await fetch(`http://127.0.0.1:${httpPort}/readyz`).catch((err: Error) => {
          throw new Error(`${err.message} (exit code ${idgate.child.exitCode})\n${idgate.output()}`);
        });
        return { status: res.status, text: await res.text() };
      };
      await waitUntil('redis unavailable logged', async () => idgate.output().includes('redis unavailable'), { timeoutMs: 10_000, everyMs: 100 }).catch(() => undefined);
      expect(await readyz()).toEqual({ status: 503, text: expect.stringMatching(/redis=down/) });
      // Still serving a while later: reconnecting in the background, not crashed.
      await pause(2000);
      expect(idgate.child.exitCode).toBeNull();
      expect((await readyz()).status).toBe(503);
      const logged = idgate.output();
      expect(logged.split('\n').find((l) => l.includes('redis unavailable'))).toMatch(cause);
      for (const secret of SECRETS) expect(logged).not.toContain(secret);

      const cli = await idgateCli(['sessions', 'list', '--user', 'alice'], { ...topology.redis.env, ...change() });
      expect(cli.code).toBe(1);
      expect(cli.stderr).toMatch(/cannot reach Redis/);
      expect(cli.stderr).toMatch(cause);
      for (const secret of SECRETS) expect(cli.stdout + cli.stderr).not.toContain(secret);
    }, 30_000);
  });

  if (kind === 'sentinel') test('SENTINEL FAILOVER over TLS: the session stays valid through both idgates, and logins and revocation work after', async () => {
    if (topology.kind !== 'sentinel') throw new Error('not a Sentinel set');
    const sentinel = topology.redis;
    const cookie = await signedIn('bob');
    for (const i of [0, 1]) expect(await idgates.check(i, cookie)).toBe(200);
    // An idgate without the session cache reads Redis at every check: it shows what the new primary holds.
    const uncached = await startInProcess(configFrom({ ...idgates.env, IDGATE_SESSION_CACHE_MS: '0' }));
    const checkUncached = async (c: string) => (await request(uncached.server).get('/auth').set('Cookie', c).set('Accept', 'application/json')
      .set('X-Forwarded-Method', 'GET').set('X-Forwarded-Uri', '/').set('X-Forwarded-Host', new URL(idgates.urls[0]!).host).timeout(5000)).status;
    expect(await checkUncached(cookie)).toBe(200);
    await sentinel.waitForReplica();
    const before = await sentinel.primaryPort();
    const startedAt = Date.now();
    const after = await sentinel.failover(20_000);
    const promotedAt = Date.now();
    expect(after).not.toBe(before);
    // The old primary is still up and still a primary until the sentinels demote it, seconds later, and
    // loses every write made there meanwhile: idgate must have left it at the switch. A login now (503
    // while the idgates reconnect) must outlive the demotion.
    let fresh = '';
    // Bounded generously: under a loaded machine each attempt takes seconds (measured: 2-15 s in all).
    await waitUntil('logins through the new primary', async () => Boolean((fresh = await signedIn('bob'))), { timeoutMs: 30_000, everyMs: 100 });
    const loginsAt = Date.now();
    await sentinel.waitForReplica();
    const demotedAt = Date.now();
    expect(await checkUncached(cookie)).toBe(200);
    for (const i of [0, 1]) expect(await idgates.check(i, cookie)).toBe(200);
    // The login right after the switch outlives the demotion: idgate took the newest primary that any
    // sentinel named, not the old one that a sentinel yet to hear of the failover still named.
    expect(await checkUncached(fresh)).toBe(200);
    for (const i of [0, 1]) expect(await idgates.check(i, fresh)).toBe(200);
    const seconds = (t: number) => ((t - startedAt) / 1000).toFixed(1);
    process.stdout.write(`[sentinel failover over TLS] SENTINEL FAILOVER: ${after} promoted after ${seconds(promotedAt)} s, logins working after ${seconds(loginsAt)} s, ${before} demoted after ${seconds(demotedAt)} s; the login right after the switch survived the demotion\n`);
    const revoked = await idgateCli(['sessions', 'revoke', '--user', 'bob'], sentinel.env);
    expect(revoked.stdout).toMatch(/revoked 2 session\(s\)/);
    for (const c of [cookie, fresh]) {
      expect(await checkUncached(c)).not.toBe(200);
      for (const i of [0, 1]) expect(await idgates.checkAfterRevocation(i, c)).not.toBe(200);
    }
  }, 100_000);
});
