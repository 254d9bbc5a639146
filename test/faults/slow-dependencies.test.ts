// Slow Redis and slow IdP: a delaying TCP proxy (test/support/delay-proxy.ts) sits in front of each.
// Checks that need the slow dependency end at their bound with 503 (Redis: IDGATE_REDIS_TIMEOUT_MS;
// the IdP's keys: HAProxy's 800 ms answer budget), never hang; checks that don't need it stay fast.
// Everything recovers once the delay is gone. The counts are printed. Slow Redis runs on a Redis Cluster
// too: every node announces its proxy as its address, so that idgate reaches each only through it.
import { startStack, type Stack } from '../../stack/stack.js';
import { Browser, signIn } from '../support/browser.js';
import { startDelayProxy, type DelayProxy } from '../support/delay-proxy.js';
import { describeCounts, startLoad, type LoadCounts } from '../support/load.js';
import { REDIS_TOPOLOGIES, startStackOnRedis, type StackOnRedis } from '../support/stack-on-redis.js';
import { probeUntil, waitAtMost } from '../../stack/wait.js';
import { clientCredentialsToken } from '../support/tokens.js';

const REDIS_TIMEOUT_MS = 500;
/** How long the delay proxies hold every chunk while a dependency is slow. */
const DELAY_MS = 3000;
/**
 * "Never hangs": a check that needs the slow dependency ends at idgate's bound or HAProxy's 800 ms answer
 * budget; one that waited for the dependency would take the whole delay at least. The bound is that
 * delay, which a loaded machine's scheduling does not reach; the slowest figure is printed.
 */
const CHECK_BOUND_MS = DELAY_MS;

async function load(url: string, headers: Record<string, string>, enough = 40): Promise<LoadCounts> {
  const running = startLoad({ url, headers: { accept: 'application/json', ...headers }, concurrency: 4, maxMs: 10_000 });
  await waitAtMost(() => running.counts.total >= enough, 8000);
  return running.stop();
}

describe.each(REDIS_TOPOLOGIES)('on %s', (topology) => {
  let onRedis: StackOnRedis;

  beforeAll(async () => {
    // No session cache: every session check reads Redis, so its slowness shows at once.
    onRedis = await startStackOnRedis(topology, { idgateEnv: { IDGATE_SESSION_CACHE_MS: '0', IDGATE_REDIS_TIMEOUT_MS: String(REDIS_TIMEOUT_MS) } }, { delayProxies: true });
  }, 60_000);

  afterAll(async () => {
    await onRedis?.stop();
  });

  test('slow Redis: session checks answer 503 at the Redis bound, never hang, and recover', async () => {
    const { stack } = onRedis;
    const alice = new Browser();
    await signIn(alice, `${stack.frontUrl}/`, 'alice');
    const cookie = alice.cookieHeader(new URL(stack.frontUrl))!;
    onRedis.setDelay(DELAY_MS);
    const slow = await load(`${stack.frontUrl}/slow/redis`, { cookie });
    onRedis.setDelay(0);
    console.log(describeCounts(`${topology}: Redis delayed ${DELAY_MS} ms (IDGATE_REDIS_TIMEOUT_MS ${REDIS_TIMEOUT_MS})`, slow));
    expect(slow.byStatus).toEqual({ '503': slow.total });
    expect(slow.slowestMs).toBeLessThan(CHECK_BOUND_MS);
    // Back: the same session works again, without restarting anything (chunks already held still take the
    // delay, so the liveness limit is generous).
    const status = await probeUntil(async () => (await fetch(`${stack.frontUrl}/slow/redis`, { headers: { accept: 'application/json', cookie } })).status, (s) => s === 200, { timeoutMs: 15_000 });
    expect(status).toBe(200);
  }, 60_000);
});

describe('the IdP behind a delay proxy', () => {
  let stack: Stack;
  let slowIdp: DelayProxy;

  beforeAll(async () => {
    // The IdP binds port 0 behind the proxy, which learns that port before any idgate starts; its issuer
    // (and every URL in its metadata) is the proxy's.
    let idpPort = 0;
    slowIdp = await startDelayProxy(() => idpPort);
    stack = await startStack({
      onIdpPort: (port) => {
        idpPort = port;
      },
      idpEnv: { IDP_ISSUER: `http://127.0.0.1:${slowIdp.port}` },
    });
  }, 60_000);

  afterAll(async () => {
    await stack?.stop();
    await slowIdp?.close();
  });

  test('slow IdP: sessions and cached-key tokens stay fast; a token with an unknown key answers 503 at the bound', async () => {
    const alice = new Browser();
    await signIn(alice, `${stack.frontUrl}/`, 'alice');
    const cookie = alice.cookieHeader(new URL(stack.frontUrl))!;
    const token = await clientCredentialsToken(stack.issuer);
    slowIdp.delayMs = DELAY_MS;
    const [sessions, tokens] = await Promise.all([load(`${stack.frontUrl}/slow/idp`, { cookie }, 200), load(`${stack.frontUrl}/api/hello`, { authorization: `Bearer ${token}` }, 200)]);
    // A kid idgate has never seen makes it fetch the IdP's keys again (once per cool-down): slow now.
    const [, payload] = token.split('.');
    const header = Buffer.from(JSON.stringify({ alg: 'RS256', kid: 'rotated-key-idgate-has-not-seen', typ: 'JWT' })).toString('base64url');
    const unknownKey = await load(`${stack.frontUrl}/api/hello`, { authorization: `Bearer ${header}.${payload}.AAAA` }, 8);
    slowIdp.delayMs = 0;
    console.log(describeCounts(`IdP delayed ${DELAY_MS} ms: session checks`, sessions));
    console.log(describeCounts(`IdP delayed ${DELAY_MS} ms: bearer checks, cached key`, tokens));
    console.log(describeCounts(`IdP delayed ${DELAY_MS} ms: bearer checks, unknown key id`, unknownKey));
    expect(sessions.failures).toEqual([]);
    expect(tokens.failures).toEqual([]);
    // Refused or unavailable, never allowed, never hanging: 503 while the fetch is under way, 401 after.
    for (const status of Object.keys(unknownKey.byStatus)) expect(['401', '503']).toContain(status);
    expect(unknownKey.slowestMs).toBeLessThan(CHECK_BOUND_MS);
  }, 60_000);
});
