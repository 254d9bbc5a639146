// Issue 23: a request with two idgate session cookies is judged as having none, through real HAProxy in
// both transports. A browser sends two when another site of the domain planted one (a Domain cookie, or a
// longer Path, which the browser then sends first): "the first one wins" would sign the victim in as the
// planter. Requests are written byte-exact (raw-http), so the Cookie lines are exactly as under test.
import crypto from 'node:crypto';
import { startStack, type Stack } from '../../stack/stack.js';
import type { EchoedRequest } from '../../stack/upstream.js';
import { Browser, signIn } from '../support/browser.js';
import { MARKER_PREFIX, decisionsCaughtUp } from '../support/logs.js';
import { rawRequest } from '../support/raw-http.js';

let stack: Stack;
const cookies: Record<'bob' | 'alice', string> = { bob: '', alice: '' };

function auditLines(): Record<string, unknown>[] {
  return stack.processes
    .idgate!.output()
    .split('\n')
    .filter((l) => l.includes('"event":"decision"') && !l.includes(MARKER_PREFIX))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** The answer to one request for a path of its own, what the app saw of it, and idgate's audit line. */
async function ask(cookieLines: string[], under = '/page'): Promise<{ status: number; appUser?: string; audit?: Record<string, unknown> }> {
  const path = `${under}/${crypto.randomUUID()}`;
  const headers: [string, string][] = [['Accept', 'application/json'], ...cookieLines.map((c): [string, string] => ['Cookie', c])];
  const res = await rawRequest(stack.ports.front, 'GET', path, headers);
  let echo: EchoedRequest | undefined;
  try {
    const body = JSON.parse(res.body) as EchoedRequest;
    if (typeof body.server === 'string' && body.headers) echo = body;
  } catch {
    // not the upstream
  }
  await decisionsCaughtUp(stack.idgateUrls[0]!, () => stack.processes.idgate!.output(), `127.0.0.1:${stack.ports.front}`, stack.checkHeaders);
  const audit = auditLines().find((l) => l.path === path);
  return { status: res.status, ...(echo ? { appUser: String(echo.headers['x-auth-user'] ?? '') } : {}), ...(audit ? { audit } : {}) };
}

const TWO_COOKIES = expect.objectContaining({ decision: 'unauthenticated', status: 401, sub: null, reason: expect.stringMatching(/^two idgate session cookies came .*; neither counts$/) });

describe.each(['lua', 'spoe'] as const)('two idgate session cookies, through HAProxy (%s)', (mode) => {
  beforeAll(async () => {
    stack = await startStack({ haproxyMode: mode });
    await Promise.all(
      (['bob', 'alice'] as const).map(async (user) => {
        const browser = new Browser();
        await signIn(browser, `${stack.frontUrl}/`, user);
        cookies[user] = `_idgate=${browser.cookie('127.0.0.1', '_idgate')}`;
      }),
    );
  }, 60_000);

  afterAll(async () => {
    await stack?.stop();
  });

  test('one session cookie signs bob in', async () => {
    expect(await ask([`app=1; ${cookies.bob}`])).toMatchObject({ status: 200, appUser: 'bob', audit: expect.objectContaining({ decision: 'allow', user: 'bob' }) });
  });

  test.each([
    ['bob and alice on one Cookie line', () => [`${cookies.bob}; ${cookies.alice}`]],
    ['alice first, then bob', () => [`app=1; ${cookies.alice}; ${cookies.bob}`]],
    ['bob and alice on two Cookie lines', () => [cookies.bob, cookies.alice]],
    ["bob's cookie twice", () => [`${cookies.bob}; ${cookies.bob}`]],
    ['a planted name in another letter case before bob', () => [`_IDGATE=planted; ${cookies.bob}`]],
  ])('%s: judged as no session (401), the app never sees the request, and the audit line says why', async (_, lines) => {
    const answer = await ask(lines());
    expect(answer).toEqual({ status: 401, audit: TWO_COOKIES });
  });

  test('a public route needs no session, so two cookies change nothing there', async () => {
    expect(await ask([`${cookies.bob}; ${cookies.alice}`], '/public')).toMatchObject({ status: 200, audit: expect.objectContaining({ decision: 'public' }) });
  });
});
