// The hostile-path table (one path, decided and forwarded), through real HAProxy in both
// transports against the echoing upstream. Requests are written byte-exact (raw-http), since fetch()
// would normalise the very spellings under test.
//
// Each row is checked against an invariant rather than one status: either the request never reaches
// the app (400 for a spelling with no safe single meaning, or the policy's own 302/303/401/403), or it
// reaches the app as exactly its canonical path (test/support/path-oracle.ts, written from the design
// apart from service/src/paths.ts), and no way a common app server reads that path (cut `;params`,
// decode `%2F`, backslash as slash, double decoding, IIS trailing dots, case, NFKC...) leads to a
// route the caller may not open under the demo policy.
import crypto from 'node:crypto';
import fc from 'fast-check';
import type { Stack } from '../../stack/stack.js';
import { withSignedInStack } from '../support/signed-in-stack.js';
import { rawRequest } from '../support/raw-http.js';
import { forbiddenReadings, hostilePath, referenceCanonical, type Caller } from '../support/path-oracle.js';
import type { EchoedRequest } from '../../stack/upstream.js';

type Client = 'anonymous browser' | 'anonymous API' | 'bob' | 'alice';
const CLIENTS: Client[] = ['anonymous browser', 'anonymous API', 'bob', 'alice'];
const CALLER: Record<Client, Caller> = { 'anonymous browser': 'anonymous', 'anonymous API': 'anonymous', bob: 'bob', alice: 'alice' };
/** What the app may answer without having seen the request: a refusal, or the policy's own answers. */
const NOT_FORWARDED = [400, 302, 303, 401, 403];
const BROWSER_ACCEPT = 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8';

type Echo = EchoedRequest;

interface Outcome {
  status: number;
  body: string;
  /** The upstream's echo of this very request, or undefined when it never reached the app. */
  echo?: Echo;
}

let stack: Stack;
const sessionCookies: Partial<Record<Client, string>> = {};

/** One request as `client`, target byte-exact, tagged with a marker so its echo is recognised. */
async function send(client: Client, target: string, method = 'GET', extra: [string, string][] = []): Promise<Outcome> {
  const marker = crypto.randomUUID();
  const headers: [string, string][] = [
    ['Accept', client === 'anonymous API' ? 'application/json' : BROWSER_ACCEPT],
    ['X-Edge-Probe', marker],
    ...extra,
  ];
  const cookie = sessionCookies[client];
  if (cookie) headers.push(['Cookie', cookie]);
  const res = await rawRequest(stack.ports.front, method, target, headers);
  let echo: Echo | undefined;
  try {
    const body = JSON.parse(res.body) as Echo;
    // HAProxy's and idgate's own answers are never this shape.
    if (typeof body.server === 'string' && typeof body.path === 'string' && body.headers) echo = body;
  } catch {
    // not the upstream
  }
  if (echo && echo.headers['x-edge-probe'] !== marker) throw new Error(`echo of another request for ${target}: ${res.body}`);
  return { status: res.status, body: res.body, echo };
}

/** The path and query of a request-target, also for absolute-form (`http://host/p?q` -> `/p?q`). */
function originForm(target: string): string {
  const absolute = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?]*/.exec(target);
  if (!absolute) return target;
  const rest = target.slice(absolute[0].length);
  return rest.startsWith('/') ? rest : `/${rest}`;
}

/** What is wrong with `outcome` for `client` asking for `target` (empty: the invariant holds). */
function problems(client: Client, target: string, outcome: Outcome): string[] {
  if (!outcome.echo) {
    return NOT_FORWARDED.includes(outcome.status) ? [] : [`answered ${outcome.status} without reaching the app (${outcome.body.slice(0, 100)}): expected 400 or the policy's 302/303/401/403`];
  }
  const found: string[] = [];
  const got = originForm(outcome.echo.path);
  const reference = referenceCanonical(originForm(target));
  if (!reference.ok) {
    found.push(`reached the app as ${JSON.stringify(outcome.echo.path)}, but the design refuses it (${reference.reason})`);
  } else {
    const canonical = reference.path + (reference.query ? `?${reference.query}` : '');
    if (got !== canonical) found.push(`the app got ${JSON.stringify(outcome.echo.path)}, not the canonical ${JSON.stringify(canonical)}`);
  }
  const q = got.indexOf('?');
  for (const reading of forbiddenReadings(CALLER[client], q < 0 ? got : got.slice(0, q)).slice(0, 3)) {
    found.push(`the app got ${JSON.stringify(outcome.echo.path)}: ${reading}, which ${client} may not open`);
  }
  return found;
}

/** Sends `target` as every client in parallel; returns the problems found, by client. */
async function probeAll(target: string, clients: Client[] = CLIENTS, method = 'GET', extra: [string, string][] = []): Promise<Record<string, string[]>> {
  const results = await Promise.all(clients.map(async (client) => [client, problems(client, target, await send(client, target, method, extra))] as const));
  return Object.fromEntries(results.filter(([, p]) => p.length));
}

// Every reading of a path a server or framework may make. `why` names the reading; every row is sent as every client.
const HOSTILE_PATHS: { why: string; target: string }[] = [
  // dot segments, plain and percent-encoded
  { why: 'dot segments', target: '/public/../admin/' },
  { why: 'dot segments', target: '/public/./../admin/secret' },
  { why: 'dot segments', target: '/public/x/../../admin/' },
  { why: 'dot segments', target: '/./admin/' },
  { why: 'dot segments', target: '/public/x/..' },
  { why: 'encoded dot segments', target: '/public/%2e%2e/admin/' },
  { why: 'encoded dot segments', target: '/public/%2E%2E/admin/' },
  { why: 'encoded dot segments', target: '/public/.%2e/admin/' },
  { why: 'encoded dot segments', target: '/public/%2e./admin/' },
  { why: 'encoded dot segments', target: '/public/%2e/x' },
  // ; path parameters (Tomcat, Jetty, Spring)
  { why: 'path parameters', target: '/public/..;/admin/secret' },
  { why: 'path parameters', target: '/admin;x/secret' },
  { why: 'path parameters', target: '/public;/../admin' },
  { why: 'path parameters', target: '/public/;/../../admin/' },
  { why: 'path parameters', target: '/admin;/' },
  { why: 'path parameters', target: '/public/x;jsessionid=1' },
  { why: 'encoded path parameters', target: '/public/..%3B/admin/' },
  { why: 'encoded path parameters', target: '/admin%3bx/' },
  // %2F and %5C decoded to separators
  { why: 'encoded slash', target: '/public/..%2fadmin/' },
  { why: 'encoded slash', target: '/public/..%2Fadmin/' },
  { why: 'encoded slash', target: '/public%2F..%2Fadmin' },
  { why: 'encoded slash', target: '/admin%2Fx' },
  { why: 'encoded backslash', target: '/public/..%5cadmin/' },
  { why: 'encoded backslash', target: '/public/..%5Cadmin/' },
  { why: 'encoded backslash', target: '/public%5c..%5cadmin' },
  // backslash read as a slash
  { why: 'raw backslash', target: '/public/..\\admin/' },
  { why: 'raw backslash', target: '/public\\..\\admin\\' },
  // %25: double decoding
  { why: 'double encoding', target: '/public/%252e%252e/admin/' },
  { why: 'double encoding', target: '/public/..%252fadmin/' },
  { why: 'double encoding', target: '/public%252f..%252fadmin' },
  { why: 'double encoding', target: '/public/%25' },
  { why: 'double encoding', target: '/public/%2525' },
  // %00 and other controls
  { why: 'encoded controls', target: '/public/%00/../admin' },
  { why: 'encoded controls', target: '/public/%00' },
  { why: 'encoded controls', target: '/admin%00/' },
  { why: 'encoded controls', target: '/public/%0d%0a/../admin/' },
  { why: 'encoded controls', target: '/public/x%0d%0aX-Injected:%201' },
  { why: 'encoded controls', target: '/public/%09/../admin/' },
  { why: 'encoded controls', target: '/admin%09/' },
  { why: 'encoded controls', target: '/public/%7f' },
  { why: 'encoded controls', target: '/public/%1F' },
  // malformed escapes
  { why: 'malformed escapes', target: '/public/%' },
  { why: 'malformed escapes', target: '/public/%4' },
  { why: 'malformed escapes', target: '/public/%zz' },
  { why: 'malformed escapes', target: '/public/..%u002fadmin/' },
  // doubled slashes
  { why: 'doubled slashes', target: '//admin/' },
  { why: 'doubled slashes', target: '///admin/' },
  { why: 'doubled slashes', target: '/public//../admin/' },
  { why: 'doubled slashes', target: '/public//x' },
  // trailing dots or spaces in a segment (Windows, IIS)
  { why: 'trailing dots and spaces', target: '/admin./' },
  { why: 'trailing dots and spaces', target: '/admin%20/' },
  { why: 'trailing dots and spaces', target: '/admin...' },
  { why: 'trailing dots and spaces', target: '/admin%20%20/secret' },
  { why: 'trailing dots and spaces', target: '/admin.%20/' },
  { why: 'trailing dots and spaces', target: '/api./x' },
  { why: 'trailing dots and spaces', target: '/public/../admin./' },
  { why: 'trailing dots and spaces', target: '/public/x.' },
  // letter case (case-insensitive routers)
  { why: 'letter case', target: '/ADMIN/' },
  { why: 'letter case', target: '/aDmIn/users' },
  { why: 'letter case', target: '/Public/../admin/' },
  { why: 'letter case', target: '/PUBLIC/x' },
  { why: 'letter case', target: '/API/x' },
  { why: 'letter case', target: '/%41DMIN/' },
  { why: 'letter case', target: '/%61dmin/' },
  // overlong UTF-8
  { why: 'overlong UTF-8', target: '/public/..%C0%AFadmin/' },
  { why: 'overlong UTF-8', target: '/public/%c0%ae%c0%ae/admin/' },
  { why: 'overlong UTF-8', target: '/public/%C0%AE./admin' },
  { why: 'overlong UTF-8', target: '/public/..%E0%80%AFadmin/' },
  // fullwidth and other look-alikes (NFKC)
  { why: 'fullwidth look-alikes', target: '/public/..%EF%BC%8Fadmin/' },
  { why: 'fullwidth look-alikes', target: '/public/%EF%BC%8E%EF%BC%8E/admin/' },
  { why: 'fullwidth look-alikes', target: '/public/..%EF%BC%BCadmin/' },
  { why: 'fullwidth look-alikes', target: '/%EF%BD%81dmin/' },
  { why: 'Unicode case folding', target: '/adm%C4%B1n/' },
  { why: 'Unicode normal forms', target: '/public/cafe%CC%81/../../admin/' },
  { why: 'Unicode normal forms', target: '/public/%EF%BD%B6' },
  // .. above the root
  { why: 'above the root', target: '/../admin/' },
  { why: 'above the root', target: '/..' },
  { why: 'above the root', target: '/public/../../admin/' },
  { why: 'above the root', target: '/%2e%2e/admin/' },
  // encoded query and fragment delimiters
  { why: 'encoded delimiters', target: '/public/%3F/../../admin/' },
  { why: 'encoded delimiters', target: '/public/%23/../../admin/' },
  { why: 'encoded delimiters', target: '/admin%3F/' },
  // plain paths that must keep working, as their canonical form
  { why: 'plain', target: '/public/x' },
  { why: 'plain', target: '/public/x?next=/admin/&a=%2F' },
  { why: 'plain', target: '/%70ublic/x' },
  { why: 'plain', target: '/public/%c3%a9' },
  { why: 'plain', target: '/public/~x%7e' },
  { why: 'plain', target: '/' },
  { why: 'plain', target: '/admin/' },
  { why: 'plain', target: '/api/things' },
  { why: 'plain', target: '/some/page' },
];

describe.each(['lua', 'spoe'] as const)('hostile paths through HAProxy (%s)', (mode) => {
  withSignedInStack(['bob', 'alice'] as const, () => ({ haproxyMode: mode }), (started) => {
    stack = started.stack;
    Object.assign(sessionCookies, started.cookies);
  });

  describe('the harness sees what it should', () => {
    test('anonymous /public/x reaches the app as /public/x', async () => {
      const o = await send('anonymous API', '/public/x');
      expect(o.status).toBe(200);
      expect(o.echo?.path).toBe('/public/x');
    });

    test('anonymous /admin/ is sent to login (browser) or gets 401 (API), and the app never sees it', async () => {
      const [browser, api] = await Promise.all([send('anonymous browser', '/admin/'), send('anonymous API', '/admin/')]);
      expect([browser.status, browser.echo]).toEqual([302, undefined]);
      expect([api.status, api.echo]).toEqual([401, undefined]);
    });

    test('bob reaches / and gets 403 on /admin/; alice reaches /admin/ on the canary pool', async () => {
      const [bobRoot, bobAdmin, aliceAdmin] = await Promise.all([send('bob', '/'), send('bob', '/admin/'), send('alice', '/admin/')]);
      expect(bobRoot.echo?.headers['x-auth-user']).toBe('bob');
      expect([bobAdmin.status, bobAdmin.echo]).toEqual([403, undefined]);
      expect(aliceAdmin.echo).toMatchObject({ server: 'canary', path: '/admin/' });
    });
  });

  describe('paths app servers read as another route', () => {
    test.each([
      ['anonymous browser', '/public/..;/admin/secret'],
      ['anonymous API', '/public/..;/admin/secret'],
      ['anonymous browser', '/public/..%2fadmin/'],
      ['anonymous API', '/public/..%2fadmin/'],
      ['bob', '/admin%2Fx'],
      ['bob', '/admin;x/secret'],
    ] as [Client, string][])('%s %s never reaches the app', async (client, target) => {
      const o = await send(client, target);
      expect(o.echo).toBeUndefined();
      expect(NOT_FORWARDED).toContain(o.status);
    });

    test.each(['/ADMIN/', '/aDmIn/users'])('bob gets 403 for %s', async (target) => {
      const o = await send('bob', target);
      expect(o.echo).toBeUndefined();
      expect(o.status).toBe(403);
    });
  });

  describe('what the app receives is the canonical path', () => {
    test.each([
      ['anonymous API', '/%70ublic/x', '/public/x'],
      ['anonymous API', '/public//x', '/public/x'],
      ['anonymous API', '/public/./x/../y', '/public/y'],
      ['anonymous API', '/PUBLIC/x', '/PUBLIC/x'],
      ['bob', '/public/%c3%a9?q=%2f', '/public/%C3%A9?q=%2f'],
      ['bob', '/x/%2e%2e/y/', '/y/'],
    ] as [Client, string, string][])('%s %s reaches the app as %s', async (client, target, canonical) => {
      const o = await send(client, target);
      expect(o.status).toBe(200);
      expect(o.echo?.path).toBe(canonical);
    });
  });

  describe('the hostile-path table', () => {
    test.each(HOSTILE_PATHS)('$why: $target reaches the app only as its canonical path, and only where each caller may go', async ({ target }) => {
      expect(await probeAll(target)).toEqual({});
    });
  });

  describe('other methods', () => {
    // The demo policy has no method conditions: a path must be read the same way whatever the method.
    // (HEAD is left out: its answer has no body, so the echo could not be seen.)
    test.each(['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'])('%s: paths app servers read as another route reach nothing their caller may not open', async (method) => {
      const targets = ['/public/..;/admin/secret', '/public/..%2fadmin/', '/ADMIN/', '/aDmIn/users', '/admin%2Fx', '/admin;x/secret', '/public/%2e%2e/admin/'];
      const found = await Promise.all(targets.map(async (target) => [target, await probeAll(target, ['anonymous browser', 'anonymous API', 'bob'], method)] as const));
      expect(Object.fromEntries(found.filter(([, p]) => Object.keys(p).length))).toEqual({});
    });
  });

  describe('other request-target forms', () => {
    test.each([
      ['absolute-form, another Host', 'GET', () => `http://127.0.0.1:${stack.ports.front}/admin/`, [['Host', 'app.example.com']]],
      ['absolute-form, same Host', 'GET', () => `http://127.0.0.1:${stack.ports.front}/admin/`, []],
      ['absolute-form with ;', 'GET', () => `http://127.0.0.1:${stack.ports.front}/public/..;/admin/`, []],
      ['absolute-form, public', 'GET', () => `http://127.0.0.1:${stack.ports.front}/public/x`, []],
      ['absolute-form naming another host', 'GET', () => 'http://app.example.com/public/../admin/', []],
      ['no leading slash', 'GET', () => 'admin', []],
      ['no leading slash, dot segments', 'GET', () => 'public/../admin/', []],
      ['asterisk-form', 'OPTIONS', () => '*', []],
    ] as [string, string, () => string, [string, string][]][])('%s: refused or handled as its canonical path', async (_, method, target, extra) => {
      expect(await probeAll(target(), ['anonymous API', 'bob'], method, extra)).toEqual({});
    });
  });

  test('generated hostile paths reach the app only as their canonical path, and only where the caller may go', async () => {
    await fc.assert(
      fc.asyncProperty(hostilePath, fc.constantFrom<Client>('anonymous API', 'anonymous browser', 'bob'), async (target, client) => {
        expect({ client, target, problems: problems(client, target, await send(client, target)) }).toEqual({ client, target, problems: [] });
      }),
      { numRuns: 60 },
    );
  });
});
