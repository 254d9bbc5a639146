// One suite every SessionStore implementation must pass (as oauth2-proxy's RunSessionStoreTests does for
// its stores): reading, the idle and absolute timeouts, renewal, logout and revocation, the indexes, the
// refresh lock and the refresh race, pending logins and their bounds, logout-token ids seen once, and a
// store that cannot answer. Each implementation brings a clock the
// suite moves (for Redis: its TTLs shortened, as if the time had passed), so nothing here sleeps out a TTL.
import crypto from 'node:crypto';
import type { Config } from '../../service/src/config.js';
import type { Logger } from '../../service/src/audit.js';
import type { Metrics } from '../../service/src/metrics.js';
import type { OidcRelyingParty } from '../../service/src/idp/relying-party.js';
import { keepSessionFresh } from '../../service/src/idp/session-refresh.js';
import { identityOf, type StoredSession, idpSessionHash, sessionHash } from '../../service/src/session/session-record.js';
import { hashValue, type PendingLogin } from '../../service/src/session/pending-logins.js';
import type { SessionStore } from '../../service/src/session/session-store.js';
import { pause } from '../../stack/wait.js';

export const SUITE_SETTINGS = {
  sessionIdleTtlSeconds: 60,
  sessionMaxAgeSeconds: 3600,
  loginTtlSeconds: 300,
  loginMaxPendingPerBrowser: 3,
  loginMaxPending: 5,
} as const;

export interface StoreUnderTest {
  readonly store: SessionStore;
  /** The clock the store judges timeouts by, ms since epoch. */
  now(): number;
  /** Moves that clock on: what the store holds ages by `ms`. */
  advance(ms: number): Promise<void>;
  /** From now on the store cannot answer (Redis away). */
  breakStore(): Promise<void>;
  close(): Promise<void>;
}

const IDLE_MS = SUITE_SETTINGS.sessionIdleTtlSeconds * 1000;
const LOGIN_TTL_MS = SUITE_SETTINGS.loginTtlSeconds * 1000;

function newSid(): string {
  return crypto.randomBytes(32).toString('base64url');
}

function sessionOf(subject: string, at: number, over: Partial<StoredSession> = {}): StoredSession {
  return {
    v: 1,
    subject,
    user: subject,
    email: `${subject}@example.com`,
    groups: ['staff'],
    roles: [],
    issuer: 'https://idp.example.com',
    createdAt: at,
    idToken: 'id-token',
    refreshToken: undefined,
    accessTokenExpiresAt: undefined,
    tokensIssuedAt: at,
    idpSessionHash: undefined,
    ...over,
  };
}

/** A browser's binding cookie, as login makes one. */
const newBinding = newSid;

function pendingFor(binding: string, returnTo = '/'): PendingLogin {
  return { codeVerifier: crypto.randomBytes(32).toString('base64url'), nonce: crypto.randomBytes(16).toString('base64url'), returnTo, bindingHash: hashValue(binding), startedAt: 0 };
}

const recordOf = (stored: StoredSession) => ({ cookie: { originalMaxAge: SUITE_SETTINGS.sessionMaxAgeSeconds * 1000, path: '/' }, idgate: stored });

export function runSessionStoreTests(name: string, makeStore: () => Promise<StoreUnderTest>): void {
  describe(`session store: ${name}`, () => {
    let t: StoreUnderTest;
    beforeEach(async () => {
      t = await makeStore();
    });
    afterEach(async () => {
      await t.close();
    });

    async function login(subject: string, over: Partial<StoredSession> = {}): Promise<{ sid: string; stored: StoredSession }> {
      const sid = newSid();
      const stored = sessionOf(subject, t.now(), over);
      await t.store.save(sid, recordOf(stored));
      return { sid, stored };
    }

    test('a session id that was never saved reads as expired (no session)', async () => {
      expect(await t.store.read(newSid(), t.now())).toEqual({ found: false, problem: 'session_expired' });
    });

    test('a saved session reads back with its record, and is listed under its subject and user', async () => {
      const { sid, stored } = await login('alice');
      const read = await t.store.read(sid, t.now());
      const asStored = JSON.parse(JSON.stringify(stored)) as StoredSession; // undefined fields are not kept
      expect(read).toEqual({ found: true, session: asStored, record: recordOf(asStored) });
      const listed = [{ hash: sessionHash(sid), subject: 'alice', user: 'alice', createdAt: stored.createdAt }];
      expect(await t.store.list({ subject: 'alice' })).toEqual(listed);
      expect(await t.store.list({ user: 'alice' })).toEqual(listed);
      expect(await t.store.load(sid)).toEqual(recordOf(asStored));
    });

    test('idle timeout: a session read within it lives on; one left unread for longer is gone', async () => {
      const { sid } = await login('alice');
      await t.advance(IDLE_MS - 5000);
      expect((await t.store.read(sid, t.now())).found).toBe(true);
      await t.advance(IDLE_MS - 5000); // past the first timeout: the read renewed it
      expect((await t.store.read(sid, t.now())).found).toBe(true);
      await t.advance(IDLE_MS + 5000);
      expect(await t.store.read(sid, t.now())).toEqual({ found: false, problem: 'session_expired' });
    });

    test('idle timeout: readLatest (a renewal reading under its lock) does not renew it; touch does', async () => {
      const { sid } = await login('alice');
      await t.advance(IDLE_MS - 5000);
      expect((await t.store.readLatest(sid, t.now())).found).toBe(true);
      await t.advance(10_000);
      expect((await t.store.readLatest(sid, t.now())).found).toBe(false);
      const other = await login('bob');
      await t.advance(IDLE_MS - 5000);
      await t.store.touch(other.sid);
      await t.advance(10_000);
      expect((await t.store.readLatest(other.sid, t.now())).found).toBe(true);
    });

    test('absolute timeout: a session in use is read until IDGATE_SESSION_MAX_AGE after login, never after', async () => {
      const { sid, stored } = await login('alice');
      const endsAt = stored.createdAt + SUITE_SETTINGS.sessionMaxAgeSeconds * 1000;
      expect((await t.store.read(sid, endsAt)).found).toBe(true);
      expect(await t.store.read(sid, endsAt + 1)).toEqual({ found: false, problem: 'session_expired' });
      expect(await t.store.readLatest(sid, endsAt + 1)).toEqual({ found: false, problem: 'session_expired' });
    });

    test('a record of a version this idgate does not read is invalid and names its version; load still returns it', async () => {
      const { sid } = await login('alice');
      const newer = { ...recordOf(sessionOf('alice', t.now())), idgate: { ...sessionOf('alice', t.now()), v: 2 } };
      await t.store.save(sid, newer);
      expect(await t.store.read(sid, t.now())).toEqual({ found: false, problem: 'session_invalid', unknownVersion: 'v2' });
      expect(await t.store.load(sid)).toMatchObject({ idgate: { v: 2 } });
    });

    test('renew writes the new tokens without resetting the idle timeout, and never brings back a session that is gone', async () => {
      const { sid, stored } = await login('alice', { refreshToken: 'r1' });
      await t.advance(IDLE_MS - 10_000);
      expect(await t.store.renew(sid, recordOf({ ...stored, refreshToken: 'r2' }))).toBe(true);
      expect(await t.store.readLatest(sid, t.now())).toMatchObject({ found: true, session: { refreshToken: 'r2' } });
      await t.advance(15_000);
      expect((await t.store.readLatest(sid, t.now())).found).toBe(false);
      expect(await t.store.renew(sid, recordOf({ ...stored, refreshToken: 'r3' }))).toBe(false);
      expect((await t.store.readLatest(sid, t.now())).found).toBe(false);
    });

    test('logout destroys the session: it reads as expired and is no longer listed', async () => {
      const { sid } = await login('alice');
      await t.store.destroy(sid);
      expect((await t.store.read(sid, t.now())).found).toBe(false);
      expect(await t.store.list({ user: 'alice' })).toEqual([]);
      await t.store.destroy(newSid()); // a session that never existed: nothing happens
    });

    test('revoke ends the sessions listed, counts those that existed, and leaves the others', async () => {
      const a1 = await login('alice');
      await t.advance(1000);
      const a2 = await login('alice');
      const bob = await login('bob');
      const listed = await t.store.list({ user: 'alice' });
      expect(listed.map((s) => s.hash)).toEqual([sessionHash(a1.sid), sessionHash(a2.sid)]);
      expect(await t.store.revoke(listed)).toBe(2);
      expect((await t.store.read(a1.sid, t.now())).found).toBe(false);
      expect((await t.store.read(a2.sid, t.now())).found).toBe(false);
      expect((await t.store.read(bob.sid, t.now())).found).toBe(true);
      expect(await t.store.revoke(listed)).toBe(0);
      expect(await t.store.revoke([])).toBe(0);
      expect(await t.store.list({ user: 'alice' })).toEqual([]);
    });

    test('a user name with two subjects lists the sessions of both; sessions gone by idle timeout drop out of the list', async () => {
      const first = await login('sub-1', { user: 'carol' });
      await t.advance(1000);
      const second = await login('sub-2', { user: 'carol' });
      expect((await t.store.list({ user: 'carol' })).map((s) => [s.subject, s.hash])).toEqual([
        ['sub-1', sessionHash(first.sid)],
        ['sub-2', sessionHash(second.sid)],
      ]);
      await t.advance(IDLE_MS - 500);
      await t.store.touch(second.sid);
      await t.advance(1000);
      expect((await t.store.list({ user: 'carol' })).map((s) => s.subject)).toEqual(['sub-2']);
      expect(await t.store.list({})).toEqual([]);
    });

    test('sessions of one IdP session are found by its id (back-channel logout), only those', async () => {
      const mine = await login('dave', { idpSessionHash: idpSessionHash('idp-sid-1') });
      await login('dave', { idpSessionHash: idpSessionHash('idp-sid-2') });
      const found = await t.store.sessionsOfIdpSession('idp-sid-1');
      expect(found).toEqual([{ subject: 'dave', hash: sessionHash(mine.sid) }]);
      expect(await t.store.revoke(found)).toBe(1);
      expect(await t.store.list({ subject: 'dave' })).toHaveLength(1);
      expect(await t.store.sessionsOfIdpSession('unknown')).toEqual([]);
    });

    test('the refresh lock is held by one at a time, per session, until released or its lease runs out', async () => {
      const sid = newSid();
      const held = await t.store.lock(sid);
      expect(held).toBeDefined();
      expect(await t.store.lock(sid)).toBeUndefined();
      const other = await t.store.lock(newSid());
      expect(other).toBeDefined();
      await held!.release();
      const again = await t.store.lock(sid);
      expect(again).toBeDefined();
      // A holder that died (never releases): its lease runs out.
      await t.advance(7000);
      const taken = await t.store.lock(sid);
      expect(taken).toBeDefined();
      await Promise.all([again!.release(), other!.release(), taken!.release()]);
    });

    test('refresh race: two requests with expired tokens, one redeems the refresh token, the other gets its result', async () => {
      const now = t.now();
      const { sid, stored } = await login('erin', { refreshToken: 'r1', accessTokenExpiresAt: now - 1000, tokensIssuedAt: now - 60_000 });
      let grants = 0;
      const oidc = {
        refresh: async (session: StoredSession) => {
          grants++;
          await pause(150); // a slow token endpoint: the race under test
          return { ...session, refreshToken: 'r2', accessTokenExpiresAt: now + 300_000, tokensIssuedAt: now + 1 };
        },
      } as unknown as OidcRelyingParty;
      const deps = {
        config: { ...SUITE_SETTINGS, cookieName: 'idgate', cookieSecrets: ['s'.repeat(32)], cookieDomain: undefined, cookieSecure: false } as unknown as Config,
        sessions: t.store,
        oidc,
        logger: { event: () => undefined, log: () => undefined } as unknown as Logger,
        metrics: { recordEvent: () => undefined, recordRevoked: () => undefined } as unknown as Metrics,
        clock: () => t.now(),
      };
      const lookup = { found: true as const, sid, session: stored, identity: identityOf(stored), record: recordOf(stored) };
      const results = await Promise.all([keepSessionFresh(deps, lookup, now), keepSessionFresh(deps, lookup, now)]);
      expect(grants).toBe(1);
      expect(results.map((r) => r.kind).sort()).toEqual(['current', 'refreshed']);
      for (const r of results) expect(r.kind !== 'ended' && r.kind !== 'unavailable' && r.lookup.session.refreshToken).toBe('r2');
      expect(await t.store.readLatest(sid, now)).toMatchObject({ found: true, session: { refreshToken: 'r2' } });
      // A request that read the session before the renewal (another replica, its session cache) reads it
      // again under the lock and goes on with the renewed tokens: no second grant.
      const late = await keepSessionFresh(deps, lookup, now);
      expect(late.kind !== 'ended' && late.kind !== 'unavailable' && [late.kind, late.lookup.session.refreshToken]).toEqual(['current', 'r2']);
      expect(grants).toBe(1);
      // The lock is free again for the next renewal.
      const lock = await t.store.lock(sid);
      expect(lock).toBeDefined();
      await lock!.release();
    });

    test('a renewal the IdP refuses ends the session', async () => {
      const now = t.now();
      const { sid, stored } = await login('frank', { refreshToken: 'r1', accessTokenExpiresAt: now - 1000, tokensIssuedAt: now - 60_000 });
      const { IdgateError } = await import('../../service/src/errors.js');
      const deps = {
        config: { ...SUITE_SETTINGS } as unknown as Config,
        sessions: t.store,
        oidc: { refresh: async () => Promise.reject(new IdgateError('session_ended', 'ended', 'invalid_grant')) } as unknown as OidcRelyingParty,
        logger: { event: () => undefined, log: () => undefined } as unknown as Logger,
        metrics: { recordEvent: () => undefined, recordRevoked: () => undefined } as unknown as Metrics,
        clock: () => t.now(),
      };
      const result = await keepSessionFresh(deps, { found: true, sid, session: stored, identity: identityOf(stored), record: recordOf(stored) }, now);
      expect(result.kind).toBe('ended');
      expect((await t.store.read(sid, now)).found).toBe(false);
      expect(await t.store.list({ subject: 'frank' })).toEqual([]);
    });

    test('a pending login is taken once, by the browser that started it, with what login saved', async () => {
      const binding = newBinding();
      const pending = pendingFor(binding, '/after-login?x=1');
      expect(await t.store.savePendingLogin('state-1', pending)).toEqual({ saved: true, dropped: 0 });
      expect(await t.store.takePendingLogin('state-1', binding)).toEqual({ outcome: 'taken', pending });
      expect(await t.store.takePendingLogin('state-1', binding)).toEqual({ outcome: 'unknown' });
      expect(await t.store.takePendingLogin('never-saved', binding)).toEqual({ outcome: 'unknown' });
    });

    test("a callback without the binding or with another browser's leaves the pending login to the browser that started it", async () => {
      const binding = newBinding();
      await t.store.savePendingLogin('state-1', pendingFor(binding));
      expect(await t.store.takePendingLogin('state-1', undefined)).toEqual({ outcome: 'other_browser' });
      expect(await t.store.takePendingLogin('state-1', newBinding())).toEqual({ outcome: 'other_browser' });
      expect(await t.store.takePendingLogin('state-1', '')).toEqual({ outcome: 'other_browser' });
      expect((await t.store.takePendingLogin('state-1', binding)).outcome).toBe('taken');
    });

    test('of many concurrent callbacks with the right binding, exactly one takes the pending login', async () => {
      const binding = newBinding();
      await t.store.savePendingLogin('state-1', pendingFor(binding));
      const claims = await Promise.all(Array.from({ length: 10 }, () => t.store.takePendingLogin('state-1', binding)));
      expect(claims.filter((c) => c.outcome === 'taken')).toHaveLength(1);
      expect(claims.filter((c) => c.outcome === 'unknown')).toHaveLength(9);
    });

    test('a pending login expires IDGATE_LOGIN_TTL after it was started', async () => {
      const binding = newBinding();
      await t.store.savePendingLogin('state-1', pendingFor(binding));
      await t.store.savePendingLogin('state-2', pendingFor(binding));
      await t.advance(LOGIN_TTL_MS - 5000);
      expect((await t.store.takePendingLogin('state-1', binding)).outcome).toBe('taken');
      await t.advance(10_000);
      expect(await t.store.takePendingLogin('state-2', binding)).toEqual({ outcome: 'unknown' });
    });

    test("beyond IDGATE_LOGIN_MAX_PENDING_PER_BROWSER a browser's oldest pending login is dropped, reported, and the new one kept", async () => {
      const binding = newBinding();
      const other = newBinding();
      await t.store.savePendingLogin('other-browser', pendingFor(other));
      for (const state of ['tab-1', 'tab-2', 'tab-3']) {
        await t.advance(1000);
        expect(await t.store.savePendingLogin(state, pendingFor(binding))).toEqual({ saved: true, dropped: 0 });
      }
      await t.advance(1000);
      expect(await t.store.savePendingLogin('tab-4', pendingFor(binding))).toEqual({ saved: true, dropped: 1 });
      expect(await t.store.takePendingLogin('tab-1', binding)).toEqual({ outcome: 'unknown' });
      for (const state of ['tab-2', 'tab-3', 'tab-4']) expect((await t.store.takePendingLogin(state, binding)).outcome).toBe('taken');
      // Another browser's logins are not this browser's to drop.
      expect((await t.store.takePendingLogin('other-browser', other)).outcome).toBe('taken');
    });

    test("a browser's oldest pending login is the one it saved first, also when several are saved in one millisecond", async () => {
      const binding = newBinding();
      const states = ['tab-1', 'tab-2', 'tab-3', 'tab-4', 'tab-5'];
      // All sent at once (for Redis, one write on one connection): on the store's clock they fall in one
      // millisecond, or a few, and the order they were sent in is still the order of their age.
      const saved = await Promise.all(states.map((state) => t.store.savePendingLogin(state, pendingFor(binding))));
      expect(saved).toEqual([0, 0, 0, 1, 1].map((dropped) => ({ saved: true, dropped })));
      for (const state of ['tab-1', 'tab-2']) expect(await t.store.takePendingLogin(state, binding)).toEqual({ outcome: 'unknown' });
      for (const state of ['tab-3', 'tab-4', 'tab-5']) expect((await t.store.takePendingLogin(state, binding)).outcome).toBe('taken');
    });

    test('at IDGATE_LOGIN_MAX_PENDING overall a new login is refused with a retry time, until a login completes or expires', async () => {
      const bindings = Array.from({ length: SUITE_SETTINGS.loginMaxPending + 1 }, () => newBinding());
      for (const [i, binding] of bindings.slice(0, -1).entries()) {
        expect(await t.store.savePendingLogin(`state-${i}`, pendingFor(binding))).toEqual({ saved: true, dropped: 0 });
      }
      const last = bindings.at(-1)!;
      const refused = await t.store.savePendingLogin('one-too-many', pendingFor(last));
      expect(refused).toEqual({ saved: false, retryAfterSeconds: expect.any(Number) });
      const { retryAfterSeconds } = refused as { retryAfterSeconds: number };
      expect(retryAfterSeconds).toBeGreaterThanOrEqual(1);
      expect(retryAfterSeconds).toBeLessThanOrEqual(SUITE_SETTINGS.loginTtlSeconds);
      expect(await t.store.takePendingLogin('one-too-many', last)).toEqual({ outcome: 'unknown' });
      // A completed login frees its place at once.
      expect((await t.store.takePendingLogin('state-0', bindings[0]!)).outcome).toBe('taken');
      expect(await t.store.savePendingLogin('one-too-many', pendingFor(last))).toEqual({ saved: true, dropped: 0 });
      expect((await t.store.savePendingLogin('and-another', pendingFor(newBinding()))).saved).toBe(false);
      // Expired logins free theirs.
      await t.advance(LOGIN_TTL_MS + 1000);
      expect(await t.store.savePendingLogin('after-expiry', pendingFor(newBinding()))).toEqual({ saved: true, dropped: 0 });
    });

    test('a logout token id is accepted once per issuer while remembered, and again once forgotten', async () => {
      expect(await t.store.firstUseOfLogoutToken('https://idp.example.com', 'jti-1', 120)).toBe(true);
      expect(await t.store.firstUseOfLogoutToken('https://idp.example.com', 'jti-1', 120)).toBe(false);
      expect(await t.store.firstUseOfLogoutToken('https://other-idp.example.com', 'jti-1', 120)).toBe(true);
      expect(await t.store.firstUseOfLogoutToken('https://idp.example.com', 'jti-2', 120)).toBe(true);
      await t.advance(110_000);
      expect(await t.store.firstUseOfLogoutToken('https://idp.example.com', 'jti-1', 120)).toBe(false);
      await t.advance(20_000);
      expect(await t.store.firstUseOfLogoutToken('https://idp.example.com', 'jti-1', 120)).toBe(true);
    });

    test('a DPoP proof is used once: again by the same request asked again, never by another, until forgotten', async () => {
      expect(await t.store.firstUseOfDpopProof('proof-1', 120, 'request-a')).toBe(true);
      expect(await t.store.firstUseOfDpopProof('proof-1', 120, 'request-a')).toBe(true);
      expect(await t.store.firstUseOfDpopProof('proof-1', 120, 'request-b')).toBe(false);
      expect(await t.store.firstUseOfDpopProof('proof-2', 120, 'request-b')).toBe(true);
      await t.advance(110_000);
      expect(await t.store.firstUseOfDpopProof('proof-1', 120, 'request-c')).toBe(false);
      await t.advance(20_000);
      expect(await t.store.firstUseOfDpopProof('proof-1', 120, 'request-c')).toBe(true);
    });

    test('a store that cannot answer rejects every operation with store_unavailable, never another error', async () => {
      const { sid, stored } = await login('alice');
      await t.breakStore();
      const operations: [string, () => Promise<unknown>][] = [
        ['read', () => t.store.read(sid, t.now())],
        ['readLatest', () => t.store.readLatest(sid, t.now())],
        ['load', () => t.store.load(sid)],
        ['save', () => t.store.save(newSid(), recordOf(stored))],
        ['renew', () => t.store.renew(sid, recordOf(stored))],
        ['touch', () => t.store.touch(sid)],
        ['destroy', () => t.store.destroy(sid)],
        ['revoke', () => t.store.revoke([{ hash: sessionHash(sid), subject: 'alice' }])],
        ['list', () => t.store.list({ user: 'alice' })],
        ['sessionsOfIdpSession', () => t.store.sessionsOfIdpSession('x')],
        ['lock', () => t.store.lock(sid)],
        ['savePendingLogin', () => t.store.savePendingLogin('state-1', pendingFor(newBinding()))],
        ['takePendingLogin', () => t.store.takePendingLogin('state-1', newBinding())],
        ['firstUseOfLogoutToken', () => t.store.firstUseOfLogoutToken('https://idp.example.com', 'jti-1', 120)],
        ['firstUseOfDpopProof', () => t.store.firstUseOfDpopProof('proof-1', 120, 'request-a')],
      ];
      for (const [op, run] of operations) {
        await expect(run().then(() => `${op} answered`, (err: { code?: string }) => `${op} ${err.code}`)).resolves.toBe(`${op} store_unavailable`);
      }
    });
  });
}
