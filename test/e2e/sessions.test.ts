// Session lifecycle against the real stack (HAProxy, two idgate replicas, Redis, the local IdP issuing
// short-lived access tokens, idgate's clock moved past their lifetimes instead of waiting): silent renewal, renewal failures, back-channel and local logout on every
// replica, nothing readable in a Redis dump, secret rotation. One end-to-end path per behaviour: the
// store's own behaviour (timeouts, the refresh race, revocation) is held by the session store suite
// (test/unit/session-store.test.ts, in memory and on real Redis); `idgate sessions` by
// session-upgrade.test.ts and the Redis topology tests.
import signature from 'cookie-signature';
import { Redis } from 'ioredis';
import * as jose from 'jose';
import { startStack, type Stack } from '../../stack/stack.js';
import { Browser, signIn } from '../support/browser.js';
import { eventsCaughtUp } from '../support/logs.js';
import { probeUntil, waitUntil } from '../../stack/wait.js';
import { alice } from '../support/identities.js';

// Long enough that stopping the IdP (slow on a loaded machine) ends well before the tokens expire.
const TOKEN_TTL_S = 6;
const OLD_SECRET = 'old-secret-'.padEnd(40, 'o');
const NEW_SECRET = 'new-secret-'.padEnd(40, 'n');
let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ idgateReplicas: 2, idgateClock: 'test', idpEnv: { IDP_ACCESS_TOKEN_TTL: String(TOKEN_TTL_S) }, idgateEnv: { IDGATE_COOKIE_SECRETS: OLD_SECRET } });
}, 60_000);

afterAll(async () => {
  await stack?.stop();
});

// Renewal is due at half the tokens' lifetime, and idgate decides it on its own clock: the tests move
// that clock (the IdP keeps the machine's, so the tokens it issued stay good for it) instead of waiting.
/** idgate's clock moved until the tokens are due for renewal (half their lifetime), with a margin. */
const untilDue = () => stack.advanceIdgateClock((TOKEN_TTL_S / 2) * 1000 + 300);

/** Log lines are written asynchronously: wait for the count to reach `expected`, then for every line
 * logged so far to be out (a marker logged later shows), and check the count stayed. */
async function expectRefreshEvents(expected: number): Promise<void> {
  await waitUntil(`${expected} refresh events`, () => refreshEvents() >= expected);
  await Promise.all(['idgate', 'idgate2'].map((n, i) => eventsCaughtUp(stack.idgateUrls[i]!, () => stack.processes[n]!.output())));
  expect(refreshEvents()).toBe(expected);
}

function refreshEvents(): number {
  return ['idgate', 'idgate2'].map((n) => stack.processes[n]!.output().split('\n').filter((l) => l.includes('"event":"refresh"')).length).reduce((a, b) => a + b, 0);
}

/** The /auth answer of one replica for this browser's cookie, as HAProxy would ask. */
async function checkAt(replica: number, browser: Browser, uri = '/'): Promise<Response> {
  return fetch(`${stack.idgateUrls[replica]}/auth`, {
    headers: { ...stack.checkHeaders, cookie: browser.cookieHeader(new URL(stack.frontUrl)) ?? '', accept: 'application/json', 'x-forwarded-uri': uri, 'x-forwarded-host': `127.0.0.1:${stack.ports.front}`, 'x-forwarded-method': 'GET' },
  });
}

function sidOf(browser: Browser): string {
  const value = decodeURIComponent(browser.cookie('127.0.0.1', '_idgate')!);
  for (const secret of [NEW_SECRET, OLD_SECRET]) {
    const sid = signature.unsign(value.slice(2), secret);
    if (sid !== false) return sid;
  }
  throw new Error('cookie signed with neither secret');
}

describe('per IdP profile', () => {
  describe('silent renewal', () => {
    test('a request after the tokens are due renews them through HAProxy, and the cookie comes back', async () => {
      const browser = new Browser();
      await signIn(browser, `${stack.frontUrl}/`, 'alice');
      const before = refreshEvents();
      await untilDue();
      const res = await browser.fetch(`${stack.frontUrl}/after-renewal`);
      expect(res.status).toBe(200);
      expect(res.headers.getSetCookie().some((c) => c.startsWith('_idgate=') && /HttpOnly/.test(c))).toBe(true);
      await expectRefreshEvents(before + 1);
      // Well past the first token's expiry, the renewed session still works.
      await stack.advanceIdgateClock(TOKEN_TTL_S * 1000);
      expect((await browser.fetch(`${stack.frontUrl}/later`)).status).toBe(200);
    });

    test('with the IdP unreachable the session lives while its tokens are valid, then answers 503; an IdP that forgot the grant ends it', async () => {
      const browser = new Browser();
      await signIn(browser, `${stack.frontUrl}/`, 'alice');
      // Counted from the sign-in (the tokens were issued just before), not from the IdP's stop, which a
      // loaded machine may take a while over: the first check must come before the tokens expire. On
      // idgate's clock, the real time passed and the moves made since the sign-in both count.
      const signedInAt = Date.now();
      let moved = 0;
      const untilSinceSignIn = async (ms: number) => {
        const ahead = signedInAt + ms - (Date.now() + moved);
        if (ahead <= 0) return;
        moved += ahead;
        await stack.advanceIdgateClock(ahead);
      };
      await stack.stopIdp();
      try {
        await untilSinceSignIn((TOKEN_TTL_S / 2) * 1000 + 300);
        expect((await checkAt(0, browser)).status).toBe(200); // due, not expired: goes on with current tokens
        await untilSinceSignIn(TOKEN_TTL_S * 1000 + 300);
        expect((await checkAt(0, browser)).status).toBe(503); // expired, cannot renew: cannot decide
      } finally {
        await stack.startIdp();
      }
      // The fresh IdP knows nothing of the grant: invalid_grant ends the session (a redirect, never a 403).
      const res = await browser.fetch(`${stack.frontUrl}/`);
      expect(res.status).toBe(302);
      expect((await checkAt(1, browser)).status).toBe(401);
    });
  });
});

describe('logout everywhere', () => {
  test('logout through one replica ends the session on the other', async () => {
    const browser = new Browser();
    await signIn(browser, `${stack.frontUrl}/`, 'alice');
    const cookie = browser.cookieHeader(new URL(stack.frontUrl))!;
    await browser.navigate(`${stack.frontUrl}/_auth/logout`, { method: 'POST', headers: { origin: stack.frontUrl } });
    // The other replica may hold the session in its cache: the revocation reaches it by pub/sub a moment
    // after the logout answers (docs/operations.md measures it), so ask again until it has.
    const ask = () => fetch(`${stack.idgateUrls[1]}/auth`, { headers: { ...stack.checkHeaders, cookie, accept: 'application/json', 'x-forwarded-method': 'GET', 'x-forwarded-uri': '/', 'x-forwarded-host': `127.0.0.1:${stack.ports.front}` } });
    const other = await probeUntil(async () => (await ask()).status, (status) => status !== 200);
    expect(other).toBe(401);
  });

  test('ending the session at the IdP logs the user out of idgate on every replica (back-channel)', async () => {
    const browser = new Browser();
    await signIn(browser, `${stack.frontUrl}/`, 'alice');
    expect((await checkAt(1, browser)).status).toBe(200);
    // At the IdP directly, as if the user signed out of another app sharing the IdP session.
    const confirm = await browser.navigate(`${stack.issuer}/session/end`);
    await browser.submitForm(confirm.url, await confirm.res.text(), { logout: 'yes' });
    const statuses = await probeUntil(async () => [(await checkAt(0, browser)).status, (await checkAt(1, browser)).status], (s) => s.every((status) => status === 401));
    expect(statuses).toEqual([401, 401]);
    const revoked = () => (stack.processes.idgate!.output() + stack.processes.idgate2!.output()).split('\n').some((l) => l.includes('"event":"backchannel_logout"') && l.includes('"sessions_revoked":1'));
    await waitUntil('the sessions revoked', revoked);
    expect(revoked()).toBe(true);
  });

  test('a forged logout token is refused and ends nothing', async () => {
    const browser = new Browser();
    await signIn(browser, `${stack.frontUrl}/`, 'bob');
    const { privateKey } = await jose.generateKeyPair('RS256');
    const forged = await new jose.SignJWT({ sub: 'bob', events: { 'http://schemas.openid.net/event/backchannel-logout': {} }, jti: 'x1' })
      .setProtectedHeader({ alg: 'RS256', kid: 'forged', typ: 'logout+jwt' })
      .setIssuer(stack.issuer)
      .setAudience('idgate')
      .setIssuedAt()
      .sign(privateKey);
    for (const body of [`logout_token=${forged}`, 'logout_token=garbage', '']) {
      const res = await fetch(`${stack.frontUrl}/_auth/backchannel-logout`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
      expect(res.status).toBe(400);
    }
    expect((await checkAt(0, browser)).status).toBe(200);
  });
});

describe('at rest and for operators', () => {
  test('a Redis dump holds no token and no session id, only sealed sessions and revocation indexes', async () => {
    const browser = new Browser();
    await signIn(browser, `${stack.frontUrl}/`, 'alice');
    const sid = sidOf(browser);
    const redis = new Redis(stack.ports.redis);
    try {
      const keys = await redis.keys('*');
      const dump: string[] = [];
      for (const key of keys) {
        const type = await redis.type(key);
        const value = type === 'string' ? await redis.get(key) : type === 'hash' ? JSON.stringify(await redis.hgetall(key)) : type === 'set' ? JSON.stringify(await redis.smembers(key)) : '';
        dump.push(`${key} ${value}`);
        if (key.startsWith('idgate:sess:')) expect(value).toMatch(/^v1\.[A-Za-z0-9_-]+$/);
      }
      const text = dump.join('\n');
      expect(keys.some((k) => k.startsWith('idgate:sess:'))).toBe(true);
      expect(text).not.toContain(sid);
      // No JWT (ID token, access token): header and payload both JSON. A lone "eyJ" turns up by chance in
      // the random-looking sealed values now and then; two dot-joined parts do not.
      expect(text).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}/);
      expect(text).not.toContain('refresh');
      expect(text).not.toContain(alice.email);
      for (const group of alice.groups) expect(text).not.toContain(group);
    } finally {
      redis.disconnect();
    }
  });

  test('rotating cookie secrets keeps sessions; a renewal re-signs the cookie with the newest secret', async () => {
    const browser = new Browser();
    await signIn(browser, `${stack.frontUrl}/`, 'bob');
    expect(signature.unsign(decodeURIComponent(browser.cookie('127.0.0.1', '_idgate')!).slice(2), OLD_SECRET)).not.toBe(false);
    // HAProxy balances both replicas: rotate on each, one by one (each drains before it stops, so the
    // other has been taken back in by then).
    stack.env.IDGATE_COOKIE_SECRETS = `${NEW_SECRET},${OLD_SECRET}`;
    for (const replica of [0, 1]) {
      await stack.stopIdgate(replica);
      await stack.startIdgate(replica);
    }
    expect((await browser.fetch(`${stack.frontUrl}/`)).status).toBe(200);
    await untilDue();
    expect((await browser.fetch(`${stack.frontUrl}/`)).status).toBe(200); // renewal: Set-Cookie with the new secret
    expect(signature.unsign(decodeURIComponent(browser.cookie('127.0.0.1', '_idgate')!).slice(2), NEW_SECRET)).not.toBe(false);
    stack.env.IDGATE_COOKIE_SECRETS = NEW_SECRET;
    for (const replica of [0, 1]) {
      await stack.stopIdgate(replica);
      await stack.startIdgate(replica);
    }
    expect((await browser.fetch(`${stack.frontUrl}/`)).status).toBe(200);
  }, 60_000);
});
