// The check's transport boundary: what each transport reads into a CheckInput, and how an outcome is
// written as an HTTP response and as SPOE variables (one table, OUTCOME_FIELDS, which HAProxy's side and
// docs/reference.md follow).
import fs from 'node:fs';
import type { IncomingMessage } from 'node:http';
import path from 'node:path';
import { httpHeadersOf, INPUT_FIELDS, INPUT_FIELDS_BEGIN, INPUT_FIELDS_END, inputFieldsTable, OUTCOME_FIELDS, OUTCOME_FIELDS_BEGIN, OUTCOME_FIELDS_END, outcomeFieldsTable, spoeVariablesOf } from '../../service/src/check/check-wire.js';
import { checkOutcome, type CheckOutcome } from '../../service/src/check/contract.js';
import { checkInputFromHttp } from '../../service/src/transports/http-check.js';
import { CHECK_SECRET_ARGUMENT } from '../../service/src/transports/check-secret.js';
import { checkInputFromMessage } from '../../service/src/transports/spoe-agent.js';
import { parseTrustedProxies, type AddressMatcher } from '../../service/src/net.js';
import { allowOutcome, jsonOutcome, wireIdentity } from '../support/outcomes.js';

const root = path.resolve(import.meta.dirname, '../..');
const read = (file: string) => fs.readFileSync(path.join(root, file), 'utf8');

describe('an outcome, written for each transport', () => {
  const alice = wireIdentity({ user: 'alice', subject: 's', issuer: 'https://idp', groups: 'a,b', groupsTruncated: true, backend: 'blue' });
  const cases: [string, CheckOutcome, Record<string, string>, Record<string, string | number>][] = [
    [
      'an allow forwards the identity, the decided path and the cookies left',
      allowOutcome('/a/b', alice, { appCookies: '', setCookie: 'idgate=new' }),
      { 'X-Auth-User': 'alice', 'X-Auth-Subject': 's', 'X-Auth-Issuer': 'https://idp', 'X-Auth-Groups': 'a,b', 'X-Auth-Groups-Truncated': 'true', 'X-Auth-Backend': 'blue', 'X-Auth-Request-Id': 'r', 'X-Idgate-Path': '/a/b', 'X-Idgate-Cookie': '', 'Set-Cookie': 'idgate=new', 'Content-Length': '0' },
      { status: 200, user: 'alice', subject: 's', issuer: 'https://idp', groups: 'a,b', groups_truncated: 1, backend: 'blue', request_id: 'r', path: '/a/b', cookie_strip: 1, set_cookie: 'idgate=new' },
    ],
    [
      'a public route forwards the request id and the path, no identity',
      checkOutcome('public', 200, 'public route', { requestId: 'r', path: '/p' }),
      { 'X-Auth-Request-Id': 'r', 'X-Idgate-Path': '/p', 'Content-Length': '0' },
      { status: 200, request_id: 'r', path: '/p' },
    ],
    [
      'a login redirect is not stored, and has no reason on the wire',
      checkOutcome('login', 302, 'no credentials', { location: 'https://app/_auth/login?rd=%2F' }),
      { Location: 'https://app/_auth/login?rd=%2F', 'Cache-Control': 'no-store', 'Content-Length': '0' },
      { status: 302, location: 'https://app/_auth/login?rd=%2F' },
    ],
    [
      'a 401 carries its challenge, its JSON body and its reason',
      jsonOutcome('unauthenticated', 401, 'unauthorized', 'no credentials', { challenge: 'Bearer realm="idgate"' }),
      { 'WWW-Authenticate': 'Bearer realm="idgate"', 'Content-Type': 'application/json', 'Cache-Control': 'no-store', 'Content-Length': '50' },
      { status: 401, www_authenticate: 'Bearer realm="idgate"', content_type: 'application/json', body: '{"error":"unauthorized","reason":"no credentials"}', reason: 'no credentials' },
    ],
    [
      'a 401 use_dpop_nonce carries the DPoP nonce to retry with',
      jsonOutcome('unauthenticated', 401, 'unauthorized', 'no nonce', { challenge: 'DPoP realm="idgate", error="use_dpop_nonce"', dpopNonce: 'n0nce' }),
      { 'WWW-Authenticate': 'DPoP realm="idgate", error="use_dpop_nonce"', 'DPoP-Nonce': 'n0nce', 'Content-Type': 'application/json', 'Cache-Control': 'no-store', 'Content-Length': '44' },
      { status: 401, www_authenticate: 'DPoP realm="idgate", error="use_dpop_nonce"', dpop_nonce: 'n0nce', content_type: 'application/json', body: '{"error":"unauthorized","reason":"no nonce"}', reason: 'no nonce' },
    ],
    [
      'a 405 names the methods the route takes (Allow)',
      jsonOutcome('method_not_allowed', 405, 'method_not_allowed', 'TRACE is never allowed', { allow: 'GET, HEAD' }),
      { Allow: 'GET, HEAD', 'Content-Type': 'application/json', 'Cache-Control': 'no-store', 'Content-Length': '64' },
      { status: 405, allow: 'GET, HEAD', content_type: 'application/json', body: '{"error":"method_not_allowed","reason":"TRACE is never allowed"}', reason: 'TRACE is never allowed' },
    ],
    [
      'an allow may hand a fresh DPoP nonce on',
      allowOutcome('/api', wireIdentity({ user: 'bot' }), { dpopNonce: 'n1' }),
      { 'DPoP-Nonce': 'n1', 'X-Auth-User': 'bot', 'X-Auth-Request-Id': 'r', 'X-Idgate-Path': '/api', 'Content-Length': '0' },
      { status: 200, dpop_nonce: 'n1', user: 'bot', request_id: 'r', path: '/api' },
    ],
    [
      'a browser denied gets a page, and only its name goes to the log line',
      checkOutcome('deny', 403, 'needs group admins', { identity: wireIdentity({ user: 'bob' }), contentType: 'text/html; charset=utf-8', body: '<p>é</p>' }),
      { 'X-Auth-User': 'bob', 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store', 'Content-Length': '9' },
      { status: 403, user: 'bob', content_type: 'text/html; charset=utf-8', body: '<p>é</p>' },
    ],
    [
      'a 503 says when to retry; its body is not a variable',
      jsonOutcome('unavailable', 503, 'unavailable', 'idgate cannot decide right now'),
      { 'Content-Type': 'application/json', 'Cache-Control': 'no-store', 'Retry-After': '1', 'Content-Length': '65' },
      { status: 503, content_type: 'application/json', reason: 'idgate cannot decide right now' },
    ],
  ];
  test.each(cases)('%s', (_name, outcome, headers, variables) => {
    expect(httpHeadersOf(outcome)).toEqual(headers);
    expect(spoeVariablesOf(outcome)).toEqual(variables);
  });

  test('an empty value is a header but never a variable', () => {
    expect(httpHeadersOf(allowOutcome('/', wireIdentity({ user: '' })))['X-Auth-User']).toBe('');
    expect(spoeVariablesOf(allowOutcome('/', wireIdentity({ user: '' }))).user).toBeUndefined();
  });
});

describe('HAProxy acts on nothing but what the renderers write', () => {
  const headers = new Set(OUTCOME_FIELDS.flatMap((f) => (f.header ? [f.header.toLowerCase()] : [])));
  const variables = new Set(['status', ...OUTCOME_FIELDS.flatMap((f) => (f.variable ? [f.variable] : []))]);

  test('every answer header idgate.lua reads is one the HTTP check writes', () => {
    const lua = read('haproxy-conf/idgate.lua');
    const read_ = [...lua.matchAll(/\(rh, "([a-z-]+)"\)/g)].map((m) => m[1]!);
    expect(read_.length).toBeGreaterThan(5);
    for (const name of read_) expect({ name, written: headers.has(name) }).toEqual({ name, written: true });
    // the x-auth-* it forwards by prefix
    expect([...headers].filter((h) => h.startsWith('x-auth-')).length).toBeGreaterThan(8);
  });

  // The SPOE lines read the agent's variables; the Lua lines what idgate.lua sets (under the same names for
  // the same facts); the lines both share (the template, the shared parts) what both set.
  const variablesIn = (text: string) => new Set([...text.matchAll(/txn\.idgate\.([a-z_]+)/g)].map((m) => m[1]!));
  const dropin = (files: string[]) => files.map((f) => read(`haproxy-conf/dropin/${f}`)).join('\n');
  const luaSets = variablesIn([...read('haproxy-conf/idgate.lua').matchAll(/set_var\("(txn\.idgate\.[a-z_]+)"/g)].map((m) => m[1]!).join(' '));

  test('every txn.idgate.* variable the SPOE configuration reads is one the agent sets (or HAProxy\'s own `error`)', () => {
    const read_ = variablesIn(dropin(['frontend-spoe.cfg', 'backends-spoe.cfg']));
    read_.delete('error'); // set by HAProxy itself (option set-on-error)
    expect(read_.size).toBeGreaterThan(15);
    for (const name of read_) expect({ name, set: variables.has(name) }).toEqual({ name, set: true });
  });

  test('every txn.idgate.* variable the Lua lines read is one idgate.lua sets, under the agent\'s name for the same fact', () => {
    const read_ = variablesIn(dropin(['frontend-lua.cfg', 'backends-lua.cfg', 'global-lua.cfg']));
    expect(read_.size).toBeGreaterThan(2);
    for (const name of read_) expect({ name, set: luaSets.has(name) }).toEqual({ name, set: true });
    // `allowed` is the Lua action's own mark; every other is a field of the answer, named as in SPOE.
    for (const name of luaSets) expect({ name, agent: name === 'allowed' || variables.has(name) }).toEqual({ name, agent: true });
  });

  test('the lines both transports share read only variables both set', () => {
    const read_ = variablesIn([read('haproxy-conf/haproxy.cfg'), dropin(['global.cfg', 'frontend.cfg', 'routing.cfg', 'backends.cfg'])].join('\n'));
    expect([...read_].sort()).toEqual(['backend', 'status', 'user']);
    for (const name of read_) expect({ name, agent: variables.has(name), lua: luaSets.has(name) }).toEqual({ name, agent: true, lua: true });
  });

});

describe('HAProxy sends what the adapters read', () => {
  test('the SPOE messages carry exactly the arguments of INPUT_FIELDS, filled as it says', () => {
    const conf = read('haproxy-conf/spoe-idgate.conf');
    const argLines = [...conf.matchAll(/^\s*args (method=.*)$/gm)].map((m) => m[1]!.split(' ').sort());
    expect(argLines).toHaveLength(2); // idgate-check and idgate-check-retry
    // Plus HAProxy's check secret (check-secret.ts), which the transport checks before the check reads a fact.
    for (const args of argLines) expect(args).toEqual([...INPUT_FIELDS.map((f) => `${f.argument}=${f.fetch}`), `${CHECK_SECRET_ARGUMENT}=env(IDGATE_CHECK_SECRET)`].sort());
  });

  test('idgate.lua sends every header of INPUT_FIELDS', () => {
    const lua = read('haproxy-conf/idgate.lua');
    for (const f of INPUT_FIELDS) expect({ header: f.header, sent: lua.includes(`headers["${f.header}"]`) || lua.includes(`, "${f.header}" }`) }).toEqual({ header: f.header, sent: true });
  });

  // A value each adapter must hand on unchanged, whatever field it is.
  const value = (f: (typeof INPUT_FIELDS)[number]) => (f.name === 'scheme' ? 'https' : f.name === 'clientAddress' ? '10.1.2.3' : `${f.name}-value`);

  test.each(INPUT_FIELDS.map((f) => [f.name, f]))('the HTTP check reads %s from its header', (_name, f) => {
    const req = { socket: { remoteAddress: '127.0.0.1' }, headers: { [f.header.toLowerCase()]: value(f) } } as unknown as IncomingMessage;
    expect(checkInputFromHttp(req, parseTrustedProxies('127.0.0.1') as AddressMatcher)[f.name]).toBe(value(f));
  });

  test.each(INPUT_FIELDS.map((f) => [f.name, f]))('the SPOE agent reads %s from its argument', (_name, f) => {
    expect(checkInputFromMessage({ [f.argument]: value(f) }, '127.0.0.1')[f.name]).toBe(value(f));
  });
});

describe('docs/reference.md', () => {
  const file = 'docs/reference.md';
  test.each([
    ['answer fields', OUTCOME_FIELDS_BEGIN, OUTCOME_FIELDS_END, outcomeFieldsTable],
    ['request fields', INPUT_FIELDS_BEGIN, INPUT_FIELDS_END, inputFieldsTable],
  ])('its table of %s is what check-wire.ts generates', (_name, BEGIN, END, table) => {
    const doc = read(file);
    const begin = doc.indexOf(BEGIN);
    const end = doc.indexOf(END);
    expect(begin).toBeGreaterThan(-1);
    const expected = doc.slice(0, begin) + table() + doc.slice(end + END.length);
    if (expected !== doc && process.env.IDGATE_WRITE_DOCS === '1') return fs.writeFileSync(path.join(root, file), expected);
    if (expected !== doc) throw new Error(`${file} differs from service/src/check/check-wire.ts. Regenerate it with:\n  IDGATE_WRITE_DOCS=1 NODE_OPTIONS=--experimental-vm-modules npx jest test/unit/check-wire.test.ts`);
  });
});

describe('the HTTP check reads X-Forwarded-* from trusted proxies only', () => {
  const trusted = parseTrustedProxies('127.0.0.1') as AddressMatcher;
  const request = (peer: string, headers: Record<string, string | string[]>) => ({ socket: { remoteAddress: peer }, headers }) as unknown as IncomingMessage;
  const facts = { 'x-forwarded-method': 'GET', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'app', 'x-forwarded-uri': '/x?y', 'x-forwarded-for': '10.0.0.1, 10.0.0.2', 'x-request-id': 'r1', cookie: 'a=1', authorization: 'Bearer t', accept: 'text/html', 'x-requested-with': 'XMLHttpRequest' };

  test('from HAProxy, each header is one field; the client is the last X-Forwarded-For entry', () => {
    expect(checkInputFromHttp(request('127.0.0.1', facts), trusted)).toEqual({ fromTrustedProxy: true, peer: '127.0.0.1', method: 'GET', scheme: 'https', host: 'app', pathq: '/x?y', clientAddress: '10.0.0.2', requestId: 'r1', cookie: 'a=1', authorization: 'Bearer t', accept: 'text/html', requestedWith: 'XMLHttpRequest' });
    expect(checkInputFromHttp(request('127.0.0.1', { 'x-forwarded-for': 'junk' }), trusted).clientAddress).toBe('127.0.0.1');
  });

  test('from any other peer, nothing of the request is read', () => {
    const input = checkInputFromHttp(request('10.9.9.9', facts), trusted);
    expect(input).toEqual({ fromTrustedProxy: false, peer: '10.9.9.9', method: undefined, scheme: undefined, host: undefined, pathq: undefined, clientAddress: '10.9.9.9', requestId: undefined, cookie: undefined, authorization: undefined, accept: undefined, requestedWith: undefined, origin: undefined, corsRequestMethod: undefined, destination: undefined });
  });
});
