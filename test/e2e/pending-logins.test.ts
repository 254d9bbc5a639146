// Abuse of the login endpoint against a real Redis (started with the shipped redis/redis.conf) and the
// real local IdP, idgate in-process: anonymous logins cannot fill Redis (a bound per browser and one
// overall, held across two replicas at once), and sessions are never what gives way, neither to pending
// logins nor to a Redis that is out of memory.
import crypto from 'node:crypto';
import signature from 'cookie-signature';
import { Redis } from 'ioredis';
import request from 'supertest';
import type { Config } from '../../service/src/config.js';
import { redisKeys, sessionKey } from '../../service/src/session/redis-keys.js';
import { sealSession } from '../../service/src/session/session-record.js';
import { configFrom, metricValue, startInProcess, startRedisAndIdp, stopInProcess, type InProcessIdgate, type RedisAndIdp } from '../support/idgate.js';
import { waitUntil } from '../../stack/wait.js';

let parts: RedisAndIdp;
let redisPort: number;
let issuer: string;
let redis: Redis;
const secret = crypto.randomBytes(32).toString('base64url');
const PUBLIC_HOST = 'app.test:8080';

beforeAll(async () => {
  parts = await startRedisAndIdp({ IDP_REDIRECT_URIS: `http://${PUBLIC_HOST}/_auth/callback` });
  ({ redisPort, issuer } = parts);
  redis = new Redis(redisPort);
}, 30_000);

afterEach(() => stopInProcess());

afterAll(async () => {
  redis?.disconnect();
  await parts?.stop();
});

/** A config with its own key prefix, so each test counts only its own keys. */
function configFor(extra: Record<string, string> = {}): Config {
  return configFrom({
    IDGATE_ISSUER: issuer,
    IDGATE_CLIENT_ID: 'idgate',
    IDGATE_CLIENT_SECRET: 'idgate-secret',
    IDGATE_PUBLIC_URL: `http://${PUBLIC_HOST}`,
    IDGATE_REDIS_URL: `redis://127.0.0.1:${redisPort}`,
    IDGATE_COOKIE_SECRETS: secret,
    IDGATE_INSECURE_HTTP: '1',
    IDGATE_REDIS_PREFIX: `t${crypto.randomBytes(4).toString('hex')}:`,
    ...extra,
  });
}

/** Sessions written as idgate writes them; returns their Cookie headers. `renewalDue`: tokens still valid for 50 s, so renewal is due. */
async function plantSessions(config: Config, count: number, renewalDue = false): Promise<string[]> {
  const cookies: string[] = [];
  for (let i = 0; i < count; i++) {
    const sid = crypto.randomBytes(32).toString('base64url');
    const now = Date.now();
    const tokens = renewalDue ? { refreshToken: 'made-up', accessTokenExpiresAt: now + 50_000, tokensIssuedAt: now - 3_550_000 } : { tokensIssuedAt: now };
    const stored = { v: 1, subject: `sub-${i}`, user: `user${i}`, email: undefined, groups: [], roles: [], issuer, createdAt: now, idToken: 'x', ...tokens };
    await redis.set(sessionKey(config, sid), sealSession(sid, JSON.stringify({ cookie: { path: '/' }, idgate: stored })), 'EX', config.sessionIdleTtlSeconds);
    cookies.push(`${config.cookieName}=${encodeURIComponent(`s:${signature.sign(sid, secret)}`)}`);
  }
  return cookies;
}

const login = (idgate: InProcessIdgate, cookie?: string) => {
  const req = request(idgate.server).get('/_auth/login?rd=%2F').set('X-Forwarded-Host', PUBLIC_HOST);
  return cookie ? req.set('Cookie', cookie) : req;
};

const check = (idgate: InProcessIdgate, cookie: string) => request(idgate.server).get('/auth').set('Cookie', cookie).set('X-Forwarded-Method', 'GET').set('X-Forwarded-Uri', '/').set('X-Forwarded-Host', PUBLIC_HOST);

const stateOf = (res: request.Response) => new URL(res.headers.location!).searchParams.get('state')!;

const bindingOf = (res: request.Response) => (res.headers['set-cookie'] as unknown as string[]).find((c) => c.startsWith('_idgate_login='))!.split(';')[0]!;

async function countKeys(pattern: string): Promise<number> {
  let count = 0;
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    count += keys.length;
  } while (cursor !== '0');
  return count;
}

test('the shipped Redis config never evicts keys to make room (noeviction)', async () => {
  expect(await redis.config('GET', 'maxmemory-policy')).toEqual(['maxmemory-policy', 'noeviction']);
});

describe('anonymous logins', () => {
  test('from clients that keep no cookie stop at the overall bound across replicas: 503 with Retry-After, counted, and every session survives', async () => {
    const config = configFor({ IDGATE_LOGIN_MAX_PENDING: '40' });
    const replicas = [await startInProcess(config), await startInProcess(config)];
    const cookies = await plantSessions(config, 20);

    const answers = await Promise.all(Array.from({ length: 120 }, (_, i) => login(replicas[i % 2]!)));

    expect(answers.filter((a) => a.status === 302)).toHaveLength(40);
    const refused = answers.filter((a) => a.status !== 302);
    expect(refused).toHaveLength(80);
    for (const res of refused) {
      expect(res.status).toBe(503);
      expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(Number(res.headers['retry-after'])).toBeLessThanOrEqual(config.loginTtlSeconds);
      expect(res.headers['cache-control']).toBe('no-store');
      expect(res.headers['content-type']).toMatch(/^text\/html/);
      expect(res.text).toContain('Temporarily unavailable');
    }
    expect(await countKeys(redisKeys.pendingLogin(config, '*'))).toBe(40);
    expect(await redis.zcard(redisKeys.pendingLoginIndex(config))).toBe(40);

    const refusedCounted = await Promise.all(replicas.map(async (r) => metricValue(await r.metrics.render(), 'idgate_logins_total{result="refused_busy"}')));
    expect(refusedCounted[0]! + refusedCounted[1]!).toBe(80);
    await waitUntil('80 refusals logged', () => replicas.flatMap((r) => r.logLines).filter((l) => l.includes('"error_code":"too_many_logins"')).length === 80);
    expect(replicas.flatMap((r) => r.logLines).filter((l) => l.includes('"error_code":"too_many_logins"'))).toHaveLength(80);

    expect(await countKeys(redisKeys.sessionOfHash(config, '*'))).toBe(20);
    for (const cookie of cookies) expect((await check(replicas[0]!, cookie)).status).toBe(200);
  });
});

describe('one browser', () => {
  test('starting more logins than its bound keeps its newest ones: the oldest is dropped, not the new one refused', async () => {
    const config = configFor({ IDGATE_LOGIN_MAX_PENDING_PER_BROWSER: '3' });
    const idgate = await startInProcess(config);
    const first = await login(idgate);
    const binding = bindingOf(first);
    const later = [];
    for (let i = 0; i < 4; i++) later.push(await login(idgate, binding));
    expect(later.map((r) => r.status)).toEqual([302, 302, 302, 302]);

    const states = [first, ...later].map(stateOf);
    const stillPending = await Promise.all(states.map(async (state) => (await redis.exists(redisKeys.pendingLogin(config, crypto.createHash('sha256').update(state).digest('base64url')))) === 1));
    expect(stillPending).toEqual([false, false, true, true, true]);
    expect(metricValue(await idgate.metrics.render(), 'idgate_pending_logins_dropped_total')).toBe(2);

    // The dropped tab is told to start again; a kept one gets as far as the IdP refusing the made-up code.
    const dropped = await request(idgate.server).get(`/_auth/callback?state=${states[0]}&code=made-up`).set('X-Forwarded-Host', PUBLIC_HOST).set('Cookie', binding);
    expect(dropped.status).toBe(400);
    expect(dropped.text).toContain('expired');
    const kept = await request(idgate.server).get(`/_auth/callback?state=${states[4]}&code=made-up`).set('X-Forwarded-Host', PUBLIC_HOST).set('Cookie', binding);
    expect(kept.status).toBe(502);
  });

  test('with several tabs starting logins at once, each gets its own pending login', async () => {
    const config = configFor();
    const idgate = await startInProcess(config);
    const binding = bindingOf(await login(idgate));
    const tabs = await Promise.all(Array.from({ length: 5 }, () => login(idgate, binding)));
    expect(tabs.map((r) => r.status)).toEqual([302, 302, 302, 302, 302]);
    expect(await countKeys(redisKeys.pendingLogin(config, '*'))).toBe(6);
  });
});

test('when Redis is out of memory, login is a clean 503 page and sessions are kept, not evicted', async () => {
  const config = configFor();
  const idgate = await startInProcess(config);
  const cookies = [...(await plantSessions(config, 4)), ...(await plantSessions(config, 1, true))];
  const [, limit] = (await redis.config('GET', 'maxmemory')) as [string, string];
  await redis.config('SET', 'maxmemory', '1');
  try {
    const res = await login(idgate);
    expect(res.status).toBe(503);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.text).toContain('Temporarily unavailable');
    await waitUntil('the OOM logged', () => idgate.logLines.some((l) => l.includes('"error_code":"store_unavailable"') && l.includes('OOM')));
    expect(idgate.logLines.some((l) => l.includes('"error_code":"store_unavailable"') && l.includes('OOM'))).toBe(true);
    // Reading a session (and renewing its idle TTL) needs no memory: signed-in users carry on, and a
    // renewal that is due waits (no refresh lock can be written) while the tokens are still valid.
    for (const cookie of cookies) expect((await check(idgate, cookie)).status).toBe(200);
  } finally {
    await redis.config('SET', 'maxmemory', limit);
  }
  expect(await countKeys(redisKeys.sessionOfHash(config, '*'))).toBe(5);
  expect((await login(idgate)).status).toBe(302);
});
