// `make bench`: starts the whole stack on free ports and measures, in one run and side by side:
//   (a) HAProxy → upstream, no auth (the shipped config with the check taken out)
//   (b) HAProxy + idgate (Lua check) with a valid session cookie
//   (c) HAProxy + idgate with a valid bearer JWT
//   (d) idgate's /auth directly, session cookie
//   (e) HAProxy's native jwt_verify on the same JWT (no idgate), the in-proxy reference
//   (g), (h) HAProxy + idgate's SPOE agent, session cookie and bearer JWT
//   (i) HAProxy + idgate's SPOE agent code answering a constant allow, no check: the transport's ceiling
// plus (b) at half its maximum rate, idgate with 100k sessions in Redis, and policy matching with 500
// rules. Writes bench/results.json and appends a dated table with the command to bench/RESULTS.md.
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import signature from 'cookie-signature';
import { startHaproxy, haproxyConfigPath } from '../stack/haproxy.js';
import { renderHaproxyTemplate } from '../service/src/transports/haproxy-config.js';
import { listenOnAnyPort, REPO_ROOT, startOnFreePort, type ManagedProcess } from '../stack/processes.js';
import { startStack, type Stack } from '../stack/stack.js';
import { Browser, signIn } from '../test/support/browser.js';
import { sealSession, sessionKey } from '../service/src/session/session-store.js';
import { createSpoeAgent } from '../service/src/transports/spoe.js';
import { checkOutcome, type WireIdentity } from '../service/src/transports/check-wire.js';
import { loadConfig } from '../service/src/config.js';
import { runAtRate, runWrk, rssMb, type LoadResult } from './load.js';
import { benchPolicyMatching } from './policy-matching.js';

const DURATION = Number(process.env.BENCH_SECONDS ?? 8);
/** The constant agent's allow (scenario "SPOE transport alone"): an identity like a real session's. */
const CONSTANT_IDENTITY: WireIdentity = { user: 'alice', subject: 'alice', issuer: undefined, email: undefined, groups: 'engineering', groupsTruncated: false, scopes: undefined, scopesTruncated: false, client: undefined, backend: undefined };

function log(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** The shipped haproxy.cfg, rendered (lua-load names haproxy-conf/idgate.lua by its full path). */
function shippedConfig(): string {
  return renderHaproxyTemplate(fs.readFileSync(haproxyConfigPath(), 'utf8'), 'lua');
}

/** The shipped haproxy.cfg with the identity check removed: the passthrough baseline. */
function passthroughConfig(dir: string): string {
  const text = shippedConfig();
  const out = text
    .split('\n')
    .filter((l) => !/http-request lua\.idgate-check|http-request return status 503|http-response lua\.idgate-set-cookies/.test(l))
    .join('\n');
  return writeConfig(dir, 'passthrough.cfg', out);
}

/** The shipped haproxy.cfg with the check replaced by HAProxy's own jwt_verify (RS256, a PEM key). */
function nativeJwtConfig(dir: string, pemFile: string): string {
  const text = shippedConfig();
  const out = text
    .split('\n')
    .map((l) =>
      /http-request lua\.idgate-check/.test(l)
        ? `    http-request deny deny_status 401 unless { http_auth_bearer,jwt_header_query('$.alg') -m str RS256 } { http_auth_bearer,jwt_verify("RS256","${pemFile}") -m int 1 }`
        : l,
    )
    .filter((l) => !/http-request return status 503|http-response lua\.idgate-set-cookies/.test(l))
    .join('\n');
  return writeConfig(dir, 'native-jwt.cfg', out);
}

function writeConfig(dir: string, name: string, text: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
}

async function clientCredentials(issuer: string): Promise<string> {
  const res = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from('demo-bot:demo-bot-secret').toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: 'grant_type=client_credentials&scope=api%3Aread',
  });
  return ((await res.json()) as { access_token: string }).access_token;
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
  return wrk.format("GET", "/auth", { ["Cookie"] = cookies[i], ["X-Forwarded-Method"] = "GET", ["X-Forwarded-Host"] = "127.0.0.1", ["X-Forwarded-Uri"] = "/" })
end
`,
  );
  return script;
}

async function main(): Promise<void> {
  const command = process.env.BENCH_COMMAND ?? 'node dist/bench/run.js';
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'idgate-bench-'));
  const started = Date.now();
  log('starting Redis, the IdP, the upstreams, idgate and HAProxy...');
  // idgate writes its audit lines to a file, as in production, not through a pipe into this process.
  const stack = await startStack({ idgateEnv: { IDGATE_LOG_FILE: path.join(dir, 'idgate.log') } });
  const extra: ManagedProcess[] = [];
  let constantAgent: net.Server | undefined;
  const results: LoadResult[] = [];
  const notes: Record<string, unknown> = {};
  try {
    const idgatePid = stack.processes.idgate!.child.pid;
    const browser = new Browser();
    await signIn(browser, `${stack.frontUrl}/`, 'alice');
    const cookie = browser.cookieHeader(new URL(stack.frontUrl))!;
    const token = await clientCredentials(stack.issuer);
    const pem = path.join(dir, 'issuer.pem');
    fs.writeFileSync(pem, await issuerPem(stack.issuer, JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()).kid as string));

    /** One more HAProxy before the stack's, on a port it finds free (another if its was taken); resolves with that port. */
    const startExtraHaproxy = async (options: Omit<Parameters<typeof startHaproxy>[0], 'frontPort' | 'idgatePort' | 'upstreamPort' | 'canaryPort'>) => {
      const { port, started } = await startOnFreePort((frontPort) =>
        startHaproxy({ frontPort, idgatePort: stack.ports.idgate[0]!, upstreamPort: stack.ports.upstream, canaryPort: stack.ports.canary, ...options }),
      );
      extra.push(started);
      return port;
    };
    const passthroughPort = await startExtraHaproxy({ configPath: passthroughConfig(dir) });
    const spoePort = await startExtraHaproxy({ spoePort: stack.ports.spoe[0]!, mode: 'spoe' });
    // The agent's framing with a constant answer, in this process: what SPOE costs without a check.
    // With the bounds idgate's own agent runs with (the stack's settings).
    const { config } = loadConfig({ ...process.env, ...stack.env });
    constantAgent = createSpoeAgent({
      // An allow names the path it decided on (here: the path as sent; the bench asks for "/").
      check: async (input) => checkOutcome('allow', 200, 'constant', { identity: CONSTANT_IDENTITY, requestId: 'r', path: (input.pathq ?? '/').split('?')[0]! }),
      trustedPeers: config!.trustedProxies,
      maxConnections: config!.spoeMaxConnections,
      maxInFlight: config!.spoeMaxInFlight,
    });
    const constantAgentPort = await listenOnAnyPort(constantAgent);
    const ceilingPort = await startExtraHaproxy({ spoePort: constantAgentPort, mode: 'spoe' });
    const nativePort = await startExtraHaproxy({ configPath: nativeJwtConfig(dir, pem) });

    const scenario = async (name: string, options: Parameters<typeof runWrk>[0]) => {
      log(`${name}...`);
      // A short warm-up: JIT, connection pools, caches.
      await runWrk({ ...options, duration: 1 });
      const r = await runWrk({ ...options, duration: DURATION });
      const result = { name, ...r, rss_mb: rssMb(idgatePid) };
      results.push(result);
      log(`  ${result.rps} req/s, p50 ${result.p50_ms} ms, p99 ${result.p99_ms} ms, errors ${result.errors}, idgate RSS ${result.rss_mb} MB`);
      return result;
    };
    const a = await scenario('(a) HAProxy -> upstream, no auth', { url: `http://127.0.0.1:${passthroughPort}/` });
    const b = await scenario('(b) HAProxy + idgate (Lua), session cookie', { url: `${stack.frontUrl}/`, headers: { Cookie: cookie } });
    const c = await scenario('(c) HAProxy + idgate (Lua), bearer JWT', { url: `${stack.frontUrl}/api/hello`, headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' } });
    const d = await scenario('(d) idgate /auth directly, session cookie', { url: `${stack.idgateUrls[0]}/auth`, headers: { Cookie: cookie, 'X-Forwarded-Method': 'GET', 'X-Forwarded-Host': `127.0.0.1:${stack.ports.front}`, 'X-Forwarded-Uri': '/' } });
    const e = await scenario('(e) HAProxy native jwt_verify, same JWT (no idgate)', { url: `http://127.0.0.1:${nativePort}/api/hello`, headers: { Authorization: `Bearer ${token}` } });
    const g = await scenario('(g) HAProxy + idgate (SPOE), session cookie', { url: `http://127.0.0.1:${spoePort}/`, headers: { Cookie: cookie } });
    const h = await scenario('(h) HAProxy + idgate (SPOE), bearer JWT', { url: `http://127.0.0.1:${spoePort}/api/hello`, headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' } });

    const i = await scenario("(i) HAProxy + SPOE, constant-answer agent (no check: the transport's ceiling)", { url: `http://127.0.0.1:${ceilingPort}/` });

    log('(b) at half its maximum rate...');
    const half = await runAtRate({ url: `${stack.frontUrl}/`, headers: { Cookie: cookie }, rate: Math.max(1, Math.round(b.rps / 2)), duration: DURATION, connections: 32 });
    results.push({ name: `(b) at 50% of its max rate (${Math.round(b.rps / 2)} req/s, autocannon)`, ...half, rss_mb: rssMb(idgatePid) });
    log(`  p50 ${half.p50_ms} ms, p99 ${half.p99_ms} ms, errors ${half.errors}`);

    log('100k sessions in Redis, checks spread over all of them...');
    const script = await plantSessions(stack, dir, 100_000);
    await scenario('(f) idgate /auth directly, 100k distinct sessions', { url: `${stack.idgateUrls[0]}/auth`, script });

    for (const rules of [50, 500]) {
      log(`policy matching with ${rules} rules...`);
      // In-process: the RSS column is idgate's, and no idgate runs here.
      results.push({ ...benchPolicyMatching(rules, 100_000), rss_mb: NaN });
    }

    const ratio = (x: number, y: number) => Number((x / y).toFixed(3));
    const ratios = {
      'b/a session via HAProxy+idgate vs passthrough': ratio(b.rps, a.rps),
      'c/a bearer via HAProxy+idgate vs passthrough': ratio(c.rps, a.rps),
      'c/e bearer via idgate vs HAProxy native jwt_verify': ratio(c.rps, e.rps),
      'd/a idgate alone vs passthrough': ratio(d.rps, a.rps),
      'g/a session via HAProxy+SPOE vs passthrough': ratio(g.rps, a.rps),
      'h/a bearer via HAProxy+SPOE vs passthrough': ratio(h.rps, a.rps),
      'i/a SPOE without a check vs passthrough': ratio(i.rps, a.rps),
    };
    notes.targets = {
      'b/a >= 0.5': ratios['b/a session via HAProxy+idgate vs passthrough'] >= 0.5,
      'c/a >= 0.5': ratios['c/a bearer via HAProxy+idgate vs passthrough'] >= 0.5,
      'p99 of (b) at 50% rate < 5 ms': half.p99_ms < 5,
      'idgate RSS < 150 MB': results.every((r) => !(r.rss_mb >= 150)),
      'SPOE g/a >= 0.8': ratios['g/a session via HAProxy+SPOE vs passthrough'] >= 0.8,
      'SPOE h/a >= 0.8': ratios['h/a bearer via HAProxy+SPOE vs passthrough'] >= 0.8,
    };
    write(command, results, ratios, notes, Math.round((Date.now() - started) / 1000));
  } finally {
    await Promise.all(extra.map((p) => p.stop()));
    constantAgent?.close();
    await stack.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function write(command: string, results: LoadResult[], ratios: Record<string, number>, notes: Record<string, unknown>, seconds: number): void {
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
    `## ${date.slice(0, 16).replace('T', ' ')} UTC, commit ${commit}`,
    '',
    `Machine: ${machine}. Load generator, HAProxy (one process, 2 threads), upstream, Redis and idgate share the cores; idgate writes its audit lines to a file.`,
    `Command: \`${command}\` (${seconds} s; wrk -t1 -c32, ${DURATION} s a scenario after a 1 s warm-up).`,
    '',
    '| scenario | req/s | p50 ms | p99 ms | errors | idgate RSS MB |',
    '|---|---|---|---|---|---|',
    ...results.map((r) => `| ${r.name} | ${r.rps.toLocaleString('en-US')} | ${r.p50_ms} | ${r.p99_ms} | ${r.errors} | ${Number.isNaN(r.rss_mb) ? '-' : r.rss_mb} |`),
    '',
    ...Object.entries(ratios).map(([k, v]) => `- ${k}: **${v}**`),
    ...Object.entries((notes.targets as Record<string, boolean>) ?? {}).map(([k, v]) => `- target ${k}: ${v ? 'met' : 'NOT met'}`),
    '',
  ].join('\n');
  const resultsMd = path.join(REPO_ROOT, 'bench/RESULTS.md');
  if (!fs.existsSync(resultsMd)) fs.writeFileSync(resultsMd, '# Benchmark results\n\nEach run of `make bench` appends a section: the date, the commit, the machine, the exact command, the figures.\n\n');
  fs.appendFileSync(resultsMd, `${table}\n`);
  log(`\n${table}\nwrote bench/results.json and appended to bench/RESULTS.md`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
