// The browser endpoints under /_auth/: login, callback, logout, logged-out, userinfo. HAProxy routes them
// straight to idgate on the app's own host. express-session runs here (not on the check path): login
// regenerates the session id, logout destroys the session.
import crypto from 'node:crypto';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Logger } from '../audit.js';
import type { Config } from '../config.js';
import { ERRORS, IdgateError, describeError, isIdgateError, sendError } from '../errors.js';
import { IDP_ERROR_SHOWN, MAX_RETURN_URL_LENGTH } from '../limits.js';
import type { Metrics } from '../metrics.js';
import type { Clock } from '../clock.js';
import type { OidcRelyingParty } from '../idp/relying-party.js';
import { loggedOutPage, logoutPage, messagePage } from '../pages.js';
import { stripPort } from '../policy/policy.js';
import { verifyLogoutToken, type LogoutSubject } from './backchannel.js';
import { RemoteKeySet } from '../tokens/keys.js';
import { hashValue } from '../session/pending-logins.js';
import type { SessionStore } from '../session/session-store.js';
import { isPastMaxAge } from '../session/session-record.js';
import { bindingCookieOptions, findCookie, sessionCookieOptions } from '../session/cookies.js';

export interface BrowserDependencies {
  readonly config: Config;
  /** Pending logins and logout-token ids are kept here; back-channel logout finds and revokes sessions here. */
  readonly sessions: SessionStore;
  readonly oidc: OidcRelyingParty;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** A login's start, the session's creation and its tokens' issue, a session's maximum age. */
  readonly clock: Clock;
}

export function createBrowserRoutes(deps: BrowserDependencies): express.Router {
  const { config, oidc, logger, metrics } = deps;
  const router = express.Router();
  const bindingCookie = config.bindingCookieName;
  const postLogoutUrl = new URL('/_auth/logged-out', config.publicUrl).href;

  router.get('/login', async (req, res) => {
    const returnTo = safeReturnTo(req.query.rd, config);
    // The login must start on the public host: the binding cookie and the callback live there.
    if (req.host.toLowerCase() !== config.publicUrl.host) {
      res.redirect(302, `${new URL('/_auth/login', config.publicUrl).href}?rd=${encodeURIComponent(absoluteReturnTo(returnTo, req))}`);
      return;
    }
    let binding = findCookie(req.headers.cookie, bindingCookie);
    if (!binding || !/^[A-Za-z0-9_-]{43}$/.test(binding)) binding = crypto.randomBytes(32).toString('base64url');
    const login = await oidc.beginLogin();
    const saved = await deps.sessions.savePendingLogin(login.state, {
      codeVerifier: login.codeVerifier,
      nonce: login.nonce,
      returnTo,
      bindingHash: hashValue(binding),
      startedAt: deps.clock(),
    });
    if (!saved.saved) {
      // Anyone may start logins: at the overall bound, new ones wait rather than fill Redis.
      metrics.recordEvent('login_refused_busy');
      res.set('Retry-After', String(saved.retryAfterSeconds));
      throw IdgateError.of('too_many_logins', `pending logins at IDGATE_LOGIN_MAX_PENDING (${config.loginMaxPending})`);
    }
    for (let i = 0; i < saved.dropped; i++) metrics.recordEvent('pending_login_dropped');
    res.cookie(bindingCookie, binding, bindingCookieOptions(config));
    res.set('Cache-Control', 'no-store');
    res.redirect(302, login.authorizationUrl.href);
  });

  router.get('/callback', async (req, res) => {
    const params = new URL(req.originalUrl, 'http://callback.invalid').searchParams;
    const idpError = params.get('error');
    if (idpError) {
      metrics.recordEvent('login_failed');
      const shown = idpError.slice(0, IDP_ERROR_SHOWN);
      logger.event('login_failed', { reason: 'idp_error', idp_error: shown });
      // Not an IdgateError: the page shows the IdP's own words, and no code of idgate's describes them.
      sendPage(res, 401, 'Sign-in failed', `The identity provider answered: ${shown}.`, { href: '/_auth/login', text: 'Try again' });
      return;
    }
    const state = params.get('state');
    if (!state || !params.get('code')) throw new IdgateError('invalid_request', 'the sign-in answer lacks its code or state');
    // Checked before anything is spent: a callback without this browser's binding leaves the login alone.
    const claim = await deps.sessions.takePendingLogin(state, findCookie(req.headers.cookie, bindingCookie));
    if (claim.outcome === 'unknown') throw IdgateError.of('login_expired');
    if (claim.outcome === 'other_browser') throw IdgateError.of('login_mismatch');
    const { pending } = claim;
    const callbackUrl = new URL(config.redirectUrl.href);
    callbackUrl.search = params.toString();
    const stored = await oidc.completeLogin(callbackUrl, { state, codeVerifier: pending.codeVerifier, nonce: pending.nonce }, deps.clock());
    // A fresh session id at login: whatever id the browser had before is not the one it gets now.
    await new Promise<void>((resolve, reject) => req.session.regenerate((err) => (err ? reject(err) : resolve())));
    req.session.idgate = stored;
    await new Promise<void>((resolve, reject) => req.session.save((err) => (err ? reject(err) : resolve())));
    metrics.recordEvent('login_ok');
    logger.event('login', { sub: stored.subject, user: stored.user, request_id: requestIdOf(req), client_ip: req.ip });
    res.set('Cache-Control', 'no-store');
    res.redirect(302, pending.returnTo);
  });

  router.get('/logout', (_req, res) => {
    res.set('Cache-Control', 'no-store').type('html').send(logoutPage());
  });

  router.post('/logout', async (req, res) => {
    if (!isSameOriginLogout(req.headers, requestOriginOf(req), config)) {
      // A page, not an error code: only a browser tricked by another site gets here, and nothing switches on it.
      sendPage(res, 403, 'Sign-out refused', 'The sign-out request came from another site.');
      return;
    }
    const stored = req.session?.idgate;
    if (stored) {
      await new Promise<void>((resolve, reject) => req.session.destroy((err) => (err ? reject(err) : resolve())));
      metrics.recordEvent('logout');
      metrics.recordRevoked(1);
      logger.event('logout', { sub: stored.subject, user: stored.user, request_id: requestIdOf(req), client_ip: req.ip });
      if (stored.refreshToken) await revokeRefreshToken(deps, stored.refreshToken, { sub: stored.subject, request_id: requestIdOf(req) });
    }
    // Cleared with the attributes it was set with: a browser replaces a __Host- cookie only with a valid one.
    res.clearCookie(config.cookieName, sessionCookieOptions(config));
    res.set('Cache-Control', 'no-store');
    // Without a session there is no id_token_hint, and an end-session request without one may make the IdP
    // ask the user to confirm, or sign them out of a session that is not theirs to end: idgate's own page.
    res.redirect(303, (stored && oidc.endSessionUrl(stored.idToken, postLogoutUrl)?.href) || postLogoutUrl);
  });

  // The IdP's keys for logout tokens: created once discovery has told us where they are.
  let logoutKeys: RemoteKeySet | undefined;
  router.post('/backchannel-logout', express.urlencoded({ extended: false, limit: '16kb' }), async (req, res) => {
    res.set('Cache-Control', 'no-store');
    const token = (req.body as Record<string, unknown> | undefined)?.logout_token;
    const metadata = oidc.metadata;
    if (!metadata?.jwks_uri) throw new IdgateError('idp_unavailable', 'the identity provider is not reachable yet');
    if (typeof token !== 'string' || token === '') {
      sendError(res, 'invalid_request', 'logout_token is required', { reasonField: 'error_description' });
      return;
    }
    logoutKeys ??= new RemoteKeySet(new URL(metadata.jwks_uri), { cooldownMs: config.jwksCooldownSeconds * 1000, maxAgeMs: config.jwksCacheSeconds * 1000 });
    let who: LogoutSubject;
    try {
      who = await verifyLogoutToken(
        token,
        { issuer: metadata.issuer, clientId: config.clientId, keys: logoutKeys, algorithms: metadata.id_token_signing_alg_values_supported?.filter((a) => a !== 'none' && !a.startsWith('HS')) ?? ['RS256'], clockSkewSeconds: config.clockSkewSeconds },
        deps.sessions,
      );
    } catch (err) {
      if (isIdgateError(err) && err.code === 'invalid_request') {
        metrics.recordEvent('backchannel_logout_rejected');
        logger.event('backchannel_logout_rejected', { reason: err.expose, detail: err.detail });
        sendError(res, 'invalid_request', err.expose, { reasonField: 'error_description' });
        return;
      }
      throw err;
    }
    const sessions = who.sid
      ? (await deps.sessions.sessionsOfIdpSession(who.sid)).filter((s) => !who.sub || s.subject === who.sub)
      : await deps.sessions.list({ subject: who.sub! });
    const revoked = await deps.sessions.revoke(sessions);
    metrics.recordRevoked(revoked);
    metrics.recordEvent('backchannel_logout');
    logger.event('backchannel_logout', { sub: who.sub, sessions_revoked: revoked });
    res.status(200).end();
  });

  router.get('/logged-out', (_req, res) => {
    res.set('Cache-Control', 'no-store').type('html').send(loggedOutPage());
  });

  router.get('/userinfo', (req, res) => {
    const stored = req.session?.idgate;
    res.set('Cache-Control', 'no-store');
    if (!stored || isPastMaxAge(config, stored, deps.clock())) {
      sendError(res, 'no_credentials', 'no session');
      return;
    }
    res.json({ user: stored.user, email: stored.email ?? null, subject: stored.subject, groups: stored.groups, issuer: stored.issuer });
  });

  router.use((_req: Request, res: Response) => {
    sendPage(res, ERRORS.not_found.status, 'Not found', asSentence(ERRORS.not_found.text));
  });

  router.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const error = isIdgateError(err) ? err : new IdgateError('login_failed', 'something went wrong while signing you in', describeError(err));
    if (error.code === 'login_failed' || error.code === 'login_mismatch') metrics.recordEvent('login_failed');
    logger.log(error.status >= 500 ? 'error' : 'warn', 'browser endpoint failed', { path: req.path, error_code: error.code, detail: error.detail, request_id: requestIdOf(req) });
    const retry = error.code === 'login_expired' || error.code === 'login_mismatch' || error.code === 'login_failed' ? { href: '/_auth/login', text: 'Sign in again' } : undefined;
    const unavailable = ERRORS[error.code].wire === 'unavailable';
    sendPage(res, error.status, unavailable ? 'Temporarily unavailable' : 'Sign-in problem', error.expose, retry);
  });

  return router;
}

/**
 * Logout ends the grant at the IdP too (RFC 7009): a refresh token left valid would outlive the sign-out
 * wherever it leaked. The session is already gone either way: a failure is logged (never the token) and
 * counted, and the logout completes.
 */
async function revokeRefreshToken(deps: BrowserDependencies, refreshToken: string, fields: { sub: string; request_id: string | undefined }): Promise<void> {
  try {
    await deps.oidc.revokeRefreshToken(refreshToken);
  } catch (err) {
    deps.metrics.recordEvent('refresh_token_revocation_failed');
    const error = isIdgateError(err) ? `${err.code}: ${err.detail ?? err.expose}` : describeError(err);
    deps.logger.log('warn', 'the IdP did not revoke the refresh token at logout; the session is ended all the same', { ...fields, error });
  }
}

function sendPage(res: Response, status: number, title: string, message: string, link?: { href: string; text: string }): void {
  res.status(status).set('Cache-Control', 'no-store').type('html').send(messagePage(title, message, link));
}

/** A table text as a page's sentence: "there is no such idgate page" → "There is no such idgate page." */
function asSentence(text: string): string {
  return `${text.charAt(0).toUpperCase()}${text.slice(1)}.`;
}

/** HAProxy's request id, when it is one (the check's own form): never a client's arbitrary text in a log line. */
export function requestIdOf(req: Request): string | undefined {
  const id = req.headers['x-request-id'];
  return typeof id === 'string' && /^[A-Za-z0-9._:@/+=-]{1,128}$/.test(id) ? id : undefined;
}

/**
 * Where login may send the browser back to: a relative path, or an absolute http(s) URL on an allowed
 * host. Anything else (other hosts, protocol-relative "//evil", backslashes, javascript:) becomes "/".
 */
export function safeReturnTo(rd: unknown, config: Config): string {
  if (typeof rd !== 'string' || rd === '' || rd.length > MAX_RETURN_URL_LENGTH) return '/';
  if (/[\x00-\x20\\\x7f]/.test(rd)) return '/';
  if (rd.startsWith('/')) return rd.startsWith('//') ? '/' : rd;
  let url: URL;
  try {
    url = new URL(rd);
  } catch {
    return '/';
  }
  if (url.protocol !== 'https:' && !(config.insecureHttp && url.protocol === 'http:')) return '/';
  if (url.username || url.password) return '/';
  return isAllowedHost(url.host, config) ? url.href : '/';
}

export function isAllowedHost(host: string, config: Config): boolean {
  const hostname = stripPort(host.toLowerCase());
  return config.allowedRedirectHosts.some((allowed) => {
    if (allowed.startsWith('*.')) return hostname.endsWith(allowed.slice(1)) && hostname.length > allowed.length - 1;
    return allowed === host.toLowerCase() || allowed === hostname;
  });
}

function absoluteReturnTo(returnTo: string, req: Request): string {
  return returnTo.startsWith('/') ? `${req.protocol}://${req.host}${returnTo}` : returnTo;
}

/**
 * Logout is a state change: refuse it unless the browser says it comes from idgate's own pages. An
 * `Origin` must be, character for character, the public origin or the origin the request itself was
 * sent to when that host is one idgate serves (its sign-out forms post to /_auth/logout on the host the
 * user is on, which with IDGATE_COOKIE_DOMAIN may be any allowed app host). Nothing else: not a sibling
 * subdomain, not another allowed host, not `null` (sandboxed frames, file: pages), not a malformed value.
 * Without `Origin`, `Sec-Fetch-Site` must not name another site.
 */
export function isSameOriginLogout(headers: { origin?: string | undefined; 'sec-fetch-site'?: string | string[] | undefined }, requestOrigin: string, config: Config): boolean {
  const origin = headers.origin;
  if (origin !== undefined) {
    if (origin === config.publicUrl.origin) return true;
    return requestOrigin !== '' && origin === requestOrigin && isAllowedHost(new URL(requestOrigin).host, config);
  }
  const site = headers['sec-fetch-site'];
  return site === undefined || site === 'same-origin' || site === 'none';
}

/** The origin a request was sent to, as the browser writes it in `Origin` (no default port); "" if unusable. */
function requestOriginOf(req: Request): string {
  if (req.protocol !== 'http' && req.protocol !== 'https') return '';
  try {
    return new URL(`${req.protocol}://${req.host}`).origin;
  } catch {
    return '';
  }
}
