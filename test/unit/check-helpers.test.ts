import fc from 'fast-check';
import { withoutIdgateCookies } from '../../service/src/check/check.js';
import { prefersHtml } from '../../service/src/check/request-facts.js';
import { headerSafe, identityFields } from '../../service/src/check/check-wire.js';
import type { Identity } from '../../service/src/policy/policy.js';
import { findCookie, unsignSessionId } from '../../service/src/session/cookies.js';
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
    // Read again (now remembered): the same answer.
    expect(prefersHtml(accept)).toBe(expected);
  });

  test('the answers remembered stay right as many other Accept values come and go', () => {
    for (let i = 0; i < 600; i++) {
      expect(prefersHtml(`text/html;q=0.${(i % 9) + 1}, application/x-${i}`)).toBe(false);
      expect(prefersHtml(`application/x-${i};q=0.1, text/html`)).toBe(true);
      expect(prefersHtml('text/html')).toBe(true);
      expect(prefersHtml('application/json')).toBe(false);
    }
  });
});

describe('identity headers', () => {
  test('values are single-line and header-safe', () => {
    expect(headerSafe('alice\r\nX-Evil: 1')).toBe('alice%0D%0AX-Evil: 1');
    expect(headerSafe('zoë')).toBe('zo%C3%AB');
  });

  test('groups containing commas stay one group each', () => {
    const h = identityFields({ via: 'session', subject: 's', user: 'u', email: undefined, groups: ['a,b', 'c'], roles: [], scopes: [], clientId: undefined, issuer: 'i', fromPrimaryIssuer: true }, undefined);
    expect(h.groups).toBe('a%2Cb,c');
    expect(h.email).toBeUndefined();
  });

  const someone = (extra: Partial<Identity>): Identity => ({ via: 'session', subject: 's', user: 'u', email: undefined, groups: [], roles: [], scopes: [], clientId: undefined, issuer: 'https://idp.example.com', fromPrimaryIssuer: true, ...extra });

  test('a huge group list is cut at a whole group within the header budget, and says so', () => {
    const groups = Array.from({ length: 2000 }, (_, i) => `group-${i}`);
    const h = identityFields(someone({ groups }), undefined);
    expect(h.groups!.length).toBeLessThanOrEqual(4096);
    expect(h.groups!.split(',').every((g) => /^group-\d+$/.test(g))).toBe(true);
    expect(h.groupsTruncated).toBe(true);
    const few = identityFields(someone({ groups: ['a', 'b'], scopes: ['x y', 'z'] }), undefined);
    expect(few.groupsTruncated).toBe(false);
    expect(few.scopes).toBe('x%20y z');
    const scopes = identityFields(someone({ scopes: Array.from({ length: 2000 }, (_, i) => `scope:${i}`) }), undefined);
    expect(scopes.scopesTruncated).toBe(true);
  });

  test('a percent sign is encoded, so every value decodes one way', () => {
    expect(headerSafe('100%')).toBe('100%25');
    // A name that spells an escape arrives escaped, never as the character it spells.
    expect(headerSafe('bob%0AX-Auth-User: root')).toBe('bob%250AX-Auth-User: root');
    expect(decodeURIComponent(headerSafe('zoë 100% \n'))).toBe('zoë 100% \n');
    const h = identityFields(someone({ user: '50%off', groups: ['a%2Cb'] }), undefined);
    expect(h.user).toBe('50%25off');
    expect(h.groups).toBe('a%252Cb');
  });

  test('the issuer comes with every identity: apps key a person on issuer and subject', () => {
    expect(identityFields(someone({}), undefined)).toMatchObject({ issuer: 'https://idp.example.com', subject: 's' });
  });
});

describe("idgate's cookies are taken out of what the app receives", () => {
  const config = { cookieName: '__Host-idgate', bindingCookieName: '__Host-idgate_login' };
  test.each([
    ['app=1; __Host-idgate=s%3Aa.b; other=2', 'app=1; other=2'],
    ['__Host-idgate=x;__Host-idgate_login=y', ''],
    ['__host-IDGATE=x; a=1', 'a=1'],
    ['a=1;  b="q;r"', undefined],
    ['idgate=1; __Host-idgate2=2; my__Host-idgate=3', undefined],
    [undefined, undefined],
  ])('%s → %s', (header, expected) => {
    expect(withoutIdgateCookies(header, config)).toBe(expected);
  });

  /** The definition: split on ";", trim each pair, drop the empty ones and ours (names ignoring case), join with "; ". */
  function byDefinition(header: string | undefined): string | undefined {
    if (!header) return undefined;
    const ours = [config.cookieName.toLowerCase(), config.bindingCookieName.toLowerCase()];
    const pairs = header.split(';').map((p) => p.trim()).filter((p) => p !== '');
    const kept = pairs.filter((p) => !ours.includes((p.includes('=') ? p.slice(0, p.indexOf('=')) : p).trim().toLowerCase()));
    return kept.length === pairs.length ? undefined : kept.join('; ');
  }

  test('any header comes out as the split-and-trim definition says (random headers)', () => {
    const piece = fc.oneof(
      fc.constantFrom('__Host-idgate', '__HOST-IDGATE', '__Host-idgate_login', '__host-idgate_LOGIN', '__Host-idgat', '__Host-idgateX', '__Host-\u0130dgate', '__Host-idgate\u212a', '=', ';', ' ', '\t', '\u00a0', '\u2028', '"', 'a', 's%3Ax.y'),
      fc.string({ maxLength: 4 }),
    );
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 16 }), (pieces) => {
        const header = pieces.join('');
        expect(withoutIdgateCookies(header, config)).toBe(byDefinition(header));
      }),
      { numRuns: 5000 },
    );
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
