// `idgate serve`: load settings, connect to Redis, start discovery, listen. Stops cleanly on SIGTERM/SIGINT.
import type net from 'node:net';
import { createLogger } from './audit.js';
import { createCheck } from './check.js';
import { createSpoeAgent } from './spoe.js';
import { describeConfig, loadConfig } from './config.js';
import { describeError } from './errors.js';
import { Metrics } from './metrics.js';
import { OidcRelyingParty } from './oidc.js';
import { PolicyHolder } from './policy-file.js';
import { createIdgateServer } from './server.js';
import { SessionCache, subscribeToRevocations } from './session-cache.js';
import { createRedisClient } from './redis.js';
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
    if (!redisDown) logger.log('error', 'redis unavailable', { error: describeError(err) });
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

  const deps = { config, redis, oidc, bearer, sessionCache, policy: () => policy.current, logger, metrics };
  const server = createIdgateServer(deps);
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
  let spoe: net.Server | undefined;
  if (!config.spoeListen) logger.log('info', 'SPOE agent off (IDGATE_SPOE_LISTEN unset)');
  else {
    const { host, port } = config.spoeListen;
    spoe = createSpoeAgent({
      check: createCheck(deps),
      trustedPeers: config.trustedProxies,
      maxConnections: config.spoeMaxConnections,
      maxInFlight: config.spoeMaxInFlight,
      onError: (message) => logger.log('warn', message),
    });
    spoe.on('error', (err) => logger.log('error', `SPOE agent cannot listen on ${host}:${port}; the HTTP check works without it`, { error: describeError(err) }));
    spoe.listen(port, host, () => logger.log('info', `SPOE agent listening on ${host}:${port}`));
  }

  return new Promise<number>((resolve) => {
    const stop = (signal: string) => {
      logger.log('info', `stopping on ${signal}`);
      oidc.stop();
      bearer.stop();
      policy.close();
      unsubscribe();
      spoe?.close();
      server.close();
      server.closeAllConnections();
      redis.disconnect();
      logger.flush();
      resolve(0);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
