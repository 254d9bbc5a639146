import { loadConfig } from '../../service/src/config.js';
import { safeReturnTo } from '../../service/src/login.js';

const { config } = loadConfig({
  IDGATE_ISSUER: 'https://idp.example.com',
  IDGATE_CLIENT_ID: 'c',
  IDGATE_CLIENT_SECRET: 's',
  IDGATE_PUBLIC_URL: 'https://app.example.com',
  IDGATE_COOKIE_SECRETS: 'x'.repeat(32),
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
