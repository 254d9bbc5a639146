import { DEMO_POLICY, decide, formatDecision, matchRule, normalizePath, type Identity, type RequestFacts } from '../../service/src/policy.js';

const browser = (method: string, uri: string): RequestFacts => ({
  method,
  proto: 'https',
  host: 'app.example.com',
  uri,
  path: normalizePath(uri),
  clientIp: '192.0.2.1',
  requestId: 'r1',
  wantsHtml: true,
  isXhr: false,
});
const api = (method: string, uri: string): RequestFacts => ({ ...browser(method, uri), wantsHtml: false });

const alice: Identity = { via: 'session', subject: 'alice', user: 'alice', email: 'alice@example.com', groups: ['engineering', 'admins'], scopes: [], clientId: undefined, issuer: 'https://idp' };
const bob: Identity = { ...alice, subject: 'bob', user: 'bob', email: 'bob@example.com', groups: ['sales'] };
const bot: Identity = { via: 'token', subject: 'demo-bot', user: 'demo-bot', email: undefined, groups: [], scopes: ['api:read'], clientId: 'demo-bot', issuer: 'https://idp' };
const weakBot: Identity = { ...bot, scopes: ['other'] };

function run(facts: RequestFacts, identity?: Identity, problem?: Parameters<typeof decide>[3]) {
  return formatDecision(decide(facts, matchRule(DEMO_POLICY, facts), identity, problem));
}

describe('the demo policy', () => {
  test.each([
    ['anonymous browser GET / is sent to login', browser('GET', '/'), undefined, '302 login rule=signed-in: no credentials'],
    ['anonymous browser HEAD / is sent to login', browser('HEAD', '/x'), undefined, '302 login rule=signed-in: no credentials'],
    ['anonymous browser POST is sent to login with 303', browser('POST', '/form'), undefined, '303 login rule=signed-in: no credentials'],
    ['anonymous API client gets 401', api('GET', '/'), undefined, '401 unauthenticated rule=signed-in: no credentials'],
    ['anonymous browser on /api/ gets 401, never a redirect', browser('GET', '/api/things'), undefined, '401 unauthenticated rule=api: no credentials'],
    ['/public/ is open to anyone', browser('GET', '/public/index.html'), undefined, '200 public rule=public: public route'],
    ['alice reaches /admin/', browser('GET', '/admin/'), alice, '200 allow rule=admin-area: has group admins'],
    ['bob on /admin/ gets 403', browser('GET', '/admin/users'), bob, '403 deny rule=admin-area: needs group admins'],
    ['bob on /admin without slash gets 403', browser('GET', '/admin'), bob, '403 deny rule=admin-area: needs group admins'],
    ['bob cannot sneak into /admin/ with dot segments', browser('GET', '/public/../admin/x'), bob, '403 deny rule=admin-area: needs group admins'],
    ['bob cannot sneak into /admin/ with double slashes', browser('GET', '//admin//x'), bob, '403 deny rule=admin-area: needs group admins'],
    ['bob cannot sneak into /admin/ with percent-encoding', browser('GET', '/%61dmin/x'), bob, '403 deny rule=admin-area: needs group admins'],
    ['bob reaches the rest', browser('GET', '/'), bob, '200 allow rule=signed-in: authenticated'],
    ['a session reaches /api/', api('GET', '/api/x'), bob, '200 allow rule=api: has signed-in session'],
    ['a token with api:read reaches /api/', api('GET', '/api/x'), bot, '200 allow rule=api: has scope api:read'],
    ['a token without api:read gets 403 on /api/', api('GET', '/api/x'), weakBot, '403 deny rule=api: needs scope api:read'],
    ['an expired session in a browser is a redirect, not a 403', browser('GET', '/'), undefined, '302 login rule=signed-in: the session expired'],
  ])('%s', (_name, facts, identity, expected) => {
    const problem = expected.includes('expired') ? ({ code: 'session_expired', description: 'the session expired' } as const) : undefined;
    expect(run(facts, identity, problem)).toBe(expected);
  });

  test('a failed bearer token in a browser gets 401 invalid_token, never a login page', () => {
    const d = decide(browser('GET', '/'), matchRule(DEMO_POLICY, browser('GET', '/')), undefined, { code: 'invalid_token', description: 'the token expired' });
    expect(d).toMatchObject({ status: 401, error: 'invalid_token', reason: 'the token expired' });
  });

  test('an XHR from a browser gets 401 instead of a redirect', () => {
    const facts = { ...browser('GET', '/'), isXhr: true };
    expect(decide(facts, matchRule(DEMO_POLICY, facts), undefined, undefined).status).toBe(401);
  });

  test('a token lacking a scope is told which scope (insufficient_scope)', () => {
    const facts = api('GET', '/api/x');
    expect(decide(facts, matchRule(DEMO_POLICY, facts), weakBot, undefined)).toMatchObject({ status: 403, missingScope: 'api:read' });
  });

  test('no matching rule denies', () => {
    const facts = browser('GET', '/');
    expect(decide(facts, undefined, alice, undefined)).toMatchObject({ status: 403, rule: 'no-rule' });
  });
});

describe('matchRule', () => {
  const policy = {
    rules: [
      { id: 'wild', host: '*.example.com', pathPrefix: '/w/', access: 'public' as const },
      { id: 'exact', host: 'app.example.com', methods: ['POST'], access: 'authenticated' as const },
      { id: 'any', access: 'authenticated' as const },
    ],
  };
  test('wildcard hosts match subdomains but not the apex', () => {
    expect(matchRule(policy, { host: 'a.example.com', path: '/w/x', method: 'GET' })?.id).toBe('wild');
    expect(matchRule(policy, { host: 'example.com', path: '/w/x', method: 'GET' })?.id).toBe('any');
    expect(matchRule(policy, { host: 'evil-example.com', path: '/w/x', method: 'GET' })?.id).toBe('any');
  });
  test('hosts match with or without a port', () => {
    expect(matchRule(policy, { host: 'app.example.com:8443', path: '/', method: 'POST' })?.id).toBe('exact');
  });
  test('method filters apply', () => {
    expect(matchRule(policy, { host: 'app.example.com', path: '/', method: 'GET' })?.id).toBe('any');
  });
  test('first match wins', () => {
    expect(matchRule(policy, { host: 'app.example.com', path: '/w/', method: 'POST' })?.id).toBe('wild');
  });
});

describe('normalizePath', () => {
  test.each([
    ['/', '/'],
    ['/a/b?x=1', '/a/b'],
    ['/a/./b/', '/a/b/'],
    ['/a/../../b', '/b'],
    ['//a///b', '/a/b'],
    ['/%7Euser/%2F', '/~user/%2F'],
    ['/a/..', '/'],
  ])('%s → %s', (input, output) => {
    expect(normalizePath(input)).toBe(output);
  });
});
