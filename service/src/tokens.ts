// Bearer access tokens from machines and bots, verified locally with jose against the issuer's JWKS.
// Only asymmetric algorithms from the configured allow-list; only the header's `kid` picks a key from the
// issuer's own JWKS (jose ignores jku/x5u/embedded jwk); iss exact, aud among the configured audiences.
import * as jose from 'jose';
import type { Config } from './config.js';
import { IdgateError } from './errors.js';
import type { Identity } from './policy.js';
import { stringList } from './oidc.js';

export class BearerVerifier {
  #jwks: ReturnType<typeof jose.createRemoteJWKSet> | undefined;
  #jwksUri: string | undefined;

  constructor(
    private readonly config: Config,
    /** The issuer's metadata once discovery has succeeded. */
    private readonly metadata: () => { readonly issuer: string; readonly jwks_uri?: string } | undefined,
  ) {}

  /**
   * The identity of a bearer token. Throws IdgateError 'invalid_token' (answer 401) with a description
   * safe for clients, or 'idp_unavailable' (answer 503) when keys cannot be had.
   */
  async verify(token: string): Promise<Identity> {
    const { issuer, jwks } = this.#keys();
    let payload: jose.JWTPayload;
    try {
      ({ payload } = await jose.jwtVerify(token, jwks, {
        issuer,
        audience: [...this.config.jwtAudiences],
        algorithms: [...this.config.jwtAlgorithms],
        clockTolerance: this.config.clockSkewSeconds,
        requiredClaims: ['exp', 'sub'],
      }));
    } catch (err) {
      throw toTokenError(err);
    }
    const scopes = Array.isArray(payload.scp) ? stringList(payload.scp) : typeof payload.scope === 'string' ? payload.scope.split(' ').filter(Boolean) : [];
    const clientId = (typeof payload.cid === 'string' && payload.cid) || (typeof payload.client_id === 'string' && payload.client_id) || undefined;
    const subject = (typeof payload.uid === 'string' && payload.uid) || payload.sub!;
    return {
      via: 'token',
      subject,
      user: payload.sub!,
      email: typeof payload.email === 'string' ? payload.email : undefined,
      groups: stringList(payload[this.config.groupsClaim]),
      scopes,
      clientId,
      issuer: payload.iss!,
    };
  }

  #keys(): { issuer: string; jwks: ReturnType<typeof jose.createRemoteJWKSet> } {
    const metadata = this.metadata();
    const uri = metadata?.jwks_uri;
    if (!metadata || !uri) throw new IdgateError('idp_unavailable', 'the identity provider is not reachable yet', 'no jwks_uri: discovery has not succeeded');
    if (!this.#jwks || this.#jwksUri !== uri) {
      this.#jwks = jose.createRemoteJWKSet(new URL(uri), { timeoutDuration: 3000, cooldownDuration: 30_000 });
      this.#jwksUri = uri;
    }
    return { issuer: metadata.issuer, jwks: this.#jwks };
  }
}

/** jose's error codes mapped to what a client may read (RFC 6750 error_description). */
function toTokenError(err: unknown): IdgateError {
  const code = (err as { code?: string }).code;
  const claim = (err as { claim?: string }).claim;
  switch (code) {
    case 'ERR_JWT_EXPIRED':
      return new IdgateError('invalid_token', 'the token expired');
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      if (claim === 'aud') return new IdgateError('invalid_token', 'the token is for another audience');
      if (claim === 'iss') return new IdgateError('invalid_token', 'the token is from an untrusted issuer');
      if (claim === 'nbf' || claim === 'iat') return new IdgateError('invalid_token', 'the token is not valid yet');
      return new IdgateError('invalid_token', 'the token lacks a required claim', claim);
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return new IdgateError('invalid_token', 'the token signature is invalid');
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return new IdgateError('invalid_token', 'the token signature algorithm is not accepted');
    case 'ERR_JWKS_NO_MATCHING_KEY':
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
      return new IdgateError('invalid_token', 'the token is signed with an unknown key');
    case 'ERR_JWKS_TIMEOUT':
      return new IdgateError('idp_unavailable', 'the identity provider keys are not reachable', 'JWKS timeout');
    case 'ERR_JWS_INVALID':
    case 'ERR_JWT_INVALID':
    case 'ERR_JOSE_NOT_SUPPORTED':
      return new IdgateError('invalid_token', 'the token is malformed');
    default:
      if (err instanceof jose.errors.JOSEError) return new IdgateError('invalid_token', 'the token is invalid', code);
      return new IdgateError('idp_unavailable', 'the identity provider keys are not reachable', (err as Error).message);
  }
}
