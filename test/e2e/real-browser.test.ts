// The demo's promise, checked in a real browser: Debian's Chromium driven by playwright-core signs in
// through HAProxy, idgate and the local IdP, and sees the upstream app with its identity; signing out at
// the IdP ends idgate's session through the IdP's front-channel logout iframe.
import { chromium, type Browser } from 'playwright-core';
import { startStack, type Stack } from '../../stack/stack.js';
import { waitUntil } from '../../stack/wait.js';

let stack: Stack;
let browser: Browser;

beforeAll(async () => {
  // No back-channel logout registered, like Okta (whose Single Logout is front-channel only): when the
  // user signs out at the IdP, only the IdP page's iframe can end idgate's session.
  stack = await startStack({ idpEnv: { IDP_BACKCHANNEL_LOGOUT_URI: '' } });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
});

describe('per IdP profile', () => {
  test('alice signs in with a real browser and reaches the app; bob is shown the 403 page on /admin/', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${stack.frontUrl}/admin/dashboard?tab=1`);
    expect(new URL(page.url()).origin).toBe(stack.issuer);
    await page.fill('input[name="login"]', 'alice');
    await page.fill('input[name="password"]', 'alice');
    await Promise.all([page.waitForURL(`${stack.frontUrl}/admin/dashboard?tab=1`), page.click('[type="submit"]')]);
    const echo = JSON.parse((await page.textContent('body')) ?? '{}') as { headers: Record<string, string> };
    expect(echo.headers['x-auth-user']).toBe('alice');
    expect(echo.headers['x-auth-groups']).toContain('admins');
    const cookies = await context.cookies(stack.frontUrl);
    const session = cookies.find((c) => c.name === '_idgate')!;
    expect(session).toMatchObject({ httpOnly: true, sameSite: 'Lax' });
    await context.close();

    const bobContext = await browser.newContext();
    const bobPage = await bobContext.newPage();
    await bobPage.goto(`${stack.frontUrl}/admin/`);
    await bobPage.fill('input[name="login"]', 'bob');
    await bobPage.fill('input[name="password"]', 'bob');
    const [response] = await Promise.all([bobPage.waitForResponse((r) => r.url() === `${stack.frontUrl}/admin/`), bobPage.click('[type="submit"]')]);
    expect(response.status()).toBe(403);
    expect(await bobPage.textContent('h1')).toBe('Access denied');
    await bobContext.close();
  }, 30_000);
});

test('signing out at the IdP ends the idgate session: the IdP\'s "Signed out" page loads idgate\'s front-channel logout', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${stack.frontUrl}/`);
  await page.fill('input[name="login"]', 'alice');
  await page.fill('input[name="password"]', 'alice');
  await Promise.all([page.waitForURL(`${stack.frontUrl}/`), page.click('[type="submit"]')]);

  // The IdP's own sign-out (end_session, confirmed by its page's script), not idgate's /_auth/logout.
  // The iframe carries iss and sid only: a third-party frame may get no idgate cookie, and needs none.
  const frontChannel = page.waitForResponse((r) => r.url().startsWith(`${stack.frontUrl}/_auth/frontchannel-logout?`));
  await page.goto(`${stack.issuer}/session/end`);
  const answer = await frontChannel;
  expect(answer.status()).toBe(200);
  expect(new URL(answer.url()).searchParams.get('iss')).toBe(stack.issuer);
  await page.waitForURL(`${stack.issuer}/session/end/success`);
  expect(answer.frame().parentFrame()).toBe(page.mainFrame());

  const logged = () => stack.processes.idgate!.output().split('\n').find((l) => l.includes('"event":"frontchannel_logout"'));
  await waitUntil('the logout logged', () => logged() !== undefined);
  expect(JSON.parse(logged()!)).toMatchObject({ subs: ['alice'], sessions_revoked: 1 });
  // Through HAProxy, the app now sends the browser to sign in again (the IdP session is gone too).
  await page.goto(`${stack.frontUrl}/`);
  expect(new URL(page.url()).origin).toBe(stack.issuer);
  expect(await page.isVisible('input[name="login"]')).toBe(true);
  await context.close();
}, 30_000);
