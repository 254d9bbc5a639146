// Methods at the edge, through real HAProxy in both transports against the echoing upstream,
// which, like some apps, answers CONNECT with 200 and then reads the connection's next bytes as requests:
// CONNECT and TRACE never reach it, a method outside the usual ones reaches it only on a rule that names
// it, each refusal is idgate's (an audit line), and CORS preflights pass unjudged only where a rule says so.
import crypto from 'node:crypto';
import path from 'node:path';
import { REPO_ROOT, type Stack } from '../../stack/stack.js';
import { withSignedInStack } from '../support/signed-in-stack.js';
import { one, rawExchange, rawRequest, statusLines, type RawResponse, echoOf } from '../support/raw-http.js';
import { decisionLinesIn, decisionsCaughtUp } from '../support/logs.js';
import type { EchoedRequest } from '../../stack/upstream.js';

let stack: Stack;
let bobCookie: string;
let aliceCookie: string;

interface Outcome {
  res: RawResponse;
  /** The upstream's echo of this very request, or undefined when it never reached the app. */
  echo?: EchoedRequest;
}

async function send(method: string, target: string, options: { bob?: boolean; alice?: boolean; headers?: [string, string][] } = {}): Promise<Outcome> {
  const marker = crypto.randomUUID();
  const headers: [string, string][] = [['Accept', 'application/json'], ['X-Edge-Probe', marker], ...(options.headers ?? [])];
  if (options.bob) headers.push(['Cookie', bobCookie]);
  if (options.alice) headers.push(['Cookie', aliceCookie]);
  const res = await rawRequest(stack.ports.front, method, target, headers);
  const echo = echoOf(res, marker);
  return { res, echo };
}

const decisionLines = () => decisionLinesIn(stack.processes.idgate!.output());

const decisionsWritten = () => decisionsCaughtUp(stack.idgateUrls[0]!, () => stack.processes.idgate!.output(), `127.0.0.1:${stack.ports.front}`, stack.checkHeaders);

/** A request the tunnel would carry: an identity header of its own, a path bob may not open, a marker. */
function smuggled(marker: string, close = true): string {
  return `GET /admin/secret HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Auth-User: alice\r\nX-Auth-Groups: admins\r\nX-Edge-Probe: ${marker}\r\n${close ? 'Connection: close\r\n' : ''}\r\n`;
}

describe.each(['lua', 'spoe'] as const)('methods at the edge through HAProxy (%s)', (mode) => {
  const policy = path.join(REPO_ROOT, 'test/e2e/fixtures/policy-edge-methods.yaml');
  withSignedInStack(['bob', 'alice'] as const, () => ({ haproxyMode: mode, idgateEnv: { IDGATE_POLICY_FILE: policy } }), (started) => {
    ({ stack, cookies: { bob: bobCookie, alice: aliceCookie } } = started);
  });

  test('the harness sees what it should: bob reaches / with his identity', async () => {
    const o = await send('GET', '/', { bob: true });
    expect(o.echo?.headers['x-auth-user']).toBe('bob');
  });

  describe('CONNECT: no tunnel, ever', () => {
    test.each([
      ['authority-form, as proxies get it', () => `127.0.0.1:${stack.ports.front}`],
      ['authority-form naming the app', () => `127.0.0.1:${stack.ports.upstream}`],
      ['origin-form', () => '/'],
      ['origin-form, a public path', () => '/public/x'],
    ])('bob, %s: 405, and the bytes he sends next never reach the app unchecked', async (_, target) => {
      const marker = crypto.randomUUID();
      const connect = `CONNECT ${target()} HTTP/1.1\r\nHost: ${target().startsWith('/') ? '127.0.0.1' : target()}\r\nCookie: ${bobCookie}\r\n\r\n`;
      const data = await rawExchange(stack.ports.front, connect + smuggled(marker));
      const statuses = statusLines(data);
      // The CONNECT is refused; HAProxy either closes the connection or checks what follows as a request of
      // its own (bob on /admin/: 403), never passes it through.
      expect([405, 400]).toContain(statuses[0]);
      expect(statuses).not.toContain(200);
      expect(data).not.toContain(marker);
    });

    test('anonymous, naming the app itself as the authority: 405, and what follows never reaches the app unchecked', async () => {
      const marker = crypto.randomUUID();
      const data = await rawExchange(stack.ports.front, `CONNECT 127.0.0.1:${stack.ports.upstream} HTTP/1.1\r\nHost: 127.0.0.1:${stack.ports.upstream}\r\n\r\n${smuggled(marker)}`);
      expect(statusLines(data)[0]).toBe(405);
      expect(data).not.toContain(marker);
    });

    test('a CONNECT is refused by idgate, with an audit line (decision refused, 405)', async () => {
      await decisionsWritten();
      const before = decisionLines().filter((l) => l.method === 'CONNECT').length;
      const res = await rawRequest(stack.ports.front, 'CONNECT', `127.0.0.1:${stack.ports.upstream}`, [['Host', `127.0.0.1:${stack.ports.upstream}`], ['Cookie', bobCookie]]);
      expect(res.status).toBe(405);
      await decisionsWritten();
      const lines = decisionLines().filter((l) => l.method === 'CONNECT');
      expect(lines.length).toBe(before + 1);
      expect(lines.at(-1)).toMatchObject({ decision: 'refused', status: 405, reason: 'CONNECT is never allowed' });
    });
  });

  describe('TRACE', () => {
    test.each([
      ['bob on /', '/', true],
      ['anonymous on /public/x', '/public/x', false],
      ['bob on /dav/x', '/dav/x', true],
    ])('%s: 405, never the app', async (_, target, bob) => {
      const o = await send('TRACE', target, { bob });
      expect(o.echo).toBeUndefined();
      expect(o.res.status).toBe(405);
    });
  });

  describe('methods outside the usual ones reach the app only where a rule names them', () => {
    test.each([
      ['PROPFIND', '/', true],
      ['PROPFIND', '/public/x', false],
      ['MOVE', '/x', true],
      ['FOO', '/', true],
      ['LOCK', '/public/x', false],
    ])('%s %s: 405, never the app', async (method, target, bob) => {
      const o = await send(method, target, { bob });
      expect(o.echo).toBeUndefined();
      expect(o.res.status).toBe(405);
      expect(JSON.parse(o.res.body)).toMatchObject({ error: 'method_not_allowed' });
    });

    const USUAL = 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS';
    test.each([
      ['LOCK /public/x: no rule there names another method', 'LOCK', '/public/x', USUAL],
      ['FOO /dav/x: the dav rule names its own', 'FOO', '/dav/x', `${USUAL}, PROPFIND, MOVE, COPY, MKCOL`],
      ['TRACE /dav/x: refused before any path is read, so the methods every route takes', 'TRACE', '/dav/x', USUAL],
      ['MOVE /dav/a to /public/b: only what both paths take', 'MOVE', '/dav/a', USUAL],
    ])('a 405 names in Allow the methods the route takes: %s', async (_, method, target, allow) => {
      const headers: [string, string][] = target === '/dav/a' ? [['Destination', '/public/b']] : [];
      const o = await send(method, target, { bob: true, headers });
      expect({ status: o.res.status, allow: one(o.res.headers, 'allow'), reached: o.echo !== undefined }).toEqual({ status: 405, allow, reached: false });
    });

    test('a CONNECT refused by idgate names the methods every route takes in Allow', async () => {
      const res = await rawRequest(stack.ports.front, 'CONNECT', `127.0.0.1:${stack.ports.upstream}`, [['Host', `127.0.0.1:${stack.ports.upstream}`], ['Cookie', bobCookie]]);
      expect({ status: res.status, allow: one(res.headers, 'allow') }).toEqual({ status: 405, allow: USUAL });
    });

    test('bob PROPFIND /dav/x: the rule names it, the app gets it with his identity', async () => {
      const o = await send('PROPFIND', '/dav/x', { bob: true });
      expect(o.echo).toMatchObject({ method: 'PROPFIND', path: '/dav/x' });
      expect(o.echo?.headers['x-auth-user']).toBe('bob');
    });

    test('anonymous PROPFIND /dav/x: judged by that rule (401), never the app', async () => {
      const o = await send('PROPFIND', '/dav/x');
      expect(o.echo).toBeUndefined();
      expect(o.res.status).toBe(401);
    });

    test.each(['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'])('the usual %s still reaches the app for bob on /x', async (method) => {
      const o = await send(method, '/x', { bob: true });
      expect(o.echo).toMatchObject({ method, path: '/x' });
      expect(o.echo?.headers['x-auth-user']).toBe('bob');
    });
  });

  describe('method overrides in the query', () => {
    test('bob POST /items/7?_method=DELETE is judged as the DELETE the app runs: 403, never the app', async () => {
      const o = await send('POST', '/items/7?_method=DELETE', { bob: true });
      expect(o.echo).toBeUndefined();
      expect(o.res.status).toBe(403);
    });

    test('alice (an admin) POST /items/7?_method=DELETE: allowed, the app gets the request as sent', async () => {
      const o = await send('POST', '/items/7?_method=DELETE', { alice: true });
      expect(o.echo).toMatchObject({ method: 'POST', path: '/items/7?_method=DELETE' });
      expect(o.echo?.headers['x-auth-user']).toBe('alice');
    });

    test('bob POST /items/7?_method=PUT: the rule allows overrides and PUT, so the app gets it', async () => {
      const o = await send('POST', '/items/7?_method=PUT', { bob: true });
      expect(o.echo?.path).toBe('/items/7?_method=PUT');
    });

    test.each([
      ['/x?_method=DELETE', 'a rule without method_override'],
      ['/x?_METHOD=delete', 'another letter case'],
      ['/x?%5Fmethod=DELETE', 'an escaped name'],
      ['/x?.method=DELETE', "PHP's spelling"],
      ['/x?_method[]=DELETE', 'an array'],
      ['/items/7?_method=DELETE&_method=GET', 'two methods'],
      ['/items/7?_method=DEL%0AETE', 'not a method'],
      ['/public/x?_method=DELETE', 'a public rule'],
    ])('bob POST %s (%s): 400, never the app', async (target) => {
      const o = await send('POST', target, { bob: true });
      expect(o.echo).toBeUndefined();
      expect(o.res.status).toBe(400);
    });

    test('_method=CONNECT is refused as CONNECT is: 405', async () => {
      const o = await send('POST', '/items/7?_method=CONNECT', { bob: true });
      expect(o.echo).toBeUndefined();
      expect(o.res.status).toBe(405);
    });

    test.each(['X-HTTP-Method-Override', 'X-HTTP-Method', 'X-Method-Override'])('%s: DELETE never reaches the app (HAProxy deletes it)', async (name) => {
      const o = await send('POST', '/items/7', { bob: true, headers: [[name, 'DELETE']] });
      expect(o.echo?.headers[name.toLowerCase()]).toBeUndefined();
    });
  });

  describe("WebDAV's Destination is judged as a second path", () => {
    test.each([
      ['bob, /dav/a to /dav/b', 'bob', '/dav/b'],
      ['alice, /dav/a to /dav/admin/b', 'alice', '/dav/admin/b'],
      ['bob, to an absolute URI on this host', 'bob', () => `http://127.0.0.1:${stack.ports.front}/dav/b`],
    ] as [string, 'bob' | 'alice', string | (() => string)][])('%s: the app gets the MOVE', async (_, who, destination) => {
      const value = typeof destination === 'string' ? destination : destination();
      const o = await send('MOVE', '/dav/a', { [who]: true, headers: [['Destination', value]] });
      expect(o.echo).toMatchObject({ method: 'MOVE', path: '/dav/a' });
      expect(o.echo?.headers.destination).toBe(value);
    });

    test.each([
      ['to /dav/admin/b', '/dav/admin/b', 403],
      ['to /dav/admin/b as an absolute URI', () => `http://127.0.0.1:${stack.ports.front}/dav/admin/b`, 403],
      ['to /dav/admin/ through dot segments', '/dav/x/%2e%2e/admin/b', 403],
      ['to /admin/x, where no rule names MOVE', '/admin/x', 405],
      ['to another host', 'http://other.example/dav/b', 400],
      ['to a path with no single meaning', '/dav/..;/admin/b', 400],
    ] as [string, string | (() => string), number][])('bob MOVE /dav/a %s: %d, never the app', async (_, destination, status) => {
      const value = typeof destination === 'string' ? destination : destination();
      for (const method of ['MOVE', 'COPY']) {
        const o = await send(method, '/dav/a', { bob: true, headers: [['Destination', value]] });
        expect({ method, reached: o.echo !== undefined, status: o.res.status }).toEqual({ method, reached: false, status });
      }
    });
  });

  describe('CORS preflights', () => {
    const preflight: [string, string][] = [['Origin', 'https://other.example'], ['Access-Control-Request-Method', 'PUT']];

    test('on a rule with cors_preflight: pass, an anonymous preflight reaches the app without identity', async () => {
      const o = await send('OPTIONS', '/cors/items', { headers: preflight });
      expect(o.echo).toMatchObject({ method: 'OPTIONS', path: '/cors/items' });
      expect(Object.keys(o.echo!.headers).filter((n) => n.startsWith('x-auth-') && n !== 'x-auth-request-id')).toEqual([]);
    });

    test('there, a preflight with bob\'s cookie is still never judged as a person: no identity reaches the app', async () => {
      const o = await send('OPTIONS', '/cors/items', { bob: true, headers: preflight });
      expect(o.echo?.method).toBe('OPTIONS');
      expect(o.echo?.headers['x-auth-user']).toBeUndefined();
    });

    test.each([
      ['an OPTIONS without Access-Control-Request-Method', '/cors/items', [['Origin', 'https://other.example']]],
      ['an OPTIONS without Origin', '/cors/items', [['Access-Control-Request-Method', 'PUT']]],
      ['a preflight on a rule without cors_preflight', '/x', [['Origin', 'https://other.example'], ['Access-Control-Request-Method', 'PUT']]],
    ] as [string, string, [string, string][]][])('anonymous, %s: judged as today (401), never the app', async (_, target, headers) => {
      const o = await send('OPTIONS', target, { headers });
      expect(o.echo).toBeUndefined();
      expect(o.res.status).toBe(401);
    });

    test('a GET with the preflight headers on the cors rule is judged (401 anonymous)', async () => {
      const o = await send('GET', '/cors/items', { headers: preflight });
      expect(o.echo).toBeUndefined();
      expect(o.res.status).toBe(401);
    });
  });
});
