import { loadConfig } from '../../service/src/config.js';
import { isSameOriginLogout, safeReturnTo } from '../../service/src/browser/login.js';

const { config } = loadConfig({
  IDGATE_ISSUER: 'https://idp.example.com',
  IDGATE_CLIENT_ID: 'c',
  IDGATE_CLIENT_SECRET: 's',
  IDGATE_PUBLIC_URL: 'https://app.example.com',
  IDGATE_COOKIE_SECRETS: 'x'.repeat(32),
  IDGATE_CHECK_SECRETS: 'k'.repeat(32),
  IDGATE_ALLOWED_REDIRECT_HOSTS: '*.apps.example.com,other.example.com',
});

describe('rd (where login returns to)', () => {
  test.each([
    ['/admin/x?y=1', '/admin/x?y=1'],
    ['https://app.example.com/a', 'https://app.example.com/a'],
    ['https://x.apps.example.com/a', 'https://x.apps.example.com/a'],
    ['https://other.example.com/', 'https://other.example.com/'],
    ['https://evil.com/', '/'],
    ['//evil.com/', '/'],
    ['/\\evil.com', '/'],
    ['javascript:alert(1)', '/'],
    ['http://app.example.com/', '/'],
    ['https://user:pw@app.example.com/', '/'],
    ['https://apps.example.com.evil.com/', '/'],
    ['', '/'],
    [undefined, '/'],
    [['/a', '/b'], '/'],
  ])('%p → %p', (rd, expected) => {
    expect(safeReturnTo(rd, config!)).toBe(expected);
  });
});

describe('logout Origin (exact, never a pattern)', () => {
  // The request was sent to https://app.example.com unless the row says otherwise.
  test.each([
    ['the public origin', 'https://app.example.com', 'https://app.example.com', true],
    ['an allowed host posting to itself', 'https://other.example.com', 'https://other.example.com', true],
    ['a wildcard-allowed host posting to itself', 'https://x.apps.example.com', 'https://x.apps.example.com', true],
    ['another allowed host', 'https://other.example.com', 'https://app.example.com', false],
    ['a wildcard-allowed host posting elsewhere', 'https://x.apps.example.com', 'https://app.example.com', false],
    ['the public host over plain http', 'http://app.example.com', 'https://app.example.com', false],
    ['the public host on another port', 'https://app.example.com:8443', 'https://app.example.com', false],
    ['the public origin with a trailing slash', 'https://app.example.com/', 'https://app.example.com', false],
    ['the public origin in capitals', 'https://APP.example.com', 'https://app.example.com', false],
    ['a lookalike suffix', 'https://app.example.com.evil.com', 'https://app.example.com', false],
    ['a sibling subdomain', 'https://evil.example.com', 'https://app.example.com', false],
    ['a host that is not served, posting to itself', 'https://evil.example.com', 'https://evil.example.com', false],
    ['null (sandboxed frame, file: page)', 'null', 'https://app.example.com', false],
    ['an empty Origin', '', 'https://app.example.com', false],
    ['a malformed Origin', 'https://app.example.com:notaport', 'https://app.example.com', false],
    ['an Origin with credentials', 'https://user@app.example.com', 'https://app.example.com', false],
  ])('%s: %p → %p', (_name, origin, requestOrigin, accepted) => {
    expect(isSameOriginLogout({ origin }, requestOrigin, config!)).toBe(accepted);
  });

  test.each([
    [undefined, true],
    ['same-origin', true],
    ['none', true],
    ['same-site', false],
    ['cross-site', false],
  ])('without Origin, Sec-Fetch-Site %p → %p', (site, accepted) => {
    expect(isSameOriginLogout({ 'sec-fetch-site': site }, 'https://app.example.com', config!)).toBe(accepted);
  });
});
