// The IdP unreachable (stopped): sessions already made and bearer tokens whose signing key idgate holds
// keep working through HAProxy; a sign-in that needs the IdP ends on a clear page, quickly, and idgate
// stays up. The counts are printed.
import { startStack, type Stack } from '../../stack/stack.js';
import { Browser, parseForm, signIn } from '../support/browser.js';
import { describeCounts, startLoad } from '../support/load.js';
import { waitAtMost } from '../../stack/wait.js';
import { clientCredentialsToken } from '../support/tokens.js';

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ idgateReplicas: 1 });
}, 60_000);

afterAll(async () => {
  await stack?.stop();
});

const botToken = () => clientCredentialsToken(stack.issuer);

test('with the IdP stopped, sessions and cached-key bearer checks keep working; a sign-in gets a clear page', async () => {
  const alice = new Browser();
  await signIn(alice, `${stack.frontUrl}/`, 'alice');
  const cookie = alice.cookieHeader(new URL(stack.frontUrl))!;
  const token = await botToken();
  // A sign-in under way: the IdP has sent the browser back with a code, which idgate must redeem at the
  // IdP's token endpoint; the IdP goes away before that.
  const carol = new Browser();
  const loginPage = await carol.navigate(`${stack.frontUrl}/private/page`);
  const form = parseForm(await loginPage.res.text());
  let next = await carol.fetch(new URL(form.action || loginPage.url.href, loginPage.url), {
    method: form.method,
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: loginPage.url.origin },
    body: new URLSearchParams({ ...form.fields, login: 'bob', password: 'bob' }).toString(),
  });
  let location = next.headers.get('location');
  for (let hop = 0; hop < 10 && location && !location.startsWith(`${stack.frontUrl}/_auth/callback`); hop++) {
    next = await carol.fetch(new URL(location, stack.issuer));
    location = next.headers.get('location');
  }
  expect(location).toMatch(/\/_auth\/callback\?/);

  await stack.stopIdp();

  const sessions = startLoad({ url: `${stack.frontUrl}/idp/down`, headers: { cookie, accept: 'application/json' }, concurrency: 4, maxMs: 5000 });
  const bearer = startLoad({ url: `${stack.frontUrl}/api/hello`, headers: { authorization: `Bearer ${token}`, accept: 'application/json' }, concurrency: 4, maxMs: 5000 });
  const started = performance.now();
  const callback = await carol.fetch(location!);
  const callbackMs = performance.now() - started;
  const page = await callback.text();
  // Enough requests of each kind to count, with the IdP gone.
  await waitAtMost(() => sessions.counts.total > 300 && bearer.counts.total > 300, 3000);
  const [sessionCounts, bearerCounts] = await Promise.all([sessions.stop(), bearer.stop()]);
  console.log(describeCounts('IdP stopped: session checks', sessionCounts));
  console.log(describeCounts('IdP stopped: bearer checks (cached keys)', bearerCounts));
  console.log(`IdP stopped: a sign-in's callback answered ${callback.status} in ${Math.round(callbackMs)} ms`);

  expect(sessionCounts.failures).toEqual([]);
  expect(bearerCounts.failures).toEqual([]);
  expect(sessionCounts.total).toBeGreaterThan(100);
  expect(bearerCounts.total).toBeGreaterThan(100);
  // A page a person can read, saying what went wrong and offering to try again; not a hang or a crash.
  expect(callback.status).toBe(502);
  expect(callback.headers.get('content-type')).toMatch(/text\/html/);
  expect(page).toMatch(/identity provider/i);
  expect(page).toMatch(/href="\/_auth\/login/);
  // Not a hang: a 502 is idgate's own answer (HAProxy's would be 504, at be_idgate's 10 s server timeout),
  // and it comes before that timeout by far, which a loaded machine still meets. The figure is printed.
  expect(callbackMs).toBeLessThan(10_000);
  expect((await fetch(`${stack.idgateUrls[0]}/healthz`)).status).toBe(200);
}, 60_000);
