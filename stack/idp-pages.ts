// The local IdP's own pages: the sign-in form and the consent step granted in code (the interaction routes
// under the issuer's path), the HTML helpers every page of the IdP uses, and the prompt=consent added to an
// authorization request that asks for offline_access.
import type http from 'node:http';
import type { Interaction, Provider as OidcProvider } from 'oidc-provider';
import { DEMO_USERS as USERS } from './idp-accounts.js';

export function escapeHtml(value: unknown): string {
  return String(value)
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');
}

/** A complete HTML page; `title` is escaped here, `bodyHtml` must already be safe. */
export function page(title: string, bodyHtml: string): string {
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

export function sendHtml(res: http.ServerResponse, status: number, html: string): void {
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

/**
 * oidc-provider follows OIDC Core 11 to the letter: `offline_access` is silently dropped from an
 * authorization request unless it carries `prompt=consent`, so no refresh token is issued. Okta (and
 * idgate, written against it) asks for offline_access without prompt=consent. To behave like Okta,
 * an authorization request with offline_access gets `consent` added to its prompt; the consent step
 * is then granted in code (see handleInteraction), so the user sees no extra page.
 * `prompt=none` (silent re-authentication) is left alone: there, offline_access is dropped as before.
 * Returns whether `query` was changed.
 */
export function addConsentPromptForOfflineAccess(query: URLSearchParams): boolean {
  const scopes = (query.get('scope') ?? '').split(' ');
  const prompts = (query.get('prompt') ?? '').split(' ').filter(Boolean);
  if (!scopes.includes('offline_access') || prompts.includes('consent') || prompts.includes('none')) return false;
  query.set('prompt', [...prompts, 'consent'].join(' '));
  return true;
}

/**
 * GET  <mount>/interaction/:uid        login form, or automatic consent
 * POST <mount>/interaction/:uid/login  checks the password
 */
export async function handleInteraction(
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
