// Introspection under abuse, against a stub RFC 7662 endpoint (a real HTTP server in this process):
// a flood of made-up opaque tokens from one client address must neither push a real client's cached
// active token out nor stop another address's tokens from being checked.
import http from 'node:http';
import { createLogger } from '../../service/src/audit.js';
import { loadConfig } from '../../service/src/config.js';
import { Introspector, sourceKey, type IntrospectorOptions } from '../../service/src/tokens/introspection.js';
import { Metrics } from '../../service/src/metrics.js';
import { BearerVerifier } from '../../service/src/tokens/tokens.js';
import { metricValue } from '../support/idgate.js';

const ACTIVE = 'real-client-token';
let server: http.Server;
let base: string;
/** Introspection calls the stub received, by token. */
let calls: string[] = [];
/** While set, answers about made-up tokens wait until it resolves (a slow IdP under a flood). */
let holdMadeUp: Promise<void> | undefined;
/** While set, every introspection call is answered with this status (the issuer refuses idgate's credentials). */
let refuseCredentials: 401 | 403 | undefined;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    if (req.url === '/.well-known/openid-configuration') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ issuer: base, introspection_endpoint: `${base}/introspect` }));
      return;
    }
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', async () => {
      if (refuseCredentials !== undefined) {
        res.writeHead(refuseCredentials, { 'content-type': 'application/json' }).end('{"error":"invalid_client"}');
        return;
      }
      const token = new URLSearchParams(body).get('token') ?? '';
      calls.push(token);
      if (token !== ACTIVE) await holdMadeUp;
      const answer = token === ACTIVE ? { active: true, sub: 'svc', iss: base, aud: 'api://stub', exp: Math.floor(Date.now() / 1000) + 3600 } : { active: false };
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});

afterAll(() => {
  server.closeAllConnections();
  return new Promise<void>((r) => server.close(() => r()));
});

beforeEach(() => {
  calls = [];
  holdMadeUp = undefined;
  refuseCredentials = undefined;
});

const introspector = (options: Partial<IntrospectorOptions> = {}) =>
  new Introspector({ endpoint: new URL(`${base}/introspect`), clientId: 'idgate', clientSecret: 's', ...options });

const madeUp = (n: number, from = 0) => Array.from({ length: n }, (_, i) => `made-up-${from + i}`);

describe('a flood of made-up tokens from one client', () => {
  test('never evicts a cached active token, however many inactive answers it leaves', async () => {
    const checker = introspector({ maxEntries: 4, maxNegativeEntries: 4, maxCallsPerSource: 1000 });
    expect((await checker.introspect(ACTIVE, { source: '192.0.2.10' })).active).toBe(true);
    for (const token of madeUp(200)) expect((await checker.introspect(token, { source: '203.0.113.66' })).active).toBe(false);
    expect((await checker.introspect(ACTIVE, { source: '192.0.2.10' })).active).toBe(true);
    expect(calls.filter((t) => t === ACTIVE)).toHaveLength(1);
  });

  test('beyond its calls in flight it is refused as unavailable, while another client is answered meanwhile', async () => {
    let release!: () => void;
    holdMadeUp = new Promise<void>((r) => (release = r));
    const checker = introspector({ maxInflightPerSource: 8 });
    const flood = madeUp(20).map((token) => checker.introspect(token, { source: '203.0.113.66' }));
    const refused = await Promise.allSettled(flood.slice(8));
    expect(refused.every((r) => r.status === 'rejected' && (r.reason as { code: string }).code === 'idp_unavailable')).toBe(true);
    // The flood's first eight are still waiting on the IdP: another client's token is checked all the same.
    expect((await checker.introspect(ACTIVE, { source: '192.0.2.10' })).active).toBe(true);
    release();
    expect((await Promise.all(flood.slice(0, 8))).every((a) => a.active === false)).toBe(true);
    expect(calls.filter((t) => t !== ACTIVE)).toHaveLength(8);
  });

  test('beyond its calls per window it is refused until the window has passed; other clients and cached answers are not', async () => {
    let now = 1_000_000;
    const refusals: string[] = [];
    const checker = introspector({ maxCallsPerSource: 5, sourceWindowMs: 60_000, now: () => now, onRefused: (why) => refusals.push(why) });
    expect((await checker.introspect(ACTIVE, { source: '203.0.113.66' })).active).toBe(true);
    for (const token of madeUp(4)) await checker.introspect(token, { source: '203.0.113.66' });
    await expect(checker.introspect('made-up-next', { source: '203.0.113.66' })).rejects.toMatchObject({ code: 'idp_unavailable' });
    expect(refusals).toEqual(['source_rate']);
    // Answers already had cost no call: the flooding client's own real token still passes.
    expect((await checker.introspect(ACTIVE, { source: '203.0.113.66' })).active).toBe(true);
    expect((await checker.introspect('made-up-other', { source: '192.0.2.10' })).active).toBe(false);
    now += 60_000;
    expect((await checker.introspect('made-up-next', { source: '203.0.113.66' })).active).toBe(false);
  });

  test('from one IPv6 /64 counts as one client, whichever addresses it uses', async () => {
    const checker = introspector({ maxCallsPerSource: 3 });
    for (const [i, token] of madeUp(3).entries()) await checker.introspect(token, { source: `2001:db8:1:2::${i + 1}` });
    await expect(checker.introspect('made-up-next', { source: '2001:db8:1:2:ffff::9' })).rejects.toMatchObject({ code: 'idp_unavailable' });
    expect((await checker.introspect('made-up-next', { source: '2001:db8:1:3::1' })).active).toBe(false);
  });
});

test('inactive answers are reused for less time than active ones', async () => {
  let now = 1_000_000;
  const checker = introspector({ maxAgeMs: 300_000, negativeAgeMs: 30_000, now: () => now });
  await checker.introspect(ACTIVE);
  await checker.introspect('made-up-0');
  now += 30_001;
  await checker.introspect(ACTIVE);
  await checker.introspect('made-up-0');
  expect(calls).toEqual([ACTIVE, 'made-up-0', 'made-up-0']);
});

test.each([
  ['203.0.113.7', '203.0.113.7'],
  ['::ffff:203.0.113.7', '203.0.113.7'],
  ['2001:db8:1:2::1', '2001:db8:1:2::/64'],
  ['2001:0db8:0001:0002:aaaa:bbbb:cccc:dddd', '2001:db8:1:2::/64'],
  ['2001:db8::1', '2001:db8:0:0::/64'],
  ['::1', '0:0:0:0::/64'],
  ['fe80::1%eth0', 'fe80:0:0:0::/64'],
  ['', ''],
])('the client address %j is bounded as %j', (address, key) => {
  expect(sourceKey(address)).toBe(key);
});

function introspectingConfig(extra: Record<string, string> = {}) {
  const { config, problems } = loadConfig({
    IDGATE_ISSUER: base,
    IDGATE_CLIENT_ID: 'idgate',
    IDGATE_CLIENT_SECRET: 'idgate-secret',
    IDGATE_PUBLIC_URL: 'http://app.test',
    IDGATE_COOKIE_SECRETS: 'x'.repeat(40),
    IDGATE_INSECURE_HTTP: '1',
    IDGATE_BEARER_ISSUERS: JSON.stringify([{ issuer: base, audiences: ['api://stub'], jwt: false, introspection: true }]),
    ...extra,
  });
  expect(problems).toEqual([]);
  return config!;
}

test('the bearer verifier bounds introspection by the source it is given', async () => {
  const config = introspectingConfig({ IDGATE_INTROSPECTION_CALLS_PER_SOURCE: '2' });
  const metrics = new Metrics();
  const verifier = new BearerVerifier(config, createLogger({ level: 'error', write: () => undefined }), metrics);
  await verifier.start();
  try {
    for (const token of madeUp(2)) await expect(verifier.verify(token, { source: '203.0.113.66' })).rejects.toMatchObject({ code: 'invalid_token' });
    await expect(verifier.verify('made-up-next', { source: '203.0.113.66' })).rejects.toMatchObject({ code: 'idp_unavailable' });
    await expect(verifier.verify('made-up-next', { source: '192.0.2.10' })).rejects.toMatchObject({ code: 'invalid_token' });
    expect(await verifier.verify(ACTIVE, { source: '192.0.2.10' })).toMatchObject({ subject: 'svc', via: 'token' });
    expect(metricValue(await metrics.render(), 'idgate_introspection_refused_total{reason="source_rate"}')).toBe(1);
  } finally {
    verifier.stop();
  }
});

test.each([401, 403] as const)('an issuer answering %i to idgate\'s credentials is a configuration error: said once, counted, not ready, until it takes them again', async (status) => {
  const metrics = new Metrics();
  const lines: string[] = [];
  const verifier = new BearerVerifier(introspectingConfig(), createLogger({ level: 'info', write: (line) => lines.push(line) }), metrics);
  await verifier.start();
  try {
    expect(verifier.ready).toBe(true);
    refuseCredentials = status;
    for (const token of madeUp(3)) {
      await expect(verifier.verify(token)).rejects.toMatchObject({ code: 'introspection_config_error', status: 503, detail: expect.stringContaining(`HTTP ${status}`) });
    }
    const said = lines.filter((l) => l.includes('introspection refused'));
    expect(said).toHaveLength(1);
    expect(JSON.parse(said[0]!)).toMatchObject({ level: 'error', issuer: base, status, error_code: 'introspection_config_error' });
    expect(said[0]).toContain('client_secret');
    expect(said[0]).not.toContain('idgate-secret');
    expect(metricValue(await metrics.render(), 'idgate_introspection_credentials_refused_total')).toBe(3);
    expect(metricValue(await metrics.render(), 'idgate_idp_errors_total')).toBe(0);
    expect(verifier.ready).toBe(false);
    expect(verifier.configurationProblems).toEqual([`${base} answers HTTP ${status} to idgate's introspection credentials`]);
    refuseCredentials = undefined;
    expect(await verifier.verify(ACTIVE)).toMatchObject({ subject: 'svc' });
    expect([verifier.ready, verifier.configurationProblems]).toEqual([true, []]);
  } finally {
    verifier.stop();
  }
});
