// OpenID Connect Front-Channel Logout 1.0 (Okta's "Single Logout" for OIDC apps): when the user signs out
// at the IdP, the IdP's sign-out page loads `frontchannel_logout_uri?iss=…&sid=…` in a hidden iframe, and
// idgate ends every session that came from that IdP session. idgate's cookie is not needed (and, in a
// third-party iframe, usually not sent): `sid` names the sessions. Its limit is the browser's: where
// third-party iframes are blocked, or the user's browser never visits the IdP's sign-out page (an admin
// ending the session, a closed tab), nothing arrives; the Okta event hook (okta-events.ts) covers those.
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Logger } from '../audit.js';
import type { Config } from '../config.js';
import { ERRORS, describeError, isIdgateError, type IdgateErrorCode } from '../errors.js';
import type { Metrics } from '../metrics.js';
import type { SessionStore } from '../session/session-store.js';
import type { OidcRelyingParty } from '../idp/relying-party.js';
import { frontChannelLogoutPage } from '../pages.js';

export interface FrontChannelDependencies {
  readonly config: Config;
  readonly sessions: SessionStore;
  readonly oidc: OidcRelyingParty;
  readonly logger: Logger;
  readonly metrics: Metrics;
}

/** The path the IdP is given as `frontchannel_logout_uri` (under the public URL). */
export const FRONTCHANNEL_LOGOUT_PATH = '/_auth/frontchannel-logout';

/** Longest `sid` looked at: IdP session ids are short; anything longer names no session of ours. */
const MAX_SID_LENGTH = 256;

export function createFrontChannelLogoutRoutes(deps: FrontChannelDependencies): express.Router {
  const { config, logger, metrics } = deps;
  const router = express.Router();
  // Only the IdP's own pages may frame this page; nothing in it loads or runs.
  const headers = {
    'Cache-Control': 'no-store',
    'Content-Security-Policy': `default-src 'none'; style-src 'unsafe-inline'; frame-ancestors ${config.issuer.origin}`,
    'Referrer-Policy': 'no-referrer',
  };
  // A page, not JSON (the IdP shows it in a frame): its status is the code's in ERRORS, or 200 when done.
  const answer = (res: Response, outcome: IdgateErrorCode | 'done', message: string) => res.status(outcome === 'done' ? 200 : ERRORS[outcome].status).set(headers).type('html').send(frontChannelLogoutPage(message));

  router.get(FRONTCHANNEL_LOGOUT_PATH.slice('/_auth'.length), async (req, res) => {
    const params = new URL(req.originalUrl, 'http://frontchannel.invalid').searchParams;
    const iss = params.get('iss');
    const sid = params.get('sid');
    // The issuer as discovery spells it (what the IdP puts in `iss`), else as configured.
    const issuer = deps.oidc.metadata?.issuer ?? config.issuerId;
    if (iss !== issuer || !sid || sid.length > MAX_SID_LENGTH) {
      metrics.recordEvent('frontchannel_logout_rejected');
      logger.event('frontchannel_logout_rejected', { reason: iss !== issuer ? 'iss is not the configured issuer' : 'sid missing or too long' });
      answer(res, 'invalid_request', 'This sign-out request does not come from the identity provider idgate trusts; nothing was ended.');
      return;
    }
    const sessions = await deps.sessions.sessionsOfIdpSession(sid);
    const revoked = await deps.sessions.revoke(sessions);
    metrics.recordRevoked(revoked);
    metrics.recordEvent('frontchannel_logout');
    logger.event('frontchannel_logout', { subs: [...new Set(sessions.map((s) => s.subject))], sessions_revoked: revoked });
    answer(res, 'done', 'You have been signed out of the applications behind idgate.');
  });

  router.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    logger.log('error', 'front-channel logout failed', { path: req.path, error_code: isIdgateError(err) ? err.code : 'internal_error', error: describeError(err) });
    answer(res, 'internal_error', 'The sign-out could not be completed right now.');
  });

  return router;
}
