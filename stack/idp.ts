// The local OpenID Provider that stands in for Okta in the demo and the tests.
// It runs `oidc-provider` inside this process, with two fixed users, the interactive client `idgate`
// and the machine clients `demo-bot` (and `dpop-bot`, whose tokens are DPoP-bound; see the README, "The demo").
//
// Like Okta's org authorization server, the authorization code flow returns a "thin" ID token:
// profile, email and groups claims come only from the userinfo endpoint (oidc-provider's default
// `conformIdTokenClaims: true`). idgate has to call userinfo to learn the groups.
// The `okta` profile (IdpOptions.profile) goes further, trait by trait, so the demo and the tests meet Okta's
// claim names, error codes and refresh-token rotation without an Okta org.
// This file starts it (the http server, the provider and its key rotation); beside it: idp-configuration.ts
// (clients, claims, features), idp-pages.ts (sign-in pages), idp-okta.ts (the okta profile's differences),
// idp-frontchannel-logout.ts, idp-store.ts (storage) and idp-keys.ts (signing keys).
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { buildConfiguration, type IdpProfile, type ProviderSettings } from './idp-configuration.js';
import { includeSidForFrontChannelLogout } from './idp-frontchannel-logout.js';
import { generateSigningKey, loadOrCreateSigningKeys } from './idp-keys.js';
import { answerMissingDpopProofAsOkta, dropIdTokenUnlessOpenidAsked } from './idp-okta.js';
import { addConsentPromptForOfflineAccess, handleInteraction, page, sendHtml } from './idp-pages.js';
import { InMemoryStore } from './idp-store.js';

export type { IdpProfile } from './idp-configuration.js';
export { oktaUserId } from './idp-okta.js';

export interface IdpOptions {
  /** TCP port to listen on. Required (0 picks a free one; see `port` on the result). */
  port: number;
  /** Address to listen on. Default `127.0.0.1`. */
  host?: string;
  /**
   * Issuer identifier, as it appears in tokens and discovery. Default `http://127.0.0.1:<port>`, with
   * the port actually bound (so port 0 works: the IdP listens first, then builds its issuer).
   * Plain http is accepted (loopback demo and tests). A path (e.g. `http://idp.local/oidc`) is
   * honoured: the provider then answers under that path prefix.
   */
  issuer?: string;
  /** client_id of the interactive client. Default `idgate`. */
  clientId?: string;
  /** client_secret of the interactive client (client_secret_basic). Default `idgate-secret`. */
  clientSecret?: string;
  /** redirect_uris registered for the interactive client. Default: none (then no login can complete). */
  redirectUris?: string[];
  /** post_logout_redirect_uris registered for the interactive client. Default: none. */
  postLogoutRedirectUris?: string[];
  /** OIDC Back-Channel Logout endpoint of the interactive client. Default: none (no back-channel logout). */
  backchannelLogoutUri?: string;
  /**
   * OIDC Front-Channel Logout endpoint of the interactive client (`frontchannel_logout_uri`, with
   * `frontchannel_logout_session_required`: it gets `iss` and `sid`). Default: none (no front-channel logout).
   */
  frontchannelLogoutUri?: string;
  /**
   * redirect_uris of the benchmark's peer relying party (`apache-peer`, Apache + mod_auth_openidc in
   * `make bench`). Default: none, and then that client is not registered at all.
   */
  peerRedirectUris?: string[];
  /** Lifetime of access tokens (both clients). Default 3600. */
  accessTokenTtlSeconds?: number;
  /** Lifetime of ID tokens. Default 3600. */
  idTokenTtlSeconds?: number;
  /** Lifetime of refresh tokens (and of the grant behind them). Default 86400. */
  refreshTokenTtlSeconds?: number;
  /**
   * A file keeping the signing keys (private JWKs), so that a restarted IdP signs with the same keys:
   * read when it exists, written otherwise. Default: none (fresh keys at every start).
   */
  keysFile?: string;
  /**
   * When a refresh_token grant returns an ID token. `always` (default): oidc-provider's way, also when the
   * grant asks for no `scope` (it then gets the refresh token's, openid included). `when-openid-asked`:
   * Okta's way, only when the grant's `scope` parameter names openid.
   */
  idTokenOnRefresh?: 'always' | 'when-openid-asked';
  /**
   * `demo` (default): the demo IdP as described above. `okta`: it answers the way Okta does where idgate
   * can tell (`make demo IDP=okta`, IDP_PROFILE=okta): the `groups` scope is not
   * defined for idgate (asking for it: invalid_scope; groups come with `profile`, from userinfo), JWT access
   * tokens carry Okta's `cid`, `uid`, `scp` and `ver` instead of client_id and scope, dpop-bot without a proof is
   * refused with invalid_dpop_proof (with one, the token endpoint first asks its nonce: use_dpop_nonce),
   * refresh tokens rotate with reuse detection after a grace period, and a refresh returns an ID token only
   * when it asks for openid (unless idTokenOnRefresh says otherwise).
   */
  profile?: IdpProfile;
  /**
   * Profile okta: seconds a rotated refresh token may still be redeemed (Okta's "grace period for token
   * rotation", 0 to 60, default 30 there and here). After it, redeeming it revokes the whole grant.
   */
  refreshReuseGraceSeconds?: number;
  /**
   * A JSON file `{"<user>": ["group", ...]}` read at every token and userinfo answer, replacing those
   * users' demo groups: tests change a user's groups while the user is signed in. Default: none.
   */
  groupsFile?: string;
  /** Where error lines go (failed token requests, back-channel logout failures...). Default `console.error`. */
  log?: (line: string) => void;
}

export interface RunningIdp {
  /** The issuer identifier, e.g. `http://127.0.0.1:9000`. */
  readonly issuer: string;
  /** The port actually listened on. */
  readonly port: number;
  /** Stops listening, drops open connections and forgets all sessions and tokens. */
  close(): Promise<void>;
  /** Adds a new RSA signing key and signs with it from now on; older keys stay in the JWKS. */
  rotateSigningKey(): Promise<void>;
  /** Removes every signing key but the newest from the JWKS (tokens signed with them stop verifying). */
  retireOldSigningKeys(): Promise<void>;
}


type OidcProviderModule = typeof import('oidc-provider');

/**
 * Loads oidc-provider. It warns "Unsupported runtime" on import under Node 20 (it wants 22+);
 * everything this demo uses works on 20, so that one line is swallowed to keep the demo output clean.
 */
async function loadOidcProvider(): Promise<OidcProviderModule> {
  const originalWarn = console.warn;
  console.warn = (...args: unknown[]) => {
    if (typeof args[0] === 'string' && args[0].includes('Unsupported runtime')) return;
    originalWarn(...args);
  };
  try {
    return await import('oidc-provider');
  } finally {
    console.warn = originalWarn;
  }
}

export async function startIdp(options: IdpOptions): Promise<RunningIdp> {
  const { default: Provider, errors } = await loadOidcProvider();

  const host = options.host ?? '127.0.0.1';
  const log = options.log ?? ((line: string) => console.error(line));
  let current: { provider: InstanceType<typeof Provider>; handleRequest: ReturnType<InstanceType<typeof Provider>['callback']> } | undefined;
  let mountPath = '';
  const signingKeys = await loadOrCreateSigningKeys(options.keysFile);
  const server = http.createServer((req, res) => {
    // Listening comes before the provider exists (its issuer names the port bound): not yet, then.
    if (current === undefined) return sendHtml(res, 503, page('Starting', '<p>The IdP is starting.</p>'));
    const { provider, handleRequest } = current;
    const url = new URL(req.url ?? '/', 'http://idp.invalid');
    if (mountPath && !(url.pathname === mountPath || url.pathname.startsWith(`${mountPath}/`))) {
      return sendHtml(res, 404, page('Not found', '<p>No such page.</p>'));
    }
    const localPath = url.pathname.slice(mountPath.length) || '/';
    if (localPath.startsWith('/interaction/')) {
      handleInteraction(provider, mountPath, req, res, localPath).catch((error: Error) => {
        log(`idp interaction error: ${error.message}`);
        if (!res.headersSent) sendHtml(res, 500, page('Error', '<p>Something went wrong.</p>'));
        else res.end();
      });
      return;
    }
    if (req.method === 'GET' && localPath === '/auth' && addConsentPromptForOfflineAccess(url.searchParams)) {
      req.url = `${url.pathname}${url.search}`;
    }
    // oidc-provider routes are relative to the issuer's path; like under Express's app.use(path),
    // it finds that path again from req.originalUrl when it builds endpoint URLs.
    if (mountPath) {
      (req as http.IncomingMessage & { originalUrl?: string }).originalUrl = req.url;
      req.url = (req.url ?? '/').slice(mountPath.length) || '/';
    }
    void handleRequest(req, res);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });

  const port = (server.address() as { port: number }).port;
  const issuer = options.issuer ?? `http://127.0.0.1:${port}`;
  mountPath = new URL(issuer).pathname.replace(/\/+$/, '');
  const store = new InMemoryStore();
  if (options.profile === 'okta') store.refreshReuseGraceMs = (options.refreshReuseGraceSeconds ?? 30) * 1000;
  const idTokenOnRefresh = options.idTokenOnRefresh ?? (options.profile === 'okta' ? 'when-openid-asked' : 'always');
  const settings: ProviderSettings = {
    clientId: options.clientId ?? 'idgate',
    clientSecret: options.clientSecret ?? 'idgate-secret',
    redirectUris: options.redirectUris ?? [],
    postLogoutRedirectUris: options.postLogoutRedirectUris ?? [],
    backchannelLogoutUri: options.backchannelLogoutUri,
    frontchannelLogoutUri: options.frontchannelLogoutUri,
    peerRedirectUris: options.peerRedirectUris ?? [],
    groupsFile: options.groupsFile,
    profile: options.profile ?? 'demo',
    accessTokenTtlSeconds: options.accessTokenTtlSeconds ?? 3600,
    idTokenTtlSeconds: options.idTokenTtlSeconds ?? 3600,
    refreshTokenTtlSeconds: options.refreshTokenTtlSeconds ?? 86_400,
    mountPath,
    signingKeys,
    cookieKeys: [randomBytes(32).toString('base64url')],
    store,
  };

  // oidc-provider reads its signing keys only when a Provider is constructed. Rotating keys therefore
  // builds a new Provider with the same clients, cookie keys and store, and swaps it in behind the
  // same http server: sessions, grants and tokens survive, only the JWKS changes.
  const createProvider = () => {
    const provider = new Provider(issuer, buildConfiguration(settings, errors));
    includeSidForFrontChannelLogout(provider);
    // One line per failed request, so a failing login or token call in a test explains itself.
    const logError = (event: string) => (_ctx: unknown, error: Error & { error_description?: string }) =>
      log(`idp ${event}: ${error.message}${error.error_description ? ` (${error.error_description})` : ''}`);
    provider.on('server_error', logError('server_error'));
    provider.on('authorization.error', logError('authorization.error'));
    provider.on('grant.error', logError('grant.error'));
    provider.on('userinfo.error', logError('userinfo.error'));
    provider.on('end_session.error', logError('end_session.error'));
    provider.on('revocation.error', logError('revocation.error'));
    provider.on('backchannel.error', (_ctx: unknown, error: Error, client: { clientId: string }) =>
      log(`idp back-channel logout to ${client.clientId} failed: ${error.message}`));
    if (idTokenOnRefresh === 'when-openid-asked') dropIdTokenUnlessOpenidAsked(provider);
    if (options.profile === 'okta') answerMissingDpopProofAsOkta(provider);
    return { provider, handleRequest: provider.callback() };
  };
  current = createProvider();

  const sweeper = setInterval(() => store.sweep(), 60_000);
  sweeper.unref();

  return {
    issuer,
    port,
    async close() {
      clearInterval(sweeper);
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      store.clear();
    },
    async rotateSigningKey() {
      settings.signingKeys = [await generateSigningKey(), ...settings.signingKeys];
      current = createProvider();
    },
    async retireOldSigningKeys() {
      settings.signingKeys = settings.signingKeys.slice(0, 1);
      current = createProvider();
    },
  };
}
