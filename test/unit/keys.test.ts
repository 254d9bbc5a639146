// RemoteKeySet against a real HTTP JWKS endpoint (in this process), with a controllable clock.
import http from 'node:http';
import * as jose from 'jose';
import { RemoteKeySet } from '../../service/src/tokens/keys.js';
import { Introspector } from '../../service/src/tokens/introspection.js';
import { waitUntil } from '../../stack/wait.js';
import { MAX_JWKS_BYTES } from '../../service/src/limits.js';

let server: http.Server;
let base: string;
let jwks: { keys: jose.JWK[] } = { keys: [] };
let jwksHits = 0;
let introspectionHits = 0;
let down = false;
/** The endless answers below: bytes each one had written when the client closed it. */
const endlessClosedAt: number[] = [];

/**
 * An answer that never ends: a JSON opening, then spaces chunk after chunk, as fast as the client reads
 * (a client that buffers the whole body before looking at its size would read forever). With
 * `declare`, a Content-Length far over any bound comes first and no body at all.
 */
function answerEndlessly(res: http.ServerResponse, opening: string, declare = false): void {
  let written = 0;
  res.on('close', () => endlessClosedAt.push(written));
  if (declare) {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(1 << 30) }).flushHeaders();
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json' });
  const chunk = Buffer.alloc(16 * 1024, ' ');
  const more = () => {
    while (!res.destroyed) {
      written += chunk.length;
      if (!res.write(chunk)) return void res.once('drain', more);
    }
  };
  res.write(opening);
  more();
}

async function publicJwk(kid: string, alg = 'RS256'): Promise<jose.JWK> {
  const { publicKey } = await jose.generateKeyPair(alg, { extractable: true });
  return { ...(await jose.exportJWK(publicKey)), kid, alg, use: 'sig' };
}

beforeAll(async () => {
  server = http.createServer((req, res) => {
    if (down) {
      res.writeHead(503).end();
      return;
    }
    if (req.url === '/jwks') {
      jwksHits += 1;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(jwks));
      return;
    }
    if (req.url === '/jwks-endless' || req.url === '/jwks-declared-huge') {
      answerEndlessly(res, '{"keys": [', req.url === '/jwks-declared-huge');
      return;
    }
    if (req.url === '/introspect-endless') {
      req.resume().on('end', () => answerEndlessly(res, '{"active": true, "sub": "svc", "pad": "'));
      return;
    }
    if (req.url === '/introspect') {
      introspectionHits += 1;
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const token = new URLSearchParams(body).get('token');
        const answer = token === 'good' ? { active: true, sub: 'svc', scope: 'a b', exp: Math.floor(Date.now() / 1000) + 3600 } : { active: false };
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
      });
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});

afterAll(() => new Promise<void>((r) => server.close(() => r())));

beforeEach(() => {
  jwksHits = 0;
  introspectionHits = 0;
  down = false;
  endlessClosedAt.length = 0;
});

describe('RemoteKeySet', () => {
  test('a new key published by the issuer is found with one refetch', async () => {
    let now = 0;
    jwks = { keys: [await publicJwk('k1')] };
    const set = new RemoteKeySet(new URL(`${base}/jwks`), { now: () => now, cooldownMs: 30_000 });
    expect(await set.getKey('k1', 'RS256')).toBeDefined();
    expect(jwksHits).toBe(1);
    jwks = { keys: [...jwks.keys, await publicJwk('k2')] };
    now = 31_000;
    expect(await set.getKey('k2', 'RS256')).toBeDefined();
    expect(jwksHits).toBe(2);
  });

  test('a flood of unknown kids causes at most one fetch per cool-down', async () => {
    let now = 0;
    jwks = { keys: [await publicJwk('k1')] };
    const set = new RemoteKeySet(new URL(`${base}/jwks`), { now: () => now, cooldownMs: 30_000 });
    await set.load();
    now = 40_000;
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => set.getKey(`bogus-${i}`, 'RS256')));
    expect(results.every((k) => k === undefined)).toBe(true);
    expect(jwksHits).toBe(2);
    now = 50_000;
    await set.getKey('bogus-again', 'RS256');
    expect(jwksHits).toBe(2);
  });

  test('when the issuer is unreachable, the keys already held keep working and the failure is reported', async () => {
    let now = 0;
    const failures: string[] = [];
    jwks = { keys: [await publicJwk('k1')] };
    const set = new RemoteKeySet(new URL(`${base}/jwks`), { now: () => now, maxAgeMs: 1000, cooldownMs: 1000, onFetch: (r) => !r.ok && failures.push(r.error) });
    await set.load();
    down = true;
    now = 5000;
    expect(await set.getKey('k1', 'RS256')).toBeDefined();
    await waitUntil('a failed fetch reported', () => failures.length > 0); // the background refresh reports its fetch
    expect(failures).toEqual([expect.stringContaining('HTTP 503')]);
    expect(await set.getKey('k1', 'RS256')).toBeDefined();
  });

  test('a key the issuer retired stops verifying after the refetch', async () => {
    let now = 0;
    jwks = { keys: [await publicJwk('k1'), await publicJwk('k2')] };
    let fetches = 0;
    const set = new RemoteKeySet(new URL(`${base}/jwks`), { now: () => now, maxAgeMs: 1000, cooldownMs: 1000, onFetch: () => (fetches += 1) });
    expect(await set.getKey('k1', 'RS256')).toBeDefined();
    jwks = { keys: [jwks.keys[1]!] };
    now = 2000;
    await set.getKey('k2', 'RS256'); // stale: triggers the background refetch
    await waitUntil('a second fetch', () => fetches === 2);
    expect(await set.getKey('k1', 'RS256')).toBeUndefined();
  });

  test('a key is used only with its own algorithm, and symmetric or private keys are never taken', async () => {
    const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
    jwks = {
      keys: [
        await publicJwk('rs', 'RS256'),
        { kty: 'oct', k: 'c2VjcmV0', kid: 'hmac', alg: 'HS256' },
        { ...(await jose.exportJWK(privateKey)), kid: 'private', alg: 'RS256' },
        { ...(await publicJwk('enc')), use: 'enc' },
      ],
    };
    const set = new RemoteKeySet(new URL(`${base}/jwks`));
    expect(await set.getKey('rs', 'RS256')).toBeDefined();
    expect(await set.getKey('rs', 'ES256')).toBeUndefined();
    expect(await set.getKey('hmac', 'HS256')).toBeUndefined();
    expect(await set.getKey('private', 'RS256')).toBeUndefined();
    expect(await set.getKey('enc', 'RS256')).toBeUndefined();
  });

  test.each([
    ['an endless JWKS is read up to the bound, then refused and its connection closed', '/jwks-endless'],
    ['a JWKS whose Content-Length is over the bound is refused unread', '/jwks-declared-huge'],
  ])('%s', async (_name, route) => {
    const failures: string[] = [];
    // No timeout could end these reads: only the bound can.
    const set = new RemoteKeySet(new URL(`${base}${route}`), { fetchTimeoutMs: 600_000, onFetch: (r) => !r.ok && failures.push(r.error) });
    await set.load();
    expect(failures).toEqual([expect.stringContaining(`answer larger than ${MAX_JWKS_BYTES} bytes`)]);
    expect(set.loaded).toBe(false);
    await waitUntil('the endless answer closed', () => endlessClosedAt.length === 1);
  });

  test('with no keys ever loaded, an unreachable issuer is an unavailable error, not an invalid token', async () => {
    down = true;
    const set = new RemoteKeySet(new URL(`${base}/jwks`));
    await expect(set.getKey('k1', 'RS256')).rejects.toMatchObject({ code: 'idp_unavailable' });
  });
});

describe('Introspector', () => {
  const make = (now: () => number = Date.now) =>
    new Introspector({ endpoint: new URL(`${base}/introspect`), clientId: 'idgate', clientSecret: 's', negativeAgeMs: 30_000, maxEntries: 3, maxNegativeEntries: 3, now });

  test('an active answer is reused; concurrent checks of one token share one call', async () => {
    const introspector = make();
    const answers = await Promise.all(Array.from({ length: 10 }, () => introspector.introspect('good')));
    expect(answers.every((a) => a.active && a.claims.sub === 'svc')).toBe(true);
    await introspector.introspect('good');
    expect(introspectionHits).toBe(1);
  });

  test('an inactive answer is cached briefly, then asked again', async () => {
    let now = Date.now();
    const introspector = make(() => now);
    expect((await introspector.introspect('bad')).active).toBe(false);
    expect((await introspector.introspect('bad')).active).toBe(false);
    expect(introspectionHits).toBe(1);
    now += 31_000;
    await introspector.introspect('bad');
    expect(introspectionHits).toBe(2);
  });

  test('the cache is bounded', async () => {
    const introspector = make();
    for (const t of ['t1', 't2', 't3', 't4']) await introspector.introspect(t);
    await introspector.introspect('t1');
    expect(introspectionHits).toBe(5);
  });

  test('an endless answer is read up to the bound, then the token is unavailable (never active) and the connection closed', async () => {
    const introspector = new Introspector({ endpoint: new URL(`${base}/introspect-endless`), clientId: 'idgate', clientSecret: 's', timeoutMs: 600_000, maxBodyBytes: 64 * 1024 });
    await expect(introspector.introspect('good')).rejects.toMatchObject({ code: 'idp_unavailable', detail: 'introspection: answer larger than 65536 bytes' });
    await waitUntil('the endless answer closed', () => endlessClosedAt.length === 1);
  });

  test('an unreachable endpoint is an unavailable error', async () => {
    down = true;
    await expect(make().introspect('good')).rejects.toMatchObject({ code: 'idp_unavailable' });
  });
});

describe('Introspector under a flood', () => {
  test('calls under way are bounded; beyond the bound the check is unavailable, not allowed', async () => {
    const introspector = new Introspector({ endpoint: new URL(`${base}/introspect`), clientId: 'idgate', clientSecret: 's', maxInflight: 4 });
    const results = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => introspector.introspect(`flood-${i}`)));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(4);
    expect(results.filter((r) => r.status === 'rejected').every((r) => (r as PromiseRejectedResult).reason.code === 'idp_unavailable')).toBe(true);
  });
});
