// idgate in this process, for supertest: createIdgate, as main.ts uses it, with log lines captured.
import fs from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import { createLogger } from '../../service/src/audit.js';
import { loadConfig, type Config } from '../../service/src/config.js';
import { loadPolicyFile } from '../../service/src/policy/policy-file.js';
import type { Policy } from '../../service/src/policy/policy.js';
import { idpListening, REPO_ROOT, startProcess, waitForReport } from '../../stack/processes.js';
import { startFreeTempRedis } from '../../stack/redis.js';
import { testIdpEnv } from '../../stack/test-idp-profile.js';
import type { SpoeAgent } from '../../service/src/transports/spoe-agent.js';
import { createIdgate, type Idgate } from '../../service/src/idgate.js';
import type { Metrics } from '../../service/src/metrics.js';
import type { RedisClient } from '../../service/src/redis.js';
import type { Clock } from '../../service/src/clock.js';

export interface InProcessIdgate {
  readonly server: http.Server;
  readonly config: Config;
  readonly metrics: Metrics;
  readonly logLines: string[];
  /** The SPOE agent (option `spoe`), not listening yet: `spoeAgent.listen(port)`. */
  readonly spoeAgent?: SpoeAgent;
  /** Its Redis connection, for tests that wait on its events. */
  readonly redis: RedisClient;
}

const running: Idgate[] = [];

export interface RedisAndIdp {
  readonly redisPort: number;
  readonly issuer: string;
  stop(): Promise<void>;
}

/**
 * A real Redis (the shipped redis/redis.conf, its data in a temp dir removed at stop) and the real local IdP on free ports, for tests that run
 * idgate in-process. `idpEnv` adds IDP_* settings (redirect URIs and the like).
 */
export async function startRedisAndIdp(idpEnv: Record<string, string>): Promise<RedisAndIdp> {
  // The IdP binds port 0 and reports its issuer; Redis cannot, so it is retried on another port if its was taken.
  const idp = startProcess('idp', process.execPath, [path.join(REPO_ROOT, 'dist/stack/idp-main.js')], { env: { ...process.env, IDP_PORT: '0', ...testIdpEnv(), ...idpEnv } });
  const [{ port: redisPort, server: redis }, { issuer }] = await Promise.all([startFreeTempRedis(), waitForReport(idp, idpListening)]).catch(async (err: unknown) => {
    await idp.stop();
    throw err;
  });
  return {
    redisPort,
    issuer,
    async stop() {
      await Promise.all([redis.stop(), idp.stop()]);
    },
  };
}

export function configFrom(env: Record<string, string>): Config {
  const { config, problems } = loadConfig(env);
  if (!config) throw new Error(problems.join('\n'));
  return config;
}

export async function redisReady(redis: RedisClient): Promise<void> {
  if (redis.status !== 'ready') await new Promise((r) => redis.once('ready', r));
}

/**
 * Resolves once a connection attempt of `redis` is over: it is ready, or an attempt failed (its 'error'
 * event; a failing client keeps trying, so a failure already past is followed by another). Returns
 * quietly after `timeoutMs` (default 5000) so that the assertion after it reports what was seen.
 */
export function connectionAttemptOver(redis: RedisClient, timeoutMs = 5000): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      redis.off('ready', done);
      redis.off('error', done);
      resolve();
    };
    const timer = setTimeout(done, timeoutMs);
    redis.once('ready', done);
    redis.once('error', done);
  });
}

/** A clock that runs with the machine's, ahead by what the test has moved it. */
export function movableClock(): { readonly now: Clock; advance(ms: number): void } {
  let offsetMs = 0;
  return {
    now: () => Date.now() + offsetMs,
    advance: (ms) => {
      offsetMs += ms;
    },
  };
}

/** The demo's policy file, policy/demo.yaml. */
export function demoPolicy(): Policy {
  const { policy, problems } = loadPolicyFile(`${REPO_ROOT}/policy/demo.yaml`);
  if (!policy) throw new Error(problems.join('\n'));
  return policy;
}

/**
 * `waitForRedis: false` returns at once, for tests of a Redis that refuses idgate (default: wait until it is ready).
 * `spoe: true` also makes the SPOE agent, on the same check, as main.ts does with IDGATE_SPOE_LISTEN (default false).
 * `clock`: idgate's clock, for a test that moves it (movableClock); default the system clock.
 */
export async function startInProcess(config: Config, policy: Policy = demoPolicy(), options: { waitForRedis?: boolean; spoe?: boolean; clock?: Clock } = {}): Promise<InProcessIdgate> {
  const logLines: string[] = [];
  const captureDir = process.env.IDGATE_LOG_CAPTURE_DIR;
  if (captureDir) fs.mkdirSync(captureDir, { recursive: true });
  const logger = createLogger((line) => {
    logLines.push(line);
    if (captureDir) fs.appendFileSync(path.join(captureDir, 'idgate-in-process.log'), line);
  });
  const idgate = createIdgate(config, { logger, policy: () => policy, spoe: options.spoe ?? false, reportRedisOutages: false, clock: options.clock });
  running.push(idgate);
  await idgate.ready();
  if (options.waitForRedis !== false) await redisReady(idgate.deps.redis);
  return { server: idgate.server, config, metrics: idgate.deps.metrics, logLines, spoeAgent: idgate.spoeAgent, redis: idgate.deps.redis };
}

export function stopInProcess(): void {
  for (const idgate of running.splice(0)) idgate.close();
}

/**
 * What HAProxy always tells the check: the method, host and URI of the request it asks about (a check
 * without them is refused). Tests set the ones they test on top.
 */
export function checkFacts(host: string, uri = '/', method = 'GET'): Record<string, string> {
  return { 'X-Forwarded-Method': method, 'X-Forwarded-Host': host, 'X-Forwarded-Uri': uri };
}

/** The value of one sample in Prometheus text, e.g. metricValue(text, 'idgate_logins_total{result="ok"}'); 0 when absent. */
export function metricValue(text: string, sample: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
  return line ? Number(line.slice(sample.length + 1)) : 0;
}
