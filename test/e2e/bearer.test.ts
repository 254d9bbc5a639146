// Machine identities against real issuers: two local IdPs (oidc-provider processes, JWT and opaque
// tokens, key rotation on signal), scripted issuers for the claim-by-claim checks (one verified locally,
// one by introspection), real Redis, and idgate in-process. idps.a is the primary issuer (IDGATE_ISSUER);
// the others are secondary, so the policy names them where their tokens count.
import crypto from 'node:crypto';
import http from 'node:http';
import path from 'node:path';
import * as jose from 'jose';
import request from 'supertest';
import { idpListening, listenOnAnyPort, startOnFreePort, startProcess, waitForReport, type ManagedProcess } from '../../stack/processes.js';
import { startFreeTempRedis } from '../../stack/redis.js';
import { testIdpEnv } from '../../stack/test-idp-profile.js';
import { REPO_ROOT } from '../../stack/stack.js';
import { startHaproxy } from '../../stack/haproxy.js';
import { startUpstream, type RunningUpstream } from '../../stack/upstream.js';
import { parsePolicy } from '../../service/src/policy/policy-file.js';
import { MAX_INTROSPECTION_BYTES } from '../../service/src/limits.js';
import { configFrom, metricValue, movableClock, startInProcess, stopInProcess, type InProcessIdgate, checkFacts } from '../support/idgate.js';
import { machineClient, opaqueClient } from '../support/identities.js';
import { clientCredentialsToken } from '../support/tokens.js';
import { dpopKey, dpopProof } from '../support/dpop.js';
import { probeUntil, waitForOutput, waitUntil } from '../../stack/wait.js';

let redis: ManagedProcess;
let redisPort: number;
const idps: Record<'a' | 'b', { process: ManagedProcess; issuer: string }> = {} as never;
/** IDGATE_JWKS_CACHE here: short, so that the rotation tests need not move idgate's clock far. */
const JWKS_CACHE_MS = 1000;
/** idgate's clock: the key-rotation tests move it past the keys' cache age instead of waiting. */
const clock = movableClock();
type ScriptedIssuer = Awaited<ReturnType<typeof startScriptedIssuer>>;
let scripted: ScriptedIssuer;
/** Checks tokens by introspection only; each test sets the answer. Trusted with unverified emails. */
let introspecting: ScriptedIssuer;
let stranger: { server: http.Server; url: string; hits: number };
let idgate: InProcessIdgate;
let haproxy: ManagedProcess;
let upstream: RunningUpstream;
let frontUrl: string;

async function startIdp(): Promise<{ process: ManagedProcess; issuer: string }> {
  const p = startProcess('idp', process.execPath, [path.join(REPO_ROOT, 'dist/stack/idp-main.js')], {
    env: { ...process.env, IDP_PORT: '0', ...testIdpEnv(), IDP_REDIRECT_URIS: 'http://app.test/_auth/callback' },
  });
  const { issuer } = await waitForReport(p, idpListening);
  return { process: p, issuer };
}

/**
 * An issuer whose every answer this test writes: discovery, a JWKS with one key, an introspection
 * endpoint answering `introspection` (set by each test), and a hit counter.
 */
async function startScriptedIssuer() {
  // Its issuer names the port it gets (below), before anything can ask it.
  let issuer = '';
  const { publicKey, privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
  const jwk = { ...(await jose.exportJWK(publicKey)), kid: 'scripted-1', alg: 'RS256', use: 'sig' };
  let hits = 0;
  // Each JWKS request: when it came, and how long after the previous JWKS answer (see requestsNotDueToAge).
  const jwksRequests: { sinceLastAnswerMs: number }[] = [];
  let lastJwksAnswerAt = -Infinity;
  const state = { introspection: { active: false } as Record<string, unknown>, endless: false };
  /** Bytes each endless introspection answer had written when the client closed it. */
  const endlessClosedAt: number[] = [];
  const server = http.createServer((req, res) => {
    hits += 1;
    res.setHeader('content-type', 'application/json');
    if (req.url === '/.well-known/openid-configuration') res.end(JSON.stringify({ issuer, jwks_uri: `${issuer}/jwks`, introspection_endpoint: `${issuer}/introspect` }));
    else if (req.url === '/jwks') {
      jwksRequests.push({ sinceLastAnswerMs: Date.now() - lastJwksAnswerAt });
      res.end(JSON.stringify({ keys: [jwk] }), () => (lastJwksAnswerAt = Date.now()));
    }
    else if (req.url === '/introspect' && state.endless) req.resume().on('end', () => answerEndlessly(res, endlessClosedAt));
    else if (req.url === '/introspect') req.resume().on('end', () => res.end(JSON.stringify(state.introspection)));
    else res.writeHead(404).end('{}');
  });
  issuer = `http://127.0.0.1:${await listenOnAnyPort(server)}`;
  return {
    server,
    issuer,
    key: privateKey,
    hits: () => hits,
    /** Requests to anything but the JWKS. */
    otherHits: () => hits - jwksRequests.length,
    jwksRequests: () => jwksRequests.length,
    /**
     * JWKS requests from the `from`-th on that cannot be idgate's background refresh: that one starts only
     * once the keys are older than IDGATE_JWKS_CACHE (1 s here), counted from after the previous answer,
     * so a request sooner than that was made for a token. Time passing on a loaded machine can thus
     * never fail a test, and a fetch per token always does.
     */
    requestsNotDueToAge: (from: number) => jwksRequests.slice(from).filter((r) => r.sinceLastAnswerMs < JWKS_CACHE_MS).length,
    /** The next introspection answers. */
    answer: (body: Record<string, unknown>) => {
      state.endless = false;
      state.introspection = body;
    },
    /** The next introspection answers never end (answerEndlessly); what each had written when closed. */
    answerEndlessly: () => {
      state.endless = true;
      return endlessClosedAt;
    },
  };
}

/**
 * An answer that never ends: the start of a JSON object, then spaces as fast as the client reads them. A
 * client that reads a whole body before weighing it would read until its timeout.
 */
function answerEndlessly(res: http.ServerResponse, closedAt: number[]): void {
  let written = 0;
  res.on('close', () => closedAt.push(written));
  res.writeHead(200, { 'content-type': 'application/json' });
  res.write('{"active": true, "sub": "svc", "pad": "');
  const chunk = Buffer.alloc(16 * 1024, ' ');
  const more = () => {
    while (!res.destroyed) {
      written += chunk.length;
      if (!res.write(chunk)) return void res.once('drain', more);
    }
  };
  more();
}

/** An access token of the demo IdP at `issuer` for one of its machine clients (demo-bot unless told). */
function clientCredentials(issuer: string, client: { id: string; secret: string; scope: string } = machineClient): Promise<string> {
  return clientCredentialsToken(issuer, client.id, client.secret, client.scope);
}

function scriptedToken(claims: jose.JWTPayload, header: Partial<jose.JWTHeaderParameters> = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new jose.SignJWT({ iss: scripted.issuer, aud: 'api://scripted', sub: 'svc', iat: now, exp: now + 300, scp: ['api:read'], cid: 'svc-client', ...claims })
    .setProtectedHeader({ alg: 'RS256', kid: 'scripted-1', ...header })
    .sign(scripted.key);
}

type Transport = 'direct' | 'through HAProxy';

interface Answer {
  status: number;
  /** WWW-Authenticate, or '' */
  www: string;
  /** The X-Auth-* identity: idgate's answer headers (direct), what the upstream received (HAProxy). */
  identity: Record<string, string>;
  body: unknown;
}

/** Asks idgate about a bearer token, directly or as a client of HAProxy would. */
async function check(token: string, uri = '/api/x', transport: Transport = 'direct'): Promise<Answer> {
  const pickIdentity = (headers: Record<string, unknown>) =>
    Object.fromEntries(Object.entries(headers).filter(([k]) => k.startsWith('x-auth-') && k !== 'x-auth-request-id').map(([k, v]) => [k, String(v)]));
  if (transport === 'direct') {
    const res = await request(idgate.server).get('/auth').set(checkFacts('app.test')).set('Authorization', `Bearer ${token}`).set('X-Forwarded-Uri', uri).set('Accept', 'application/json');
    return { status: res.status, www: res.headers['www-authenticate'] ?? '', identity: pickIdentity(res.headers), body: res.body };
  }
  const res = await fetch(`${frontUrl}${uri}`, { headers: { authorization: `Bearer ${token}`, accept: 'application/json' }, redirect: 'manual' });
  const body = (await res.json().catch(() => undefined)) as { headers?: Record<string, unknown> } | undefined;
  return { status: res.status, www: res.headers.get('www-authenticate') ?? '', identity: res.status === 200 ? pickIdentity(body?.headers ?? {}) : {}, body };
}

/** After any rejection, idgate still answers valid tokens and its health endpoint. */
async function expectHealthy(transport: Transport): Promise<void> {
  expect((await check(await scriptedToken({}), '/api/x', transport)).status).toBe(200);
  expect((await request(idgate.server).get('/healthz')).status).toBe(200);
}

async function metric(sample: string): Promise<number> {
  return metricValue(await idgate.metrics.render(), sample);
}

function b64(value: object): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

beforeAll(async () => {
  let started: Awaited<ReturnType<typeof startFreeTempRedis>>;
  [idps.a, idps.b, scripted, introspecting, started] = await Promise.all([startIdp(), startIdp(), startScriptedIssuer(), startScriptedIssuer(), startFreeTempRedis()]);
  ({ port: redisPort, server: redis } = started);
  stranger = {
    url: '',
    hits: 0,
    server: http.createServer((_req, res) => {
      stranger.hits += 1;
      res.end('{}');
    }),
  };
  stranger.url = `http://127.0.0.1:${await listenOnAnyPort(stranger.server)}`;
  idgate = await startInProcess(
    configFrom({
      IDGATE_ISSUER: idps.a.issuer,
      IDGATE_CLIENT_ID: 'idgate',
      IDGATE_CLIENT_SECRET: 'idgate-secret',
      IDGATE_PUBLIC_URL: 'http://app.test',
      IDGATE_REDIS_URL: `redis://127.0.0.1:${redisPort}`,
      IDGATE_COOKIE_SECRETS: 'x'.repeat(40),
      IDGATE_INSECURE_HTTP: '1',
      IDGATE_JWKS_CACHE: String(JWKS_CACHE_MS / 1000),
      IDGATE_JWKS_COOLDOWN: '1',
      IDGATE_CLOCK_SKEW: '5',
      IDGATE_BEARER_ISSUERS: JSON.stringify([
        { issuer: idps.a.issuer, audiences: ['api://idgate'], introspection: true },
        { issuer: idps.b.issuer, audiences: ['api://idgate'] },
        { issuer: scripted.issuer, audiences: ['api://scripted'], client_ids: ['svc-client', '0oa-client'] },
        { issuer: introspecting.issuer, audiences: ['api://scripted'], jwt: false, introspection: true, trust_unverified_email: true },
      ]),
    }),
    bearerPolicy(),
    { clock: clock.now },
  );
  const idgatePort = await listenOnAnyPort(idgate.server);
  upstream = await startUpstream({ port: 0 });
  let frontPort: number;
  ({ port: frontPort, started: haproxy } = await startOnFreePort((port) => startHaproxy({ frontPort: port, idgatePort, upstreamPort: upstream.port })));
  frontUrl = `http://127.0.0.1:${frontPort}`;
}, 30_000);

/**
 * The demo's /api/ for the primary issuer, opened to the secondary issuers by name; a /primary-api/ that
 * names none; a non-API route where sessions and tokens both count; a route by email domain.
 */
function bearerPolicy() {
  const secondary = JSON.stringify([idps.b.issuer, scripted.issuer, introspecting.issuer]);
  const { policy, problems } = parsePolicy(`
version: 1
rules:
  - id: api
    path: /api/
    api: true
    allow_any:
      - via: session
      - scopes: [api:read]
      - {issuers: ${secondary}, scopes: [api:read]}
  - id: primary-api
    path: /primary-api/
    api: true
    allow: {scopes: [api:read]}
  - id: app-or-token
    path: /app/
    allow_any: [{via: session}, {issuers: ${secondary}, scopes: [api:read]}]
  - id: by-email
    path: /by-email/
    api: true
    accept: [token]
    allow: {issuers: ${secondary}, email_domains: [example.com]}
  - id: signed-in
    authenticated: true
`, 'bearer.yaml');
  if (!policy) throw new Error(problems.join('\n'));
  return policy;
}

afterAll(async () => {
  await haproxy?.stop();
  await upstream?.close();
  stopInProcess();
  await new Promise((r) => scripted?.server.close(r));
  await new Promise((r) => introspecting?.server.close(r));
  await new Promise((r) => stranger?.server.close(r));
  await Promise.all([redis?.stop(), idps.a?.process.stop(), idps.b?.process.stop()]);
});

describe.each(['direct', 'through HAProxy'] as const)('JWT bearer tokens, %s', (transport) => {
  describe('per IdP profile', () => {
    test('demo-bot\'s JWT is accepted, with client, subject and scopes as identity headers', async () => {
      const res = await check(await clientCredentials(idps.a.issuer), '/api/x', transport);
      expect(res.status).toBe(200);
      expect(res.identity).toMatchObject({ 'x-auth-client': machineClient.id, 'x-auth-subject': machineClient.id, 'x-auth-scopes': machineClient.scope });
    });

    // Was "a token from a second trusted issuer is accepted" on /api/: it now counts only where a rule
    // names its issuer, never on rules written for the primary issuer.
    test('a token from a second trusted issuer counts only on rules that name its issuer', async () => {
      const token = await clientCredentials(idps.b.issuer);
      expect((await check(token, '/api/x', transport)).status).toBe(200);
      const res = await check(token, '/primary-api/x', transport);
      expect(res.status).toBe(403);
      expect(res.body).toEqual({ error: 'access_denied', reason: 'needs an identity from the primary issuer (IDGATE_ISSUER)' });
      expect((await check(await clientCredentials(idps.a.issuer), '/primary-api/x', transport)).status).toBe(200);
    });
  });

  test('Okta claims map to identity headers: scp list, cid, uid', async () => {
    const token = await scriptedToken({ scp: ['api:read', 'api:write'], cid: '0oa-client', uid: '00u-user', sub: 'alice@example.com', groups: ['Everyone', 'admins'] });
    const res = await check(token, '/api/x', transport);
    expect(res.status).toBe(200);
    expect(res.identity).toMatchObject({
      'x-auth-scopes': 'api:read api:write',
      'x-auth-client': '0oa-client',
      'x-auth-subject': '00u-user',
      'x-auth-user': 'alice@example.com',
      'x-auth-groups': 'Everyone,admins',
    });
  });

  test("Entra ID's scp, one space-separated string, grants the route's scope as Okta's list does", async () => {
    const res = await check(await scriptedToken({ scp: 'api:read api:write', sub: `entra-${transport}` }), '/api/x', transport);
    expect(res.status).toBe(200);
    expect(res.identity['x-auth-scopes']).toBe('api:read api:write');
    expect((await check(await scriptedToken({ scp: 'other', sub: `entra-other-${transport}` }), '/api/x', transport)).status).toBe(403);
  });

  test('once keys are cached, verifying costs no network call', async () => {
    await check(await scriptedToken({}), '/api/x', transport);
    const [jwks, others] = [scripted.jwksRequests(), scripted.otherHits()];
    // Tokens no other test made: a token verified once is remembered, and would prove nothing here.
    for (let i = 0; i < 20; i++) expect((await check(await scriptedToken({ sub: `svc-${transport}-${i}` }), '/api/x', transport)).status).toBe(200);
    expect(scripted.requestsNotDueToAge(jwks)).toBe(0);
    expect(scripted.otherHits()).toBe(others);
  });

  test('a token from an unknown issuer is refused without any network call', async () => {
    const { privateKey } = await jose.generateKeyPair('RS256');
    const token = await new jose.SignJWT({ iss: stranger.url, aud: 'api://idgate', sub: 'x', exp: Math.floor(Date.now() / 1000) + 60 })
      .setProtectedHeader({ alg: 'RS256', kid: 'k' })
      .sign(privateKey);
    const res = await check(token, '/api/x', transport);
    expect(res.status).toBe(401);
    expect(res.www).toBe('Bearer realm="idgate", error="invalid_token", error_description="the token is from an untrusted issuer"');
    expect(stranger.hits).toBe(0);
    await expectHealthy(transport);
  });

  test.each([
    ['expired', { exp: Math.floor(Date.now() / 1000) - 60 }, 'the token expired'],
    ['not yet valid (nbf)', { nbf: Math.floor(Date.now() / 1000) + 600 }, 'the token is not valid yet'],
    ['issued in the future (iat)', { iat: Math.floor(Date.now() / 1000) + 600 }, 'the token is not valid yet'],
    ['for another audience', { aud: 'api://someone-else' }, 'the token is for another audience'],
    ['without exp', { exp: undefined }, 'the token lacks a required claim'],
  ])('a token %s is refused with a description that says so', async (_name, claims, description) => {
    const res = await check(await scriptedToken(claims), '/api/x', transport);
    expect(res.status).toBe(401);
    expect(res.www).toContain(`error="invalid_token", error_description="${description}"`);
    await expectHealthy(transport);
  });

  test('a token within the clock skew is accepted', async () => {
    const res = await check(await scriptedToken({ exp: Math.floor(Date.now() / 1000) - 2, nbf: Math.floor(Date.now() / 1000) + 2 }), '/api/x', transport);
    expect(res.status).toBe(200);
  });

  test('alg none and HS256 signed with the public key are refused whatever the header says', async () => {
    const payload = b64({ iss: scripted.issuer, aud: 'api://scripted', sub: 'svc', exp: Math.floor(Date.now() / 1000) + 60, scp: ['api:read'] });
    const none = `${b64({ alg: 'none', kid: 'scripted-1' })}.${payload}.`;
    expect((await check(none, '/api/x', transport)).www).toContain('the token signature algorithm is not accepted');
    // The classic confusion: HMAC keyed with the issuer's public key.
    const jwks = (await (await fetch(`${scripted.issuer}/jwks`)).json()) as { keys: jose.JWK[] };
    const hs = await new jose.SignJWT(JSON.parse(Buffer.from(payload, 'base64url').toString()) as jose.JWTPayload)
      .setProtectedHeader({ alg: 'HS256', kid: 'scripted-1' })
      .sign(new TextEncoder().encode(JSON.stringify(jwks.keys[0])));
    const res = await check(hs, '/api/x', transport);
    expect(res.status).toBe(401);
    expect(res.www).toContain('the token signature algorithm is not accepted');
    await expectHealthy(transport);
  });

  test('keys offered by the token (jwk, jku, x5u) are never used, and a forged signature is refused', async () => {
    const { publicKey, privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
    const attackerJwk = { ...(await jose.exportJWK(publicKey)), kid: 'attacker' };
    const before = stranger.hits;
    const token = await new jose.SignJWT({ iss: scripted.issuer, aud: 'api://scripted', sub: 'svc', exp: Math.floor(Date.now() / 1000) + 60 })
      .setProtectedHeader({ alg: 'RS256', kid: 'attacker', jwk: attackerJwk, jku: `${stranger.url}/jwks`, x5u: `${stranger.url}/x5u` })
      .sign(privateKey);
    const res = await check(token, '/api/x', transport);
    expect(res.status).toBe(401);
    expect(res.www).toContain('the token is signed with an unknown key');
    // Same kid as the issuer's key, but signed by the attacker: the signature fails.
    const forged = await new jose.SignJWT({ iss: scripted.issuer, aud: 'api://scripted', sub: 'svc', exp: Math.floor(Date.now() / 1000) + 60 })
      .setProtectedHeader({ alg: 'RS256', kid: 'scripted-1', jwk: attackerJwk })
      .sign(privateKey);
    expect((await check(forged, '/api/x', transport)).www).toContain('the token signature is invalid');
    expect(stranger.hits).toBe(before);
    await expectHealthy(transport);
  });

  test('a token without a kid is refused', async () => {
    const res = await check(await scriptedToken({}, { kid: undefined }), '/api/x', transport);
    expect(res.www).toContain('the token names no signing key');
  });

  test('garbage is a malformed token, not a crash', async () => {
    for (const token of ['a.b.c', 'x'.repeat(12_000), '....', 'e30.e30.e30', 'a.b.c.d.e']) {
      const res = await check(token, '/api/x', transport);
      expect(res.status).toBe(401);
    }
    await expectHealthy(transport);
  });

  test('a valid token lacking the route\'s scope gets 403 insufficient_scope naming the scope', async () => {
    const res = await check(await scriptedToken({ scp: ['other'] }), '/api/x', transport);
    expect(res.status).toBe(403);
    expect(res.www).toBe('Bearer realm="idgate", error="insufficient_scope", scope="api:read"');
    expect(res.body).toEqual({ error: 'access_denied', reason: 'needs scope api:read' });
  });

  // Was asked of "/", the catch-all: a token is no longer read there (see the next test), so this asks a
  // browser route that accepts tokens.
  test('a failed bearer token on a browser route that accepts tokens is a 401, never a login redirect', async () => {
    const res = transport === 'direct'
      ? await request(idgate.server).get('/auth').set(checkFacts('app.test')).set('Authorization', 'Bearer nope.nope.nope').set('Accept', 'text/html').set('X-Forwarded-Uri', '/app/')
      : await fetch(`${frontUrl}/app/`, { headers: { authorization: 'Bearer nope.nope.nope', accept: 'text/html' }, redirect: 'manual' });
    expect(res.status).toBe(401);
  });

  test('on a session-only route a token is nobody and is never verified: 401 for an API client, login for a browser', async () => {
    // Signed with a key id the issuer does not publish: verifying it would fetch the JWKS again.
    const token = await scriptedToken({}, { kid: 'never-fetched' });
    const [jwks, others] = [scripted.jwksRequests(), scripted.otherHits()];
    const res = await check(token, '/somewhere', transport);
    expect(res.status).toBe(401);
    expect(res.www).toBe('Bearer realm="idgate"');
    expect(res.body).toEqual({ error: 'unauthorized', reason: 'a bearer token does not count on this route; it needs a signed-in session' });
    const valid = await check(await clientCredentials(idps.a.issuer), '/somewhere', transport);
    expect(valid.status).toBe(401);
    const browser = transport === 'direct'
      ? await request(idgate.server).get('/auth').set(checkFacts('app.test')).set('Authorization', `Bearer ${token}`).set('Accept', 'text/html').set('X-Forwarded-Uri', '/somewhere')
      : await fetch(`${frontUrl}/somewhere`, { headers: { authorization: `Bearer ${token}`, accept: 'text/html' }, redirect: 'manual' });
    expect(browser.status).toBe(302);
    expect(scripted.requestsNotDueToAge(jwks)).toBe(0);
    expect(scripted.otherHits()).toBe(others);
  });

  test.each([
    ['typed at+jwt (RFC 9068) is accepted', 'at+jwt', 200],
    ['typed application/at+jwt is accepted', 'application/at+jwt', 200],
    ['typed JWT (Okta) is accepted', 'JWT', 200],
    ['without typ is accepted', undefined, 200],
    ['typed logout+jwt (a back-channel logout token) is refused', 'logout+jwt', 401],
    ['typed secevent+jwt is refused', 'secevent+jwt', 401],
    ['typed dpop+jwt (a DPoP proof) is refused', 'dpop+jwt', 401],
    ['typed with an empty string is refused', '', 401],
    ['typed with a number is refused', 7, 401],
  ])('a token %s', async (_name, typ, status) => {
    const res = await check(await scriptedToken({ jti: crypto.randomUUID() }, { typ: typ as string | undefined }), '/api/x', transport);
    expect(res.status).toBe(status);
    if (status === 401) expect(res.www).toContain('error_description="the token is not an access token"');
  });

  test.each([
    ['nonce (an ID token)', { nonce: 'n-1' }],
    ['at_hash (an ID token)', { at_hash: 'x' }],
    ['c_hash (an ID token)', { c_hash: 'x' }],
    ['events (a logout token)', { events: { 'http://schemas.openid.net/event/backchannel-logout': {} } }],
    ['cnf naming a certificate (a token bound by mutual TLS)', { cnf: { 'x5t#S256': 'x' } }],
  ])('a well-signed token with %s is not an access token', async (_name, claims) => {
    const res = await check(await scriptedToken(claims), '/api/x', transport);
    expect(res.status).toBe(401);
    expect(res.www).toContain('error_description="the token is not an access token"');
  });

  test('only the clients an issuer lists may use its tokens', async () => {
    expect((await check(await scriptedToken({ cid: '0oa-client' }), '/api/x', transport)).status).toBe(200);
    for (const claims of [{ cid: 'someone-else' }, { cid: undefined }, { cid: undefined, client_id: 'someone-else' }, { cid: undefined, azp: 'someone-else' }]) {
      const res = await check(await scriptedToken(claims), '/api/x', transport);
      expect(res.status).toBe(401);
      expect(res.www).toContain('error_description="the token was issued to a client that is not allowed"');
    }
  });

  test('an email counts for conditions and X-Auth-Email only when verified', async () => {
    const verified = await check(await scriptedToken({ email: 'svc@example.com', email_verified: true }), '/by-email/x', transport);
    expect(verified.status).toBe(200);
    expect(verified.identity['x-auth-email']).toBe('svc@example.com');
    const unverified = await check(await scriptedToken({ email: 'svc@example.com' }), '/api/x', transport);
    expect(unverified.status).toBe(200);
    expect(unverified.identity['x-auth-email']).toBeUndefined();
    const denied = await check(await scriptedToken({ email: 'svc@example.com', email_verified: false }), '/by-email/x', transport);
    expect(denied.status).toBe(403);
    expect(denied.body).toEqual({ error: 'access_denied', reason: 'needs an email at example.com' });
  });
});

describe('opaque tokens (introspection)', () => {
  test('an opaque token is checked by introspection once, then answered from the cache', async () => {
    const token = await clientCredentials(idps.a.issuer, opaqueClient);
    expect(token.split('.')).toHaveLength(1);
    const calls = await metric('idgate_introspection_calls_total');
    for (let i = 0; i < 3; i++) {
      const res = await check(token);
      expect(res.status).toBe(200);
      expect(res.identity).toMatchObject({ 'x-auth-client': opaqueClient.id, 'x-auth-scopes': opaqueClient.scope });
    }
    expect(await metric('idgate_introspection_calls_total')).toBe(calls + 1);
  });

  test('an unknown opaque token is 401 "not active", and asking again is answered from the negative cache', async () => {
    const calls = await metric('idgate_introspection_calls_total');
    for (let i = 0; i < 2; i++) {
      const res = await check('made-up-opaque-token');
      expect(res.status).toBe(401);
      expect(res.www).toContain('the token is not active');
    }
    expect(await metric('idgate_introspection_calls_total')).toBe(calls + 1);
  });
});

describe('introspection answers', () => {
  /** A JWT-shaped token of the introspecting issuer (its signature is the issuer's business), new each time. */
  const introspected = () => `${b64({ alg: 'RS256', kid: 'k' })}.${b64({ iss: introspecting.issuer, jti: crypto.randomUUID() })}.c2ln`;
  const active = (extra: Record<string, unknown>) => ({ active: true, iss: introspecting.issuer, sub: 'svc', client_id: 'svc', scope: 'api:read', aud: 'api://scripted', exp: Math.floor(Date.now() / 1000) + 300, ...extra });

  test.each([
    ['token_type Bearer', { token_type: 'Bearer' }, 200, undefined],
    ['no token_type', {}, 200, undefined],
    ['token_type refresh_token', { token_type: 'refresh_token' }, 401, 'the token is not an access token'],
    ['token_type DPoP without the key it is bound to (cnf.jkt)', { token_type: 'DPoP' }, 401, 'the token is not an access token'],
    ['token_type DPoP with cnf.jkt, sent as Bearer', { token_type: 'DPoP', cnf: { jkt: 'k' } }, 401, 'the token is DPoP-bound: send it as Authorization: DPoP with a DPoP proof'],
    ['no aud, while audiences are configured', { aud: undefined }, 401, 'the token is for another audience'],
    ['another aud', { aud: 'api://other' }, 401, 'the token is for another audience'],
    ['a nonce (an ID token)', { nonce: 'n' }, 401, 'the token is not an access token'],
    ['cnf (a sender-constrained token)', { cnf: {} }, 401, 'the token is not an access token'],
  ])('an active answer with %s: %s', async (_name, extra, status, description) => {
    introspecting.answer(active(extra));
    const res = await check(introspected());
    expect(res.status).toBe(status);
    if (description) expect(res.www).toContain(`error_description="${description}"`);
  });

  test('an issuer trusted with unverified emails passes its tokens\' email on', async () => {
    introspecting.answer(active({ email: 'svc@example.com' }));
    const res = await check(introspected(), '/by-email/x');
    expect(res.status).toBe(200);
    expect(res.identity['x-auth-email']).toBe('svc@example.com');
  });
});

describe('key rotation at the IdP', () => {
  test('a token signed with a new key is accepted at once; the retired key stops verifying after the refetch', async () => {
    const before = await clientCredentials(idps.a.issuer);
    expect((await check(before)).status).toBe(200);

    idps.a.process.child.kill('SIGUSR1');
    await waitForOutput(idps.a.process, 'idp signing key rotated');
    expect(idps.a.process.output()).toContain('idp signing key rotated');
    const after = await clientCredentials(idps.a.issuer);
    expect(jose.decodeProtectedHeader(after).kid).not.toBe(jose.decodeProtectedHeader(before).kid);
    expect((await check(after)).status).toBe(200);
    expect((await check(before)).status).toBe(200);

    idps.a.process.child.kill('SIGUSR2');
    await waitForOutput(idps.a.process, 'idp old signing keys retired');
    expect(idps.a.process.output()).toContain('idp old signing keys retired');
    // The cached keys are refreshed in the background once older than IDGATE_JWKS_CACHE (1 s here, and
    // IDGATE_JWKS_COOLDOWN after the last fetch), and only a check starts that refresh: so the test moves
    // idgate's clock past both, then keeps checking until the retired key is refused.
    clock.advance(JWKS_CACHE_MS + 100);
    expect(await probeUntil(async () => (await check(before)).status, (status) => status !== 200, { timeoutMs: 6000 })).toBe(401);
    expect((await check(after)).status).toBe(200);
  });

  test('while the IdP is unreachable, cached keys keep verifying and the failure is logged and counted', async () => {
    const token = await clientCredentials(idps.b.issuer);
    expect((await check(token)).status).toBe(200);
    const failures = await metric('idgate_jwks_refreshes_total{result="failed"}');
    await idps.b.process.stop();
    // Time must pass: the keys go stale (IDGATE_JWKS_CACHE, 1 s here) and their refetch fails, while
    // every check on the way keeps verifying with the keys held. idgate's clock is moved through that
    // time (the behaviour under test), a step before each check.
    for (let i = 0; i < 10; i++) {
      clock.advance(200);
      expect((await check(token)).status).toBe(200);
    }
    // The refetch runs in the background of a check: its failure is counted and logged a moment after.
    expect(await probeUntil(() => metric('idgate_jwks_refreshes_total{result="failed"}'), (n) => n > failures)).toBeGreaterThan(failures);
    const logged = () => idgate.logLines.some((l) => l.includes('signing keys could not be fetched'));
    await waitUntil('the failed fetch logged', logged);
    expect(logged()).toBe(true);
  });
});

describe('DPoP-bound tokens (RFC 9449) of other issuers: the binding read from the JWT or the introspection answer', () => {
  /** Asks idgate directly about a DPoP request for http://app.test/api/x (the public URL's scheme, no X-Forwarded-Proto). */
  async function dpopCheck(token: string, proof: string | undefined, scheme = 'DPoP'): Promise<{ status: number; www: string }> {
    let req = request(idgate.server).get('/auth').set(checkFacts('app.test', '/api/x')).set('Authorization', `${scheme} ${token}`).set('Accept', 'application/json');
    if (proof !== undefined) req = req.set('DPoP', proof);
    const res = await req;
    return { status: res.status, www: res.headers['www-authenticate'] ?? '' };
  }

  test('a JWT with cnf.jkt passes with a proof by that key, and only so', async () => {
    const key = await dpopKey();
    const token = await scriptedToken({ cnf: { jkt: key.thumbprint } });
    expect((await dpopCheck(token, await dpopProof(key, 'GET', 'http://app.test/api/x', { token }))).status).toBe(200);
    const asBearer = await dpopCheck(token, undefined, 'Bearer');
    expect(asBearer.status).toBe(401);
    expect(asBearer.www).toMatch(/^DPoP realm="idgate", error="invalid_token", error_description="the token is DPoP-bound/);
    const otherKey = await dpopKey();
    expect((await dpopCheck(token, await dpopProof(otherKey, 'GET', 'http://app.test/api/x', { token }))).www).toContain('the token is bound to another key than the one that signed the DPoP proof');
  });

  test('a DPoP-bound token lacking the route\'s scope gets 403 insufficient_scope, challenged as DPoP', async () => {
    const key = await dpopKey();
    const token = await scriptedToken({ scp: ['other'], cnf: { jkt: key.thumbprint } });
    const res = await dpopCheck(token, await dpopProof(key, 'GET', 'http://app.test/api/x', { token }));
    expect(res.status).toBe(403);
    expect(res.www).toMatch(/^DPoP realm="idgate", error="insufficient_scope", algs="[^"]+", scope="api:read"$/);
  });

  test('a token bound to nothing is not taken as DPoP', async () => {
    const key = await dpopKey();
    const token = await scriptedToken({});
    const res = await dpopCheck(token, await dpopProof(key, 'GET', 'http://app.test/api/x', { token }));
    expect(res.status).toBe(401);
    expect(res.www).toContain('error_description="the token is not DPoP-bound: send it as a Bearer token"');
  });

  test('an introspected token of token_type DPoP passes with a proof by the key its cnf.jkt names', async () => {
    const key = await dpopKey();
    const token = `${b64({ alg: 'RS256', kid: 'k' })}.${b64({ iss: introspecting.issuer, jti: crypto.randomUUID() })}.c2ln`;
    introspecting.answer({ active: true, token_type: 'DPoP', cnf: { jkt: key.thumbprint }, iss: introspecting.issuer, sub: 'svc', client_id: 'svc', scope: 'api:read', aud: 'api://scripted', exp: Math.floor(Date.now() / 1000) + 300 });
    expect((await dpopCheck(token, await dpopProof(key, 'GET', 'http://app.test/api/x', { token }))).status).toBe(200);
    expect((await dpopCheck(token, await dpopProof(await dpopKey(), 'GET', 'http://app.test/api/x', { token }))).status).toBe(401);
  });
});

describe('an issuer whose introspection answer never ends', () => {
  afterAll(() => introspecting.answer({ active: false }));

  test.each(['direct', 'through HAProxy'] as const)('is read up to its bound, %s: the check answers 503 (never a verdict), idgate closes the connection and logs why', async (transport) => {
    const closedAt = introspecting.answerEndlessly();
    const closedBefore = closedAt.length;
    const whyLogged = () => idgate.logLines.filter((l) => l.includes('cannot decide') && l.includes(`introspection: answer larger than ${MAX_INTROSPECTION_BYTES} bytes`)).length;
    const loggedBefore = whyLogged();
    const token = `${b64({ alg: 'RS256', kid: 'k' })}.${b64({ iss: introspecting.issuer, jti: crypto.randomUUID() })}.c2ln`;
    const res = await check(token, '/api/x', transport);
    expect(res.status).toBe(503);
    // The bound, not the call's timeout, ended the read: idgate says so, and the server saw the close.
    await waitUntil('the bound logged', () => whyLogged() > loggedBefore);
    await waitUntil('the endless answer closed', () => closedAt.length > closedBefore);
    introspecting.answer({ active: false });
    await expectHealthy(transport);
  });
});
