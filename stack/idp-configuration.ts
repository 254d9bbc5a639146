// The local IdP's oidc-provider configuration: its clients (idgate, the machine clients, the bench's peer),
// scopes and claims per profile, the accounts' claims, token lifetimes, features (DPoP, introspection,
// revocation, logout, resource indicators) and the loopback exception of its outgoing fetch.
import { existsSync, readFileSync } from 'node:fs';
import type { JWK } from 'jose';
import type { Account, Configuration, Interaction, KoaContextWithOIDC, ResourceServer } from 'oidc-provider';
import { API_RESOURCE, API_SCOPE, DEMO_USERS as USERS, MACHINE_CLIENT_ID, MACHINE_CLIENT_SECRET, OPAQUE_CLIENT_ID, OPAQUE_CLIENT_SECRET, DPOP_CLIENT_ID, DPOP_CLIENT_SECRET, PEER_RP_CLIENT_ID, PEER_RP_CLIENT_SECRET } from './idp-accounts.js';
import { frontChannelLogoutFrames, rememberFrontChannelLogouts, takeFrontChannelLogouts } from './idp-frontchannel-logout.js';
import { OKTA_DPOP_NONCE_SECRET, oktaAccessTokenClaims } from './idp-okta.js';
import { escapeHtml, page } from './idp-pages.js';
import type { InMemoryStore } from './idp-store.js';

export type IdpProfile = 'demo' | 'okta';

/**
 * The API that the machine clients get tokens for, audience `api://idgate`: RS256 JWT access tokens for
 * `demo-bot` and `dpop-bot` (bound to its proof key: cnf.jkt), opaque ones for `opaque-bot` (whose introspection answer then names that audience).
 */
function apiResourceServer(accessTokenTtlSeconds: number, format: 'jwt' | 'opaque'): ResourceServer {
  return {
    scope: API_SCOPE,
    audience: API_RESOURCE,
    accessTokenTTL: accessTokenTtlSeconds,
    ...(format === 'jwt' ? { accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } } : { accessTokenFormat: 'opaque' }),
  };
}

export interface ProviderSettings {
  clientId: string;
  clientSecret: string;
  redirectUris: string[];
  postLogoutRedirectUris: string[];
  backchannelLogoutUri?: string;
  frontchannelLogoutUri?: string;
  peerRedirectUris: string[];
  accessTokenTtlSeconds: number;
  idTokenTtlSeconds: number;
  refreshTokenTtlSeconds: number;
  groupsFile?: string;
  profile: IdpProfile;
  /** Issuer path without trailing slash ('' for a bare origin); our interaction pages live under it. */
  mountPath: string;
  signingKeys: JWK[];
  cookieKeys: string[];
  store: InMemoryStore;
}

export function buildConfiguration(settings: ProviderSettings, errors: typeof import('oidc-provider')['errors']): Configuration {
  const {
    clientId, clientSecret, redirectUris, postLogoutRedirectUris, backchannelLogoutUri, frontchannelLogoutUri, peerRedirectUris,
    accessTokenTtlSeconds, idTokenTtlSeconds, refreshTokenTtlSeconds, mountPath, store, profile,
  } = settings;
  const okta = profile === 'okta';

  return {
    adapter: (model: string) => store.adapterFor(model),
    // oidc-provider signs with the first matching key, so the newest key goes first.
    jwks: { keys: settings.signingKeys.map((key) => structuredClone(key)) } as Configuration['jwks'],
    cookies: {
      keys: settings.cookieKeys,
      // Browsers share cookies across ports, so on 127.0.0.1 the app (idgate behind HAProxy) and this
      // IdP see each other's cookies. Distinct names keep them from ever colliding.
      names: { session: 'idp_session', interaction: 'idp_interaction', resume: 'idp_interaction_resume' },
    },

    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        client_name: 'idgate',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        redirect_uris: redirectUris,
        post_logout_redirect_uris: postLogoutRedirectUris,
        // Okta's custom server `default` defines no `groups` scope: asking for it is invalid_scope there and here.
        // api:read: a user's token for the API (resource api://idgate), a JWT with Okta's uid/cid/scp.
        ...(okta ? { scope: `openid profile email offline_access ${API_SCOPE}` } : {}),
        ...(backchannelLogoutUri
          // session_required: the logout token then carries `sid`, so idgate can end just that session.
          ? { backchannel_logout_uri: backchannelLogoutUri, backchannel_logout_session_required: true }
          : {}),
        ...(frontchannelLogoutUri
          // session_required: the iframe's URL then carries `iss` and `sid` (Okta's "Include session ID").
          ? { frontchannel_logout_uri: frontchannelLogoutUri, frontchannel_logout_session_required: true }
          : {}),
      },
      {
        client_id: MACHINE_CLIENT_ID,
        client_secret: MACHINE_CLIENT_SECRET,
        client_name: 'demo-bot',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        scope: API_SCOPE,
      },
      {
        client_id: DPOP_CLIENT_ID,
        client_secret: DPOP_CLIENT_SECRET,
        client_name: 'dpop-bot',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        scope: API_SCOPE,
        // Its token requests must carry a DPoP proof; its tokens are bound to that proof's key.
        dpop_bound_access_tokens: true,
      },
      {
        client_id: OPAQUE_CLIENT_ID,
        client_secret: OPAQUE_CLIENT_SECRET,
        client_name: 'opaque-bot',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        scope: API_SCOPE,
      },
      // The bench's peer (Apache + mod_auth_openidc): the same code flow as idgate's, its own client.
      ...(peerRedirectUris.length > 0
        ? [{
          client_id: PEER_RP_CLIENT_ID,
          client_secret: PEER_RP_CLIENT_SECRET,
          client_name: 'apache-peer',
          token_endpoint_auth_method: 'client_secret_basic' as const,
          grant_types: ['authorization_code'],
          response_types: ['code' as const],
          redirect_uris: peerRedirectUris,
        }]
        : []),
    ],

    // oidc-provider 9 dropped front-channel logout; its client metadata is kept here, and done by
    // rememberFrontChannelLogouts / frontChannelLogoutFrames (rpInitiatedLogout below).
    extraClientMetadata: { properties: ['frontchannel_logout_uri', 'frontchannel_logout_session_required'] },

    scopes: ['openid', 'profile', 'email', 'groups', 'offline_access', API_SCOPE],
    claims: {
      openid: ['sub'],
      // Okta: groups come from a groups claim of the authorization server (here: with `profile`), not a scope.
      profile: okta ? ['name', 'preferred_username', 'groups'] : ['name', 'preferred_username'],
      email: ['email', 'email_verified'],
      groups: ['groups'],
    },
    ...(okta ? { formats: { customizers: { jwt: oktaAccessTokenClaims } } } : {}),
    // Okta rotates a web app's refresh token at every use (reuse detection: InMemoryStore.refreshReuseGraceMs).
    ...(okta ? { rotateRefreshToken: true } : {}),
    // Left at its default (true) on purpose: the code flow's ID token carries no profile/email/groups
    // claims, like Okta's org authorization server; they come from userinfo.
    conformIdTokenClaims: true,

    async findAccount(_ctx: KoaContextWithOIDC, sub: string): Promise<Account | undefined> {
      const user = USERS.get(sub);
      if (!user) return undefined;
      // oidc-provider filters these by granted scope and by where they are going (ID token or userinfo).
      return { accountId: sub, claims: async () => ({ sub, ...user.claims, ...groupsFromFile(settings.groupsFile, sub) }) };
    },

    responseTypes: ['code'],
    // oidc-provider only requires PKCE from public clients by default; idgate must use it anyway.
    pkce: { required: () => true },
    // Refresh tokens go to clients allowed the refresh_token grant that were granted offline_access
    // (oidc-provider's default rule, spelled out). For offline_access to survive the authorization
    // request without prompt=consent, see addConsentPromptForOfflineAccess.
    issueRefreshToken: async (_ctx, client, source) =>
      client.grantTypeAllowed('refresh_token') && source.scopes.has('offline_access'),

    ttl: {
      AccessToken: accessTokenTtlSeconds,
      ClientCredentials: accessTokenTtlSeconds,
      IdToken: idTokenTtlSeconds,
      RefreshToken: refreshTokenTtlSeconds,
      // A grant outliving its refresh tokens keeps them usable for their whole lifetime.
      Grant: Math.max(refreshTokenTtlSeconds, 86_400),
      Session: 86_400,
      Interaction: 3600,
    },

    interactions: { url: async (_ctx: KoaContextWithOIDC, interaction: Interaction) => `${mountPath}/interaction/${interaction.uid}` },

    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      // RFC 9449, for dpop-bot (proofs signed with ES256, EdDSA...). Profile okta: like Okta, the token
      // endpoint wants its own nonce in the proof (400 use_dpop_nonce with a DPoP-Nonce to retry with);
      // the demo profile issues none.
      dPoP: okta ? { enabled: true, nonceSecret: OKTA_DPOP_NONCE_SECRET, requireNonce: (ctx: KoaContextWithOIDC) => ctx.oidc?.route === 'token' } : { enabled: true },
      // RFC 7662, for opaque-bot's tokens; only idgate (the resource server's client) may ask.
      introspection: { enabled: true, allowedPolicy: async (_ctx, client) => client.clientId === clientId },
      revocation: {
        enabled: true,
        allowedPolicy: async (_ctx, client, token) => token.clientId === client.clientId,
      },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        async logoutSource(ctx: KoaContextWithOIDC, form: string) {
          await rememberFrontChannelLogouts(ctx, store, mountPath);
          // `form` is oidc-provider's confirmation form (it carries the xsrf token). Adding
          // logout=yes means "end the IdP session too", and the script submits it right away,
          // so RP-initiated logout needs no click. Without scripts, the button does the same.
          const autoSubmitForm = form.replace(
            '</form>',
            '<input type="hidden" name="logout" value="yes"/><noscript><button type="submit">Sign out</button></noscript></form>',
          );
          ctx.type = 'html';
          ctx.body = page('Signing out', `${autoSubmitForm}
<script>document.getElementById('op.logoutForm').submit();</script>`);
        },
        async postLogoutSuccessSource(ctx: KoaContextWithOIDC) {
          const frames = frontChannelLogoutFrames(await takeFrontChannelLogouts(ctx, store, mountPath));
          ctx.type = 'html';
          ctx.body = page('Signed out', `<p>You are signed out of the demo IdP.</p>${frames}`);
        },
      },
      resourceIndicators: {
        enabled: true,
        // The machine clients ask for no resource and still get an API token (audience api://idgate,
        // which idgate requires of introspected tokens too). idgate's code flow resolves no resource, so
        // its access token stays opaque and good for userinfo.
        defaultResource: async (_ctx, client, oneOf) => {
          if (oneOf) return oneOf;
          return [MACHINE_CLIENT_ID, DPOP_CLIENT_ID, OPAQUE_CLIENT_ID].includes(client.clientId) ? API_RESOURCE : undefined;
        },
        getResourceServerInfo: async (_ctx, resourceIndicator, client) => {
          if (resourceIndicator === API_RESOURCE) return apiResourceServer(accessTokenTtlSeconds, client.clientId === OPAQUE_CLIENT_ID ? 'opaque' : 'jwt');
          throw new errors.InvalidTarget();
        },
        useGrantedResource: async () => false,
      },
    },

    // Back-channel logout posts to idgate on loopback. oidc-provider's outgoing fetch refuses
    // loopback and private addresses (SSRF protection); here that is exactly where idgate lives,
    // so loopback targets go out without that guard. Everything else keeps it.
    fetch: (input, init) => {
      const url = new URL(input instanceof Request ? input.url : input.toString());
      if (isLoopbackHost(url.hostname) && init) delete (init as { dispatcher?: unknown }).dispatcher;
      return globalThis.fetch(input, init);
    },

    clientBasedCORS: () => false,
    async renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = page('Error', Object.entries(out)
        .map(([name, value]) => `<p><strong>${escapeHtml(name)}</strong>: ${escapeHtml(value)}</p>`)
        .join('\n'));
    },
  };
}

/** The groups `file` gives `user`, as claims to merge; nothing when there is no file or it names no such user. */
function groupsFromFile(file: string | undefined, user: string): { groups?: string[] } {
  if (!file || !existsSync(file)) return {};
  const groups = (JSON.parse(readFileSync(file, 'utf8')) as Record<string, string[] | undefined>)[user];
  return groups ? { groups } : {};
}

function isLoopbackHost(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}
