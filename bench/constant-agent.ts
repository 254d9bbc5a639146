// The SPOE transport's ceiling (scenario (i) of `make bench`, and `make profile`): idgate's own agent code
// (framing, bounds, the same renderer) answering one constant allow, in a process of its own like idgate's,
// so that what it costs can be told apart from the load generator's. It answers what idgate answered the
// bench's own session, or its bearer token when the request has an Authorization header (the same
// variables, so HAProxy sets the same headers): what the transport costs when the check costs nothing.
//
// Run as a child: `node dist/bench/constant-agent.js`, with IDGATE_* settings (its bounds are idgate's) and
// CONSTANT_ANSWERS (JSON of ConstantAnswers) in its environment; it prints {"msg":"constant agent listening on","port":…}.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../service/src/config.js';
import { checkOutcome, type WireIdentity } from '../service/src/check/contract.js';
import { createSpoeAgent } from '../service/src/transports/spoe-agent.js';
import { listenOnAnyPort, loggedPort, REPO_ROOT, startProcess, waitForReport, type ManagedProcess } from '../stack/processes.js';

const LISTENING = 'constant agent listening on';

/** What a constant allow repeats of one real answer of idgate's HTTP check: the identity and the app's cookies. */
export interface ConstantAnswer {
  readonly identity: WireIdentity;
  /** The Cookie header the app gets instead of the client's (X-Idgate-Cookie), when idgate sent one. */
  readonly appCookies: string | undefined;
}

/** The constant answer that repeats idgate's answer with these headers (an allow). */
export function answerFromHeaders(headers: Headers): ConstantAnswer {
  const get = (name: string) => headers.get(`x-auth-${name}`) ?? undefined;
  const user = get('user');
  if (user === undefined) throw new Error('the answer names no user: not an allow');
  return { appCookies: headers.get('x-idgate-cookie') ?? undefined, identity: {
    user,
    subject: get('subject'),
    issuer: get('issuer'),
    email: get('email'),
    groups: get('groups'),
    groupsTruncated: get('groups-truncated') === 'true',
    scopes: get('scopes'),
    scopesTruncated: get('scopes-truncated') === 'true',
    client: get('client'),
    backend: get('backend'),
  } };
}

/** Starts the agent as a child process; resolves with its port once it listens. */
/** The answer to a request with a session cookie, and the one to a request with a bearer token. */
export interface ConstantAnswers {
  readonly session: ConstantAnswer;
  readonly bearer: ConstantAnswer;
}

export async function startConstantAgent(env: Record<string, string | undefined>, answers: ConstantAnswers): Promise<{ port: number; process: ManagedProcess }> {
  const child = startProcess('constant-agent', process.execPath, [path.join(REPO_ROOT, 'dist/bench/constant-agent.js')], {
    env: { ...process.env, ...env, CONSTANT_ANSWERS: JSON.stringify(answers) },
  });
  return { port: await waitForReport(child, loggedPort(LISTENING)), process: child };
}

async function main(): Promise<void> {
  const answers = JSON.parse(process.env.CONSTANT_ANSWERS ?? 'null') as ConstantAnswers | null;
  if (!answers) throw new Error('CONSTANT_ANSWERS is not set');
  const { config, problems } = loadConfig(process.env);
  if (!config) throw new Error(problems.join('\n'));
  const agent = createSpoeAgent({
    // An allow names the path it decided on (here: the path as sent). A token is not looked at, only seen.
    check: async (input) =>
      checkOutcome('allow', 200, 'constant', { ...(input.authorization === undefined ? answers.session : answers.bearer), requestId: input.requestId ?? 'r', path: (input.pathq ?? '/').split('?')[0]! }),
    trustedPeers: config.trustedProxies,
    maxConnections: config.spoeMaxConnections,
    maxInFlight: config.spoeMaxInFlight,
  });
  process.stdout.write(`${JSON.stringify({ msg: LISTENING.trim(), port: await listenOnAnyPort(agent) })}\n`);
  process.once('SIGTERM', () => agent.close(() => process.exit(0)));
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
