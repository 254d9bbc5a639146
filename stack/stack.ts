// The whole product on one machine: Redis, the local IdP, the sample upstream, idgate replica(s) and HAProxy.
// `make demo` runs it with the default ports (docs/reference.md), `make demo-ha` with Redis Sentinel and two HAProxy front
// ends; the end-to-end tests run it with free ports. Every process is a child of this one and is stopped
// by `stop()` (or by Ctrl-C in the demo). One file, a little over 400 lines: the order in which the parts
// start and stop, and the ports each hands the next, read best in one place.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { startHaproxy, testCheckSecret } from './haproxy.js';
import type { IdpProfile } from './idp.js';
import { testIdpProfile } from './test-idp-profile.js';
import { freePort, idpListening, loggedPort, REPO_ROOT, startOnFreePort, startProcess, upstreamListening, waitForFileReport, waitForPort, waitForReport, type ManagedProcess } from './processes.js';
import { waitUntil } from './wait.js';
import { advanceChildClock, TEST_CLOCK_OFFSET_ENV } from './test-clock.js';
import { removeRedisDir, startRedisListening, tempRedisDir } from './redis.js';
import { startSentinelSet, type SentinelSet } from './redis-sentinel.js';

export { REPO_ROOT };
/** Compiled entry points (make build). */
const DIST = path.join(REPO_ROOT, 'dist');

export interface StackPorts {
  front: number;
  /** HAProxy B (haproxyFronts: 2). */
  frontB?: number;
  idgate: number[];
  idp: number;
  /** The Redis server; with redis: 'sentinel', the first primary. */
  redis: number;
  /** redis: 'sentinel': the first replica, and the three sentinels. */
  redisReplica?: number;
  sentinels?: number[];
  upstream: number;
  /** The canary pool's upstream (policy/demo.yaml sends admins there). */
  canary: number;
  /** Each idgate replica's SPOE agent. */
  spoe: number[];
}

export interface StackOptions {
  /**
   * Fixed ports (the demo); absent: the Node children (IdP, upstreams, idgate and its SPOE agent) bind
   * port 0 and report the port they got; Redis (and the Sentinel set's nodes) and HAProxy, which cannot,
   * start on picked ports and again on others when one was taken.
   */
  ports?: Partial<StackPorts>;
  /** How many idgate replicas (default 1); HAProxy balances the first two, tests reach the others directly. */
  idgateReplicas?: number;
  /** Extra IDGATE_* settings for every replica. */
  idgateEnv?: Record<string, string>;
  /** test: idgate's clock is one the test moves (advanceIdgateClock; test-clock.ts). Default: the machine's. */
  idgateClock?: 'system' | 'test';
  /** Extra node flags for idgate (e.g. --cpu-prof, which NODE_OPTIONS does not allow). */
  idgateNodeArgs?: string[];
  /** Extra IDP_* settings for the local IdP (e.g. IDP_ACCESS_TOKEN_TTL). */
  idpEnv?: Record<string, string>;
  /** Told the port the IdP bound, before any idgate starts (a test's proxy in front of it, named by IDP_ISSUER). */
  onIdpPort?: (port: number) => void;
  /**
   * How the local IdP answers: demo (default) or okta (`make demo IDP=okta`, stack/idp.ts IdpOptions.profile).
   * okta also sets idgate up the way docs/okta.md does: no `groups` scope (the groups claim comes from
   * userinfo), and bearer tokens checked locally (JWTs) or by introspection (opaque-bot's opaque tokens).
   * Absent: IDGATE_TEST_IDP_PROFILE's (stack/test-idp-profile.ts), demo when that is unset.
   */
  idpProfile?: IdpProfile;
  /**
   * Start each replica's SPOE agent on ports.spoe (default true: IDGATE_SPOE_LISTEN set per replica);
   * false leaves IDGATE_SPOE_LISTEN unset, idgate's default: no agent.
   */
  spoeAgent?: boolean;
  /** Start HAProxy (default true). */
  haproxy?: boolean;
  /** How HAProxy asks idgate: lua (the HTTP check, default) or spoe. */
  haproxyMode?: 'lua' | 'spoe';
  echo?: boolean;
  /**
   * Where Redis keeps its append-only file (the demo: .run/redis, kept across runs; with Sentinel, a
   * directory per node in it); absent: a temp dir that stop() removes.
   */
  redisDir?: string;
  /**
   * single (default): one Redis server, IDGATE_REDIS_URL. sentinel: a primary, a replica and three
   * sentinels (stack/redis-sentinel.ts), found through IDGATE_REDIS_SENTINELS; `sentinel` fails it over.
   * external: the caller runs Redis and names it in idgateEnv (the fault tests' Redis Cluster).
   */
  redis?: 'single' | 'sentinel' | 'external';
  /** HAProxy front ends (default 1); 2 adds B on ports.frontB, balancing the same two replicas as A. */
  haproxyFronts?: 1 | 2;
}

export interface Stack {
  readonly ports: StackPorts;
  readonly frontUrl: string;
  /** Every HAProxy front end, A (frontUrl, the public URL) first. */
  readonly frontUrls: string[];
  readonly issuer: string;
  /** The Sentinel set (redis: 'sentinel'). */
  readonly sentinel: SentinelSet | undefined;
  readonly idgateUrls: string[];
  readonly env: Record<string, string>;
  /**
   * What a test asking a replica's /auth directly sends to be HAProxy: the check secret header (the newest
   * of IDGATE_CHECK_SECRETS). Without it idgate answers 403 untrusted_peer.
   */
  readonly checkHeaders: Record<string, string>;
  /** That secret alone, for another HAProxy pointed at these replicas (HaproxyOptions.checkSecret). */
  readonly checkSecret: string;
  readonly processes: Record<string, ManagedProcess>;
  /** Moves every idgate replica's clock forward (idgateClock: 'test'); resolves once all have moved. */
  advanceIdgateClock(ms: number): Promise<void>;
  /** Starts idgate replica `index` again after stopIdgate (same port and settings). */
  startIdgate(index: number): Promise<ManagedProcess>;
  /** Stops replica `index` as an orchestrator does: SIGTERM, and the time its graceful shutdown takes. */
  stopIdgate(index: number): Promise<void>;
  /** Stops the IdP; `startIdp` brings up a fresh one (same port and issuer, new keys, no sessions or grants). */
  stopIdp(): Promise<void>;
  /**
   * Stops Redis (SIGTERM: it writes its AOF out); `startRedis` starts it again on the same port and data
   * dir, sessions kept. Single Redis only (Sentinel: use `sentinel`).
   */
  stopRedis(): Promise<void>;
  startRedis(): Promise<void>;
  startIdp(): Promise<void>;
  stop(): Promise<void>;
}

export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const given = options.ports ?? {};
  const twoFronts = options.haproxyFronts === 2;
  if (given.front !== undefined && (!twoFronts || given.frontB !== undefined)) return startStackOn(options);
  // The front ports are the one thing picked before its user binds it: the IdP's redirect URIs and idgate's
  // public URL name it before HAProxy can start (its configuration needs idgate's ports). When HAProxy finds
  // one taken, the whole stack starts again on others (startOnFreePort).
  const { started } = await startOnFreePort(async (front) =>
    startStackOn({ ...options, ports: { ...given, front: given.front ?? front, frontB: twoFronts ? given.frontB ?? (await freePort()) : undefined } }),
  );
  return started;
}

async function startStackOn(options: StackOptions): Promise<Stack> {
  const replicas = options.idgateReplicas ?? 1;
  const redisMode = options.redis ?? 'single';
  const idpProfile = options.idpProfile ?? testIdpProfile();
  const given = options.ports ?? {};
  // idgate reports its ports in its info log lines (on stdout, or in IDGATE_LOG_FILE): above info, it cannot.
  const settings = { ...process.env, ...options.idgateEnv };
  const idgateLogFile = settings.IDGATE_LOG_FILE;
  const idgateReports = (settings.IDGATE_LOG_LEVEL ?? 'info').trim() === 'info';
  if ((given.idgate === undefined || given.spoe === undefined) && !idgateReports) {
    throw new Error('startStack: idgate tells the ports it bound in info log lines; with IDGATE_LOG_LEVEL above info, give ports.idgate and ports.spoe');
  }
  const unknown = () => Array.from({ length: replicas }, () => 0);
  // 0: not known yet. The Node children bind port 0 and the port they report replaces it; Redis and
  // HAProxy, whose ports are in their configuration, start on a picked port and again on another when
  // it was taken (startOnFreePort); with Sentinel, the set does the same for each node and sentinel.
  const ports: StackPorts = {
    front: given.front!,
    frontB: options.haproxyFronts === 2 ? given.frontB! : undefined,
    idgate: given.idgate ?? unknown(),
    idp: given.idp ?? 0,
    redis: given.redis ?? 0,
    redisReplica: redisMode === 'sentinel' ? given.redisReplica ?? 0 : undefined,
    sentinels: redisMode === 'sentinel' ? given.sentinels ?? [0, 0, 0] : undefined,
    upstream: given.upstream ?? 0,
    canary: given.canary ?? 0,
    spoe: given.spoe ?? unknown(),
  };
  const frontUrl = `http://127.0.0.1:${ports.front}`;
  const frontUrls = [ports.front, ...(ports.frontB === undefined ? [] : [ports.frontB])].map((port) => `http://127.0.0.1:${port}`);
  // The IdP's issuer names its port: known once it reports it (below), before any idgate starts.
  let issuer = '';
  const echo = options.echo ?? false;
  const processes: Record<string, ManagedProcess> = {};
  let idgateClockOffsetMs = 0;
  const started: ManagedProcess[] = [];
  const track = (p: ManagedProcess) => {
    processes[p.name] = p;
    started.push(p);
    return p;
  };

  const env: Record<string, string> = {
    IDGATE_CLIENT_ID: 'idgate',
    IDGATE_CLIENT_SECRET: 'idgate-secret',
    IDGATE_PUBLIC_URL: frontUrl,
    // Single: IDGATE_REDIS_URL, once Redis listens; Sentinel: IDGATE_REDIS_SENTINELS and its name, once the set is up (below).
    IDGATE_COOKIE_SECRETS: crypto.randomBytes(32).toString('base64url'),
    // A fresh one per start, as an install has one of its own: HAProxy sends it, idgate requires it.
    IDGATE_CHECK_SECRETS: testCheckSecret(),
    IDGATE_SCOPES: 'openid profile email groups offline_access',
    IDGATE_JWT_AUDIENCES: 'api://idgate',
    IDGATE_INSECURE_HTTP: '1',
    IDGATE_POLICY_FILE: path.join(REPO_ROOT, 'policy/demo.yaml'),
    // V8 grows its heap under a high request rate and keeps it; smaller semi-spaces and a capped old
    // space keep idgate's RSS bounded at the same throughput (bench/RESULTS.md). Its live data is
    // bounded by its caches (tens of MB). Recommended in production too.
    NODE_OPTIONS: '--max-semi-space-size=4 --max-old-space-size=128',
    // Front B: the public URL stays A's (in production both fronts serve one name), so a page on B that
    // needs a sign-in is signed in at A and sent back to B, whose host must be an allowed return host. The
    // IdP needs no callback for B. The session cookie is for 127.0.0.1, whatever the port: B sees it too.
    ...(ports.frontB === undefined ? {} : { IDGATE_ALLOWED_REDIRECT_HOSTS: `127.0.0.1:${ports.frontB}` }),
    ...(idpProfile === 'okta' ? { IDGATE_SCOPES: 'openid profile email offline_access' } : {}),
    ...options.idgateEnv,
  };

  const redisDir = redisMode === 'single' ? options.redisDir ?? tempRedisDir() : undefined;
  let sentinelStarting: Promise<SentinelSet> | undefined;
  let sentinel: SentinelSet | undefined;
  const stopAllStarted = async () => {
    // Everything goes at once, so no replica needs its drain: a second SIGTERM ends idgate without it.
    for (const p of started) {
      if (p.name.startsWith('idgate') && p.child.exitCode === null && p.child.signalCode === null) {
        p.child.kill('SIGTERM');
        setTimeout(() => p.child.kill('SIGTERM'), 200).unref();
      }
    }
    await Promise.all(started.reverse().map((p) => p.stop()));
    await (await sentinelStarting?.catch(() => undefined))?.stop();
    fs.rmSync(path.dirname(keysFile), { recursive: true, force: true });
    if (redisDir !== undefined && options.redisDir === undefined) removeRedisDir(redisDir);
  };

  const startIdgate = async (index: number): Promise<ManagedProcess> => {
    // A restart binds the ports the replica reported at its first start: HAProxy's configuration names them.
    const replicaEnv: NodeJS.ProcessEnv = {
      ...process.env,
      ...env,
      IDGATE_LISTEN: `127.0.0.1:${ports.idgate[index]}`,
      IDGATE_SPOE_LISTEN: `127.0.0.1:${ports.spoe[index]}`,
    };
    if (options.spoeAgent === false) delete replicaEnv.IDGATE_SPOE_LISTEN;
    const testClock = options.idgateClock === 'test';
    if (testClock) replicaEnv[TEST_CLOCK_OFFSET_ENV] = String(idgateClockOffsetMs);
    const clockArgs = testClock ? ['--import', pathToFileURL(path.join(DIST, 'stack/test-clock.js')).href] : [];
    // Replicas start one after another: what the log file gains from here on is this one's.
    const logFrom = idgateLogFile && fs.existsSync(idgateLogFile) ? fs.statSync(idgateLogFile).size : 0;
    const p = track(
      startProcess(index === 0 ? 'idgate' : `idgate${index + 1}`, process.execPath, [...clockArgs, ...(options.idgateNodeArgs ?? []), path.join(DIST, 'service/src/cli.js'), 'serve'], {
        env: replicaEnv,
        echo,
        ipc: testClock,
      }),
    );
    if (idgateReports) {
      const report = (prefix: string) => (idgateLogFile ? waitForFileReport(p, idgateLogFile, logFrom, loggedPort(prefix)) : waitForReport(p, loggedPort(prefix)));
      ports.idgate[index] = await report('idgate listening on ');
      if (replicaEnv.IDGATE_SPOE_LISTEN !== undefined) ports.spoe[index] = await report('SPOE agent listening on ');
    } else {
      await waitForPort(ports.idgate[index]!).catch((err: Error) => {
        throw new Error(`${err.message}\n${p.output()}`);
      });
    }
    const port = ports.idgate[index]!;
    // Ready (Redis reached, IdP metadata and keys loaded) before HAProxy's health checks look at it.
    const readyz = `http://127.0.0.1:${port}/readyz`;
    await waitUntil(`${readyz} ready`, async () => (await fetch(readyz)).ok, { timeoutMs: 60_000, everyMs: 100 });
    return p;
  };

  // The IdP keeps its keys across restarts (stopIdp/startIdp), as a real IdP does.
  const keysFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'idgate-idp-')), 'keys.json');
  // The first start binds port 0 (or the demo's port) and reports its issuer; a restart keeps both.
  const startIdp = async () => {
    const p = track(
      startProcess('idp', process.execPath, [path.join(DIST, 'stack/idp-main.js')], {
        env: {
          ...process.env,
          IDP_PORT: String(ports.idp),
          ...(issuer ? { IDP_ISSUER: issuer } : {}),
          IDP_REDIRECT_URIS: `${frontUrl}/_auth/callback`,
          IDP_POST_LOGOUT_REDIRECT_URIS: `${frontUrl}/_auth/logged-out`,
          IDP_BACKCHANNEL_LOGOUT_URI: `${frontUrl}/_auth/backchannel-logout`,
          IDP_FRONTCHANNEL_LOGOUT_URI: `${frontUrl}/_auth/frontchannel-logout`,
          IDP_KEYS_FILE: keysFile,
          IDP_PROFILE: idpProfile,
          ...options.idpEnv,
        },
        echo,
      }),
    );
    ({ issuer, port: ports.idp } = await waitForReport(p, idpListening));
    options.onIdpPort?.(ports.idp);
  };

  const startRedis = async (port = ports.redis) => {
    if (redisDir === undefined) throw new Error('startRedis/stopRedis: a single Redis only; with Sentinel, use stack.sentinel');
    track(await startRedisListening({ port, dir: redisDir, echo }));
    ports.redis = port;
  };
  const startFirstRedis = async () => {
    if (ports.redis === 0) await startOnFreePort((port) => startRedis(port));
    else await startRedis();
    // A caller's idgateEnv wins, as it does for every setting.
    env.IDGATE_REDIS_URL = options.idgateEnv?.IDGATE_REDIS_URL ?? `redis://127.0.0.1:${ports.redis}`;
  };

  try {
    if (redisMode === 'sentinel') {
      sentinelStarting = startSentinelSet({
        // Fixed ports (the demo-ha); absent, the set starts each node and sentinel on a port it finds free.
        ports: given.redis === undefined ? undefined : { primary: ports.redis, replica: ports.redisReplica!, sentinels: ports.sentinels! },
        dir: options.redisDir,
        echo,
      });
    }
    const startUpstream = async (name: 'main' | 'canary', port: number) => {
      const env = { ...process.env, UPSTREAM_PORT: String(port), UPSTREAM_NAME: name };
      const p = track(startProcess(name === 'main' ? 'upstream' : 'canary', process.execPath, [path.join(DIST, 'stack/upstream-main.js')], { env, echo }));
      return waitForReport(p, upstreamListening);
    };
    [sentinel, , , ports.upstream, ports.canary] = await Promise.all([
      sentinelStarting,
      redisMode === 'single' ? startFirstRedis() : undefined,
      startIdp(),
      startUpstream('main', ports.upstream),
      startUpstream('canary', ports.canary),
    ]);
    if (sentinel) {
      [ports.redis, ports.redisReplica] = sentinel.dataPorts;
      ports.sentinels = [...sentinel.sentinelPorts];
    }
    // A caller's idgateEnv wins, as it does for every setting.
    env.IDGATE_ISSUER = options.idgateEnv?.IDGATE_ISSUER ?? issuer;
    // Okta: JWTs from a custom server, opaque tokens from the org server; here one issuer serves both.
    if (idpProfile === 'okta' && options.idgateEnv?.IDGATE_BEARER_ISSUERS === undefined) {
      env.IDGATE_BEARER_ISSUERS = JSON.stringify([{ issuer, audiences: ['api://idgate'], jwt: true, introspection: true }]);
    }
    // A caller's idgateEnv wins over the set's settings.
    for (const [name, value] of Object.entries(sentinel?.env ?? {})) env[name] ??= value;
    for (let i = 0; i < ports.idgate.length; i++) await startIdgate(i);
    if (options.haproxy ?? true) {
      const haproxy = {
        idgatePort: ports.idgate[0]!,
        idgatePort2: ports.idgate[1],
        upstreamPort: ports.upstream,
        canaryPort: ports.canary,
        spoePort: ports.spoe[0]!,
        spoePort2: ports.spoe[1],
        mode: options.haproxyMode,
        // The newest of idgate's secrets, as an install's HAProxy sends it.
        checkSecret: newestCheckSecret(env),
        echo,
      };
      track(await startHaproxy({ ...haproxy, frontPort: ports.front }));
      if (ports.frontB !== undefined) track(await startHaproxy({ ...haproxy, frontPort: ports.frontB, name: 'haproxy-b' }));
    }
  } catch (err) {
    const logs = started.map((p) => `--- ${p.name}\n${p.output().slice(-3000)}`).join('\n');
    await stopAllStarted();
    throw new Error(`${(err as Error).message}\n${logs}`);
  }

  return {
    ports,
    frontUrl,
    frontUrls,
    issuer,
    sentinel,
    idgateUrls: ports.idgate.map((port) => `http://127.0.0.1:${port}`),
    env,
    checkHeaders: { 'X-Idgate-Check-Secret': newestCheckSecret(env) },
    checkSecret: newestCheckSecret(env),
    processes,
    async advanceIdgateClock(ms) {
      if (options.idgateClock !== 'test') throw new Error("advanceIdgateClock: start the stack with idgateClock: 'test'");
      idgateClockOffsetMs += ms;
      const running = Object.values(processes).filter((p) => p.name.startsWith('idgate') && p.child.exitCode === null && p.child.signalCode === null);
      await Promise.all(running.map((p) => advanceChildClock(p, ms)));
    },
    startIdgate,
    async stopRedis() {
      if (redisDir === undefined) throw new Error('stopRedis: a single Redis only; with Sentinel, use stack.sentinel');
      await processes.redis?.stop();
    },
    async startRedis() {
      await startRedis();
    },
    async stopIdp() {
      await processes.idp?.stop();
    },
    async startIdp() {
      await startIdp();
    },
    async stopIdgate(index) {
      // Room for the drain (IDGATE_SHUTDOWN_DRAIN_MS) and the in-flight bound before SIGKILL.
      const drainMs = Number(env.IDGATE_SHUTDOWN_DRAIN_MS ?? 3000);
      await processes[index === 0 ? 'idgate' : `idgate${index + 1}`]?.stop(drainMs + 7000);
    },
    stop: stopAllStarted,
  };
}

/** The first of IDGATE_CHECK_SECRETS (a caller's idgateEnv may give several, newest first, or an empty one). */
function newestCheckSecret(env: Record<string, string>): string {
  return (env.IDGATE_CHECK_SECRETS ?? '').split(',')[0]!.trim();
}

/** Ctrl-C or SIGTERM stops every process of the stack (the demos), then exits. */
export function stopOnSignals(stack: Stack): void {
  const stop = async () => {
    process.stdout.write('\nstopping...\n');
    await stack.stop();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
}
