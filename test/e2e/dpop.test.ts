// DPoP (RFC 9449) end to end: the demo IdP's dpop-bot gets a token bound to its key (its token request
// carries a proof), then calls the demo policy's /api/ with `Authorization: DPoP` and a fresh proof per
// request, through the real HAProxy (Lua and HTTP check: every case; SPOE: one allowed and one refused)
// to two idgate replicas sharing one Redis. Each rule of the proof alone is in test/unit/dpop.test.ts.
import crypto from 'node:crypto';
import { startStack, type Stack } from '../../stack/stack.js';
import { startHaproxy } from '../../stack/haproxy.js';
import { startOnFreePort, type ManagedProcess } from '../../stack/processes.js';
import { dpopClient } from '../support/identities.js';
import { dpopBoundToken, dpopKey, dpopProof, type DpopKey } from '../support/dpop.js';
import { rawRequest, one } from '../support/raw-http.js';
import { waitUntil } from '../../stack/wait.js';

let stack: Stack;
let spoeHaproxy: ManagedProcess;
let spoeFrontUrl: string;
let key: DpopKey;
let token: string;

beforeAll(async () => {
  stack = await startStack({ idgateReplicas: 2 });
  // HAProxy cannot bind port 0 and tell: when the port picked was taken meanwhile, it starts on another.
  let spoeFront: number;
  ({ port: spoeFront, started: spoeHaproxy } = await startOnFreePort((frontPort) =>
    startHaproxy({
      mode: 'spoe',
      name: 'haproxy-spoe',
      frontPort,
      idgatePort: stack.ports.idgate[0]!,
      idgatePort2: stack.ports.idgate[1]!,
      spoePort: stack.ports.spoe[0]!,
      spoePort2: stack.ports.spoe[1]!,
      upstreamPort: stack.ports.upstream,
      checkSecret: stack.checkSecret,
    }),
  ));
  spoeFrontUrl = `http://127.0.0.1:${spoeFront}`;
  key = await dpopKey();
  token = await dpopBoundToken(stack.issuer, key);
}, 90_000);

afterAll(async () => {
  await spoeHaproxy?.stop();
  await stack?.stop();
});

interface Answer {
  status: number;
  www: string;
  /** What the upstream received (200 only). */
  received: { method?: string; headers?: Record<string, string> } | undefined;
  body: unknown;
}

interface Call {
  method?: string;
  /** Default: `DPoP <token>`. */
  authorization?: string;
  /** The DPoP header; undefined sends none. */
  proof?: string;
}

async function call(url: string, c: Call): Promise<Answer> {
  const headers: Record<string, string> = { accept: 'application/json', authorization: c.authorization ?? `DPoP ${token}` };
  if (c.proof !== undefined) headers.dpop = c.proof;
  const res = await fetch(url, { method: c.method ?? 'GET', headers, redirect: 'manual' });
  const body = (await res.json().catch(() => undefined)) as Answer['received'];
  return { status: res.status, www: res.headers.get('www-authenticate') ?? '', received: res.status === 200 ? body : undefined, body };
}

/** A request to `path` on `front` with a good proof for it, but for `proofFor` (method, URL, options). */
async function withProof(front: string, path: string, method = 'GET', proofFor: { method?: string; url?: string; options?: Parameters<typeof dpopProof>[3] } = {}): Promise<Answer> {
  const proof = await dpopProof(key, proofFor.method ?? method, proofFor.url ?? `${front}${path}`, { token, ...proofFor.options });
  return call(`${front}${path}`, { method, proof });
}

const ALGS = 'algs="ES256 RS256 PS256 EdDSA"';

/**
 * A proof for GET `url` and the token, carrying `jwk`, with a signature that no key made: an answer about
 * anything but its signature shows the signature was not verified first.
 */
function proofSignedByNoKey(url: string, alg: string, jwk: Record<string, unknown>): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const claims = { jti: crypto.randomUUID(), htm: 'GET', htu: url, iat: Math.floor(Date.now() / 1000), ath: crypto.hash('sha256', token, 'base64url') };
  return `${part({ typ: 'dpop+jwt', alg, jwk })}.${part(claims)}.${Buffer.alloc(256, 7).toString('base64url')}`;
}

/** An RSA public key as a proof carries it: a 3072-bit modulus and a 3070-bit exponent, the key the bound is for. */
function costlyRsaJwk(): Record<string, unknown> {
  const n = crypto.randomBytes(384);
  n[0]! |= 0x80;
  const e = Buffer.concat([Buffer.from([0x3f]), crypto.randomBytes(383)]);
  e[383]! |= 1;
  return { kty: 'RSA', n: n.toString('base64url'), e: e.toString('base64url') };
}

/** The audit line of a request, from whichever replica decided it. */
async function auditLine(requestId: string): Promise<Record<string, unknown>> {
  const find = () =>
    ['idgate', 'idgate2']
      .flatMap((name) => stack.processes[name]!.output().split('\n'))
      .filter((l) => l.includes('"event":"decision"') && l.includes(requestId))
      .map((l) => JSON.parse(l) as Record<string, unknown>)[0];
  await waitUntil('the line logged', () => find() !== undefined);
  const line = find();
  if (!line) throw new Error(`no audit line for ${requestId}`);
  return line;
}

describe('a DPoP-bound token with a proof, through HAProxy and the HTTP check (Lua)', () => {
  describe('per IdP profile', () => {
    test('the token is bound to the client key (cnf.jkt) and passes with a proof for the request: the app gets the client', async () => {
      const res = await withProof(stack.frontUrl, '/api/items?page=2');
      expect(res.status).toBe(200);
      expect(res.received?.headers).toMatchObject({ 'x-auth-client': dpopClient.id, 'x-auth-scopes': dpopClient.scope });
      const line = await auditLine(res.received!.headers!['x-request-id']!);
      expect(line).toMatchObject({ decision: 'allow', scheme: 'dpop', client: dpopClient.id, path: '/api/items' });
    });
  });

  test('a POST with a proof for POST passes', async () => {
    const res = await withProof(stack.frontUrl, '/api/items', 'POST');
    expect(res.status).toBe(200);
    expect(res.received?.method).toBe('POST');
  });

  test.each<[string, () => Promise<Answer>, string]>([
    ['a proof for another method', () => withProof(stack.frontUrl, '/api/items', 'GET', { method: 'POST' }), 'error="invalid_dpop_proof", error_description="the DPoP proof is for another method"'],
    ['a proof for another URL', () => withProof(stack.frontUrl, '/api/items', 'GET', { url: `${stack.frontUrl}/api/other` }), 'error="invalid_dpop_proof", error_description="the DPoP proof is for another URL"'],
    ['a proof for another host', () => withProof(stack.frontUrl, '/api/items', 'GET', { url: `http://localhost:${stack.ports.front}/api/items` }), 'error="invalid_dpop_proof", error_description="the DPoP proof is for another URL"'],
    ['a proof without ath', () => withProof(stack.frontUrl, '/api/items', 'GET', { options: { claims: { ath: undefined } } }), 'error="invalid_dpop_proof", error_description="the DPoP proof lacks ath (the access token hash)"'],
    ['a proof typed JWT', () => withProof(stack.frontUrl, '/api/items', 'GET', { options: { header: { typ: 'JWT' } } }), 'error="invalid_dpop_proof", error_description="the DPoP proof is not typed dpop+jwt"'],
    ['a stale proof (iat beyond IDGATE_DPOP_MAX_AGE and the clock skew)', () => withProof(stack.frontUrl, '/api/items', 'GET', { options: { claims: { iat: Math.floor(Date.now() / 1000) - 400 } } }), 'error="invalid_dpop_proof", error_description="the DPoP proof is too old"'],
    ['no proof at all', () => call(`${stack.frontUrl}/api/items`, {}), 'error="invalid_dpop_proof", error_description="the request lacks a DPoP proof"'],
    ['a proof by another key than the token is bound to', async () => call(`${stack.frontUrl}/api/items`, { proof: await dpopProof(await dpopKey(), 'GET', `${stack.frontUrl}/api/items`, { token }) }), 'error="invalid_token", error_description="the token is bound to another key than the one that signed the DPoP proof"'],
    ['a proof whose RSA key has a 3070-bit exponent (refused before any verification)', async () => call(`${stack.frontUrl}/api/items`, { proof: proofSignedByNoKey(`${stack.frontUrl}/api/items`, 'RS256', costlyRsaJwk()) }), 'error="invalid_dpop_proof", error_description="the DPoP proof key is not accepted"'],
    ["a proof by another key than the token is bound to, its signature made by no key (the binding is compared first)", async () => call(`${stack.frontUrl}/api/items`, { proof: proofSignedByNoKey(`${stack.frontUrl}/api/items`, 'ES256', (await dpopKey()).publicJwk) }), 'error="invalid_token", error_description="the token is bound to another key than the one that signed the DPoP proof"'],
    ["a proof by the token's key with a signature made by no key", async () => call(`${stack.frontUrl}/api/items`, { proof: proofSignedByNoKey(`${stack.frontUrl}/api/items`, 'ES256', key.publicJwk) }), 'error="invalid_dpop_proof", error_description="the DPoP proof signature is invalid"'],
    ['the bound token sent as Bearer (no proof)', () => call(`${stack.frontUrl}/api/items`, { authorization: `Bearer ${token}` }), 'error="invalid_token", error_description="the token is DPoP-bound: send it as Authorization: DPoP with a DPoP proof"'],
    ['the bound token sent as Bearer with a good proof', async () => call(`${stack.frontUrl}/api/items`, { authorization: `Bearer ${token}`, proof: await dpopProof(key, 'GET', `${stack.frontUrl}/api/items`, { token }) }), 'error="invalid_token", error_description="the token is DPoP-bound: send it as Authorization: DPoP with a DPoP proof"'],
  ])('%s is 401 with a DPoP challenge', async (_name, send, error) => {
    const res = await send();
    expect(res.status).toBe(401);
    expect(res.www).toBe(`DPoP realm="idgate", ${error}, ${ALGS}`);
  });

  test('a proof is good once: the same proof again is refused', async () => {
    const proof = await dpopProof(key, 'GET', `${stack.frontUrl}/api/items`, { token });
    expect((await call(`${stack.frontUrl}/api/items`, { proof })).status).toBe(200);
    const again = await call(`${stack.frontUrl}/api/items`, { proof });
    expect(again.status).toBe(401);
    expect(again.www).toBe(`DPoP realm="idgate", error="invalid_dpop_proof", error_description="the DPoP proof was already used", ${ALGS}`);
  });

  test('two DPoP header lines are refused by HAProxy before any check', async () => {
    const proof = await dpopProof(key, 'GET', `${stack.frontUrl}/api/items`, { token });
    const res = await rawRequest(stack.ports.front, 'GET', '/api/items', [['Host', `127.0.0.1:${stack.ports.front}`], ['Authorization', `DPoP ${token}`], ['DPoP', proof], ['DPoP', proof]]);
    expect(res.status).toBe(400);
  });

  test('a refused DPoP request is audited with its scheme', async () => {
    const res = await rawRequest(stack.ports.front, 'GET', '/api/items', [['Host', `127.0.0.1:${stack.ports.front}`], ['Accept', 'application/json'], ['Authorization', `DPoP ${token}`]]);
    expect(res.status).toBe(401);
    expect(one(res.headers, 'www-authenticate')).toContain('DPoP realm="idgate"');
    // HAProxy's answer carries no request id: the line is found by its reason instead.
    await waitUntil('the refusal logged', () => ['idgate', 'idgate2'].some((n) => stack.processes[n]!.output().includes('"reason":"the request lacks a DPoP proof"')));
    const line = ['idgate', 'idgate2']
      .flatMap((n) => stack.processes[n]!.output().split('\n'))
      .find((l) => l.includes('"reason":"the request lacks a DPoP proof"'))!;
    expect(JSON.parse(line)).toMatchObject({ decision: 'unauthenticated', status: 401, scheme: 'dpop' });
  });
});

describe('replicas share the proofs seen (Redis)', () => {
  test('a proof one replica accepted is refused by the other', async () => {
    const host = `127.0.0.1:${stack.ports.front}`;
    const proof = await dpopProof(key, 'GET', `http://${host}/api/items`, { token });
    const ask = (idgateUrl: string) =>
      fetch(`${idgateUrl}/auth`, { headers: { ...stack.checkHeaders, 'x-forwarded-method': 'GET', 'x-forwarded-proto': 'http', 'x-forwarded-host': host, 'x-forwarded-uri': '/api/items', accept: 'application/json', authorization: `DPoP ${token}`, dpop: proof } });
    expect((await ask(stack.idgateUrls[0]!)).status).toBe(200);
    const other = await ask(stack.idgateUrls[1]!);
    expect(other.status).toBe(401);
    expect(other.headers.get('www-authenticate')).toContain('error_description="the DPoP proof was already used"');
  });
});

describe('a check asked again', () => {
  test('for the same request (HAProxy\'s retry after a lost answer) passes again; for another request it is a replay', async () => {
    const host = `127.0.0.1:${stack.ports.front}`;
    const proof = await dpopProof(key, 'GET', `http://${host}/api/items`, { token });
    const ask = (idgateUrl: string, requestId: string) =>
      fetch(`${idgateUrl}/auth`, { headers: { ...stack.checkHeaders, 'x-forwarded-method': 'GET', 'x-forwarded-host': host, 'x-forwarded-uri': '/api/items', 'x-request-id': requestId, accept: 'application/json', authorization: `DPoP ${token}`, dpop: proof } });
    const requestId = crypto.randomUUID();
    expect((await ask(stack.idgateUrls[0]!, requestId)).status).toBe(200);
    expect((await ask(stack.idgateUrls[1]!, requestId)).status).toBe(200);
    expect((await ask(stack.idgateUrls[1]!, crypto.randomUUID())).status).toBe(401);
  });
});

describe('through HAProxy and the SPOE agent', () => {
  describe('per IdP profile', () => {
    test('a DPoP request with a good proof passes, and its replay is refused with a DPoP challenge', async () => {
      const proof = await dpopProof(key, 'GET', `${spoeFrontUrl}/api/items`, { token });
      const res = await call(`${spoeFrontUrl}/api/items?x=1`, { proof });
      expect(res.status).toBe(200);
      expect(res.received?.headers).toMatchObject({ 'x-auth-client': dpopClient.id });
      const again = await call(`${spoeFrontUrl}/api/items?x=1`, { proof });
      expect(again.status).toBe(401);
      expect(again.www).toBe(`DPoP realm="idgate", error="invalid_dpop_proof", error_description="the DPoP proof was already used", ${ALGS}`);
    });
  });

  test('a proof made for the Lua front end does not pass on the SPOE one (another URL)', async () => {
    const res = await withProof(spoeFrontUrl, '/api/items', 'GET', { url: `${stack.frontUrl}/api/items` });
    expect(res.status).toBe(401);
    expect(res.www).toContain('error_description="the DPoP proof is for another URL"');
  });
});
