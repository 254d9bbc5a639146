import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig, loadRedisConfig } from '../../service/src/config.js';
import { describeConfig, redactRedisUrl } from '../../service/src/config/describe.js';
import { isInvalid } from '../../service/src/config/kinds.js';
import { defaultOf, settingNamed, SETTINGS } from '../../service/src/config/settings.js';

const good = {
  IDGATE_ISSUER: 'https://dev-123456.okta.com/oauth2/default',
  IDGATE_CLIENT_ID: 'client',
  IDGATE_CLIENT_SECRET: 'super-secret-value',
  IDGATE_PUBLIC_URL: 'https://app.example.com',
  IDGATE_COOKIE_SECRETS: 'a'.repeat(32) + ',' + 'b'.repeat(40),
  IDGATE_CHECK_SECRETS: 'k'.repeat(32) + ',' + 'l'.repeat(40),
};

describe('loadConfig', () => {
  test('a complete Okta configuration loads with defaults filled in', () => {
    const { config, problems } = loadConfig(good);
    expect(problems).toEqual([]);
    expect(config).toMatchObject({
      clientId: 'client',
      redisUrl: 'redis://127.0.0.1:6380',
      cookieName: '__Host-idgate',
      bindingCookieName: '__Host-idgate_login',
      cookieSecure: true,
      listen: { host: '127.0.0.1', port: 4180 },
      bearerIssuers: [expect.objectContaining({ issuer: 'https://dev-123456.okta.com/oauth2/default', audiences: ['api://default'], algorithms: ['RS256'], jwt: true, introspection: false })],
    });
    expect(config!.redirectUrl.href).toBe('https://app.example.com/_auth/callback');
    expect(config!.trustedProxies('127.0.0.1')).toBe(true);
    expect(config!.trustedProxies('::ffff:127.0.0.1')).toBe(true);
    expect(config!.trustedProxies('10.0.0.1')).toBe(false);
    expect(Object.isFrozen(config)).toBe(true);
  });

  test('every problem is reported at once, each naming the setting and an example', () => {
    const { config, problems } = loadConfig({});
    expect(config).toBeUndefined();
    expect(problems.map((p) => p.split(':')[0])).toEqual(['IDGATE_ISSUER', 'IDGATE_CLIENT_ID', 'IDGATE_CLIENT_SECRET', 'IDGATE_PUBLIC_URL', 'IDGATE_COOKIE_SECRETS', 'IDGATE_CHECK_SECRETS']);
    for (const p of problems) expect(p).toMatch(/e\.g\. /);
  });

  test('plain http issuer is refused unless IDGATE_INSECURE_HTTP=1', () => {
    const env = { ...good, IDGATE_ISSUER: 'http://127.0.0.1:9000', IDGATE_PUBLIC_URL: 'http://127.0.0.1:8080' };
    expect(loadConfig(env).problems.join('\n')).toMatch(/IDGATE_ISSUER: must use https/);
    const { config, problems } = loadConfig({ ...env, IDGATE_INSECURE_HTTP: '1' });
    expect(problems).toEqual([]);
    expect(config!.cookieSecure).toBe(false);
  });

  test('short cookie secrets are refused without printing them', () => {
    const { problems } = loadConfig({ ...good, IDGATE_COOKIE_SECRETS: 'tooshort-secret-xyz' });
    expect(problems.join('\n')).toMatch(/secret #1 is 19 characters/);
    expect(problems.join('\n')).not.toContain('tooshort-secret-xyz');
  });

  test('the check secrets are required, newest first, unless IDGATE_INSECURE_HTTP=1 (the demo and the tests)', () => {
    expect(loadConfig(good).config!.checkSecrets).toEqual(['k'.repeat(32), 'l'.repeat(40)]);
    const { IDGATE_CHECK_SECRETS: _, ...without } = good;
    expect(loadConfig(without).problems.map((p) => p.split(':')[0])).toEqual(['IDGATE_CHECK_SECRETS']);
    const insecure = { ...without, IDGATE_ISSUER: 'http://127.0.0.1:9000', IDGATE_PUBLIC_URL: 'http://127.0.0.1:8080', IDGATE_INSECURE_HTTP: '1' };
    expect(loadConfig(insecure).config!.checkSecrets).toEqual([]);
  });

  test.each([
    ['short', 'tooshort-check-secret', /secret #2 is 21 characters/],
    ['with a character HAProxy would need quoted', 'q'.repeat(31) + '"', /secret #2 has a character other than/],
    ['with a space inside', 'q'.repeat(20) + ' ' + 'q'.repeat(20), /secret #2 has a character other than/],
  ])('a check secret %s is refused without printing it', (_name, value, expected) => {
    const { problems } = loadConfig({ ...good, IDGATE_CHECK_SECRETS: `${'k'.repeat(32)},${value}` });
    expect(problems.join('\n')).toMatch(expected);
    expect(problems.join('\n')).not.toContain(value);
  });

  test('bad values are described', () => {
    const { problems } = loadConfig({
      ...good,
      IDGATE_LISTEN: 'nope',
      IDGATE_TRUSTED_PROXIES: '300.1.1.1',
      IDGATE_JWT_ALGORITHMS: 'HS256,none',
      IDGATE_SESSION_IDLE_TTL: 'ten',
      IDGATE_PUBLIC_URL: 'https://app.example.com/path',
    });
    const text = problems.join('\n');
    expect(text).toMatch(/IDGATE_LISTEN: "nope" is not host:port/);
    expect(text).toMatch(/IDGATE_TRUSTED_PROXIES: "300.1.1.1" is not an IP address/);
    expect(text).toMatch(/IDGATE_JWT_ALGORITHMS: "HS256" is not an accepted asymmetric algorithm/);
    expect(text).toMatch(/IDGATE_JWT_ALGORITHMS: "none"/);
    expect(text).toMatch(/IDGATE_SESSION_IDLE_TTL: "ten" is not a whole number/);
    expect(text).toMatch(/IDGATE_PUBLIC_URL: must be an origin only/);
  });

  test('the client secret never appears in problems', () => {
    const { problems } = loadConfig({ ...good, IDGATE_ISSUER: 'not a url' });
    expect(problems.join('\n')).not.toContain('super-secret-value');
  });

  test('bearer issuers may list the only client ids whose tokens count, and trust unverified emails', () => {
    const { config, problems } = loadConfig({
      ...good,
      IDGATE_BEARER_ISSUERS: JSON.stringify([
        { issuer: 'https://example.okta.com/oauth2/default', audiences: ['api://default'], client_ids: ['0oa-ci-bot'] },
        { issuer: 'https://partner.example.com', audiences: ['api://partner'], trust_unverified_email: true },
      ]),
    });
    expect(problems).toEqual([]);
    expect(config!.bearerIssuers).toMatchObject([
      { clientIds: ['0oa-ci-bot'], trustUnverifiedEmail: false },
      { clientIds: undefined, trustUnverifiedEmail: true },
    ]);
  });

  test('bad client_ids and trust_unverified_email values are described', () => {
    const { problems } = loadConfig({
      ...good,
      IDGATE_BEARER_ISSUERS: JSON.stringify([{ issuer: 'https://example.okta.com/oauth2/default', audiences: ['api://default'], client_ids: [], trust_unverified_email: 'yes' }]),
    });
    expect(problems).toEqual([
      'IDGATE_BEARER_ISSUERS[0].client_ids: must list at least one client id, or be left out to accept any client (e.g. ["0oa-ci-bot"])',
      'IDGATE_BEARER_ISSUERS[0].trust_unverified_email: must be true or false',
    ]);
  });

  test('an introspection issuer without audiences or client_ids is refused: any app\'s active token would pass', () => {
    const entry = (extra: object) => JSON.stringify([{ issuer: 'https://example.okta.com', jwt: false, introspection: true, ...extra }]);
    expect(loadConfig({ ...good, IDGATE_BEARER_ISSUERS: entry({}) }).problems).toEqual([
      'IDGATE_BEARER_ISSUERS[0]: introspection needs "audiences" or "client_ids", else any active token the issuer minted for any app passes (e.g. "audiences": ["https://example.okta.com"] or "client_ids": ["0oa9service1"])',
    ]);
    expect(loadConfig({ ...good, IDGATE_BEARER_ISSUERS: entry({ audiences: ['https://example.okta.com'] }) }).problems).toEqual([]);
    expect(loadConfig({ ...good, IDGATE_BEARER_ISSUERS: entry({ client_ids: ['0oa9service1'] }) }).problems).toEqual([]);
  });

  test('unverified emails count only with IDGATE_TRUST_UNVERIFIED_EMAIL=1, which the default bearer issuer shares', () => {
    expect(loadConfig(good).config).toMatchObject({ trustUnverifiedEmail: false, bearerIssuers: [{ trustUnverifiedEmail: false }] });
    expect(loadConfig({ ...good, IDGATE_TRUST_UNVERIFIED_EMAIL: '1' }).config).toMatchObject({ trustUnverifiedEmail: true, bearerIssuers: [{ trustUnverifiedEmail: true }] });
  });

  test('idgate\'s own client id is refused as an access-token audience of the login issuer: ID tokens carry it', () => {
    expect(loadConfig({ ...good, IDGATE_JWT_AUDIENCES: 'api://default,client' }).problems).toEqual([
      'IDGATE_JWT_AUDIENCES: "client" is IDGATE_CLIENT_ID, the audience of the login\'s ID tokens; access tokens need an audience of their own (e.g. api://default)',
    ]);
    const entries = (issuer: string) => JSON.stringify([{ issuer, audiences: ['client'] }]);
    expect(loadConfig({ ...good, IDGATE_BEARER_ISSUERS: entries(good.IDGATE_ISSUER) }).problems).toHaveLength(1);
    // Another issuer's client ids are another namespace.
    expect(loadConfig({ ...good, IDGATE_BEARER_ISSUERS: entries('https://partner.example.com') }).problems).toEqual([]);
  });
});

describe('waiting for Redis replicas', () => {
  test('by default a login, renewal or revocation waits up to 100 ms for a replica when Redis has one online', () => {
    expect(loadConfig(good).config).toMatchObject({ redisWaitReplicas: 'auto', redisWaitMs: 100 });
  });

  test.each([
    ['0', 0],
    ['2', 2],
    ['auto', 'auto'],
  ])('IDGATE_REDIS_WAIT_REPLICAS=%s is read as %p', (value, expected) => {
    expect(loadConfig({ ...good, IDGATE_REDIS_WAIT_REPLICAS: value }).config?.redisWaitReplicas).toBe(expected);
  });

  test.each(['-1', 'all', '1.5', '100'])('IDGATE_REDIS_WAIT_REPLICAS=%s is refused with an example', (value) => {
    expect(loadConfig({ ...good, IDGATE_REDIS_WAIT_REPLICAS: value }).problems).toEqual([`IDGATE_REDIS_WAIT_REPLICAS: "${value}" is not auto, 0 or a count of replicas (e.g. auto)`]);
  });

  test('IDGATE_REDIS_WAIT_MS must be a positive whole number', () => {
    expect(loadConfig({ ...good, IDGATE_REDIS_WAIT_MS: '0' }).problems.join('\n')).toMatch(/IDGATE_REDIS_WAIT_MS: must be a positive whole number/);
  });
});

describe('cookie names', () => {
  const insecure = { ...good, IDGATE_ISSUER: 'http://127.0.0.1:9000', IDGATE_PUBLIC_URL: 'http://127.0.0.1:8080', IDGATE_INSECURE_HTTP: '1' };

  test.each([
    ['Secure cookies without a cookie domain', '__Host-idgate', '__Host-idgate_login', good],
    ['a cookie domain (no __Host- possible for the session cookie; the binding cookie is host-only)', '_idgate', '__Host-idgate_login', { ...good, IDGATE_COOKIE_DOMAIN: 'example.com' }],
    ['plain http (browsers refuse __Host- there)', '_idgate', '_idgate_login', insecure],
    ['a configured name', 'corp_sso', '__Host-corp_sso_login', { ...good, IDGATE_COOKIE_NAME: 'corp_sso' }],
    ['a configured __Secure- name with a cookie domain', '__Secure-sso', '__Host-sso_login', { ...good, IDGATE_COOKIE_NAME: '__Secure-sso', IDGATE_COOKIE_DOMAIN: 'example.com' }],
    ['a configured name over plain http', 'corp_sso', 'corp_sso_login', { ...insecure, IDGATE_COOKIE_NAME: 'corp_sso' }],
  ])('with %s the session cookie is %p and the binding cookie %p', (_name, session, binding, env) => {
    const { config, problems } = loadConfig(env);
    expect(problems).toEqual([]);
    expect(config!.cookieName).toBe(session);
    expect(config!.bindingCookieName).toBe(binding);
  });

  test.each([
    ['__Host- with a cookie domain', { ...good, IDGATE_COOKIE_NAME: '__Host-sso', IDGATE_COOKIE_DOMAIN: 'example.com' }, /IDGATE_COOKIE_NAME: a __Host- cookie cannot carry a Domain/],
    ['__Host- over plain http', { ...insecure, IDGATE_COOKIE_NAME: '__Host-sso' }, /IDGATE_COOKIE_NAME: a __Host- cookie must be Secure/],
    ['__host- in another letter case over plain http', { ...insecure, IDGATE_COOKIE_NAME: '__host-sso' }, /IDGATE_COOKIE_NAME: a __Host- cookie must be Secure/],
    ['__Secure- over plain http', { ...insecure, IDGATE_COOKIE_NAME: '__Secure-sso' }, /IDGATE_COOKIE_NAME: a __Secure- cookie must be Secure/],
    ['characters a cookie name cannot hold', { ...good, IDGATE_COOKIE_NAME: 'a b' }, /IDGATE_COOKIE_NAME: letters, digits/],
  ])('a cookie name the browser would drop is a setting problem: %s', (_name, env, problem) => {
    const { config, problems } = loadConfig(env);
    expect(config).toBeUndefined();
    expect(problems.join('\n')).toMatch(problem);
  });
});

describe('Redis URLs in logs and check-config', () => {
  test.each([
    ['redis://:hunter2@10.0.0.5:6379/0', 'redis://:***@10.0.0.5:6379/0'],
    ['redis://ops-user:hunter2@10.0.0.5:6379/0', 'redis://***:***@10.0.0.5:6379/0'],
    ['redis://10.0.0.5:6379/0?password=hunter2', 'redis://10.0.0.5:6379/0?password=***'],
    ['rediss://redis.internal:6380/?username=ops-user&password=hunter2&db=2', 'rediss://redis.internal:6380/?username=***&password=***&db=***'],
    ['redis://10.0.0.5:6379?sentinelPassword=hunter2#hunter2', 'redis://10.0.0.5:6379?sentinelPassword=***'],
    ['redis://10.0.0.5:6379/0?hunter2', 'redis://10.0.0.5:6379/0?***'],
    ['10.0.0.5:6379?password=hunter2', '10.0.0.5:6379?password=***'],
    ['ops-user:hunter2@10.0.0.5:6379', '***:***@10.0.0.5:6379'],
    ['//ops-user:hunter2@10.0.0.5:6379', '//***:***@10.0.0.5:6379'],
    ['/var/run/redis.sock?password=hunter2', '/var/run/redis.sock?password=***'],
    ['redis://127.0.0.1:6380', 'redis://127.0.0.1:6380'],
  ])('%s is shown as %s', (url, shown) => {
    expect(redactRedisUrl(url)).toBe(shown);
  });

  test('describeConfig shows neither the Redis password nor the user name, from the URL or its query', () => {
    const { config } = loadConfig({ ...good, IDGATE_REDIS_URL: 'rediss://ops-user:hunter2@redis.internal:6380/0?password=hunter3&username=ops-user2' });
    const text = JSON.stringify(describeConfig(config!));
    for (const secret of ['hunter2', 'hunter3', 'ops-user', 'super-secret-value', 'a'.repeat(32)]) expect(text).not.toContain(secret);
    expect(describeConfig(config!).redis_url).toBe('rediss://***:***@redis.internal:6380/0?password=***&username=***');
  });
});

describe('what to register at the IdP', () => {
  test('check-config shows the front-channel logout URI, and whether the Okta event hook is on, never its secret', () => {
    expect(describeConfig(loadConfig(good).config!)).toMatchObject({ frontchannel_logout_uri: 'https://app.example.com/_auth/frontchannel-logout', okta_event_hook: '(off)' });
    const secret = 'okta-hook-secret-value-1234567890';
    const shown = describeConfig(loadConfig({ ...good, IDGATE_OKTA_EVENT_HOOK_SECRET: secret }).config!);
    expect(shown.okta_event_hook).toBe('https://app.example.com/_auth/okta-events (secret set)');
    expect(JSON.stringify(shown)).not.toContain(secret);
  });

  test('a short event hook secret is refused, by its length only', () => {
    expect(loadConfig({ ...good, IDGATE_OKTA_EVENT_HOOK_SECRET: 'short-secret' }).problems).toEqual(['IDGATE_OKTA_EVENT_HOOK_SECRET: is 12 characters; it needs 24 or more (e.g. output of `openssl rand -base64 32`)']);
  });
});

describe('Redis topologies', () => {
  const caFile = path.join(os.tmpdir(), `idgate-config-test-ca-${process.pid}.pem`);
  beforeAll(() => fs.writeFileSync(caFile, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'));
  afterAll(() => fs.rmSync(caFile, { force: true }));

  test.each([
    ['the default: one server at the URL', {}, { topology: { kind: 'server', url: 'redis://127.0.0.1:6380' }, username: undefined, password: undefined, tls: undefined }],
    ['a rediss:// URL turns TLS on', { IDGATE_REDIS_URL: 'rediss://10.0.0.5:6380' }, { topology: { kind: 'server' }, tls: { ca: undefined } }],
    ['credentials as settings, for a single server', { IDGATE_REDIS_USERNAME: 'idgate', IDGATE_REDIS_PASSWORD: 'pw' }, { username: 'idgate', password: 'pw' }],
    [
      'Sentinel, the data credentials and db from the URL',
      { IDGATE_REDIS_SENTINELS: '10.0.0.5:26379, [fd00::7]:26379', IDGATE_REDIS_SENTINEL_NAME: 'idgate', IDGATE_REDIS_SENTINEL_PASSWORD: 'spw', IDGATE_REDIS_URL: 'rediss://user:p%40ss@ignored:1/2' },
      { topology: { kind: 'sentinel', name: 'idgate', sentinels: [{ host: '10.0.0.5', port: 26379 }, { host: 'fd00::7', port: 26379 }], sentinelPassword: 'spw', db: 2 }, username: 'user', password: 'p@ss', tls: { ca: undefined } },
    ],
    ['Cluster with TLS and a CA', { IDGATE_REDIS_CLUSTER_NODES: 'r1:6379,r2:6379', IDGATE_REDIS_TLS: '1', IDGATE_REDIS_CA_FILE: caFile, IDGATE_REDIS_PASSWORD: 'pw' }, { topology: { kind: 'cluster', nodes: [{ host: 'r1', port: 6379 }, { host: 'r2', port: 6379 }] }, password: 'pw', tls: { ca: expect.stringContaining('BEGIN CERTIFICATE') } }],
  ])('%s', (_name, env, expected) => {
    const { config, problems } = loadConfig({ ...good, ...env });
    expect(problems).toEqual([]);
    expect(config!.redis).toMatchObject(expected);
  });

  test.each([
    ['Sentinel and Cluster at once', { IDGATE_REDIS_SENTINELS: 'a:1', IDGATE_REDIS_SENTINEL_NAME: 'n', IDGATE_REDIS_CLUSTER_NODES: 'b:2' }, /IDGATE_REDIS_CLUSTER_NODES: set together with IDGATE_REDIS_SENTINELS/],
    ['sentinels without a master name', { IDGATE_REDIS_SENTINELS: 'a:26379' }, /IDGATE_REDIS_SENTINEL_NAME: required/],
    ['a sentinel password without sentinels', { IDGATE_REDIS_SENTINEL_PASSWORD: 'x' }, /IDGATE_REDIS_SENTINEL_PASSWORD: set without IDGATE_REDIS_SENTINELS/],
    ['a node without a port', { IDGATE_REDIS_CLUSTER_NODES: 'r1:6379,r2' }, /IDGATE_REDIS_CLUSTER_NODES: "r2" is not host:port/],
    ['a password in the URL and as a setting', { IDGATE_REDIS_URL: 'redis://:one@h:6379', IDGATE_REDIS_PASSWORD: 'two' }, /IDGATE_REDIS_PASSWORD: IDGATE_REDIS_URL carries a password too/],
    ['a database other than 0 on Cluster', { IDGATE_REDIS_CLUSTER_NODES: 'r1:6379', IDGATE_REDIS_URL: 'redis://x/3' }, /Redis Cluster has database 0 only/],
    ['a CA file with TLS off', { IDGATE_REDIS_CA_FILE: '/nonexistent/ca.pem' }, /IDGATE_REDIS_CA_FILE: set while TLS is off[\s\S]*cannot read \/nonexistent\/ca.pem: ENOENT/],
    ['a key prefix with a hash tag', { IDGATE_REDIS_PREFIX: 'app{1}:' }, /IDGATE_REDIS_PREFIX: must not contain "\{" or "\}"/],
  ])('%s is refused', (_name, env, problem) => {
    const { config, problems } = loadConfig({ ...good, ...env });
    expect(config).toBeUndefined();
    expect(problems.join('\n')).toMatch(problem);
  });

  test('the settings as shown name the topology, never a password or user name', () => {
    const { config } = loadConfig({ ...good, IDGATE_REDIS_SENTINELS: '10.0.0.5:26379', IDGATE_REDIS_SENTINEL_NAME: 'idgate', IDGATE_REDIS_SENTINEL_PASSWORD: 'sentinel-hunter2', IDGATE_REDIS_USERNAME: 'ops-user', IDGATE_REDIS_PASSWORD: 'hunter2' });
    const shown = describeConfig(config!);
    expect(shown.redis_topology).toBe('sentinel, master group "idgate" via 10.0.0.5:26379, db 0');
    expect(shown).toMatchObject({ redis_username: '(set)', redis_password: '(set)', redis_sentinel_password: '(set)', redis_tls: 'off' });
    expect(JSON.stringify(shown)).not.toMatch(/hunter2|ops-user/);
  });

  test('`idgate sessions` reads the Redis settings alone, with the same checks', () => {
    expect(loadRedisConfig({ IDGATE_REDIS_CLUSTER_NODES: 'r1:6379', IDGATE_REDIS_PREFIX: 'app:' }).config).toMatchObject({ redis: { topology: { kind: 'cluster' } }, redisKeyPrefix: 'app:', redisTimeoutMs: 500 });
    expect(loadRedisConfig({ IDGATE_REDIS_SENTINELS: 'a:1' }).problems.join('\n')).toMatch(/IDGATE_REDIS_SENTINEL_NAME: required/);
  });
});

describe('settings declared once', () => {
  test('defaultOf reads SETTINGS and refuses a name it does not declare', () => {
    expect(defaultOf('IDGATE_LISTEN')).toBe('127.0.0.1:4180');
    expect(() => defaultOf('IDGATE_NO_SUCH_SETTING')).toThrow('IDGATE_NO_SUCH_SETTING is not a setting');
    expect(() => defaultOf('IDGATE_ISSUER')).toThrow('IDGATE_ISSUER has no default');
  });

  test("every default is a value of its setting's kind (Config's types count on it)", () => {
    for (const s of SETTINGS) {
      if (s.default === undefined || s.default === '') continue;
      expect([s.env, isInvalid(s.kind.parse(s.default, s.env))]).toEqual([s.env, false]);
    }
  });

  test("a setting's kind gives the type and the docs' words for its values", () => {
    expect(settingNamed('IDGATE_SESSION_CACHE_MS').kind.parse('0', 'IDGATE_SESSION_CACHE_MS')).toBe(0);
    expect(settingNamed('IDGATE_SESSION_IDLE_TTL').kind.parse('0', 'IDGATE_SESSION_IDLE_TTL')).toEqual({ problem: 'must be a positive whole number' });
    expect(settingNamed('IDGATE_SPOE_LISTEN').kind.parse(' off ', 'IDGATE_SPOE_LISTEN')).toBeUndefined();
    expect(settingNamed('IDGATE_LOG_LEVEL').kind.describe).toBe('`info`, `warn` or `error`');
  });

  test.each([
    ['IDGATE_LOG_LEVEL', 'loud', 'IDGATE_LOG_LEVEL: "loud" is not info, warn or error (e.g. info)'],
    ['IDGATE_SPOE_LISTEN', 'on', 'IDGATE_SPOE_LISTEN: "on" is not host:port, or unset or "off" for no agent (e.g. 127.0.0.1:4181)'],
  ])('%s=%s is refused by its kind, with the message it always had', (env, value, problem) => {
    expect(loadConfig({ ...good, [env]: value }).problems).toEqual([problem]);
  });

  test('port 0 in IDGATE_LISTEN and IDGATE_SPOE_LISTEN means any free port (tests read the port bound from the log)', () => {
    expect(loadConfig({ ...good, IDGATE_LISTEN: '127.0.0.1:0', IDGATE_SPOE_LISTEN: '127.0.0.1:0' }).config).toMatchObject({ listen: { host: '127.0.0.1', port: 0 }, spoeListen: { host: '127.0.0.1', port: 0 } });
  });

  test('values are read trimmed, as they always were', () => {
    expect(loadConfig({ ...good, IDGATE_SPOE_LISTEN: ' off ', IDGATE_LOG_LEVEL: ' warn', IDGATE_REDIS_WAIT_REPLICAS: '2 ' }).config).toMatchObject({ spoeListen: undefined, logLevel: 'warn', redisWaitReplicas: 2 });
  });
});
