// The callback must refuse ID tokens that a real IdP would never issue: signed by a key outside the
// issuer's JWKS, for another audience, with another nonce or issuer, expired, or issued in the future. A small scripted IdP
// (real HTTP, real JOSE) serves discovery, JWKS and a token endpoint whose ID token each test shapes.
import http from 'node:http';
import * as jose from 'jose';
import { loadConfig } from '../../service/src/config.js';
import { OidcRelyingParty } from '../../service/src/idp/relying-party.js';
import type { StoredSession } from '../../service/src/session/session-record.js';
import { listenOnAnyPort } from '../../stack/processes.js';

let server: http.Server;
let issuer: string;
let publishedKey: jose.CryptoKey;
let otherKey: jose.CryptoKey;
let publicJwk: jose.JWK;
let shapeIdToken: (claims: jose.JWTPayload) => Promise<string>;
/** How the token endpoint answers a refresh_token grant. */
let refreshAnswer: { status: number; body: Record<string, unknown> } | 'id_token' = 'id_token';
/** The `scope` parameter of the last refresh_token grant (null: none sent). */
let refreshScope: string | null | undefined;
/** Calls to the userinfo endpoint, which answers roles and groups of its own. */
let userinfoCalls = 0;

beforeAll(async () => {
  const pair = await jose.generateKeyPair('RS256', { extractable: true });
  publishedKey = pair.privateKey;
  publicJwk = { ...(await jose.exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
  otherKey = (await jose.generateKeyPair('RS256')).privateKey;
  server = http.createServer((req, res) => {
    const json = (body: unknown) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.url === '/.well-known/openid-configuration') {
      return json({
        issuer,
        authorization_endpoint: `${issuer}/auth`,
        token_endpoint: `${issuer}/token`,
        jwks_uri: `${issuer}/jwks`,
        userinfo_endpoint: `${issuer}/userinfo`,
        response_types_supported: ['code'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['RS256'],
      });
    }
    if (req.url === '/jwks') return json({ keys: [publicJwk] });
    if (req.url === '/userinfo') {
      userinfoCalls += 1;
      return json({ sub: 'alice', roles: ['auditor'], groups: ['from-userinfo'] });
    }
    if (req.url === '/token') {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const refresh = new URLSearchParams(body).get('grant_type') === 'refresh_token';
        if (refresh) refreshScope = new URLSearchParams(body).get('scope');
        if (refresh && refreshAnswer !== 'id_token') {
          res.writeHead(refreshAnswer.status, { 'content-type': 'application/json' });
          res.end(JSON.stringify(refreshAnswer.body));
          return;
        }
        void shapeIdToken({}).then((idToken) => json({ access_token: 'opaque', token_type: 'Bearer', expires_in: 300, id_token: idToken, refresh_token: 'rt-2', scope: 'openid email offline_access' }));
      });
      return undefined;
    }
    res.writeHead(404).end();
    return undefined;
  });
  // Its issuer names the port it gets, before anything can ask it.
  issuer = `http://127.0.0.1:${await listenOnAnyPort(server)}`;
});

afterAll(() => new Promise<void>((r) => server.close(() => r())));

async function relyingParty(env: Record<string, string> = {}): Promise<OidcRelyingParty> {
  const { config } = loadConfig({
    ...env,
    IDGATE_ISSUER: issuer,
    IDGATE_CLIENT_ID: 'idgate',
    IDGATE_CLIENT_SECRET: 'secret',
    IDGATE_PUBLIC_URL: 'http://app.test',
    IDGATE_COOKIE_SECRETS: 'x'.repeat(32),
    IDGATE_INSECURE_HTTP: '1',
  });
  const rp = new OidcRelyingParty(config!, () => undefined);
  await rp.start();
  return rp;
}

async function login(claims: jose.JWTPayload, key: 'published' | 'other' = 'published', env: Record<string, string> = {}): Promise<StoredSession> {
  const now = Math.floor(Date.now() / 1000);
  shapeIdToken = (extra) =>
    new jose.SignJWT({ iss: issuer, aud: 'idgate', sub: 'alice', nonce: 'n-1', iat: now, exp: now + 300, groups: ['admins'], ...claims, ...extra })
      .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
      .sign(key === 'published' ? publishedKey : otherKey);
  const rp = await relyingParty(env);
  const callback = new URL('http://app.test/_auth/callback?code=c-1&state=s-1');
  try {
    return await rp.completeLogin(callback, { state: 's-1', codeVerifier: 'v'.repeat(43), nonce: 'n-1' }, Date.now());
  } finally {
    rp.stop();
  }
}

describe('ID token validation at the callback', () => {
  test('a well-formed ID token signed by the issuer is accepted', async () => {
    await expect(login({})).resolves.toMatchObject({ subject: 'alice', groups: ['admins'] });
  });

  test.each([
    ['signed by a key outside the issuer JWKS', {}, 'other'],
    ['for another audience', { aud: 'someone-else' }, 'published'],
    ['with another nonce', { nonce: 'n-2' }, 'published'],
    ['from another issuer', { iss: 'https://evil.example' }, 'published'],
    ['expired', { exp: Math.floor(Date.now() / 1000) - 600, iat: Math.floor(Date.now() / 1000) - 900 }, 'published'],
    ['issued further in the future than the clock skew (iat)', { iat: Math.floor(Date.now() / 1000) + 120, exp: Math.floor(Date.now() / 1000) + 600 }, 'published'],
  ] as const)('an ID token %s is refused', async (_name, claims, key) => {
    await expect(login(claims, key)).rejects.toMatchObject({ code: 'login_failed' });
  });

  test('an ID token issued within the clock skew (iat a little ahead) is accepted', async () => {
    await expect(login({ iat: Math.floor(Date.now() / 1000) + 10 })).resolves.toMatchObject({ subject: 'alice' });
  });
});

describe('claims from userinfo', () => {
  test('an ID token with groups but no roles: the roles are read from userinfo, the ID token\'s groups kept', async () => {
    const before = userinfoCalls;
    await expect(login({})).resolves.toMatchObject({ groups: ['admins'], roles: ['auditor'] });
    expect(userinfoCalls).toBe(before + 1);
  });

  test('an ID token with roles but no groups: the groups are read from userinfo', async () => {
    await expect(login({ groups: undefined, roles: ['owner'] })).resolves.toMatchObject({ groups: ['from-userinfo'], roles: ['owner'] });
  });

  test('an ID token with every configured claim: userinfo is not asked', async () => {
    const before = userinfoCalls;
    await expect(login({ roles: ['owner'] })).resolves.toMatchObject({ groups: ['admins'], roles: ['owner'] });
    expect(userinfoCalls).toBe(before);
  });
});

describe('email at login', () => {
  test.each([
    ['verified, kept, and the user name when there is no preferred_username', { email: 'alice@example.com', email_verified: true }, {}, 'alice@example.com', 'alice@example.com'],
    ['unverified, left out of the session, user name and all', { email: 'alice@example.com', email_verified: false }, {}, undefined, 'alice'],
    ['without email_verified, left out', { email: 'alice@example.com' }, {}, undefined, 'alice'],
    ['without email_verified, kept with IDGATE_TRUST_UNVERIFIED_EMAIL=1', { email: 'alice@example.com' }, { IDGATE_TRUST_UNVERIFIED_EMAIL: '1' }, 'alice@example.com', 'alice@example.com'],
  ] as const)('an email %s', async (_name, claims, env, email, user) => {
    const session = await login(claims, 'published', env);
    expect(session.email).toBe(email);
    expect(session.user).toBe(user);
  });
});

describe('refresh', () => {
  const stored = { v: 1 as const, subject: 'alice', user: 'alice', email: undefined, groups: ['admins'], roles: [], issuer: '', createdAt: 0, idToken: 'old', refreshToken: 'rt-1', accessTokenExpiresAt: 0, tokensIssuedAt: 0, idpSessionHash: undefined };
  const now = () => Math.floor(Date.now() / 1000);
  const sign = (claims: jose.JWTPayload) => () =>
    new jose.SignJWT({ iss: issuer, aud: 'idgate', sub: 'alice', iat: now(), exp: now() + 300, groups: ['admins', 'new-group'], ...claims }).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).sign(publishedKey);

  test('a refreshed ID token for the same issuer and subject renews the session, groups included', async () => {
    refreshAnswer = 'id_token';
    shapeIdToken = sign({});
    const rp = await relyingParty();
    const renewed = await rp.refresh({ ...stored, issuer }, Date.now());
    rp.stop();
    expect(renewed).toMatchObject({ subject: 'alice', groups: ['admins', 'new-group'], refreshToken: 'rt-2' });
    expect(renewed.accessTokenExpiresAt).toBeGreaterThan(Date.now());
  });

  test('a refresh asks for the scopes the login was granted, openid among them; a session from before asks IDGATE_SCOPES', async () => {
    const granted = await login({});
    expect(granted.grantedScope).toBe('openid email offline_access');
    refreshAnswer = 'id_token';
    shapeIdToken = sign({});
    const rp = await relyingParty({ IDGATE_SCOPES: 'openid profile email groups offline_access' });
    await rp.refresh({ ...granted, refreshToken: 'rt-1' }, Date.now());
    expect(refreshScope).toBe('openid email offline_access');
    await rp.refresh({ ...stored, issuer }, Date.now());
    expect(refreshScope).toBe('openid profile email groups offline_access');
    rp.stop();
  });

  test('a refreshed ID token for another subject ends the session', async () => {
    refreshAnswer = 'id_token';
    shapeIdToken = sign({ sub: 'mallory' });
    const rp = await relyingParty();
    await expect(rp.refresh({ ...stored, issuer }, Date.now())).rejects.toMatchObject({ code: 'session_ended' });
    rp.stop();
  });

  test('invalid_grant ends the session; other IdP errors do not', async () => {
    const rp = await relyingParty();
    refreshAnswer = { status: 400, body: { error: 'invalid_grant' } };
    await expect(rp.refresh({ ...stored, issuer }, Date.now())).rejects.toMatchObject({ code: 'session_ended' });
    refreshAnswer = { status: 503, body: { error: 'temporarily_unavailable' } };
    await expect(rp.refresh({ ...stored, issuer }, Date.now())).rejects.toMatchObject({ code: 'idp_unavailable' });
    refreshAnswer = { status: 500, body: { error: 'server_error' } };
    await expect(rp.refresh({ ...stored, issuer }, Date.now())).rejects.toMatchObject({ code: 'idp_unavailable' });
    rp.stop();
    refreshAnswer = 'id_token';
  });
});
