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
 * only; config.ts refuses that otherwise). Constant time: both sides are hashed to one length, and every
 * secret is compared, whichever matches.
 */
export function createCheckSecretMatcher(secrets: readonly string[]): (presented: unknown) => boolean {
  if (secrets.length === 0) return () => true;
  const digests = secrets.map(digest);
  return (presented) => {
    if (typeof presented !== 'string' || presented === '') return false;
    const given = digest(presented);
    let match = false;
    for (const d of digests) match = crypto.timingSafeEqual(d, given) || match;
    return match;
  };
}

function digest(value: string): Buffer {
  return crypto.hash('sha256', value, 'buffer');
}
