// DPoP server nonces (RFC 9449 sections 8 and 9), when IDGATE_DPOP_NONCE is on: a proof counts only with a
// nonce idgate issued recently, so proofs cannot be made in advance. Stateless, so that every replica accepts
// every other's without Redis: a nonce is the base64url HMAC-SHA256 of a time slot (DPOP_NONCE_SLOT_SECONDS),
// keyed by a key derived (HKDF, a fixed label) from an IDGATE_COOKIE_SECRETS entry. The first entry issues;
// every entry verifies, as for cookies, so rotating the secrets does not void the nonces out there. A nonce
// of this slot or the previous one is accepted (it lives one to two slots), and so is one of the next slot:
// only a replica whose clock runs a little ahead issues that one, and refusing it would only cost the client
// a retry.
import crypto from 'node:crypto';
import type { Config } from '../config.js';
import { DPOP_NONCE_SLOT_SECONDS } from '../limits.js';

/** How recent a nonce idgate accepts is: `previous` wants a fresh one handed back (RFC 9449 section 8.2). */
export type NonceAge = 'current' | 'previous';

export interface DpopNonces {
  /** The nonce to hand out at `now` (ms since epoch). */
  issue(now?: number): string;
  /**
   * How recent `nonce` is at `now` (ms since epoch), or undefined when idgate did not issue it (with any of
   * its secrets) or issued it before the previous slot. Compared in constant time.
   */
  check(nonce: string, now?: number): NonceAge | undefined;
}

/** base64url of 32 bytes. */
const NONCE_LENGTH = 43;

/** The nonces of `secrets` (IDGATE_COOKIE_SECRETS, newest first). */
export function createDpopNonces(secrets: readonly string[]): DpopNonces {
  if (secrets.length === 0) throw new Error('DPoP nonces need a secret (IDGATE_COOKIE_SECRETS)');
  const keys = secrets.map((secret) => Buffer.from(crypto.hkdfSync('sha256', secret, 'idgate-dpop-nonce', 'idgate DPoP nonce v1', 32)));
  // The nonces that count in one slot, computed once per slot (a check is then a few comparisons).
  let slot = Number.NaN;
  let issued = '';
  let accepted: { readonly value: Buffer; readonly age: NonceAge }[] = [];
  const at = (now: number) => {
    const current = Math.floor(now / 1000 / DPOP_NONCE_SLOT_SECONDS);
    if (current !== slot) {
      slot = current;
      issued = nonceOf(keys[0]!, current);
      accepted = keys.flatMap((key) => [
        { value: Buffer.from(nonceOf(key, current)), age: 'current' as const },
        { value: Buffer.from(nonceOf(key, current + 1)), age: 'current' as const },
        { value: Buffer.from(nonceOf(key, current - 1)), age: 'previous' as const },
      ]);
    }
  };
  return {
    issue(now = Date.now()) {
      at(now);
      return issued;
    },
    check(nonce, now = Date.now()) {
      // The length is no secret (every nonce has this one); the bytes are compared in constant time.
      if (typeof nonce !== 'string' || nonce.length !== NONCE_LENGTH) return undefined;
      at(now);
      const sent = Buffer.from(nonce);
      if (sent.length !== NONCE_LENGTH) return undefined;
      let age: NonceAge | undefined;
      // Every candidate is compared: how long a check takes says nothing of which one (if any) matched.
      for (const candidate of accepted) if (crypto.timingSafeEqual(candidate.value, sent)) age ??= candidate.age;
      return age;
    },
  };
}

function nonceOf(key: Buffer, slot: number): string {
  const message = Buffer.alloc(8);
  message.writeBigInt64BE(BigInt(slot));
  return crypto.createHmac('sha256', key).update('dpop-nonce\0').update(message).digest('base64url');
}

/** One DpopNonces per configuration: created when first asked (the secrets are the config's, frozen). */
const noncesOfConfig = new WeakMap<Pick<Config, 'cookieSecrets'>, DpopNonces>();

/** The nonces of a configuration (its IDGATE_COOKIE_SECRETS). */
export function dpopNoncesOf(config: Pick<Config, 'cookieSecrets'>): DpopNonces {
  let nonces = noncesOfConfig.get(config);
  if (nonces === undefined) {
    nonces = createDpopNonces(config.cookieSecrets);
    noncesOfConfig.set(config, nonces);
  }
  return nonces;
}
