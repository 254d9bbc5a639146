// DPoP proofs (RFC 9449 section 4.3), checked one rule at a time: each case changes one thing of a good
// proof, signed for real with jose, and names the answer. The jti memory, the token binding and the whole
// path through HAProxy are in test/e2e/dpop.test.ts.
import crypto from 'node:crypto';
import * as jose from 'jose';
import { checkDpopProof, dpopChallenge, normalizedHtu, proofTargetUrl, type DpopSettings } from '../../service/src/tokens/dpop.js';
import { isIdgateError } from '../../service/src/errors.js';

const settings: DpopSettings = { dpopAlgorithms: ['ES256', 'RS256', 'PS256', 'EdDSA'], dpopMaxAgeSeconds: 300, clockSkewSeconds: 30 };
const TOKEN = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJib3QifQ.c2ln';
const TARGET = { method: 'GET', url: 'https://app.example.com/api/items' };
const ath = (token: string) => crypto.createHash('sha256').update(token).digest('base64url');

let ecKey: jose.GenerateKeyPairResult;
let rsaKey: jose.GenerateKeyPairResult;

beforeAll(async () => {
  [ecKey, rsaKey] = await Promise.all([jose.generateKeyPair('ES256', { extractable: true }), jose.generateKeyPair('RS256', { extractable: true })]);
});

interface ProofChanges {
  claims?: Record<string, unknown>;
  header?: Record<string, unknown>;
  /** Claims left out. */
  without?: string[];
  key?: jose.GenerateKeyPairResult;
  alg?: string;
}

/** A good proof for TARGET and TOKEN, but for `changes`. */
async function proof(changes: ProofChanges = {}): Promise<string> {
  const key = changes.key ?? ecKey;
  const alg = changes.alg ?? (key === rsaKey ? 'RS256' : 'ES256');
  const claims: Record<string, unknown> = { jti: crypto.randomUUID(), htm: 'GET', htu: TARGET.url, iat: Math.floor(Date.now() / 1000), ath: ath(TOKEN), ...changes.claims };
  for (const c of changes.without ?? []) delete claims[c];
  const header = { typ: 'dpop+jwt', alg, jwk: await jose.exportJWK(key.publicKey), ...changes.header };
  return new jose.SignJWT(claims).setProtectedHeader(header as jose.JWTHeaderParameters).sign(key.privateKey);
}

/** What checkDpopProof says: 'ok', or the error's text. */
async function verdict(p: string | undefined, target = TARGET, token = TOKEN): Promise<string> {
  try {
    await checkDpopProof(p, target, token, settings);
    return 'ok';
  } catch (err) {
    if (isIdgateError(err) && err.code === 'invalid_dpop_proof') return err.expose;
    throw err;
  }
}

describe('a DPoP proof', () => {
  test('signed by its embedded key for this request and token passes, and names the key by its RFC 7638 thumbprint', async () => {
    const checked = await checkDpopProof(await proof(), TARGET, TOKEN, settings);
    expect(checked.keyThumbprint).toBe(await jose.calculateJwkThumbprint(await jose.exportJWK(ecKey.publicKey), 'sha256'));
    expect(await verdict(await proof({ key: rsaKey }))).toBe('ok');
  });

  test.each<[string, () => Promise<string | undefined>, string]>([
    ['absent', async () => undefined, 'the request lacks a DPoP proof'],
    ['two proofs in one header (two lines joined)', async () => `${await proof()}, ${await proof()}`, 'the request carries more than one DPoP proof'],
    ['not a JWT', async () => 'not-a-jwt', 'the DPoP proof is malformed'],
    ['typed JWT', () => proof({ header: { typ: 'JWT' } }), 'the DPoP proof is not typed dpop+jwt'],
    ['untyped', () => proof({ header: { typ: undefined } }), 'the DPoP proof is not typed dpop+jwt'],
    ['typed at+jwt (an access token)', () => proof({ header: { typ: 'at+jwt' } }), 'the DPoP proof is not typed dpop+jwt'],
    ['with alg none', async () => `${Buffer.from(JSON.stringify({ typ: 'dpop+jwt', alg: 'none', jwk: await jose.exportJWK(ecKey.publicKey) })).toString('base64url')}.${Buffer.from(JSON.stringify({ jti: 'j', htm: 'GET', htu: TARGET.url, iat: Math.floor(Date.now() / 1000), ath: ath(TOKEN) })).toString('base64url')}.`, 'the DPoP proof signature algorithm is not accepted'],
    ['with alg HS256 (a shared secret)', () => new jose.SignJWT({ jti: 'j', htm: 'GET', htu: TARGET.url, iat: Math.floor(Date.now() / 1000), ath: ath(TOKEN) }).setProtectedHeader({ typ: 'dpop+jwt', alg: 'HS256', jwk: { kty: 'oct', k: 'c2VjcmV0' } } as jose.JWTHeaderParameters).sign(new TextEncoder().encode('secret')), 'the DPoP proof signature algorithm is not accepted'],
    ['with an algorithm outside IDGATE_DPOP_ALGORITHMS', async () => proof({ key: await jose.generateKeyPair('ES384'), alg: 'ES384' }), 'the DPoP proof signature algorithm is not accepted'],
    ['without a jwk', () => proof({ header: { jwk: undefined } }), 'the DPoP proof carries no public key (jwk)'],
    ['whose jwk is a private key', async () => proof({ header: { jwk: await jose.exportJWK(ecKey.privateKey) } }), 'the DPoP proof key must be a public key'],
    ['signed by another key than its jwk', async () => proof({ header: { jwk: await jose.exportJWK((await jose.generateKeyPair('ES256')).publicKey) } }), 'the DPoP proof signature is invalid'],
    ['without jti', () => proof({ without: ['jti'] }), 'the DPoP proof lacks a jti'],
    ['without htm', () => proof({ without: ['htm'] }), 'the DPoP proof lacks htm'],
    ['without htu', () => proof({ without: ['htu'] }), 'the DPoP proof lacks htu'],
    ['without iat', () => proof({ without: ['iat'] }), 'the DPoP proof lacks iat'],
    ['for another method', () => proof({ claims: { htm: 'POST' } }), 'the DPoP proof is for another method'],
    ['with the method in lower case', () => proof({ claims: { htm: 'get' } }), 'the DPoP proof is for another method'],
    ['for another path', () => proof({ claims: { htu: 'https://app.example.com/api/other' } }), 'the DPoP proof is for another URL'],
    ['for another host', () => proof({ claims: { htu: 'https://evil.example.com/api/items' } }), 'the DPoP proof is for another URL'],
    ['for another scheme', () => proof({ claims: { htu: 'http://app.example.com/api/items' } }), 'the DPoP proof is for another URL'],
    ['for another port', () => proof({ claims: { htu: 'https://app.example.com:8443/api/items' } }), 'the DPoP proof is for another URL'],
    ['for a relative URL', () => proof({ claims: { htu: '/api/items' } }), 'the DPoP proof is for another URL'],
    ['issued too long ago (stale iat)', () => proof({ claims: { iat: Math.floor(Date.now() / 1000) - 300 - 30 - 5 } }), 'the DPoP proof is too old'],
    ['issued in the future', () => proof({ claims: { iat: Math.floor(Date.now() / 1000) + 60 } }), 'the DPoP proof is not valid yet'],
    ['without ath', () => proof({ without: ['ath'] }), 'the DPoP proof lacks ath (the access token hash)'],
    ['whose ath is another token\'s', () => proof({ claims: { ath: ath('another-token') } }), 'the DPoP proof is for another access token'],
    ['whose nonce is not a string', () => proof({ claims: { nonce: 42 } }), 'the DPoP proof nonce is not a string'],
  ])('%s is refused', async (_name, make, expected) => {
    expect(await verdict(await make())).toBe(expected);
  });

  test.each([
    ['a query and a fragment on htu (both ignored)', 'https://app.example.com/api/items?page=2#top'],
    ['the scheme and host in upper case', 'HTTPS://APP.Example.COM/api/items'],
    ['the default port written out', 'https://app.example.com:443/api/items'],
    ['an unreserved character percent-encoded', 'https://app.example.com/api/%69tems'],
    ['a dot segment', 'https://app.example.com/api/./items'],
  ])('with %s still names the request (RFC 9449 section 4.3 normalization)', async (_name, htu) => {
    expect(await verdict(await proof({ claims: { htu } }))).toBe('ok');
  });

  test('hands on its nonce, if any, for the nonce check (IDGATE_DPOP_NONCE, test/unit/dpop-nonce.test.ts)', async () => {
    expect((await checkDpopProof(await proof({ claims: { nonce: 'n-1' } }), TARGET, TOKEN, settings)).nonce).toBe('n-1');
    expect((await checkDpopProof(await proof(), TARGET, TOKEN, settings)).nonce).toBeUndefined();
  });

  test('iat within the window (max age plus clock skew) passes, either side of now', async () => {
    const now = Math.floor(Date.now() / 1000);
    expect(await verdict(await proof({ claims: { iat: now - 300 } }))).toBe('ok');
    expect(await verdict(await proof({ claims: { iat: now + 20 } }))).toBe('ok');
  });

  test('the request URL is the path as the client sent it, without its query', async () => {
    expect(proofTargetUrl('https', 'app.example.com', '/api/items?page=2')).toBe(TARGET.url);
    expect(await verdict(await proof(), { method: 'GET', url: proofTargetUrl('https', 'app.example.com', '/api/items?x') })).toBe('ok');
    expect(normalizedHtu('https://app.example.com/a%2fb')).toBe('https://app.example.com/a%2Fb');
    expect(normalizedHtu('ftp://app.example.com/')).toBeUndefined();
    expect(normalizedHtu('https://app.example.com')).toBe('https://app.example.com/');
  });
});

describe('the DPoP challenge', () => {
  test('names the error and the proof algorithms accepted', () => {
    expect(dpopChallenge(settings, 'invalid_dpop_proof', 'the DPoP proof is too old')).toBe('DPoP realm="idgate", error="invalid_dpop_proof", error_description="the DPoP proof is too old", algs="ES256 RS256 PS256 EdDSA"');
    expect(dpopChallenge(settings)).toBe('DPoP realm="idgate", algs="ES256 RS256 PS256 EdDSA"');
    expect(dpopChallenge(settings, 'use_dpop_nonce', 'the DPoP proof lacks the nonce idgate gives (DPoP-Nonce)')).toBe('DPoP realm="idgate", error="use_dpop_nonce", error_description="the DPoP proof lacks the nonce idgate gives (DPoP-Nonce)", algs="ES256 RS256 PS256 EdDSA"');
  });
});
