// A new version reads the sessions of the previous one. test/fixtures/sessions-v1 holds a session exactly as
// the previous release wrote it (its Redis keys, sealed, and its cookie): planted into a real Redis, this
// idgate must accept it with the same identity, renew and revoke it as its own; a record of a version it
// does not know (a newer idgate wrote it: a rollback) is no session, never a 200 and never a crash.
import fs from 'node:fs';
import path from 'node:path';
import signature from 'cookie-signature';
import { Redis } from 'ioredis';
import { REPO_ROOT } from '../../stack/processes.js';
import { startStack, type Stack } from '../../stack/stack.js';
import { openSession, sealSession, describeSessionRecordVersions } from '../../service/src/session/session-record.js';
import { idgateCli } from '../support/redis-topologies.js';
import { waitUntil } from '../../stack/wait.js';

interface FixtureKey {
  readonly key: string;
  readonly type: 'string' | 'hash' | 'set';
  readonly ttlSeconds: number;
  readonly value: string | Record<string, string> | string[];
}

const fixture = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'test/fixtures/sessions-v1/sessions-v1.json'), 'utf8')) as {
  settings: Record<string, string>;
  cookie: string;
  identityHeaders: Record<string, string>;
  keys: FixtureKey[];
};
const sessionEntry = fixture.keys.find((k) => k.key.startsWith('idgate:sess:'))!;

let stack: Stack;
let redis: Redis;

beforeAll(async () => {
  // The sealed record holds the login time: the fixture was made, and is read here, with a 20-year
  // IDGATE_SESSION_MAX_AGE (and 20-year access tokens, so no renewal at the IdP is due), so it stays a live
  // session without anything in it rewritten. No session cache: every check reads the planted record.
  stack = await startStack({
    haproxy: false,
    idgateEnv: { IDGATE_COOKIE_SECRETS: fixture.settings.IDGATE_COOKIE_SECRETS!, IDGATE_SESSION_MAX_AGE: fixture.settings.IDGATE_SESSION_MAX_AGE!, IDGATE_SESSION_CACHE_MS: '0' },
  });
  redis = new Redis(stack.ports.redis, '127.0.0.1');
}, 60_000);

afterAll(async () => {
  redis?.disconnect();
  await stack?.stop();
});

/** Writes the fixture's keys as they were, each with its TTL; `change` may replace the session's sealed value. */
async function plantFixture(sealed = sessionEntry.value as string): Promise<void> {
  await redis.flushdb();
  for (const k of fixture.keys) {
    if (k.type === 'string') await redis.set(k.key, k === sessionEntry ? sealed : (k.value as string));
    else if (k.type === 'hash') await redis.hset(k.key, k.value as Record<string, string>);
    else await redis.sadd(k.key, ...(k.value as string[]));
    await redis.expire(k.key, k.ttlSeconds);
  }
}

function check(cookie = fixture.cookie, accept = 'application/json', requestId = 'session-upgrade'): Promise<Response> {
  return fetch(`${stack.idgateUrls[0]}/auth`, {
    redirect: 'manual',
    headers: { ...stack.checkHeaders, cookie, accept, 'x-request-id': requestId, 'x-forwarded-uri': '/', 'x-forwarded-host': `127.0.0.1:${stack.ports.front}`, 'x-forwarded-method': 'GET' },
  });
}

function identityHeaders(res: Response): Record<string, string> {
  return Object.fromEntries([...res.headers].filter(([name]) => name.startsWith('x-auth-') && name !== 'x-auth-request-id'));
}

const sid = signature.unsign(decodeURIComponent(fixture.cookie.slice(fixture.cookie.indexOf('=') + 1)).slice(2), fixture.settings.IDGATE_COOKIE_SECRETS!) as string;

test('idgate version names the session record versions it reads and writes', async () => {
  const { stdout } = await idgateCli(['version'], {});
  expect(stdout.split('\n')[1]).toBe('session records: reads v1, writes v1');
  expect(describeSessionRecordVersions()).toBe('session records: reads v1, writes v1');
});

describe('a session written by the previous release (commit 9064de0)', () => {
  beforeEach(() => plantFixture());

  test('is accepted with the same identity headers', async () => {
    const res = await check();
    expect(res.status).toBe(200);
    expect(identityHeaders(res)).toEqual(fixture.identityHeaders);
  });

  test('has its idle timeout renewed by a check, as a session of this version', async () => {
    await redis.expire(sessionEntry.key, 60);
    expect((await check()).status).toBe(200);
    expect(await redis.ttl(sessionEntry.key)).toBeGreaterThan(60 * 60);
    // Still the same sealed bytes: reading an old record writes nothing back.
    expect(await redis.get(sessionEntry.key)).toBe(sessionEntry.value);
  });

  test('is listed and revoked by idgate sessions, through the indexes the previous release wrote', async () => {
    const env = { IDGATE_REDIS_URL: `redis://127.0.0.1:${stack.ports.redis}` };
    // Listed by user name (its index names the subject), in the CLI's own words; revoked by subject.
    const hash = sessionEntry.key.slice('idgate:sess:'.length);
    const indexed = JSON.parse((fixture.keys.find((k) => k.key === 'idgate:idx:sub:alice')!.value as Record<string, string>)[hash]!) as { createdAt: number };
    const listed = await idgateCli(['sessions', 'list', '--user', 'alice'], env);
    expect(listed.stdout).toBe(`${hash.slice(0, 16)}  sub=alice  user=alice  since=${new Date(indexed.createdAt).toISOString()}\n1 session(s)\n`);
    expect((await idgateCli(['sessions', 'revoke', '--sub', 'alice'], env)).stdout).toBe('revoked 1 session(s)\n');
    // Replicas forget a revoked session on the pub/sub message, just after the command answers.
    let status = 0;
    for (const deadline = Date.now() + 2000; Date.now() < deadline && status !== 401; ) status = (await check()).status;
    expect(status).toBe(401);
    expect(await redis.exists(sessionEntry.key)).toBe(0);
  });

  test('ends at logout', async () => {
    const logout = await fetch(`${stack.idgateUrls[0]}/_auth/logout`, { method: 'POST', redirect: 'manual', headers: { cookie: fixture.cookie, origin: stack.frontUrl } });
    expect(logout.status).toBe(303);
    expect(await redis.exists(sessionEntry.key)).toBe(0);
    expect((await check()).status).toBe(401);
  });
});

describe('a session record of a version this idgate does not read (a newer idgate wrote it)', () => {
  const record = JSON.parse(openSession(sid, sessionEntry.value as string)!) as { idgate: Record<string, unknown> };
  test.each([
    ['a record version 2 inside the known sealing', () => sealSession(sid, JSON.stringify({ ...record, idgate: { ...record.idgate, v: 2 } }))],
    ['a sealing version 2', () => `v2.${(sessionEntry.value as string).slice(3)}`],
  ])('%s is no session: a login, never a 200, and a log line that says why', async (_name, sealed) => {
    await plantFixture(sealed());
    const before = stack.processes.idgate!.output().length;
    // Each case names its requests: the previous case's audit lines may still be on their way.
    const requestId = `session-upgrade-${_name.replace(/\W+/g, '-')}`;
    expect((await check(fixture.cookie, 'application/json', requestId)).status).toBe(401);
    const browser = await check(fixture.cookie, 'text/html', `${requestId}-browser`);
    expect(browser.status).toBe(302);
    const since = () => stack.processes.idgate!.output().slice(before).split('\n');
    const audited = () => since().find((l) => l.includes('"event":"decision"') && l.includes(`"request_id":"${requestId}"`));
    // Log lines leave in batches: wait for both the warning and the audit line.
    await waitUntil('the warning and the audit line', () => since().some((l) => l.includes('session record of an unknown version')) && audited() !== undefined);
    expect(JSON.parse(since().find((l) => l.includes('session record of an unknown version'))!)).toMatchObject({ level: 'warn', version: 'v2', reads: ['v1'] });
    // The audit line gives the reason too, and idgate is still up.
    expect(JSON.parse(audited()!)).toMatchObject({ status: 401, reason: 'the session record is v2, which this idgate does not read (session records: reads v1, writes v1)' });
    expect((await fetch(`${stack.idgateUrls[0]}/healthz`)).status).toBe(200);
  });
});
