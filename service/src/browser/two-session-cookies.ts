// The browser endpoints judge two idgate session cookies as the check does: as no session. express-session
// reads the first cookie of its name, and a browser sends a planted one (another site of the domain, a
// Domain cookie or a longer Path) first: userinfo would then show, and logout end, the planter's session.
// This runs before the session middleware and takes every session cookie out of the request, so
// express-session sees none: userinfo answers as without a session, logout ends no session (it cannot tell
// which one is this browser's own) and still clears the browser's cookie and redirects.
import type { NextFunction, Request, Response } from 'express';
import type { Logger } from '../audit.js';
import type { Config } from '../config.js';
import { requestIdOf } from './login.js';
import { hasSecondCookie, TWO_SESSION_COOKIES_REASON, withoutCookie } from '../session/cookies.js';

export function refuseTwoSessionCookies(config: Pick<Config, 'cookieName'>, logger: Logger) {
  return (req: Request, _res: Response, next: NextFunction): void => {
    const header = req.headers.cookie;
    if (header !== undefined && hasSecondCookie(header, config.cookieName)) {
      const rest = withoutCookie(header, config.cookieName);
      if (rest === undefined) delete req.headers.cookie;
      else req.headers.cookie = rest;
      logger.event('session_cookies_refused', { reason: TWO_SESSION_COOKIES_REASON, method: req.method, path: req.baseUrl + req.path, request_id: requestIdOf(req) ?? null, client_ip: req.ip });
    }
    next();
  };
}
