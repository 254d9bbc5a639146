// A request with two idgate session cookies is judged as having none, through real HAProxy in
// both transports. A browser sends two when another site of the domain planted one (a Domain cookie, or a
// longer Path, which the browser then sends first): "the first one wins" would sign the victim in as the
// planter. The browser endpoints (userinfo, logout) read the session through express-session, which takes
// the first cookie: they must see none either. Requests are written byte-exact (raw-http), so the Cookie lines are exactly as under test.
import crypto from 'node:crypto';
import type { Stack } from '../../stack/stack.js';
import { withSignedInStack } from '../support/signed-in-stack.js';
import { decisionLinesIn, decisionsCaughtUp, eventsCaughtUp } from '../support/logs.js';
import { one, rawRequest, type RawResponse, echoOf } from '../support/raw-http.js';

let stack: Stack;
const cookies: Record<'bob' | 'alice', string> = { bob: '', alice: '' };

const auditLines = () => decisionLinesIn(stack.processes.idgate!.output());

/** The answer to one request for a path of its own, what the app saw of it, and idgate's audit line. */
async function ask(cookieLines: string[], under = '/page'): Promise<{ status: number; appUser?: string; audit?: Record<string, unknown> }> {
  const path = `${under}/${crypto.randomUUID()}`;
  const headers: [string, string][] = [['Accept', 'application/json'], ...cookieLines.map((c): [string, string] => ['Cookie', c])];
  const res = await rawRequest(stack.ports.front, 'GET', path, headers);
  const echo = echoOf(res);
  await decisionsCaughtUp(stack.idgateUrls[0]!, () => stack.processes.idgate!.output(), `127.0.0.1:${stack.ports.front}`, stack.checkHeaders);
  const audit = auditLines().find((l) => l.path === path);
  return { status: res.status, ...(echo ? { appUser: String(echo.headers['x-auth-user'] ?? '') } : {}), ...(audit ? { audit } : {}) };
}

const TWO_COOKIES = expect.objectContaining({ decision: 'unauthenticated', status: 401, sub: null, reason: expect.stringMatching(/^two idgate session cookies came .*; neither counts$/) });

describe.each(['lua', 'spoe'] as const)('two idgate session cookies, through HAProxy (%s)', (mode) => {
  withSignedInStack(['bob', 'alice'] as const, () => ({ haproxyMode: mode }), (started) => {
    stack = started.stack;
    Object.assign(cookies, started.cookies);
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

  /** The session_cookies_refused event lines idgate logged so far for one browser endpoint. */
  async function refusalsOf(method: string, path: string): Promise<Record<string, unknown>[]> {
    await eventsCaughtUp(stack.idgateUrls[0]!, () => stack.processes.idgate!.output());
    return stack.processes
      .idgate!.output()
      .split('\n')
      .filter((l) => l.includes('"event":"session_cookies_refused"'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.path === path && l.method === method);
  }

  /** A browser endpoint asked through HAProxy (a POST as a same-origin form would send it). */
  function askEndpoint(method: 'GET' | 'POST', path: string, cookieLines: string[]): Promise<RawResponse> {
    const headers: [string, string][] = [['Accept', 'application/json'], ...cookieLines.map((c): [string, string] => ['Cookie', c])];
    if (method === 'POST') headers.push(['Origin', stack.frontUrl], ['Content-Length', '0']);
    return rawRequest(stack.ports.front, method, path, headers);
  }

  test('userinfo with two session cookies answers as without a session, and an event line says why', async () => {
    const without = await askEndpoint('GET', '/_auth/userinfo', ['app=1']);
    const before = (await refusalsOf('GET', '/_auth/userinfo')).length;
    const two = await askEndpoint('GET', '/_auth/userinfo', [`${cookies.alice}; ${cookies.bob}`]);
    expect(without.status).toBe(401);
    expect({ status: two.status, body: JSON.parse(two.body) as unknown }).toEqual({ status: without.status, body: JSON.parse(without.body) as unknown });
    const after = await refusalsOf('GET', '/_auth/userinfo');
    expect(after.length).toBe(before + 1);
    expect(after.at(-1)).toMatchObject({ reason: expect.stringMatching(/^two idgate session cookies came .*; neither counts$/) });
    // Each cookie alone is still its own person's session.
    expect(JSON.parse((await askEndpoint('GET', '/_auth/userinfo', [cookies.bob])).body)).toMatchObject({ user: 'bob' });
  });

  test("logout with two session cookies ends neither session, still clears the browser's cookie and redirects to the signed-out page", async () => {
    const before = (await refusalsOf('POST', '/_auth/logout')).length;
    const res = await askEndpoint('POST', '/_auth/logout', [cookies.bob, cookies.alice]);
    expect(res.status).toBe(303);
    expect(one(res.headers, 'location')).toBe(`${stack.frontUrl}/_auth/logged-out`);
    expect(res.headers.filter(([n]) => n.toLowerCase() === 'set-cookie').map(([, v]) => v)).toEqual([expect.stringMatching(/^_idgate=;/)]);
    expect((await refusalsOf('POST', '/_auth/logout')).length).toBe(before + 1);
    // Neither bob's nor alice's session was ended: a logout cannot tell which of the two is this browser's own.
    for (const user of ['bob', 'alice'] as const) {
      expect(JSON.parse((await askEndpoint('GET', '/_auth/userinfo', [cookies[user]])).body)).toMatchObject({ user });
    }
    expect(await ask([cookies.bob])).toMatchObject({ status: 200, appUser: 'bob' });
  });

  test('a public route needs no session, so two cookies change nothing there', async () => {
    expect(await ask([`${cookies.bob}; ${cookies.alice}`], '/public')).toMatchObject({ status: 200, audit: expect.objectContaining({ decision: 'public' }) });
  });
});
