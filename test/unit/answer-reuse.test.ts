// An allow's answer is rendered once per identity state and reused: the identity values (check.ts
// `reusedIdentityFields`), their headers (check-wire.ts `httpHeaderListOf`) and their SPOE actions
// (spoe-codec.ts `encodeAnswer`). A reused answer must be the very bytes a fresh rendering gives, and each
// event that changes what an answer says (revocation, renewal, a change of signing keys, a policy
// reload) must yield a new one. The check runs here on the real session cache and a session store in
// memory (the same records and parsing as in Redis).
import { createLogger } from '../../service/src/audit.js';
import { createCheck, type CheckDependencies } from '../../service/src/check/check.js';
import { Metrics } from '../../service/src/metrics.js';
import { parsePolicy } from '../../service/src/policy/policy-file.js';
import type { Identity, Policy } from '../../service/src/policy/policy.js';
import { sessionCookiePair } from '../../service/src/session/cookies.js';
import { SessionCache } from '../../service/src/session/session-cache.js';
import { sessionHash, SESSION_RECORD_VERSION, type StoredSession } from '../../service/src/session/session-record.js';
import { httpHeaderListOf, httpHeadersOf, identityFields, spoeVariablesOf } from '../../service/src/check/check-wire.js';
import { checkOutcome, type CheckInput, type CheckOutcome } from '../../service/src/check/contract.js';
import { encodeAck, encodeAnswer } from '../../service/src/transports/spoe-codec.js';
import type { BearerVerifier } from '../../service/src/tokens/tokens.js';
import { allowOutcome, jsonOutcome, wireIdentity } from '../support/outcomes.js';
import { MemorySessionStore } from '../support/memory-session-store.js';
import { unitConfig } from '../support/unit-config.js';

/** What a fresh rendering gives: the renderers without any reuse. */
const freshHeaders = (o: CheckOutcome) => Object.entries(httpHeadersOf(o)).flat();
const freshAck = (streamId: number, frameId: number, o: CheckOutcome) => encodeAck(streamId, frameId, spoeVariablesOf(o));

describe('a reused rendering is byte for byte a fresh one', () => {
  const alice = Object.freeze(wireIdentity({ user: 'alice', subject: 's', issuer: 'https://idp', email: 'a@example.com', groups: 'a,b%2Cc', groupsTruncated: true, scopes: 'api:read', client: 'bot', backend: 'blue' }));
  const bigGroups = Object.freeze(wireIdentity({ user: 'bob', groups: Array.from({ length: 300 }, (_, i) => `group-${i}`).join(',') }));
  const cases: [string, CheckOutcome][] = [
    ['an allow', allowOutcome('/a/b', alice)],
    ['an allow with the cookies left', allowOutcome('/a/b', alice, { appCookies: 'theme=dark; lang=é' })],
    ['an allow with no cookie left', allowOutcome('/a/b', alice, { appCookies: '' })],
    ['an allow with a renewed cookie', allowOutcome('/a/b', alice, { setCookie: '__Host-idgate=s%3Anew; Path=/' })],
    ['an allow whose user is empty', allowOutcome('/', Object.freeze(wireIdentity({ user: '' })))],
    ['an allow whose values take varints of two bytes', allowOutcome('/x'.repeat(200), bigGroups, { requestId: 'r'.repeat(128) })],
    ['a public route', checkOutcome('public', 200, 'public route', { requestId: 'r', path: '/p' })],
    ['a login redirect', checkOutcome('login', 302, 'no credentials', { location: 'https://app/_auth/login?rd=%2F' })],
    ['a 401', jsonOutcome('unauthenticated', 401, 'unauthorized', 'no credentials', { challenge: 'Bearer realm="idgate"' })],
    ['a denied browser', checkOutcome('deny', 403, 'needs group admins', { identity: wireIdentity({ user: 'bob' }), contentType: 'text/html; charset=utf-8', body: '<p>é</p>' })],
    ['a 503', jsonOutcome('unavailable', 503, 'unavailable', 'idgate cannot decide right now')],
  ];

  test.each(cases)('%s: the same headers and ACK bytes, first and every later time', (_name, outcome) => {
    for (const [streamId, frameId] of [[1, 1], [239, 240], [70_000, 3], [5, 2 ** 31]] as const) {
      expect(httpHeaderListOf(outcome)).toEqual(freshHeaders(outcome));
      expect(encodeAnswer(streamId, frameId, outcome).equals(freshAck(streamId, frameId, outcome))).toBe(true);
    }
  });

  test('only the request id, the path and the cookies differ from one request to the next', () => {
    const first = allowOutcome('/one', alice, { requestId: 'id-1' });
    const second = allowOutcome('/two/three', alice, { requestId: 'id-2', appCookies: 'x=1' });
    encodeAnswer(1, 1, first);
    expect(encodeAnswer(7, 9, second).equals(freshAck(7, 9, second))).toBe(true);
    expect(httpHeaderListOf(second)).toEqual(freshHeaders(second));
  });
});

// ---- the check, on the real session cache ------------------------------------------------------------

const config = unitConfig();

const POLICY = (backend: string) => `
version: 1
default: deny
rules:
  - id: api
    path: /api/
    api: true
    allow_any:
      - via: session
      - scopes: [api:read]
  - id: signed-in
    authenticated: true
    backend: ${backend}
`;
const policyOf = (backend: string): Policy => {
  const { policy, problems } = parsePolicy(POLICY(backend), 'test.yaml');
  if (!policy) throw new Error(problems.join('\n'));
  return policy;
};

/** A token verifier that hands out one identity object per token until its keys change (as BearerVerifier's cache does). */
class ScriptedVerifier {
  #verified = new Map<string, Identity>();
  verify(token: string): Promise<Identity> {
    let identity: Identity | undefined = this.#verified.get(token);
    if (identity === undefined) {
      identity = { via: 'token', subject: `sub-${token}`, user: `user-${token}`, email: undefined, groups: [], roles: [], scopes: ['api:read'], clientId: 'bot', issuer: 'https://idp.example.com', fromPrimaryIssuer: true };
      this.#verified.set(token, identity);
    }
    return Promise.resolve(identity);
  }
  /** What a refresh of the issuer's keys does to the verified tokens. */
  keysChanged(): void {
    this.#verified.clear();
  }
}

function setup() {
  // One clock for the check, the store and the cache, moved forward by the tests.
  let offset = 0;
  const now = () => Date.now() + offset;
  const clock = now();
  const sessions = new MemorySessionStore(config, now);
  const sessionCache = new SessionCache(60_000, 100, now);
  const bearer = new ScriptedVerifier();
  let policy = policyOf('blue');
  let renewedGroups: string[] = ['staff'];
  const deps: CheckDependencies = {
    config,
    redis: undefined as never,
    sessions,
    oidc: { refresh: async (stored: StoredSession, now: number) => ({ ...stored, groups: renewedGroups, accessTokenExpiresAt: now + 3_600_000, tokensIssuedAt: now }) } as never,
    bearer: bearer as unknown as BearerVerifier,
    sessionCache,
    policy: () => policy,
    logger: createLogger({ level: 'error', write: () => undefined }),
    metrics: new Metrics(),
    clock: now,
  };
  const check = createCheck(deps);
  const sid = 'c2Vzc2lvbi1mb3ItdGhlLXJldXNlLXRlc3QtMDAwMDAwMDA';
  const stored: StoredSession = {
    v: SESSION_RECORD_VERSION,
    subject: 'sub-alice',
    user: 'alice',
    email: 'alice@example.com',
    groups: ['staff'],
    roles: [],
    issuer: 'https://idp.example.com',
    createdAt: clock,
    idToken: 'id-token',
    refreshToken: 'refresh-token',
    accessTokenExpiresAt: clock + 3_600_000,
    tokensIssuedAt: clock,
    idpSessionHash: undefined,
  };
  const input = (headers: { cookie?: string; authorization?: string }, path = '/home', requestId = `req-${Math.random().toString(36).slice(2)}`): CheckInput => ({
    fromTrustedProxy: true,
    peer: '127.0.0.1',
    method: 'GET',
    scheme: 'https',
    host: 'app.example.com',
    pathq: path,
    clientAddress: '203.0.113.7',
    requestId,
    cookie: headers.cookie,
    authorization: headers.authorization,
    accept: 'application/json',
    requestedWith: undefined, dpop: undefined, origin: undefined, corsRequestMethod: undefined, destination: undefined,
  });
  return {
    check,
    sessions,
    sessionCache,
    bearer,
    sid,
    cookie: sessionCookiePair(config, sid),
    input,
    start: () => sessions.save(sid, { cookie: { path: '/' }, idgate: stored }),
    advance: (ms: number) => (offset += ms),
    reloadPolicy: (backend: string) => (policy = policyOf(backend)),
    renewWith: (groups: string[]) => (renewedGroups = groups),
  };
}

/** Both transports' renderings of an outcome, checked against fresh ones on the way. */
function rendered(outcome: CheckOutcome): { headers: string[]; ack: Buffer } {
  const headers = httpHeaderListOf(outcome);
  const ack = encodeAnswer(3, 4, outcome);
  expect(headers).toEqual(freshHeaders(outcome));
  expect(ack.equals(freshAck(3, 4, outcome))).toBe(true);
  return { headers, ack };
}

describe('the check reuses an answer while nothing it says has changed', () => {
  test('two checks of one cached session carry the same identity object, rendered the same but for the request', async () => {
    const t = setup();
    await t.start();
    const first = await t.check(t.input({ cookie: t.cookie }, '/home', 'req-1'));
    const second = await t.check(t.input({ cookie: t.cookie }, '/other', 'req-2'));
    expect(first.status).toBe(200);
    expect(second.identity).toBe(first.identity);
    expect(Object.isFrozen(second.identity)).toBe(true);
    expect(second.identity).toEqual(identityFields({ via: 'session', subject: 'sub-alice', user: 'alice', email: 'alice@example.com', groups: ['staff'], roles: [], scopes: [], clientId: undefined, issuer: 'https://idp.example.com', fromPrimaryIssuer: true }, 'blue'));
    const [a, b] = [rendered(first), rendered(second)];
    expect(a.headers).toContain('req-1');
    expect(b.headers).toContain('req-2');
    expect(b.headers).toContain('/other');
  });

  test('a revoked session gets no answer of its own again: the next check is not an allow', async () => {
    const t = setup();
    await t.start();
    expect((await t.check(t.input({ cookie: t.cookie }))).status).toBe(200);
    await t.sessions.revoke([{ hash: sessionHash(t.sid), subject: 'sub-alice' }]);
    t.sessionCache.invalidate([sessionHash(t.sid)]);
    const after = await t.check(t.input({ cookie: t.cookie }));
    expect(after.status).toBe(401);
    expect(after.identity).toBeUndefined();
    rendered(after);
  });

  test('a renewal (new tokens, new groups) yields a new answer that says the new values', async () => {
    const t = setup();
    await t.start();
    const before = await t.check(t.input({ cookie: t.cookie }));
    t.renewWith(['staff', 'admins']);
    t.advance(50_000); // the cache entry still lives
    expect((await t.check(t.input({ cookie: t.cookie }))).identity).toBe(before.identity);
    t.advance(3_600_000 - 50_000 - 30_000); // within a minute of the access token's expiry: renewal is due
    const renewed = await t.check(t.input({ cookie: t.cookie }));
    expect(renewed.status).toBe(200);
    expect(renewed.setCookie).toBeDefined();
    expect(renewed.identity).not.toBe(before.identity);
    expect(renewed.identity?.groups).toBe('staff,admins');
    expect(rendered(renewed).headers).toContain('staff,admins');
    const next = await t.check(t.input({ cookie: t.cookie }));
    expect(next.identity).toBe(renewed.identity);
    expect(next.setCookie).toBeUndefined();
    rendered(next);
  });

  test('a session re-read from the store after its cache entry ends yields a new answer', async () => {
    const t = setup();
    await t.start();
    const before = await t.check(t.input({ cookie: t.cookie }));
    t.advance(61_000);
    const reread = await t.check(t.input({ cookie: t.cookie }));
    expect(reread.identity).not.toBe(before.identity);
    expect(reread.identity).toEqual(before.identity);
  });

  test('a change of signing keys (verified tokens dropped) yields a new answer for the same token', async () => {
    const t = setup();
    const bearer = { authorization: 'Bearer tok1' };
    const first = await t.check(t.input(bearer, '/api/x'));
    const again = await t.check(t.input(bearer, '/api/y'));
    expect(first.status).toBe(200);
    expect(again.identity).toBe(first.identity);
    t.bearer.keysChanged();
    const afterKeys = await t.check(t.input(bearer, '/api/x'));
    expect(afterKeys.identity).not.toBe(first.identity);
    expect(afterKeys.identity).toEqual(first.identity);
    rendered(afterKeys);
  });

  test('a policy reload yields a new answer, with the new backend when it changed', async () => {
    const t = setup();
    await t.start();
    const before = await t.check(t.input({ cookie: t.cookie }));
    t.reloadPolicy('blue');
    const sameRules = await t.check(t.input({ cookie: t.cookie }));
    expect(sameRules.identity).not.toBe(before.identity);
    expect(sameRules.identity).toEqual(before.identity);
    t.reloadPolicy('green');
    const newBackend = await t.check(t.input({ cookie: t.cookie }));
    expect(newBackend.identity?.backend).toBe('green');
    expect(rendered(newBackend).headers).toEqual(expect.arrayContaining(['X-Auth-Backend', 'green']));
  });

  test('another rule for the same identity renders its own answer, and each stays right', async () => {
    const t = setup();
    await t.start();
    const home = await t.check(t.input({ cookie: t.cookie }, '/home'));
    const api = await t.check(t.input({ cookie: t.cookie }, '/api/x'));
    expect(home.identity?.backend).toBe('blue');
    expect(api.identity?.backend).toBeUndefined();
    const homeAgain = await t.check(t.input({ cookie: t.cookie }, '/home'));
    expect(homeAgain.identity?.backend).toBe('blue');
    for (const o of [home, api, homeAgain]) rendered(o);
  });
});
