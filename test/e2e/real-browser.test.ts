// The demo's promise, checked in a real browser: Debian's Chromium driven by playwright-core signs in
// through HAProxy, idgate and the local IdP, and sees the upstream app with its identity.
import { chromium, type Browser } from 'playwright-core';
import { startStack, type Stack } from '../../stack/stack.js';

let stack: Stack;
let browser: Browser;

beforeAll(async () => {
  stack = await startStack();
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
});

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
