// The demo as `make demo` runs it (stack/stack.ts with policy/demo.yaml, demo/demo-main.ts's transports)
// refuses each edge attack docs/security.md lists, in both transports, against the echoing sample upstream. One
// stack per transport; requests are written byte-exact (raw-http), so each attack reaches HAProxy exactly
// as written. The other edge tests prove each class in depth on policies of their own; this one shows the
// shipped demo closes every example.
import crypto from 'node:crypto';
import type { Stack } from '../../stack/stack.js';
import type { EchoedRequest } from '../../stack/upstream.js';
import { withSignedInStack } from '../support/signed-in-stack.js';
import { one, rawExchange, rawRequest, statusLines, type RawResponse, echoOf } from '../support/raw-http.js';

let stack: Stack;
let bobCookie: string;
let aliceCookie: string;

interface Outcome {
  res: RawResponse;
  /** The upstream's echo of this very request, or undefined when it never reached the app. */
  echo?: EchoedRequest;
}

async function send(method: string, target: string, options: { bob?: boolean; headers?: [string, string][] } = {}): Promise<Outcome> {
  const marker = crypto.randomUUID();
  const given = options.headers ?? [];
  const accept: [string, string][] = given.some(([n]) => n.toLowerCase() === 'accept') ? [] : [['Accept', 'application/json']];
  const headers: [string, string][] = [...accept, ['X-Edge-Probe', marker], ...given];
  if (options.bob) headers.push(['Cookie', bobCookie]);
  const res = await rawRequest(stack.ports.front, method, target, headers);
  const echo = echoOf(res, marker);
  return { res, echo };
}

/** A DPoP proof for GET `url` whose RSA key has a 3070-bit exponent, signed by no key (it must never be verified). */
function proofWithHugeExponent(url: string): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const n = crypto.randomBytes(384);
  n[0]! |= 0x80;
  const e = Buffer.concat([Buffer.from([0x3f]), crypto.randomBytes(383)]);
  e[383]! |= 1;
  const jwk = { kty: 'RSA', n: n.toString('base64url'), e: e.toString('base64url') };
  const claims = { jti: crypto.randomUUID(), htm: 'GET', htu: url, iat: Math.floor(Date.now() / 1000), ath: crypto.hash('sha256', 'x', 'base64url') };
  return `${part({ typ: 'dpop+jwt', alg: 'RS256', jwk })}.${part(claims)}.${Buffer.alloc(384, 7).toString('base64url')}`;
}

describe.each(['lua', 'spoe'] as const)('the demo as `make demo` runs it refuses each edge attack (%s)', (mode) => {
  withSignedInStack(['bob', 'alice'] as const, () => ({ haproxyMode: mode }), (started) => {
    ({ stack, cookies: { bob: bobCookie, alice: aliceCookie } } = started);
  });

  test('the harness sees what it should: bob reaches / as himself, and gets 403 on /admin/', async () => {
    expect((await send('GET', '/', { bob: true })).echo?.headers['x-auth-user']).toBe('bob');
    expect((await send('GET', '/admin/', { bob: true })).res.status).toBe(403);
  });

  test('CONNECT with bob\'s cookie: 405 with Allow, no tunnel; the request smuggled after it never reaches the app', async () => {
    const marker = crypto.randomUUID();
    const smuggled = `GET /admin/secret HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Auth-User: alice\r\nX-Auth-Groups: admins\r\nX-Edge-Probe: ${marker}\r\nConnection: close\r\n\r\n`;
    const data = await rawExchange(stack.ports.front, `CONNECT 127.0.0.1:${stack.ports.upstream} HTTP/1.1\r\nHost: 127.0.0.1:${stack.ports.upstream}\r\nCookie: ${bobCookie}\r\n\r\n${smuggled}`);
    expect(statusLines(data)[0]).toBe(405);
    expect(data).toMatch(/\r\nallow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n/i);
    expect(statusLines(data)).not.toContain(200);
    expect(data).not.toContain(marker);
  });

  test('TRACE: 405, never the app', async () => {
    const o = await send('TRACE', '/', { bob: true });
    expect({ status: o.res.status, reached: o.echo !== undefined }).toEqual({ status: 405, reached: false });
  });

  test.each([
    '/public/..%2Fadmin/',
    '/public/..%2fadmin/',
    '/public/%2e%2e/admin/',
    '/public/..;/admin/',
    '/public/..\\admin/',
    '/%61dmin/',
    '/%2561dmin/',
    '/ADMIN/',
    '/admin;x/',
    '//admin/',
    '/admin%2F',
    '/admin./',
    '/%EF%BD%81dmin/',
  ])('bob on %s, a spelling of /admin/: never 200, never the app', async (target) => {
    const o = await send('GET', target, { bob: true });
    expect({ target, reached: o.echo !== undefined }).toEqual({ target, reached: false });
    expect([400, 403]).toContain(o.res.status);
  });

  test('POST /api/x?_method=DELETE: 400, never the app', async () => {
    const o = await send('POST', '/api/x?_method=DELETE', { bob: true });
    expect({ status: o.res.status, reached: o.echo !== undefined }).toEqual({ status: 400, reached: false });
  });

  test('bob MOVE /public/x with Destination: /admin/x is refused (405: no demo rule names MOVE), never the app', async () => {
    const o = await send('MOVE', '/public/x', { bob: true, headers: [['Destination', '/admin/x']] });
    expect({ status: o.res.status, reached: o.echo !== undefined }).toEqual({ status: 405, reached: false });
    expect(one(o.res.headers, 'allow')).toBe('GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS');
  });

  test("client-sent identity headers and a Connection naming idgate's: the app never sees the client's values, and gets idgate's X-Auth-User", async () => {
    const o = await send('GET', '/', {
      bob: true,
      headers: [
        ['X-Client-Cert', 'CN=alice'],
        ['Impersonate-User', 'alice'],
        ['X-Pomerium-Claim-Email', 'alice@example.com'],
        ['X-authentik-username', 'alice'],
        ['X-Auth-User', 'alice'],
        ['Connection', 'close, X-Auth-User, X-Auth-Groups'],
      ],
    });
    const headers = o.echo?.headers ?? {};
    expect(headers['x-auth-user']).toBe('bob');
    expect(headers['x-auth-groups']).toBeDefined();
    for (const name of ['x-client-cert', 'impersonate-user', 'x-pomerium-claim-email', 'x-authentik-username']) expect({ name, value: headers[name] }).toEqual({ name, value: undefined });
    expect(JSON.stringify(headers)).not.toContain('alice');
    expect(String(headers.connection ?? '')).not.toMatch(/x-/i);
  });

  test.each([
    ['an API client', 'application/json', 401],
    ['a browser', 'text/html', 302],
  ])("two session cookies (bob's and alice's), as %s (Accept: %s): %d, never 200", async (_, accept, status) => {
    const o = await send('GET', '/', { headers: [['Accept', accept], ['Cookie', `${bobCookie}; ${aliceCookie}`]] });
    expect({ status: o.res.status, reached: o.echo !== undefined }).toEqual({ status, reached: false });
  });

  test("a direct GET of idgate's /auth with made-up X-Forwarded-* and bob's cookie, without the check secret: 403, no identity", async () => {
    const res = await fetch(`${stack.idgateUrls[0]}/auth`, {
      headers: { cookie: bobCookie, accept: 'application/json', 'x-forwarded-method': 'GET', 'x-forwarded-host': `127.0.0.1:${stack.ports.front}`, 'x-forwarded-uri': '/admin/', 'x-forwarded-proto': 'http', 'x-forwarded-for': '203.0.113.7' },
    });
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ error: 'untrusted_peer' });
    expect([...res.headers.keys()].filter((n) => n.startsWith('x-auth-') || n === 'set-cookie' || n === 'x-idgate-path')).toEqual([]);
  });

  test('Authorization: DPoP with a proof whose RSA key has a huge exponent: 401, never the app', async () => {
    const o = await send('GET', '/api/x', { headers: [['Authorization', 'DPoP x'], ['DPoP', proofWithHugeExponent(`${stack.frontUrl}/api/x`)]] });
    expect({ status: o.res.status, reached: o.echo !== undefined }).toEqual({ status: 401, reached: false });
    // Refused on the key itself, before the token or any signature is looked at.
    expect(one(o.res.headers, 'www-authenticate')).toContain('error_description="the DPoP proof key is not accepted"');
  });
});
