// Only HAProxy asks: the secret HAProxy's lines send with every check (IDGATE_CHECK_SECRET in HAProxy's
// environment), which idgate requires (IDGATE_CHECK_SECRETS, newest first). An address alone does not
// tell HAProxy from any other process on the same host: IDGATE_TRUSTED_PROXIES is loopback by default,
// so without the secret any local process (or an SSRF in a co-located app) could get decisions and renew
// a stolen session. docs/security.md says why a secret and not a unix socket.
import crypto from 'node:crypto';

/** The HTTP check's request header carrying it (set by the fe_idgate_check listener, dropin/backends-lua.cfg). */
export const CHECK_SECRET_HEADER = 'x-idgate-check-secret';
/** The argument of the SPOE messages `idgate-check` and `idgate-check-retry` carrying it (spoe-idgate.conf). */
export const CHECK_SECRET_ARGUMENT = 'secret';

/**
 * Whether a presented value is one of `secrets`. No secrets: every value passes (IDGATE_INSECURE_HTTP=1
 * only; config.ts refuses that otherwise). Constant time in the secret's bytes: every secret of the
 * presented length is compared whole, whichever matches. Only a length can be learnt from timing, and a
 * secret's length is no secret (`openssl rand -hex 32` gives 64). No hash per check: under load a sha256
 * here was the largest single cost of an HTTP check (bench/RESULTS.md).
 */
export function createCheckSecretMatcher(secrets: readonly string[]): (presented: unknown) => boolean {
  if (secrets.length === 0) return () => true;
  // config.ts holds secrets to printable ASCII: one byte per character.
  const known = secrets.map((s) => Buffer.from(s, 'utf8'));
  const scratch = Buffer.alloc(Math.max(...known.map((k) => k.length)));
  return (presented) => {
    if (typeof presented !== 'string' || presented === '' || presented.length > scratch.length) return false;
    const length = scratch.write(presented, 0, 'utf8');
    // Fewer bytes than characters: a character did not fit; more: not ASCII. Neither is a secret.
    if (length !== presented.length) return false;
    const given = scratch.subarray(0, length);
    let match = false;
    for (const k of known) match = (k.length === length && crypto.timingSafeEqual(k, given)) || match;
    return match;
  };
}
