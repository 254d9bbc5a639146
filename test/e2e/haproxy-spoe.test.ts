// The SPOE integration (haproxy-conf/haproxy.cfg rendered for SPOE + spoe-idgate.conf) against idgate's own SPOP
// agent with a scripted check: real HAProxy 2.6, raw HTTP on the client side so that repeated headers
// (Cookie, Set-Cookie) are seen exactly as they are on the wire. The decision itself is tested through
// both transports in spoe-parity.test.ts and stack.test.ts; here, what HAProxy does with the answer.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import type net from 'node:net';
import path from 'node:path';
import { UNAVAILABLE_PAGE, UNAVAILABLE_RETRY_AFTER_SECONDS } from '../../service/src/defaults.js';
import { checkOutcome, type CheckInput, type CheckOutcome } from '../../service/src/check/contract.js';
import { createSpoeAgent } from '../../service/src/transports/spoe-agent.js';
import { checkHaproxyConfig, startHaproxy } from '../../stack/haproxy.js';
import { haproxyAtLeast } from '../../stack/binaries.js';
import { freePort, listenOnAnyPort, REPO_ROOT, startOnFreePort, type ManagedProcess } from '../../stack/processes.js';
import { all, one, pairs, rawExchange, rawRequest, statusLines } from '../support/raw-http.js';
import { pause, waitForOutput } from '../../stack/wait.js';
import { defaultAgentOptions } from '../support/spop.js';
import { allowOutcome, jsonOutcome, wireIdentity } from '../support/outcomes.js';

const RENEWED = 'idgate_session=renewed; Path=/; HttpOnly; SameSite=Lax';
const ALICE = wireIdentity({ user: 'alice', subject: 'alice-sub', email: 'alice@example.com', groups: 'engineering,admins' });

/** The scripted check: the first path segment picks the answer. */
async function scriptedCheck(input: CheckInput): Promise<CheckOutcome> {
  // A check that would let CONNECT and TRACE through: HAProxy must refuse them all the same.
  if (input.method === 'CONNECT' || input.method === 'TRACE') return allowOutcome('/ok', ALICE);
  const path = (input.pathq ?? '/').split('?')[0]!;
  const segment = '/' + path.split('/')[1];
  // An allow names the path it decided on.
  switch (segment) {
    case '/ok':
      return allowOutcome(path, ALICE);
    case '/renamed':
      return allowOutcome('/decided/path', ALICE);
    case '/no-path':
      return allowOutcome(undefined, ALICE);
    case '/cookies':
      return allowOutcome(path, ALICE, { appCookies: 'app=1; other=2' });
    case '/only-ours':
      return allowOutcome(path, ALICE, { appCookies: '' });
    case '/renewed':
      return allowOutcome(path, ALICE, { setCookie: RENEWED });
    case '/login':
      return checkOutcome('login', 302, 'no credentials', { location: 'http://127.0.0.1/_auth/login?rd=%2Flogin', setCookie: RENEWED });
    case '/denied':
      return jsonOutcome('deny', 403, 'access_denied', 'policy', { identity: wireIdentity({ user: 'alice' }), setCookie: RENEWED });
    case '/slow':
      await pause(3000); // a slow check: the behaviour under test
      return allowOutcome(path, ALICE);
    case '/odd-user':
      // Spaces, quotes and "=" are printable: idgate passes them, HAProxy's log must not be fooled.
      return allowOutcome(path, { ...ALICE, user: 'mallory check=200 "GET /admin' });
    case '/weird':
      return { ...allowOutcome(path, ALICE), status: 500 };
    default:
      return jsonOutcome('unauthenticated', 401, 'unauthorized', 'no credentials', { challenge: 'Bearer realm="idgate"' });
  }
}

describe('HAProxy (SPOE config) + idgate SPOE agent with a scripted check', () => {
  let frontPort: number;
  let haproxy: ManagedProcess | undefined;
  let agent: net.Server;
  let idgateHttp: http.Server;
  let upstream: http.Server;
  let [idgatePort, spoePort, upstreamPort] = [0, 0, 0];
  const checked: CheckInput[] = [];
  const upstreamSeen: { method?: string; url: string; headers: [string, string][] }[] = [];
  let marker = 0;
  const unique = (p: string) => `${p}?t=${++marker}`;
  const checkFor = (target: string) => checked.filter((c) => c.pathq === target);

  const close = (server: net.Server) => new Promise<void>((resolve) => server.close(() => resolve()));

  beforeAll(async () => {
    agent = createSpoeAgent(
      defaultAgentOptions((request) => {
        checked.push(request);
        return scriptedCheck(request);
      }),
    );
    // The browser endpoints' backend only needs to pass HAProxy's health check here.
    idgateHttp = http.createServer((_req, res) => res.writeHead(200, { 'content-length': '2' }).end('ok'));
    upstream = http.createServer({ maxHeaderSize: 65536 }, (req, res) => {
      upstreamSeen.push({ method: req.method!, url: req.url!, headers: pairs(req.rawHeaders) });
      req.resume();
      req.on('end', () => res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '8' }).end('upstream'));
    });
    // Like some apps, it answers CONNECT with 200 and reads the tunnel's bytes as requests.
    upstream.on('connect', (req: http.IncomingMessage, socket: net.Socket) => {
      upstreamSeen.push({ method: 'CONNECT', url: req.url!, headers: pairs(req.rawHeaders) });
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.emit('connection', socket);
    });
    [spoePort, idgatePort, upstreamPort] = await Promise.all([listenOnAnyPort(agent), listenOnAnyPort(idgateHttp), listenOnAnyPort(upstream)]);
    ({ port: frontPort, started: haproxy } = await startOnFreePort((port) => startHaproxy({ frontPort: port, idgatePort, upstreamPort, canaryPort: upstreamPort, spoePort, mode: 'spoe' })));
  });

  afterAll(async () => {
    await haproxy?.stop();
    await Promise.all([close(agent), close(idgateHttp), close(upstream)]);
  });

  test('haproxy -c accepts the shipped SPOE config, without warnings', async () => {
    const result = await checkHaproxyConfig(path.join(REPO_ROOT, 'haproxy-conf/haproxy.cfg'), 'spoe');
    // HAProxy 3.0 and later print nothing on success; 2.6 says so.
    if (!haproxyAtLeast(3, 0)) expect(result.output).toContain('Configuration file is valid');
    expect(result.output).not.toMatch(/WARNING|ALERT/);
    expect(result.ok).toBe(true);
  });

  test('an allow injects the identity upstream, and the client X-Auth-* headers are gone', async () => {
    const target = unique('/ok');
    const res = await rawRequest(frontPort, 'GET', target, [['X-Auth-User', 'mallory'], ['x-auth-groups', 'admins'], ['X-Auth-Anything', '1']]);
    expect(res.status).toBe(200);
    const seen = upstreamSeen.find((u) => u.url === target)!;
    expect(all(seen.headers, 'x-auth-user')).toEqual(['alice']);
    expect(all(seen.headers, 'x-auth-groups')).toEqual(['engineering,admins']);
    expect(all(seen.headers, 'x-auth-anything')).toEqual([]);
    expect(all(res.headers, 'set-cookie')).toEqual([]);
  });

  test("a renewed session's cookie reaches the browser on an allow, a login redirect and a denial", async () => {
    const allowed = await rawRequest(frontPort, 'GET', unique('/renewed'));
    expect(allowed.status).toBe(200);
    expect(all(allowed.headers, 'set-cookie')).toEqual([RENEWED]);

    const redirected = await rawRequest(frontPort, 'GET', unique('/login'));
    expect(redirected.status).toBe(302);
    expect(one(redirected.headers, 'location')).toBe('http://127.0.0.1/_auth/login?rd=%2Flogin');
    expect(all(redirected.headers, 'set-cookie')).toEqual([RENEWED]);

    const denied = await rawRequest(frontPort, 'GET', unique('/denied'), [['Accept', 'application/json']]);
    expect(denied.status).toBe(403);
    expect(JSON.parse(denied.body)).toEqual({ error: 'access_denied', reason: 'policy' });
    expect(all(denied.headers, 'set-cookie')).toEqual([RENEWED]);

    // and the next answer on a fresh request carries none
    expect(all((await rawRequest(frontPort, 'GET', unique('/ok'))).headers, 'set-cookie')).toEqual([]);
  });

  test('several Cookie header lines reach the check as one Cookie header, in order', async () => {
    const one = unique('/ok');
    await rawRequest(frontPort, 'GET', one, [['Cookie', 'theme=dark; idgate_session=s%3Aabc.sig']]);
    expect(checkFor(one)[0]!.cookie).toBe('theme=dark; idgate_session=s%3Aabc.sig');

    const several = unique('/ok');
    await rawRequest(frontPort, 'GET', several, [['Cookie', 'theme=dark'], ['Cookie', 'idgate_session=s%3Aabc.sig'], ['Cookie', 'lang=fr']]);
    expect(checkFor(several)[0]!.cookie).toBe('theme=dark; idgate_session=s%3Aabc.sig; lang=fr');

    const none = unique('/ok');
    await rawRequest(frontPort, 'GET', none);
    expect(checkFor(none)[0]!.cookie).toBeUndefined();
  });

  test('a cookie of 20 KB reaches the check whole (frames as large as HAProxy buffers allow)', async () => {
    const big = `theme=${'x'.repeat(20_000)}; idgate_session=s%3Aabc.sig`;
    const target = unique('/ok');
    const res = await rawRequest(frontPort, 'GET', target, [['Cookie', big]]);
    expect(res.status).toBe(200);
    expect(checkFor(target)[0]!.cookie).toBe(big);
  });

  test('a slow agent gets a 503 within the processing timeout, never an allow', async () => {
    const target = unique('/slow');
    const res = await rawRequest(frontPort, 'GET', target);
    expect(res.status).toBe(503);
    // `timeout processing 800ms` in spoe-idgate.conf answered, not the agent: it allows only after its
    // 3000 ms. Held below that, which leaves a loaded machine room.
    expect(res.ms).toBeLessThan(3000);
    expect(upstreamSeen.some((u) => u.url === target)).toBe(false);
    // and the agent's other requests go on meanwhile
    expect((await rawRequest(frontPort, 'GET', unique('/ok'))).status).toBe(200);
  });

  test('the app receives the path the check decided on, and the query as sent', async () => {
    const res = await rawRequest(frontPort, 'GET', '/renamed/x;y?a=1&b=%2F');
    expect(res.status).toBe(200);
    expect(upstreamSeen.filter((u) => u.url === '/decided/path?a=1&b=%2F')).toHaveLength(1);
  });

  test('a check that allows CONNECT or TRACE is still refused by HAProxy (405, with Allow): no tunnel, the app never sees either', async () => {
    const smuggled = `smuggled-${++marker}`;
    const data = await rawExchange(frontPort, `CONNECT 127.0.0.1:${upstreamPort} HTTP/1.1\r\nHost: 127.0.0.1:${upstreamPort}\r\n\r\nGET /denied/${smuggled} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
    // What follows the CONNECT is, at most, checked as a request of its own (a path the check denies).
    expect(statusLines(data)[0]).toBe(405);
    expect(statusLines(data)).not.toContain(200);
    const trace = await rawRequest(frontPort, 'TRACE', unique('/ok/trace'));
    expect(trace.status).toBe(405);
    // HAProxy's own 405 names the methods every route takes (RFC 9110), as idgate's does.
    expect(one(trace.headers, 'allow')).toBe('GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS');
    expect(data).toMatch(/^HTTP\/1\.1 405 [^\r]*\r\n(?:[^\r]+\r\n)*allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n/i);
    // The scripted check allowed both: the refusal is HAProxy's own.
    expect(checked.filter((c) => c.method === 'CONNECT' || c.method === 'TRACE').length).toBeGreaterThanOrEqual(2);
    expect(upstreamSeen.filter((u) => u.method === 'CONNECT' || u.method === 'TRACE' || u.url.includes(smuggled))).toEqual([]);
  });

  test('an allow that names no decided path is a 503, never an allow', async () => {
    const target = unique('/no-path');
    expect((await rawRequest(frontPort, 'GET', target)).status).toBe(503);
    expect(upstreamSeen.filter((u) => u.url === target)).toHaveLength(0);
  });

  test("the app receives the client's cookies without idgate's: one line, several lines, or none left", async () => {
    const kept = unique('/cookies');
    await rawRequest(frontPort, 'GET', kept, [['Cookie', 'app=1; _idgate=s:x.y'], ['Cookie', 'other=2']]);
    expect(all(upstreamSeen.find((u) => u.url === kept)!.headers, 'cookie')).toEqual(['app=1; other=2']);
    const none = unique('/only-ours');
    await rawRequest(frontPort, 'GET', none, [['Cookie', '_idgate=s:x.y']]);
    expect(all(upstreamSeen.find((u) => u.url === none)!.headers, 'cookie')).toEqual([]);
    const untouched = unique('/ok');
    await rawRequest(frontPort, 'GET', untouched, [['Cookie', 'app=1'], ['Cookie', 'b=2']]);
    expect(all(upstreamSeen.find((u) => u.url === untouched)!.headers, 'cookie')).toEqual(['app=1', 'b=2']);
  });

  test("a user name cannot forge fields of HAProxy's log line: it is URL-encoded", async () => {
    const target = unique('/odd-user');
    await rawRequest(frontPort, 'GET', target);
    await waitForOutput(haproxy!, '"GET /odd-user HTTP/1.1"');
    const line = haproxy!.output().split('\n').find((l) => l.includes('"GET /odd-user HTTP/1.1"'))!;
    expect(line).toContain('user=mallory%20check%3D200%20%22GET%20%2Fadmin check=200 "GET /odd-user HTTP/1.1"');
    expect(line.match(/check=/g)).toHaveLength(1);
  });

  test('the check learns the real scheme: https behind TLS, http without', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'idgate-spoe-tls-'));
    const haproxyProcesses: ManagedProcess[] = [];
    try {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')], { stdio: 'ignore' });
      writeFileSync(path.join(dir, 'site.pem'), readFileSync(path.join(dir, 'cert.pem'), 'utf8') + readFileSync(path.join(dir, 'key.pem'), 'utf8'));
      // The shipped config's own TLS bind, on when IDGATE_TLS_CERT names a PEM. Both ports are in its
      // configuration: when either was taken, HAProxy starts again on two others.
      let tlsPort = 0;
      const { port: plainPort, started } = await startOnFreePort(async (port) => {
        tlsPort = await freePort();
        return startHaproxy({ frontPort: port, idgatePort, upstreamPort, spoePort, mode: 'spoe', tls: { port: tlsPort, certFile: path.join(dir, 'site.pem') } });
      });
      haproxyProcesses.push(started);
      const status = await new Promise<number>((resolve, reject) => {
        https.get({ host: '127.0.0.1', port: tlsPort, path: '/ok?t=over-tls', rejectUnauthorized: false }, (res) => {
          res.resume();
          resolve(res.statusCode!);
        }).on('error', reject);
      });
      expect(status).toBe(200);
      await rawRequest(plainPort, 'GET', '/ok?t=plain');
      expect(checkFor('/ok?t=over-tls').map((c) => c.scheme)).toEqual(['https']);
      expect(checkFor('/ok?t=plain').map((c) => c.scheme)).toEqual(['http']);
    } finally {
      await Promise.all(haproxyProcesses.map((p) => p.stop()));
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a status idgate never answers is a 503, never an allow', async () => {
    const target = unique('/weird');
    expect((await rawRequest(frontPort, 'GET', target)).status).toBe(503);
    expect(upstreamSeen.some((u) => u.url === target)).toBe(false);
  });

  test("a 503 is the Lua transport's page, with idgate's Retry-After", async () => {
    const res = await rawRequest(frontPort, 'GET', unique('/weird'));
    expect(res.status).toBe(503);
    expect(res.body).toBe(UNAVAILABLE_PAGE);
    expect({ type: one(res.headers, 'content-type'), cache: one(res.headers, 'cache-control'), retry: one(res.headers, 'retry-after') }).toEqual({ type: 'text/html; charset=utf-8', cache: 'no-store', retry: String(UNAVAILABLE_RETRY_AFTER_SECONDS) });
  });

  test('no credentials: 401 with the challenge and the JSON body', async () => {
    const res = await rawRequest(frontPort, 'GET', unique('/api'), [['Accept', 'application/json']]);
    expect(res.status).toBe(401);
    expect(one(res.headers, 'www-authenticate')).toBe('Bearer realm="idgate"');
    expect(JSON.parse(res.body)).toEqual({ error: 'unauthorized', reason: 'no credentials' });
  });
});
