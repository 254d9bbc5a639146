// Every cookie idgate sets, in the attributes a browser checks: a `__Host-` cookie is dropped unless it
// is Secure with Path=/ and no Domain, so each way idgate writes one is held to that here.
import signature from 'cookie-signature';
import { loadConfig, type Config } from '../../service/src/config.js';
import { bindingCookieOptions, hasSecondCookie, sessionCookie, sessionCookieOptions } from '../../service/src/session/cookies.js';

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
