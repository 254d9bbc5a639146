// `idgate serve`: the process around idgate.ts: settings and policy (their problems on stderr), the logger,
// signals (SIGHUP reloads the policy) and the exit code. Stops cleanly on SIGTERM/SIGINT: first unready
// (HAProxy takes the replica out), then done with what is running, then gone (see Idgate.stop).
import { createLogger } from './audit.js';
import { loadConfig } from './config.js';
import { describeConfig } from './config/describe.js';
import { describeError } from './errors.js';
import { createIdgate } from './idgate.js';
import { Metrics } from './metrics.js';
import { PolicyHolder } from './policy/policy-holder.js';
import { orgWideAudienceProblems } from './tokens/org-wide-audience.js';

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
  if (config.checkSecrets.length === 0) {
    logger.log('warn', 'IDGATE_CHECK_SECRETS is not set: any local process can ask for decisions, not only HAProxy. For local demos and tests only, never in production.');
  }
  logger.log('info', 'starting idgate', describeConfig(config));

  const metrics = new Metrics();
  const policy = PolicyHolder.open(config.policyFile, logger, metrics, (p) => orgWideAudienceProblems(config, p));
  if (!(policy instanceof PolicyHolder)) {
    for (const problem of policy) process.stderr.write(`idgate: ${problem}\n`);
    process.stderr.write(`idgate: the policy has ${policy.length} problem(s); not starting\n`);
    return 1;
  }
  policy.watch();
  process.on('SIGHUP', () => policy.reload('SIGHUP'));
  logger.log('info', 'policy loaded', { source: policy.current.source, rules: policy.current.rules.length });
  const idgate = createIdgate(config, { logger, metrics, policy: () => policy.current });
  // Listening does not wait for the IdP: discovery and key fetches that fail retry in the background.
  void idgate.ready();
  await idgate.listen().catch((err: unknown) => {
    process.stderr.write(`idgate: cannot listen on ${config.listen.host}:${config.listen.port}: ${describeError(err)}\n`);
    process.exit(1);
  });

  return new Promise<number>((resolve) => {
    // Stopping drains first, then finishes what is running (see Idgate.stop), so that a rolling restart fails
    // no request. A second SIGTERM or SIGINT exits at once (an operator who means it, or a supervisor's patience).
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) {
        logger.log('warn', `exiting at once on a second ${signal}`);
        logger.flush();
        process.exit(signal === 'SIGINT' ? 130 : 143);
      }
      stopping = true;
      logger.log('info', `stopping on ${signal}: unready for ${config.shutdownDrainMs} ms, then finishing what is running`);
      await idgate.stop();
      policy.close();
      logger.log('info', 'stopped');
      logger.flush();
      resolve(0);
    };
    const onSignal = (signal: string) => void stop(signal);
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
