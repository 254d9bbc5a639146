// The few HTML pages idgate shows people. Every value is escaped; pages carry no script.

export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}code{background:#f3f3f3;padding:0 .25rem}button{font-size:1rem;padding:.4rem 1rem}</style>
</head><body>${body}</body></html>
`;
}

export function forbiddenPage(user: string, reason: string, requestId: string): string {
  return page('Access denied', `<h1>Access denied</h1>
<p>You are signed in as <strong>${escapeHtml(user)}</strong>, but this page is not open to you: ${escapeHtml(reason)}.</p>
<p>If you think you should have access, give your administrator this request id: <code>${escapeHtml(requestId)}</code>.</p>
<form method="post" action="/_auth/logout"><button type="submit">Sign in as someone else</button></form>`);
}

export function messagePage(title: string, message: string, link?: { href: string; text: string }): string {
  const action = link ? `<p><a href="${escapeHtml(link.href)}">${escapeHtml(link.text)}</a></p>` : '';
  return page(title, `<h1>${escapeHtml(title)}</h1><p>${escapeHtml(message)}</p>${action}`);
}

export function logoutPage(): string {
  return page('Sign out', `<h1>Sign out</h1>
<form method="post" action="/_auth/logout"><button type="submit">Sign out</button></form>`);
}

export function loggedOutPage(): string {
  return page('Signed out', `<h1>Signed out</h1><p>You have been signed out.</p><p><a href="/">Sign in again</a></p>`);
}

/**
 * The answer to a front-channel logout, shown inside the IdP's hidden iframe: nothing to click, nothing to
 * run; it only says what happened, for the rare person who opens it by hand.
 */
export function frontChannelLogoutPage(message: string): string {
  return page('Signed out', `<h1>Signed out</h1><p>${escapeHtml(message)}</p>`);
}
