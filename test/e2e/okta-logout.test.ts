// Revocation that follows Okta, against the real stack (HAProxy, idgate, Redis, the local IdP): logout
// revokes the refresh token at the IdP (RFC 7009); Okta event hook deliveries (the recorded shapes in
// test/fixtures/okta-events) end the sessions of the user they name; a front-channel logout ends the
// sessions of one IdP session. Every request goes through HAProxy, as Okta's and the browser's would.
import fs from 'node:fs';
import path from 'node:path';
import * as jose from 'jose';
import { startStack, type Stack } from '../../stack/stack.js';
import { Browser, signIn } from '../support/browser.js';
import { storedTokensOnStack } from '../support/planted-sessions.js';
import { alice, bob } from '../support/identities.js';
import { probeUntil, waitUntil } from '../../stack/wait.js';

const HOOK_SECRET = 'okta-hook-secret-'.padEnd(40, 'h');
const COOKIE_SECRET = 'cookie-secret-'.padEnd(40, 'c');
const fixtures = path.resolve(import.meta.dirname, '../fixtures/okta-events');
let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ spoeAgent: false, idgateEnv: { IDGATE_OKTA_EVENT_HOOK_SECRET: HOOK_SECRET, IDGATE_COOKIE_SECRETS: COOKIE_SECRET } });
}, 60_000);

afterAll(async () => {
  await stack?.stop();
});

/** The IdP's tokens idgate keeps for this browser's session. */
const storedSession = (browser: Browser) => storedTokensOnStack(stack.ports.redis, COOKIE_SECRET, browser);

/** The app through HAProxy: 200 while signed in, a redirect to sign-in once the session is gone. */
async function signedIn(browser: Browser): Promise<boolean> {
  return (await browser.fetch(`${stack.frontUrl}/`)).status === 200;
}

/** Whether the IdP still takes a token (RFC 7662, asked as idgate's client). */
async function activeAtIdp(token: string): Promise<boolean> {
  const metadata = (await (await fetch(`${stack.issuer}/.well-known/openid-configuration`)).json()) as { introspection_endpoint: string };
  const res = await fetch(metadata.introspection_endpoint, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from('idgate:idgate-secret').toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token, token_type_hint: 'refresh_token' }),
  });
  return ((await res.json()) as { active: boolean }).active;
}

function idgateOutput(): string {
  return stack.processes.idgate!.output();
}

describe('logout', () => {
  test('revokes the refresh token at the IdP, then signs out through the IdP', async () => {
    const browser = new Browser();
    await signIn(browser, `${stack.frontUrl}/`, alice.user);
    const { refreshToken } = (await storedSession(browser))!;
    expect(await activeAtIdp(refreshToken)).toBe(true);
    const res = await browser.fetch(`${stack.frontUrl}/_auth/logout`, { method: 'POST', headers: { origin: stack.frontUrl } });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toMatch(new RegExp(`^${stack.issuer}/session/end\\?.*id_token_hint=`));
    expect(await activeAtIdp(refreshToken)).toBe(false);
    expect(await signedIn(browser)).toBe(false);
  });

  test('without a session it ends on idgate\'s signed-out page, never at the IdP without an id_token_hint', async () => {
    const res = await fetch(`${stack.frontUrl}/_auth/logout`, { method: 'POST', headers: { origin: stack.frontUrl }, redirect: 'manual' });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe(`${stack.frontUrl}/_auth/logged-out`);
  });
});

/** A recorded delivery with the demo user in Jane's place: by Okta id (`sub`), by login, or both. */
function delivery(file: string, user: string, by: 'id' | 'login'): string {
  let text = fs.readFileSync(path.join(fixtures, file), 'utf8').replaceAll('0oa1idgate00000000x7', 'idgate');
  text = by === 'id' ? text.replaceAll('00ub0oNGTSWTBKOLGLNR', user) : text.replaceAll('jane.doe@example.com', user);
  return text;
}

function postEvents(body: string, authorization: string | undefined = HOOK_SECRET): Promise<Response> {
  return fetch(`${stack.frontUrl}/_auth/okta-events`, { method: 'POST', headers: { 'content-type': 'application/json', ...(authorization === undefined ? {} : { authorization }) }, body });
}

describe('Okta event hooks', () => {
  test('the one-time verification is answered with its challenge, only with the shared secret', async () => {
    const verify = (authorization: string) => fetch(`${stack.frontUrl}/_auth/okta-events`, { headers: { authorization, 'x-okta-verification-challenge': 'G6sYrFiHh0dmZ5GQzKDfYlJY' } });
    const res = await verify(HOOK_SECRET);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ verification: 'G6sYrFiHh0dmZ5GQzKDfYlJY' });
    expect((await verify(`${HOOK_SECRET}x`)).status).toBe(401);
  });

  test.each([
    ['user-lifecycle-deactivate.json', 'id'],
    ['user-lifecycle-suspend.json', 'login'],
    ['user-session-end.json', 'id'],
    ['user-account-reset-password.json', 'login'],
    ['user-account-update-password.json', 'id'],
    ['application-user-membership-remove.json', 'login'],
  ] as const)('%s ends every session of the user it names (found by %s), and only theirs', async (file, by) => {
    const [first, second, bystander] = [new Browser(), new Browser(), new Browser()];
    await signIn(first, `${stack.frontUrl}/`, alice.user);
    await signIn(second, `${stack.frontUrl}/`, alice.user);
    await signIn(bystander, `${stack.frontUrl}/`, bob.user);
    const body = delivery(file, alice.user, by);
    const res = await postEvents(body);
    expect(res.status).toBe(200);
    expect([await signedIn(first), await signedIn(second), await signedIn(bystander)]).toEqual([false, false, true]);
    // The audit trail says why: the event type and the event id, and how many sessions ended.
    const event = (JSON.parse(body) as { data: { events: { uuid: string; eventType: string }[] } }).data.events[0]!;
    const audited = () => idgateOutput().split('\n').find((l) => l.includes('"event":"okta_event"') && l.includes(event.uuid));
    await waitUntil('the event audited', () => audited() !== undefined);
    expect(JSON.parse(audited()!)).toMatchObject({ event_type: event.eventType, event_id: event.uuid, sessions_revoked: 2 });
  });

  test.each([
    ['an unassignment from another app', 'application-user-membership-remove-other-app.json', HOOK_SECRET],
    ['an event that ends no session (an activation)', 'user-lifecycle-activate.json', HOOK_SECRET],
    ['a deactivation without the shared secret', 'user-lifecycle-deactivate.json', 'Bearer guess'],
  ])('%s ends nothing', async (_name, file, authorization) => {
    const browser = new Browser();
    await signIn(browser, `${stack.frontUrl}/`, alice.user);
    const res = await postEvents(delivery(file, alice.user, 'id'), authorization);
    expect(res.status).toBe(authorization === HOOK_SECRET ? 200 : 401);
    expect(await signedIn(browser)).toBe(true);
  });
});

// idgate's endpoint asked directly, with the sid of a real sign-in: the cases an IdP's page never sends
// (another issuer, none). The local IdP's own front-channel logout, in Chromium: real-browser.test.ts.
describe('front-channel logout', () => {
  /** The IdP session id (`sid`) of this browser's sign-in, from its ID token. */
  async function idpSessionOf(browser: Browser): Promise<string> {
    return jose.decodeJwt((await storedSession(browser))!.idToken).sid as string;
  }

  test('ends the sessions of that IdP session only, in a page the IdP may frame and nobody caches', async () => {
    const [mine, other] = [new Browser(), new Browser()];
    await signIn(mine, `${stack.frontUrl}/`, alice.user);
    await signIn(other, `${stack.frontUrl}/`, alice.user);
    const url = `${stack.frontUrl}/_auth/frontchannel-logout?iss=${encodeURIComponent(stack.issuer)}&sid=${encodeURIComponent(await idpSessionOf(mine))}`;
    // The IdP's iframe carries no idgate cookie: a plain request, as a third-party frame would send it.
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.headers.get('content-security-policy')).toContain(`frame-ancestors ${new URL(stack.issuer).origin}`);
    expect(res.headers.get('x-frame-options')).toBeNull();
    expect(await probeUntil(() => signedIn(mine), (s) => !s)).toBe(false);
    expect(await signedIn(other)).toBe(true);
  });

  test.each([
    ['another issuer', (sid: string) => `iss=${encodeURIComponent('https://evil.example')}&sid=${encodeURIComponent(sid)}`],
    ['no issuer', (sid: string) => `sid=${encodeURIComponent(sid)}`],
  ])('naming %s ends nothing', async (_name, query) => {
    const browser = new Browser();
    await signIn(browser, `${stack.frontUrl}/`, alice.user);
    const res = await fetch(`${stack.frontUrl}/_auth/frontchannel-logout?${query(await idpSessionOf(browser))}`);
    expect(res.status).toBe(400);
    expect(await signedIn(browser)).toBe(true);
  });
});

describe('logout with the IdP away', () => {
  test('completes, and says the refresh token could not be revoked without naming it', async () => {
    const browser = new Browser();
    await signIn(browser, `${stack.frontUrl}/`, alice.user);
    const { refreshToken } = (await storedSession(browser))!;
    await stack.stopIdp();
    try {
      const res = await browser.fetch(`${stack.frontUrl}/_auth/logout`, { method: 'POST', headers: { origin: stack.frontUrl } });
      expect(res.status).toBe(303);
      expect(await signedIn(browser)).toBe(false);
      const said = () => idgateOutput().split('\n').filter((l) => l.includes('did not revoke the refresh token'));
      await waitUntil('the warning logged', () => said().length > 0);
      expect(said()).toHaveLength(1);
      expect(idgateOutput()).not.toContain(refreshToken);
    } finally {
      await stack.startIdp();
    }
  });
});
