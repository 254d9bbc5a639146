// `idgate serve`: load settings, connect to Redis, start discovery, listen. Stops cleanly on SIGTERM/SIGINT.
import { createLogger } from './audit.js';
import { describeConfig, loadConfig } from './config.js';
import { describeError } from './errors.js';
import { Metrics } from './metrics.js';
import { OidcRelyingParty } from './oidc.js';
import { DEMO_POLICY } from './policy.js';
import { createIdgateServer } from './server.js';
import { createRedisClient } from './sessions.js';
import { BearerVerifier } from './tokens.js';

export async function serve(): Promise<number> {
  const logger = createLogger();
  const { config, problems } = loadConfig();
  if (!config) {
    for (const problem of problems) process.stderr.write(`idgate: ${problem}\n`);
    process.stderr.write(`idgate: ${problems.length} setting problem(s); not starting\n`);
    return 1;
  }
  if (config.policyFile) {
    process.stderr.write('idgate: IDGATE_POLICY_FILE: policy files are not supported yet by this version; unset it to use the built-in demo policy\n');
    return 1;
  }
  if (config.insecureHttp) {
    logger.log('warn', 'IDGATE_INSECURE_HTTP=1: plain-http issuer allowed and cookies not Secure. For local demos and tests only, never in production.');
  }
  logger.log('info', 'starting idgate', describeConfig(config));

  const metrics = new Metrics();
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

  const server = createIdgateServer({ config, redis, oidc, bearer, policy: () => DEMO_POLICY, logger, metrics });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.listen.port, config.listen.host, () => resolve());
  }).catch((err: unknown) => {
    process.stderr.write(`idgate: cannot listen on ${config.listen.host}:${config.listen.port}: ${describeError(err)}\n`);
    process.exit(1);
  });
  logger.log('info', `idgate listening on http://${config.listen.host}:${config.listen.port}`);

  return new Promise<number>((resolve) => {
    const stop = (signal: string) => {
      logger.log('info', `stopping on ${signal}`);
      oidc.stop();
      bearer.stop();
      server.close();
      server.closeAllConnections();
      redis.disconnect();
      resolve(0);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
