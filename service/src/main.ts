// `idgate serve`: load settings, connect to Redis, start discovery, listen. Stops cleanly on SIGTERM/SIGINT:
// first unready (HAProxy takes the replica out), then done with what is running, then gone (see `stop`).
import type http from 'node:http';
import { createLogger } from './audit.js';
import { createCheck } from './check.js';
import { createSpoeAgent, type SpoeAgent } from './spoe.js';
import { describeConfig, loadConfig } from './config.js';
import { DurableWrites, reportWaits } from './durable-writes.js';
import { FINISH_BOUND_MS } from './limits.js';
import { describeError } from './errors.js';
import { Metrics } from './metrics.js';
import { OidcRelyingParty } from './oidc.js';
import { PolicyHolder } from './policy-file.js';
import { createIdgateServer } from './server.js';
import { SessionCache, subscribeToRevocations } from './session-cache.js';
import { RedisSessionStore } from './session-store.js';
import { createRedisClient, describeRedisError } from './redis.js';
import { BearerVerifier } from './tokens.js';

export async function serve(): Promise<number> {
  const { config, problems } = loadConfig();
  if (!config) {
    for (const problem of problems) process.stderr.write(`idgate: ${problem}\n`);
    process.stderr.write(`idgate: ${problems.length} setting problem(s); not starting\n`);
    return 1;
  }
  const logger = createLogger({ level: config.logLevel, file: config.logFile });
  // Lines leave in batches: whatever way the process ends, the last batch is written.
  process.once('exit', () => logger.flush());
  if (config.insecureHttp) {
    logger.log('warn', 'IDGATE_INSECURE_HTTP=1: plain-http issuer allowed and cookies not Secure. For local demos and tests only, never in production.');
  }
  logger.log('info', 'starting idgate', describeConfig(config));

  const metrics = new Metrics();
  const policy = PolicyHolder.open(config.policyFile, logger, metrics);
  if (!(policy instanceof PolicyHolder)) {
    for (const problem of policy) process.stderr.write(`idgate: ${problem}\n`);
    process.stderr.write(`idgate: the policy has ${policy.length} problem(s); not starting\n`);
    return 1;
  }
  policy.watch();
  process.on('SIGHUP', () => policy.reload('SIGHUP'));
  logger.log('info', 'policy loaded', { source: policy.current.source, rules: policy.current.rules.length });
  const redis = createRedisClient(config);
  let redisDown = false;
  redis.on('error', (err) => {
    if (!redisDown) void describeRedisError(config, err).then((error) => logger.log('error', 'redis unavailable', { error }));
    redisDown = true;
  });
  redis.on('ready', () => {
    if (redisDown) logger.log('info', 'redis available again');
    redisDown = false;
  });
  const oidc = new OidcRelyingParty(config, (level, message, fields) => logger.log(level, message, fields));
  void oidc.start();
  const bearer = new BearerVerifier(config, logger, metrics);
  void bearer.start();

  const sessionCache = new SessionCache(config.sessionCacheMs, config.sessionCacheSize);
  const unsubscribe = sessionCache.enabled ? subscribeToRevocations(config, sessionCache, logger) : () => undefined;

  // Logins, renewals and revocations wait for a Redis replica, on connections of their own.
  const durable = new DurableWrites(redis, config, reportWaits(logger, metrics));
  const sessions = new RedisSessionStore(redis, config, durable);
  const deps = { config, redis, sessions, oidc, bearer, sessionCache, policy: () => policy.current, logger, metrics };
  let draining = false;
  const server = createIdgateServer(deps, { draining: () => draining });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.listen.port, config.listen.host, () => resolve());
  }).catch((err: unknown) => {
    process.stderr.write(`idgate: cannot listen on ${config.listen.host}:${config.listen.port}: ${describeError(err)}\n`);
    process.exit(1);
  });
  logger.log('info', `idgate listening on http://${config.listen.host}:${config.listen.port}`);

  // The SPOE agent, only when IDGATE_SPOE_LISTEN asks for it: the same check, for HAProxy's `filter spoe`.
  // A busy port is reported, not fatal: the HTTP check (the default integration) keeps working.
  let spoe: SpoeAgent | undefined;
  if (!config.spoeListen) logger.log('info', 'SPOE agent off (IDGATE_SPOE_LISTEN unset)');
  else {
    const { host, port } = config.spoeListen;
    spoe = createSpoeAgent({
      check: createCheck(deps),
      trustedPeers: config.trustedProxies,
      maxConnections: config.spoeMaxConnections,
      maxInFlight: config.spoeMaxInFlight,
      onError: (message) => logger.log('warn', message),
      draining: () => draining,
    });
    spoe.on('error', (err) => logger.log('error', `SPOE agent cannot listen on ${host}:${port}; the HTTP check works without it`, { error: describeError(err) }));
    spoe.listen(port, host, () => logger.log('info', `SPOE agent listening on ${host}:${port}`));
  }

  return new Promise<number>((resolve) => {
    // A rolling restart must fail no request (SPOE: see SpoeAgent.shutdown), so stopping goes in three steps:
    //   1. drain: /readyz answers 503 and SPOE health checks are refused, while checks and /_auth/* are
    //      still answered, for IDGATE_SHUTDOWN_DRAIN_MS: long enough for HAProxy's health check
    //      (fall x inter) to take this replica out and send everything to the others;
    //   2. finish: stop accepting, answer what is running (HTTP requests, SPOE frames), close idle
    //      connections (SPOE ones with AGENT-DISCONNECT), bounded by FINISH_BOUND_MS;
    //   3. release Redis and the timers, flush the log, exit 0.
    // A second SIGTERM or SIGINT exits at once (an operator who means it, or a supervisor's patience).
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) {
        logger.log('warn', `exiting at once on a second ${signal}`);
        logger.flush();
        process.exit(signal === 'SIGINT' ? 130 : 143);
      }
      stopping = true;
      draining = true;
      logger.log('info', `stopping on ${signal}: unready for ${config.shutdownDrainMs} ms, then finishing what is running`);
      await new Promise((r) => setTimeout(r, config.shutdownDrainMs));
      await Promise.all([finishHttp(server, FINISH_BOUND_MS), spoe?.shutdown(FINISH_BOUND_MS)]);
      oidc.stop();
      bearer.stop();
      policy.close();
      unsubscribe();
      durable.close();
      redis.disconnect();
      logger.log('info', 'stopped');
      logger.flush();
      resolve(0);
    };
    const onSignal = (signal: string) => void stop(signal);
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
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
