// idgate in this process, for supertest: the same parts main.ts wires, with log lines captured.
import fs from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import { createLogger } from '../../service/src/audit.js';
import { loadConfig, type Config } from '../../service/src/config.js';
import { Metrics } from '../../service/src/metrics.js';
import { DurableWrites, reportWaits } from '../../service/src/durable-writes.js';
import { OidcRelyingParty } from '../../service/src/oidc.js';
import { loadPolicyFile } from '../../service/src/policy-file.js';
import type { Policy } from '../../service/src/policy.js';
import { freePort, REPO_ROOT, startProcess, waitForPort } from '../../demo/processes.js';
import { startTempRedis } from '../../demo/redis.js';
import { createIdgateServer } from '../../service/src/server.js';
import { createCheck } from '../../service/src/check.js';
import { createSpoeAgent, type SpoeAgent } from '../../service/src/spoe.js';
import { SessionCache, subscribeToRevocations } from '../../service/src/session-cache.js';
import { RedisSessionStore } from '../../service/src/session-store.js';
import { createRedisClient, type RedisClient } from '../../service/src/redis.js';
import { BearerVerifier } from '../../service/src/tokens.js';

export interface InProcessIdgate {
  readonly server: http.Server;
  readonly config: Config;
  readonly metrics: Metrics;
  readonly logLines: string[];
  /** The SPOE agent (option `spoe`), not listening yet: `spoeAgent.listen(port)`. */
  readonly spoeAgent?: SpoeAgent;
}

const running: { server: http.Server; spoeAgent?: SpoeAgent; redis: RedisClient; durable: DurableWrites; oidc: OidcRelyingParty; bearer: BearerVerifier; unsubscribe: () => void }[] = [];

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
  const redisPort = await freePort();
  const idpPort = await freePort();
  const redis = startTempRedis(redisPort);
  const idp = startProcess('idp', process.execPath, [path.join(REPO_ROOT, 'dist/demo/idp-main.js')], { env: { ...process.env, IDP_PORT: String(idpPort), ...idpEnv } });
  await Promise.all([waitForPort(redisPort), waitForPort(idpPort)]);
  return {
    redisPort,
    issuer: `http://127.0.0.1:${idpPort}`,
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

/** The demo's policy file, policy/demo.yaml. */
export function demoPolicy(): Policy {
  const { policy, problems } = loadPolicyFile(`${REPO_ROOT}/policy/demo.yaml`);
  if (!policy) throw new Error(problems.join('\n'));
  return policy;
}

/**
 * `waitForRedis: false` returns at once, for tests of a Redis that refuses idgate (default: wait until it is ready).
 * `spoe: true` also makes the SPOE agent, on the same check, as main.ts does with IDGATE_SPOE_LISTEN (default false).
 */
export async function startInProcess(config: Config, policy: Policy = demoPolicy(), options: { waitForRedis?: boolean; spoe?: boolean } = {}): Promise<InProcessIdgate> {
  const logLines: string[] = [];
  const redis = createRedisClient(config);
  // main.ts logs a Redis outage once; tests of outages look at the answers, without ioredis's console noise.
  redis.on('error', () => undefined);
  const captureDir = process.env.IDGATE_LOG_CAPTURE_DIR;
  if (captureDir) fs.mkdirSync(captureDir, { recursive: true });
  const logger = createLogger((line) => {
    logLines.push(line);
    if (captureDir) fs.appendFileSync(path.join(captureDir, 'idgate-in-process.log'), line);
  });
  const metrics = new Metrics();
  const oidc = new OidcRelyingParty(config, (level, message, fields) => logger.log(level, message, fields));
  const bearer = new BearerVerifier(config, logger, metrics);
  await Promise.all([oidc.start(), bearer.start()]);
  const sessionCache = new SessionCache(config.sessionCacheMs, config.sessionCacheSize);
  const unsubscribe = sessionCache.enabled ? subscribeToRevocations(config, sessionCache, logger) : () => undefined;
  const durable = new DurableWrites(redis, config, reportWaits(logger, metrics));
  const sessions = new RedisSessionStore(redis, config, durable);
  const deps = { config, redis, sessions, oidc, bearer, sessionCache, policy: () => policy, logger, metrics };
  const server = createIdgateServer(deps);
  const spoeAgent = options.spoe
    ? createSpoeAgent({ check: createCheck(deps), trustedPeers: config.trustedProxies, maxConnections: config.spoeMaxConnections, maxInFlight: config.spoeMaxInFlight, onError: (message) => logger.log('warn', message) })
    : undefined;
  running.push({ server, spoeAgent, redis, durable, oidc, bearer, unsubscribe });
  if (options.waitForRedis !== false) await redisReady(redis);
  return { server, config, metrics, logLines, spoeAgent };
}

export function stopInProcess(): void {
  for (const { server, spoeAgent, redis, durable, oidc, bearer, unsubscribe } of running.splice(0)) {
    if (spoeAgent?.listening) void spoeAgent.shutdown(0);
    durable.close();
    unsubscribe();
    oidc.stop();
    bearer.stop();
    server.closeAllConnections();
    server.close();
    redis.disconnect();
  }
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
