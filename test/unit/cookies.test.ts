// Every cookie idgate sets, in the attributes a browser checks: a `__Host-` cookie is dropped unless it
// is Secure with Path=/ and no Domain, so each way idgate writes one is held to that here.
import signature from 'cookie-signature';
import { loadConfig, type Config } from '../../service/src/config.js';
import express from 'express';
import request from 'supertest';
import { bindingCookieOptions, hasSecondCookie, sessionCookie, sessionCookieOptions, TWO_SESSION_COOKIES_REASON, withoutCookie } from '../../service/src/session/cookies.js';
import { refuseTwoSessionCookies } from '../../service/src/browser/two-session-cookies.js';
import type { Logger } from '../../service/src/audit.js';

const base = {
  IDGATE_ISSUER: 'https://idp.example.com',
  IDGATE_CLIENT_ID: 'c',
  IDGATE_CLIENT_SECRET: 's',
  IDGATE_PUBLIC_URL: 'https://app.example.com',
  IDGATE_COOKIE_SECRETS: 'x'.repeat(32),
  IDGATE_CHECK_SECRETS: 'k'.repeat(32),
};

function configOf(env: Record<string, string>): Config {
  const { config, problems } = loadConfig(env);
  if (!config) throw new Error(problems.join('\n'));
  return config;
}

describe('cookie attributes', () => {
  const secure = configOf(base);

  test('a Secure deployment without a cookie domain names both cookies __Host-, Secure, Path=/ and without Domain', () => {
    expect(secure.cookieName).toMatch(/^__Host-/);
    expect(secure.bindingCookieName).toMatch(/^__Host-/);
    for (const options of [sessionCookieOptions(secure), bindingCookieOptions(secure)]) {
      expect(options).toMatchObject({ secure: true, path: '/', httpOnly: true, sameSite: 'lax' });
      expect((options as { domain?: string }).domain).toBeUndefined();
    }
  });

  test('the session cookie a renewal sends back is a valid __Host- cookie too', () => {
    const line = sessionCookie(secure, 'sid-1', Date.now());
    expect(line.startsWith(`__Host-idgate=${encodeURIComponent(`s:${signature.sign('sid-1', 'x'.repeat(32))}`)};`)).toBe(true);
    const attributes = line.split('; ').slice(1);
    expect(attributes).toEqual(expect.arrayContaining(['Path=/', 'Secure', 'HttpOnly', 'SameSite=Lax']));
    expect(attributes.some((a) => a.startsWith('Domain='))).toBe(false);
  });

  test('with a cookie domain only the session cookie carries it; the binding cookie stays host-only', () => {
    const shared = configOf({ ...base, IDGATE_COOKIE_DOMAIN: 'example.com' });
    expect(sessionCookieOptions(shared).domain).toBe('example.com');
    expect(sessionCookie(shared, 'sid-1', Date.now())).toContain('Domain=example.com');
    expect((bindingCookieOptions(shared) as { domain?: string }).domain).toBeUndefined();
    expect(bindingCookieOptions(shared).path).toBe('/');
  });
});

describe('a second session cookie', () => {
  test.each([
    ['one cookie', '_idgate=a', false],
    ['one cookie among others', 'x=1; _idgate=a; _idgate_login=b; y=2', false],
    ['two cookies', '_idgate=a; _idgate=b', true],
    ['two cookies, no spaces', '_idgate=a;_idgate=b', true],
    ['the same value twice', 'x=1; _idgate=a; y=2; _idgate=a', true],
    ['another letter case', '_IDGATE=a; _idgate=b', true],
    ['a name without a value', '_idgate; _idgate=b', true],
    ['names that only start or end alike', '_idgate=a; _idgate2=b; x_idgate=c; _idgate_login=d', false],
  ])('%s: %p is %p', (_, header, expected) => {
    expect(hasSecondCookie(header, '_idgate')).toBe(expected);
  });
});

describe('the browser endpoints and two session cookies', () => {
  test.each([
    ['both session cookies go, the others stay in order', 'x=1; _idgate=a; y=2; _IDGATE=b; _idgate_login=c', 'x=1; y=2; _idgate_login=c'],
    ['nothing left', '_idgate=a;_idgate=b', undefined],
  ])('withoutCookie: %s', (_, header, expected) => {
    expect(withoutCookie(header, '_idgate')).toBe(expected);
  });

  /** What a route behind the guard (express-session, then userinfo or logout) gets as the Cookie header, and the events logged. */
  async function throughGuard(cookie: string): Promise<{ cookie: string | null; events: { event: string; fields: Record<string, unknown> }[] }> {
    const events: { event: string; fields: Record<string, unknown> }[] = [];
    const logger = { event: (event: string, fields: Record<string, unknown>) => events.push({ event, fields }) } as unknown as Logger;
    const app = express();
    app.use('/_auth', refuseTwoSessionCookies({ cookieName: '_idgate' }, logger), (req, res) => {
      res.json({ cookie: req.headers.cookie ?? null });
    });
    const res = await request(app).get('/_auth/userinfo').set('Cookie', cookie).set('X-Request-Id', 'r-1');
    return { cookie: (res.body as { cookie: string | null }).cookie, events };
  }

  test('one session cookie passes untouched, and nothing is logged', async () => {
    expect(await throughGuard('app=1; _idgate=a')).toEqual({ cookie: 'app=1; _idgate=a', events: [] });
  });

  test('two session cookies reach express-session as none, and an event line says why', async () => {
    expect(await throughGuard('_idgate=planted; app=1; _idgate=a')).toEqual({
      cookie: 'app=1',
      events: [{ event: 'session_cookies_refused', fields: expect.objectContaining({ reason: TWO_SESSION_COOKIES_REASON, method: 'GET', path: '/_auth/userinfo', request_id: 'r-1' }) }],
    });
  });
});
