// The okta profile's differences from oidc-provider's answers, where idgate can tell: Okta's JWT access token
// claims, the token endpoint's DPoP nonce and its error for a missing proof, and no ID token on a refresh that
// does not ask for openid. The configuration (idp-configuration.ts) and the store's refresh-token grace
// (idp-store.ts) hold the rest, each at the setting it changes.
import { createHash, randomBytes } from 'node:crypto';
import type { Provider as OidcProvider } from 'oidc-provider';

/** Profile okta: the key of the token endpoint's DPoP nonces (one per process, so rotated signing keys keep them). */
export const OKTA_DPOP_NONCE_SECRET = randomBytes(32);

/**
 * Okta's JWT access token claims (profile okta): `cid` (the client), `scp` (a list), `ver`, and for a user's
 * token `uid` (Okta's user id, 00u...) beside `sub`; no RFC 9068 `client_id` or `scope`, so idgate must read
 * Okta's names.
 */
export function oktaAccessTokenClaims(_ctx: unknown, token: object, jwt: { payload: Record<string, unknown> }): void {
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

/** Like Okta: a refresh_token grant whose `scope` does not name openid gets no ID token. */
export function dropIdTokenUnlessOpenidAsked(provider: OidcProvider): void {
  provider.use(async (ctx, next) => {
    await next();
    const params = ctx.oidc?.params as { grant_type?: unknown; scope?: unknown } | undefined;
    if (ctx.oidc?.route !== 'token' || params?.grant_type !== 'refresh_token' || typeof ctx.body !== 'object' || ctx.body === null) return;
    if (!String(params.scope ?? '').split(' ').includes('openid')) delete (ctx.body as { id_token?: unknown }).id_token;
  });
}

/**
 * A client that requires DPoP asking without a proof: Okta answers invalid_dpop_proof, oidc-provider
 * invalid_grant (a bad proof is invalid_dpop_proof in both).
 */
export function answerMissingDpopProofAsOkta(provider: OidcProvider): void {
  provider.use(async (ctx, next) => {
    await next();
    const body = ctx.body as { error?: unknown } | undefined;
    if (ctx.oidc?.route !== 'token' || ctx.status !== 400 || body?.error !== 'invalid_grant') return;
    if (ctx.oidc.client?.dpopBoundAccessTokens && !ctx.get('dpop')) {
      ctx.body = { error: 'invalid_dpop_proof', error_description: 'The DPoP proof JWT header is missing.' };
    }
  });
}
