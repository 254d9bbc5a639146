// Fault: Redis stopped. While it is away, session checks answer 503 (never 200: idgate cannot verify a
// session it cannot read), bearer-token checks go on (200: they need no Redis), /readyz says 503 so that
// load balancers and operators see it, and signing in gets idgate's "temporarily unavailable" page. When
// Redis is back (same port and data dir), the same sessions work again without restarting idgate. A
// bounded request loop counts the answers and prints the window of 503s. On a Redis Cluster, every node
// is stopped, then started again (each with its AOF and nodes.conf).
import { Browser, signIn } from '../support/browser.js';
import { REDIS_TOPOLOGIES, startStackOnRedis, type StackOnRedis } from '../support/stack-on-redis.js';
import { clientCredentialsToken } from '../support/tokens.js';
import { pause, waitUntil } from '../../stack/wait.js';

interface Round {
  readonly session: number;
  readonly bearer: number;
  readonly ready: number;
}

/** What idgate logs when its revocation subscription drops (session-cache.ts): from then on, no cached answers. */
const CACHE_OFF = 'session cache off until the revocation subscription is back';

describe.each(REDIS_TOPOLOGIES)('on %s', (topology) => {
  let onRedis: StackOnRedis;

  beforeAll(async () => {
    onRedis = await startStackOnRedis(topology);
  }, 60_000);

  afterAll(async () => {
    await onRedis?.stop();
  });

  test('with Redis stopped session checks answer 503 and never 200, bearer checks 200, /readyz 503; sessions work again when Redis is back, idgate not restarted', async () => {
    const { stack } = onRedis;
    const alice = new Browser();
    await signIn(alice, `${stack.frontUrl}/`, 'alice');
    const cookie = alice.cookieHeader(new URL(stack.frontUrl))!;
    const token = await clientCredentialsToken(stack.issuer);
    const round = async (): Promise<Round> => {
      const [session, bearer, ready] = await Promise.all([
        fetch(`${stack.frontUrl}/whoami`, { headers: { cookie, accept: 'application/json' }, redirect: 'manual' }),
        fetch(`${stack.frontUrl}/api/hello`, { headers: { authorization: `Bearer ${token}`, accept: 'application/json' }, redirect: 'manual' }),
        fetch(`${stack.idgateUrls[0]}/readyz`),
      ]);
      await Promise.all([session.arrayBuffer(), bearer.arrayBuffer(), ready.arrayBuffer()]);
      return { session: session.status, bearer: bearer.status, ready: ready.status };
    };
    expect(await round()).toEqual({ session: 200, bearer: 200, ready: 200 });
    const idgatePid = stack.processes.idgate!.child.pid;

    // Down: 40 rounds, 50 ms apart, from the moment idgate has seen Redis go. Until then (a few ms after
    // redis-server exits, more on a loaded machine: ioredis reports a Cluster closed once every node's
    // connection is) the session read a moment ago may still answer from the session cache, as the contract
    // allows ("no cached decision"): no revocation can be announced meanwhile, Redis being down. The warning
    // is the event: the cache is off from then on.
    const cacheOffWarnings = () => stack.processes.idgate!.output().split(CACHE_OFF).length - 1;
    const warningsBefore = cacheOffWarnings();
    await onRedis.stopRedis();
    const stoppedAt = Date.now();
    await waitUntil('the session cache turned off', () => cacheOffWarnings() > warningsBefore, { timeoutMs: 10_000 });
    expect(cacheOffWarnings()).toBe(warningsBefore + 1);
    const down: Round[] = [];
    for (let i = 0; i < 40; i++) {
      down.push(await round());
      await pause(50); // the cadence of the rounds that measure the outage: the behaviour sampled, not a wait for an event
    }
    const count = (rounds: Round[], key: keyof Round, status: number) => rounds.filter((r) => r[key] === status).length;
    // Signing in meanwhile gets idgate's own page (HAProxy's backup lines), not a bare 503.
    const login = await fetch(`${stack.frontUrl}/_auth/login`, { redirect: 'manual' });
    expect(login.status).toBe(503);
    expect(await login.text()).toContain('Temporarily unavailable');

    // Back: rounds every 50 ms until the session passes again (at most 15 s).
    const restartedAt = Date.now();
    await onRedis.startRedis();
    // When Redis itself serves every key again (a Cluster: once its nodes agree), to tell its part from idgate's.
    let servingMs: number | undefined;
    const serving = onRedis.serving().then(() => {
      servingMs = Date.now() - restartedAt;
    });
    const back: Round[] = [];
    let recoveredMs: number | undefined;
    for (let i = 0; i < 300 && recoveredMs === undefined; i++) {
      const r = await round();
      back.push(r);
      if (r.session === 200) recoveredMs = Date.now() - restartedAt;
      else await pause(50); // the same cadence: how soon it recovers is what is measured
    }
    await serving;
    const sessionAnswers = [...down, ...back].map((r) => r.session);
    process.stdout.write(
      `FAULT redis-stopped (${topology}): Redis down ${restartedAt - stoppedAt} ms, ${down.length} rounds: session ${count(down, 'session', 503)}x503 ${count(down, 'session', 200)}x200, bearer ${count(down, 'bearer', 200)}x200, readyz ${count(down, 'ready', 503)}x503; ` +
        `after redis-server started again: ${back.length - 1} more session 503s, Redis serving every key ${servingMs} ms later, sessions answered 200 again ${recoveredMs} ms later; session 503 window ${restartedAt - stoppedAt + (recoveredMs ?? NaN)} ms; idgate not restarted\n`,
    );
    // Each answer, so that a failure shows which round and what it was.
    expect(down.map((r) => r.session)).toEqual(down.map(() => 503));
    expect(count(down, 'bearer', 200)).toBe(down.length);
    expect(count(down, 'ready', 503)).toBe(down.length);
    expect(sessionAnswers.every((s) => s === 503 || s === 200)).toBe(true);
    expect(sessionAnswers.slice(0, -1).every((s) => s === 503)).toBe(true); // no 200 before Redis was back
    // Sessions answer again by themselves once Redis serves (how soon is printed above, and is idgate's
    // reconnect backoff, at most 2 s, plus one check: a figure for docs/operations.md, not a test bound).
    expect(recoveredMs).toBeDefined();
    expect(await round()).toEqual({ session: 200, bearer: 200, ready: 200 });
    expect(stack.processes.idgate!.child.pid).toBe(idgatePid);
  }, 60_000);
});
