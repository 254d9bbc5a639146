// The browser endpoints as an attacker would try them: idgate in-process (listening, so the real IdP can
// send the browser back and post back-channel logouts to it), a real Redis, the real local IdP. The login
// binding, the logout Origin check, the cookies of a Secure deployment, and the IdP session id at rest.
import crypto from 'node:crypto';
import path from 'node:path';
import signature from 'cookie-signature';
import { Redis } from 'ioredis';
import * as jose from 'jose';
import request from 'supertest';
import { loadConfig, type Config } from '../../service/src/config.js';
import { sessionKey } from '../../service/src/session/redis-keys.js';
import { hashValue } from '../../service/src/session/pending-logins.js';
import { openSession } from '../../service/src/session/session-record.js';
import { holdPort, idpListening, REPO_ROOT, startProcess, waitForReport, type ManagedProcess } from '../../stack/processes.js';
import { probeUntil } from '../../stack/wait.js';
import { startFreeTempRedis } from '../../stack/redis.js';
import { testIdpEnv } from '../../stack/test-idp-profile.js';
import { Browser, parseForm, signIn } from '../support/browser.js';
import { configFrom, startInProcess, stopInProcess, type InProcessIdgate } from '../support/idgate.js';

const COOKIE_SECRET = crypto.randomBytes(32).toString('base64url');
/** The public origin of the Secure deployment (reached with supertest and X-Forwarded-*, never resolved). */
const SECURE_ORIGIN = 'https://app.test';
let redisProcess: ManagedProcess;
let idpProcess: ManagedProcess;
let redisPort: number;
let issuer: string;
let appUrl: string;
let idgate: InProcessIdgate;

beforeAll(async () => {
  // idgate's origin must be in the IdP's redirect URIs before the IdP starts, and idgate needs the IdP's
  // issuer: its port is held listening until idgate is made (holdPort).
  const app = await holdPort();
  appUrl = `http://127.0.0.1:${app.port}`;
  idpProcess = startProcess('idp', process.execPath, [path.join(REPO_ROOT, 'dist/stack/idp-main.js')], {
    env: {
      ...process.env,
      IDP_PORT: '0',
      ...testIdpEnv(),
      IDP_REDIRECT_URIS: `${appUrl}/_auth/callback,${SECURE_ORIGIN}/_auth/callback`,
      IDP_POST_LOGOUT_REDIRECT_URIS: `${appUrl}/_auth/logged-out,${SECURE_ORIGIN}/_auth/logged-out`,
      // With a back-channel URI the IdP puts `sid` in ID tokens and posts logout tokens to idgate.
      IDP_BACKCHANNEL_LOGOUT_URI: `${appUrl}/_auth/backchannel-logout`,
    },
  });
  [{ port: redisPort, server: redisProcess }, { issuer }] = await Promise.all([startFreeTempRedis(), waitForReport(idpProcess, idpListening)]);
  idgate = await startInProcess(
    configFrom({
      IDGATE_ISSUER: issuer,
      IDGATE_CLIENT_ID: 'idgate',
      IDGATE_CLIENT_SECRET: 'idgate-secret',
      IDGATE_PUBLIC_URL: appUrl,
      IDGATE_REDIS_URL: `redis://127.0.0.1:${redisPort}`,
      IDGATE_COOKIE_SECRETS: COOKIE_SECRET,
      IDGATE_INSECURE_HTTP: '1',
      IDGATE_ALLOWED_REDIRECT_HOSTS: 'other.test:8080',
    }),
  );
  await app.handOver(idgate.server);
}, 30_000);

afterAll(async () => {
  stopInProcess();
  await Promise.all([redisProcess?.stop(), idpProcess?.stop()]);
});

/**
 * Goes through the IdP the way a browser does, from `start` (the IdP's authorization URL or idgate's
 * login) up to the callback idgate would get, without delivering it: returns the callback URL.
 */
async function untilCallback(browser: Browser, start: string | URL, user: string): Promise<URL> {
  let at = new URL(start);
  let res = await browser.fetch(at);
  for (let hop = 0; hop < 15; hop++) {
    const location = res.headers.get('location');
    if (location) {
      await res.arrayBuffer();
      at = new URL(location, at);
      if (at.pathname === '/_auth/callback') return at;
      res = await browser.fetch(at);
      continue;
    }
    const form = parseForm(await res.text());
    res = await browser.fetch(new URL(form.action || at.href, at), {
      method: form.method,
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: at.origin },
      body: new URLSearchParams({ ...form.fields, login: user, password: user }).toString(),
    });
  }
  throw new Error(`no callback reached: ${JSON.stringify(browser.hops.slice(-15))}`);
}

async function signedIn(browser: Browser): Promise<boolean> {
  const res = await browser.fetch(`${appUrl}/_auth/userinfo`, { headers: { accept: 'application/json' } });
  return res.status === 200;
}

describe('the login binding', () => {
  test('a callback without the binding cookie does not spend the login: the browser that started it still finishes', async () => {
    const browser = new Browser();
    const callback = await untilCallback(browser, `${appUrl}/_auth/login?rd=%2Fstarted-here`, 'alice');
    const stranger = await fetch(callback, { redirect: 'manual' });
    expect(stranger.status).toBe(400);
    expect(await stranger.text()).toMatch(/started in another browser/);
    const finished = await browser.fetch(callback);
    expect(finished.status).toBe(302);
    expect(finished.headers.get('location')).toBe('/started-here');
    expect(await signedIn(browser)).toBe(true);
  });

  test('a callback with another browser\'s binding cookie (or a forged one) does not spend the login either', async () => {
    const victim = new Browser();
    const callback = await untilCallback(victim, `${appUrl}/_auth/login?rd=%2F`, 'alice');
    const attacker = new Browser();
    await attacker.fetch(`${appUrl}/_auth/login`); // the attacker's own, valid binding cookie
    expect((await attacker.fetch(callback)).status).toBe(400);
    const forged = await fetch(callback, { redirect: 'manual', headers: { cookie: `${idgate.config.bindingCookieName}=${crypto.randomBytes(32).toString('base64url')}` } });
    expect(forged.status).toBe(400);
    expect(await attacker.fetch(`${appUrl}/_auth/userinfo`).then((r) => r.status)).toBe(401);
    expect((await victim.fetch(callback)).status).toBe(302);
    expect(await signedIn(victim)).toBe(true);
  });

  test('a replayed callback still fails, from the same browser or another', async () => {
    const browser = new Browser();
    const callback = await untilCallback(browser, `${appUrl}/_auth/login`, 'bob');
    expect((await browser.fetch(callback)).status).toBe(302);
    const replay = await browser.fetch(callback);
    expect(replay.status).toBe(400);
    expect(await replay.text()).toMatch(/expired or was already used/);
    expect((await fetch(callback, { redirect: 'manual' })).status).toBe(400);
  });

  test('of two callbacks with the right binding at once, exactly one signs in', async () => {
    const browser = new Browser();
    const callback = await untilCallback(browser, `${appUrl}/_auth/login`, 'bob');
    const answers = await Promise.all([browser.fetch(callback), browser.fetch(callback)]);
    expect(answers.map((a) => a.status).sort()).toEqual([302, 400]);
    expect(await answers.find((a) => a.status === 400)!.text()).toMatch(/expired or was already used/);
  });
});

describe('logout Origin', () => {
  test.each([
    ['a lookalike host', (app: string) => `${app}.evil.test`],
    ['null', () => 'null'],
    ['another allowed host', () => 'http://other.test:8080'],
    ['the public origin with a path', (app: string) => `${app}/`],
    ['the public host under another name', (app: string) => app.replace('127.0.0.1', 'localhost')],
    ['the public host over https', (app: string) => app.replace('http:', 'https:')],
  ])('a logout whose Origin is %s is refused and the session lives on', async (_name, originOf) => {
    const browser = new Browser();
    await signIn(browser, `${appUrl}/_auth/login`, 'alice');
    const res = await browser.fetch(`${appUrl}/_auth/logout`, { method: 'POST', headers: { origin: originOf(appUrl) } });
    expect(res.status).toBe(403);
    expect(await signedIn(browser)).toBe(true);
  });

  test('a logout from the public origin exactly ends the session and clears its cookie', async () => {
    const browser = new Browser();
    await signIn(browser, `${appUrl}/_auth/login`, 'alice');
    const res = await browser.fetch(`${appUrl}/_auth/logout`, { method: 'POST', headers: { origin: appUrl } });
    expect(res.status).toBe(303);
    expect(res.headers.getSetCookie().some((c) => c.startsWith(`${idgate.config.cookieName}=;`))).toBe(true);
    expect(await signedIn(browser)).toBe(false);
  });
});

describe('cookies of a Secure deployment', () => {
  /** A header line's attributes, names lower-cased: "Path=/" → ["path", "/"]. */
  function attributesOf(line: string): Map<string, string> {
    return new Map(line.split(';').slice(1).map((a) => {
      const [k = '', v = ''] = a.trim().split('=');
      return [k.toLowerCase(), v];
    }));
  }

  function expectHostPrefixed(line: string | undefined, name: string): void {
    expect(line?.startsWith(`${name}=`)).toBe(true);
    const attributes = attributesOf(line!);
    expect(attributes.get('path')).toBe('/');
    expect(attributes.has('secure')).toBe(true);
    expect(attributes.has('domain')).toBe(false);
  }

  test('without a cookie domain both cookies are __Host- cookies (Secure, Path=/, no Domain), from login to logout', async () => {
    const { config: loaded, problems } = loadConfig({
      IDGATE_ISSUER: 'https://idp.example.com',
      IDGATE_CLIENT_ID: 'idgate',
      IDGATE_CLIENT_SECRET: 'idgate-secret',
      IDGATE_PUBLIC_URL: SECURE_ORIGIN,
      IDGATE_REDIS_URL: `redis://127.0.0.1:${redisPort}`,
      IDGATE_COOKIE_SECRETS: COOKIE_SECRET,
      IDGATE_CHECK_SECRETS: 'k'.repeat(32),
    });
    expect(problems).toEqual([]);
    // The cookie settings exactly as loadConfig makes them for an https deployment; only the test IdP is
    // reached over plain http (it has no TLS).
    const config: Config = Object.freeze({ ...loaded!, issuer: new URL(issuer), issuerId: issuer, insecureHttp: true, bearerIssuers: [] });
    expect(config.cookieName).toBe('__Host-idgate');
    expect(config.bindingCookieName).toBe('__Host-idgate_login');
    const server = (await startInProcess(config)).server;
    const proxied = { 'X-Forwarded-Host': 'app.test', 'X-Forwarded-Proto': 'https' };

    const login = await request(server).get('/_auth/login?rd=%2Fx').set(proxied);
    expect(login.status).toBe(302);
    const bindingLine = (login.headers['set-cookie'] as unknown as string[]).find((c) => c.startsWith('__Host-idgate_login='));
    expectHostPrefixed(bindingLine, '__Host-idgate_login');
    const binding = bindingLine!.split(';')[0]!;

    const callback = await untilCallback(new Browser(), login.headers.location!, 'alice');
    expect(callback.origin).toBe(SECURE_ORIGIN);
    const done = await request(server).get(callback.pathname + callback.search).set(proxied).set('Cookie', binding);
    expect(done.status).toBe(302);
    expect(done.headers.location).toBe('/x');
    const sessionLine = (done.headers['set-cookie'] as unknown as string[]).find((c) => c.startsWith('__Host-idgate='));
    expectHostPrefixed(sessionLine, '__Host-idgate');
    const session = sessionLine!.split(';')[0]!;
    expect((await request(server).get('/_auth/userinfo').set(proxied).set('Cookie', session)).status).toBe(200);

    const logout = await request(server).post('/_auth/logout').set(proxied).set('Origin', SECURE_ORIGIN).set('Cookie', session);
    expect(logout.status).toBe(303);
    const cleared = (logout.headers['set-cookie'] as unknown as string[]).find((c) => c.startsWith('__Host-idgate=;'));
    expectHostPrefixed(cleared, '__Host-idgate');
    expect((await request(server).get('/_auth/userinfo').set(proxied).set('Cookie', session)).status).toBe(401);
  });

  test('with a cookie domain the session cookie carries it, the login-binding cookie is still a __Host- cookie, and a planted second session cookie leaves userinfo and logout with no session', async () => {
    const { config: loaded, problems } = loadConfig({
      IDGATE_ISSUER: 'https://idp.example.com',
      IDGATE_CLIENT_ID: 'idgate',
      IDGATE_CLIENT_SECRET: 'idgate-secret',
      IDGATE_PUBLIC_URL: SECURE_ORIGIN,
      IDGATE_REDIS_URL: `redis://127.0.0.1:${redisPort}`,
      IDGATE_COOKIE_SECRETS: COOKIE_SECRET,
      IDGATE_CHECK_SECRETS: 'k'.repeat(32),
      IDGATE_COOKIE_DOMAIN: 'app.test',
    });
    expect(problems).toEqual([]);
    const config: Config = Object.freeze({ ...loaded!, issuer: new URL(issuer), issuerId: issuer, insecureHttp: true, bearerIssuers: [] });
    expect([config.cookieName, config.bindingCookieName]).toEqual(['_idgate', '__Host-idgate_login']);
    const server = (await startInProcess(config)).server;
    const proxied = { 'X-Forwarded-Host': 'app.test', 'X-Forwarded-Proto': 'https' };

    const login = await request(server).get('/_auth/login?rd=%2Fx').set(proxied);
    expect(login.status).toBe(302);
    const bindingLine = (login.headers['set-cookie'] as unknown as string[]).find((c) => c.startsWith('__Host-idgate_login='));
    expectHostPrefixed(bindingLine, '__Host-idgate_login');
    const callback = await untilCallback(new Browser(), login.headers.location!, 'alice');
    const done = await request(server).get(callback.pathname + callback.search).set(proxied).set('Cookie', bindingLine!.split(';')[0]!);
    expect(done.status).toBe(302);
    const sessionLine = (done.headers['set-cookie'] as unknown as string[]).find((c) => c.startsWith('_idgate='));
    expect(attributesOf(sessionLine!).get('domain')).toBe('app.test');

    // A sibling subdomain plants a session cookie of its own (a longer Path makes the browser send it
    // first): userinfo then shows nobody, and a logout ends neither session.
    const session = sessionLine!.split(';')[0]!;
    const both = `_idgate=planted; ${session}`;
    expect((await request(server).get('/_auth/userinfo').set(proxied).set('Cookie', both)).status).toBe(401);
    const logout = await request(server).post('/_auth/logout').set(proxied).set('Origin', SECURE_ORIGIN).set('Cookie', both);
    expect(logout.status).toBe(303);
    expect((await request(server).get('/_auth/userinfo').set(proxied).set('Cookie', session)).body).toMatchObject({ user: 'alice' });
  });
});

describe('the IdP session id at rest', () => {
  test('only its hash is stored and indexed, and a back-channel logout naming the id still ends the session', async () => {
    const browser = new Browser();
    await signIn(browser, `${appUrl}/_auth/login`, 'alice');
    const cookie = decodeURIComponent(browser.cookie('127.0.0.1', idgate.config.cookieName)!);
    const sid = signature.unsign(cookie.slice(2), COOKIE_SECRET) as string;
    const redis = new Redis(redisPort);
    try {
      const stored = JSON.parse(openSession(sid, (await redis.get(sessionKey(idgate.config, sid)))!)!).idgate as Record<string, unknown>;
      const idpSessionId = jose.decodeJwt(stored.idToken as string).sid as string;
      expect(typeof idpSessionId).toBe('string');
      expect(stored.idpSessionHash).toBe(hashValue(idpSessionId));
      expect(stored).not.toHaveProperty('idpSessionId');

      const dump: string[] = [];
      for (const key of await redis.keys('*')) {
        const type = await redis.type(key);
        const value = type === 'string' ? await redis.get(key) : type === 'hash' ? JSON.stringify(await redis.hgetall(key)) : type === 'set' ? JSON.stringify(await redis.smembers(key)) : '';
        dump.push(`${key} ${value}`);
      }
      expect(dump.join('\n')).not.toContain(idpSessionId);
      expect(dump.some((line) => line.startsWith(`idgate:idx:idpsid:${hashValue(idpSessionId)} `))).toBe(true);

      // Signing out at the IdP: it posts a logout token naming the raw sid to idgate.
      const confirm = await browser.navigate(`${issuer}/session/end`);
      await browser.submitForm(confirm.url, await confirm.res.text(), { logout: 'yes' });
      await probeUntil(() => signedIn(browser), (still) => !still);
      expect(await signedIn(browser)).toBe(false);
      expect(idgate.logLines.some((l) => l.includes('"event":"backchannel_logout"') && l.includes('"sessions_revoked":1'))).toBe(true);
    } finally {
      redis.disconnect();
    }
  });
});
