// DPoP (RFC 9449) as a machine client does it, for tests: a key pair, a DPoP-bound token from the demo
// IdP (dpop-bot, the token request carrying a proof, again with the IdP's nonce when it asks one), and a
// proof for each request sent with it.
import crypto from 'node:crypto';
import * as jose from 'jose';
import { basicAuth, dpopClient } from './identities.js';

export interface DpopKey {
  readonly privateKey: jose.CryptoKey;
  readonly publicJwk: jose.JWK;
  /** RFC 7638 thumbprint: what the token's cnf.jkt names. */
  readonly thumbprint: string;
}

/** A fresh ES256 key pair for proofs. */
export async function dpopKey(): Promise<DpopKey> {
  const { publicKey, privateKey } = await jose.generateKeyPair('ES256', { extractable: true });
  const publicJwk = await jose.exportJWK(publicKey);
  return { privateKey, publicJwk, thumbprint: await jose.calculateJwkThumbprint(publicJwk, 'sha256') };
}

export interface ProofOptions {
  /** The access token the proof goes with (its hash becomes `ath`); absent: no ath (a token request). */
  readonly token?: string;
  /** Claims set or replaced (undefined removes one). */
  readonly claims?: Record<string, unknown>;
  /** Header members set or replaced. */
  readonly header?: Record<string, unknown>;
}

/** A proof for `method` on `url` (query and fragment are dropped from htu, as clients do), signed by `key`. */
export function dpopProof(key: DpopKey, method: string, url: string, options: ProofOptions = {}): Promise<string> {
  const htu = new URL(url);
  htu.search = '';
  htu.hash = '';
  const claims: Record<string, unknown> = { jti: crypto.randomUUID(), htm: method, htu: htu.href, iat: Math.floor(Date.now() / 1000) };
  if (options.token !== undefined) claims.ath = crypto.createHash('sha256').update(options.token).digest('base64url');
  Object.assign(claims, options.claims);
  for (const [k, v] of Object.entries(claims)) if (v === undefined) delete claims[k];
  return new jose.SignJWT(claims).setProtectedHeader({ typ: 'dpop+jwt', alg: 'ES256', jwk: key.publicJwk, ...options.header } as jose.JWTHeaderParameters).sign(key.privateKey);
}

/**
 * A DPoP-bound access token of the client_credentials grant (dpop-bot, scope api:read), bound to `key`. When
 * the token endpoint asks its nonce first (Okta, and the okta profile: 400 use_dpop_nonce with a DPoP-Nonce
 * header), the request goes again once with a proof that carries it. `nonceAsked`: told each nonce asked for.
 */
export async function dpopBoundToken(issuer: string, key: DpopKey, client: { id: string; secret: string; scope: string } = dpopClient, nonceAsked?: (nonce: string) => void): Promise<string> {
  const url = `${issuer}/token`;
  const ask = async (nonce?: string) =>
    fetch(url, {
      method: 'POST',
      headers: { authorization: basicAuth(client), 'content-type': 'application/x-www-form-urlencoded', dpop: await dpopProof(key, 'POST', url, { claims: { nonce } }) },
      body: new URLSearchParams({ grant_type: 'client_credentials', scope: client.scope }).toString(),
    });
  type TokenAnswer = { access_token?: string; token_type?: string; error?: string; error_description?: string };
  let res = await ask();
  let body = (await res.json()) as TokenAnswer;
  const nonce = res.headers.get('dpop-nonce');
  if (res.status === 400 && body.error === 'use_dpop_nonce' && nonce) {
    nonceAsked?.(nonce);
    res = await ask(nonce);
    body = (await res.json()) as TokenAnswer;
  }
  if (res.status !== 200 || !body.access_token || body.token_type !== 'DPoP') {
    throw new Error(`${client.id}: no DPoP token from ${issuer} (HTTP ${res.status}, token_type ${body.token_type}, ${body.error ?? 'no error'}: ${body.error_description ?? ''})`);
  }
  return body.access_token;
}
