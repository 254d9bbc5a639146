import { headerSafe, identityHeaders, prefersHtml } from '../../service/src/check.js';
import { findCookie, unsignSessionId } from '../../service/src/sessions.js';
import signature from 'cookie-signature';

describe('prefersHtml', () => {
  test.each([
    ['text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8', true],
    ['*/*', false],
    [undefined, false],
    ['application/json', false],
    ['application/json, text/plain, */*', false],
    ['text/html;q=0.5, application/json', false],
    ['text/html', true],
  ])('%s → %s', (accept, expected) => {
    expect(prefersHtml(accept)).toBe(expected);
  });
});

describe('identity headers', () => {
  test('values are single-line and header-safe', () => {
    expect(headerSafe('alice\r\nX-Evil: 1')).toBe('alice%0D%0AX-Evil: 1');
    expect(headerSafe('zoë')).toBe('zo%C3%AB');
  });

  test('groups containing commas stay one group each', () => {
    const h = identityHeaders({ via: 'session', subject: 's', user: 'u', email: undefined, groups: ['a,b', 'c'], roles: [], scopes: [], clientId: undefined, issuer: 'i', fromPrimaryIssuer: true }, undefined, 'r');
    expect(h['X-Auth-Groups']).toBe('a%2Cb,c');
    expect(h['X-Auth-Email']).toBeUndefined();
  });

  test('a huge group list is cut at a whole group within the header budget', () => {
    const groups = Array.from({ length: 2000 }, (_, i) => `group-${i}`);
    const h = identityHeaders({ via: 'session', subject: 's', user: 'u', email: undefined, groups, roles: [], scopes: [], clientId: undefined, issuer: 'i', fromPrimaryIssuer: true }, undefined, 'r');
    expect(h['X-Auth-Groups']!.length).toBeLessThanOrEqual(4096);
    expect(h['X-Auth-Groups']!.split(',').every((g) => /^group-\d+$/.test(g))).toBe(true);
  });
});

describe('session cookie parsing', () => {
  test('finds the named cookie among others', () => {
    expect(findCookie('a=1; _idgate=s%3Axyz.sig; b=2', '_idgate')).toBe('s:xyz.sig');
    expect(findCookie('a=1', '_idgate')).toBeUndefined();
    expect(findCookie('_idgate=%E0%A4%A', '_idgate')).toBeUndefined();
  });

  test('any configured secret verifies; a forged signature does not', () => {
    const oldSecret = 'o'.repeat(32);
    const newSecret = 'n'.repeat(32);
    const value = `s:${signature.sign('sid123', oldSecret)}`;
    expect(unsignSessionId(value, [newSecret, oldSecret])).toBe('sid123');
    expect(unsignSessionId(value, [newSecret])).toBeUndefined();
    expect(unsignSessionId('s:sid123.forged', [newSecret, oldSecret])).toBeUndefined();
    expect(unsignSessionId('sid123', [oldSecret])).toBeUndefined();
  });
});
