// DPoP proofs (RFC 9449 section 4.3), checked one rule at a time: each case changes one thing of a good
// proof, signed for real with jose, and names the answer. The jti memory, the token binding and the whole
// path through HAProxy are in test/e2e/dpop.test.ts.
import crypto from 'node:crypto';
import * as jose from 'jose';
import { checkDpopProof, dpopChallenge, normalizedHtu, proofTargetUrl, verifyDpopRequest, type DpopSettings } from '../../service/src/tokens/dpop.js';
import { IdgateError, isIdgateError } from '../../service/src/errors.js';
import type { Config } from '../../service/src/config.js';
import type { Identity } from '../../service/src/policy/policy.js';
import type { BearerVerifier, VerifyOptions } from '../../service/src/tokens/tokens.js';

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

/** A proof of `header` and the good claims, with a signature that no key made: only a check that never verifies it can pass it. */
function unsignedProof(header: Record<string, unknown>, token = TOKEN): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const claims = { jti: crypto.randomUUID(), htm: 'GET', htu: TARGET.url, iat: Math.floor(Date.now() / 1000), ath: ath(token) };
  return `${part({ typ: 'dpop+jwt', ...header })}.${part(claims)}.${Buffer.alloc(64, 7).toString('base64url')}`;
}

/** An RSA modulus of exactly `bits` bits (its top bit set), base64url: its size is all the bound looks at. */
function modulusOf(bits: number): string {
  const bytes = crypto.randomBytes(Math.ceil(bits / 8));
  bytes[0] = (bytes[0]! & (0xff >> (bytes.length * 8 - bits))) | (0x80 >> (bytes.length * 8 - bits));
  return bytes.toString('base64url');
}

describe("a DPoP proof's key is bounded before anything is verified with it", () => {
  const all: DpopSettings = { ...settings, dpopAlgorithms: ['ES256', 'ES384', 'RS256', 'PS256', 'EdDSA'] };
  // A 3070-bit exponent: the costly key the bound is for (any exponent but 65537 is refused alike).
  const hugeExponent = Buffer.concat([Buffer.from([0x3f]), crypto.randomBytes(383)]).toString('base64url');

  test.each<[string, Record<string, unknown>, string]>([
    ['RSA with a 3070-bit exponent', { alg: 'RS256', jwk: { kty: 'RSA', n: modulusOf(3072), e: hugeExponent } }, 'RSA exponent other than 65537'],
    ['RSA with exponent 3', { alg: 'RS256', jwk: { kty: 'RSA', n: modulusOf(2048), e: 'Aw' } }, 'RSA exponent other than 65537'],
    ['RSA of 2047 bits', { alg: 'PS256', jwk: { kty: 'RSA', n: modulusOf(2047), e: 'AQAB' } }, 'RSA modulus of 2047 bits'],
    ['RSA of 4097 bits', { alg: 'RS256', jwk: { kty: 'RSA', n: modulusOf(4097), e: 'AQAB' } }, 'RSA modulus of 4097 bits'],
    ['EC P-521', { alg: 'ES256', jwk: { kty: 'EC', crv: 'P-521', x: 'AA', y: 'AA' } }, 'EC P-521 key for ES256'],
    ['EC P-384 named as ES256', { alg: 'ES256', jwk: { kty: 'EC', crv: 'P-384', x: 'AA', y: 'AA' } }, 'EC P-384 key for ES256'],
    ['Ed448', { alg: 'EdDSA', jwk: { kty: 'OKP', crv: 'Ed448', x: 'AA' } }, 'OKP Ed448 key for EdDSA'],
    ['an EC key named as RS256', { alg: 'RS256', jwk: { kty: 'EC', crv: 'P-256', x: 'AA', y: 'AA' } }, 'EC key for RS256'],
  ])('%s is refused as not accepted, its signature never verified', async (_name, header, why) => {
    const err = await checkDpopProof(unsignedProof(header), TARGET, TOKEN, all).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IdgateError);
    expect(err).toMatchObject({ code: 'invalid_dpop_proof', status: 401, expose: 'the DPoP proof key is not accepted', detail: why });
  });

  test.each<[string, Record<string, unknown>]>([
    ['RSA of 2048 bits', { alg: 'RS256', jwk: { kty: 'RSA', n: modulusOf(2048), e: 'AQAB' } }],
    ['RSA of 4096 bits', { alg: 'PS256', jwk: { kty: 'RSA', n: modulusOf(4096), e: 'AQAB' } }],
    ['EC P-384', { alg: 'ES384', jwk: { kty: 'EC', crv: 'P-384', x: 'AA', y: 'AA' } }],
  ])('%s is within the bounds: only then is its signature checked (and this one, made by no key, fails)', async (_name, header) => {
    expect(await checkDpopProof(unsignedProof(header), TARGET, TOKEN, all).catch((e: IdgateError) => e.expose)).toBe('the DPoP proof signature is invalid');
  });

  test('real P-384 and Ed25519 keys sign proofs that pass', async () => {
    for (const alg of ['ES384', 'EdDSA']) expect(await checkDpopProof(await proof({ key: await jose.generateKeyPair(alg, { extractable: true }), alg }), TARGET, TOKEN, all)).toMatchObject({ jti: expect.any(String) });
  });
});

describe('a DPoP request', () => {
  const config = { ...settings, dpopNonceRequired: false, cookieSecrets: ['x'.repeat(32)] } as unknown as Config;
  const identity = { subject: 'bot', via: 'token' } as unknown as Identity;
  const request = (p: string) => ({ proof: p, target: TARGET, accessToken: TOKEN, source: '192.0.2.1', requestId: 'r-1' });

  /** A token verifier that holds TOKEN bound to `boundTo`, and counts what it is asked. */
  function bearerBoundTo(boundTo: string) {
    const asked: VerifyOptions[] = [];
    const bearer = {
      async verify(_token: string, options: VerifyOptions = {}) {
        asked.push(options);
        if (options.proofKey !== boundTo) throw new IdgateError('invalid_token', 'the token is bound to another key than the one that signed the DPoP proof');
        return identity;
      },
    };
    return { bearer: bearer as unknown as BearerVerifier, asked };
  }
  const sessions = () => {
    const remembered: string[] = [];
    return { store: { firstUseOfDpopProof: async (digest: string) => (remembered.push(digest), true) }, remembered };
  };

  test('with a key over the bounds is refused before the token is even looked at', async () => {
    const { bearer, asked } = bearerBoundTo('any');
    const { store, remembered } = sessions();
    const p = unsignedProof({ alg: 'RS256', jwk: { kty: 'RSA', n: modulusOf(3072), e: Buffer.alloc(384, 0xff).toString('base64url') } });
    await expect(verifyDpopRequest({ bearer, replays: store, config, clock: () => Date.now() }, request(p))).rejects.toMatchObject({ code: 'invalid_dpop_proof', expose: 'the DPoP proof key is not accepted' });
    expect(asked).toEqual([]);
    expect(remembered).toEqual([]);
  });

  test("whose token is bound to another key is refused on the binding, before the proof's signature is verified", async () => {
    const { bearer, asked } = bearerBoundTo('the-thumbprint-of-another-key');
    const { store } = sessions();
    // A signature made by no key: had it been verified first, the answer would say so.
    const p = unsignedProof({ alg: 'ES256', jwk: await jose.exportJWK(ecKey.publicKey) });
    await expect(verifyDpopRequest({ bearer, replays: store, config, clock: () => Date.now() }, request(p))).rejects.toMatchObject({ code: 'invalid_token', expose: 'the token is bound to another key than the one that signed the DPoP proof' });
    expect(asked).toEqual([{ source: '192.0.2.1', proofKey: await jose.calculateJwkThumbprint(await jose.exportJWK(ecKey.publicKey), 'sha256') }]);
  });

  test("whose token is bound to its key still needs the proof's signature, and a bad one is never remembered", async () => {
    const thumbprint = await jose.calculateJwkThumbprint(await jose.exportJWK(ecKey.publicKey), 'sha256');
    const { bearer } = bearerBoundTo(thumbprint);
    const { store, remembered } = sessions();
    const forged = unsignedProof({ alg: 'ES256', jwk: await jose.exportJWK(ecKey.publicKey) });
    await expect(verifyDpopRequest({ bearer, replays: store, config, clock: () => Date.now() }, request(forged))).rejects.toMatchObject({ code: 'invalid_dpop_proof', expose: 'the DPoP proof signature is invalid' });
    expect(remembered).toEqual([]);
    expect(await verifyDpopRequest({ bearer, replays: store, config, clock: () => Date.now() }, request(await proof()))).toEqual({ identity, nonce: undefined });
    expect(remembered).toHaveLength(1);
  });

  test('a proof good now is too old once the clock has moved past its window: the window crossed without waiting', async () => {
    const { bearer } = bearerBoundTo(await jose.calculateJwkThumbprint(await jose.exportJWK(ecKey.publicKey), 'sha256'));
    const { store } = sessions();
    let now = Date.now();
    const clock = () => now;
    const p = await proof();
    expect(await verifyDpopRequest({ bearer, replays: store, config, clock }, request(p))).toEqual({ identity, nonce: undefined });
    now += (config.dpopMaxAgeSeconds + config.clockSkewSeconds + 1) * 1000;
    await expect(verifyDpopRequest({ bearer, replays: store, config, clock }, request(p))).rejects.toMatchObject({ code: 'invalid_dpop_proof', expose: 'the DPoP proof is too old' });
  });
});

describe('the DPoP challenge', () => {
  test('names the error and the proof algorithms accepted', () => {
    expect(dpopChallenge(settings, 'invalid_dpop_proof', 'the DPoP proof is too old')).toBe('DPoP realm="idgate", error="invalid_dpop_proof", error_description="the DPoP proof is too old", algs="ES256 RS256 PS256 EdDSA"');
    expect(dpopChallenge(settings)).toBe('DPoP realm="idgate", algs="ES256 RS256 PS256 EdDSA"');
    expect(dpopChallenge(settings, 'use_dpop_nonce', 'the DPoP proof lacks the nonce idgate gives (DPoP-Nonce)')).toBe('DPoP realm="idgate", error="use_dpop_nonce", error_description="the DPoP proof lacks the nonce idgate gives (DPoP-Nonce)", algs="ES256 RS256 PS256 EdDSA"');
  });
});
