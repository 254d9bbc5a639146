// Per-component cost of one check, in process (no HAProxy, no Redis, no load generator): each piece the
// SPOE and HTTP paths run for a signed-in request whose session is in the cache, timed alone. What the
// CPU profile (`make profile`) spreads over many small frames, this names one figure per step.
//
//   npx tsc -p tsconfig.build.json && node dist/bench/check-components.js
//
// Prints microseconds of CPU per operation (process CPU time, the best of several rounds: time spent
// preempted by the neighbours on the shared cores is not counted). The audit line goes to a file in the
// system's temporary directory, batched as in production.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createLogger, type DecisionRecord } from '../service/src/audit.js';
import { systemClock } from '../service/src/clock.js';
import { createCheck, withoutIdgateCookies, type CheckDependencies } from '../service/src/check/check.js';
import { readRequestFacts } from '../service/src/check/request-facts.js';
import { loadConfig, type Config } from '../service/src/config.js';
import { Metrics } from '../service/src/metrics.js';
import { parsePolicy } from '../service/src/policy/policy-file.js';
import { decide, matchRule, type Identity, type RequestFacts } from '../service/src/policy/policy.js';
import { findCookie, sessionCookiePair, unsignSessionId } from '../service/src/session/cookies.js';
import { SessionCache } from '../service/src/session/session-cache.js';
import type { SessionStore } from '../service/src/session/session-store.js';
import { sessionHash, identityOf, SESSION_RECORD_VERSION, type StoredSession } from '../service/src/session/session-record.js';
import { readSessionForCheck } from '../service/src/session/read-session-for-check.js';
import { httpHeaderListOf, reusedIdentityFields } from '../service/src/check/check-wire.js';
import type { CheckInput, CheckOutcome } from '../service/src/check/contract.js';
import { checkInputFromMessage } from '../service/src/transports/spoe-agent.js';
import { decodeFrame, decodeMessages, encodeAnswer, encodeFrame, encodeKvList, encodeVarint, FRAME } from '../service/src/transports/spoe-codec.js';

const { config } = loadConfig({
  IDGATE_ISSUER: 'https://idp.example.com',
  IDGATE_CLIENT_ID: 'bench',
  IDGATE_CLIENT_SECRET: 'bench-secret-bench-secret',
  IDGATE_PUBLIC_URL: 'https://app.example.com',
  IDGATE_COOKIE_SECRETS: 'c'.repeat(40),
  IDGATE_CHECK_SECRETS: 'k'.repeat(40),
});
if (!config) throw new Error('bench config does not load');
const cfg: Config = config;

const policyText = fs.readFileSync(new URL('../../policy/demo.yaml', import.meta.url), 'utf8');
const { policy, problems } = parsePolicy(policyText, 'demo.yaml');
if (!policy) throw new Error(problems.join('\n'));

// A session in the cache, as the check finds it after its first Redis read.
const now = Date.now();
const sid = 'Q2Vzc2lvbi1pZC1mb3ItdGhlLWJlbmNoLTAwMDAwMDAwMDA';
const stored: StoredSession = {
  v: SESSION_RECORD_VERSION,
  subject: '00u1abcd2EFGHijk3l4m',
  user: 'alice@example.com',
  email: 'alice@example.com',
  groups: ['staff', 'engineering', 'on-call'],
  roles: [],
  issuer: 'https://idp.example.com',
  createdAt: now,
  idToken: '',
  refreshToken: undefined,
  accessTokenExpiresAt: undefined,
  tokensIssuedAt: now,
  idpSessionHash: undefined,
};
const sessionCache = new SessionCache(3_600_000, 1000);
sessionCache.set(sessionHash(sid), { found: true, sid, session: stored, identity: identityOf(stored), record: {} }, now);
const cookieHeader = `theme=dark; ${sessionCookiePair(cfg, sid)}; _ga=GA1.2.3.4`;

const auditFile = path.join(os.tmpdir(), `idgate-bench-audit-${process.pid}.log`);
const logger = createLogger({ file: auditFile });
const metrics = new Metrics();
const unusedStore = new Proxy({}, { get: () => () => Promise.reject(new Error('the bench reads sessions from the cache only')) }) as SessionStore;
const deps: CheckDependencies = {
  config: cfg,
  redis: undefined as never,
  sessions: unusedStore,
  oidc: undefined as never,
  bearer: undefined as never,
  sessionCache,
  policy: () => policy,
  logger,
  metrics,
  clock: systemClock,
};
const check = createCheck(deps);
await new Promise((resolve) => setTimeout(resolve, 100)); // the audit file opens

// The NOTIFY frame HAProxy sends (spoe-idgate.conf `idgate-check`), without its 4-byte length prefix.
function notifyFrame(streamId: number, frameId: number): Buffer {
  const args: Record<string, string | boolean> = {
    method: 'GET',
    pathq: '/dashboard/reports?page=2',
    host: 'app.example.com',
    proto: true,
    src: '203.0.113.7',
    id: '3f2a6c1e-8b4d-4e7a-9c21-5d0f7b3e9a14',
    cookie: cookieHeader,
    accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
  };
  const name = Buffer.from('idgate-check');
  const parts: Buffer[] = [encodeVarint(name.length), name, Buffer.from([Object.keys(args).length])];
  for (const [k, v] of Object.entries(args)) parts.push(encodeKvList({ [k]: v }));
  return encodeFrame(FRAME.NOTIFY, 1, streamId, frameId, Buffer.concat(parts)).subarray(4);
}
const frame = notifyFrame(11, 3);
const input: CheckInput = checkInputFromMessage(decodeMessages(decodeFrame(frame).payload).get('idgate-check')!, '127.0.0.1');
const facts = readRequestFacts(input, cfg) as RequestFacts;
const identity: Identity = identityOf(stored);
const rule = matchRule(policy, facts)!;
const outcome: CheckOutcome = await check(input);
if (outcome.status !== 200) throw new Error(`the bench check is not an allow: ${outcome.status} ${outcome.reason}`);
const record: DecisionRecord = {
  request_id: facts.requestId,
  decision: 'allow',
  status: 200,
  reason: 'authenticated',
  rule: rule.id,
  sub: identity.subject,
  user: identity.user,
  client: null,
  scheme: 'session',
  method: facts.method,
  host: facts.host,
  path: facts.path,
  client_ip: facts.clientIp,
  latency_ms: 0.042,
};

/**
 * Between batches the event loop turns, as it does between a server's reads, and the audit lines are
 * written out (counted: production writes them too; without it they would pile up in memory here).
 */
const turn = () => {
  logger.flush();
  return new Promise<void>((resolve) => setImmediate(resolve));
};
const BATCH = 1000;

/** CPU time of this process in ns: time spent preempted by the neighbours on the shared cores is not counted. */
function cpuNs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) * 1000;
}

/** ns of CPU per call: the best of `rounds` rounds of `n` calls (after a warm-up round), in batches of BATCH. */
async function time(fn: () => unknown, n = 50_000, rounds = 7): Promise<number> {
  let best = Infinity;
  for (let r = -1; r < rounds; r++) {
    const t0 = cpuNs();
    for (let done = 0; done < n; done += BATCH) {
      for (let i = 0; i < BATCH; i++) fn();
      await turn();
    }
    if (r >= 0) best = Math.min(best, (cpuNs() - t0) / n);
  }
  return best;
}

async function timeAsync(fn: () => Promise<unknown>, n = 20_000, rounds = 7): Promise<number> {
  let best = Infinity;
  for (let r = -1; r < rounds; r++) {
    const t0 = cpuNs();
    for (let done = 0; done < n; done += BATCH) {
      for (let i = 0; i < BATCH; i++) await fn();
      await turn();
    }
    if (r >= 0) best = Math.min(best, (cpuNs() - t0) / n);
  }
  return best;
}

let frameId = 0;
const rows: [string, number][] = [
  ['SPOE decode (frame, message, CheckInput)', await time(() => checkInputFromMessage(decodeMessages(decodeFrame(frame).payload).get('idgate-check')!, '127.0.0.1'))],
  ['request facts (validate, canonical path)', await time(() => readRequestFacts(input, cfg))],
  ['cookie parse (find + remembered signature)', await time(() => unsignSessionId(findCookie(cookieHeader, cfg.cookieName)!, cfg.cookieSecrets))],
  ['cookie strip (Cookie without idgate\'s)', await time(() => withoutIdgateCookies(cookieHeader, cfg))],
  ['cache look-up (hash + cache + max age)', await timeAsync(() => readSessionForCheck(unusedStore, cfg, cookieHeader, now, sessionCache))],
  ['policy (match + decide)', await time(() => decide(facts, matchRule(policy, facts), identity, undefined))],
  ['identity values (reused per identity)', await time(() => reusedIdentityFields(identity, { rule: rule.id, backend: undefined }, policy))],
  ['metrics (recordDecision)', await time(() => metrics.recordDecision('allow', 'ok', 0.000042))],
  ['audit line (logger.decision)', await time(() => logger.decision(record))],
  ['SPOE encode (ACK bytes of an allow)', await time(() => encodeAnswer(11, ++frameId % 1000, outcome))],
  ['HTTP headers (of an allow)', await time(() => httpHeaderListOf(outcome))],
  ['whole check (createCheck, cached session)', await timeAsync(() => check(input))],
  ['SPOE path in process (decode + check + encode)', await timeAsync(async () => {
    const f = decodeFrame(frame);
    const o = await check(checkInputFromMessage(decodeMessages(f.payload).get('idgate-check')!, '127.0.0.1'));
    return encodeAnswer(f.streamId, f.frameId, o);
  })],
];
logger.flush();
await turn();
fs.rmSync(auditFile, { force: true });

const width = Math.max(...rows.map(([name]) => name.length));
process.stdout.write(`node ${process.version}, ${os.cpus()[0]?.model ?? 'unknown CPU'}\n`);
for (const [name, ns] of rows) process.stdout.write(`${name.padEnd(width)}  ${(ns / 1000).toFixed(2).padStart(6)} µs\n`);
process.exit(0);
