// `make bench`: starts the whole stack on free ports and measures, in one run and side by side:
//   (a) HAProxy → upstream, no auth (the shipped config with the check taken out)
//   (b) HAProxy + idgate (Lua check) with a valid session cookie
//   (c) HAProxy + idgate with a valid bearer JWT
//   (d) idgate's /auth directly, session cookie
//   (e) HAProxy's native jwt_verify on the same JWT (no idgate), the in-proxy reference
//   (g), (h) HAProxy + idgate's SPOE agent, session cookie and bearer JWT
//   (i), (o) HAProxy + idgate's SPOE agent code answering a constant allow, no check: the transport's
//       ceiling, asked the session request of (g) and the bearer request of (h), answering what idgate does
//   (j), (p) HAProxy + the same Lua check against a do-nothing HTTP auth backend: the Lua transport's
//       ceiling, asked the requests of (b) and (c)
//   (k), (l), (m) the peer: Apache's plain proxy, Apache + mod_auth_openidc with its Redis cache and with
//       shared memory, signed in through the same IdP (skipped, with the reason printed, when it cannot run)
// plus (g) at half its maximum rate and (a) at that same rate (p99s), idgate with 100k sessions in Redis,
// and policy matching with 50 and 500 rules. Writes bench/results.json and bench/results.svg, and
// appends a dated table with the command to bench/RESULTS.md (the latest run's targets on top).
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import signature from 'cookie-signature';
import { loadConfig } from '../service/src/config.js';
import { REPO_ROOT, type ManagedProcess } from '../stack/processes.js';
import { startStack, type Stack } from '../stack/stack.js';
import { Browser, signIn } from '../test/support/browser.js';
import { sessionKey } from '../service/src/session/redis-keys.js';
import { sealSession } from '../service/src/session/session-record.js';
import { nativeJwtConfig, passthroughConfig, startHaproxyBeside } from './configs.js';
import { startConstantAgent } from './constant-agent.js';
import { benchRequests, realAnswers } from './requests.js';
import { runAtRate, runWrk, rssMb, type LoadResult } from './load.js';
import { benchPolicyMatching } from './policy-matching.js';
import { navigationFetch, peerRedirectUris, peerUnavailable, pickPeerPorts, startApachePeer, type ApachePeer } from './apache-peer.js';
import { startNullAuthBackend, type NullAuthBackend } from './null-auth.js';
import { renderChart, type ChartKind } from './chart.js';
import { NEW_RESULTS_FILE, withRun } from './results-md.js';

/** Seconds a scenario (after a 1 s warm-up): every scenario of `make bench` fits in 5 minutes with 5. */
const DURATION = Number(process.env.BENCH_SECONDS ?? 5);
/**
 * Rounds of the scenarios held to a ceiling (inTurn below), and seconds of each of their runs (after the
 * same 1 s warm-up): more, shorter runs, because on this shared machine a rate drifts over minutes and a
 * neighbour's burst spoils one run in a few, so the median of more paired ratios is steadier than that of
 * fewer, longer runs. 5 rounds of 3 s keep `make bench` within 5 minutes.
 */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const PAIR_DURATION = Number(process.env.BENCH_PAIR_SECONDS ?? 3);

function log(line: string): void {
  process.stdout.write(`${line}\n`);
}


async function issuerPem(issuer: string, kid: string): Promise<string> {
  const jwks = (await (await fetch(`${issuer}/jwks`)).json()) as { keys: (crypto.JsonWebKey & { kid: string })[] };
  const jwk = jwks.keys.find((k) => k.kid === kid)!;
  return crypto.createPublicKey({ key: jwk, format: 'jwk' }).export({ type: 'spki', format: 'pem' }).toString();
}

/** 100k sealed sessions written to Redis as login would, and a wrk script that cycles through their cookies. */
async function plantSessions(stack: Stack, dir: string, count: number): Promise<string> {
  const { config } = loadConfig({ ...process.env, ...stack.env });
  const redis = new Redis(stack.ports.redis);
  const cookies: string[] = [];
  const now = Date.now();
  for (let start = 0; start < count; start += 5000) {
    const pipeline = redis.pipeline();
    for (let i = start; i < Math.min(count, start + 5000); i++) {
      const sid = crypto.randomBytes(32).toString('base64url');
      const stored = { v: 1, subject: `user-${i}`, user: `user-${i}`, email: `user-${i}@example.com`, groups: ['engineering', `team-${i % 50}`], roles: [], issuer: stack.issuer, createdAt: now, idToken: 'x'.repeat(800), refreshToken: undefined, accessTokenExpiresAt: undefined, tokensIssuedAt: now, idpSessionId: undefined };
      pipeline.set(sessionKey(config!, sid), sealSession(sid, JSON.stringify({ cookie: { originalMaxAge: 86_400_000 }, idgate: stored })), 'EX', 3600);
      cookies.push(`${config!.cookieName}=${encodeURIComponent(`s:${signature.sign(sid, config!.cookieSecrets[0]!)}`)}`);
    }
    await pipeline.exec();
  }
  redis.disconnect();
  const list = path.join(dir, 'cookies.txt');
  fs.writeFileSync(list, `${cookies.join('\n')}\n`);
  const script = path.join(dir, 'cookies.lua');
  fs.writeFileSync(
    script,
    `local cookies = {}
for line in io.lines("${list}") do cookies[#cookies + 1] = line end
local i = 0
request = function()
  i = i % #cookies + 1
  return wrk.format("GET", "/auth", { ["Cookie"] = cookies[i], ["X-Forwarded-Method"] = "GET", ["X-Forwarded-Host"] = "127.0.0.1", ["X-Forwarded-Uri"] = "/", ["X-Idgate-Check-Secret"] = "${stack.checkSecret}" })
end
`,
  );
  return script;
}

async function main(): Promise<void> {
  const command = process.env.BENCH_COMMAND ?? 'node dist/bench/run.js';
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'idgate-bench-'));
  const started = Date.now();
  // The peer's client is registered at the IdP with its redirect URIs, which name its ports: picked now.
  let peerSkipped = peerUnavailable();
  const peerPorts = peerSkipped === undefined ? await pickPeerPorts() : undefined;
  log('starting Redis, the IdP, the upstreams, idgate and HAProxy...');
  const stack = await startStack({
    // idgate writes its audit lines to a file, as in production, not through a pipe into this process.
    idgateEnv: { IDGATE_LOG_FILE: path.join(dir, 'idgate.log') },
    idpEnv: peerPorts ? { IDP_PEER_REDIRECT_URIS: peerRedirectUris(peerPorts).join(',') } : {},
  });
  const extra: ManagedProcess[] = [];
  let nullAuth: NullAuthBackend | undefined;
  let peer: ApachePeer | undefined;
  const results: LoadResult[] = [];
  const kinds = new Map<string, ChartKind>();
  const notes: Record<string, unknown> = {};
  try {
    const idgatePid = stack.processes.idgate!.child.pid;
    const requests = await benchRequests(stack);
    const { cookie, token, sessionCheck, bearer: bearerRequest } = requests;
    const pem = path.join(dir, 'issuer.pem');
    fs.writeFileSync(pem, await issuerPem(stack.issuer, JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()).kid as string));

    const startExtraHaproxy = async (options: Parameters<typeof startHaproxyBeside>[2]) => (await startHaproxyBeside(stack, extra, options)).port;
    const passthroughPort = await startExtraHaproxy({ configPath: passthroughConfig(dir) });
    const spoePort = await startExtraHaproxy({ spoePort: stack.ports.spoe[0]!, mode: 'spoe' });
    // The agent's framing with a constant answer, in a process of its own like idgate's: what SPOE costs
    // without a check. With the bounds idgate's own agent runs with (the stack's settings), answering the
    // very identity idgate gives this session, so that HAProxy sets the same variables and headers.
    const answers = await realAnswers(stack, requests);
    const constantAgent = await startConstantAgent(stack.env, answers.agent);
    extra.push(constantAgent.process);
    const ceilingPort = await startExtraHaproxy({ spoePort: constantAgent.port, mode: 'spoe' });
    // The same shipped Lua config (idgate.lua, the same frontend lines), its be_idgate pointed at a do-nothing backend.
    nullAuth = await startNullAuthBackend(answers.backend);
    const luaCeilingPort = await startExtraHaproxy({ idgatePort: nullAuth.port });
    const nativePort = await startExtraHaproxy({ configPath: nativeJwtConfig(dir, pem) });

    const scenario = async (name: string, options: Parameters<typeof runWrk>[0], kind: ChartKind = 'idgate', rss = true) => {
      log(`${name}...`);
      kinds.set(name, kind);
      // A short warm-up: JIT, connection pools, caches.
      await runWrk({ ...options, duration: 1 });
      const r = await runWrk({ ...options, duration: DURATION });
      const result = { name, ...r, rss_mb: rss ? rssMb(idgatePid) : NaN };
      results.push(result);
      log(`  ${result.rps} req/s, p50 ${result.p50_ms} ms, p99 ${result.p99_ms} ms, errors ${result.errors}${rss ? `, idgate RSS ${result.rss_mb} MB` : ''}`);
      return result;
    };
    /**
     * idgate and the ceilings it is held to, measured in turn, ROUNDS times: on this shared machine one
     * scenario's rate drifts by up to 30 % from one minute to the next, so a ratio must compare runs taken
     * moments apart. The list is pairs (idgate's scenario, then its ceiling), each pair run back to back,
     * the order within the pairs reversed every other round (so that neither side is always the one run
     * second, after a switch of HAProxy instance); each pair's ratio is taken per round, and the median of
     * those is its figure. The table keeps each scenario's run of median rate.
     */
    const pairRatios = new Map<string, number[]>();
    const inTurn = async (list: [name: string, options: Parameters<typeof runWrk>[0], kind: ChartKind][]) => {
      const runs = new Map<string, Omit<LoadResult, 'name' | 'rss_mb'>[]>(list.map(([name]) => [name, []]));
      for (let round = 1; round <= ROUNDS; round++) {
        for (let pair = 0; pair < list.length; pair += 2) {
          const both = list.slice(pair, pair + 2);
          for (const [name, options] of round % 2 === 1 ? both : [...both].reverse()) {
            log(`${name}, round ${round} of ${ROUNDS}...`);
            await runWrk({ ...options, duration: 1 });
            const r = await runWrk({ ...options, duration: PAIR_DURATION });
            runs.get(name)!.push(r);
            log(`  ${r.rps} req/s, p50 ${r.p50_ms} ms, p99 ${r.p99_ms} ms, errors ${r.errors}`);
          }
          const [checked, ceiling] = both.map(([name]) => runs.get(name)!.at(-1)!.rps);
          const key = `${letterOf(both[0]![0])}/${letterOf(both[1]![0])}`;
          pairRatios.set(key, [...(pairRatios.get(key) ?? []), checked! / ceiling!]);
          log(`  ${key} this round: ${(checked! / ceiling!).toFixed(3)}`);
        }
      }
      return list.map(([name, , kind]) => {
        const result = { name, ...medianBy(runs.get(name)!, (r) => r.rps), rss_mb: rssMb(idgatePid) };
        kinds.set(name, kind);
        results.push(result);
        return result;
      });
    };
    /** A pair's figure: the median of its per-round ratios (see inTurn). */
    const pairRatio = (key: string) => Number(medianBy(pairRatios.get(key)!, (x) => x).toFixed(3));
    const a = await scenario('(a) HAProxy -> upstream, no auth', { url: `http://127.0.0.1:${passthroughPort}/` }, 'baseline');
    // Each ceiling is asked the very request idgate is, and answers what idgate answers to it.
    const [b, j, c] = await inTurn([
      ['(b) HAProxy + idgate (Lua), session cookie', { url: `${stack.frontUrl}/`, headers: { Cookie: cookie } }, 'idgate'],
      ["(j) HAProxy + Lua check, do-nothing auth backend (no idgate: the Lua transport's ceiling), session request", { url: `http://127.0.0.1:${luaCeilingPort}/`, headers: { Cookie: cookie } }, 'baseline'],
      ['(c) HAProxy + idgate (Lua), bearer JWT', { url: `${stack.frontUrl}/api/hello`, headers: bearerRequest }, 'idgate'],
      ["(p) HAProxy + Lua check, do-nothing auth backend (the Lua transport's ceiling), bearer request", { url: `http://127.0.0.1:${luaCeilingPort}/api/hello`, headers: bearerRequest }, 'baseline'],
    ]);
    const d = await scenario('(d) idgate /auth directly, session cookie', { url: `${stack.idgateUrls[0]}/auth`, headers: sessionCheck });
    const e = await scenario('(e) HAProxy native jwt_verify, same JWT (no idgate)', { url: `http://127.0.0.1:${nativePort}/api/hello`, headers: { Authorization: `Bearer ${token}` } }, 'peer');
    // The same requests to idgate and to the constant agent: the same cookie or token travels in the same SPOE message.
    const [g, i, h] = await inTurn([
      ['(g) HAProxy + idgate (SPOE), session cookie', { url: `http://127.0.0.1:${spoePort}/`, headers: { Cookie: cookie } }, 'idgate'],
      ["(i) HAProxy + SPOE, constant-answer agent (no check: the transport's ceiling), session request", { url: `http://127.0.0.1:${ceilingPort}/`, headers: { Cookie: cookie } }, 'baseline'],
      ['(h) HAProxy + idgate (SPOE), bearer JWT', { url: `http://127.0.0.1:${spoePort}/api/hello`, headers: bearerRequest }, 'idgate'],
      ["(o) HAProxy + SPOE, constant-answer agent (the transport's ceiling), bearer request", { url: `http://127.0.0.1:${ceilingPort}/api/hello`, headers: bearerRequest }, 'baseline'],
    ]);

    // The peer, with Apache running only for its own scenarios. Anything that fails here is printed and skipped.
    const peerResults: Partial<Record<'k' | 'l' | 'm', LoadResult>> = {};
    const peerWhy: Partial<Record<'l' | 'm', string>> = {};
    if (peerPorts) {
      try {
        log('starting Apache + mod_auth_openidc (bench/apache-peer.conf)...');
        peer = await startApachePeer({ ports: peerPorts, issuer: stack.issuer, upstreamPort: stack.ports.upstream, redisPort: stack.ports.redis });
        peerResults.k = await scenario('(k) Apache mod_proxy -> upstream, no auth', { url: peer.urls.plain }, 'baseline', false);
        for (const [letter, cache] of [['l', 'Redis'], ['m', 'shm']] as const) {
          try {
            const url = cache === 'Redis' ? peer.urls.redis : peer.urls.shm;
            const session = await peerSession(url);
            peerResults[letter] = await scenario(`(${letter}) Apache + mod_auth_openidc (${cache} cache), session cookie`, { url, headers: { Cookie: session } }, 'peer', false);
            if (peerResults[letter]!.errors > 0) log(`  (${letter}) answered errors; Apache's error log:\n${peer.errorLog()}`);
          } catch (err) {
            peerWhy[letter] = (err as Error).message.split('\n')[0];
            log(`  (${letter}) Apache + mod_auth_openidc (${cache} cache) not measured: ${peerWhy[letter]}\n${peer.errorLog()}`);
          }
        }
      } catch (err) {
        // One line for the table; Apache's own words (its output, its error log) on the console.
        peerSkipped = `Apache could not run: ${(err as Error).message.split('\n')[0]}`;
        log((err as Error).message);
      } finally {
        await peer?.stop();
        peer = undefined;
      }
    }
    if (peerSkipped !== undefined) {
      log(`the peer (Apache + mod_auth_openidc) is skipped: ${peerSkipped}`);
      notes.peer_skipped = peerSkipped;
    }

    // The latency target: the SPOE session check at half its maximum rate against passthrough at that same rate.
    const halfRate = Math.max(1, Math.round(g.rps / 2));
    const atRate = async (name: string, url: string, headers: Record<string, string>, kind: ChartKind) => {
      log(`${name}...`);
      kinds.set(name, kind);
      // The same warm-up as every scenario: after the peer's scenarios, HAProxy may have let its idle
      // connections to the agent go, and a measured run must not time their re-opening.
      await runAtRate({ url, headers, rate: halfRate, duration: 1, connections: 32 });
      const r = await runAtRate({ url, headers, rate: halfRate, duration: DURATION, connections: 32 });
      results.push({ name, ...r, rss_mb: rssMb(idgatePid) });
      log(`  ${r.rps} req/s, p50 ${r.p50_ms} ms, p99 ${r.p99_ms} ms, errors ${r.errors}`);
      return r;
    };
    const gHalf = await atRate(`(g) at 50% of its max rate (${halfRate} req/s, autocannon)`, `http://127.0.0.1:${spoePort}/`, { Cookie: cookie }, 'idgate');
    const aHalf = await atRate(`(a) at that same rate (${halfRate} req/s, autocannon)`, `http://127.0.0.1:${passthroughPort}/`, { Cookie: cookie }, 'baseline');

    log('100k sessions in Redis, checks spread over all of them...');
    const script = await plantSessions(stack, dir, 100_000);
    const f = await scenario('(f) idgate /auth directly, 100k distinct sessions', { url: `${stack.idgateUrls[0]}/auth`, script });

    for (const rules of [50, 500]) {
      log(`policy matching with ${rules} rules...`);
      // In-process: the RSS column is idgate's, and no idgate runs here.
      results.push({ ...benchPolicyMatching(rules, 100_000), rss_mb: NaN });
    }

    const ratio = (x: number, y: number) => Number((x / y).toFixed(3));
    const { k, l, m } = peerResults;
    const ratios: Record<string, number> = {
      'b/a session via HAProxy+idgate vs passthrough': ratio(b.rps, a.rps),
      'c/a bearer via HAProxy+idgate vs passthrough': ratio(c.rps, a.rps),
      'c/e bearer via idgate vs HAProxy native jwt_verify': ratio(c.rps, e.rps),
      'd/a idgate alone vs passthrough': ratio(d.rps, a.rps),
      'g/a session via HAProxy+SPOE vs passthrough': ratio(g.rps, a.rps),
      'h/a bearer via HAProxy+SPOE vs passthrough': ratio(h.rps, a.rps),
      'i/a SPOE without a check vs passthrough': ratio(i.rps, a.rps),
      'j/a Lua check without idgate vs passthrough': ratio(j.rps, a.rps),
      'g/i SPOE session vs the SPOE ceiling': pairRatio('g/i'),
      'h/o SPOE bearer vs the SPOE ceiling': pairRatio('h/o'),
      'b/j Lua session vs the Lua ceiling': pairRatio('b/j'),
      'c/p Lua bearer vs the Lua ceiling': pairRatio('c/p'),
      'p99 of (g) at 50% rate / p99 of (a) at that rate': ratio(gHalf.p99_ms, aHalf.p99_ms),
      ...(l ? { 'g/l idgate (SPOE) vs Apache + mod_auth_openidc (Redis cache), session': ratio(g.rps, l.rps) } : {}),
      ...(m ? { 'g/m idgate (SPOE) vs Apache + mod_auth_openidc (shm cache), session': ratio(g.rps, m.rps) } : {}),
      ...(k && l ? { 'l/k Apache + mod_auth_openidc (Redis) vs Apache proxy alone': ratio(l.rps, k.rps) } : {}),
      ...(k && m ? { 'm/k Apache + mod_auth_openidc (shm) vs Apache proxy alone': ratio(m.rps, k.rps) } : {}),
    };
    const notMeasured = (letter: 'l' | 'm') => `not measured (${peerWhy[letter] ?? peerSkipped ?? 'see the log'})`;
    if (Object.keys(peerWhy).length > 0) notes.peer_not_measured = peerWhy;
    // The targets (bench/RESULTS.md); a target whose scenario could not run says so instead of met / NOT met.
    notes.targets = {
      'SPOE session g/i >= 0.9': pairRatio('g/i') >= 0.9,
      'SPOE bearer h/o >= 0.9': pairRatio('h/o') >= 0.9,
      'Lua session b/j >= 0.9': pairRatio('b/j') >= 0.9,
      'Lua bearer c/p >= 0.9': pairRatio('c/p') >= 0.9,
      'idgate via SPOE >= 3x Apache + mod_auth_openidc with Redis (g/l >= 3)': l ? ratio(g.rps, l.rps) >= 3 : notMeasured('l'),
      'idgate via SPOE ahead of Apache + mod_auth_openidc with shm (g/m > 1)': m ? ratio(g.rps, m.rps) > 1 : notMeasured('m'),
      'p99 of (g) at 50% of its max rate <= 2x p99 of (a) at that rate': gHalf.p99_ms <= 2 * aHalf.p99_ms,
      'idgate RSS < 150 MB, 100k sessions (f) included': f.rss_mb < 150 && results.every((r) => !(r.rss_mb >= 150)),
    };
    // idgate's absolute checks/s beside the peer's, in one line.
    const perSecond = (r: LoadResult | undefined) => (r ? r.rps.toLocaleString('en-US') : 'not measured');
    notes.checks_per_second = {
      'idgate via SPOE (g)': g.rps,
      'idgate via Lua (b)': b.rps,
      'idgate alone (d)': d.rps,
      'Apache + mod_auth_openidc, Redis (l)': l?.rps ?? null,
      'Apache + mod_auth_openidc, shm (m)': m?.rps ?? null,
      'Apache proxy, no auth (k)': k?.rps ?? null,
    };
    notes.ratios_per_round = Object.fromEntries([...pairRatios].map(([key, list]) => [key, list.map((x) => Number(x.toFixed(3)))]));
    notes.summary = `session checks/s: idgate via SPOE ${perSecond(g)}, via Lua ${perSecond(b)}, alone ${perSecond(d)}; Apache + mod_auth_openidc with Redis ${perSecond(l)}, with shm ${perSecond(m)} (Apache's proxy alone: ${perSecond(k)})`;
    write(command, results, ratios, notes, kinds, Math.round((Date.now() - started) / 1000));
  } finally {
    await Promise.all(extra.map((p) => p.stop()));
    await peer?.stop();
    await nullAuth?.close();
    await stack.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** A session with the peer: a real sign-in through it (redirects followed, the IdP's form submitted); its cookie. */
async function peerSession(url: string): Promise<string> {
  const browser = new Browser({}, navigationFetch);
  const landed = await signIn(browser, url, 'alice');
  if (landed.res.status !== 200) throw new Error(`sign-in through the peer ended with ${landed.res.status} at ${landed.url.href}`);
  const session = browser.cookie('127.0.0.1', 'mod_auth_openidc_session');
  if (!session) throw new Error('sign-in through the peer set no mod_auth_openidc_session cookie');
  return `mod_auth_openidc_session=${session}`;
}

/** The scenario's letter: "(g) HAProxy + ..." → "g". */
function letterOf(name: string): string {
  return /^\((\w)\)/.exec(name)![1]!;
}

/** The middle element by `key` (the upper one of an even count). */
function medianBy<T>(list: T[], key: (item: T) => number): T {
  return [...list].sort((x, y) => key(x) - key(y))[Math.floor(list.length / 2)]!;
}

function write(command: string, results: LoadResult[], ratios: Record<string, number>, notes: Record<string, unknown>, kinds: Map<string, ChartKind>, seconds: number): void {
  let commit = 'unknown';
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
  } catch {
    // not a git checkout
  }
  const date = new Date().toISOString();
  const machine = `${os.cpus().length} cores, ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, node ${process.version}`;
  const out = { date, commit, command, machine, seconds, scenarios: results, ratios, ...notes };
  fs.writeFileSync(path.join(REPO_ROOT, 'bench/results.json'), `${JSON.stringify(out, null, 2)}\n`);
  const table = [
    `### ${date.slice(0, 16).replace('T', ' ')} UTC, commit ${commit}`,
    '',
    `Machine: ${machine}. Load generator, HAProxy (one process, 2 threads), upstream, Redis, idgate (and Apache, for its own scenarios) share the cores; idgate writes its audit lines to a file.`,
    `Command: \`${command}\` (${seconds} s; wrk -t1 -c32, ${DURATION} s a scenario after a 1 s warm-up; idgate's scenarios and their ceilings in pairs, ${ROUNDS} rounds of ${PAIR_DURATION} s runs, the order within a pair reversed every other round; a ratio to a ceiling is the median of its per-round ratios, and the table keeps the median run of each).`,
    '',
    '| scenario | req/s | p50 ms | p99 ms | errors | idgate RSS MB |',
    '|---|---|---|---|---|---|',
    ...results.map((r) => `| ${r.name} | ${r.rps.toLocaleString('en-US')} | ${r.p50_ms} | ${r.p99_ms} | ${r.errors} | ${Number.isNaN(r.rss_mb) ? '-' : r.rss_mb} |`),
    '',
    `- ${notes.summary as string}`,
    ...(notes.peer_skipped ? [`- the peer was skipped: ${notes.peer_skipped as string}`] : []),
    ...Object.entries(ratios).map(([k, v]) => `- ${k}: **${v}**`),
    ...Object.entries((notes.ratios_per_round as Record<string, number[]>) ?? {}).map(([k, v]) => `- ${k} round by round (the median above): ${v.join(', ')}`),
    ...Object.entries((notes.targets as Record<string, boolean | string>) ?? {}).map(([k, v]) => `- target ${k}: ${v === true ? 'met' : v === false ? 'NOT met' : v}`),
    '',
  ].join('\n');
  // The chart: every scenario measured over HTTP (policy matching runs in-process, in another unit).
  const charted = results.filter((r) => kinds.has(r.name)).map((r) => ({ name: r.name, rps: r.rps, p99_ms: r.p99_ms, kind: kinds.get(r.name)! }));
  fs.writeFileSync(path.join(REPO_ROOT, 'bench/results.svg'), renderChart(charted, { title: 'idgate: make bench', subtitle: `${date.slice(0, 16).replace('T', ' ')} UTC, commit ${commit}; ${machine}; wrk -c32, ${DURATION} s a scenario` }));
  // On top, what a reader looks for first: the targets of this run and the absolute rates beside the peer's.
  const latest = [
    `## Latest run: ${date.slice(0, 16).replace('T', ' ')} UTC, commit ${commit}`,
    '',
    `\`${command}\` on ${machine}; the whole table is the last one under Runs.`,
    '',
    ...Object.entries((notes.targets as Record<string, boolean | string>) ?? {}).map(([k, v]) => `- target ${k}: ${v === true ? 'met' : v === false ? '**NOT met**' : v}`),
    `- ${notes.summary as string}`,
    ...Object.entries((notes.ratios_per_round as Record<string, number[]>) ?? {}).map(([k, v]) => {
      const name = Object.keys(ratios).find((r) => r.startsWith(`${k} `)) ?? k;
      return `- ${name}: **${ratios[name] ?? '-'}**, round by round ${v.join(', ')}`;
    }),
  ].join('\n');
  const resultsMd = path.join(REPO_ROOT, 'bench/RESULTS.md');
  const doc = fs.existsSync(resultsMd) ? fs.readFileSync(resultsMd, 'utf8') : NEW_RESULTS_FILE;
  fs.writeFileSync(resultsMd, withRun(doc, latest, table));
  log(`\n${table}\nwrote bench/results.json and bench/results.svg, and bench/RESULTS.md (the latest run on top, its table appended)`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
