// Back-channel logout tokens, rule by rule: a scripted issuer (real HTTP, real JOSE) signs whatever each
// test needs; idgate runs in-process against a real Redis.
import crypto from 'node:crypto';
import http from 'node:http';
import signature from 'cookie-signature';
import * as jose from 'jose';
import request from 'supertest';
import { BACKCHANNEL_EVENT } from '../../service/src/browser/backchannel.js';
import { RedisSessionStore } from '../../service/src/session/redis-session-store.js';
import { redisKeys } from '../../service/src/session/redis-keys.js';
import { idpSessionHash, sessionHash, type StoredSession } from '../../service/src/session/session-record.js';
import { createRedisClient } from '../../service/src/redis.js';
import { listenOnAnyPort, type ManagedProcess } from '../../stack/processes.js';
import { startFreeTempRedis } from '../../stack/redis.js';
import { configFrom, redisReady, startInProcess, stopInProcess, type InProcessIdgate, checkFacts } from '../support/idgate.js';

let redis: ManagedProcess;
let issuerServer: http.Server;
let issuer: string;
let key: jose.CryptoKey;
let idgate: InProcessIdgate;

beforeAll(async () => {
  let redisPort: number;
  ({ port: redisPort, server: redis } = await startFreeTempRedis());
  const pair = await jose.generateKeyPair('RS256', { extractable: true });
  key = pair.privateKey;
  const jwk = { ...(await jose.exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
  issuerServer = http.createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    if (req.url === '/.well-known/openid-configuration') {
      res.end(JSON.stringify({ issuer, authorization_endpoint: `${issuer}/auth`, token_endpoint: `${issuer}/token`, jwks_uri: `${issuer}/jwks`, id_token_signing_alg_values_supported: ['RS256'], response_types_supported: ['code'], subject_types_supported: ['public'] }));
    } else if (req.url === '/jwks') res.end(JSON.stringify({ keys: [jwk] }));
    else res.writeHead(404).end('{}');
  });
  // Its issuer names the port it gets, before anything can ask it.
  issuer = `http://127.0.0.1:${await listenOnAnyPort(issuerServer)}`;
  idgate = await startInProcess(
    configFrom({
      IDGATE_ISSUER: issuer,
      IDGATE_CLIENT_ID: 'idgate',
      IDGATE_CLIENT_SECRET: 's',
      IDGATE_PUBLIC_URL: 'http://app.test',
      IDGATE_REDIS_URL: `redis://127.0.0.1:${redisPort}`,
      IDGATE_COOKIE_SECRETS: 'c'.repeat(40),
      IDGATE_INSECURE_HTTP: '1',
    }),
  );
}, 30_000);

afterAll(async () => {
  stopInProcess();
  await new Promise((r) => issuerServer?.close(r));
  await redis?.stop();
});

/** A session as login leaves it (sealed, indexed by the hash of its IdP session id), and its cookie. */
async function session(sub: string, idpSessionId: string): Promise<string> {
  return plant(sub, { idpSessionHash: idpSessionHash(idpSessionId) });
}

/**
 * A session as login left it before IdP session ids were hashed: the raw sid in the sealed session and
 * as the name of its index key.
 */
async function legacySession(sub: string, idpSessionId: string): Promise<string> {
  return plant(sub, { idpSessionHash: undefined, idpSessionId } as never, async (client, sid) => {
    await client.sadd(redisKeys.index(idgate.config, 'idpsid', idpSessionId), `${sub}\0${sessionHash(sid)}`);
  });
}

async function plant(sub: string, idp: Pick<StoredSession, 'idpSessionHash'>, extra?: (client: ReturnType<typeof createRedisClient>, sid: string) => Promise<void>): Promise<string> {
  const sid = crypto.randomBytes(32).toString('base64url');
  const client = createRedisClient(idgate.config);
  await redisReady(client);
  const stored: StoredSession = { v: 1, subject: sub, user: sub, email: undefined, groups: [], roles: [], issuer, createdAt: Date.now(), idToken: 'x', refreshToken: undefined, accessTokenExpiresAt: undefined, tokensIssuedAt: Date.now(), ...idp };
  await new RedisSessionStore(client, idgate.config).save(sid, { cookie: { originalMaxAge: null }, idgate: stored });
  await extra?.(client, sid);
  client.disconnect();
  return `_idgate=${encodeURIComponent(`s:${signature.sign(sid, 'c'.repeat(40))}`)}`;
}

/** Every Redis key with its value, as a dump would show them. */
async function redisDump(): Promise<string> {
  const client = createRedisClient(idgate.config);
  await redisReady(client);
  const lines: string[] = [];
  for (const key of await client.keys('*')) {
    const type = await client.type(key);
    const value = type === 'string' ? await client.get(key) : type === 'hash' ? JSON.stringify(await client.hgetall(key)) : type === 'set' ? JSON.stringify(await client.smembers(key)) : '';
    lines.push(`${key} ${value}`);
  }
  client.disconnect();
  return lines.join('\n');
}

async function alive(cookie: string): Promise<boolean> {
  return (await request(idgate.server).get('/auth').set(checkFacts('app.test')).set('Cookie', cookie).set('Accept', 'application/json')).status === 200;
}

function logoutToken(claims: jose.JWTPayload = {}, header: Partial<jose.JWTHeaderParameters> = {}, signingKey: jose.CryptoKey = key): Promise<string> {
  return new jose.SignJWT({ iss: issuer, aud: 'idgate', iat: Math.floor(Date.now() / 1000), jti: crypto.randomUUID(), events: { [BACKCHANNEL_EVENT]: {} }, ...claims })
    .setProtectedHeader({ alg: 'RS256', kid: 'k1', typ: 'logout+jwt', ...header })
    .sign(signingKey);
}

function post(token: string) {
  return request(idgate.server).post('/_auth/backchannel-logout').type('form').send({ logout_token: token });
}

describe('back-channel logout', () => {
  test('a valid logout token for an IdP session ends exactly the idgate sessions of that IdP session', async () => {
    const mine = await session('alice', 'idp-sid-1');
    const other = await session('alice', 'idp-sid-2');
    expect(await alive(mine)).toBe(true);
    const res = await post(await logoutToken({ sid: 'idp-sid-1', sub: 'alice' }));
    expect(res.status).toBe(200);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(await alive(mine)).toBe(false);
    expect(await alive(other)).toBe(true);
  });

  test('the IdP session id is indexed only as its hash: no Redis key or value holds it', async () => {
    const cookie = await session('frank', 'idp-sid-frank-7f3a9c');
    const dump = await redisDump();
    expect(dump).not.toContain('idp-sid-frank-7f3a9c');
    expect(dump).toContain(`idgate:idx:idpsid:${idpSessionHash('idp-sid-frank-7f3a9c')} `);
    expect((await post(await logoutToken({ sid: 'idp-sid-frank-7f3a9c' }))).status).toBe(200);
    expect(await alive(cookie)).toBe(false);
  });

  test('a session indexed before hashing (raw IdP session id) is still ended by its logout token, and the raw index goes', async () => {
    const legacy = await legacySession('grace', 'idp-sid-grace-legacy');
    const bystander = await legacySession('grace', 'idp-sid-grace-other');
    expect(await alive(legacy)).toBe(true);
    expect((await post(await logoutToken({ sid: 'idp-sid-grace-legacy', sub: 'grace' }))).status).toBe(200);
    expect([await alive(legacy), await alive(bystander)]).toEqual([false, true]);
    expect(await redisDump()).not.toContain('idp-sid-grace-legacy');
  });

  test('a logout token naming only the subject ends all of its sessions', async () => {
    const a = await session('carol', 'c-1');
    const b = await session('carol', 'c-2');
    const bystander = await session('dave', 'd-1');
    expect((await post(await logoutToken({ sub: 'carol' }))).status).toBe(200);
    expect([await alive(a), await alive(b), await alive(bystander)]).toEqual([false, false, true]);
  });

  test('a replayed logout token is refused', async () => {
    const token = await logoutToken({ sub: 'erin' });
    expect((await post(token)).status).toBe(200);
    const again = await post(token);
    expect(again.status).toBe(400);
    expect(again.body).toEqual({ error: 'invalid_request', error_description: 'the logout token was already used' });
  });

  test.each([
    ['signed by another key', async () => logoutToken({ sub: 'bob' }, {}, (await jose.generateKeyPair('RS256')).privateKey), 'the logout token is not valid'],
    ['for another audience', () => logoutToken({ sub: 'bob', aud: 'someone-else' }), 'the logout token is not valid'],
    ['from another issuer', () => logoutToken({ sub: 'bob', iss: 'https://evil.example' }), 'the logout token is not valid'],
    ['issued ten minutes ago', () => logoutToken({ sub: 'bob', iat: Math.floor(Date.now() / 1000) - 600 }), 'the logout token is not valid'],
    ['without jti', () => logoutToken({ sub: 'bob', jti: undefined }), 'the logout token is not valid'],
    ['without the back-channel event', () => logoutToken({ sub: 'bob', events: { other: {} } }), 'the logout token lacks the back-channel logout event'],
    ['carrying a nonce (an ID token)', () => logoutToken({ sub: 'bob', nonce: 'n' }), 'a logout token must not carry a nonce'],
    ['naming neither sid nor sub', () => logoutToken({}), 'the logout token names neither sid nor sub'],
    ['of another type', () => logoutToken({ sub: 'bob' }, { typ: 'JWT' }), 'the logout token has the wrong type'],
    ['with an unknown kid', () => logoutToken({ sub: 'bob' }, { kid: 'nope' }), 'the logout token is signed with an unknown key'],
    ['with alg none', async () => `${Buffer.from(JSON.stringify({ alg: 'none', kid: 'k1' })).toString('base64url')}.${Buffer.from(JSON.stringify({ iss: issuer, aud: 'idgate', sub: 'bob', iat: Math.floor(Date.now() / 1000), jti: 'n1', events: { [BACKCHANNEL_EVENT]: {} } })).toString('base64url')}.`, 'the logout token algorithm is not accepted'],
    ['that is not a JWT', async () => 'not-a-jwt', 'the logout token is malformed'],
  ])('a logout token %s is refused and ends nothing', async (_name, make, description) => {
    const bob = await session('bob', 'b-1');
    const res = await post(await make());
    expect(res.status).toBe(400);
    expect(res.body.error_description).toBe(description);
    expect(await alive(bob)).toBe(true);
  });
});
