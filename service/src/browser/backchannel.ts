// OpenID Connect Back-Channel Logout 1.0: the IdP posts a logout token, idgate ends every session of
// that IdP session (`sid`) or subject (`sub`). The token is checked as the spec's section 2.6 says:
// signature with the issuer's keys, iss, aud, iat (fresh), jti (never seen before), the back-channel
// event, sid or sub, and no nonce (so an ID token cannot be passed off as a logout token).
import * as jose from 'jose';
import { IdgateError } from '../errors.js';
import type { RemoteKeySet } from '../tokens/keys.js';
import type { SessionStore } from '../session/session-store.js';
import { LOGOUT_TOKEN_MAX_AGE_SECONDS as MAX_AGE_SECONDS } from '../limits.js';

export const BACKCHANNEL_EVENT = 'http://schemas.openid.net/event/backchannel-logout';

export interface LogoutSubject {
  readonly sid: string | undefined;
  readonly sub: string | undefined;
}

export async function verifyLogoutToken(
  token: string,
  expected: { issuer: string; clientId: string; keys: RemoteKeySet; algorithms: readonly string[]; clockSkewSeconds: number },
  sessions: Pick<SessionStore, 'firstUseOfLogoutToken'>,
): Promise<LogoutSubject> {
  let header: jose.ProtectedHeaderParameters;
  try {
    header = jose.decodeProtectedHeader(token);
  } catch {
    throw new IdgateError('invalid_request', 'the logout token is malformed');
  }
  if (typeof header.alg !== 'string' || !expected.algorithms.includes(header.alg)) throw new IdgateError('invalid_request', 'the logout token algorithm is not accepted');
  if (typeof header.kid !== 'string') throw new IdgateError('invalid_request', 'the logout token names no key');
  if (header.typ !== undefined && header.typ.toLowerCase() !== 'logout+jwt' && header.typ.toLowerCase() !== 'application/logout+jwt') {
    throw new IdgateError('invalid_request', 'the logout token has the wrong type');
  }
  const key = await expected.keys.getKey(header.kid, header.alg);
  if (!key) throw new IdgateError('invalid_request', 'the logout token is signed with an unknown key');
  let payload: jose.JWTPayload;
  try {
    ({ payload } = await jose.jwtVerify(token, key, {
      issuer: expected.issuer,
      audience: expected.clientId,
      algorithms: [header.alg],
      clockTolerance: expected.clockSkewSeconds,
      maxTokenAge: MAX_AGE_SECONDS,
      requiredClaims: ['iat', 'jti'],
    }));
  } catch (err) {
    throw new IdgateError('invalid_request', 'the logout token is not valid', (err as { code?: string }).code);
  }
  const events = payload.events as Record<string, unknown> | undefined;
  if (typeof events !== 'object' || events === null || typeof events[BACKCHANNEL_EVENT] !== 'object' || events[BACKCHANNEL_EVENT] === null) {
    throw new IdgateError('invalid_request', 'the logout token lacks the back-channel logout event');
  }
  if ('nonce' in payload) throw new IdgateError('invalid_request', 'a logout token must not carry a nonce');
  const sid = typeof payload.sid === 'string' && payload.sid !== '' ? payload.sid : undefined;
  const sub = typeof payload.sub === 'string' && payload.sub !== '' ? payload.sub : undefined;
  if (!sid && !sub) throw new IdgateError('invalid_request', 'the logout token names neither sid nor sub');
  // Each jti once: remembered as long as the token could pass the age check.
  const first = await sessions.firstUseOfLogoutToken(expected.issuer, String(payload.jti), MAX_AGE_SECONDS + expected.clockSkewSeconds);
  if (!first) throw new IdgateError('invalid_request', 'the logout token was already used');
  return { sid, sub };
}
