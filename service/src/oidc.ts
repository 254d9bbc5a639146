// The relying-party side of OIDC, with openid-client: discovery (retried in the background until the IdP
// answers), the authorization code flow with PKCE S256 + state + nonce, ID-token signature checks
// (enableNonRepudiationChecks: openid-client skips them for token-endpoint responses otherwise), and
// groups from userinfo when the ID token is thin (Okta's org server).
import * as client from 'openid-client';
import type { Config } from './config.js';
import { IdgateError, describeError } from './errors.js';
import { readClaim, stringList } from './claims.js';
import type { StoredSession } from './sessions.js';

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
      this.log('error', 'identity provider discovery failed; retrying in 5 s', { issuer: this.config.issuer.href, error: describeError(err) });
      if (!this.#stopped) {
        this.#retryTimer = setTimeout(() => {
          this.#discovering = this.#discover();
        }, 5000);
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
      throw new IdgateError('login_failed', 'the identity provider did not complete the login', describeError(err));
    }
    const claims = tokens.claims();
    if (!claims || typeof claims.sub !== 'string' || claims.sub === '') {
      throw new IdgateError('login_failed', 'the identity provider did not complete the login', 'ID token without sub');
    }
    let merged: Record<string, unknown> = { ...claims };
    if (readClaim(claims, this.config.groupsClaim) === undefined && configuration.serverMetadata().userinfo_endpoint) {
      // Thin ID token: the groups (and often profile claims) are only in userinfo.
      try {
        const userinfo = await client.fetchUserInfo(configuration, tokens.access_token, claims.sub);
        merged = { ...userinfo, ...claims };
      } catch (err) {
        throw new IdgateError('login_failed', 'could not read your groups from the identity provider', describeError(err));
      }
    }
    const expiresIn = tokens.expiresIn();
    return {
      v: 1,
      subject: claims.sub,
      user: pickString(merged.preferred_username) ?? pickString(merged.email) ?? claims.sub,
      email: pickString(merged.email),
      groups: stringList(readClaim(merged, this.config.groupsClaim)),
      roles: stringList(readClaim(merged, this.config.rolesClaim)),
      issuer: claims.iss,
      createdAt: now,
      idToken: tokens.id_token!,
      refreshToken: tokens.refresh_token,
      accessTokenExpiresAt: expiresIn !== undefined ? now + expiresIn * 1000 : undefined,
      idpSessionId: pickString(claims.sid),
    };
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

function pickString(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}
