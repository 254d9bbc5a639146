// The relying-party side of OIDC, with openid-client: discovery (retried in the background until the IdP
// answers), the authorization code flow with PKCE S256 + state + nonce, ID-token signature checks
// (enableNonRepudiationChecks: openid-client skips them for token-endpoint responses otherwise), groups
// and roles from userinfo when the ID token is thin (Okta's org server), refresh asking for the granted
// scopes (Okta sends a new ID token only when `openid` is asked), and token revocation at logout (RFC 7009).
import * as client from 'openid-client';
import type { Config } from '../config.js';
import { IdgateError, describeError } from '../errors.js';
import { DISCOVERY_RETRY_MS } from '../limits.js';
import { readClaim, stringList, verifiedEmail } from '../policy/claims.js';
import { idpSessionHash, SESSION_RECORD_VERSION, type StoredSession } from '../session/session-record.js';

export interface OidcLogger {
  (level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>): void;
}

export interface LoginStart {
  readonly authorizationUrl: URL;
  readonly state: string;
  readonly codeVerifier: string;
  readonly nonce: string;
}

export class OidcRelyingParty {
  #configuration: client.Configuration | undefined;
  #discovering: Promise<void> | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(
    private readonly config: Config,
    private readonly log: OidcLogger,
  ) {}

  /** Starts discovery; resolves after the first attempt (success or not). Failures retry every 5 s. */
  start(): Promise<void> {
    this.#discovering ??= this.#discover();
    return this.#discovering;
  }

  stop(): void {
    this.#stopped = true;
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
  }

  get ready(): boolean {
    return this.#configuration !== undefined;
  }

  /** The issuer's metadata (issuer, jwks_uri), once discovery has succeeded. */
  get metadata(): { readonly issuer: string; readonly jwks_uri?: string; readonly id_token_signing_alg_values_supported?: string[] } | undefined {
    return this.#configuration?.serverMetadata();
  }

  /** The IdP's metadata, or an idp_unavailable error while discovery has not succeeded. */
  requireConfiguration(): client.Configuration {
    if (!this.#configuration) throw new IdgateError('idp_unavailable', 'the identity provider is not reachable yet', 'discovery has not succeeded');
    return this.#configuration;
  }

  async #discover(): Promise<void> {
    try {
      const options: client.DiscoveryRequestOptions = { timeout: 5 };
      if (this.config.insecureHttp) options.execute = [client.allowInsecureRequests];
      const configuration = await client.discovery(
        this.config.issuer,
        this.config.clientId,
        undefined,
        client.ClientSecretBasic(this.config.clientSecret),
        options,
      );
      client.enableNonRepudiationChecks(configuration);
      this.#configuration = configuration;
      this.log('info', 'identity provider metadata loaded', { issuer: configuration.serverMetadata().issuer });
    } catch (err) {
      this.log('error', `identity provider discovery failed; retrying in ${DISCOVERY_RETRY_MS / 1000} s`, { issuer: this.config.issuer.href, error: describeError(err) });
      if (!this.#stopped) {
        this.#retryTimer = setTimeout(() => {
          this.#discovering = this.#discover();
        }, DISCOVERY_RETRY_MS);
        this.#retryTimer.unref();
      }
    }
  }

  async beginLogin(): Promise<LoginStart> {
    const configuration = this.requireConfiguration();
    const codeVerifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const nonce = client.randomNonce();
    const authorizationUrl = client.buildAuthorizationUrl(configuration, {
      redirect_uri: this.config.redirectUrl.href,
      scope: this.config.scopes,
      code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
      state,
      nonce,
    });
    return { authorizationUrl, state, codeVerifier, nonce };
  }

  /**
   * Redeems the code of a callback. `callbackUrl` is the URL the browser arrived on, rebuilt on the
   * registered redirect URL so the IdP sees the same redirect_uri. Returns what the session keeps.
   */
  async completeLogin(callbackUrl: URL, expected: { state: string; codeVerifier: string; nonce: string }, now: number): Promise<StoredSession> {
    const configuration = this.requireConfiguration();
    let tokens: Awaited<ReturnType<typeof client.authorizationCodeGrant>>;
    try {
      tokens = await client.authorizationCodeGrant(configuration, callbackUrl, {
        pkceCodeVerifier: expected.codeVerifier,
        expectedState: expected.state,
        expectedNonce: expected.nonce,
        idTokenExpected: true,
      });
    } catch (err) {
      throw IdgateError.of('login_failed', describeError(err));
    }
    const claims = tokens.claims();
    if (!claims || typeof claims.sub !== 'string' || claims.sub === '') {
      throw IdgateError.of('login_failed', 'ID token without sub');
    }
    // openid-client checks exp but not an iat from the future: such a token was minted with a wrong clock
    // or for later use, and a login must not start from it.
    if (claims.iat > now / 1000 + this.config.clockSkewSeconds) {
      throw IdgateError.of('login_failed', 'ID token issued in the future (iat)');
    }
    const idpSessionId = pickString(claims.sid);
    return {
      v: SESSION_RECORD_VERSION,
      ...(await this.#identityFields(configuration, claims, tokens.access_token, 'login_failed')),
      issuer: claims.iss,
      createdAt: now,
      idToken: tokens.id_token!,
      refreshToken: tokens.refresh_token,
      accessTokenExpiresAt: expiresAt(tokens.expiresIn(), now),
      tokensIssuedAt: now,
      idpSessionHash: idpSessionId === undefined ? undefined : idpSessionHash(idpSessionId),
      // RFC 6749 5.1: a response without `scope` granted what was asked.
      grantedScope: tokens.scope ?? this.config.scopes,
    };
  }

  /**
   * Renews a session's tokens with its refresh token. Throws IdgateError 'session_ended' when the IdP
   * refuses (invalid_grant: revoked, expired, reused) or the new ID token speaks for another issuer or
   * subject, and 'idp_unavailable' when the IdP cannot be reached (the session then lives on).
   */
  async refresh(stored: StoredSession, now: number): Promise<StoredSession> {
    const configuration = this.requireConfiguration();
    if (!stored.refreshToken) throw new IdgateError('session_ended', 'the session cannot be renewed', 'no refresh token');
    let tokens: Awaited<ReturnType<typeof client.refreshTokenGrant>>;
    try {
      // The scopes granted at login, `openid` among them: Okta answers a refresh without `scope` with no
      // ID token, and the groups would then stay those of the login.
      tokens = await client.refreshTokenGrant(configuration, stored.refreshToken, { scope: stored.grantedScope ?? this.config.scopes });
    } catch (err) {
      // invalid_grant is the IdP's "no" for this session (revoked, expired, reused): it ends the session.
      // Anything else (server_error, temporarily_unavailable, network) is the IdP being away: it does not.
      if (err instanceof client.ResponseBodyError && err.error === 'invalid_grant') {
        throw new IdgateError('session_ended', 'the identity provider ended the session', 'refresh: invalid_grant');
      }
      throw IdgateError.of('idp_unavailable', `refresh: ${describeError(err)}`);
    }
    const claims = tokens.claims();
    // openid-client does not compare a refreshed ID token with the first one: we do (OIDC Core 12.2).
    if (claims && (claims.iss !== stored.issuer || claims.sub !== stored.subject)) {
      throw new IdgateError('session_ended', 'the identity provider answered for someone else', 'refreshed ID token with another iss or sub');
    }
    const fields = claims ? await this.#identityFields(configuration, claims, tokens.access_token, 'idp_unavailable') : {};
    return {
      ...stored,
      ...fields,
      idToken: tokens.id_token ?? stored.idToken,
      refreshToken: tokens.refresh_token ?? stored.refreshToken,
      accessTokenExpiresAt: expiresAt(tokens.expiresIn(), now),
      tokensIssuedAt: now,
    };
  }

  /** The identity an ID token (plus userinfo, when the ID token lacks a configured claim) describes. */
  async #identityFields(configuration: client.Configuration, claims: client.IDToken, accessToken: string, failure: 'login_failed' | 'idp_unavailable') {
    let merged: Record<string, unknown> = { ...claims };
    const missing = [this.config.groupsClaim, this.config.rolesClaim].some((claim) => readClaim(claims, claim) === undefined);
    if (missing && configuration.serverMetadata().userinfo_endpoint) {
      // Thin ID token: the groups or roles (and often profile claims) are only in userinfo.
      try {
        const userinfo = await client.fetchUserInfo(configuration, accessToken, claims.sub);
        merged = { ...userinfo, ...claims };
      } catch (err) {
        throw new IdgateError(failure, 'could not read your groups from the identity provider', describeError(err));
      }
    }
    // An email the IdP has not verified is left out: it must not pass an `emails` condition nor reach the app.
    const email = verifiedEmail(merged, this.config.trustUnverifiedEmail);
    return {
      subject: claims.sub,
      user: pickString(merged.preferred_username) ?? email ?? claims.sub,
      email,
      groups: stringList(readClaim(merged, this.config.groupsClaim)),
      roles: stringList(readClaim(merged, this.config.rolesClaim)),
    };
  }

  /**
   * Revokes a refresh token at the IdP's revocation_endpoint (RFC 7009), authenticated as at the token
   * endpoint (client_secret_basic), within the discovery's 5-second timeout. False when the IdP has no such
   * endpoint; throws when the IdP could not be made to revoke it (the error never names the token).
   */
  async revokeRefreshToken(refreshToken: string): Promise<boolean> {
    const configuration = this.requireConfiguration();
    if (!configuration.serverMetadata().revocation_endpoint) return false;
    await client.tokenRevocation(configuration, refreshToken, { token_type_hint: 'refresh_token' });
    return true;
  }

  /** RP-initiated logout URL, or undefined when the IdP has no end_session_endpoint. */
  endSessionUrl(idToken: string | undefined, postLogoutRedirectUri: string): URL | undefined {
    const configuration = this.#configuration;
    if (!configuration?.serverMetadata().end_session_endpoint) return undefined;
    const parameters: Record<string, string> = { post_logout_redirect_uri: postLogoutRedirectUri, client_id: this.config.clientId };
    if (idToken) parameters.id_token_hint = idToken;
    return client.buildEndSessionUrl(configuration, parameters);
  }
}

function expiresAt(expiresIn: number | undefined, now: number): number | undefined {
  return expiresIn !== undefined ? now + expiresIn * 1000 : undefined;
}

function pickString(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}
