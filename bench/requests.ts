// What the benchmarks ask: a signed-in session's cookie and a machine token from the stack's IdP, the
// requests that carry them (through HAProxy, or straight to idgate's /auth with the X-Forwarded-* facts
// HAProxy would add), and idgate's real answers to them, which the transports' ceilings repeat.
import type { Stack } from '../stack/stack.js';
import { Browser, signIn } from '../test/support/browser.js';
import { answerFromHeaders, type ConstantAnswers } from './constant-agent.js';
import { allowHeadersFrom, type NullAuthAllows } from './null-auth.js';

export interface BenchRequests {
  readonly cookie: string;
  readonly token: string;
  /** Through HAProxy: the session request's headers (path /) and the bearer request's (path /api/hello). */
  readonly session: Record<string, string>;
  readonly bearer: Record<string, string>;
  /** Straight to idgate's /auth: the same, with the facts and the check secret HAProxy adds. */
  readonly sessionCheck: Record<string, string>;
  readonly bearerCheck: Record<string, string>;
}

/** Signs alice in through the stack's front end and gets demo-bot a token. */
export async function benchRequests(stack: Stack): Promise<BenchRequests> {
  const browser = new Browser();
  await signIn(browser, `${stack.frontUrl}/`, 'alice');
  const cookie = browser.cookieHeader(new URL(stack.frontUrl))!;
  const token = await machineToken(stack.issuer);
  const facts = (uri: string) => ({ 'X-Forwarded-Method': 'GET', 'X-Forwarded-Host': `127.0.0.1:${stack.ports.front}`, 'X-Forwarded-Uri': uri });
  const session = { Cookie: cookie };
  const bearer = { Authorization: `Bearer ${token}`, Accept: 'application/json' };
  return { cookie, token, session, bearer, sessionCheck: { ...session, ...facts('/'), ...stack.checkHeaders }, bearerCheck: { ...bearer, ...facts('/api/hello'), ...stack.checkHeaders } };
}

/** idgate's answers to both requests, as the SPOE ceiling and the Lua ceiling's backend repeat them. */
export async function realAnswers(stack: Stack, requests: BenchRequests): Promise<{ agent: ConstantAnswers; backend: NullAuthAllows }> {
  const ask = async (headers: Record<string, string>) => {
    const res = await fetch(`${stack.idgateUrls[0]}/auth`, { headers });
    if (res.status !== 200) throw new Error(`idgate answered ${res.status} to the bench's request: ${await res.text()}`);
    return res.headers;
  };
  const [session, bearer] = [await ask(requests.sessionCheck), await ask(requests.bearerCheck)];
  return {
    agent: { session: answerFromHeaders(session), bearer: answerFromHeaders(bearer) },
    backend: { session: allowHeadersFrom(session), bearer: allowHeadersFrom(bearer) },
  };
}

/** An access token of demo-bot (client credentials) from the IdP at `issuer`. */
async function machineToken(issuer: string): Promise<string> {
  const res = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from('demo-bot:demo-bot-secret').toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: 'grant_type=client_credentials&scope=api%3Aread',
  });
  return ((await res.json()) as { access_token: string }).access_token;
}
