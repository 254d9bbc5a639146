// One idgate: Redis, durable writes, the session store, OIDC, bearer tokens, the session cache, the HTTP
// server and the optional SPOE agent, wired once. `idgate serve` (main.ts) and the tests both build it here,
// so what the tests run is what ships; process concerns (settings errors, signals, exit codes) stay in main.ts.
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from './audit.js';
import { createCheck, type CheckDependencies } from './check/check.js';
import type { Config } from './config.js';
import { DurableWrites, reportWaits } from './session/durable-writes.js';
import { describeError } from './errors.js';
import { FINISH_BOUND_MS } from './limits.js';
import { Metrics } from './metrics.js';
import { OidcRelyingParty } from './idp/relying-party.js';
import type { Policy } from './policy/policy.js';
import { createRedisClient, describeRedisError } from './redis.js';
import { createIdgateServer } from './server.js';
import { SessionCache, subscribeToRevocations } from './session/session-cache.js';
import { RedisSessionStore } from './session/redis-session-store.js';
import { createSpoeAgent, type SpoeAgent } from './transports/spoe-agent.js';
import { BearerVerifier } from './tokens/tokens.js';
import { systemClock, type Clock } from './clock.js';

export interface IdgateOptions {
  readonly logger: Logger;
  /** The policy in force, asked on every check (a reload replaces it). */
  readonly policy: () => Policy;
  /** Default: a fresh registry. main.ts passes the one the policy holder already counts reloads in. */
  readonly metrics?: Metrics;
  /** Make the SPOE agent. Default: when IDGATE_SPOE_LISTEN is set. */
  readonly spoe?: boolean;
  /**
   * Log a Redis outage once, and its return (default true). Tests of outages look at the answers instead,
   * without the TLS probe that describing a refused TLS connection makes.
   */
  readonly reportRedisOutages?: boolean;
  /** Where time decides (tokens due, cached answers, DPoP windows, key ages). Default: the system clock. */
  readonly clock?: Clock;
}

export interface Idgate {
  readonly server: http.Server;
  /** The SPOE agent, if made; `listen` starts it on IDGATE_SPOE_LISTEN. */
  readonly spoeAgent?: SpoeAgent;
  /** Everything the check and the server are built on. */
  readonly deps: CheckDependencies;
  /** Resolves after the first attempt at OIDC discovery and at the bearer keys (success or not; failures retry in the background). */
  ready(): Promise<void>;
  /** HTTP on IDGATE_LISTEN (rejects if it cannot), then the SPOE agent on IDGATE_SPOE_LISTEN (a busy port is only logged). */
  listen(): Promise<void>;
  /**
   * Stops without failing a request (SPOE: see SpoeAgent.shutdown), in three steps:
   *   1. drain: /readyz answers 503 and SPOE health checks are refused, while checks and /_auth/* are
   *      still answered, for IDGATE_SHUTDOWN_DRAIN_MS: long enough for HAProxy's health check
   *      (fall x inter) to take this replica out and send everything to the others;
   *   2. finish: stop accepting, answer what is running (HTTP requests, SPOE frames), close idle
   *      connections (SPOE ones with AGENT-DISCONNECT), bounded by FINISH_BOUND_MS;
   *   3. release Redis, the subscriptions and the timers.
   */
  stop(): Promise<void>;
  /** At once: cuts every connection and releases everything (tests between cases; no drain). */
  close(): void;
}

export function createIdgate(config: Config, options: IdgateOptions): Idgate {
  const { logger } = options;
  const clock = options.clock ?? systemClock;
  const metrics = options.metrics ?? new Metrics();
  const redis = createRedisClient(config);
  let redisDown = false;
  redis.on('error', (err) => {
    if (!redisDown && options.reportRedisOutages !== false) void describeRedisError(config, err).then((error) => logger.log('error', 'redis unavailable', { error }));
    redisDown = true;
  });
  redis.on('ready', () => {
    if (redisDown && options.reportRedisOutages !== false) logger.log('info', 'redis available again');
    redisDown = false;
  });
  const oidc = new OidcRelyingParty(config, (level, message, fields) => logger.log(level, message, fields));
  const bearer = new BearerVerifier(config, logger, metrics, clock);
  const started = Promise.all([oidc.start(), bearer.start()]).then(() => undefined);

  const sessionCache = new SessionCache(config.sessionCacheMs, config.sessionCacheSize, clock);
  const unsubscribe = sessionCache.enabled ? subscribeToRevocations(config, sessionCache, logger) : () => undefined;

  // Logins, renewals and revocations wait for a Redis replica, on connections of their own.
  const durable = new DurableWrites(redis, config, reportWaits(logger, metrics));
  const sessions = new RedisSessionStore(redis, config, durable);
  const deps: CheckDependencies = { config, redis, sessions, oidc, bearer, sessionCache, policy: options.policy, logger, metrics, clock };
  // One check for both transports.
  const check = createCheck(deps);
  let draining = false;
  const server = createIdgateServer(deps, check, { draining: () => draining });
  const spoeAgent =
    (options.spoe ?? config.spoeListen !== undefined)
      ? createSpoeAgent({
          check,
          trustedPeers: config.trustedProxies,
          checkSecrets: config.checkSecrets,
          maxConnections: config.spoeMaxConnections,
          maxInFlight: config.spoeMaxInFlight,
          onError: (message) => logger.log('warn', message),
          draining: () => draining,
        })
      : undefined;

  const release = () => {
    oidc.stop();
    bearer.stop();
    unsubscribe();
    durable.close();
    redis.disconnect();
  };

  return {
    server,
    spoeAgent,
    deps,
    ready: () => started,
    async listen() {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(config.listen.port, config.listen.host, () => resolve());
      });
      // The port bound, not the one asked for: with IDGATE_LISTEN host:0 (tests), this line is how a launcher learns it.
      const { port: httpPort } = server.address() as AddressInfo;
      logger.log('info', `idgate listening on http://${config.listen.host}:${httpPort}`, { host: config.listen.host, port: httpPort });
      // A busy SPOE port is reported, not fatal: the HTTP check (the default integration) keeps working.
      if (!config.spoeListen || !spoeAgent) logger.log('info', 'SPOE agent off (IDGATE_SPOE_LISTEN unset)');
      else {
        const { host, port } = config.spoeListen;
        spoeAgent.on('error', (err) => logger.log('error', `SPOE agent cannot listen on ${host}:${port}; the HTTP check works without it`, { error: describeError(err) }));
        spoeAgent.listen(port, host, () => {
          const { port: spoePort } = spoeAgent.address() as AddressInfo;
          logger.log('info', `SPOE agent listening on ${host}:${spoePort}`, { host, port: spoePort });
        });
      }
    },
    async stop() {
      draining = true;
      await new Promise((r) => setTimeout(r, config.shutdownDrainMs));
      await Promise.all([finishHttp(server, FINISH_BOUND_MS), spoeAgent?.shutdown(FINISH_BOUND_MS)]);
      release();
    },
    close() {
      if (spoeAgent?.listening) void spoeAgent.shutdown(0);
      release();
      server.closeAllConnections();
      server.close();
    },
  };
}

/**
 * Stops accepting, lets running requests finish, and closes keep-alive connections as they fall idle
 * (node keeps an idle one open until its keepAliveTimeout otherwise). Anything still open after
 * `boundMs` is cut.
 */
function finishHttp(server: http.Server, boundMs: number): Promise<void> {
  return new Promise((resolve) => {
    const sweep = setInterval(() => server.closeIdleConnections(), 50);
    const cut = setTimeout(() => server.closeAllConnections(), boundMs);
    server.close(() => {
      clearInterval(sweep);
      clearTimeout(cut);
      resolve();
    });
  });
}
