// The names of idgate's two cookies: the session cookie's default, the login-binding cookie's name, and
// what makes a configured name one browsers would drop.

// A `__Host-` cookie is one the browser accepts only when it is Secure, has Path=/ and no Domain, so no
// sibling subdomain and no plain-http page can plant or overwrite it. It needs HTTPS, and it cannot be
// shared across subdomains: the plain name is the default when either is impossible.
const HOST_COOKIE_PREFIX = '__Host-';
export const HOST_COOKIE_NAME = `${HOST_COOKIE_PREFIX}idgate`;
export const PLAIN_COOKIE_NAME = '_idgate';

/** The session cookie's name when IDGATE_COOKIE_NAME is unset. */
export function defaultCookieName(cookies: { secure: boolean; domain: string | undefined }): string {
  return cookies.secure && cookies.domain === undefined ? HOST_COOKIE_NAME : PLAIN_COOKIE_NAME;
}

/**
 * The login-binding cookie's name: the session cookie's and `_login`. It is host-only whatever
 * IDGATE_COOKIE_DOMAIN says, so when cookies are Secure it is a `__Host-` cookie: a sibling subdomain
 * cannot plant one (a binding of its choosing would let it finish its own login in the victim's browser).
 */
export function bindingCookieNameFor(cookieName: string, secure: boolean): string {
  if (!secure) return `${cookieName}_login`;
  const base = cookieName.replace(/^__(host|secure)-/i, '').replace(/^_+/, '');
  return `${HOST_COOKIE_PREFIX}${base}_login`;
}

/**
 * What is wrong with a configured cookie name. Browsers drop a cookie whose name has a prefix it does not
 * satisfy (`__Host-`: Secure, Path=/, no Domain; `__Secure-`: Secure), and match prefixes in any letter
 * case: idgate would then set cookies that never come back, so such settings are refused here.
 */
export function cookieNameProblems(name: string, cookies: { secure: boolean; domain: string | undefined }): string[] {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name)) return [`IDGATE_COOKIE_NAME: letters, digits, "_", "-", "." only (e.g. ${HOST_COOKIE_NAME})`];
  const problems: string[] = [];
  const lower = name.toLowerCase();
  if (lower.startsWith('__host-')) {
    if (!cookies.secure) problems.push(`IDGATE_COOKIE_NAME: a __Host- cookie must be Secure, which IDGATE_INSECURE_HTTP=1 turns off (e.g. ${PLAIN_COOKIE_NAME})`);
    if (cookies.domain !== undefined) problems.push(`IDGATE_COOKIE_NAME: a __Host- cookie cannot carry a Domain; unset IDGATE_COOKIE_DOMAIN or use another name (e.g. ${PLAIN_COOKIE_NAME})`);
  } else if (lower.startsWith('__secure-') && !cookies.secure) {
    problems.push(`IDGATE_COOKIE_NAME: a __Secure- cookie must be Secure, which IDGATE_INSECURE_HTTP=1 turns off (e.g. ${PLAIN_COOKIE_NAME})`);
  }
  return problems;
}
