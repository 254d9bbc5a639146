// The local IdP's front-channel logout (OpenID Connect Front-Channel Logout 1.0).
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
import { randomBytes } from 'node:crypto';
import type { KoaContextWithOIDC, Provider as OidcProvider } from 'oidc-provider';
import { escapeHtml } from './idp-pages.js';
import type { InMemoryStore } from './idp-store.js';

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
export async function rememberFrontChannelLogouts(ctx: KoaContextWithOIDC, store: InMemoryStore, mountPath: string): Promise<void> {
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
export async function takeFrontChannelLogouts(ctx: KoaContextWithOIDC, store: InMemoryStore, mountPath: string): Promise<string[]> {
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
export function includeSidForFrontChannelLogout(provider: OidcProvider): void {
  const clientPrototype = provider.Client.prototype as unknown as { includeSid(this: FrontChannelClientMetadata): boolean };
  const includeSid = clientPrototype.includeSid;
  clientPrototype.includeSid = function includeSidOrFrontChannelSid(this: FrontChannelClientMetadata) {
    return Boolean(includeSid.call(this)) || Boolean(this.frontchannel_logout_uri && this.frontchannel_logout_session_required);
  };
}

/** The hidden iframes of the "Signed out" page, one per noted URL. */
export function frontChannelLogoutFrames(uris: string[]): string {
  if (uris.length === 0) return '';
  const frames = uris.map((uri) => `<iframe src="${escapeHtml(uri)}" title="Signing out of an application" hidden></iframe>`);
  return `\n<p>Signing you out of the applications you used with it too.</p>\n${frames.join('\n')}`;
}
