// The check decides a session's renewal on the clock it is handed (CheckDependencies.clock): a test
// moves that clock across the tokens' lifetime instead of waiting for it. The check runs here on the real
// session cache and a session store in memory, with an IdP client the test scripts.
import { createLogger } from '../../service/src/audit.js';
import { createCheck, type CheckDependencies } from '../../service/src/check/check.js';
import type { CheckInput } from '../../service/src/check/contract.js';
import { IdgateError } from '../../service/src/errors.js';
import { Metrics } from '../../service/src/metrics.js';
import { parsePolicy } from '../../service/src/policy/policy-file.js';
import { sessionCookiePair } from '../../service/src/session/cookies.js';
import { SessionCache } from '../../service/src/session/session-cache.js';
import { SESSION_RECORD_VERSION, type StoredSession } from '../../service/src/session/session-record.js';
import type { BearerVerifier } from '../../service/src/tokens/tokens.js';
import { MemorySessionStore } from '../support/memory-session-store.js';
import { unitConfig } from '../support/unit-config.js';

const config = unitConfig();

const { policy } = parsePolicy('version: 1\ndefault: deny\nrules:\n  - id: signed-in\n    authenticated: true\n', 'test.yaml');

/** The access token's lifetime at sign-in: renewal is due half-way. */
const LIFETIME_MS = 4_000;

function setup(idpAnswers: 'renews' | 'unreachable') {
  let now = 1_900_000_000_000;
  const clock = () => now;
  const renewals: number[] = [];
  const oidc = {
    refresh: async (stored: StoredSession, at: number): Promise<StoredSession> => {
      renewals.push(at);
      if (idpAnswers === 'unreachable') throw IdgateError.of('idp_unavailable', 'the IdP is unreachable');
      return { ...stored, refreshToken: 'refresh-2', accessTokenExpiresAt: at + LIFETIME_MS, tokensIssuedAt: at };
    },
  };
  const sessions = new MemorySessionStore(config, clock);
  const deps: CheckDependencies = {
    config,
    redis: undefined as never,
    sessions,
    oidc: oidc as never,
    bearer: undefined as unknown as BearerVerifier,
    sessionCache: new SessionCache(60_000, 100, clock),
    policy: () => policy!,
    logger: createLogger({ level: 'error', write: () => undefined }),
    metrics: new Metrics(),
    clock,
  };
  const sid = 'c2Vzc2lvbi1mb3ItdGhlLWNsb2NrLXRlc3QtMDAwMDAwMDAw';
  const stored: StoredSession = {
    v: SESSION_RECORD_VERSION,
    subject: 'sub-alice',
    user: 'alice',
    email: 'alice@example.com',
    groups: ['staff'],
    roles: [],
    issuer: 'https://idp.example.com',
    createdAt: now,
    idToken: 'id-token',
    refreshToken: 'refresh-1',
    accessTokenExpiresAt: now + LIFETIME_MS,
    tokensIssuedAt: now,
    idpSessionHash: undefined,
  };
  const input: CheckInput = {
    fromTrustedProxy: true,
    peer: '127.0.0.1',
    method: 'GET',
    scheme: 'https',
    host: 'app.example.com',
    pathq: '/home',
    clientAddress: '203.0.113.7',
    requestId: 'req-1',
    cookie: sessionCookiePair(config, sid),
    authorization: undefined,
    accept: 'application/json',
    requestedWith: undefined, dpop: undefined, origin: undefined, corsRequestMethod: undefined, destination: undefined,
  };
  return {
    check: createCheck(deps),
    input,
    renewals,
    start: () => sessions.save(sid, { cookie: { path: '/' }, idgate: stored }),
    advance: (ms: number) => (now += ms),
    now: clock,
  };
}

describe('the check on a clock the test moves', () => {
  test('before half the lifetime no renewal is asked; past it, the IdP is asked at once and the cookie comes back', async () => {
    const t = setup('renews');
    await t.start();
    t.advance(LIFETIME_MS / 2 - 1);
    expect((await t.check(t.input)).status).toBe(200);
    expect(t.renewals).toEqual([]);
    t.advance(2);
    const renewed = await t.check(t.input);
    expect(renewed.status).toBe(200);
    expect(renewed.setCookie).toMatch(/^__Host-idgate=/);
    expect(t.renewals).toEqual([t.now()]);
  });

  test('due but not expired, with the IdP unreachable: 200 on the current tokens; once expired: 503', async () => {
    const t = setup('unreachable');
    await t.start();
    t.advance(LIFETIME_MS / 2 + 1);
    expect((await t.check(t.input)).status).toBe(200);
    expect(t.renewals).toHaveLength(1);
    t.advance(LIFETIME_MS / 2);
    expect((await t.check(t.input)).status).toBe(503);
    expect(t.renewals).toHaveLength(2);
  });
});
