import fc from 'fast-check';
import { parsePolicy } from '../../service/src/policy/policy-file.js';
import { canonicalPath } from '../../service/src/paths.js';
import { acceptedCredentials, allowedMethods, decide, decideWithDestination, formatDecision, matchRule, SIGNED_IN_POLICY, type CredentialProblem, type Identity, type Policy, type RequestFacts } from '../../service/src/policy/policy.js';
import { demoPolicy } from '../support/idgate.js';

const browser = (method: string, uri: string, host = 'app.example.com'): RequestFacts => ({
  method,
  proto: 'https',
  host,
  uri,
  path: canonical(uri),
  clientIp: '192.0.2.1',
  requestId: 'r1',
  wantsHtml: true,
  isXhr: false,
  corsPreflight: false,
});
function canonical(uri: string): string {
  const result = canonicalPath(uri);
  if (!result.ok) throw new Error(`${uri}: ${result.reason}`);
  return result.path;
}
const api = (method: string, uri: string, host?: string): RequestFacts => ({ ...browser(method, uri, host), wantsHtml: false });

const person = (user: string, groups: string[], extra: Partial<Identity> = {}): Identity => ({
  via: 'session',
  subject: `sub-${user}`,
  user,
  email: `${user}@example.com`,
  groups,
  roles: [],
  scopes: [],
  clientId: undefined,
  issuer: 'https://idp',
  fromPrimaryIssuer: true,
  ...extra,
});
const alice = person('alice', ['engineering', 'admins']);
const bob = person('bob', ['sales']);
const bot: Identity = { ...person('demo-bot', []), via: 'token', email: undefined, scopes: ['api:read'], clientId: 'demo-bot' };
const weakBot: Identity = { ...bot, scopes: ['other'] };

function run(policy: Policy, facts: RequestFacts, identity?: Identity, problem?: CredentialProblem): string {
  return formatDecision(decide(facts, matchRule(policy, facts), identity, problem));
}

function compile(yaml: string): Policy {
  const { policy, problems } = parsePolicy(yaml, 'test.yaml');
  if (!policy) throw new Error(problems.join('\n'));
  return policy;
}

describe('the demo policy (policy/demo.yaml)', () => {
  const demo = demoPolicy();
  const expired: CredentialProblem = { code: 'session_expired', description: 'the session expired' };
  test.each([
    ['anonymous browser GET / is sent to login', browser('GET', '/'), undefined, undefined, '302 login rule=signed-in: no credentials'],
    ['anonymous browser HEAD is sent to login', browser('HEAD', '/x'), undefined, undefined, '302 login rule=signed-in: no credentials'],
    ['anonymous browser POST is sent to login with 303', browser('POST', '/form'), undefined, undefined, '303 login rule=signed-in: no credentials'],
    ['anonymous API client gets 401', api('GET', '/'), undefined, undefined, '401 unauthenticated rule=signed-in: no credentials'],
    ['anonymous browser on /api/ gets 401, never a redirect', browser('GET', '/api/things'), undefined, undefined, '401 unauthenticated rule=api: no credentials'],
    ['/public/ is open to anyone', browser('GET', '/public/index.html'), undefined, undefined, '200 public rule=public: public route'],
    ['alice reaches /admin/ on the canary pool', browser('GET', '/admin/'), alice, undefined, '200 allow rule=admin-area backend=canary: has group admins'],
    ['bob on /admin/ gets 403', browser('GET', '/admin/users'), bob, undefined, '403 deny rule=admin-area: needs group admins'],
    ['bob on /admin without slash gets 403', browser('GET', '/admin'), bob, undefined, '403 deny rule=admin-area: needs group admins'],
    ['bob cannot sneak into /admin/ with dot segments', browser('GET', '/public/../admin/x'), bob, undefined, '403 deny rule=admin-area: needs group admins'],
    ['bob cannot sneak into /admin/ with double slashes', browser('GET', '//admin//x'), bob, undefined, '403 deny rule=admin-area: needs group admins'],
    ['bob cannot sneak into /admin/ with percent-encoding', browser('GET', '/%61dmin/x'), bob, undefined, '403 deny rule=admin-area: needs group admins'],
    ['bob reaches the rest on the default pool', browser('GET', '/'), bob, undefined, '200 allow rule=signed-in: authenticated'],
    ['alice reaches the rest on the canary pool', browser('GET', '/'), alice, undefined, '200 allow rule=signed-in backend=canary: authenticated'],
    ['a session reaches /api/', api('GET', '/api/x'), bob, undefined, '200 allow rule=api: has signed-in session'],
    ['a token with api:read reaches /api/', api('GET', '/api/x'), bot, undefined, '200 allow rule=api: has scope api:read'],
    ['a token without api:read gets 403 on /api/', api('GET', '/api/x'), weakBot, undefined, '403 deny rule=api: needs scope api:read'],
    ['an expired session in a browser is a redirect, not a 403', browser('GET', '/'), undefined, expired, '302 login rule=signed-in: the session expired'],
    ['an expired session of an API client is a 401, not a 403', api('GET', '/'), undefined, expired, '401 unauthenticated rule=signed-in: the session expired'],
  ])('%s', (_name, facts, identity, problem, expected) => {
    expect(run(demo, facts, identity, problem)).toBe(expected);
  });

  test('a failed bearer token in a browser gets 401 invalid_token, never a login page', () => {
    const facts = browser('GET', '/');
    expect(decide(facts, matchRule(demo, facts), undefined, { code: 'invalid_token', description: 'the token expired' })).toMatchObject({ status: 401, error: 'invalid_token' });
  });

  test('an XHR from a browser gets 401 instead of a redirect', () => {
    const facts = { ...browser('GET', '/'), isXhr: true };
    expect(decide(facts, matchRule(demo, facts), undefined, undefined).status).toBe(401);
  });

  test('a token lacking a scope is told which scope (insufficient_scope)', () => {
    const facts = api('GET', '/api/x');
    expect(decide(facts, matchRule(demo, facts), weakBot, undefined)).toMatchObject({ status: 403, missingScope: 'api:read' });
  });
});

describe('matching', () => {
  const policy = compile(`
rules:
  - id: wild
    host: "*.example.com"
    path: /w/
    public: true
  - id: exact-post
    host: app.example.com
    methods: [post]
    authenticated: true
  - id: port
    host: app.example.com:8443
    path: /p/
    deny: true
    description: closed on this port
  - id: reports
    path_regex: /reports/[0-9]+$
    allow: {roles: [auditor]}
  - id: last
    path: /
    authenticated: true
`);
  const at = (host: string, path: string, method = 'GET') => matchRule(policy, { host, path, method })?.id;

  test('wildcard hosts match subdomains but neither the apex nor look-alikes', () => {
    expect(at('a.example.com', '/w/x')).toBe('wild');
    expect(at('a.b.example.com:8080', '/w/x')).toBe('wild');
    expect(at('example.com', '/w/x')).toBe('last');
    expect(at('evil-example.com', '/w/x')).toBe('last');
  });
  test('a host without a port matches any port; a host with a port only that one', () => {
    expect(at('app.example.com:8443', '/', 'POST')).toBe('exact-post');
    expect(at('app.example.com:8443', '/p/x')).toBe('port');
    expect(at('app.example.com', '/p/x')).toBe('last');
  });
  test('method filters apply, written in any case', () => {
    expect(at('app.example.com', '/', 'GET')).toBe('last');
    expect(at('app.example.com', '/', 'POST')).toBe('exact-post');
  });
  test('first match wins', () => {
    expect(at('app.example.com', '/w/', 'POST')).toBe('wild');
  });
  test('regular expressions are anchored at the start of the path', () => {
    expect(at('x.test', '/reports/42')).toBe('reports');
    expect(at('x.test', '/reports/42/edit')).toBe('last');
    expect(at('x.test', '/x/reports/42')).toBe('last');
  });
  test('a deny rule answers its description', () => {
    expect(run(policy, browser('GET', '/p/x', 'app.example.com:8443'), alice)).toBe('403 deny rule=port: closed on this port');
  });
  test('no match is a deny by default, or any signed-in user when default is authenticated', () => {
    const strict = compile('rules: [{id: only, path: /only/, authenticated: true}]');
    expect(run(strict, browser('GET', '/else'), alice)).toBe('403 deny rule=no-rule: no policy rule matches this request');
    const lenient = compile('default: authenticated\nrules: [{id: only, path: /only/, public: true}]');
    expect(run(lenient, browser('GET', '/else'), alice)).toBe('200 allow rule=default: authenticated');
  });
});

describe('conditions', () => {
  const policy = compile(`
rules:
  - id: all-groups
    path: /both/
    allow: {groups_all: [engineering, admins]}
  - id: roles
    path: /roles/
    allow: {roles: [editor, owner]}
  - id: domain
    path: /domain/
    allow: {email_domains: [Example.com]}
  - id: emails
    path: /emails/
    allow: {emails: [ALICE@example.com]}
  - id: clients
    path: /clients/
    allow: {clients: [ci-bot], scopes_all: [deploy, read]}
  - id: subjects
    path: /subjects/
    allow: {subjects: [sub-bob]}
  - id: tokens-only
    path: /tokens/
    allow: {via: token}
`);
  test.each([
    ['all of two groups: alice has both', '/both/', alice, 'allow'],
    ['all of two groups: one is not enough', '/both/', person('carol', ['engineering']), 'needs groups engineering and admins'],
    ['roles: any of', '/roles/', person('dan', [], { roles: ['owner'] }), 'allow'],
    ['roles: missing', '/roles/', alice, 'needs role editor or owner'],
    ['email domain, case-insensitive', '/domain/', person('Eve', [], { email: 'Eve@EXAMPLE.com' }), 'allow'],
    ['email domain is a domain, not a suffix', '/domain/', person('mallory', [], { email: 'm@evilexample.com' }), 'needs an email at example.com'],
    ['no email at all', '/domain/', person('x', [], { email: undefined }), 'needs an email at example.com'],
    ['emails, case-insensitive', '/emails/', alice, 'allow'],
    ['clients with all scopes', '/clients/', { ...bot, clientId: 'ci-bot', scopes: ['deploy', 'read', 'x'] }, 'allow'],
    ['clients missing a scope', '/clients/', { ...bot, clientId: 'ci-bot', scopes: ['deploy'] }, 'needs scopes deploy and read'],
    // A rule whose only condition asks for a token accepts no session: the session is told so.
    ['a session is not a client', '/clients/', alice, 'needs a bearer token'],
    ['subjects', '/subjects/', bob, 'allow'],
    ['via token', '/tokens/', alice, 'needs a bearer token'],
    ['empty claims deny, never crash', '/both/', person('nobody', []), 'needs groups engineering and admins'],
  ])('%s', (_name, uri, identity, expected) => {
    const decision = decide(api('GET', uri), matchRule(policy, { host: 'h', path: uri, method: 'GET' }), identity as Identity, undefined);
    expect(decision.outcome === 'allow' ? 'allow' : decision.reason).toBe(expected);
  });

  test('a huge group list is matched correctly', () => {
    const many = person('big', [...Array.from({ length: 5000 }, (_, i) => `g${i}`), 'admins', 'engineering']);
    expect(decide(api('GET', '/both/'), matchRule(policy, { host: 'h', path: '/both/', method: 'GET' }), many, undefined).outcome).toBe('allow');
  });
});

describe('who counts as signed in', () => {
  const partner: Identity = { ...bot, issuer: 'https://partner.example.com', fromPrimaryIssuer: false, clientId: 'partner-bot' };
  const adminBot: Identity = { ...bot, groups: ['admins'], scopes: [] };
  const policy = compile(`
rules:
  - id: sessions
    path: /sessions/
    authenticated: true
  - id: both
    path: /both/
    authenticated: true
    accept: [session, token]
  - id: tokens
    path: /tokens/
    authenticated: true
    accept: [token]
  - id: admins-or-scope
    path: /mixed/
    allow_any: [{groups: [admins]}, {scopes: [deploy]}]
  - id: admins-any-credential
    path: /admins/
    accept: [session, token]
    allow: {groups: [admins]}
  - id: partner
    path: /partner/
    api: true
    allow: {issuers: [https://partner.example.com], scopes: [api:read]}
  - id: closed
    path: /closed/
    deny: true
`);
  const on = (facts: RequestFacts, identity?: Identity) => run(policy, facts, identity);

  test.each([
    ['authenticated', '/sessions/', { session: true, token: false }],
    ['authenticated with accept: [session, token]', '/both/', { session: true, token: true }],
    ['authenticated with accept: [token]', '/tokens/', { session: false, token: true }],
    ['a condition without token keys beside one with scopes', '/mixed/', { session: true, token: true }],
    ['a condition naming an issuer and scopes', '/partner/', { session: false, token: true }],
    ['deny', '/closed/', { session: true, token: false }],
  ])('%s accepts %j', (_name, path, expected) => {
    expect(acceptedCredentials(matchRule(policy, { host: 'h', path, method: 'GET' })!)).toEqual(expected);
  });

  test.each([
    ['the built-in policy without a policy file', SIGNED_IN_POLICY, 'signed-in'],
    ['the demo policy\'s catch-all', demoPolicy(), 'signed-in'],
    ['the demo policy\'s /admin/ (groups only)', demoPolicy(), 'admin-area'],
  ])('a bearer token is nobody on %s: 401 for an API client, login for a browser', (_name, p, id) => {
    const path = id === 'admin-area' ? '/admin/x' : '/x';
    const token = id === 'admin-area' ? adminBot : bot;
    expect(run(p, api('GET', path), token)).toBe(`401 unauthenticated rule=${id}: a bearer token does not count on this route; it needs a signed-in session`);
    expect(run(p, { ...browser('GET', path), isXhr: true }, token)).toMatch(/^401 unauthenticated/);
    expect(run(p, browser('GET', path), token)).toMatch(/^302 login/);
    expect(run(p, api('GET', path), id === 'admin-area' ? alice : bob)).toMatch(/^200 allow/);
  });

  test('the check says why when only a token came where tokens do not count', () => {
    const facts = api('GET', '/x');
    const problem: CredentialProblem = { code: 'token_not_accepted', description: 'a bearer token does not count on this route; it needs a signed-in session' };
    expect(decide(facts, matchRule(SIGNED_IN_POLICY, facts), undefined, problem)).toMatchObject({ status: 401, error: undefined });
  });

  test.each([
    ['a session on a plain authenticated rule', '/sessions/', bob, '200 allow rule=sessions: authenticated'],
    ['a token where accept lists token', '/both/', bot, '200 allow rule=both: authenticated'],
    ['a session where accept lists session', '/both/', bob, '200 allow rule=both: authenticated'],
    ['a session on a tokens-only rule: 403, never a login loop', '/tokens/', bob, '403 deny rule=tokens: needs a bearer token'],
    ['a token with the group, where the group condition is for sessions', '/mixed/', adminBot, '403 deny rule=admins-or-scope: needs scope deploy'],
    ['a session with the group', '/mixed/', alice, '200 allow rule=admins-or-scope: has group admins'],
    ['a token with the group, where accept lets tokens meet any condition', '/admins/', adminBot, '200 allow rule=admins-any-credential: has group admins'],
    ['a token without the group, where accept lets tokens in', '/admins/', bot, '403 deny rule=admins-any-credential: needs group admins'],
  ])('%s', (_name, path, identity, expected) => {
    expect(on(api('GET', path), identity)).toBe(expected);
  });

  test.each([
    ['a secondary issuer\'s token never satisfies a rule written for the primary issuer', '/api/x', partner, '403 deny rule=api: needs an identity from the primary issuer (IDGATE_ISSUER)'],
    ['nor an authenticated rule that accepts tokens', '/both/', partner, '403 deny rule=both: needs an identity from the primary issuer (IDGATE_ISSUER)'],
    ['a rule naming the issuer lets its token in', '/partner/', partner, '200 allow rule=partner: has issuer https://partner.example.com, scope api:read'],
    ['and keeps the primary issuer\'s token out', '/partner/', bot, '403 deny rule=partner: needs issuer https://partner.example.com'],
  ])('%s', (_name, path, identity, expected) => {
    expect(run(path.startsWith('/api/') ? demoPolicy() : policy, api('GET', path), identity)).toBe(expected);
  });
});

describe('canonical paths', () => {
  test.each([
    ['/', '/'],
    ['/a/b?x=1', '/a/b'],
    ['/a/./b/', '/a/b/'],
    ['/a/b/../../c', '/c'],
    ['//a///b', '/a/b'],
    ['/%7Euser/%c3%a9', '/~user/%C3%A9'],
    ['/a/..', '/'],
    ['/public/%2e%2e/admin/', '/admin/'],
    ['/caf%c3%a9/%E6%96%87', '/caf%C3%A9/%E6%96%87'],
  ])('%s is matched and forwarded as %s', (input, output) => {
    expect(canonical(input)).toBe(output);
  });

  test.each([
    ['/public/..;/admin/secret', 'semicolon'],
    ['/public/..%2fadmin/', 'encoded slash'],
    ['/admin%5cx', 'encoded backslash'],
    ['/admin\\x', 'backslash'],
    ['/%252e%252e/admin', 'double encoding'],
    ['/public/%00/../admin', 'control'],
    ['/admin./', 'dot or a space'],
    ['/admin%20/', 'dot or a space'],
    ['/../admin/', 'above the root'],
    ['/%C0%AF', 'not UTF-8'],
    ['/public%EF%BC%8F..%EF%BC%8Fadmin', 'Unicode folding'],
    ['/a%zz', 'malformed'],
    ['/cafe%CC%81/', 'normal form'],
    ['/%EF%BD%B6/', 'normal form'],
  ])('%s is refused (%s)', (input, why) => {
    const result = canonicalPath(input);
    expect(result.ok).toBe(false);
    expect(result.ok ? '' : result.reason).toContain(why);
  });
});

describe('matching ignores letter case unless a rule says otherwise', () => {
  const policy = compile(`rules:
  - {id: admin, path: /admin/, allow: {groups: [admins]}}
  - {id: exact, path: /Reports/, case_sensitive: true, deny: true}
  - {id: rx, path_regex: "/files/[a-z]+$", deny: true}
  - {id: get-only, path: /feed, methods: [GET], public: true}
  - {id: cafe, path: /caf%C3%A9/, deny: true}
  - {id: host, host: app.example.com, path: /host/, public: true}
  - {id: rest, authenticated: true}
`);
  test.each([
    ['GET', '/ADMIN/', 'admin'],
    ['GET', '/aDmIn/users', 'admin'],
    ['GET', '/reports/', 'rest'],
    ['GET', '/Reports/x', 'exact'],
    ['GET', '/FILES/ABC', 'rx'],
    ['HEAD', '/feed', 'get-only'],
    ['GET', '/CAF%C3%89/menu', 'cafe'],
    ['GET', '/caf%c3%a9/', 'cafe'],
    ['POST', '/feed', 'rest'],
  ])('%s %s matches rule %s', (method, path, id) => {
    expect(matchRule(policy, { host: 'h', path, method })?.id).toBe(id);
  });
  test('a trailing dot in the host matches the host rule', () => {
    expect(matchRule(policy, { host: 'app.example.com.', path: '/host/', method: 'GET' })?.id).toBe('host');
    expect(matchRule(policy, { host: 'app.example.com.:8443', path: '/host/', method: 'GET' })?.id).toBe('host');
  });
});

describe('path_regex', () => {
  test('a quantifier right after the literal start is taken into account by the index', () => {
    const policy = compile(`rules:
  - {id: optional-slash, path_regex: "/x/?y", deny: true}
  - {id: rest, authenticated: true}
`);
    expect(matchRule(policy, { host: 'h', path: '/xy', method: 'GET' })?.id).toBe('optional-slash');
    expect(matchRule(policy, { host: 'h', path: '/x/y', method: 'GET' })?.id).toBe('optional-slash');
  });

  test('a pattern that would backtrack forever answers at once on a long path (RE2)', () => {
    const policy = compile(`rules:
  - {id: evil, path_regex: "/(a+)+$", deny: true}
  - {id: rest, authenticated: true}
`);
    expect(matchRule(policy, { host: 'h', path: `/${'a'.repeat(4000)}!`, method: 'GET' })?.id).toBe('rest');
  });
});

describe('the rule index', () => {
  test('picks exactly the rule a plain first-to-last scan picks', () => {
    const yaml = `rules:
  - {id: a, path: /admin/, allow: {groups: [admins]}}
  - {id: b, path: /adm, public: true}
  - {id: c, path_regex: "/reports/[0-9]+$", authenticated: true}
  - {id: d, path_regex: "/(x|y)/", authenticated: true}
  - {id: e, path: /api/v1/, host: "*.example.com", api: true, authenticated: true}
  - {id: f, path: /, methods: [POST], authenticated: true}
  - {id: g, path: /static/, public: true}
  - {id: h, path_regex: "/static/secret", deny: true}
  - {id: i, path: /orders/, format_suffix: true, deny: true}
  - {id: j, path_regex: "/invoices/[0-9]+$", format_suffix: true, deny: true}
`;
    const indexed = compile(yaml);
    const plain: Policy = { rules: indexed.rules, defaultAccess: indexed.defaultAccess, source: 'plain' };
    const paths = ['/', '/admin', '/admin/', '/admin/x', '/administrators', '/adm', '/reports/1', '/reports/x', '/x/', '/y/z', '/api/v1/a', '/api/v2/', '/static/a', '/static/secret', '/other', '/orders.json', '/orders.json/', '/orders/7.xml', '/invoices/7.pdf/', '/invoices.json', '/reports/1/', '/reports.json'];
    for (const path of paths) {
      for (const method of ['GET', 'POST']) {
        for (const host of ['a.example.com', 'b.test']) {
          expect(matchRule(indexed, { host, path, method })?.id).toBe(matchRule(plain, { host, path, method })?.id);
        }
      }
    }
  });
});

describe('methods', () => {
  const policy = compile(
    'rules:\n' +
      '  - id: dav\n    path: /dav/\n    methods: [GET, PROPFIND, MOVE]\n    authenticated: true\n' +
      '  - id: cors\n    path: /cors/\n    cors_preflight: pass\n    authenticated: true\n' +
      '  - id: pub\n    path: /public/\n    public: true\n' +
      '  - id: rest\n    authenticated: true\n',
  );
  const preflight = (uri: string): RequestFacts => ({ ...api('OPTIONS', uri), corsPreflight: true });
  test.each([
    ['the usual methods match rules without methods', api('PATCH', '/x'), bob, '200 allow rule=rest: authenticated'],
    ['OPTIONS is a usual method', api('OPTIONS', '/x'), bob, '200 allow rule=rest: authenticated'],
    ['a method outside them matches only a rule that names it', api('PROPFIND', '/dav/x'), bob, '200 allow rule=dav: authenticated'],
    ['elsewhere it is 405, also on a public rule', api('PROPFIND', '/public/x'), undefined, '405 refused rule=no-rule: no policy rule allows the method PROPFIND here'],
    ['an unknown verb is 405', api('FOO', '/x'), bob, '405 refused rule=no-rule: no policy rule allows the method FOO here'],
    ['CONNECT is 405 whatever the rule', api('CONNECT', '/x'), bob, '405 refused rule=no-rule: CONNECT is never allowed'],
    ['TRACE is 405 even on a public rule', api('TRACE', '/public/x'), undefined, '405 refused rule=no-rule: TRACE is never allowed'],
    ['a preflight on a cors_preflight: pass rule goes to the app unjudged', preflight('/cors/x'), undefined, '200 public rule=cors: CORS preflight (cors_preflight: pass)'],
    ['with an identity too: it is never judged as a person', preflight('/cors/x'), bob, '200 public rule=cors: CORS preflight (cors_preflight: pass)'],
    ['a preflight elsewhere is judged as any OPTIONS', preflight('/x'), undefined, '401 unauthenticated rule=rest: no credentials'],
    ['an OPTIONS that is not a preflight is judged on the cors rule', api('OPTIONS', '/cors/x'), undefined, '401 unauthenticated rule=cors: no credentials'],
  ] as [string, RequestFacts, Identity | undefined, string][])('%s', (_, facts, identity, expected) => {
    expect(run(policy, facts, identity)).toBe(expected);
  });

  test('a method override counts only on rules that allow one, and the method it names is the one judged', () => {
    const overrides = compile(
      'rules:\n' +
        '  - id: items-delete\n    path: /items/\n    methods: [DELETE]\n    method_override: true\n    allow: {groups: [admins]}\n' +
        '  - id: items\n    path: /items/\n    method_override: true\n    authenticated: true\n' +
        '  - id: rest\n    authenticated: true\n',
    );
    const overridden = (method: string, from: string, uri: string): RequestFacts => ({ ...api(method, uri), overriddenFrom: from });
    expect(run(overrides, overridden('DELETE', 'POST', '/items/7'), bob)).toBe('403 deny rule=items-delete: needs group admins');
    expect(run(overrides, overridden('DELETE', 'POST', '/items/7'), alice)).toBe('200 allow rule=items-delete: has group admins');
    expect(run(overrides, overridden('PUT', 'POST', '/items/7'), bob)).toBe('200 allow rule=items: authenticated');
    expect(run(overrides, overridden('DELETE', 'POST', '/x'), bob)).toBe('400 refused rule=rest: a method override (_method=DELETE) counts only on rules with method_override: true');
    expect(run(overrides, overridden('CONNECT', 'POST', '/items/7'), bob)).toBe('405 refused rule=no-rule: CONNECT is never allowed');
  });

  test("WebDAV's Destination is judged as a second path: the caller needs both", () => {
    const dav = compile(
      'rules:\n' +
        '  - id: dav-admin\n    path: /dav/admin/\n    methods: [GET, MOVE, COPY]\n    allow: {groups: [admins]}\n' +
        '  - id: dav\n    path: /dav/\n    methods: [GET, MOVE, COPY]\n    authenticated: true\n' +
        '  - id: pub\n    path: /public/\n    public: true\n',
    );
    const move = (from: string, to: string): RequestFacts => ({ ...api('MOVE', from), destination: to });
    const judged = (facts: RequestFacts, identity?: Identity) =>
      formatDecision(decideWithDestination(facts, matchRule(dav, facts), matchRule(dav, { ...facts, path: facts.destination! }), identity, undefined));
    expect(judged(move('/dav/a', '/dav/b'), bob)).toBe('200 allow rule=dav: authenticated');
    expect(judged(move('/dav/a', '/dav/admin/b'), bob)).toBe('403 deny rule=dav-admin: the Destination /dav/admin/b: needs group admins');
    expect(judged(move('/dav/admin/a', '/dav/b'), bob)).toBe('403 deny rule=dav-admin: needs group admins');
    expect(judged(move('/dav/a', '/dav/admin/b'), alice)).toBe('200 allow rule=dav: authenticated');
    expect(judged(move('/dav/a', '/public/b'), bob)).toBe('405 refused rule=no-rule: the Destination /public/b: no policy rule allows the method MOVE here');
  });

  test("a 405's Allow names exactly the methods that are not refused with 405 there", () => {
    const usual = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];
    const at = (path: string, destination?: string) => allowedMethods(policy, { host: 'app.example.com', path, destination });
    expect(at('/dav/x')).toEqual([...usual, 'PROPFIND', 'MOVE']);
    expect(at('/public/x')).toEqual(usual);
    expect(at('/dav/x', '/public/y')).toEqual(usual);
    // Held to the decision itself: every method named (and a few more) is 405 exactly when it is not listed.
    for (const path of ['/dav/x', '/public/x', '/x', '/cors/y']) {
      for (const method of [...usual, 'PROPFIND', 'MOVE', 'LOCK', 'FOO']) {
        const status = run(policy, api(method, path), bob).split(' ')[0];
        expect({ path, method, refused: status === '405' }).toEqual({ path, method, refused: !at(path).includes(method) });
      }
    }
  });

  test('a method outside the usual ones never falls to default: authenticated', () => {
    const open = compile('default: authenticated\nrules:\n  - id: pub\n    path: /public/\n    public: true\n');
    expect(run(open, api('PROPFIND', '/x'), bob)).toBe('405 refused rule=no-rule: no policy rule allows the method PROPFIND here');
    expect(run(open, api('DELETE', '/x'), bob)).toBe('200 allow rule=default: authenticated');
  });
});

test('the index agrees with a plain scan on a generated 500-rule policy', async () => {
  const { policyWithRules } = await import('../../bench/policy-matching.js');
  const indexed = compile(policyWithRules(500));
  const plain: Policy = { rules: indexed.rules, defaultAccess: indexed.defaultAccess, source: 'plain' };
  for (let i = 0; i < 2000; i++) {
    const n = (i * 7919) % 500;
    const host = [`x.team${n}.example.com`, `app${n}.example.com`, 'other.test'][i % 3]!;
    const path = [`/svc${n}/a`, `/reports/${n}/7`, `/api/v${n}/x`, `/static${n}/f`, '/', `/reports/${n}/x`][i % 6]!;
    expect(matchRule(indexed, { host, path, method: i % 2 ? 'GET' : 'POST' })?.id).toBe(matchRule(plain, { host, path, method: i % 2 ? 'GET' : 'POST' })?.id);
  }
});

// A path and the spellings common frameworks route to the same handler get one decision.
describe('one route, one decision', () => {
  const reports = (extra = '') => compile(`rules:
  - id: reports
    path_regex: /reports/[0-9]+$
    allow: {roles_all: [auditor, finance]}${extra}
  - {id: rest, authenticated: true}
`);
  const ruleFor = (policy: Policy, path: string) => matchRule(policy, { host: 'h', path, method: 'GET' })?.id;

  test("the docs' path_regex /reports/[0-9]+$ matches /reports/12 with and without a trailing slash", () => {
    expect(['/reports/12', '/reports/12/', '/REPORTS/12/'].map((p) => ruleFor(reports(), p))).toEqual(['reports', 'reports', 'reports']);
    expect(['/reports/x', '/reports/12/x', '/reports/'].map((p) => ruleFor(reports(), p))).toEqual(['rest', 'rest', 'rest']);
  });

  test('a path_regex written with a closing slash matches the path without it too', () => {
    const policy = compile('rules:\n  - {id: slash, path_regex: "/reports/[0-9]+/$", deny: true}\n  - {id: rest, authenticated: true}\n');
    expect(['/reports/12', '/reports/12/'].map((p) => ruleFor(policy, p))).toEqual(['slash', 'slash']);
  });

  test('a .format suffix is the same route only where the rule says format_suffix: true', () => {
    expect(['/reports/12.json', '/reports/12.json/'].map((p) => ruleFor(reports(), p))).toEqual(['rest', 'rest']);
    const formats = reports('\n    format_suffix: true');
    expect(['/reports/12.json', '/reports/12.json/', '/reports/12.tar.gz', '/reports/x.json', '/reports/12/.json'].map((p) => ruleFor(formats, p))).toEqual(['reports', 'reports', 'rest', 'rest', 'rest']);
  });

  test('a prefix rule with format_suffix covers /admin.json (found by the index under "admin")', () => {
    const policy = compile('rules:\n  - {id: admin, path: /admin/, format_suffix: true, deny: true}\n  - {id: rest, authenticated: true}\n');
    expect(['/admin.json', '/admin.json/', '/Admin.xml', '/admin/users.json', '/administrators.json'].map((p) => ruleFor(policy, p))).toEqual(['admin', 'admin', 'admin', 'admin', 'rest']);
  });

  test('any path gets the rule of its spelling with the trailing slash taken off or put on, and with format_suffix, of its .format spelling', () => {
    const policy = compile(`rules:
  - {id: r1, path_regex: "/a/[0-9]+$", format_suffix: true, deny: true}
  - {id: r2, path_regex: "/a/(b|c)/?$", format_suffix: true, deny: true}
  - {id: r3, path_regex: "/b/[a-z]+/c$", format_suffix: true, case_sensitive: true, deny: true}
  - {id: r4, path: /c/, format_suffix: true, deny: true}
  - {id: r5, path: /d, format_suffix: true, deny: true}
  - {id: r6, path_regex: "/e", format_suffix: true, deny: true}
  - {id: rest, authenticated: true}
`);
    const segment = fc.constantFrom('a', 'b', 'c', 'd', 'e', 'C', '1', '42', 'x-y', 'a:b', '$batch');
    fc.assert(
      fc.property(fc.array(segment, { minLength: 1, maxLength: 4 }), fc.constantFrom('json', 'xml', 'csv'), (segments, format) => {
        const path = `/${segments.join('/')}`;
        const rule = ruleFor(policy, path);
        const spellings = [`${path}/`, `${path}.${format}`, `${path}.${format}/`];
        expect({ path, rules: spellings.map((p) => ruleFor(policy, p)) }).toEqual({ path, rules: spellings.map(() => rule) });
      }),
      { numRuns: 2000 },
    );
  });
});
