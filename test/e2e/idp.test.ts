// End-to-end tests of the demo IdP (stack/idp.ts), run as its own process the way the demo runs it.
// Needs a build first: `npx tsc -p tsconfig.build.json` (produces dist/stack/idp-main.js).
import { existsSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import * as oidc from 'openid-client';
import { idpListening, startProcess, waitForReport, type ManagedProcess } from '../../stack/processes.js';
import { waitForOutput } from '../../stack/wait.js';
import { alice, basicAuth, bob, machineClient } from '../support/identities.js';

const projectRoot = path.resolve(import.meta.dirname, '../..');
const idpEntry = path.join(projectRoot, 'dist/stack/idp-main.js');

let issuer: string;
let redirectUri: string;
let postLogoutRedirectUri: string;
let idp: ManagedProcess;
/** Stands in for idgate's back-channel logout endpoint; records every logout_token it receives. */
let backchannelReceiver: http.Server;
const receivedLogoutTokens: string[] = [];

beforeAll(async () => {
  if (!existsSync(idpEntry)) throw new Error(`${idpEntry} missing: run make build (or npx tsc -p tsconfig.build.json) first`);

  backchannelReceiver = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => { body += chunk.toString(); });
    req.on('end', () => {
      const token = new URLSearchParams(body).get('logout_token');
      if (token) receivedLogoutTokens.push(token);
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => backchannelReceiver.listen(0, '127.0.0.1', resolve));
  const receiverPort = (backchannelReceiver.address() as AddressInfo).port;

  // Nothing needs to listen at the redirect URIs: the tests read the Location headers pointing there.
  redirectUri = 'http://127.0.0.1:1/_auth/callback';
  postLogoutRedirectUri = 'http://127.0.0.1:1/signed-out';
  idp = startProcess('idp', process.execPath, [idpEntry], {
    cwd: projectRoot,
    env: {
      ...process.env,
      IDP_PORT: '0',
      IDP_REDIRECT_URIS: redirectUri,
      IDP_POST_LOGOUT_REDIRECT_URIS: postLogoutRedirectUri,
      IDP_BACKCHANNEL_LOGOUT_URI: `http://127.0.0.1:${receiverPort}/_auth/backchannel-logout`,
    },
  });
  // It binds port 0 and reports the issuer it built from the port it got.
  ({ issuer } = await waitForReport(idp, idpListening));
}, 120_000);

afterAll(async () => {
  await idp?.stop();
  await new Promise<void>((resolve) => (backchannelReceiver ? backchannelReceiver.close(() => resolve()) : resolve()));
});

// ---------------------------------------------------------------------------------------------
// Helpers: a minimal browser (cookie jar + manual redirects) and the idgate client.

/** Cookies by name; paths and domains are ignored, which is fine for a single test IdP. */
class CookieJar {
  private readonly cookies = new Map<string, string>();

  header(): string {
    return [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; ');
  }

  store(response: Response): void {
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(';');
      const name = pair.slice(0, pair.indexOf('=')).trim();
      const value = pair.slice(pair.indexOf('=') + 1).trim();
      const expired = attributes.some((attribute) => {
        const [key, attributeValue = ''] = attribute.trim().split('=');
        if (/^max-age$/i.test(key)) return Number(attributeValue) <= 0;
        if (/^expires$/i.test(key)) return Date.parse(attributeValue) <= Date.now();
        return false;
      });
      if (expired || value === '') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }
}

interface Page { url: string; status: number; html: string }
type Navigation = { arrivedAt: URL } | { page: Page };

/** One request with the jar's cookies, redirects not followed. */
async function send(jar: CookieJar, url: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  const cookie = jar.header();
  if (cookie) headers.set('cookie', cookie);
  const response = await fetch(url, { ...init, headers, redirect: 'manual' });
  jar.store(response);
  return response;
}

/**
 * Follows redirects like a browser (every redirect becomes a GET) until a URL starting with `destination`
 * is reached (not requested: it is the test's own callback) or a page is served.
 */
async function follow(jar: CookieJar, first: Response, firstUrl: string, destination: string): Promise<Navigation> {
  let response = first;
  let url = firstUrl;
  for (let hops = 0; hops < 10; hops++) {
    const location = response.headers.get('location');
    if (response.status < 300 || response.status >= 400 || !location) {
      return { page: { url, status: response.status, html: await response.text() } };
    }
    await response.body?.cancel();
    url = new URL(location, url).href;
    if (url.startsWith(destination)) return { arrivedAt: new URL(url) };
    response = await send(jar, url);
  }
  throw new Error(`too many redirects, last at ${url}`);
}

async function navigate(jar: CookieJar, url: string, destination: string): Promise<Navigation> {
  return follow(jar, await send(jar, url), url, destination);
}

function unescapeHtml(value: string): string {
  return value.replaceAll('&quot;', '"').replaceAll('&#39;', "'").replaceAll('&lt;', '<').replaceAll('&gt;', '>').replaceAll('&amp;', '&');
}

/** The first form on the page: its absolute action URL and its hidden inputs. */
function parseForm(page: Page): { action: string; hidden: Record<string, string> } {
  const form = /<form\b[^>]*>[\s\S]*?<\/form>/i.exec(page.html)?.[0];
  if (!form) throw new Error(`no form on ${page.url}:\n${page.html}`);
  const action = unescapeHtml(/\baction="([^"]*)"/i.exec(form)?.[1] ?? page.url);
  const hidden: Record<string, string> = {};
  for (const input of form.match(/<input\b[^>]*>/gi) ?? []) {
    if (!/type="hidden"/i.test(input)) continue;
    const name = /\bname="([^"]*)"/i.exec(input)?.[1];
    if (name) hidden[unescapeHtml(name)] = unescapeHtml(/\bvalue="([^"]*)"/i.exec(input)?.[1] ?? '');
  }
  return { action: new URL(action, page.url).href, hidden };
}

async function submitForm(jar: CookieJar, page: Page, fields: Record<string, string>, destination: string): Promise<Navigation> {
  const { action, hidden } = parseForm(page);
  const response = await send(jar, action, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ ...hidden, ...fields }).toString(),
  });
  return follow(jar, response, action, destination);
}

function expectPage(navigation: Navigation): Page {
  if (!('page' in navigation)) throw new Error(`expected a page, got redirected to ${navigation.arrivedAt.href}`);
  return navigation.page;
}

function expectArrival(navigation: Navigation): URL {
  if (!('arrivedAt' in navigation)) {
    throw new Error(`expected a redirect, got ${navigation.page.status} at ${navigation.page.url}:\n${navigation.page.html}`);
  }
  return navigation.arrivedAt;
}

function idgateClient(): Promise<oidc.Configuration> {
  return oidc.discovery(new URL(issuer), 'idgate', undefined, oidc.ClientSecretBasic('idgate-secret'), {
    execute: [oidc.allowInsecureRequests],
  });
}

interface AuthorizationRequest { url: URL; codeVerifier: string; state: string; nonce: string }

async function authorizationRequest(config: oidc.Configuration, scope: string): Promise<AuthorizationRequest> {
  const codeVerifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const nonce = oidc.randomNonce();
  const url = oidc.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope,
    code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: 'S256',
    state,
    nonce,
  });
  return { url, codeVerifier, state, nonce };
}

/** A full browser sign-in through the login form, then the code exchange idgate would do. */
async function signIn(username: string, password: string, scope = 'openid profile email groups offline_access') {
  const config = await idgateClient();
  const request = await authorizationRequest(config, scope);
  const jar = new CookieJar();
  const loginPage = expectPage(await navigate(jar, request.url.href, redirectUri));
  const callbackUrl = expectArrival(await submitForm(jar, loginPage, { login: username, password }, redirectUri));
  const tokens = await oidc.authorizationCodeGrant(config, callbackUrl, {
    pkceCodeVerifier: request.codeVerifier,
    expectedState: request.state,
    expectedNonce: request.nonce,
    idTokenExpected: true,
  });
  return { config, jar, tokens };
}

async function botToken(): Promise<string> {
  const response = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: {
      authorization: basicAuth(machineClient),
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope: machineClient.scope }).toString(),
  });
  expect(response.status).toBe(200);
  const body = (await response.json()) as { access_token: string; token_type: string };
  expect(body.token_type).toBe('Bearer');
  return body.access_token;
}

async function publishedKids(): Promise<string[]> {
  const response = await fetch(`${issuer}/jwks`);
  const { keys } = (await response.json()) as { keys: Array<{ kid: string; d?: string }> };
  for (const key of keys) expect(key.d).toBeUndefined(); // never the private part
  return keys.map((key) => key.kid);
}

// ---------------------------------------------------------------------------------------------

test('publishes a discovery document for the code flow, client credentials, logout and back-channel logout', async () => {
  const response = await fetch(`${issuer}/.well-known/openid-configuration`);
  expect(response.status).toBe(200);
  const metadata = (await response.json()) as Record<string, unknown>;
  expect(metadata.issuer).toBe(issuer);
  expect(metadata.authorization_endpoint).toBe(`${issuer}/auth`);
  expect(metadata.token_endpoint).toBe(`${issuer}/token`);
  expect(metadata.userinfo_endpoint).toBe(`${issuer}/me`);
  expect(metadata.jwks_uri).toBe(`${issuer}/jwks`);
  expect(metadata.end_session_endpoint).toBe(`${issuer}/session/end`);
  expect(metadata.backchannel_logout_supported).toBe(true);
  expect(metadata.backchannel_logout_session_supported).toBe(true);
  expect(metadata.scopes_supported).toEqual(expect.arrayContaining(['openid', 'profile', 'email', 'groups', 'offline_access', 'api:read']));
  expect(metadata.claims_supported).toEqual(expect.arrayContaining(['groups', 'email', 'preferred_username']));
  expect(metadata.grant_types_supported).toEqual(expect.arrayContaining(['authorization_code', 'refresh_token', 'client_credentials']));
  expect(metadata.code_challenge_methods_supported).toEqual(['S256']);
  expect(metadata.id_token_signing_alg_values_supported).toContain('RS256');
});

test('gives demo-bot an RS256 JWT access token for api://idgate with scope api:read, verifiable via the JWKS', async () => {
  const token = await botToken();
  const { payload, protectedHeader } = await jwtVerify(token, createRemoteJWKSet(new URL(`${issuer}/jwks`)), {
    issuer,
    audience: 'api://idgate',
    algorithms: ['RS256'],
  });
  expect(protectedHeader.typ).toBe('at+jwt');
  expect(payload.scope).toBe(machineClient.scope);
  expect(payload.client_id).toBe(machineClient.id);
  expect(payload.sub).toBe(machineClient.id);
  expect(typeof payload.exp).toBe('number');
});

test('refuses demo-bot a scope it does not have', async () => {
  const response = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: {
      authorization: basicAuth(machineClient),
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'openid' }).toString(),
  });
  expect(response.status).toBe(400);
  expect(((await response.json()) as { error: string }).error).toBe('invalid_scope');
});

test('signs alice in with code + PKCE + state + nonce; the ID token is thin and userinfo carries her groups', async () => {
  const { config, tokens } = await signIn('alice', 'alice');

  const idToken = tokens.claims()!;
  expect(idToken.sub).toBe('alice');
  expect(idToken.iss).toBe(issuer);
  expect(idToken.aud).toBe('idgate');
  expect(idToken.sid).toEqual(expect.any(String)); // present because back-channel logout needs it
  // Like Okta's org server: with the code flow, profile/email/groups claims come only from userinfo.
  expect(idToken.groups).toBeUndefined();
  expect(idToken.email).toBeUndefined();
  expect(idToken.preferred_username).toBeUndefined();

  // The access token is opaque (no resource requested) and is accepted by userinfo.
  expect(tokens.access_token.split('.')).toHaveLength(1);
  const userinfo = await oidc.fetchUserInfo(config, tokens.access_token, 'alice');
  expect(userinfo).toMatchObject({
    sub: alice.sub,
    preferred_username: alice.user,
    name: alice.name,
    email: alice.email,
    email_verified: true,
    groups: alice.groups,
  });
});

test('gives bob his own claims and groups', async () => {
  const { config, tokens } = await signIn('bob', 'bob');
  const userinfo = await oidc.fetchUserInfo(config, tokens.access_token, 'bob');
  expect(userinfo).toMatchObject({ sub: bob.sub, email: bob.email, groups: bob.groups });
});

test('issues a refresh token with offline_access, and the refresh_token grant returns new tokens', async () => {
  const { config, tokens } = await signIn('alice', 'alice');
  expect(tokens.refresh_token).toEqual(expect.any(String));
  expect(tokens.scope?.split(' ')).toEqual(expect.arrayContaining(['openid', 'groups', 'offline_access']));

  const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token!);
  expect(refreshed.access_token).not.toBe(tokens.access_token);
  expect(refreshed.claims()?.sub).toBe('alice');
  const userinfo = await oidc.fetchUserInfo(config, refreshed.access_token, 'alice');
  expect(userinfo.groups).toEqual(alice.groups);
});

test('issues no refresh token without offline_access', async () => {
  const { tokens } = await signIn('alice', 'alice', 'openid profile email groups');
  expect(tokens.refresh_token).toBeUndefined();
});

test('requires PKCE from idgate even though it is a confidential client', async () => {
  const config = await idgateClient();
  const withoutPkce = oidc.buildAuthorizationUrl(config, { redirect_uri: redirectUri, scope: 'openid', state: 'no-pkce' });
  const callback = expectArrival(await navigate(new CookieJar(), withoutPkce.href, redirectUri));
  expect(callback.searchParams.get('error')).toBe('invalid_request');
  expect(callback.searchParams.get('error_description')).toMatch(/PKCE/);
  expect(callback.searchParams.get('code')).toBeNull();
});

test('rejects a wrong password with the login form and an error, and does not sign the user in', async () => {
  const config = await idgateClient();
  const request = await authorizationRequest(config, 'openid groups');
  const jar = new CookieJar();
  const loginPage = expectPage(await navigate(jar, request.url.href, redirectUri));
  expect(loginPage.html).toMatch(/<input[^>]*name="login"/);
  expect(loginPage.html).toMatch(/<input[^>]*name="password"/);

  const rejected = expectPage(await submitForm(jar, loginPage, { login: 'alice', password: 'wrong' }, redirectUri));
  expect(rejected.status).toBe(401);
  expect(rejected.html).toContain('Wrong username or password.');
  expect(rejected.html).toMatch(/<input[^>]*name="password"/);

  // Starting over with the same browser still asks for a password: no session was created.
  const again = await authorizationRequest(config, 'openid groups');
  expect(expectPage(await navigate(jar, again.url.href, redirectUri)).html).toMatch(/name="password"/);
});

test('escapes what it echoes back into the login page', async () => {
  const config = await idgateClient();
  const request = await authorizationRequest(config, 'openid');
  const jar = new CookieJar();
  const loginPage = expectPage(await navigate(jar, request.url.href, redirectUri));
  const rejected = expectPage(await submitForm(jar, loginPage, { login: '"><script>alert(1)</script>', password: 'x' }, redirectUri));
  expect(rejected.html).not.toContain('<script>alert(1)</script>');
  expect(rejected.html).toContain('&quot;&gt;&lt;script&gt;');
});

test('RP-initiated logout ends the IdP session without a click and tells idgate over the back channel', async () => {
  const { config, jar, tokens } = await signIn('alice', 'alice');
  const sid = tokens.claims()!.sid;
  const endSessionUrl = oidc.buildEndSessionUrl(config, {
    id_token_hint: tokens.id_token!,
    post_logout_redirect_uri: postLogoutRedirectUri,
    state: 'bye',
  });

  // The confirmation page is an auto-submitting form that already says logout=yes.
  const confirmation = expectPage(await navigate(jar, endSessionUrl.href, postLogoutRedirectUri));
  expect(parseForm(confirmation).hidden.logout).toBe('yes');
  expect(confirmation.html).toContain('.submit()');
  const before = receivedLogoutTokens.length;
  const landing = expectArrival(await submitForm(jar, confirmation, {}, postLogoutRedirectUri));
  expect(landing.searchParams.get('state')).toBe('bye');

  // Back-channel logout reached our stand-in for idgate (on loopback) with a valid logout token.
  expect(receivedLogoutTokens.length).toBe(before + 1);
  const { payload } = await jwtVerify(receivedLogoutTokens.at(-1)!, createRemoteJWKSet(new URL(`${issuer}/jwks`)), {
    issuer,
    audience: 'idgate',
    typ: 'logout+jwt',
  });
  expect(payload.sub).toBe('alice');
  expect(payload.sid).toBe(sid);
  expect(payload.events).toEqual({ 'http://schemas.openid.net/event/backchannel-logout': {} });

  // The IdP session is gone: a new authorization asks for the password again.
  const again = await authorizationRequest(config, 'openid');
  expect(expectPage(await navigate(jar, again.url.href, redirectUri)).html).toMatch(/name="password"/);
});

test('rotating the signing key signs with the new kid, keeps the old one published until retired, and keeps sessions', async () => {
  const { config, tokens } = await signIn('alice', 'alice');
  const oldKid = decodeProtectedHeader(await botToken()).kid!;
  expect(await publishedKids()).toEqual([oldKid]);

  idp.child.kill('SIGUSR1');
  await waitForOutput(idp, 'idp signing key rotated', { timeoutMs: 10_000 });

  const tokenAfterRotation = await botToken();
  const newKid = decodeProtectedHeader(tokenAfterRotation).kid!;
  expect(newKid).not.toBe(oldKid);
  expect(await publishedKids()).toEqual([newKid, oldKid]);
  await jwtVerify(tokenAfterRotation, createRemoteJWKSet(new URL(`${issuer}/jwks`)), { issuer, audience: 'api://idgate' });

  // State survives the rotation: the refresh token from before still works, and new ID tokens use the new key.
  const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token!);
  expect(decodeProtectedHeader(refreshed.id_token!).kid).toBe(newKid);

  idp.child.kill('SIGUSR2');
  await waitForOutput(idp, 'idp old signing keys retired', { timeoutMs: 10_000 });
  expect(await publishedKids()).toEqual([newKid]);
  await jwtVerify(await botToken(), createRemoteJWKSet(new URL(`${issuer}/jwks`)), { issuer, audience: 'api://idgate' });
});

test('prints no oidc-provider warnings or notices (Node 20 runtime notice included)', () => {
  expect(idp.output()).not.toMatch(/oidc-provider (WARNING|NOTICE)/);
});
