// Only HAProxy asks (docs/security.md, "Only HAProxy asks"): the compiled idgate answers a check, over
// either transport, only when it carries one of IDGATE_CHECK_SECRETS, and the shipped HAProxy lines send
// it. Here idgate is mid-rotation (a new and an old secret): a Lua HAProxy still sends the old one, a SPOE
// HAProxy already the new one, and both get decisions; a local process that asks idgate itself does not.
import crypto from 'node:crypto';
import { startHaproxy } from '../../stack/haproxy.js';
import { freePort, type ManagedProcess } from '../../stack/processes.js';
import { startStack, type Stack } from '../../stack/stack.js';
import type { EchoedRequest } from '../../stack/upstream.js';
import { Browser, signIn } from '../support/browser.js';
import { checkFacts } from '../support/idgate.js';
import { converse, hello, notify, setVars } from '../support/spop.js';
import { waitUntil } from '../../stack/wait.js';

const secret = (label: string) => `check-secret-of-the-tests-${label}-${crypto.randomBytes(12).toString('hex')}`;
const NEW = secret('new');
const OLD = secret('old');

let stack: Stack;
const haproxies: ManagedProcess[] = [];
let spoeFront: string;
/** alice's session cookie, signed in through the Lua front. */
let alice: string;

beforeAll(async () => {
  stack = await startStack({ haproxy: false, idgateEnv: { IDGATE_CHECK_SECRETS: `${NEW},${OLD}` } });
  const backends = { idgatePort: stack.ports.idgate[0]!, upstreamPort: stack.ports.upstream, canaryPort: stack.ports.canary };
  haproxies.push(await startHaproxy({ ...backends, frontPort: stack.ports.front, checkSecret: OLD }));
  const spoePort = await freePort();
  haproxies.push(await startHaproxy({ ...backends, frontPort: spoePort, mode: 'spoe', spoePort: stack.ports.spoe[0]!, checkSecret: NEW, name: 'haproxy-spoe' }));
  spoeFront = `http://127.0.0.1:${spoePort}`;
  const browser = new Browser();
  await signIn(browser, `${stack.frontUrl}/`, 'alice');
  alice = browser.cookieHeader(new URL(stack.frontUrl))!;
}, 60_000);

afterAll(async () => {
  for (const h of haproxies) await h.stop();
  await stack?.stop();
});

/** idgate's /auth asked directly, as a local process (or an SSRF) can, about alice's page with her cookie. */
const askIdgate = (extra: Record<string, string> = {}) =>
  fetch(`${stack.idgateUrls[0]}/auth`, { headers: { ...checkFacts(`127.0.0.1:${stack.ports.front}`, '/admin/'), 'x-forwarded-for': '127.0.0.1', cookie: alice, accept: 'application/json', ...extra }, redirect: 'manual' });

const identityHeaders = (res: Response) => [...res.headers.keys()].filter((name) => name.startsWith('x-auth-') || name === 'set-cookie' || name.startsWith('x-idgate-'));

describe('a local process asking idgate directly', () => {
  test('without the secret, with a made-up X-Forwarded-* and a stolen cookie, gets 403 untrusted_peer: no identity, no renewed session, a log line', async () => {
    const res = await askIdgate();
    expect(res.status).toBe(403);
    expect(await res.json()).toEqual({ error: 'untrusted_peer', reason: 'only HAProxy may ask idgate for decisions' });
    expect(identityHeaders(res)).toEqual([]);
    const logged = () => stack.processes.idgate!.output().includes("check refused: it lacks HAProxy's check secret");
    await waitUntil('the refusal logged', logged);
    expect(logged()).toBe(true);
    // The log names the refusal, never a secret.
    expect(stack.processes.idgate!.output()).not.toContain(NEW);
  });

  test.each([
    ['an empty secret', ''],
    ['a wrong secret', secret('wrong')],
    ['a secret no longer listed', secret('retired')],
    ['the new secret with a character more', `${NEW}x`],
  ])('with %s, gets 403 untrusted_peer too', async (_name, value) => {
    const res = await askIdgate({ 'x-idgate-check-secret': value });
    expect(res.status).toBe(403);
    expect(((await res.json()) as { error: string }).error).toBe('untrusted_peer');
    expect(identityHeaders(res)).toEqual([]);
  });

  test.each([
    ['the new secret', NEW],
    ['the old secret, during the rotation', OLD],
  ])('with %s, gets the decision', async (_name, value) => {
    const res = await askIdgate({ 'x-idgate-check-secret': value });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-auth-user')).toBe('alice');
  });
});

describe("the SPOE agent asked directly, as a local SPOP client can", () => {
  const ask = async (extra: Record<string, string>) => {
    const args = { method: 'GET', pathq: '/admin/', host: `127.0.0.1:${stack.ports.front}`, proto: 'http', src: '127.0.0.1', id: 'spoe-secret', cookie: alice, accept: 'application/json', ...extra };
    const { frames } = await converse(stack.ports.spoe[0]!, [hello(), notify(1, 1, args)], 2);
    return setVars(frames.find((f) => f.frameId === 1 && f.type === 103)!);
  };

  test.each([
    ['without the secret', {}],
    ['with a wrong secret', { secret: secret('wrong') }],
  ])('%s: the message is refused (status 403 untrusted_peer), no identity, no renewed session', async (_name, extra) => {
    const vars = await ask(extra);
    expect(vars.status).toBe(403);
    expect(vars.body).toContain('untrusted_peer');
    for (const name of ['user', 'subject', 'groups', 'set_cookie', 'path']) expect({ name, value: vars[name] }).toEqual({ name, value: undefined });
  });

  test('with the old secret, during the rotation: the decision', async () => {
    const vars = await ask({ secret: OLD });
    expect(vars.status).toBe(200);
    expect(vars.user).toBe('alice');
  });
});

describe('through HAProxy, which sends the secret', () => {
  test.each([
    ['Lua, sending the old secret', () => stack.frontUrl],
    ['SPOE, sending the new secret', () => spoeFront],
  ])('%s: alice reaches /admin/ with her identity', async (_name, front) => {
    const res = await fetch(`${front()}/admin/`, { headers: { cookie: alice, accept: 'application/json' }, redirect: 'manual' });
    expect(res.status).toBe(200);
    const seen = (await res.json()) as EchoedRequest;
    expect(seen.headers['x-auth-user']).toBe('alice');
    // The secret stops at idgate: the app never sees it.
    expect(seen.headers['x-idgate-check-secret']).toBeUndefined();
  });
});
