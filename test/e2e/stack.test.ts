// The whole product through real HAProxy, real Redis, the real local IdP and two idgate replicas, once
// with each HAProxy integration: the Lua action + HTTP check, and idgate's SPOE agent.
import { startStack, type Stack } from '../../stack/stack.js';
import { Browser, signIn } from '../support/browser.js';
import { clientCredentialsToken } from '../support/tokens.js';
import { probeUntil, waitUntil } from '../../stack/wait.js';
import { alice, basicAuth, machineClient } from '../support/identities.js';

let stack: Stack;

interface Echo {
  method: string;
  path: string;
  headers: Record<string, string | string[]>;
}

const apiHeaders = { accept: 'application/json' };
/**
 * "Answers, does not hang": the product answers these 503s within about a second (a refused connection,
 * the check's 800 ms budget); a hang would run into be_idgate's 10 s server timeout, or the Lua
 * httpclient re-sending the check (4 times its 2500 ms backstop). A bound between the two holds on a
 * loaded machine.
 */
const NO_HANG_MS = 5000;

const getToken = (clientId?: string, secret?: string) => clientCredentialsToken(stack.issuer, clientId, secret);

describe.each(['lua', 'spoe'] as const)('HAProxy integration: %s', (mode) => {
  beforeAll(async () => {
    stack = await startStack({ idgateReplicas: 2, haproxyMode: mode });
  }, 60_000);

  afterAll(async () => {
    await stack?.stop();
  });

  describe('browser sign-in through HAProxy', () => {
    test('a spoofed client X-Auth-User never reaches upstream', async () => {
      const browser = new Browser({ 'x-auth-user': 'mallory', 'X-Auth-Groups': 'admins' });
      await signIn(browser, `${stack.frontUrl}/`, 'bob');
      const echo = (await (await browser.fetch(`${stack.frontUrl}/whoami`)).json()) as Echo;
      expect(echo.headers['x-auth-user']).toBe('bob');
      expect(echo.headers['x-auth-groups']).toBe('sales');

      const anonymous = await fetch(`${stack.frontUrl}/public/x`, { headers: { 'X-Auth-User': 'mallory', 'x-auth-subject': 'root' } });
      const publicEcho = (await anonymous.json()) as Echo;
      expect(anonymous.status).toBe(200);
      expect(publicEcho.headers['x-auth-user']).toBeUndefined();
      expect(publicEcho.headers['x-auth-subject']).toBeUndefined();
    });

    test('a wrong password does not sign in', async () => {
      const browser = new Browser();
      const { res } = await signIn(browser, `${stack.frontUrl}/`, 'alice', 'not-her-password');
      expect(await res.text()).toMatch(/name="login"/);
      expect(browser.cookie('127.0.0.1', '_idgate')).toBeUndefined();
    });

    test('the session id changes at login (no fixation)', async () => {
      const browser = new Browser();
      browser.cookies.set('127.0.0.1', new Map([['_idgate', { value: 's%3Aattacker-chosen.sig', path: '/' }]]));
      await signIn(browser, `${stack.frontUrl}/`, 'alice');
      expect(browser.cookie('127.0.0.1', '_idgate')).not.toContain('attacker-chosen');
    });

    test('several tabs can start logins at once and each completes', async () => {
      const browser = new Browser();
      const authorizeUrl = async (path: string) => {
        const res = await browser.fetch(`${stack.frontUrl}/_auth/login?rd=${encodeURIComponent(path)}`);
        expect(res.status).toBe(302);
        return res.headers.get('location')!;
      };
      const tabA = await authorizeUrl('/a');
      const tabB = await authorizeUrl('/b');
      // Tab B signs in at the IdP; tab A then goes on with the IdP session (no second password prompt).
      const pageB = await browser.navigate(tabB);
      const doneB = await browser.submitForm(pageB.url, await pageB.res.text(), { login: 'alice', password: 'alice' });
      expect(doneB.url.href).toBe(`${stack.frontUrl}/b`);
      const doneA = await browser.navigate(tabA);
      expect(doneA.url.href).toBe(`${stack.frontUrl}/a`);
      // One binding cookie per browser, not one per login attempt.
      const idgateCookies = [...(browser.cookies.get('127.0.0.1')?.keys() ?? [])].filter((name) => name.startsWith('_idgate'));
      expect(idgateCookies.sort()).toEqual(['_idgate', '_idgate_login']);
    });

    test('a callback replayed or carried to another browser is refused', async () => {
      const browser = new Browser();
      await signIn(browser, `${stack.frontUrl}/`, 'alice');
      const callback = browser.hops.find((h) => h.url.includes('/_auth/callback'))!;
      const replay = await browser.fetch(callback.url);
      expect(replay.status).toBe(400);
      expect(await replay.text()).toMatch(/expired or was already used/);

      const victim = new Browser();
      const attacker = new Browser();
      const started = await attacker.navigate(`${stack.frontUrl}/`);
      const html = await started.res.text();
      // The attacker completes the IdP part but hands the callback URL to the victim's browser.
      const form = await attacker.fetch(new URL(/action="([^"]+)"/.exec(html)![1]!.replace(/&amp;/g, '&'), started.url), {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: 'login=bob&password=bob',
      });
      let location = form.headers.get('location');
      let hopUrl = new URL(location!, started.url);
      while (!hopUrl.pathname.startsWith('/_auth/callback')) {
        const hop = await attacker.fetch(hopUrl);
        location = hop.headers.get('location');
        hopUrl = new URL(location!, hopUrl);
      }
      const stolen = await victim.fetch(hopUrl);
      expect(stolen.status).toBe(400);
      expect(victim.cookie('127.0.0.1', '_idgate')).toBeUndefined();
    });

    test('login ignores an rd that points to another site', async () => {
      const browser = new Browser();
      const { url } = await signIn(browser, `${stack.frontUrl}/_auth/login?rd=${encodeURIComponent('https://evil.example/')}`, 'alice');
      expect(url.href).toBe(`${stack.frontUrl}/`);
    });

    test('logout ends the session and returns through the IdP to the signed-out page', async () => {
      const browser = new Browser();
      await signIn(browser, `${stack.frontUrl}/`, 'alice');
      const { res, url } = await browser.navigate(`${stack.frontUrl}/_auth/logout`, { method: 'POST', headers: { origin: stack.frontUrl } });
      expect(browser.hops.some((h) => h.location?.startsWith(`${stack.issuer}/session/end`))).toBe(true);
      // oidc-provider asks for a confirmation (a form) unless its logoutSource auto-submits; follow it.
      let final = { res, url };
      if (final.url.origin === stack.issuer && /<form/i.test(await final.res.clone().text())) {
        final = await browser.submitForm(final.url, await final.res.text(), { logout: 'yes' });
      }
      expect(final.url.href).toBe(`${stack.frontUrl}/_auth/logged-out`);
      const after = await browser.fetch(`${stack.frontUrl}/`);
      expect(after.status).toBe(302);
    });

    test('a cross-site logout is refused', async () => {
      const browser = new Browser();
      await signIn(browser, `${stack.frontUrl}/`, 'alice');
      const res = await browser.fetch(`${stack.frontUrl}/_auth/logout`, { method: 'POST', headers: { origin: 'https://evil.example' } });
      expect(res.status).toBe(403);
      expect((await browser.fetch(`${stack.frontUrl}/`)).status).toBe(200);
    });

    describe('per IdP profile', () => {
      test('anonymous GET is redirected to login, and after signing in alice lands on the original URL with her identity upstream', async () => {
        const browser = new Browser();
        const first = await browser.fetch(`${stack.frontUrl}/some/page?x=1`);
        expect(first.status).toBe(302);
        expect(first.headers.get('location')).toBe(`${stack.frontUrl}/_auth/login?rd=${encodeURIComponent('/some/page?x=1')}`);

        const { res, url } = await signIn(browser, `${stack.frontUrl}/some/page?x=1`, 'alice');
        expect(url.href).toBe(`${stack.frontUrl}/some/page?x=1`);
        expect(res.status).toBe(200);
        const echo = (await res.json()) as Echo;
        expect(echo.path).toBe('/some/page?x=1');
        expect(echo.headers['x-auth-user']).toBe('alice');
        expect(String(echo.headers['x-auth-groups']).split(',')).toEqual(expect.arrayContaining([...alice.groups]));
        expect(echo.headers['x-auth-email']).toBe(alice.email);
        expect(echo.headers['x-auth-request-id']).toBeTruthy();
        // The session cookie is HttpOnly and SameSite=Lax; the IdP was visited with PKCE.
        const authorize = browser.hops.find((h) => h.location?.includes('code_challenge_method=S256'));
        expect(authorize).toBeDefined();
      });

      test('bob on /admin/ gets a readable 403 page', async () => {
        const browser = new Browser();
        await signIn(browser, `${stack.frontUrl}/`, 'bob');
        const res = await browser.fetch(`${stack.frontUrl}/admin/`);
        expect(res.status).toBe(403);
        expect(res.headers.get('content-type')).toMatch(/text\/html/);
        const page = await res.text();
        expect(page).toContain('bob');
        expect(page).toContain('needs group admins');
      });

      test('bob on /admin/ as an API client gets 403 JSON', async () => {
        const browser = new Browser();
        await signIn(browser, `${stack.frontUrl}/`, 'bob');
        const res = await browser.fetch(`${stack.frontUrl}/admin/`, { headers: apiHeaders });
        expect(res.status).toBe(403);
        expect(await res.json()).toEqual({ error: 'access_denied', reason: 'needs group admins' });
      });

      test('userinfo shows the current identity', async () => {
        const browser = new Browser();
        await signIn(browser, `${stack.frontUrl}/`, 'alice');
        const res = await browser.fetch(`${stack.frontUrl}/_auth/userinfo`);
        expect(await res.json()).toMatchObject({ user: alice.user, groups: alice.groups });
      });
    });
  });

  describe('API clients', () => {
    test('/api/ without credentials answers 401 with WWW-Authenticate, never 302, even for a browser', async () => {
      for (const headers of [apiHeaders, { accept: 'text/html' }]) {
        const res = await fetch(`${stack.frontUrl}/api/things`, { headers, redirect: 'manual' });
        expect(res.status).toBe(401);
        expect(res.headers.get('www-authenticate')).toBe('Bearer realm="idgate"');
      }
    });

    test('an XHR without a session gets 401, not a redirect', async () => {
      const res = await fetch(`${stack.frontUrl}/page`, { headers: { accept: 'text/html', 'x-requested-with': 'XMLHttpRequest' }, redirect: 'manual' });
      expect(res.status).toBe(401);
    });

    test('a browser POST without a session is sent to login with 303', async () => {
      const res = await fetch(`${stack.frontUrl}/form`, { method: 'POST', headers: { accept: 'text/html' }, body: 'a=1', redirect: 'manual' });
      expect(res.status).toBe(303);
      expect(res.headers.get('location')).toContain('/_auth/login?rd=');
    });

    describe('per IdP profile', () => {
      test('demo-bot with a JWT access token reaches /api/ with its client id upstream', async () => {
        const token = await getToken();
        const res = await fetch(`${stack.frontUrl}/api/hello`, { headers: { ...apiHeaders, authorization: `Bearer ${token}` } });
        expect(res.status).toBe(200);
        const echo = (await res.json()) as Echo;
        expect(echo.headers['x-auth-client']).toBe(machineClient.id);
        expect(echo.headers['x-auth-scopes']).toContain('api:read');
        expect(echo.headers.authorization).toBe(`Bearer ${token}`);
      });

      test('a bot token without the api:read scope gets 403 insufficient_scope through HAProxy', async () => {
        const res = await fetch(`${stack.issuer}/token`, {
          method: 'POST',
          headers: { authorization: basicAuth(machineClient), 'content-type': 'application/x-www-form-urlencoded' },
          body: 'grant_type=client_credentials',
        });
        const { access_token: token } = (await res.json()) as { access_token: string };
        const denied = await fetch(`${stack.frontUrl}/api/hello`, { headers: { ...apiHeaders, authorization: `Bearer ${token}` } });
        expect(denied.status).toBe(403);
        expect(denied.headers.get('www-authenticate')).toBe('Bearer realm="idgate", error="insufficient_scope", scope="api:read"');
        expect(await denied.json()).toEqual({ error: 'access_denied', reason: 'needs scope api:read' });
      });

      test('a forged bearer token gets 401 invalid_token, never a redirect', async () => {
        const token = await getToken();
        const [h, p] = token.split('.');
        const res = await fetch(`${stack.frontUrl}/api/hello`, { headers: { accept: 'text/html', authorization: `Bearer ${h}.${p}.AAAA` }, redirect: 'manual' });
        expect(res.status).toBe(401);
        expect(res.headers.get('www-authenticate')).toMatch(/error="invalid_token", error_description="the token signature is invalid"/);
      });

      test('demo-bot\'s valid token is nobody on a session-only route: 401 for an API client, login for a browser', async () => {
        const token = await getToken();
        for (const path of ['/page', '/admin/']) {
          const res = await fetch(`${stack.frontUrl}${path}`, { headers: { ...apiHeaders, authorization: `Bearer ${token}` }, redirect: 'manual' });
          expect(res.status).toBe(401);
          expect(res.headers.get('www-authenticate')).toBe('Bearer realm="idgate"');
          expect(await res.json()).toEqual({ error: 'unauthorized', reason: 'a bearer token does not count on this route; it needs a signed-in session' });
        }
        const xhr = await fetch(`${stack.frontUrl}/page`, { headers: { accept: 'text/html', 'x-requested-with': 'XMLHttpRequest', authorization: `Bearer ${token}` }, redirect: 'manual' });
        expect(xhr.status).toBe(401);
        const browser = await fetch(`${stack.frontUrl}/page`, { headers: { accept: 'text/html', authorization: `Bearer ${token}` }, redirect: 'manual' });
        expect(browser.status).toBe(302);
        expect(browser.headers.get('location')).toContain('/_auth/login?rd=');
      });

      test('beside a session, a token is ignored on session routes (even a forged one) and wins on /api/', async () => {
        const token = await getToken();
        const bob = new Browser();
        await signIn(bob, `${stack.frontUrl}/`, 'bob');
        for (const authorization of [`Bearer ${token}`, `Bearer ${token.slice(0, -4)}AAAA`]) {
          const res = await bob.fetch(`${stack.frontUrl}/whoami`, { headers: { authorization } });
          expect(res.status).toBe(200);
          const echo = (await res.json()) as Echo;
          expect(echo.headers['x-auth-user']).toBe('bob');
          expect(echo.headers['x-auth-client']).toBeUndefined();
        }
        const api = await bob.fetch(`${stack.frontUrl}/api/hello`, { headers: { ...apiHeaders, authorization: `Bearer ${token}` } });
        expect(api.status).toBe(200);
        expect(((await api.json()) as Echo).headers['x-auth-client']).toBe(machineClient.id);
      });
    });

  });

  describe('replicas and failure', () => {
    test('a session made through one idgate works through a second idgate on the same Redis', async () => {
      const browser = new Browser();
      await signIn(browser, `${stack.frontUrl}/`, 'alice');
      const cookie = browser.cookieHeader(new URL(stack.frontUrl))!;
      const res = await fetch(`${stack.idgateUrls[1]}/auth`, {
        headers: { ...stack.checkHeaders, cookie, accept: 'text/html', 'x-forwarded-uri': '/admin/', 'x-forwarded-host': `127.0.0.1:${stack.ports.front}`, 'x-forwarded-method': 'GET' },
        redirect: 'manual',
      });
      expect(res.status).toBe(200);
      expect(res.headers.get('x-auth-user')).toBe('alice');
    });

    test('HAProxy answers 503, without hanging, when idgate is down, and recovers when it returns', async () => {
      // Both replicas: HAProxy balances them, so with one left it would still answer.
      await Promise.all([stack.stopIdgate(0), stack.stopIdgate(1)]);
      try {
        const started = Date.now();
        const res = await fetch(`${stack.frontUrl}/public/x`, { headers: apiHeaders });
        expect(res.status).toBe(503);
        expect(Date.now() - started).toBeLessThan(NO_HANG_MS);
        const api = await fetch(`${stack.frontUrl}/api/x`, { headers: apiHeaders });
        expect(api.status).toBe(503);
      } finally {
        await stack.startIdgate(0);
        await stack.startIdgate(1);
      }
      // Back on both paths: the check (Lua: be_idgate; SPOE: the agent) and the browser endpoints.
      const statuses = await probeUntil(
        async () => [(await fetch(`${stack.frontUrl}/public/x`)).status, (await fetch(`${stack.frontUrl}/_auth/logged-out`)).status],
        (answers) => answers.every((s) => s === 200),
        { timeoutMs: 10_000 },
      );
      expect(statuses).toEqual([200, 200]);
    });

    test('with Redis down a session check answers 503, never an allow', async () => {
      const browser = new Browser();
      await signIn(browser, `${stack.frontUrl}/`, 'alice');
      const replicas = ['idgate', 'idgate2'].map((name) => stack.processes[name]!);
      const cacheOff = () => replicas.map((p) => p.output().split('session cache off').length);
      const before = cacheOff();
      await stack.processes.redis!.stop();
      // A session read in the last few seconds may still be answered from the session cache
      // (IDGATE_SESSION_CACHE_MS) until idgate notices Redis is gone; from then on, no session is believed.
      // Each replica logs the moment its cache goes off.
      await waitUntil('both replicas\' session cache off', () => cacheOff().every((n, i) => n > before[i]!));
      expect(cacheOff().map((n, i) => n > before[i]!)).toEqual([true, true]);
      const started = Date.now();
      const res = await browser.fetch(`${stack.frontUrl}/`);
      expect(res.status).toBe(503);
      expect(Date.now() - started).toBeLessThan(NO_HANG_MS);
      const ready = await fetch(`${stack.idgateUrls[0]}/readyz`);
      expect(ready.status).toBe(503);
    });
  });
});
