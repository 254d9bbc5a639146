// idgate on a Redis reachable only over TLS (certificate signed by a CA made for the run) and only by ACL
// users (the default user off, each user confined to idgate's key prefix and channel): logins, checks and
// revocation work with either way of giving the credentials; a server the CA did not sign, or a wrong
// password, gets 503 and never an allow, and no password reaches a log line or the CLI's output.
import crypto from 'node:crypto';
import signature from 'cookie-signature';
import request from 'supertest';
import { describeConfig } from '../../service/src/config/describe.js';
import { Browser, signIn } from '../support/browser.js';
import { configFrom, connectionAttemptOver, startInProcess } from '../support/idgate.js';
import { idgateCli, startIdgateReplicas, startTlsRedis, type IdgateReplicas, type TlsRedis } from '../support/redis-topologies.js';

const USER = 'idgate-tls-user';
const PASSWORD = 'acl-password-of-the-tls-tests';
let redis: TlsRedis;
let idgates: IdgateReplicas;

beforeAll(async () => {
  redis = await startTlsRedis({ [USER]: { password: PASSWORD, prefix: 'idgate:' }, other: { password: 'other-password-of-the-tls-tests', prefix: 'other:' } });
  // Replica 0 takes everything from a rediss:// URL; replica 1 would read the same from separate settings.
  idgates = await startIdgateReplicas({ IDGATE_REDIS_URL: `rediss://${USER}:${PASSWORD}@127.0.0.1:${redis.port}`, IDGATE_REDIS_CA_FILE: redis.caFile }, 1);
}, 60_000);

afterAll(async () => {
  await idgates?.stop();
  await redis?.stop();
});

const separateSettings = () => ({
  ...idgates.env,
  IDGATE_REDIS_URL: `redis://127.0.0.1:${redis.port}`,
  IDGATE_REDIS_TLS: '1',
  IDGATE_REDIS_USERNAME: USER,
  IDGATE_REDIS_PASSWORD: PASSWORD,
  IDGATE_REDIS_CA_FILE: redis.caFile,
});

const check = (server: Parameters<typeof request>[0], cookie: string) =>
  request(server).get('/auth').set('Cookie', cookie).set('Accept', 'application/json').set('X-Forwarded-Method', 'GET').set('X-Forwarded-Uri', '/').set('X-Forwarded-Host', new URL(idgates.urls[0]!).host);

test('over rediss:// with an ACL user in the URL: login, check, revoke', async () => {
  const browser = new Browser();
  await signIn(browser, `${idgates.urls[0]}/_auth/login?rd=%2F`, 'alice');
  const cookie = browser.cookieHeader(new URL(idgates.urls[0]!))!;
  expect(await idgates.check(0, cookie)).toBe(200);
  // The same session through a replica given IDGATE_REDIS_TLS=1 and IDGATE_REDIS_USERNAME/PASSWORD.
  const other = await startInProcess(configFrom(separateSettings()));
  expect((await check(other.server, cookie)).status).toBe(200);
  const revoked = await idgateCli(['sessions', 'revoke', '--user', 'alice'], { IDGATE_REDIS_URL: `rediss://127.0.0.1:${redis.port}`, IDGATE_REDIS_USERNAME: USER, IDGATE_REDIS_PASSWORD: PASSWORD, IDGATE_REDIS_CA_FILE: redis.caFile });
  expect(revoked.stdout).toMatch(/revoked 1 session\(s\)/);
  expect(revoked.stdout + revoked.stderr).not.toContain(PASSWORD);
  expect(await idgates.check(0, cookie)).not.toBe(200);
  expect((await check(other.server, cookie)).status).not.toBe(200);
});

test.each([
  ['a CA that did not sign the server', () => ({ IDGATE_REDIS_CA_FILE: redis.otherCaFile }), 503],
  ['a wrong password', () => ({ IDGATE_REDIS_PASSWORD: 'not-the-password' }), 503],
  // Connected, but refused every key of idgate's: PING still answers, so readiness cannot tell.
  ['a user confined to another prefix', () => ({ IDGATE_REDIS_USERNAME: 'other', IDGATE_REDIS_PASSWORD: 'other-password-of-the-tls-tests' }), 200],
])('with %s, session checks answer 503, never an allow', async (_name, change, ready) => {
  const replica = await startInProcess(configFrom({ ...separateSettings(), ...change() }), undefined, { waitForRedis: false });
  await connectionAttemptOver(replica.redis); // refused, or (the confined user) made
  // A correctly signed cookie: only Redis can tell whether it is a session.
  const cookie = `_idgate=${encodeURIComponent(`s:${signature.sign(crypto.randomBytes(32).toString('base64url'), idgates.env.IDGATE_COOKIE_SECRETS!)}`)}`;
  expect((await check(replica.server, cookie)).status).toBe(503);
  expect((await request(replica.server).get('/readyz')).status).toBe(ready);
  expect(replica.logLines.join('')).not.toMatch(/not-the-password|other-password-of-the-tls-tests|acl-password-of-the-tls-tests/);
});

test('the settings as logged name the TLS and whether credentials are set, never their values', () => {
  const shown = JSON.stringify(describeConfig(configFrom(separateSettings())));
  expect(shown).toContain('"redis_tls":"on (IDGATE_REDIS_CA_FILE)"');
  expect(shown).toContain('"redis_password":"(set)"');
  expect(shown).not.toContain(PASSWORD);
  expect(shown).not.toContain(USER);
});
