// One table of requests asked of one idgate process over both transports — the HTTP check (/auth) and
// the SPOE agent — must get the same answer: status, redirect, challenge and identity.
import crypto from 'node:crypto';
import signature from 'cookie-signature';
import { startStack, type Stack } from '../../stack/stack.js';
import { loadConfig } from '../../service/src/config.js';
import { Browser, signIn } from '../support/browser.js';
import { converse, hello, notify, setVars } from '../support/spop.js';
import { clientCredentialsToken } from '../support/tokens.js';

let stack: Stack;
let alice: string;
let bob: string;
let token: string;
/** A well-signed cookie whose session is not (or no longer) in Redis: expired. */
let expired: string;

beforeAll(async () => {
  stack = await startStack({ haproxy: true });
  const a = new Browser();
  await signIn(a, `${stack.frontUrl}/`, 'alice');
  alice = a.cookieHeader(new URL(stack.frontUrl))!;
  const b = new Browser();
  await signIn(b, `${stack.frontUrl}/`, 'bob');
  bob = b.cookieHeader(new URL(stack.frontUrl))!;
  token = await clientCredentialsToken(stack.issuer);
  const { config } = loadConfig({ ...process.env, ...stack.env });
  expired = `${config!.cookieName}=${encodeURIComponent(`s:${signature.sign(crypto.randomBytes(32).toString('base64url'), config!.cookieSecrets[0]!)}`)}`;
}, 60_000);

afterAll(async () => {
  await stack?.stop();
});

interface Case {
  method: string;
  pathq: string;
  accept?: string;
  cookie?: () => string;
  authorization?: () => string;
  xrw?: string;
  /** What the case is about, as the answer's reason says it (both transports). */
  reason?: RegExp;
}

const HTML = 'text/html,application/xhtml+xml';
/** Cases the IdP has no part in: anonymous, public, or a session cookie idgate refuses by itself. */
const idgateOnlyCases: [string, Case][] = [
  ['anonymous browser', { method: 'GET', pathq: '/page?x=1', accept: HTML }],
  ['anonymous browser POST', { method: 'POST', pathq: '/form', accept: HTML }],
  ['anonymous API client', { method: 'GET', pathq: '/', accept: 'application/json' }],
  ['anonymous XHR', { method: 'GET', pathq: '/', accept: HTML, xrw: 'XMLHttpRequest' }],
  ['public route', { method: 'GET', pathq: '/public/a' }],
  ['badly signed session cookie', { method: 'GET', pathq: '/', accept: HTML, cookie: () => '_idgate=s%3Anope.nope' }],
  ['expired session (browser)', { method: 'GET', pathq: '/page', accept: HTML, cookie: () => expired }],
  ['expired session (API)', { method: 'GET', pathq: '/api/x', accept: 'application/json', cookie: () => expired, reason: /expired/ }],
];
/** Cases that carry an identity from the IdP: its claims (groups) or its tokens. */
const identityCases: [string, Case][] = [
  ['alice on /admin/', { method: 'GET', pathq: '/admin/', accept: HTML, cookie: () => alice }],
  ['bob on /admin/ (browser)', { method: 'GET', pathq: '/admin/', accept: HTML, cookie: () => bob }],
  ['bob on /admin/ (API)', { method: 'GET', pathq: '/admin/', accept: 'application/json', cookie: () => bob }],
  ['bearer token on /api/', { method: 'GET', pathq: '/api/x', authorization: () => `Bearer ${token}` }],
  ['forged bearer token', { method: 'GET', pathq: '/api/x', authorization: () => `Bearer ${token.slice(0, -4)}AAAA` }],
];

async function expectParity(c: Case): Promise<void> {
  const id = `parity-${Math.random().toString(36).slice(2)}`;
  const host = `127.0.0.1:${stack.ports.front}`;
  const headers: Record<string, string> = { ...stack.checkHeaders, 'x-forwarded-method': c.method, 'x-forwarded-uri': c.pathq, 'x-forwarded-host': host, 'x-forwarded-proto': 'http', 'x-forwarded-for': '127.0.0.1', 'x-request-id': id };
  if (c.accept) headers.accept = c.accept;
  if (c.cookie) headers.cookie = c.cookie();
  if (c.authorization) headers.authorization = c.authorization();
  if (c.xrw) headers['x-requested-with'] = c.xrw;
  const http = await fetch(`${stack.idgateUrls[0]}/auth`, { headers, redirect: 'manual' });

  const args: Record<string, string> = { method: c.method, pathq: c.pathq, host, proto: 'http', src: '127.0.0.1', id, secret: stack.checkHeaders['X-Idgate-Check-Secret']! };
  if (c.accept) args.accept = c.accept;
  if (c.cookie) args.cookie = c.cookie();
  if (c.authorization) args.authorization = c.authorization();
  if (c.xrw) args.xrw = c.xrw;
  const { frames } = await converse(stack.ports.spoe[0]!, [hello(), notify(1, 1, args)], 2);
  const vars = setVars(frames.find((f) => f.frameId === 1 && f.type === 103)!);

  expect(vars.status).toBe(http.status);
  expect(vars.location).toBe(http.headers.get('location') ?? undefined);
  expect(vars.www_authenticate).toBe(http.headers.get('www-authenticate') ?? undefined);
  const identity = (name: string) => http.headers.get(`x-auth-${name}`) ?? undefined;
  for (const name of ['user', 'email', 'subject', 'groups', 'scopes', 'client', 'backend']) expect({ name, value: vars[name] }).toEqual({ name, value: identity(name) });
  if (http.status >= 400 && http.status < 500) expect(vars.body).toBe(await http.text());
  if (c.reason) expect(vars.reason).toMatch(c.reason);
}

test.each(idgateOnlyCases)('%s: the HTTP check and the SPOE agent answer alike', async (_name, c) => expectParity(c));

describe('per IdP profile', () => {
  test.each(identityCases)('%s: the HTTP check and the SPOE agent answer alike', async (_name, c) => expectParity(c));
});
