// idgate in-process (supertest) against a real Redis and the real local IdP: the parts of the service
// that HAProxy hides (trusted proxies, cookie attributes, health, metrics, bad forwarded headers).
import crypto from 'node:crypto';
import type http from 'node:http';
import request from 'supertest';
import { Redis } from 'ioredis';
import express from 'express';
import { loadConfig, type Config } from '../../service/src/config.js';
import { createRedisClient } from '../../service/src/redis.js';
import { createSessionMiddleware } from '../../service/src/session/express-adapter.js';
import { RedisSessionStore } from '../../service/src/session/redis-session-store.js';
import { sessionKey } from '../../service/src/session/redis-keys.js';
import { sealSession } from '../../service/src/session/session-record.js';
import { checkFacts, configFrom, redisReady, startInProcess, startRedisAndIdp, stopInProcess, type RedisAndIdp } from '../support/idgate.js';
import { startDeadEnd } from '../../stack/processes.js';
import signature from 'cookie-signature';

let parts: RedisAndIdp;
let redisPort: number;
let issuer: string;
const secret = crypto.randomBytes(32).toString('base64url');
let logLines: string[] = [];

function configFor(extra: Record<string, string> = {}): Config {
  return configFrom({
    IDGATE_ISSUER: issuer,
    IDGATE_CLIENT_ID: 'idgate',
    IDGATE_CLIENT_SECRET: 'idgate-secret',
    IDGATE_PUBLIC_URL: 'http://app.test:8080',
    IDGATE_REDIS_URL: `redis://127.0.0.1:${redisPort}`,
    IDGATE_COOKIE_SECRETS: secret,
    IDGATE_INSECURE_HTTP: '1',
    IDGATE_JWT_AUDIENCES: 'api://idgate',
    ...extra,
  });
}

async function startServer(config: Config): Promise<http.Server> {
  const idgate = await startInProcess(config);
  logLines = idgate.logLines;
  return idgate.server;
}

/** A session written the way express-session + connect-redis write it, and its signed cookie. */
async function plantSession(config: Config, stored: Record<string, unknown>): Promise<string> {
  const sid = crypto.randomBytes(24).toString('base64url');
  const redis = new Redis(redisPort);
  await redis.set(sessionKey(config, sid), sealSession(sid, JSON.stringify({ cookie: { path: '/' }, idgate: stored })), 'EX', config.sessionIdleTtlSeconds);
  redis.disconnect();
  return `${config.cookieName}=${encodeURIComponent(`s:${signature.sign(sid, config.cookieSecrets[0]!)}`)}`;
}

const alice = { v: 1, subject: 'sub-alice', user: 'alice', email: 'alice@example.com', groups: ['admins'], issuer: 'x', createdAt: Date.now(), idToken: 'x' };

beforeAll(async () => {
  parts = await startRedisAndIdp({ IDP_REDIRECT_URIS: 'http://app.test:8080/_auth/callback' });
  ({ redisPort, issuer } = parts);
}, 30_000);

afterAll(async () => {
  stopInProcess();
  await parts?.stop();
});

describe('idgate service', () => {
  test('a check from a peer outside IDGATE_TRUSTED_PROXIES is refused with 403 and a loud log line, never judged as some default request', async () => {
    const config = configFor({ IDGATE_TRUSTED_PROXIES: '10.0.0.0/8' });
    const server = await startServer(config);
    for (const uri of ['/public/x', '/']) {
      const res = await request(server).get('/auth').set(checkFacts('app.test:8080', uri)).set('Accept', 'application/json');
      expect(res.status).toBe(403);
      expect(res.body).toEqual({ error: 'untrusted_peer', reason: 'only HAProxy may ask idgate for decisions' });
    }
    const warnings = logLines.filter((l) => l.includes('the peer is not a trusted proxy'));
    // One line per peer per interval, not one per request.
    expect(warnings).toHaveLength(1);
    expect(JSON.parse(warnings[0]!)).toMatchObject({ level: 'error' });
    expect(logLines.some((l) => l.includes('"event":"decision"') && l.includes('"decision":"allow"'))).toBe(false);
  });

  test.each([
    ['X-Forwarded-Method'],
    ['X-Forwarded-Host'],
    ['X-Forwarded-Uri'],
  ])('a trusted check without %s is a 400 that names what is missing, audited', async (missing) => {
    const server = await startServer(configFor());
    const facts = checkFacts('app.test:8080', '/public/x');
    delete facts[missing];
    const res = await request(server).get('/auth').set(facts).set('X-Request-Id', 'no-facts').set('Accept', 'application/json');
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ error: 'invalid_request', reason: `the check lacks ${missing}` });
    const line = JSON.parse(logLines.filter((l) => l.includes('"event":"decision"')).at(-1)!);
    expect(line).toMatchObject({ request_id: 'no-facts', decision: 'refused', status: 400, reason: `the check lacks ${missing}` });
  });

  test.each(['CONNECT', 'TRACE'])('a trusted check of a %s is a 405, also without a URI (never judged as some path), audited', async (method) => {
    const server = await startServer(configFor());
    const facts = checkFacts('app.test:8080', '/public/x');
    delete facts['X-Forwarded-Uri'];
    const res = await request(server).get('/auth').set(facts).set('X-Forwarded-Method', method).set('X-Request-Id', `m-${method}`).set('Accept', 'application/json');
    expect(res.status).toBe(405);
    expect(res.body).toEqual({ error: 'method_not_allowed', reason: `${method} is never allowed` });
    const line = JSON.parse(logLines.filter((l) => l.includes(`"request_id":"m-${method}"`)).at(-1)!);
    expect(line).toMatchObject({ decision: 'refused', status: 405, method, path: null, rule: null });
  });

  test('a path with no single meaning is a 400 with its reason in the audit line, and the query never reaches the log', async () => {
    const server = await startServer(configFor());
    const res = await request(server).get('/auth').set(checkFacts('app.test:8080', '/public/..;/admin/secret?token=s3cr3t')).set('X-Request-Id', 'bad-path');
    expect(res.status).toBe(400);
    expect(res.body.reason).toBe('the path holds a semicolon (path parameters)');
    const line = logLines.find((l) => l.includes('"request_id":"bad-path"'))!;
    expect(JSON.parse(line)).toMatchObject({ decision: 'refused', status: 400, path: '/public/..;/admin/secret', rule: null });
    expect(line).not.toContain('s3cr3t');
  });

  test('an allow names the canonical path it decided on, and the Cookie header without idgate\'s cookies', async () => {
    const config = configFor();
    const server = await startServer(config);
    const cookie = await plantSession(config, alice);
    const res = await request(server).get('/auth').set(checkFacts('app.test:8080', '/x/./%61dmin//y?q=%2F')).set('Cookie', `app=1; ${cookie}; ${config.bindingCookieName}=b; other=2`);
    expect(res.status).toBe(200);
    expect(res.headers['x-idgate-path']).toBe('/x/admin/y');
    expect(res.headers['x-idgate-cookie']).toBe('app=1; other=2');
    const only = await request(server).get('/auth').set(checkFacts('app.test:8080', '/public/x')).set('Cookie', `${config.cookieName}=junk`);
    expect(only.status).toBe(200);
    expect(only.headers['x-idgate-cookie']).toBe('');
    const none = await request(server).get('/auth').set(checkFacts('app.test:8080', '/public/x')).set('Cookie', 'app=1');
    expect(none.headers['x-idgate-cookie']).toBeUndefined();
  });

  test('HEAD is judged by the rules written for GET', async () => {
    const server = await startServer(configFor());
    const res = await request(server).head('/auth').set(checkFacts('app.test:8080', '/public/x', 'HEAD'));
    expect(res.status).toBe(200);
  });

  test('X-Forwarded-* from a trusted proxy decide the route', async () => {
    const server = await startServer(configFor());
    const res = await request(server).get('/auth').set(checkFacts('app.test:8080')).set('X-Forwarded-Uri', '/public/x');
    expect(res.status).toBe(200);
    expect(res.headers['x-auth-user']).toBeUndefined();
  });

  test('unusable forwarded headers get 400, not a guess', async () => {
    const server = await startServer(configFor());
    for (const [name, value] of [['X-Forwarded-Host', 'a b'], ['X-Forwarded-Uri', 'http://evil/'], ['X-Forwarded-Method', 'G E T']] as const) {
      const res = await request(server).get('/auth').set(checkFacts('app.test:8080')).set(name, value);
      expect(res.status).toBe(400);
    }
  });

  test('a planted session answers 200 with identity headers, and HEAD works the same', async () => {
    const config = configFor();
    const server = await startServer(config);
    const cookie = await plantSession(config, alice);
    const get = await request(server).get('/auth').set(checkFacts('app.test:8080')).set('Cookie', cookie).set('X-Forwarded-Uri', '/admin/').set('X-Request-Id', 'req-42');
    expect(get.status).toBe(200);
    expect(get.headers).toMatchObject({ 'x-auth-user': 'alice', 'x-auth-subject': 'sub-alice', 'x-auth-groups': 'admins', 'x-auth-request-id': 'req-42' });
    const head = await request(server).head('/auth').set(checkFacts('app.test:8080', '/', 'HEAD')).set('Cookie', cookie);
    expect(head.status).toBe(200);
  });

  test('a session past its absolute lifetime is a redirect for a browser and 401 for an API client', async () => {
    const config = configFor({ IDGATE_SESSION_MAX_AGE: '60', IDGATE_SESSION_IDLE_TTL: '60' });
    const server = await startServer(config);
    const cookie = await plantSession(config, { ...alice, createdAt: Date.now() - 61_000 });
    const browser = await request(server).get('/auth').set(checkFacts('app.test:8080')).set('Cookie', cookie).set('Accept', 'text/html');
    expect(browser.status).toBe(302);
    const api = await request(server).get('/auth').set(checkFacts('app.test:8080')).set('Cookie', cookie).set('Accept', 'application/json');
    expect(api.status).toBe(401);
  });

  test('a malformed session in Redis is treated as no session, not a crash', async () => {
    const config = configFor();
    const server = await startServer(config);
    const cookie = await plantSession(config, { v: 1, subject: 42 });
    const res = await request(server).get('/auth').set(checkFacts('app.test:8080')).set('Cookie', cookie).set('Accept', 'text/html');
    expect(res.status).toBe(302);
  });

  test('a cookie signed with an unknown secret is no session', async () => {
    const config = configFor();
    const server = await startServer(config);
    const cookie = await plantSession(configFor({ IDGATE_COOKIE_SECRETS: 'z'.repeat(40) }), alice);
    const res = await request(server).get('/auth').set(checkFacts('app.test:8080')).set('Cookie', cookie).set('Accept', 'application/json');
    expect(res.status).toBe(401);
  });

  test('the check renews the session idle TTL in Redis', async () => {
    const config = configFor({ IDGATE_SESSION_IDLE_TTL: '3000' });
    const server = await startServer(config);
    const cookie = await plantSession(config, alice);
    await request(server).get('/auth').set(checkFacts('app.test:8080')).set('Cookie', cookie);
    const sid = signature.unsign(decodeURIComponent(cookie.split('=')[1]!).slice(2), secret) as string;
    const redis = new Redis(redisPort);
    const ttl = await redis.ttl(sessionKey(config, sid));
    redis.disconnect();
    expect(ttl).toBeGreaterThan(2990);
  });

  test('health, readiness and metrics answer', async () => {
    const server = await startServer(configFor());
    expect((await request(server).get('/healthz')).status).toBe(200);
    const ready = await request(server).get('/readyz');
    expect(ready.status).toBe(200);
    expect(ready.text).toContain('redis=ok idp=ok keys=ok');
    await request(server).get('/auth').set(checkFacts('app.test:8080'));
    const metrics = await request(server).get('/metrics');
    expect(metrics.text).toMatch(/idgate_decisions_total\{outcome="unauthenticated",reason="no_credentials"\} 1/);
  });

  test('readiness is false while the IdP cannot be discovered', async () => {
    const deadIdp = await startDeadEnd();
    try {
      const server = await startServer(configFor({ IDGATE_ISSUER: `http://127.0.0.1:${deadIdp.port}` }));
      const ready = await request(server).get('/readyz');
      expect(ready.status).toBe(503);
      expect(ready.text).toContain('idp=not loaded');
      const login = await request(server).get('/_auth/login').set('X-Forwarded-Host', 'app.test:8080');
      expect(login.status).toBe(503);
    } finally {
      await deadIdp.close();
    }
  });

  test('login redirects to the IdP with PKCE S256, state and nonce, and sets one HttpOnly SameSite=Lax binding cookie', async () => {
    const server = await startServer(configFor());
    const res = await request(server).get('/_auth/login?rd=%2Fx').set('X-Forwarded-Host', 'app.test:8080');
    expect(res.status).toBe(302);
    const location = new URL(res.headers.location!);
    expect(location.origin).toBe(issuer);
    for (const p of ['state', 'nonce', 'code_challenge']) expect(location.searchParams.get(p)).toBeTruthy();
    expect(location.searchParams.get('code_challenge_method')).toBe('S256');
    expect(location.searchParams.get('redirect_uri')).toBe('http://app.test:8080/_auth/callback');
    const cookies = res.headers['set-cookie'] as unknown as string[];
    expect(cookies).toHaveLength(1);
    expect(cookies[0]).toMatch(/^_idgate_login=.*; Path=\/; .*HttpOnly; SameSite=Lax/);
  });

  test('login on another host first moves to the public host', async () => {
    const server = await startServer(configFor({ IDGATE_ALLOWED_REDIRECT_HOSTS: 'other.test:8080' }));
    const res = await request(server).get('/_auth/login?rd=%2Fx').set('X-Forwarded-Host', 'other.test:8080');
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe(`http://app.test:8080/_auth/login?rd=${encodeURIComponent('http://other.test:8080/x')}`);
  });
});

describe('the session cookie', () => {
  test('is HttpOnly, SameSite=Lax and Secure by default', async () => {
    const { config } = loadConfig({
      IDGATE_ISSUER: 'https://idp.example.com',
      IDGATE_CLIENT_ID: 'c',
      IDGATE_CLIENT_SECRET: 's',
      IDGATE_PUBLIC_URL: 'https://app.example.com',
      IDGATE_COOKIE_SECRETS: secret,
      IDGATE_CHECK_SECRETS: 'k'.repeat(32),
      IDGATE_REDIS_URL: `redis://127.0.0.1:${redisPort}`,
      IDGATE_COOKIE_DOMAIN: 'example.com',
      IDGATE_COOKIE_NAME: 'corp_sso',
    });
    const redis = createRedisClient(config!);
    try {
      await redisReady(redis);
      const app = express();
      app.set('trust proxy', 'loopback');
      app.use(createSessionMiddleware(config!, new RedisSessionStore(redis, config!)));
      app.get('/set', (req, res) => {
        req.session.idgate = alice as never;
        res.end('ok');
      });
      const res = await request(app).get('/set').set('X-Forwarded-Proto', 'https');
      const cookie = (res.headers['set-cookie'] as unknown as string[])[0]!;
      expect(cookie).toMatch(/^corp_sso=s%3A/);
      expect(cookie).toMatch(/Domain=example.com/);
      expect(cookie).toMatch(/HttpOnly/);
      expect(cookie).toMatch(/Secure/);
      expect(cookie).toMatch(/SameSite=Lax/);
    } finally {
      redis.disconnect();
    }
  });
});
