// The key paths once more, against the local IdP's okta profile (IDP_PROFILE=okta, `make demo IDP=okta`),
// through the real stack (HAProxy, idgate, Redis): each Okta trait is checked to be really there, and idgate
// is checked to cope with it. Sign-in without a `groups` scope (groups from userinfo, the ID token thin),
// Okta's access-token claims (cid, uid, scp) read by the policy, dpop-bot refused without a proof
// (invalid_dpop_proof) and asked the IdP's DPoP nonce first (use_dpop_nonce), opaque tokens introspected, refresh-token rotation with reuse detection after the
// grace period (the session then ends: a sign-in, never a 403), an ID token on refresh only when openid is
// asked, and logout.
import crypto from 'node:crypto';
import * as jose from 'jose';
import { startStack, type Stack } from '../../stack/stack.js';
import { pause } from '../../stack/wait.js';
import { Browser, signIn } from '../support/browser.js';
import { storedTokensOnStack } from '../support/planted-sessions.js';
import { dpopBoundToken, dpopKey, dpopProof } from '../support/dpop.js';
import { alice, basicAuth, bob, dpopClient, machineClient, opaqueClient } from '../support/identities.js';

const TOKEN_TTL_S = 4;
// The two redeems within the grace period must fall inside it also on a loaded machine.
const GRACE_S = 2;
const COOKIE_SECRET = 'cookie-secret-'.padEnd(40, 'c');
const idgateClient = { id: 'idgate', secret: 'idgate-secret' };
let stack: Stack;

beforeAll(async () => {
  stack = await startStack({
    spoeAgent: false,
    idgateClock: 'test',
    idpProfile: 'okta',
    idpEnv: { IDP_ACCESS_TOKEN_TTL: String(TOKEN_TTL_S), IDP_REFRESH_REUSE_GRACE: String(GRACE_S) },
    idgateEnv: { IDGATE_COOKIE_SECRETS: COOKIE_SECRET },
  });
}, 60_000);

afterAll(async () => {
  await stack?.stop();
});

/** The IdP's tokens idgate keeps for this browser's session. */
const storedSession = (browser: Browser) => storedTokensOnStack(stack.ports.redis, COOKIE_SECRET, browser);

/** A token request at the IdP as `client`; its status and JSON body. */
async function tokenRequest(client: { id: string; secret: string }, params: Record<string, string>, headers: Record<string, string> = {}) {
  const res = await fetch(`${stack.issuer}/token`, {
    method: 'POST',
    headers: { authorization: basicAuth(client), 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(params).toString(),
  });
  return { status: res.status, body: (await res.json()) as Record<string, string | undefined> };
}

function redeem(refreshToken: string, scope?: string) {
  return tokenRequest(idgateClient, { grant_type: 'refresh_token', refresh_token: refreshToken, ...(scope === undefined ? {} : { scope }) });
}

function callApi(authorization: string, extra: Record<string, string> = {}): Promise<Response> {
  return fetch(`${stack.frontUrl}/api/hello`, { headers: { accept: 'application/json', authorization, ...extra } });
}

/** A redirect to the IdP's sign-in (through idgate's /_auth/login), as a signed-out browser gets. */
async function sentToSignIn(browser: Browser): Promise<boolean> {
  const res = await browser.fetch(`${stack.frontUrl}/`);
  await res.arrayBuffer();
  return res.status === 302 && /\/_auth\/login|\/auth\?/.test(res.headers.get('location') ?? '');
}

describe('sign-in without a groups scope', () => {
  test('the IdP refuses the groups scope to idgate with invalid_scope, as Okta\'s default server does', async () => {
    const auth = new URL(`${stack.issuer}/auth`);
    auth.search = new URLSearchParams({
      client_id: 'idgate', response_type: 'code', scope: 'openid groups', redirect_uri: `${stack.frontUrl}/_auth/callback`,
      state: 's', code_challenge: crypto.randomBytes(32).toString('base64url'), code_challenge_method: 'S256',
    }).toString();
    const res = await fetch(auth, { redirect: 'manual' });
    const location = new URL(res.headers.get('location')!);
    expect(location.searchParams.get('error')).toBe('invalid_scope');
  });

  test('alice signs in through HAProxy; her ID token is thin and idgate reads her groups from userinfo', async () => {
    const browser = new Browser();
    const { res } = await signIn(browser, `${stack.frontUrl}/admin/`, alice.user);
    expect(res.status).toBe(200);
    const { idToken } = (await storedSession(browser))!;
    const claims = jose.decodeJwt(idToken);
    expect(claims.groups).toBeUndefined();
    expect(claims.email).toBeUndefined();
    const me = (await (await browser.fetch(`${stack.frontUrl}/_auth/userinfo`)).json()) as { groups: string[] };
    expect(me.groups).toEqual(alice.groups);
  });
});

describe('bearer tokens with Okta\'s claims', () => {
  test('a machine token carries cid and scp (no client_id, no scope) and passes the policy\'s api:read', async () => {
    const { status, body } = await tokenRequest(machineClient, { grant_type: 'client_credentials', scope: machineClient.scope });
    expect(status).toBe(200);
    const claims = jose.decodeJwt(body.access_token!);
    expect(claims).toMatchObject({ cid: machineClient.id, scp: [machineClient.scope], sub: machineClient.id, ver: 1 });
    expect(claims.client_id).toBeUndefined();
    expect(claims.scope).toBeUndefined();
    expect(claims.uid).toBeUndefined();
    expect((await callApi(`Bearer ${body.access_token}`)).status).toBe(200);
  });

  test('a user\'s token for the API carries uid, cid and scp, and idgate takes it', async () => {
    // A code flow of idgate's client with resource=api://idgate, in a browser signed in at the IdP.
    const browser = new Browser();
    await signIn(browser, `${stack.frontUrl}/`, bob.user);
    const verifier = crypto.randomBytes(32).toString('base64url');
    const redirectUri = `${stack.frontUrl}/_auth/callback`;
    const auth = new URL(`${stack.issuer}/auth`);
    auth.search = new URLSearchParams({
      client_id: 'idgate', response_type: 'code', scope: `openid ${machineClient.scope}`, resource: machineClient.audience, redirect_uri: redirectUri,
      state: 's', code_challenge: crypto.createHash('sha256').update(verifier).digest('base64url'), code_challenge_method: 'S256',
    }).toString();
    let url = auth;
    for (let hop = 0; hop < 10 && !url.href.startsWith(redirectUri); hop++) {
      const res = await browser.fetch(url);
      await res.arrayBuffer();
      expect(res.status).toBeGreaterThanOrEqual(300);
      url = new URL(res.headers.get('location')!, url);
    }
    const code = url.searchParams.get('code');
    expect(code).toEqual(expect.any(String));
    const { status, body } = await tokenRequest(idgateClient, { grant_type: 'authorization_code', code: code!, redirect_uri: redirectUri, code_verifier: verifier, resource: machineClient.audience });
    expect(status).toBe(200);
    const claims = jose.decodeJwt(body.access_token!);
    expect(claims).toMatchObject({ cid: 'idgate', uid: expect.stringMatching(/^00u\w{17}$/), scp: [machineClient.scope], sub: bob.sub, aud: machineClient.audience });
    expect(claims.client_id).toBeUndefined();
    const res = await callApi(`Bearer ${body.access_token}`);
    expect(res.status).toBe(200);
    // idgate names the user by Okta's uid and the app by cid.
    const { headers } = (await res.json()) as { headers: Record<string, string> };
    expect(headers).toMatchObject({ 'x-auth-subject': claims.uid, 'x-auth-client': 'idgate', 'x-auth-scopes': machineClient.scope });
  });

  test('opaque-bot\'s opaque token is checked by introspection; an unknown one is refused', async () => {
    const { status, body } = await tokenRequest(opaqueClient, { grant_type: 'client_credentials', scope: opaqueClient.scope });
    expect(status).toBe(200);
    expect(body.access_token!.split('.')).toHaveLength(1);
    expect((await callApi(`Bearer ${body.access_token}`)).status).toBe(200);
    expect((await callApi(`Bearer ${crypto.randomBytes(32).toString('base64url')}`)).status).toBe(401);
  });
});

describe('DPoP for the service app', () => {
  test('dpop-bot without a proof is refused by the IdP with invalid_dpop_proof', async () => {
    const { status, body } = await tokenRequest(dpopClient, { grant_type: 'client_credentials', scope: dpopClient.scope });
    expect(status).toBe(400);
    expect(body.error).toBe('invalid_dpop_proof');
  });

  test('its token endpoint asks a DPoP nonce first, as Okta does: 400 use_dpop_nonce with a DPoP-Nonce header', async () => {
    const key = await dpopKey();
    const url = `${stack.issuer}/token`;
    const res = await fetch(url, {
      method: 'POST',
      headers: { authorization: basicAuth(dpopClient), 'content-type': 'application/x-www-form-urlencoded', dpop: await dpopProof(key, 'POST', url) },
      body: new URLSearchParams({ grant_type: 'client_credentials', scope: dpopClient.scope }).toString(),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error?: string }).error).toBe('use_dpop_nonce');
    expect(res.headers.get('dpop-nonce')).toMatch(/^[A-Za-z0-9_-]{20,}$/);
  });

  test('with a proof (and the IdP\'s nonce in a second one) it gets a bound token, good with a proof and never as a plain bearer token', async () => {
    const key = await dpopKey();
    const asked: string[] = [];
    const token = await dpopBoundToken(stack.issuer, key, dpopClient, (nonce) => asked.push(nonce));
    expect(asked).toHaveLength(1);
    expect(jose.decodeJwt(token)).toMatchObject({ cid: dpopClient.id, scp: [dpopClient.scope], cnf: { jkt: key.thumbprint } });
    const url = `${stack.frontUrl}/api/hello`;
    expect((await callApi(`DPoP ${token}`, { dpop: await dpopProof(key, 'GET', url, { token }) })).status).toBe(200);
    expect((await callApi(`Bearer ${token}`)).status).toBe(401);
  });
});

describe('refresh-token rotation', () => {
  test('idgate renews the session with a rotated refresh token', async () => {
    const browser = new Browser();
    await signIn(browser, `${stack.frontUrl}/`, alice.user);
    const before = (await storedSession(browser))!.refreshToken;
    // Due for renewal at half the tokens' lifetime, on idgate's clock, which the test moves.
    await stack.advanceIdgateClock((TOKEN_TTL_S / 2) * 1000 + 300);
    expect((await browser.fetch(`${stack.frontUrl}/after-renewal`)).status).toBe(200);
    const after = (await storedSession(browser))!.refreshToken;
    expect(after).not.toBe(before);
    // The old one is spent: past the grace period, redeeming it is reuse. The grace is the IdP's, on the
    // machine's clock (the local IdP's store): that one the test cannot move, so it waits.
    await pause(GRACE_S * 1000 + 200);
    expect((await redeem(before)).body.error).toBe('invalid_grant');
  });

  test('a refresh gets an ID token only when it asks for openid, as idgate does', async () => {
    const browser = new Browser();
    await signIn(browser, `${stack.frontUrl}/`, bob.user);
    const withoutScope = await redeem((await storedSession(browser))!.refreshToken);
    expect(withoutScope.status).toBe(200);
    expect(withoutScope.body.id_token).toBeUndefined();
    const withOpenid = await redeem(withoutScope.body.refresh_token!, 'openid profile email offline_access');
    expect(withOpenid.status).toBe(200);
    expect(jose.decodeJwt(withOpenid.body.id_token!)).toMatchObject({ sub: bob.sub });
  });

  test('reuse within the grace period succeeds; after it, invalid_grant revokes the grant and idgate sends the user to sign in', async () => {
    const browser = new Browser();
    await signIn(browser, `${stack.frontUrl}/`, alice.user);
    const signedInAt = Date.now();
    const held = (await storedSession(browser))!.refreshToken;
    // Someone else redeems the session's refresh token (as a thief, or a racing replica would)...
    const first = await redeem(held);
    expect(first.status).toBe(200);
    // ...twice, within the grace period: Okta lets that through.
    const second = await redeem(held);
    expect(second.status).toBe(200);
    // idgate redeems the same token when the session is due for renewal, after the grace period: reuse.
    // The grace is the IdP's, on the machine's clock: the test waits it out, then moves idgate's clock
    // until the session is due (what the wait has not already done of it).
    await pause(GRACE_S * 1000 + 300);
    const ahead = signedInAt + (TOKEN_TTL_S / 2) * 1000 + 300 - Date.now();
    if (ahead > 0) await stack.advanceIdgateClock(ahead);
    expect(await sentToSignIn(browser)).toBe(true);
    // The whole grant is revoked: the tokens the others got are dead too.
    expect((await redeem(first.body.refresh_token!)).body.error).toBe('invalid_grant');
    expect((await redeem(second.body.refresh_token!)).body.error).toBe('invalid_grant');
  });
});

describe('logout', () => {
  test('signs out through the IdP and ends the session', async () => {
    const browser = new Browser();
    await signIn(browser, `${stack.frontUrl}/`, alice.user);
    const res = await browser.fetch(`${stack.frontUrl}/_auth/logout`, { method: 'POST', headers: { origin: stack.frontUrl } });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toMatch(new RegExp(`^${stack.issuer}/session/end\\?.*id_token_hint=`));
    expect(await sentToSignIn(browser)).toBe(true);
  });
});
