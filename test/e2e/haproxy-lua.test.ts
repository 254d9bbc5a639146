// The HAProxy integration (haproxy-conf/haproxy.cfg + idgate.lua) against a stub idgate and a stub
// upstream: real HAProxy 2.6, real Lua httpclient, raw HTTP on the client side so that repeated
// headers (Cookie, Set-Cookie) are seen exactly as they are on the wire.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { cpSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import os from 'node:os';
import path from 'node:path';
import { freePort, startDeadEnd, startOnFreePort, type ManagedProcess } from '../../stack/processes.js';
import { checkHaproxyConfig, haproxyConfigPath, startHaproxy, testCheckSecret } from '../../stack/haproxy.js';
import { haproxyAtLeast } from '../../stack/binaries.js';
import { renderHaproxyTemplate } from '../../service/src/transports/haproxy-config.js';
import { UNAVAILABLE_PAGE, UNAVAILABLE_RETRY_AFTER_SECONDS } from '../../service/src/defaults.js';
import { all, one, pairs, parseResponse, rawExchange, rawRequest, statusLines, type RawResponse } from '../support/raw-http.js';
import { probeUntil, waitForOutput } from '../../stack/wait.js';

interface Recorded {
  method: string;
  url: string;
  headers: [string, string][];
  body: string;
  remotePort: number;
}

/** Several requests, one after the other, on one keep-alive connection (every response must carry Content-Length). */
async function keepAliveSession(port: number, requests: { method: string; target: string }[]): Promise<RawResponse[]> {
  const socket = net.connect({ port, host: '127.0.0.1' });
  socket.setEncoding('latin1');
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject); });
  let data = '';
  let wake: (() => void) | undefined;
  socket.on('data', (chunk: string) => { data += chunk; wake?.(); });
  const out: RawResponse[] = [];
  try {
    for (const { method, target } of requests) {
      const started = Date.now();
      data = '';
      socket.write(`${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
      const deadline = Date.now() + 10_000;
      for (;;) {
        const split = data.indexOf('\r\n\r\n');
        const length = split >= 0 ? /\r\ncontent-length:\s*(\d+)/i.exec(data.slice(0, split + 2)) : null;
        if (length && data.length - split - 4 >= Number(length[1])) break;
        if (Date.now() > deadline || socket.destroyed) throw new Error(`incomplete answer to ${target}: ${data.slice(0, 200)}`);
        await new Promise<void>((resolve) => { wake = resolve; setTimeout(resolve, 100); });
      }
      out.push(parseResponse(data, started));
    }
  } finally {
    socket.destroy();
  }
  return out;
}

/** HAProxy writes its log and warnings a moment after answering: wait for a piece of its output. */
async function outputOf(proc: ManagedProcess, text: string): Promise<string> {
  await waitForOutput(proc, text, { timeoutMs: 2000 });
  return proc.output();
}

// The headers docs/reference.md says the check receives.
const CHECK_REQUEST_HEADERS = new Set([
  'host', // "idgate", set by the httpclient from the check URL
  'cookie', 'authorization', 'dpop', 'accept', 'x-requested-with', 'user-agent', 'origin', 'access-control-request-method', 'destination',
  'x-forwarded-method', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-uri', 'x-forwarded-for', 'x-request-id',
  // HAProxy's check secret, set by the check listener (never by the client)
  'x-idgate-check-secret',
]);

/** IDGATE_CHECK_SECRET of the HAProxy that asks the scripted idgate. */
const CHECK_SECRET = testCheckSecret();

const BIG_GROUPS = Array.from({ length: 600 }, (_, i) => `group-${String(i).padStart(4, '0')}`).join(',');

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe('HAProxy + idgate.lua against a stub idgate', () => {
  let frontPort: number;
  let idgatePort: number;
  let upstreamPort: number;
  let haproxy: ManagedProcess | undefined;
  let checkSocket: string;
  let idgate: http.Server;
  let upstream: http.Server;
  const checks: Recorded[] = [];
  const authPages: Recorded[] = [];
  const upstreamSeen: Recorded[] = [];
  let marker = 0;

  /** A path with a marker in its query, so each test finds its own check and upstream request. */
  const unique = (path: string) => `${path}?t=${++marker}`;
  const checkFor = (target: string) => checks.filter((c) => one(c.headers, 'x-forwarded-uri') === target);
  const upstreamFor = (target: string) => upstreamSeen.filter((u) => u.url === target);

  function record(req: http.IncomingMessage, body: string): Recorded {
    return { method: req.method!, url: req.url!, headers: pairs(req.rawHeaders), body, remotePort: req.socket.remotePort! };
  }

  function idgateHandler(req: http.IncomingMessage, res: http.ServerResponse, body: string): void {
    const url = req.url ?? '';
    if (url === '/healthz' || url === '/readyz') { res.writeHead(200, { 'content-type': 'text/plain' }).end('ok'); return; }
    if (url.startsWith('/_auth/')) {
      authPages.push(record(req, body));
      const json = JSON.stringify({ url, headers: pairs(req.rawHeaders) });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) }).end(json);
      return;
    }
    if (!url.startsWith('/auth')) { res.writeHead(404).end(); return; }
    checks.push(record(req, body));
    // A check that would let CONNECT and TRACE through: HAProxy must refuse them all the same.
    if (req.headers['x-forwarded-method'] === 'CONNECT' || req.headers['x-forwarded-method'] === 'TRACE') {
      res.writeHead(200, [['X-Idgate-Path', '/ok'], ['X-Auth-User', 'alice'], ['Content-Length', '0']]).end();
      return;
    }
    const uri = String(req.headers['x-forwarded-uri'] ?? '');
    // An allow names the path it decided on (here: the path as sent; /renamed decides on another one).
    const decided = uri.startsWith('/renamed') ? '/decided/path' : uri.split('?')[0]!;
    const query = new URLSearchParams(uri.split('?')[1] ?? '');
    // the first path segment picks the answer: /ok/deep/path?x behaves like /ok
    switch ('/' + (uri.split('?')[0]!.split('/')[1] ?? '')) {
      case '/ok':
        res.writeHead(200, [
          ['X-Idgate-Path', decided],
          ['X-Auth-User', 'alice'],
          ['X-Auth-Email', 'alice@example.com'],
          ['X-Auth-Groups', 'engineering,admins'],
          ['X-Auth-Backend', 'pool-a'],
          ['Set-Cookie', 'idgate_session=refreshed; Path=/; HttpOnly; SameSite=Lax'],
          ['Set-Cookie', 'idgate_csrf=abc; Path=/; Expires=Wed, 21 Oct 2037 07:28:00 GMT'],
          ['Content-Length', '0'],
        ]).end();
        return;
      case '/big':
        res.writeHead(200, [['X-Idgate-Path', decided], ['X-Auth-User', 'alice'], ['X-Auth-Groups', BIG_GROUPS], ['Content-Length', '0']]).end();
        return;
      case '/public':
        res.writeHead(200, { 'x-idgate-path': decided, 'content-length': '0' }).end();
        return;
      case '/renamed':
        res.writeHead(200, [['X-Idgate-Path', decided], ['Content-Length', '0']]).end();
        return;
      case '/cookies':
        // idgate's cookies taken out: the rest (?keep=...) goes to the app, or no Cookie header at all.
        res.writeHead(200, [['X-Idgate-Path', decided], ['X-Idgate-Cookie', query.get('keep') ?? ''], ['Content-Length', '0']]).end();
        return;
      case '/odd-user':
        // Spaces, quotes and "=" are printable: idgate passes them, HAProxy's log must not be fooled.
        res.writeHead(200, [['X-Idgate-Path', decided], ['X-Auth-User', 'mallory check=200 "GET /admin'], ['Content-Length', '0']]).end();
        return;
      case '/no-path':
        res.writeHead(200, [['X-Auth-User', 'alice'], ['Content-Length', '0']]).end();
        return;
      case '/login': {
        const status = req.headers['x-forwarded-method'] === 'GET' ? 302 : 303;
        res.writeHead(status, [
          ['Location', `http://127.0.0.1:${frontPort}/_auth/login?rd=${encodeURIComponent(uri)}`],
          ['Set-Cookie', 'idgate_state=s1; Path=/_auth/; HttpOnly'],
          ['Set-Cookie', 'idgate_nonce=n1; Path=/_auth/; HttpOnly'],
          ['Content-Length', '0'],
        ]).end();
        return;
      }
      case '/api': {
        const json = '{"error":"unauthorized"}';
        res.writeHead(401, {
          'www-authenticate': 'Bearer realm="idgate", error="invalid_token", error_description="expired"',
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(json),
        }).end(json);
        return;
      }
      case '/deny': {
        const json = '{"error":"forbidden","reason":"needs group admins"}';
        res.writeHead(403, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(json) }).end(json);
        return;
      }
      case '/slow':
        return; // never answers; closed in afterAll
      case '/boom':
        res.writeHead(500, { 'content-type': 'text/plain', 'content-length': '4' }).end('boom');
        return;
      case '/weird':
        res.writeHead(204).end(); // a status idgate never answers
        return;
      default:
        res.writeHead(500).end();
    }
  }

  /** Listens on `port` (default: one of the kernel's choosing); resolves with the port. */
  function listen(server: http.Server, port = 0): Promise<number> {
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => { server.off('error', reject); resolve((server.address() as net.AddressInfo).port); });
    });
  }

  function makeIdgate(): http.Server {
    return http.createServer({ maxHeaderSize: 65536 }, (req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => { body += c; });
      req.on('end', () => idgateHandler(req, res, body));
    });
  }

  function close(server: http.Server | undefined): Promise<void> {
    if (!server || !server.listening) return Promise.resolve();
    return new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  beforeAll(async () => {
    idgate = makeIdgate();
    upstream = http.createServer({ maxHeaderSize: 65536 }, (req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => { body += c; });
      req.on('end', () => {
        const seen = record(req, body);
        upstreamSeen.push(seen);
        const json = JSON.stringify(seen);
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) }).end(json);
      });
    });
    // Like some apps, it answers CONNECT with 200 and reads the tunnel's bytes as requests.
    upstream.on('connect', (req: http.IncomingMessage, socket: net.Socket) => {
      upstreamSeen.push(record(req, ''));
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.emit('connection', socket);
    });
    idgatePort = await listen(idgate);
    upstreamPort = await listen(upstream);
    checkSocket = path.join(mkdtempSync(path.join(os.tmpdir(), 'idgate-check-')), 'check.sock');
    ({ port: frontPort, started: haproxy } = await startOnFreePort((port) => startHaproxy({ frontPort: port, idgatePort, upstreamPort, checkDst: `unix@${checkSocket}`, checkSecret: CHECK_SECRET })));
  });

  afterAll(async () => {
    rmSync(path.dirname(checkSocket), { recursive: true, force: true });
    await haproxy?.stop();
    await close(idgate);
    await close(upstream);
  });

  test('haproxy -c accepts the shipped config, without warnings', async () => {
    const result = await checkHaproxyConfig();
    // HAProxy 3.0 and later print nothing on success; 2.6 says so.
    if (!haproxyAtLeast(3, 0)) expect(result.output).toContain('Configuration file is valid');
    expect(result.output).not.toMatch(/WARNING|ALERT/);
    expect(result.ok).toBe(true);
  });

  test('behind TLS (the shipped bind, on with IDGATE_TLS_CERT) the check and the app are told https, HTTP/2 offered', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'idgate-lua-tls-'));
    let tlsHaproxy: ManagedProcess | undefined;
    try {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')], { stdio: 'ignore' });
      const cert = readFileSync(path.join(dir, 'cert.pem'), 'utf8');
      writeFileSync(path.join(dir, 'site.pem'), cert + readFileSync(path.join(dir, 'key.pem'), 'utf8'));
      let tlsPort = 0;
      ({ started: tlsHaproxy } = await startOnFreePort(async (frontPort) => {
        tlsPort = await freePort();
        return startHaproxy({ frontPort, idgatePort, upstreamPort, tls: { port: tlsPort, certFile: path.join(dir, 'site.pem') }, name: 'haproxy-tls' });
      }));
      const target = unique('/ok/over-tls');
      const status = await new Promise<number>((resolve, reject) => {
        https.get({ host: '127.0.0.1', port: tlsPort, path: target, ca: cert }, (res) => {
          res.resume();
          resolve(res.statusCode!);
        }).on('error', reject);
      });
      const alpn = await new Promise<string | false | null>((resolve, reject) => {
        const socket = tls.connect({ host: '127.0.0.1', port: tlsPort, ca: cert, ALPNProtocols: ['h2', 'http/1.1'] }, () => {
          resolve(socket.alpnProtocol);
          socket.destroy();
        });
        socket.on('error', reject);
      });
      expect(status).toBe(200);
      expect(alpn).toBe('h2');
      expect(checkFor(target).map((c) => one(c.headers, 'x-forwarded-proto'))).toEqual(['https']);
      expect(upstreamFor(target).map((u) => one(u.headers, 'x-forwarded-proto'))).toEqual(['https']);
    } finally {
      await tlsHaproxy?.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('identity headers from the check reach upstream', async () => {
    const target = unique('/ok');
    const res = await rawRequest(frontPort, 'GET', target);
    expect(res.status).toBe(200);
    const [seen] = upstreamFor(target);
    expect(seen).toBeDefined();
    expect(all(seen!.headers, 'x-auth-user')).toEqual(['alice']);
    expect(all(seen!.headers, 'x-auth-email')).toEqual(['alice@example.com']);
    expect(all(seen!.headers, 'x-auth-groups')).toEqual(['engineering,admins']);
    expect(all(seen!.headers, 'x-auth-backend')).toEqual(['pool-a']);
    // idgate's Set-Cookie is for the browser, never for the app
    expect(all(seen!.headers, 'set-cookie')).toEqual([]);
  });

  test('a spoofed client X-Auth-User never reaches upstream', async () => {
    const spoof: [string, string][] = [
      ['X-Auth-User', 'mallory'], ['x-auth-groups', 'admins'], ['X-AUTH-EMAIL', 'mallory@evil'],
      ['X-Auth-Backend', 'evil'], ['X-Auth-Anything', '1'],
    ];
    // public route: idgate allows without identity, so nothing X-Auth-* may arrive at all
    const publicTarget = unique('/public');
    expect((await rawRequest(frontPort, 'GET', publicTarget, spoof)).status).toBe(200);
    const [pub] = upstreamFor(publicTarget);
    expect(pub!.headers.filter(([n]) => n.startsWith('x-auth-'))).toEqual([]);
    // nor do they reach the check
    expect(checkFor(publicTarget)[0]!.headers.filter(([n]) => n.startsWith('x-auth-'))).toEqual([]);

    // signed-in route: only idgate's values, once each
    const okTarget = unique('/ok');
    expect((await rawRequest(frontPort, 'GET', okTarget, spoof)).status).toBe(200);
    const [ok] = upstreamFor(okTarget);
    expect(all(ok!.headers, 'x-auth-user')).toEqual(['alice']);
    expect(all(ok!.headers, 'x-auth-groups')).toEqual(['engineering,admins']);
    expect(all(ok!.headers, 'x-auth-backend')).toEqual(['pool-a']);
    expect(all(ok!.headers, 'x-auth-anything')).toEqual([]);
  });

  test('every Set-Cookie from the check reaches the client unmerged', async () => {
    const res = await rawRequest(frontPort, 'GET', unique('/ok'));
    expect(res.status).toBe(200);
    expect(all(res.headers, 'set-cookie')).toEqual([
      'idgate_session=refreshed; Path=/; HttpOnly; SameSite=Lax',
      'idgate_csrf=abc; Path=/; Expires=Wed, 21 Oct 2037 07:28:00 GMT',
    ]);
    // and a later request on a public route gets none of them
    const pub = await rawRequest(frontPort, 'GET', unique('/public'));
    expect(all(pub.headers, 'set-cookie')).toEqual([]);
  });

  test('302 from the check becomes a redirect with Location, its Set-Cookies and no-store', async () => {
    const target = unique('/login');
    const res = await rawRequest(frontPort, 'GET', target, [['Accept', 'text/html']]);
    expect(res.status).toBe(302);
    expect(one(res.headers, 'location')).toBe(`http://127.0.0.1:${frontPort}/_auth/login?rd=${encodeURIComponent(target)}`);
    expect(all(res.headers, 'set-cookie')).toEqual(['idgate_state=s1; Path=/_auth/; HttpOnly', 'idgate_nonce=n1; Path=/_auth/; HttpOnly']);
    expect(one(res.headers, 'cache-control')).toBe('no-store');
    expect(upstreamFor(target)).toEqual([]);
  });

  test('303 from the check (a POST) becomes a 303 redirect and the body never reaches upstream', async () => {
    const target = unique('/login');
    const res = await rawRequest(frontPort, 'POST', target, [['Content-Type', 'application/x-www-form-urlencoded']], 'a=1&b=2');
    expect(res.status).toBe(303);
    expect(one(res.headers, 'location')).toContain('/_auth/login?rd=');
    expect(upstreamFor(target)).toEqual([]);
    const [check] = checkFor(target);
    expect(check!.method).toBe('GET');
    expect(one(check!.headers, 'x-forwarded-method')).toBe('POST');
    expect(check!.body).toBe('');
  });

  test('401 keeps WWW-Authenticate, content type and body', async () => {
    const target = unique('/api');
    const res = await rawRequest(frontPort, 'GET', target, [['Authorization', 'Bearer expired'], ['Accept', 'application/json']]);
    expect(res.status).toBe(401);
    expect(one(res.headers, 'www-authenticate')).toBe('Bearer realm="idgate", error="invalid_token", error_description="expired"');
    expect(one(res.headers, 'content-type')).toBe('application/json');
    expect(one(res.headers, 'cache-control')).toBe('no-store');
    expect(res.body).toBe('{"error":"unauthorized"}');
    expect(upstreamFor(target)).toEqual([]);
  });

  test('403 keeps body and content type', async () => {
    const target = unique('/deny');
    const res = await rawRequest(frontPort, 'GET', target, [['Accept', 'application/json']]);
    expect(res.status).toBe(403);
    expect(one(res.headers, 'content-type')).toBe('application/json; charset=utf-8');
    expect(one(res.headers, 'cache-control')).toBe('no-store');
    expect(JSON.parse(res.body)).toEqual({ error: 'forbidden', reason: 'needs group admins' });
    expect(upstreamFor(target)).toEqual([]);
  });

  test('/_auth/ paths go straight to idgate with HAProxy\'s X-Forwarded-* not the client\'s', async () => {
    const checksBefore = checks.length;
    const res = await rawRequest(frontPort, 'GET', '/_auth/userinfo?x=1', [
      ['Host', 'app.example.com'],
      ['X-Forwarded-For', '6.6.6.6'], ['X-Forwarded-Host', 'evil.example'], ['X-Forwarded-Proto', 'https'],
      ['X-Forwarded-Port', '1'], ['Forwarded', 'for=6.6.6.6'], ['X-Request-Id', 'spoofed-id'], ['X-Auth-User', 'mallory'],
    ]);
    expect(res.status).toBe(200);
    expect(checks.length).toBe(checksBefore); // no check for /_auth/
    const seen = authPages.at(-1)!;
    expect(seen.url).toBe('/_auth/userinfo?x=1');
    expect(all(seen.headers, 'x-forwarded-for')).toEqual(['127.0.0.1']);
    expect(all(seen.headers, 'x-forwarded-host')).toEqual(['app.example.com']);
    expect(all(seen.headers, 'x-forwarded-proto')).toEqual(['http']);
    expect(all(seen.headers, 'x-forwarded-port')).toEqual([]);
    expect(all(seen.headers, 'forwarded')).toEqual([]);
    expect(all(seen.headers, 'x-auth-user')).toEqual([]);
    const ids = all(seen.headers, 'x-request-id');
    expect(ids).toHaveLength(1);
    expect(ids[0]).toMatch(UUID);
  });

  test('the app receives the path the check decided on, and the query as sent', async () => {
    const res = await rawRequest(frontPort, 'GET', '/renamed/x;y?a=1&b=%2F');
    expect(res.status).toBe(200);
    expect(upstreamFor('/decided/path?a=1&b=%2F')).toHaveLength(1);
  });

  test('a check that allows CONNECT or TRACE is still refused by HAProxy (405, with Allow): no tunnel, the app never sees either', async () => {
    const smuggled = `smuggled-${++marker}`;
    const data = await rawExchange(frontPort, `CONNECT 127.0.0.1:${upstreamPort} HTTP/1.1\r\nHost: 127.0.0.1:${upstreamPort}\r\n\r\nGET /deny/${smuggled} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
    // What follows the CONNECT is, at most, checked as a request of its own (a path the check denies).
    expect(statusLines(data)[0]).toBe(405);
    expect(statusLines(data)).not.toContain(200);
    const trace = await rawRequest(frontPort, 'TRACE', unique('/ok/trace'));
    expect(trace.status).toBe(405);
    // HAProxy's own 405 names the methods every route takes (RFC 9110), as idgate's does.
    expect(one(trace.headers, 'allow')).toBe('GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS');
    expect(data).toMatch(/^HTTP\/1\.1 405 [^\r]*\r\n(?:[^\r]+\r\n)*allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n/i);
    // The stub allowed both: the refusal is HAProxy's own. The CONNECT names no path, and idgate.lua sends none
    // (no stand-in "/": idgate refuses a check without a URI).
    const asked = checks.filter((c) => ['CONNECT', 'TRACE'].includes(one(c.headers, 'x-forwarded-method') ?? ''));
    expect(asked.length).toBeGreaterThanOrEqual(2);
    expect(asked.filter((c) => one(c.headers, 'x-forwarded-method') === 'CONNECT').map((c) => one(c.headers, 'x-forwarded-uri'))).toEqual([undefined]);
    expect(upstreamSeen.filter((u) => u.method === 'CONNECT' || u.method === 'TRACE' || u.url.includes(smuggled))).toEqual([]);
  });

  test('an allow that names no decided path is a 503, never an allow', async () => {
    const target = unique('/no-path');
    const res = await rawRequest(frontPort, 'GET', target);
    expect(res.status).toBe(503);
    expect(upstreamFor(target)).toHaveLength(0);
  });

  test("the app receives the client's cookies without idgate's: one line, several lines, or none left", async () => {
    const kept = unique('/cookies') + '&keep=' + encodeURIComponent('app=1; other=2');
    await rawRequest(frontPort, 'GET', kept, [['Cookie', 'app=1; _idgate=s:x.y'], ['Cookie', 'other=2']]);
    expect(all(upstreamFor(kept)[0]!.headers, 'cookie')).toEqual(['app=1; other=2']);
    const none = unique('/cookies');
    await rawRequest(frontPort, 'GET', none, [['Cookie', '_idgate=s:x.y']]);
    expect(all(upstreamFor(none)[0]!.headers, 'cookie')).toEqual([]);
    // No X-Idgate-Cookie from the check: the Cookie header goes on untouched.
    const untouched = unique('/ok');
    await rawRequest(frontPort, 'GET', untouched, [['Cookie', 'app=1'], ['Cookie', 'b=2']]);
    expect(all(upstreamFor(untouched)[0]!.headers, 'cookie')).toEqual(['app=1', 'b=2']);
  });

  test('the check listener is a socket only its owner may use, and it answers nothing but GET /auth', async () => {
    const dst = checkSocket;
    expect(statSync(dst).mode & 0o777).toBe(0o600);
    expect(statSync(path.dirname(dst)).mode & 0o777).toBe(0o700);
    const ask = (method: string, target: string) =>
      new Promise<number>((resolve, reject) => {
        const req = http.request({ socketPath: dst, method, path: target, headers: { 'x-forwarded-uri': '/ok', 'x-forwarded-method': 'GET', 'x-forwarded-host': 'h' } }, (res) => {
          res.resume();
          resolve(res.statusCode!);
        });
        req.on('error', reject);
        req.end();
      });
    expect(await ask('GET', '/auth')).toBe(200);
    expect(await ask('GET', '/_auth/userinfo')).toBe(404);
    expect(await ask('GET', '/metrics')).toBe(404);
    expect(await ask('POST', '/auth')).toBe(404);
  });

  test('the check receives only the headers of docs/reference.md (no Accept-Encoding, no body)', async () => {
    const target = '/ok/deep/path?q=a%20b&x=1,2';
    upstreamSeen.length = 0;
    const res = await rawRequest(frontPort, 'POST', target, [
      ['Host', 'app.example.com'],
      ['Cookie', 'idgate_session=s1'], ['Cookie', 'theme=dark'],
      ['Authorization', 'Bearer t0k3n'],
      ['Accept', 'text/html, application/json'],
      ['X-Requested-With', 'XMLHttpRequest'],
      ['User-Agent', 'jest-client/1.0'],
      ['Accept-Encoding', 'gzip, br'],
      ['Accept-Language', 'en'],
      ['Content-Type', 'text/plain'],
      ['X-Custom', 'nope'],
      ['Referer', 'http://elsewhere/'],
      ['X-Forwarded-For', '6.6.6.6'],
      ['X-Forwarded-Host', 'evil.example'],
      ['X-Request-Id', 'spoofed-id'],
    ], 'the body stays with the app');
    expect(res.status).toBe(200);
    const [check] = checkFor(target);
    expect(check).toBeDefined();
    expect(check!.method).toBe('GET');
    expect(check!.url).toBe('/auth');
    expect(check!.body).toBe('');
    for (const [name] of check!.headers) expect(CHECK_REQUEST_HEADERS).toContain(name);
    const h = check!.headers;
    expect(all(h, 'cookie')).toEqual(['idgate_session=s1; theme=dark']);
    expect(all(h, 'authorization')).toEqual(['Bearer t0k3n']);
    expect(all(h, 'accept')).toEqual(['text/html, application/json']);
    expect(all(h, 'x-requested-with')).toEqual(['XMLHttpRequest']);
    expect(all(h, 'user-agent')).toEqual(['jest-client/1.0']);
    expect(all(h, 'x-forwarded-method')).toEqual(['POST']);
    expect(all(h, 'x-forwarded-proto')).toEqual(['http']);
    expect(all(h, 'x-forwarded-host')).toEqual(['app.example.com']);
    expect(all(h, 'x-forwarded-uri')).toEqual([target]);
    expect(all(h, 'x-forwarded-for')).toEqual(['127.0.0.1']);
    expect(all(h, 'x-idgate-check-secret')).toEqual([CHECK_SECRET]);
    expect(all(h, 'accept-encoding')).toEqual([]);
    expect(all(h, 'content-length')).toEqual([]);
    expect(all(h, 'transfer-encoding')).toEqual([]);
    const ids = all(h, 'x-request-id');
    expect(ids).toHaveLength(1);
    expect(ids[0]).toMatch(UUID);
    // the app gets the same request id, HAProxy's X-Forwarded-*, and the body
    const [seen] = upstreamFor(target);
    expect(all(seen!.headers, 'x-request-id')).toEqual(ids);
    expect(all(seen!.headers, 'x-forwarded-for')).toEqual(['127.0.0.1']);
    expect(all(seen!.headers, 'x-forwarded-host')).toEqual(['app.example.com']);
    expect(seen!.body).toBe('the body stays with the app');
  });

  test('a WebSocket upgrade request does not carry Connection/Upgrade to the check', async () => {
    const target = unique('/api');
    const res = await rawRequest(frontPort, 'GET', target, [
      ['Connection', 'Upgrade'], ['Upgrade', 'websocket'], ['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ=='], ['Sec-WebSocket-Version', '13'],
    ]);
    expect(res.status).toBe(401);
    const [check] = checkFor(target);
    expect(all(check!.headers, 'upgrade')).toEqual([]);
    expect(all(check!.headers, 'sec-websocket-key')).toEqual([]);
    expect((all(check!.headers, 'connection')[0] ?? '').toLowerCase()).not.toContain('upgrade');
  });

  test('checks reuse connections to idgate instead of opening one per request', async () => {
    const before = checks.length;
    for (let i = 0; i < 20; i++) expect((await rawRequest(frontPort, 'GET', unique('/public'))).status).toBe(200);
    const ports = new Set(checks.slice(before).map((c) => c.remotePort));
    expect(checks.length - before).toBe(20);
    expect(ports.size).toBeLessThanOrEqual(2);
  });

  test('the log line carries the request id and the checked user', async () => {
    const target = unique('/ok');
    await rawRequest(frontPort, 'GET', target);
    const id = one(upstreamFor(target)[0]!.headers, 'x-request-id')!;
    const line = (await outputOf(haproxy!, `id=${id}`)).split('\n').find((l) => l.includes(`id=${id}`));
    expect(line).toBeDefined();
    expect(line).toContain('user=alice');
    expect(line).not.toContain('?t=');  // the log keeps the path, not the query string
  });

  test("a user name cannot forge fields of HAProxy's log line: it is URL-encoded", async () => {
    const target = unique('/odd-user');
    await rawRequest(frontPort, 'GET', target);
    const id = one(upstreamFor(target)[0]!.headers, 'x-request-id')!;
    const line = (await outputOf(haproxy!, `id=${id}`)).split('\n').find((l) => l.includes(`id=${id}`))!;
    expect(line).toContain('user=mallory%20check%3D200%20%22GET%20%2Fadmin check=200 "GET /odd-user HTTP/1.1"');
    expect(line.match(/check=/g)).toHaveLength(1);
  });

  test('more than IDGATE_AUTH_RATE_LIMIT requests to /_auth/ from one address in 10 s get 429; other paths are not counted', async () => {
    const { port, started: limited } = await startOnFreePort((port) => startHaproxy({ frontPort: port, idgatePort, upstreamPort, env: { IDGATE_AUTH_RATE_LIMIT: '3' } }));
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) statuses.push((await rawRequest(port, 'GET', `/_auth/login?n=${i}`)).status);
      expect(statuses).toEqual([200, 200, 200, 429, 429]);
      expect((await rawRequest(port, 'GET', unique('/public'))).status).toBe(200);
    } finally {
      await limited.stop();
    }
  });

  test('Set-Cookie of one request never leaks into the next one on the same connection', async () => {
    const [first, second, third] = await keepAliveSession(frontPort, [
      { method: 'GET', target: unique('/ok') },
      { method: 'GET', target: unique('/public') },
      { method: 'GET', target: unique('/api') },
    ]);
    expect(first!.status).toBe(200);
    expect(all(first!.headers, 'set-cookie')).toHaveLength(2);
    expect(second!.status).toBe(200);
    expect(all(second!.headers, 'set-cookie')).toEqual([]);
    expect(third!.status).toBe(401);
    expect(all(third!.headers, 'set-cookie')).toEqual([]);
    const [pub] = upstreamSeen.filter((u) => u.url.startsWith('/public')).slice(-1);
    expect(pub!.headers.filter(([n]) => n.startsWith('x-auth-'))).toEqual([]);
  });

  test('a large request plus large identity headers fit (tune.bufsize/maxrewrite)', async () => {
    // 14 KB of cookies and ~7 KB of groups: over the 16 KB default buffer once injected
    const target = unique('/big');
    const cookie = `idgate_session=${'s'.repeat(14_000)}`;
    const res = await rawRequest(frontPort, 'GET', target, [['Cookie', cookie]]);
    expect(res.status).toBe(200);
    const [seen] = upstreamFor(target);
    expect(all(seen!.headers, 'x-auth-groups')).toEqual([BIG_GROUPS]);
    expect(all(seen!.headers, 'cookie')).toEqual([cookie]);
    expect(all(checkFor(target)[0]!.headers, 'cookie')).toEqual([cookie]);
  });

  test('a 500 from the check → 503', async () => {
    const target = unique('/boom');
    const res = await rawRequest(frontPort, 'GET', target);
    expect(res.status).toBe(503);
    expect(res.body).toContain('authentication service unavailable');
    expect(one(res.headers, 'cache-control')).toBe('no-store');
    // The page and Retry-After of idgate's source, as HAProxy's own 503 lines and the SPOE transport answer.
    expect(res.body).toBe(UNAVAILABLE_PAGE);
    expect({ type: one(res.headers, 'content-type'), retry: one(res.headers, 'retry-after') }).toEqual({ type: 'text/html; charset=utf-8', retry: String(UNAVAILABLE_RETRY_AFTER_SECONDS) });
    expect(upstreamFor(target)).toEqual([]);
  });

  test('an unexpected status from the check → 503, never an allow', async () => {
    const target = unique('/weird');
    const res = await rawRequest(frontPort, 'GET', target);
    expect(res.status).toBe(503);
    expect(upstreamFor(target)).toEqual([]);
  });

  test('a slow check → 503 not an allow', async () => {
    const target = unique('/slow');
    const res = await rawRequest(frontPort, 'GET', target);
    expect(res.status).toBe(503);
    expect(res.body).toContain('authentication service unavailable');
    // be_idgate's 800 ms budget answers first, so the 2.6 httpclient never re-sends the check (one check
    // seen); a re-sent check would hold the client for 4 times the httpclient's 2500 ms backstop, far
    // above this bound, which a loaded machine still meets.
    expect(res.ms).toBeLessThan(5000);
    expect(upstreamFor(target)).toEqual([]);
    expect(checkFor(target)).toHaveLength(1);
  });

  test('idgate stopped → 503 at once, before the httpclient backstop', async () => {
    // A refused connection answers at once; a check left to the httpclient's own timeouts would take
    // its 2500 ms backstop (or its 5 s connect timeout, retried) at least: the bound between holds on a
    // loaded machine.
    const BACKSTOP_MS = 2500;
    expect((await rawRequest(frontPort, 'GET', unique('/ok'))).status).toBe(200);
    await close(idgate);
    for (let i = 0; i < 3; i++) {
      const target = unique('/ok');
      const res = await rawRequest(frontPort, 'GET', target);
      expect(res.status).toBe(503);
      expect(res.body).toContain('authentication service unavailable');
      expect(res.ms).toBeLessThan(BACKSTOP_MS);
      expect(upstreamFor(target)).toEqual([]);
    }
    // also /_auth/ answers at once instead of hanging (to be_idgate's 10 s server timeout)
    const page = await rawRequest(frontPort, 'GET', '/_auth/login');
    expect(page.status).toBe(503);
    expect(page.ms).toBeLessThan(BACKSTOP_MS);
  });

  test('idgate back → requests pass again once the health check sees it', async () => {
    idgate = makeIdgate();
    await listen(idgate, idgatePort);
    expect(await probeUntil(async () => (await rawRequest(frontPort, 'GET', unique('/ok'))).status, (status) => status === 200, { timeoutMs: 10_000 })).toBe(200);
  });
});

describe('startHaproxy', () => {
  /** Expects the start to fail; stops the process should it unexpectedly start. */
  async function expectStartFailure(start: Promise<ManagedProcess>, message: RegExp): Promise<void> {
    const started = Date.now();
    await expect(start).rejects.toThrow(message);
    await start.then((p) => p.stop(), () => undefined);
    expect(Date.now() - started).toBeLessThan(5000);
  }

  test('refuses a front port that is already taken', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      // idgate and the upstream are never reached: the start fails first.
      await expectStartFailure(startHaproxy({ frontPort: port, idgatePort: port, upstreamPort: port }), /already in use/);
    } finally {
      await new Promise<void>((resolve) => blocker.close(() => resolve()));
    }
  });
});

/**
 * The shipped config rendered into a temp dir, with a copy of haproxy-conf/ beside it (so lua-load
 * reads that copy), changed by the given edits (each must apply): `haproxy.cfg` edits the rendered config.
 */
function modifiedConfig(edits: { file: 'haproxy.cfg' | 'idgate.lua'; from: string | RegExp; to: string }[]): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'idgate-haproxy-'));
  cpSync(path.dirname(haproxyConfigPath()), dir, { recursive: true });
  writeFileSync(path.join(dir, 'haproxy.cfg'), renderHaproxyTemplate(readFileSync(haproxyConfigPath(), 'utf8'), 'lua', { confDir: dir }));
  for (const file of ['haproxy.cfg', 'idgate.lua'] as const) {
    let text = readFileSync(path.join(dir, file), 'utf8');
    for (const edit of edits.filter((e) => e.file === file)) {
      const changed = text.replace(edit.from, edit.to);
      if (changed === text) throw new Error(`edit did not apply to ${file}: ${String(edit.from)}`);
      text = changed;
    }
    writeFileSync(path.join(dir, file), text);
  }
  return dir;
}

function countingUpstream(): { server: http.Server; hits: () => number; last: () => Recorded | undefined } {
  let hits = 0;
  let last: Recorded | undefined;
  const server = http.createServer({ maxHeaderSize: 65536 }, (req, res) => {
    hits++;
    last = { method: req.method!, url: req.url!, headers: pairs(req.rawHeaders), body: '', remotePort: req.socket.remotePort! };
    req.resume();
    res.writeHead(200, { 'content-length': '2' }).end('ok');
  });
  return { server, hits: () => hits, last: () => last };
}

async function listenOn(server: http.Server): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return (server.address() as net.AddressInfo).port;
}

async function closeServer(server: http.Server): Promise<void> {
  if (!server.listening) return;
  await new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections(); });
}

describe('HAProxy with a broken Lua check', () => {
  // HAProxy 2.6 lets a request continue when a Lua action raises an error; the rule after
  // lua.idgate-check in haproxy.cfg must turn that into a 503. Run the shipped config with a
  // copy of idgate.lua whose check action always raises.
  let dir: string;
  let haproxy: ManagedProcess | undefined;
  let idgate: Awaited<ReturnType<typeof startDeadEnd>> | undefined;
  const upstream = countingUpstream();
  let frontPort: number;

  beforeAll(async () => {
    dir = modifiedConfig([{
      file: 'idgate.lua',
      from: 'core.register_action("idgate-check", { "http-req" }, check, 0)',
      to: 'core.register_action("idgate-check", { "http-req" }, function(txn) error("injected failure") end, 0)',
    }]);
    const upstreamPort = await listenOn(upstream.server);
    idgate = await startDeadEnd(); // nothing answers there: the check never reaches idgate
    ({ port: frontPort, started: haproxy } = await startOnFreePort((port) => startHaproxy({ frontPort: port, upstreamPort, idgatePort: idgate!.port, configPath: path.join(dir, 'haproxy.cfg') })));
  });

  afterAll(async () => {
    await haproxy?.stop();
    await idgate?.close();
    await closeServer(upstream.server);
    rmSync(dir, { recursive: true, force: true });
  });

  test('a Lua error in the check → 503, never an allow', async () => {
    const res = await rawRequest(frontPort, 'GET', '/anything');
    expect(res.status).toBe(503);
    expect(res.body).toContain('authentication service unavailable');
    expect(one(res.headers, 'cache-control')).toBe('no-store');
    // HAProxy's own fail-closed line answers the very page the action would have.
    expect(res.body).toBe(UNAVAILABLE_PAGE);
    expect(one(res.headers, 'retry-after')).toBe(String(UNAVAILABLE_RETRY_AFTER_SECONDS));
    expect(upstream.hits()).toBe(0);
    expect(await outputOf(haproxy!, 'injected failure')).toContain('injected failure');
  });
});

describe('HAProxy with the default 16 KB buffers', () => {
  // Without the shipped tune.bufsize/maxrewrite, a big request leaves no room for the identity
  // headers and HAProxy 2.6 drops them silently: idgate.lua must notice and fail closed rather
  // than let the app see a user without its groups.
  let dir: string;
  let haproxy: ManagedProcess | undefined;
  const upstream = countingUpstream();
  const idgate = http.createServer({ maxHeaderSize: 65536 }, (req, res) => {
    req.resume();
    if (req.url === '/healthz' || req.url === '/readyz') { res.writeHead(200, { 'content-length': '2' }).end('ok'); return; }
    res.writeHead(200, [['X-Idgate-Path', String(req.headers['x-forwarded-uri']).split('?')[0]!], ['X-Auth-User', 'alice'], ['X-Auth-Groups', BIG_GROUPS], ['Content-Length', '0']]).end();
  });
  let frontPort: number;

  beforeAll(async () => {
    dir = modifiedConfig([
      { file: 'haproxy.cfg', from: /^\s*tune\.bufsize .*$/m, to: '' },
      { file: 'haproxy.cfg', from: /^\s*tune\.maxrewrite .*$/m, to: '' },
    ]);
    const upstreamPort = await listenOn(upstream.server);
    const idgatePort = await listenOn(idgate);
    ({ port: frontPort, started: haproxy } = await startOnFreePort((port) => startHaproxy({ frontPort: port, upstreamPort, idgatePort, configPath: path.join(dir, 'haproxy.cfg') })));
  });

  afterAll(async () => {
    await haproxy?.stop();
    await closeServer(upstream.server);
    await closeServer(idgate);
    rmSync(dir, { recursive: true, force: true });
  });

  test('identity headers that do not fit → 503, never a partial identity', async () => {
    const small = await rawRequest(frontPort, 'GET', '/small');
    expect(small.status).toBe(200);
    expect(all(upstream.last()!.headers, 'x-auth-groups')).toEqual([BIG_GROUPS]);
    const hits = upstream.hits();
    const res = await rawRequest(frontPort, 'GET', '/big', [['Cookie', `idgate_session=${'s'.repeat(12_000)}`]]);
    expect(res.status).toBe(503);
    expect(upstream.hits()).toBe(hits);
    expect(await outputOf(haproxy!, 'does not fit in the request buffer')).toContain('does not fit in the request buffer');
  });
});
