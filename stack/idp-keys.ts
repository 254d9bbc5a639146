// The local IdP's signing keys: RS256 private JWKs, newest first, kept in a file across restarts when asked
// (a restarted IdP then signs as before), and a fresh one for each rotation.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';

/** The signing keys kept in `file`, or one fresh key (then written to `file`, when one is named). */
export async function loadOrCreateSigningKeys(file: string | undefined): Promise<JWK[]> {
  if (file && existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as JWK[];
  const keys = [await generateSigningKey()];
  if (file) writeFileSync(file, JSON.stringify(keys), { mode: 0o600 });
  return keys;
}

/** A fresh RSA private JWK for RS256, with kid (its RFC 7638 thumbprint), alg and use set. */
export async function generateSigningKey(): Promise<JWK> {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk = await exportJWK(privateKey);
  return { ...jwk, kid: await calculateJwkThumbprint(jwk), alg: 'RS256', use: 'sig' };
}
