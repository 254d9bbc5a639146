// DPoP server nonces (RFC 9449 sections 8 and 9) end to end, with IDGATE_DPOP_NONCE=1: two idgate replicas
// sharing the cookie secrets behind the real HAProxy, on both transports (Lua and the HTTP check; SPOE).
// A proof without idgate's nonce gets 401 use_dpop_nonce and a DPoP-Nonce header, the retry with it passes;
// a forged nonce gets a fresh one; a nonce due to expire gets a fresh one on the 200; a DPoP-Nonce the
// client sends is nothing, and one the app sends is the app's. Both front ends protect an app of this test
// that echoes the request and, on /api/app-nonce, answers with a DPoP-Nonce of its own. The proof rules without nonces are test/e2e/dpop.test.ts, the nonces alone
// test/unit/dpop-nonce.test.ts.
import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { startStack, type Stack } from '../../stack/stack.js';
import { startHaproxy } from '../../stack/haproxy.js';
import { startOnFreePort, type ManagedProcess } from '../../stack/processes.js';
import { createDpopNonces } from '../../service/src/tokens/dpop-nonce.js';
import { DPOP_NONCE_SLOT_SECONDS } from '../../service/src/limits.js';
import { dpopClient } from '../support/identities.js';
import { dpopBoundToken, dpopKey, dpopProof, type DpopKey } from '../support/dpop.js';
import { waitUntil } from '../../stack/wait.js';

let stack: Stack;
let app: http.Server;
let luaHaproxy: ManagedProcess;
let spoeHaproxy: ManagedProcess;
let luaFrontUrl: string;
let spoeFrontUrl: string;
let key: DpopKey;
let token: string;
/** What idgate issues and accepts: the same secrets, another process. */
let nonces: ReturnType<typeof createDpopNonces>;

/** The DPoP-Nonce the app sends on /api/app-nonce: its own business, whatever idgate does. */
const APPS_NONCE = 'the-apps-own-nonce';

beforeAll(async () => {
  // The stack's own HAProxy is not needed: both front ends below protect this test's app.
  stack = await startStack({ idgateReplicas: 2, haproxy: false, idgateClock: 'test', idgateEnv: { IDGATE_DPOP_NONCE: '1' } });
  app = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', ...(req.url?.startsWith('/api/app-nonce') ? { 'dpop-nonce': APPS_NONCE } : {}) });
    res.end(JSON.stringify({ method: req.method, headers: req.headers }));
  });
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
  const appPort = (app.address() as AddressInfo).port;
  const front = async (mode: 'lua' | 'spoe') => {
    const { port, started } = await startOnFreePort((frontPort) =>
      startHaproxy({
        mode,
        name: `haproxy-${mode}-app`,
        frontPort,
        idgatePort: stack.ports.idgate[0]!,
        idgatePort2: stack.ports.idgate[1]!,
        spoePort: stack.ports.spoe[0]!,
        spoePort2: stack.ports.spoe[1]!,
        upstreamPort: appPort,
        checkSecret: stack.checkSecret,
      }),
    );
    return { url: `http://127.0.0.1:${port}`, started };
  };
  ({ url: luaFrontUrl, started: luaHaproxy } = await front('lua'));
  ({ url: spoeFrontUrl, started: spoeHaproxy } = await front('spoe'));
  key = await dpopKey();
  token = await dpopBoundToken(stack.issuer, key);
  nonces = createDpopNonces(stack.env.IDGATE_COOKIE_SECRETS!.split(','));
}, 90_000);

afterAll(async () => {
  await Promise.all([luaHaproxy?.stop(), spoeHaproxy?.stop()]);
  await new Promise((resolve) => (app ? app.close(resolve) : resolve(undefined)));
  await stack?.stop();
});

const ALGS = 'algs="ES256 RS256 PS256 EdDSA"';
const challenge = (description: string) => `DPoP realm="idgate", error="use_dpop_nonce", error_description="${description}", ${ALGS}`;
const LACKS = 'the DPoP proof lacks the nonce idgate gives (DPoP-Nonce)';
const NOT_OURS = 'the DPoP proof nonce is not one idgate gave lately (DPoP-Nonce)';

interface Answer {
  status: number;
  www: string;
  /** Every DPoP-Nonce header of the response, joined (fetch joins repeats with ", "). */
  nonce: string | null;
  cacheControl: string | null;
  /** What the upstream received (200 only). */
  received: { headers?: Record<string, string> } | undefined;
}

/** GET `path` on `front` with the bound token and a proof for it, carrying `nonce` when given. */
async function call(front: string, path: string, nonce?: string, extraHeaders: Record<string, string> = {}): Promise<Answer> {
  const proof = await dpopProof(key, 'GET', `${front}${path}`, { token, claims: { nonce } });
  const res = await fetch(`${front}${path}`, { headers: { accept: 'application/json', authorization: `DPoP ${token}`, dpop: proof, ...extraHeaders }, redirect: 'manual' });
  const body = (await res.json().catch(() => undefined)) as Answer['received'];
  return { status: res.status, www: res.headers.get('www-authenticate') ?? '', nonce: res.headers.get('dpop-nonce'), cacheControl: res.headers.get('cache-control'), received: res.status === 200 ? body : undefined };
}

/** What this test moved idgate's clock by (the stack's test clock): the nonces here are computed on idgate's time. */
let movedMs = 0;
const idgateNow = () => Date.now() + movedMs;

/**
 * Not within a few seconds of a slot's end: a nonce computed here is still of this slot when idgate checks
 * it. Near the end, idgate's clock is moved into the next slot rather than waited for.
 */
async function awayFromSlotEdge(): Promise<void> {
  const slotMs = DPOP_NONCE_SLOT_SECONDS * 1000;
  const left = slotMs - (idgateNow() % slotMs);
  if (left >= 5000) return;
  movedMs += left + 100;
  await stack.advanceIdgateClock(left + 100);
}

const TRANSPORTS: [string, () => string][] = [
  ['Lua and the HTTP check', () => luaFrontUrl],
  ['SPOE', () => spoeFrontUrl],
];

describe.each(TRANSPORTS)('IDGATE_DPOP_NONCE=1, through HAProxy (%s)', (_name, front) => {
  beforeEach(awayFromSlotEdge);

  test('a proof without a nonce is 401 use_dpop_nonce with a DPoP-Nonce; the retry with it passes, and no new nonce comes with the 200', async () => {
    const first = await call(front(), '/api/items');
    expect(first.status).toBe(401);
    expect(first.www).toBe(challenge(LACKS));
    expect(first.cacheControl).toBe('no-store');
    expect(first.nonce).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(first.nonce).toBe(nonces.issue(idgateNow()));
    const retry = await call(front(), '/api/items', first.nonce!);
    expect(retry.status).toBe(200);
    expect(retry.received?.headers).toMatchObject({ 'x-auth-client': dpopClient.id });
    expect(retry.nonce).toBeNull();
    // the nonce is good for as many proofs as the client makes in its slots
    expect((await call(front(), '/api/other', first.nonce!)).status).toBe(200);
  });

  test('a forged nonce is 401 use_dpop_nonce with a fresh nonce', async () => {
    const forged = await call(front(), '/api/items', crypto.randomBytes(32).toString('base64url'));
    expect(forged.status).toBe(401);
    expect(forged.www).toBe(challenge(NOT_OURS));
    expect(forged.nonce).toBe(nonces.issue(idgateNow()));
  });

  test('a nonce of another secret, or two slots old, is refused the same way', async () => {
    const otherSecret = await call(front(), '/api/items', createDpopNonces([crypto.randomBytes(32).toString('base64url')]).issue());
    expect([otherSecret.status, otherSecret.www, otherSecret.nonce]).toEqual([401, challenge(NOT_OURS), nonces.issue(idgateNow())]);
    const stale = await call(front(), '/api/items', nonces.issue(idgateNow() - 2 * DPOP_NONCE_SLOT_SECONDS * 1000));
    expect([stale.status, stale.www, stale.nonce]).toEqual([401, challenge(NOT_OURS), nonces.issue(idgateNow())]);
  });

  test('a nonce of the previous slot passes, and the 200 hands the client a fresh one (RFC 9449 section 8.2), once', async () => {
    const previous = nonces.issue(idgateNow() - DPOP_NONCE_SLOT_SECONDS * 1000);
    const res = await call(front(), '/api/items', previous);
    expect(res.status).toBe(200);
    expect(res.nonce).toBe(nonces.issue(idgateNow()));
    // idgate's nonce is for the client, never for the app
    expect(Object.keys(res.received?.headers ?? {})).not.toContain('dpop-nonce');
  });

  test('a DPoP-Nonce the client sends is nothing: not a nonce for its proof, never echoed as idgate\'s', async () => {
    const current = nonces.issue(idgateNow());
    const without = await call(front(), '/api/items', undefined, { 'dpop-nonce': current });
    expect([without.status, without.www]).toEqual([401, challenge(LACKS)]);
    expect(without.nonce).toBe(current);
    const forgedHeader = await call(front(), '/api/items', current, { 'dpop-nonce': 'chosen-by-the-client' });
    expect(forgedHeader.status).toBe(200);
    expect(forgedHeader.nonce).toBeNull();
  });

  test('the app\'s own DPoP-Nonce is the app\'s: passed on untouched, and idgate\'s is added beside it, never instead', async () => {
    const current = await call(front(), '/api/app-nonce', nonces.issue(idgateNow()));
    expect(current.status).toBe(200);
    expect(current.nonce).toBe(APPS_NONCE);
    const previous = await call(front(), '/api/app-nonce', nonces.issue(idgateNow() - DPOP_NONCE_SLOT_SECONDS * 1000));
    expect(previous.status).toBe(200);
    expect(previous.nonce?.split(', ').sort()).toEqual([APPS_NONCE, nonces.issue(idgateNow())].sort());
  });

  test('a refusal for want of a nonce is audited with its reason and scheme', async () => {
    const marker = crypto.randomUUID();
    // The proof is for a path of its own, so the audit line is found by it.
    const res = await call(front(), `/api/${marker}`);
    expect(res.status).toBe(401);
    const find = () =>
      ['idgate', 'idgate2']
        .flatMap((name) => stack.processes[name]!.output().split('\n'))
        .find((l) => l.includes('"event":"decision"') && l.includes(marker));
    await waitUntil('the decision logged', () => find() !== undefined);
    expect(JSON.parse(find()!)).toMatchObject({ decision: 'unauthenticated', status: 401, reason: LACKS, scheme: 'dpop', path: `/api/${marker}` });
  });
});

describe('replicas accept each other\'s nonces (no Redis: the shared cookie secret)', () => {
  test('a nonce replica 1 gave passes at replica 2', async () => {
    await awayFromSlotEdge();
    const host = `127.0.0.1:${stack.ports.front}`;
    const ask = async (idgateUrl: string, nonce?: string) =>
      fetch(`${idgateUrl}/auth`, {
        headers: {
          ...stack.checkHeaders,
          'x-forwarded-method': 'GET',
          'x-forwarded-proto': 'http',
          'x-forwarded-host': host,
          'x-forwarded-uri': '/api/items',
          accept: 'application/json',
          authorization: `DPoP ${token}`,
          dpop: await dpopProof(key, 'GET', `http://${host}/api/items`, { token, claims: { nonce } }),
        },
      });
    const first = await ask(stack.idgateUrls[0]!);
    expect(first.status).toBe(401);
    const nonce = first.headers.get('dpop-nonce');
    expect(nonce).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const other = await ask(stack.idgateUrls[1]!, nonce!);
    expect(other.status).toBe(200);
    expect(other.headers.get('dpop-nonce')).toBeNull();
  });
});
