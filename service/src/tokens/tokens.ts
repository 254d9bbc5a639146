// Bearer access tokens from machines and bots. The token's `iss` picks one of the configured trusted
// issuers before anything is fetched (an unknown issuer costs no network call); that issuer's token is
// then verified locally against its JWKS (Okta custom authorization servers) or introspected (opaque
// tokens, Okta's org authorization server). Only asymmetric algorithms from the issuer's allow-list,
// only the header's `kid` picks a key (jku, x5u, jwk and x5c headers are never looked at), `iss` exact,
// `aud` among the issuer's audiences, exp/nbf/iat with the configured clock skew. Only access tokens pass:
// ID tokens, logout tokens and other JWTs an issuer signs are refused by their `typ` and claims
// (accessTokenProblem), and an issuer's `client_ids` list limits which clients' tokens count. A DPoP-bound
// token (`cnf.jkt`, RFC 9449) counts only with a proof signed by that key (dpop.ts checks the proof; the
// binding is checked here, `proofKey`), and never as a plain bearer token.
import crypto from 'node:crypto';
import * as jose from 'jose';
import type { Logger } from '../audit.js';
import type { Config } from '../config.js';
import type { BearerIssuer } from '../config/bearer-issuers.js';
import { IdgateError, describeError } from '../errors.js';
import { cannotCheckToken, Introspector } from './introspection.js';
import { RemoteKeySet } from './keys.js';
import { discardBody, readBoundedText } from './bounded-body.js';
import { MAX_DISCOVERY_BYTES, DISCOVERY_RETRY_MS, DISCOVERY_TIMEOUT_MS, INTROSPECTION_NEGATIVE_MAX_MS, MAX_TOKEN_LENGTH, VERIFIED_CACHE_MS, VERIFIED_CACHE_SIZE } from '../limits.js';
import type { Metrics } from '../metrics.js';
import { systemClock, type Clock } from '../clock.js';
import type { Identity } from '../identity.js';
import { identityFromClaims, stringList } from '../policy/claims.js';

interface IssuerMetadata {
  readonly jwks_uri?: string;
  readonly introspection_endpoint?: string;
}

/** One trusted issuer: its metadata (discovered, retried until it answers), keys and introspection. */
class TrustedIssuer {
  keys: RemoteKeySet | undefined;
  introspector: Introspector | undefined;
  /** Set while the issuer answers 401/403 to idgate's introspection credentials: what /readyz shows. */
  credentialsProblem: string | undefined;
  #retry: NodeJS.Timeout | undefined;
  #probe: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(
    readonly settings: BearerIssuer,
    private readonly config: Config,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
    /** Called when the issuer's published keys change (a retired key must stop verifying at once). */
    private readonly onKeysChanged: () => void,
    /** How old the keys are. */
    private readonly clock: Clock,
  ) {}

  get ready(): boolean {
    return (!this.settings.jwt || this.keys?.loaded === true) && (!this.settings.introspection || (this.introspector !== undefined && this.credentialsProblem === undefined));
  }

  async start(): Promise<void> {
    try {
      const metadata = await this.#discover();
      const jwksUri = this.settings.jwksUri ?? metadata.jwks_uri;
      if (this.settings.jwt) {
        if (!jwksUri) throw new Error('the issuer publishes no jwks_uri');
        this.keys = new RemoteKeySet(new URL(jwksUri), {
          maxAgeMs: this.config.jwksCacheSeconds * 1000,
          cooldownMs: this.config.jwksCooldownSeconds * 1000,
          now: this.clock,
          onFetch: (result) => {
            this.metrics.recordEvent(result.ok ? 'jwks_refresh_ok' : 'jwks_refresh_failed');
            if (result.ok && result.changed) this.onKeysChanged();
            if (result.ok) this.logger.log('info', 'signing keys fetched', { issuer: this.settings.issuer, keys: result.keys });
            else this.logger.log('error', 'signing keys could not be fetched; the keys already held keep working', { issuer: this.settings.issuer, error: result.error });
          },
        });
        // Fetch once now so the first token does not wait; a failure is retried on demand.
        await this.keys.load();
      }
      if (this.settings.introspection) {
        if (!metadata.introspection_endpoint) throw new Error('the issuer publishes no introspection_endpoint');
        this.introspector = new Introspector({
          endpoint: new URL(metadata.introspection_endpoint),
          clientId: this.settings.clientId,
          clientSecret: this.settings.clientSecret,
          maxAgeMs: this.config.introspectionCacheSeconds * 1000,
          negativeAgeMs: Math.min(INTROSPECTION_NEGATIVE_MAX_MS, this.config.introspectionCacheSeconds * 1000),
          maxEntries: this.config.introspectionCacheSize,
          maxNegativeEntries: this.config.introspectionCacheSize,
          now: this.clock,
          maxInflightPerSource: this.config.introspectionMaxInflightPerSource,
          maxCallsPerSource: this.config.introspectionCallsPerSource,
          onCall: () => this.metrics.recordEvent('introspection_call'),
          onRefused: (why) => this.metrics.recordIntrospectionRefused(why),
          onCredentialsRefused: (status) => this.#credentialsRefused(status),
          onCredentialsAccepted: () => this.#credentialsAccepted(),
        });
      }
    } catch (err) {
      this.metrics.recordEvent('idp_error');
      this.logger.log('error', `bearer-token issuer discovery failed; retrying in ${DISCOVERY_RETRY_MS / 1000} s`, { issuer: this.settings.issuer, error: describeError(err) });
      if (!this.#stopped) {
        this.#retry = setTimeout(() => void this.start(), DISCOVERY_RETRY_MS);
        this.#retry.unref();
      }
    }
  }

  stop(): void {
    this.#stopped = true;
    if (this.#retry) clearTimeout(this.#retry);
    if (this.#probe) clearTimeout(this.#probe);
  }

  /**
   * A configuration error, not an outage: counted every time, logged once with the fix, shown on /readyz
   * (this replica is not ready) until the issuer takes the credentials again. A probe asks every
   * DISCOVERY_RETRY_MS meanwhile, since a replica out of HAProxy's rotation gets no tokens to try.
   */
  #credentialsRefused(status: number): void {
    this.metrics.recordEvent('introspection_credentials_refused');
    if (this.credentialsProblem !== undefined) return;
    this.credentialsProblem = `${this.settings.issuer} answers HTTP ${status} to idgate's introspection credentials`;
    this.logger.log('error', "introspection refused: the issuer does not take idgate's client credentials (a configuration error, not an outage); set the entry's client_id/client_secret (default IDGATE_CLIENT_ID/IDGATE_CLIENT_SECRET) to a client the issuer allows to introspect (at Okta: the app's client ID and a current secret)", {
      issuer: this.settings.issuer,
      client_id: this.settings.clientId,
      status,
      error_code: 'introspection_config_error',
    });
    this.#scheduleProbe();
  }

  #credentialsAccepted(): void {
    if (this.credentialsProblem === undefined) return;
    this.credentialsProblem = undefined;
    if (this.#probe) clearTimeout(this.#probe);
    this.logger.log('info', "introspection credentials accepted again", { issuer: this.settings.issuer });
  }

  #scheduleProbe(): void {
    if (this.#stopped) return;
    this.#probe = setTimeout(() => {
      void this.introspector?.probeCredentials().then(() => {
        if (this.credentialsProblem !== undefined) this.#scheduleProbe();
      });
    }, DISCOVERY_RETRY_MS);
    this.#probe.unref();
  }

  async #discover(): Promise<IssuerMetadata> {
    if (this.settings.jwksUri && !this.settings.introspection) return {};
    const url = `${this.settings.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
    const res = await fetch(url, { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(DISCOVERY_TIMEOUT_MS), redirect: 'error' });
    if (res.status !== 200) {
      await discardBody(res);
      throw new Error(`${url}: HTTP ${res.status}`);
    }
    const metadata = JSON.parse(await readBoundedText(res, MAX_DISCOVERY_BYTES)) as IssuerMetadata & { issuer?: unknown };
    // The metadata must speak for exactly this issuer (RFC 8414 section 3.3).
    if (metadata.issuer !== this.settings.issuer) throw new Error(`${url} names issuer ${JSON.stringify(metadata.issuer)}, not ${this.settings.issuer}`);
    return metadata;
  }
}

export interface VerifyOptions {
  /** The checked request's client address: introspection calls are bounded per source. */
  readonly source?: string;
  /**
   * The RFC 7638 thumbprint of the key in the request's DPoP proof, when the token came as `Authorization:
   * DPoP`; the proof's signature is verified after this check (dpop.ts says why). The token must then be
   * bound to exactly that key; without it, the token must not be bound to any.
   */
  readonly proofKey?: string;
}

/** A verified token: who it names, and the key thumbprint it is DPoP-bound to (`cnf.jkt`), if any. */
interface VerifiedToken {
  readonly identity: Identity;
  readonly boundTo: string | undefined;
}

export class BearerVerifier {
  readonly #byIssuer = new Map<string, TrustedIssuer>();
  readonly #verified = new Map<string, VerifiedToken & { issuer: TrustedIssuer; until: number }>();
  /** Where tokens that are not JWTs go: the first issuer with introspection on. */
  readonly #opaqueIssuer: TrustedIssuer | undefined;

  constructor(
    private readonly config: Config,
    logger: Logger,
    metrics: Metrics,
    /** Where time decides: tokens' exp and iat, the verified-token cache, the keys' age. Default: the system clock. */
    private readonly clock: Clock = systemClock,
  ) {
    for (const settings of config.bearerIssuers) this.#byIssuer.set(settings.issuer, new TrustedIssuer(settings, config, logger, metrics, () => this.#verified.clear(), clock));
    this.#opaqueIssuer = [...this.#byIssuer.values()].find((i) => i.settings.introspection);
  }

  /** Discovers every trusted issuer (in the background; failures retry). Resolves after the first attempt. */
  async start(): Promise<void> {
    await Promise.all([...this.#byIssuer.values()].map((i) => i.start()));
  }

  stop(): void {
    for (const issuer of this.#byIssuer.values()) issuer.stop();
  }

  /** Every trusted issuer's metadata and keys are loaded, and no issuer refuses idgate's introspection credentials. */
  get ready(): boolean {
    return [...this.#byIssuer.values()].every((i) => i.ready);
  }

  /** Configuration errors the issuers report (introspection credentials refused), for /readyz. */
  get configurationProblems(): string[] {
    return [...this.#byIssuer.values()].flatMap((i) => (i.credentialsProblem === undefined ? [] : [i.credentialsProblem]));
  }

  /**
   * The identity of a bearer token. Throws IdgateError 'invalid_token' (answer 401) with a description
   * safe for clients, or 'idp_unavailable' (answer 503) when the issuer's keys or introspection cannot
   * be reached, or when `options.source` has caused too many introspection calls.
   */
  async verify(token: string, options: VerifyOptions = {}): Promise<Identity> {
    const verified = await this.#verify(token, options);
    checkBinding(verified.boundTo, options.proofKey);
    return verified.identity;
  }

  async #verify(token: string, options: VerifyOptions): Promise<VerifiedToken> {
    if (token.length > MAX_TOKEN_LENGTH) throw new IdgateError('invalid_token', 'the token is malformed', 'too long');
    const parts = token.split('.');
    // A JWT verified before, while its entry lasts, costs a hash and a look-up: every check below passed
    // when it was stored, and depends on nothing but the token and the settings (a key change clears it).
    const cacheKey = parts.length === 3 ? crypto.hash('sha256', token, 'base64url') : '';
    const now = this.clock();
    const hit = cacheKey ? this.#verified.get(cacheKey) : undefined;
    if (hit && hit.until > now) {
      // The keys still age: a refresh that drops this token's key clears the cache.
      hit.issuer.keys?.refreshIfStale();
      return hit;
    }
    if (parts.length !== 3) {
      if (parts.length === 5) throw new IdgateError('invalid_token', 'the token is malformed', 'encrypted tokens are not supported');
      if (!this.#opaqueIssuer) throw new IdgateError('invalid_token', 'the token is malformed', 'not a JWT, and no issuer has introspection on');
      return this.#introspect(this.#opaqueIssuer, token, options.source);
    }
    let header: jose.ProtectedHeaderParameters;
    let unverified: jose.JWTPayload;
    try {
      header = jose.decodeProtectedHeader(token);
      unverified = jose.decodeJwt(token);
    } catch {
      throw new IdgateError('invalid_token', 'the token is malformed');
    }
    if (header.typ !== undefined && !(typeof header.typ === 'string' && ACCESS_TOKEN_TYPES.has(header.typ.toLowerCase()))) {
      throw new IdgateError('invalid_token', 'the token is not an access token', `typ ${JSON.stringify(header.typ)}`);
    }
    const issuer = typeof unverified.iss === 'string' ? this.#byIssuer.get(unverified.iss) : undefined;
    if (!issuer) throw new IdgateError('invalid_token', 'the token is from an untrusted issuer');
    if (!issuer.settings.jwt) return this.#introspect(issuer, token, options.source);

    const verified = await this.#verifyJwt(issuer, token, header);
    const exp = typeof unverified.exp === 'number' ? unverified.exp * 1000 : now;
    if (this.#verified.size >= VERIFIED_CACHE_SIZE) this.#verified.delete(this.#verified.keys().next().value!);
    this.#verified.set(cacheKey, { ...verified, issuer, until: Math.min(exp, now + VERIFIED_CACHE_MS) });
    return verified;
  }

  async #verifyJwt(issuer: TrustedIssuer, token: string, header: jose.ProtectedHeaderParameters): Promise<VerifiedToken> {
    const { settings } = issuer;
    if (typeof header.alg !== 'string' || !settings.algorithms.includes(header.alg)) {
      throw new IdgateError('invalid_token', 'the token signature algorithm is not accepted', String(header.alg));
    }
    if (typeof header.kid !== 'string' || header.kid === '') throw new IdgateError('invalid_token', 'the token names no signing key');
    if (!issuer.keys) throw new IdgateError('idp_unavailable', 'the identity provider keys are not reachable', `${settings.issuer}: discovery has not succeeded`);
    const key = await issuer.keys.getKey(header.kid, header.alg);
    if (!key) throw new IdgateError('invalid_token', 'the token is signed with an unknown key');
    let payload: jose.JWTPayload;
    try {
      ({ payload } = await jose.jwtVerify(token, key, {
        issuer: settings.issuer,
        audience: [...settings.audiences],
        algorithms: [header.alg],
        clockTolerance: this.config.clockSkewSeconds,
        currentDate: new Date(this.clock()),
        requiredClaims: ['exp'],
      }));
    } catch (err) {
      throw toTokenError(err);
    }
    if (typeof payload.iat === 'number' && payload.iat > this.clock() / 1000 + this.config.clockSkewSeconds) {
      throw new IdgateError('invalid_token', 'the token is not valid yet', 'iat in the future');
    }
    return this.#verifiedToken(payload, settings);
  }

  async #introspect(issuer: TrustedIssuer, token: string, source: string | undefined): Promise<VerifiedToken> {
    if (!issuer.introspector) throw cannotCheckToken(`${issuer.settings.issuer}: discovery has not succeeded`);
    const { active, claims } = await issuer.introspector.introspect(token, { source });
    if (!active) throw new IdgateError('invalid_token', 'the token is not active (expired, revoked or unknown)');
    const now = this.clock() / 1000;
    if (typeof claims.exp === 'number' && claims.exp + this.config.clockSkewSeconds < now) throw new IdgateError('invalid_token', 'the token expired');
    if (claims.iss !== undefined && claims.iss !== issuer.settings.issuer) throw new IdgateError('invalid_token', 'the token is from an untrusted issuer');
    // RFC 7662 token_type is optional; when the issuer says what the token is, it must be an access token:
    // a bearer one, or a DPoP one that names the key it is bound to (RFC 9449 section 6.2: cnf.jkt).
    const tokenType = typeof claims.token_type === 'string' ? claims.token_type.toLowerCase() : claims.token_type;
    const dpopTyped = tokenType === 'dpop' && dpopKeyOf(claims) !== undefined;
    if (tokenType !== undefined && !dpopTyped && !(typeof tokenType === 'string' && INTROSPECTED_ACCESS_TOKEN_TYPES.has(tokenType))) {
      throw new IdgateError('invalid_token', 'the token is not an access token', `token_type ${JSON.stringify(claims.token_type)}`);
    }
    // Configured audiences are required, not merely compared when present: a token for no one is for no one here.
    const audiences = stringList(claims.aud);
    if (issuer.settings.audiences.length > 0 && !audiences.some((a) => issuer.settings.audiences.includes(a))) {
      throw new IdgateError('invalid_token', 'the token is for another audience', audiences.length === 0 ? 'no aud' : undefined);
    }
    return this.#verifiedToken(claims, issuer.settings);
  }

  /** Okta's claims, and their RFC 9068 / RFC 7662 names, mapped to an identity, if they are an access token's. */
  #verifiedToken(claims: Readonly<Record<string, unknown>>, settings: BearerIssuer): VerifiedToken {
    const problem = accessTokenProblem(claims);
    if (problem) throw new IdgateError('invalid_token', 'the token is not an access token', problem);
    const reading = { groupsClaim: this.config.groupsClaim, rolesClaim: this.config.rolesClaim, primaryIssuer: this.config.issuerId, trustUnverifiedEmail: settings.trustUnverifiedEmail };
    const identity = identityFromClaims(claims, 'token', reading, settings.issuer);
    if (!identity) throw new IdgateError('invalid_token', 'the token names no subject');
    if (settings.clientIds && !(identity.clientId !== undefined && settings.clientIds.includes(identity.clientId))) {
      throw new IdgateError('invalid_token', 'the token was issued to a client that is not allowed', identity.clientId ?? 'no client id');
    }
    return { identity, boundTo: dpopKeyOf(claims) };
  }
}

/**
 * JWT `typ` values of access tokens (no typ at all is one too): RFC 9068's at+jwt (oidc-provider,
 * Auth0...) and the generic JWT that Okta and Azure AD send, each in short or full media type form,
 * compared case-insensitively (RFC 7515 4.1.9). Anything else is another kind of token: logout+jwt,
 * secevent+jwt, dpop+jwt, id_token+jwt... ID tokens typed JWT or untyped are caught by their claims.
 */
const ACCESS_TOKEN_TYPES = new Set(['at+jwt', 'application/at+jwt', 'jwt', 'application/jwt']);

/** RFC 7662 `token_type` values of plain bearer access tokens (`DPoP` is one too when the answer names its key). */
const INTROSPECTED_ACCESS_TOKEN_TYPES = new Set(['bearer', 'access_token', 'urn:ietf:params:oauth:token-type:access_token']);

/**
 * Why verified claims are not an access token's, or undefined. ID tokens typed "JWT" (Okta) or with no
 * typ look like access tokens but carry what only ID tokens carry: the login's `nonce` and the hashes
 * binding them to a code or access token. Logout tokens and other security events carry `events`.
 * Sender-constrained tokens (`cnf`) are only good with a proof of possession: idgate checks DPoP's
 * (`cnf.jkt` alone), no other kind (a certificate thumbprint, `x5t#S256`, needs the client's TLS certificate).
 */
export function accessTokenProblem(claims: Readonly<Record<string, unknown>>): string | undefined {
  for (const claim of ['nonce', 'at_hash', 'c_hash', 's_hash']) if (claims[claim] !== undefined) return `${claim} claim: an ID token`;
  if (claims.events !== undefined) return 'events claim: a logout token or security event';
  if (claims.cnf !== undefined && dpopKeyOf(claims) === undefined) return 'cnf claim: a sender-constrained token of a kind idgate does not check';
  return undefined;
}

/** The key thumbprint a DPoP-bound token names: `cnf` holding only a non-empty `jkt`, else undefined. */
function dpopKeyOf(claims: Readonly<Record<string, unknown>>): string | undefined {
  const cnf = claims.cnf;
  if (typeof cnf !== 'object' || cnf === null || Array.isArray(cnf)) return undefined;
  const members = Object.keys(cnf);
  const jkt = (cnf as Record<string, unknown>).jkt;
  return members.length === 1 && typeof jkt === 'string' && jkt !== '' ? jkt : undefined;
}

/**
 * A DPoP-bound token counts only with a proof by its key (RFC 9449 section 7.1), and never as a bearer
 * token (section 7.2: that would make the binding worthless); a token bound to nothing is not sent as DPoP.
 */
function checkBinding(boundTo: string | undefined, proofKey: string | undefined): void {
  if (boundTo === undefined) {
    if (proofKey !== undefined) throw new IdgateError('invalid_token', 'the token is not DPoP-bound: send it as a Bearer token');
    return;
  }
  if (proofKey === undefined) throw new IdgateError('invalid_token', DPOP_BOUND_AS_BEARER);
  if (proofKey !== boundTo) throw new IdgateError('invalid_token', 'the token is bound to another key than the one that signed the DPoP proof');
}

/** What a DPoP-bound token sent as a bearer token is told (its challenge is DPoP's: check.ts). */
export const DPOP_BOUND_AS_BEARER = 'the token is DPoP-bound: send it as Authorization: DPoP with a DPoP proof';

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
    default:
      return new IdgateError('invalid_token', 'the token is malformed', code);
  }
}
