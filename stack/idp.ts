// The local OpenID Provider that stands in for Okta in the demo and the tests.
// It runs `oidc-provider` inside this process, with two fixed users, the interactive client `idgate`
// and the machine clients `demo-bot` (and `dpop-bot`, whose tokens are DPoP-bound; see the README, "The demo").
//
// Like Okta's org authorization server, the authorization code flow returns a "thin" ID token:
// profile, email and groups claims come only from the userinfo endpoint (oidc-provider's default
// `conformIdTokenClaims: true`). idgate has to call userinfo to learn the groups.
// The `okta` profile (IdpOptions.profile) goes further, trait by trait, so the demo and the tests meet Okta's
// claim names, error codes and refresh-token rotation without an Okta org.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';
import type {
  Account,
  Adapter,
  AdapterPayload,
  Configuration,
  Interaction,
  KoaContextWithOIDC,
  ResourceServer,
  Provider as OidcProvider,
} from 'oidc-provider';
import { API_RESOURCE, API_SCOPE, DEMO_USERS as USERS, MACHINE_CLIENT_ID, MACHINE_CLIENT_SECRET, OPAQUE_CLIENT_ID, OPAQUE_CLIENT_SECRET, DPOP_CLIENT_ID, DPOP_CLIENT_SECRET, PEER_RP_CLIENT_ID, PEER_RP_CLIENT_SECRET } from './idp-accounts.js';

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

export type IdpProfile = 'demo' | 'okta';

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

// ---------------------------------------------------------------------------------------------
// Storage

/** oidc-provider models whose records belong to a grant and go away when the grant is revoked. */
const GRANT_MEMBER_MODELS = new Set([
  'AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest',
]);

/**
 * Everything the provider stores (sessions, interactions, grants, codes, opaque tokens), in memory.
 * One store per running IdP, shared by every Provider instance built for it, so that a key rotation
 * (which builds a new Provider, see startIdp) keeps users signed in and issued tokens valid.
 * Unlike oidc-provider's built-in memory adapter it has no size cap (which could evict sessions
 * under a benchmark) and is not shared with other IdPs in the same process.
 */
class InMemoryStore {
  /**
   * Profile okta: a consumed (rotated) refresh token reads as unused for this long after its first use,
   * so it can be redeemed again (Okta's grace period: two requests racing with one token both succeed).
   * After it, oidc-provider sees it consumed and revokes the grant (reuse detection). 0: no grace.
   */
  refreshReuseGraceMs = 0;
  private readonly consumedAtByKey = new Map<string, number>();
  private readonly records = new Map<string, { payload: AdapterPayload; expiresAt: number }>();
  private readonly sessionKeyByUid = new Map<string, string>();
  private readonly keyByUserCode = new Map<string, string>();
  private readonly memberKeysByGrantId = new Map<string, Set<string>>();

  adapterFor(model: string): Adapter {
    const keyOf = (id: string) => `${model}:${id}`;
    return {
      upsert: async (id, payload, expiresIn) => {
        const key = keyOf(id);
        this.delete(key);
        const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity;
        this.records.set(key, { payload, expiresAt });
        if (model === 'Session' && payload.uid) this.sessionKeyByUid.set(payload.uid, key);
        if (payload.userCode) this.keyByUserCode.set(payload.userCode, key);
        if (GRANT_MEMBER_MODELS.has(model) && payload.grantId) {
          const members = this.memberKeysByGrantId.get(payload.grantId) ?? new Set<string>();
          members.add(key);
          this.memberKeysByGrantId.set(payload.grantId, members);
        }
      },
      find: async (id) => this.withinReuseGrace(keyOf(id), this.get(keyOf(id))),
      findByUid: async (uid) => this.get(this.sessionKeyByUid.get(uid)),
      findByUserCode: async (userCode) => this.get(this.keyByUserCode.get(userCode)),
      consume: async (id) => {
        const payload = this.get(keyOf(id));
        if (payload) payload.consumed = Math.floor(Date.now() / 1000);
        // The grace period runs from the first use: redeeming it again within it does not extend it.
        if (payload && !this.consumedAtByKey.has(keyOf(id))) this.consumedAtByKey.set(keyOf(id), Date.now());
      },
      destroy: async (id) => this.delete(keyOf(id)),
      revokeByGrantId: async (grantId) => {
        for (const key of this.memberKeysByGrantId.get(grantId) ?? []) this.delete(key);
        this.memberKeysByGrantId.delete(grantId);
      },
    };
  }

  /** Drops expired records; called periodically so a long demo run does not grow without bound. */
  sweep(): void {
    const now = Date.now();
    for (const [key, record] of this.records) if (record.expiresAt <= now) this.delete(key);
  }

  clear(): void {
    this.records.clear();
    this.consumedAtByKey.clear();
    this.sessionKeyByUid.clear();
    this.keyByUserCode.clear();
    this.memberKeysByGrantId.clear();
  }

  /** A consumed refresh token within its grace period reads as not consumed (a copy: the record keeps the mark). */
  private withinReuseGrace(key: string, payload: AdapterPayload | undefined): AdapterPayload | undefined {
    const consumedAt = this.consumedAtByKey.get(key);
    if (!payload?.consumed || consumedAt === undefined || !key.startsWith('RefreshToken:')) return payload;
    return Date.now() - consumedAt < this.refreshReuseGraceMs ? { ...payload, consumed: undefined } : payload;
  }

  private get(key: string | undefined): AdapterPayload | undefined {
    if (key === undefined) return undefined;
    const record = this.records.get(key);
    if (!record) return undefined;
    if (record.expiresAt <= Date.now()) {
      this.delete(key);
      return undefined;
    }
    return record.payload;
  }

  private delete(key: string): void {
    const record = this.records.get(key);
    if (!record) return;
    this.records.delete(key);
    this.consumedAtByKey.delete(key);
    const { uid, userCode, grantId } = record.payload;
    if (uid && this.sessionKeyByUid.get(uid) === key) this.sessionKeyByUid.delete(uid);
    if (userCode && this.keyByUserCode.get(userCode) === key) this.keyByUserCode.delete(userCode);
    if (grantId) this.memberKeysByGrantId.get(grantId)?.delete(key);
  }
}

// ---------------------------------------------------------------------------------------------
// Keys

/** A fresh RSA private JWK for RS256, with kid (its RFC 7638 thumbprint), alg and use set. */
async function loadOrCreateSigningKeys(file: string | undefined): Promise<JWK[]> {
  if (file && existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as JWK[];
  const keys = [await generateSigningKey()];
  if (file) writeFileSync(file, JSON.stringify(keys), { mode: 0o600 });
  return keys;
}

async function generateSigningKey(): Promise<JWK> {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk = await exportJWK(privateKey);
  return { ...jwk, kid: await calculateJwkThumbprint(jwk), alg: 'RS256', use: 'sig' };
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

// ---------------------------------------------------------------------------------------------
// HTML

function escapeHtml(value: unknown): string {
  return String(value)
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');
}

/** A complete HTML page; `title` is escaped here, `bodyHtml` must already be safe. */
function page(title: string, bodyHtml: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>
<body>
<h1>${escapeHtml(title)}</h1>
${bodyHtml}
</body>
</html>
`;
}

function loginPage(action: string, login: string, clientId: string, error?: string): string {
  return page('Sign in to the demo IdP', `
<p>Signing in to <strong>${escapeHtml(clientId)}</strong>. Demo users: alice / alice, bob / bob.</p>
${error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : ''}
<form method="post" action="${escapeHtml(action)}">
  <label>Username <input name="login" value="${escapeHtml(login)}" autocomplete="username" autofocus required></label>
  <label>Password <input name="password" type="password" autocomplete="current-password" required></label>
  <button type="submit">Sign in</button>
</form>`);
}

function sendHtml(res: http.ServerResponse, status: number, html: string): void {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
  });
  res.end(html);
}

/** Reads an application/x-www-form-urlencoded body (at most 64 KiB). */
async function readForm(req: http.IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > 65_536) throw new Error('form body too large');
    chunks.push(chunk as Buffer);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// ---------------------------------------------------------------------------------------------
// The provider

interface ProviderSettings {
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

function buildConfiguration(settings: ProviderSettings, errors: OidcProviderModule['errors']): Configuration {
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

// ---------------------------------------------------------------------------------------------
// Front-channel logout (OpenID Connect Front-Channel Logout 1.0)
//
// Both profiles do it: it is the standard way an IdP's sign-out reaches its relying parties through the
// browser (Okta's Single Logout for OIDC apps is exactly this; Keycloak, Entra ID and others do it too),
// and idgate's endpoint for it is always on. oidc-provider 9 no longer implements it, so it is rebuilt on
// the end_session pages: logoutSource (shown while the IdP session still exists) notes, per client of
// the session with a frontchannel_logout_uri, the URL to load, with `iss` and the `sid` that client's
// ID tokens carry (session.sidFor: one per client, kept in session.authorizations); the confirmation then
// destroys the session, and postLogoutSuccessSource loads the noted URLs in hidden iframes.
// Those iframes are third-party to the relying party, so browsers may not send its cookies: idgate's
// endpoint needs none (`iss` and `sid` name the sessions to end), which is why this works there.
// Only the IdP's own "Signed out" page loads them, that is when the user signs out at the IdP itself. An
// RP-initiated logout with a post_logout_redirect_uri (idgate's own logout) goes straight back to that RP,
// as before: nothing is noted then, and that relying party has ended its own session already.

/** The cookie naming this browser's noted front-channel logouts, and the store model keeping them. */
const FRONTCHANNEL_LOGOUT_COOKIE = 'idp_frontchannel_logout';
const FRONTCHANNEL_LOGOUT_MODEL = 'FrontChannelLogout';
/** A sign-out page left open longer than this loads no iframes (the session may have been signed into again). */
const FRONTCHANNEL_LOGOUT_TTL_SECONDS = 600;

interface FrontChannelClientMetadata {
  frontchannel_logout_uri?: string;
  frontchannel_logout_session_required?: boolean;
}

/** logoutSource: notes the front-channel logout URLs of the session about to end, named by a cookie of this browser. */
async function rememberFrontChannelLogouts(ctx: KoaContextWithOIDC, store: InMemoryStore, mountPath: string): Promise<void> {
  const { session, params, provider } = ctx.oidc;
  if (!session?.accountId || params?.post_logout_redirect_uri !== undefined) return;
  const uris: string[] = [];
  for (const clientId of Object.keys(session.authorizations ?? {})) {
    const client = await provider.Client.find(clientId);
    const metadata = client?.metadata() as FrontChannelClientMetadata | undefined;
    if (!metadata?.frontchannel_logout_uri) continue;
    const uri = new URL(metadata.frontchannel_logout_uri);
    const sid = session.sidFor(clientId);
    if (metadata.frontchannel_logout_session_required && sid) {
      uri.searchParams.set('iss', provider.issuer);
      uri.searchParams.set('sid', sid);
    }
    uris.push(uri.href);
  }
  if (uris.length === 0) return;
  const id = randomBytes(24).toString('base64url');
  await store.adapterFor(FRONTCHANNEL_LOGOUT_MODEL).upsert(id, { sessionId: session.jti, uris }, FRONTCHANNEL_LOGOUT_TTL_SECONDS);
  ctx.cookies.set(FRONTCHANNEL_LOGOUT_COOKIE, id, {
    path: `${mountPath}/session/end`, httpOnly: true, sameSite: 'lax', signed: false, maxAge: FRONTCHANNEL_LOGOUT_TTL_SECONDS * 1000,
  });
}

/**
 * postLogoutSuccessSource: the URLs noted for this browser, once (the note and its cookie go), and only when
 * the whole IdP session is gone: a sign-out of one client only (client_id forwarded) ends no other's session.
 */
async function takeFrontChannelLogouts(ctx: KoaContextWithOIDC, store: InMemoryStore, mountPath: string): Promise<string[]> {
  const id = ctx.cookies.get(FRONTCHANNEL_LOGOUT_COOKIE, { signed: false });
  if (!id) return [];
  ctx.cookies.set(FRONTCHANNEL_LOGOUT_COOKIE, null, { path: `${mountPath}/session/end`, signed: false });
  const adapter = store.adapterFor(FRONTCHANNEL_LOGOUT_MODEL);
  const noted = (await adapter.find(id)) as { sessionId?: string; uris?: string[] } | undefined;
  await adapter.destroy(id);
  if (!noted?.sessionId || !noted.uris || ctx.oidc.params?.client_id) return [];
  if (await ctx.oidc.provider.Session.find(noted.sessionId)) return [];
  return noted.uris;
}

/**
 * A client registered with frontchannel_logout_session_required gets `sid` in its ID tokens (Front-Channel
 * Logout 1.0, section 3), the value its iframe's URL will name. oidc-provider 9 adds it only for
 * back-channel's backchannel_logout_session_required (Client#includeSid, per provider instance), so that
 * rule is widened here, for this provider's clients only.
 */
function includeSidForFrontChannelLogout(provider: OidcProvider): void {
  const clientPrototype = provider.Client.prototype as unknown as { includeSid(this: FrontChannelClientMetadata): boolean };
  const includeSid = clientPrototype.includeSid;
  clientPrototype.includeSid = function includeSidOrFrontChannelSid(this: FrontChannelClientMetadata) {
    return Boolean(includeSid.call(this)) || Boolean(this.frontchannel_logout_uri && this.frontchannel_logout_session_required);
  };
}

/** The hidden iframes of the "Signed out" page, one per noted URL. */
function frontChannelLogoutFrames(uris: string[]): string {
  if (uris.length === 0) return '';
  const frames = uris.map((uri) => `<iframe src="${escapeHtml(uri)}" title="Signing out of an application" hidden></iframe>`);
  return `\n<p>Signing you out of the applications you used with it too.</p>\n${frames.join('\n')}`;
}

/** Profile okta: the key of the token endpoint's DPoP nonces (one per process, so rotated signing keys keep them). */
const OKTA_DPOP_NONCE_SECRET = randomBytes(32);

/**
 * Okta's JWT access token claims (profile okta): `cid` (the client), `scp` (a list), `ver`, and for a user's
 * token `uid` (Okta's user id, 00u...) beside `sub`; no RFC 9068 `client_id` or `scope`, so idgate must read
 * Okta's names.
 */
function oktaAccessTokenClaims(_ctx: unknown, token: object, jwt: { payload: Record<string, unknown> }): void {
  const accountId = (token as { accountId?: unknown }).accountId;
  const { client_id: cid, scope, ...rest } = jwt.payload;
  jwt.payload = {
    ver: 1,
    ...rest,
    cid,
    scp: typeof scope === 'string' ? scope.split(' ').filter(Boolean) : [],
    ...(typeof accountId === 'string' ? { uid: oktaUserId(accountId) } : {}),
  };
}

/** A stable Okta-looking user id for a demo account: 00u and 17 more characters. */
export function oktaUserId(accountId: string): string {
  return `00u${createHash('sha256').update(accountId).digest('hex').slice(0, 17)}`;
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

/**
 * oidc-provider follows OIDC Core 11 to the letter: `offline_access` is silently dropped from an
 * authorization request unless it carries `prompt=consent`, so no refresh token is issued. Okta (and
 * idgate, written against it) asks for offline_access without prompt=consent. To behave like Okta,
 * an authorization request with offline_access gets `consent` added to its prompt; the consent step
 * is then granted in code (see handleInteraction), so the user sees no extra page.
 * `prompt=none` (silent re-authentication) is left alone: there, offline_access is dropped as before.
 * Returns whether `query` was changed.
 */
function addConsentPromptForOfflineAccess(query: URLSearchParams): boolean {
  const scopes = (query.get('scope') ?? '').split(' ');
  const prompts = (query.get('prompt') ?? '').split(' ').filter(Boolean);
  if (!scopes.includes('offline_access') || prompts.includes('consent') || prompts.includes('none')) return false;
  query.set('prompt', [...prompts, 'consent'].join(' '));
  return true;
}

// ---------------------------------------------------------------------------------------------
// Interactions (login form; consent granted in code)

/**
 * GET  <mount>/interaction/:uid        login form, or automatic consent
 * POST <mount>/interaction/:uid/login  checks the password
 */
async function handleInteraction(
  provider: OidcProvider,
  mountPath: string,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  path: string,
): Promise<void> {
  const match = /^\/interaction\/([\w-]+)(\/login)?$/.exec(path);
  if (!match) return sendHtml(res, 404, page('Not found', '<p>No such page.</p>'));
  const [, uid, loginSuffix] = match;
  const isLoginPost = loginSuffix !== undefined;
  if ((isLoginPost && req.method !== 'POST') || (!isLoginPost && req.method !== 'GET')) {
    return sendHtml(res, 405, page('Method not allowed', '<p>Method not allowed.</p>'));
  }

  let details: Interaction;
  try {
    details = await provider.interactionDetails(req, res);
  } catch {
    // No or expired interaction cookie: the login attempt cannot be resumed.
    return sendHtml(res, 400, page('Sign-in expired', '<p>This sign-in attempt has expired or was not started here. Go back to the application and try again.</p>'));
  }
  if (details.uid !== uid) {
    return sendHtml(res, 400, page('Sign-in mismatch', '<p>This page does not belong to the current sign-in attempt. Go back to the application and try again.</p>'));
  }

  const clientId = String(details.params.client_id ?? '');
  const loginAction = `${mountPath}/interaction/${uid}/login`;

  if (isLoginPost) {
    if (details.prompt.name !== 'login') {
      return sendHtml(res, 400, page('Already signed in', '<p>This sign-in step is already done. Go back to the application and try again.</p>'));
    }
    const form = await readForm(req);
    const login = form.get('login') ?? '';
    const user = USERS.get(login);
    if (!user || form.get('password') !== user.password) {
      return sendHtml(res, 401, loginPage(loginAction, login, clientId, 'Wrong username or password.'));
    }
    return provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
  }

  switch (details.prompt.name) {
    case 'login':
      return sendHtml(res, 200, loginPage(loginAction, String(details.params.login_hint ?? ''), clientId));
    case 'consent':
      // Every client of this IdP is first-party: grant what it asked for, without a page.
      return provider.interactionFinished(req, res, { consent: { grantId: await grantRequestedAccess(provider, details) } }, { mergeWithLastSubmission: true });
    default:
      return sendHtml(res, 400, page('Unsupported step', `<p>Unsupported sign-in step: ${escapeHtml(details.prompt.name)}.</p>`));
  }
}

/** Creates (or extends) the grant so it covers everything the consent prompt says is missing. */
async function grantRequestedAccess(provider: OidcProvider, details: Interaction): Promise<string> {
  const accountId = details.session?.accountId;
  const clientId = String(details.params.client_id);
  const grant = (details.grantId ? await provider.Grant.find(details.grantId) : undefined)
    ?? new provider.Grant({ accountId, clientId });
  const missing = details.prompt.details as {
    missingOIDCScope?: string[];
    missingOIDCClaims?: string[];
    missingResourceScopes?: Record<string, string[]>;
  };
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [resource, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(resource, scopes.join(' '));
  }
  return grant.save();
}

// ---------------------------------------------------------------------------------------------

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
    if (idTokenOnRefresh === 'when-openid-asked') {
      // Like Okta: a refresh that does not ask for openid gets no ID token.
      provider.use(async (ctx, next) => {
        await next();
        const params = ctx.oidc?.params as { grant_type?: unknown; scope?: unknown } | undefined;
        if (ctx.oidc?.route !== 'token' || params?.grant_type !== 'refresh_token' || typeof ctx.body !== 'object' || ctx.body === null) return;
        if (!String(params.scope ?? '').split(' ').includes('openid')) delete (ctx.body as { id_token?: unknown }).id_token;
      });
    }
    if (options.profile === 'okta') {
      // A client that requires DPoP asking without a proof: Okta answers invalid_dpop_proof, oidc-provider
      // invalid_grant (a bad proof is invalid_dpop_proof in both).
      provider.use(async (ctx, next) => {
        await next();
        const body = ctx.body as { error?: unknown } | undefined;
        if (ctx.oidc?.route !== 'token' || ctx.status !== 400 || body?.error !== 'invalid_grant') return;
        if (ctx.oidc.client?.dpopBoundAccessTokens && !ctx.get('dpop')) {
          ctx.body = { error: 'invalid_dpop_proof', error_description: 'The DPoP proof JWT header is missing.' };
        }
      });
    }
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

