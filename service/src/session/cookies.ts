// idgate's cookies, the one place their format is written and read. The session cookie is
// express-session's: "s:" + the session id + "." + its HMAC under the newest of IDGATE_COOKIE_SECRETS
// (older secrets still verify), URI-encoded; express-session sets it at login (with the options below),
// a renewal sets it again (sessionCookie), logout clears it with the same options, and the check reads
// it (findCookie, unsignSessionId). The login-binding cookie ties a login's callback to its browser (pending-logins.ts).
import signature from 'cookie-signature';
import type { Config } from '../config.js';
import { sessionEndsAt } from './session-record.js';

type CookieSettings = Pick<Config, 'cookieName' | 'cookieSecrets' | 'cookieSecure' | 'cookieDomain' | 'sessionMaxAgeSeconds'>;

// Both cookies have Path=/ (a `__Host-` name requires it; HAProxy removes idgate's cookies before the app,
// so the binding cookie reaching every path leaks nothing). Only the session cookie may carry a Domain.
export function sessionCookieOptions(config: Pick<Config, 'cookieSecure' | 'cookieDomain' | 'sessionMaxAgeSeconds'>) {
  return {
    httpOnly: true,
    sameSite: 'lax' as const,
    secure: config.cookieSecure,
    domain: config.cookieDomain,
    path: '/',
    maxAge: config.sessionMaxAgeSeconds * 1000,
  };
}

/** The login-binding cookie (config.bindingCookieName): host-only, for as long as a login may take. */
export function bindingCookieOptions(config: Pick<Config, 'cookieSecure' | 'loginTtlSeconds'>) {
  return {
    httpOnly: true,
    sameSite: 'lax' as const,
    secure: config.cookieSecure,
    path: '/',
    maxAge: config.loginTtlSeconds * 1000,
  };
}

/** "name=value" of the session cookie for `sid`, signed with the newest secret: what a browser holding it sends. */
export function sessionCookiePair(config: Pick<Config, 'cookieName' | 'cookieSecrets'>, sid: string): string {
  return `${config.cookieName}=${encodeURIComponent(`s:${signature.sign(sid, config.cookieSecrets[0]!)}`)}`;
}

/** The session cookie as express-session writes it, signed with the newest secret. */
export function sessionCookie(config: CookieSettings, sid: string, createdAt: number): string {
  const expires = new Date(sessionEndsAt(config, createdAt)).toUTCString();
  const parts = [sessionCookiePair(config, sid), 'Path=/', `Expires=${expires}`, 'HttpOnly', 'SameSite=Lax'];
  if (config.cookieDomain) parts.push(`Domain=${config.cookieDomain}`);
  if (config.cookieSecure) parts.push('Secure');
  return parts.join('; ');
}

/** The first cookie called `name` in a Cookie header, URI-decoded as express-session does. */
export function findCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  let from = 0;
  while (from < header.length) {
    const end = header.indexOf(';', from);
    const pair = header.slice(from, end === -1 ? header.length : end);
    from = end === -1 ? header.length : end + 1;
    const eq = pair.indexOf('=');
    if (eq === -1 || pair.slice(0, eq).trim() !== name) continue;
    let value = pair.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    try {
      return decodeURIComponent(value);
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/**
 * A second cookie called `name` (ignoring letter case, as some frameworks compare) in a Cookie header. A
 * browser sends two when another site of the same domain planted one with a Domain or a longer Path: it
 * then sends the planted one first, so neither can be trusted to be the browser's own.
 */
export function hasSecondCookie(header: string, name: string): boolean {
  const lower = name.toLowerCase();
  let seen = 0;
  for (let from = 0; from < header.length; ) {
    let end = header.indexOf(';', from);
    if (end === -1) end = header.length;
    const pair = header.slice(from, end);
    from = end + 1;
    const eq = pair.indexOf('=');
    const key = (eq === -1 ? pair : pair.slice(0, eq)).trim();
    if (key.length === name.length && key.toLowerCase() === lower && ++seen === 2) return true;
  }
  return false;
}

/** Why a request with two session cookies has no session: the check's audit line and the browser endpoints' event say the same. */
export const TWO_SESSION_COOKIES_REASON = 'two idgate session cookies came (another site of the domain may have planted one); neither counts';

/**
 * The Cookie header without any cookie called `name` (ignoring letter case, as hasSecondCookie counts),
 * the other pairs trimmed and joined with "; "; undefined when nothing is left.
 */
export function withoutCookie(header: string, name: string): string | undefined {
  const lower = name.toLowerCase();
  const kept: string[] = [];
  for (const raw of header.split(';')) {
    const pair = raw.trim();
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const key = (eq === -1 ? pair : pair.slice(0, eq)).trim();
    if (key.toLowerCase() !== lower) kept.push(pair);
  }
  return kept.length === 0 ? undefined : kept.join('; ');
}

/** Session id from an express-session cookie value ("s:<id>.<signature>"), checked against every secret. */
export function unsignSessionId(value: string, secrets: readonly string[]): string | undefined {
  if (!value.startsWith('s:')) return undefined;
  const known = verifiedCookies.get(value);
  if (known !== undefined && known.secrets === secrets) return known.sid;
  for (const secret of secrets) {
    const sid = signature.unsign(value.slice(2), secret);
    if (sid !== false) {
      if (verifiedCookies.size >= 10_000) verifiedCookies.delete(verifiedCookies.keys().next().value!);
      verifiedCookies.set(value, { sid, secrets });
      return sid;
    }
  }
  return undefined;
}

/**
 * Cookie values whose signature was already checked (an HMAC per request is the check path's biggest
 * cost): the same string with the same secrets verifies the same way. Failures are never kept.
 */
const verifiedCookies = new Map<string, { sid: string; secrets: readonly string[] }>();
