// The header table (only idgate speaks for identity), through real HAProxy in both
// transports against the echoing upstream: no client header that could be read as identity or proxy
// information reaches the app, h2c never gets through, duplicate Authorization lines are refused,
// idgate's own cookies never reach the app, and what idgate does send is unambiguous. Requests are
// written byte-exact (raw-http): repeated lines stay repeated, names keep their spelling.
import crypto from 'node:crypto';
import type { Stack } from '../../stack/stack.js';
import { withSignedInStack } from '../support/signed-in-stack.js';
import { all, one, rawRequest, type RawResponse, echoOf } from '../support/raw-http.js';
import type { EchoedRequest } from '../../stack/upstream.js';
import { clientCredentialsToken } from '../support/tokens.js';
import { machineClient } from '../support/identities.js';
import { DELETED_HEADERS } from '../../service/src/transports/edge-headers.js';

const TOKEN_TTL_S = 4;

type Echo = EchoedRequest;

interface Outcome {
  res: RawResponse;
  /** The upstream's echo of this very request, or undefined when it never reached the app. */
  echo?: Echo;
}

let stack: Stack;
let bobCookie: string;
/** A browser signed in at the start, whose session is renewed by the last test. */
let renewer: { cookie: string; signedInAt: number };

type Client = 'bob' | 'anonymous';

/** One request; `bob` adds his session cookie (as its own Cookie line, after `headers`) unless `cookie` is false. */
async function send(client: Client, target: string, headers: [string, string][] = [], options: { method?: string; cookie?: boolean } = {}): Promise<Outcome> {
  const marker = crypto.randomUUID();
  const lines: [string, string][] = [['Accept', 'application/json'], ['X-Edge-Probe', marker], ...headers];
  if (client === 'bob' && options.cookie !== false) lines.push(['Cookie', bobCookie]);
  const res = await rawRequest(stack.ports.front, options.method ?? 'GET', target, lines);
  const echo = echoOf(res, marker);
  return { res, echo };
}

/** The Cookie the app received, several lines joined as one; undefined when it got none. */
function cookieOf(echo: Echo): string | undefined {
  const c = echo.headers.cookie;
  return Array.isArray(c) ? c.join('; ') : c;
}

const getToken = () => clientCredentialsToken(stack.issuer);

// Client headers that could be read as identity, as proxy facts, or as another method or path, in
// several spellings (CGI/Rack/WSGI read `_` and `-` alike; names are case-insensitive).
const SPOOFED_HEADERS = [
  'X_Auth_User', 'x-auth-user', 'X-AUTH-USER', 'X-Auth_User', 'x_auth_groups', 'X-Auth-Groups', 'X-Auth-Email', 'X-Auth-Subject',
  'X-Auth-Issuer', 'X-Auth-Client', 'X-Auth-Scopes', 'X-Auth-Backend', 'X-Auth-Request-Id',
  'X-Original-URL', 'X-Original-Uri', 'X-Original-Host', 'X-Rewrite-URL',
  'X-Real-IP', 'X_Real_IP', 'X-Client-IP', 'True-Client-IP', 'X-Cluster-Client-IP', 'Client-IP', 'CF-Connecting-IP',
  'X-HTTP-Method-Override', 'X-Method-Override', 'X-HTTP-Method', 'X_HTTP_Method_Override',
  'X-Forwarded-For', 'X-Forwarded-Host', 'X-Forwarded-Proto', 'X-Forwarded-Prefix', 'X-Forwarded-Uri', 'X-Forwarded-Method',
  'X-Forwarded-User', 'X_Forwarded_For', 'Forwarded',
  'X-Remote-User', 'X-Remote-Addr', 'Remote-User', 'Remote_User', 'X-Webauth-User', 'X-Webauth-Groups',
  'X-Idgate-Path', 'X-Idgate-Cookie', 'X-User', 'X-Email', 'HTTP2-Settings', 'X-Request-Id',
  'Proxy-Client-IP', 'WL-Proxy-Client-IP', 'Fastly-Client-IP', 'X-Originating-IP', 'X-ProxyUser-Ip', 'X-Host', 'X-Scheme',
  'X-Url-Scheme', 'Front-End-Https', 'X-Script-Name', 'X-Envoy-Original-Path', 'Remote-Addr', 'X-Authenticated-User',
  'X-Authenticated-Userid', 'X-MS-CLIENT-PRINCIPAL-NAME', 'X-Goog-Authenticated-User-Email', 'X-Goog-IAP-JWT-Assertion',
  'X-Amzn-Oidc-Identity', 'Cf-Access-Authenticated-User-Email', 'X-Consumer-Username', 'X-Credential-Identifier',
  'X-Userinfo', 'X-JWT-Assertion', 'X-Apigateway-Api-Userinfo', 'X-Endpoint-API-UserInfo', 'OIDC-Claim-Email',
  // client certificates, Kubernetes impersonation, other identity-aware proxies
  'X-Client-Cert', 'X-SSL-Client-Cert', 'X-SSL-Client-Verify', 'X-SSL-Client-S-DN', 'X-ARR-ClientCert', 'Client-Cert',
  'Impersonate-User', 'Impersonate-Group', 'X-Pomerium-Claim-Email', 'X-authentik-username', 'X-Auth-Request-User',
  'X-Forwarded-Email', 'X-Vouch-User', 'Tailscale-User-Login', 'X-Amzn-Mtls-Clientcert',
];

/** A name each row of DELETED_HEADERS deletes, in upper case for every other row (names compare ignoring case). */
const TABLE_SAMPLES = DELETED_HEADERS.map((h, i) => {
  const name = h.match === 'exact' ? h.name : h.match === 'prefix' ? `${h.name}Probe` : `X${h.name}Probe`;
  return i % 2 ? name.toUpperCase() : name;
});

describe.each(['lua', 'spoe'] as const)('the edge headers through HAProxy (%s)', (mode) => {
  // Short-lived access tokens, so that one test can see a renewal cheaply (after TOKEN_TTL_S / 2): alice's.
  withSignedInStack(['bob', 'alice'] as const, () => ({ haproxyMode: mode, idgateClock: 'test', idpEnv: { IDP_ACCESS_TOKEN_TTL: String(TOKEN_TTL_S) } }), (started) => {
    stack = started.stack;
    bobCookie = started.cookies.bob;
    renewer = { cookie: started.cookies.alice, signedInAt: started.signedInAt };
  });

  test('the harness sees what it should: bob reaches / with his identity, anonymous reaches /public/x', async () => {
    const [bob, anonymous] = await Promise.all([send('bob', '/'), send('anonymous', '/public/x')]);
    expect(bob.echo?.headers['x-auth-user']).toBe('bob');
    expect(anonymous.echo?.path).toBe('/public/x');
  });

  describe('client headers that could speak for identity never reach the app', () => {
    test.each(SPOOFED_HEADERS)('%s sent by bob on / and by an anonymous client on /public/x', async (name) => {
      const value = `spoofed-${crypto.randomBytes(6).toString('hex')}`;
      const [bob, anonymous] = await Promise.all([send('bob', '/', [[name, value]]), send('anonymous', '/public/x', [[name, value]])]);
      for (const { res, echo } of [bob, anonymous]) {
        expect(res.status).toBe(200);
        expect(echo).toBeDefined();
        expect(JSON.stringify(echo)).not.toContain(value);
      }
      expect(bob.echo?.headers['x-auth-user']).toBe('bob');
      expect(anonymous.echo?.headers['x-auth-user']).toBeUndefined();
    });

    test('every row of the deleted-header table, sent at once by bob on / and by an anonymous client on /public/x', async () => {
      const value = `spoofed-${crypto.randomBytes(6).toString('hex')}`;
      const headers = TABLE_SAMPLES.map((name): [string, string] => [name, value]);
      const [bob, anonymous] = await Promise.all([send('bob', '/', headers), send('anonymous', '/public/x', headers)]);
      for (const { res, echo } of [bob, anonymous]) {
        expect(res.status).toBe(200);
        expect(Object.entries(echo!.headers).filter(([, v]) => JSON.stringify(v).includes(value))).toEqual([]);
      }
      expect(bob.echo?.headers['x-auth-user']).toBe('bob');
    });

    test.each([
      ['X-Forwarded-Uri', '/public/x'],
      ['X-Original-URL', '/public/x'],
      ['X-Rewrite-URL', '/public/x'],
      ['X-Forwarded-Method', 'OPTIONS'],
      ['X-Idgate-Path', '/public/x'],
    ])('an anonymous /admin/ with %s: %s is still judged as /admin/', async (name, value) => {
      const o = await send('anonymous', '/admin/', [[name, value]]);
      expect(o.echo).toBeUndefined();
      expect(o.res.status).toBe(401);
    });

    test('bob with X-Auth-Groups: admins and X_Auth_Groups: admins still gets 403 on /admin/', async () => {
      const o = await send('bob', '/admin/', [['X-Auth-Groups', 'admins'], ['X_Auth_Groups', 'admins']]);
      expect(o.echo).toBeUndefined();
      expect(o.res.status).toBe(403);
    });

    test("idgate's own X-Idgate-* answers reach neither the app nor the client", async () => {
      const [bob, anonymous] = await Promise.all([
        send('bob', '/x', [['Cookie', 'app=1']]),
        send('anonymous', '/public/x', [['Cookie', '_idgate=junk']]),
      ]);
      for (const { res, echo } of [bob, anonymous]) {
        expect(Object.keys(echo!.headers).filter((n) => n.startsWith('x-idgate'))).toEqual([]);
        expect(res.headers.filter(([n]) => n.startsWith('x-idgate'))).toEqual([]);
      }
    });
  });

  describe('h2c', () => {
    test.each([
      ['Upgrade: h2c with Connection: Upgrade, HTTP2-Settings', [['Connection', 'Upgrade, HTTP2-Settings'], ['Upgrade', 'h2c'], ['HTTP2-Settings', 'AAMAAABkAARAAAAAAAIAAAAA']]],
      ['Upgrade: H2C', [['Connection', 'Upgrade, HTTP2-Settings'], ['Upgrade', 'H2C'], ['HTTP2-Settings', 'AAMAAABkAARAAAAAAAIAAAAA']]],
      ['Upgrade: foo, h2c', [['Connection', 'Upgrade'], ['Upgrade', 'foo, h2c']]],
      ['Upgrade: h2c without Connection: Upgrade', [['Upgrade', 'h2c']]],
    ] as [string, [string, string][]][])('%s: never a 101, and the app never sees an Upgrade naming h2c', async (_, headers) => {
      const outcomes = await Promise.all([send('anonymous', '/public/x', headers), send('bob', '/', headers)]);
      for (const { res, echo } of outcomes) {
        expect(res.status).not.toBe(101);
        if (!echo) {
          expect(res.status).toBe(400);
          continue;
        }
        expect(String(echo.headers.upgrade ?? '')).not.toMatch(/h2c/i);
        expect(echo.headers['http2-settings']).toBeUndefined();
      }
    });
  });

  describe('Connection never names a header', () => {
    test.each([
      ['close, X-Auth-User, X-Auth-Groups', undefined],
      ['X-Auth-User', undefined],
      ['keep-alive, X-Auth-Issuer, X-Request-Id', undefined],
      ['Upgrade, X-Auth-User', undefined],
    ])('bob with Connection: %s: the app gets his identity and a Connection header naming none of it', async (connection) => {
      const o = await send('bob', '/', [['Connection', connection]]);
      expect(o.echo?.headers['x-auth-user']).toBe('bob');
      expect(o.echo?.headers['x-auth-groups']).toBeDefined();
      expect(String(o.echo?.headers.connection ?? '')).not.toMatch(/x-/i);
    });

    test('a WebSocket upgrade still switches protocols (101), with Connection: upgrade and nothing else', async () => {
      const o = await send('bob', '/', [['Connection', 'keep-alive, Upgrade, X-Auth-User'], ['Upgrade', 'websocket'], ['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ=='], ['Sec-WebSocket-Version', '13']]);
      expect(o.res.status).toBe(101);
      expect(o.echo?.headers.connection).toBe('upgrade');
      expect(o.echo?.headers.upgrade).toBe('websocket');
      expect(o.echo?.headers['x-auth-user']).toBe('bob');
    });
  });

  describe('duplicate Authorization', () => {
    test.each([
      ['bob on /, two bearer lines', 'bob', '/', async () => [['Authorization', 'Bearer one'], ['Authorization', 'Bearer two']]],
      ['anonymous on /public/x, two bearer lines', 'anonymous', '/public/x', async () => [['Authorization', 'Bearer one'], ['Authorization', 'Bearer two']]],
      ['anonymous on /api/hello, a valid token then a junk one', 'anonymous', '/api/hello', async () => [['Authorization', `Bearer ${await getToken()}`], ['Authorization', 'Bearer junk']]],
      ['anonymous on /api/hello, a junk token then a valid one', 'anonymous', '/api/hello', async () => [['Authorization', 'Bearer junk'], ['Authorization', `Bearer ${await getToken()}`]]],
      ['anonymous on /api/hello, the same valid token twice', 'anonymous', '/api/hello', async () => { const t = await getToken(); return [['Authorization', `Bearer ${t}`], ['authorization', `Bearer ${t}`]]; }],
      ['anonymous on /api/hello, a valid token and Basic in another spelling', 'anonymous', '/api/hello', async () => [['Authorization', `Bearer ${await getToken()}`], ['AUTHORIZATION', 'Basic Ym9iOmJvYg==']]],
    ] as [string, Client, string, () => Promise<[string, string][]>][])('%s: 400, and the app never sees it', async (_, client, target, headers) => {
      const o = await send(client, target, await headers());
      expect(o.echo).toBeUndefined();
      expect(o.res.status).toBe(400);
    });

    test('one valid bearer line still reaches /api/ (the refusal is about duplicates only)', async () => {
      const o = await send('anonymous', '/api/hello', [['Authorization', `Bearer ${await getToken()}`]]);
      expect(o.echo?.headers['x-auth-client']).toBe(machineClient.id);
    });
  });

  describe("idgate's cookies never reach the app", () => {
    test.each([
      ['one line, idgate cookies in the middle', () => [['Cookie', `app=1; ${bobCookie}; _idgate_login=x; other=2`]], 'app=1; other=2'],
      ['several lines', () => [['Cookie', 'app=1'], ['Cookie', bobCookie], ['Cookie', '_idgate_login=x; other=2']], 'app=1; other=2'],
      ['only idgate cookies', () => [['Cookie', `${bobCookie}; _idgate_login=x`]], undefined],
      ['only idgate cookies, several lines', () => [['Cookie', '_idgate_login=x'], ['Cookie', bobCookie]], undefined],
      ['names that only look like idgate cookies stay', () => [['Cookie', `_idgate2=a; ${bobCookie}; my_idgate=b; _idgate_login_x=c`]], '_idgate2=a; my_idgate=b; _idgate_login_x=c'],
    ] as [string, () => [string, string][], string | undefined][])("bob, %s: the app gets its own cookies only, in order", async (_, headers, expected) => {
      const o = await send('bob', '/', headers(), { cookie: false });
      expect(o.echo?.headers['x-auth-user']).toBe('bob');
      expect(cookieOf(o.echo!)).toBe(expected);
    });

    test.each([
      ['_idgate=junk; app=1', 'app=1'],
      ['z=1; _idgate=junk; a=2; _idgate_login=junk; b=3', 'z=1; a=2; b=3'],
      ['_idgate=junk', undefined],
      ['_idgate_login=junk; _idgate=junk', undefined],
    ])('anonymous on /public/x with Cookie: %s: the app gets %s', async (cookie, expected) => {
      const o = await send('anonymous', '/public/x', [['Cookie', cookie]]);
      expect(o.res.status).toBe(200);
      expect(cookieOf(o.echo!)).toBe(expected);
    });
  });

  describe('per IdP profile', () => {
    describe('identity headers are unambiguous', () => {
      test("bob's X-Auth-Issuer is the stack's issuer", async () => {
        const o = await send('bob', '/');
        expect(o.echo?.headers['x-auth-issuer']).toBe(stack.issuer);
      });

      test('every X-Auth-* value is printable ASCII with % only as %XX, each sent once', async () => {
        const [bob, bot] = await Promise.all([send('bob', '/'), send('anonymous', '/api/hello', [['Authorization', `Bearer ${await getToken()}`]])]);
        for (const echo of [bob.echo!, bot.echo!]) {
          const identity = Object.entries(echo.headers).filter(([n]) => n.startsWith('x-auth-'));
          expect(identity.length).toBeGreaterThan(1);
          for (const [name, value] of identity) {
            expect([name, typeof value]).toEqual([name, 'string']);
            expect([name, value]).toEqual([name, expect.stringMatching(/^(?:[\x20-\x24\x26-\x7e]|%[0-9A-F]{2})*$/)]);
          }
        }
      });
    });
  });

  describe('a trailing dot in the host', () => {
    test.each([
      ['app.example.com.', 'app.example.com'],
      ['app.example.com.:8080', 'app.example.com:8080'],
      ['APP.example.com.', 'app.example.com'],
    ])('Host: %s on /public/x reaches the app without the dot', async (host, expected) => {
      const o = await send('anonymous', '/public/x', [['Host', host]]);
      expect(o.res.status).toBe(200);
      expect(String(o.echo?.headers.host).toLowerCase()).toBe(expected);
      expect(String(o.echo?.headers['x-forwarded-host']).toLowerCase()).toBe(expected);
    });
  });

  test('a renewed session cookie on an app response comes with Cache-Control: private', async () => {
    // The access token is renewed from TOKEN_TTL_S / 2 on; the other tests took part of that time. The
    // age of the tokens is the behaviour under test: idgate's clock is moved the rest of the way.
    const ahead = renewer.signedInAt + (TOKEN_TTL_S / 2) * 1000 + 300 - Date.now();
    if (ahead > 0) await stack.advanceIdgateClock(ahead);
    const marker = crypto.randomUUID();
    const res = await rawRequest(stack.ports.front, 'GET', '/renewed', [['Accept', 'application/json'], ['X-Edge-Probe', marker], ['Cookie', renewer.cookie]]);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body).headers['x-edge-probe']).toBe(marker);
    expect(all(res.headers, 'set-cookie').some((c) => c.startsWith('_idgate='))).toBe(true);
    expect(one(res.headers, 'cache-control') ?? '').toMatch(/(^|,)\s*private\b/i);
  });
});
