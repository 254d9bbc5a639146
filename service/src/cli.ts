// `npx idgate <command>`. Exit 0 on success, 1 on a finding or error, with a one-line reason on stderr.
// One file for every command, though over 400 lines: each is a function beside its help text, and main() lists them.
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import * as jose from 'jose';
import { identityFromClaims } from './policy/claims.js';
import { checkSecretProblems, loadConfig, loadRedisConfig } from './config.js';
import { describeConfig } from './config/describe.js';
import { parseFlag } from './config/kinds.js';
import { defaultOf, SETTINGS } from './config/settings.js';
import { CLI_REDIS_TIMEOUT_MS } from './limits.js';
import { serve } from './main.js';
import { loadPolicyFile } from './policy/policy-file.js';
import { orgWideAudienceProblems } from './tokens/org-wide-audience.js';
import { DurableWrites, type DurabilitySettings } from './session/durable-writes.js';
import { createRedisClient, describeRedisError } from './redis.js';
import { RedisSessionRevocation } from './session/redis-session-store.js';
import { describeSessionRecordVersions } from './session/session-record.js';
import { decide, formatDecision, matchRule, type Identity } from './policy/policy.js';
import { canonicalPath } from './paths.js';
import { settingsReference } from './settings-doc.js';
import { AUTH_RATE_LIMIT, CHECK_SOCKET, CHECK_SOCKET_NAME, IDGATE_ADDRESS, SPOE_AGENT_ADDRESS } from './defaults.js';
import { HAPROXY_PARTS, haproxyPart, renderHaproxyTemplate, type HaproxyMode, type HaproxyPart, type HaproxyValues } from './transports/haproxy-config.js';

const COMMANDS = `commands:
  serve           run the check, login and health endpoints (settings from IDGATE_* environment)
  check-config    validate the settings and the policy; one line per problem; exit 1 if any
  explain         the decision idgate would take for a request and an identity, in one line
  sessions        list or revoke a user's sessions in Redis (sessions list|revoke --user NAME | --sub SUB)
  settings        every setting with its default and meaning (--markdown: the docs/configuration.md reference)
  haproxy-config  print the lines to add to an existing haproxy.cfg (--mode lua|spoe), with your addresses
  version         print the version and the session record versions it reads and writes
  --help          this text; \`idgate <command> --help\` for a command's options`;

/** One line per setting, for --help and `idgate settings`. */
const SETTINGS_LIST = SETTINGS.map((s) => `  ${s.env.padEnd(32)} ${s.doc}${s.default !== undefined && s.default !== '' ? ` (default ${s.default})` : s.optional || s.default === '' ? ' (optional)' : ' (required)'}`).join('\n');

const HELP = `usage: idgate <command> [options]

${COMMANDS}

settings (environment; IDGATE_CONFIG_FILE may name a JSON file with the same keys in lower case):
${SETTINGS_LIST}
`;

const CHECK_CONFIG_HELP = `usage: idgate check-config [--policy FILE]

Validates the IDGATE_* settings and the policy file; prints one line per problem (policy problems as
FILE:LINE: ...), exit 0 when all is right, 1 otherwise. Secrets are never printed.

options:
  --policy FILE   the policy file to check (default: IDGATE_POLICY_FILE)
`;

const EXPLAIN_HELP = `usage: idgate explain --policy FILE --url URL [--method GET] [--claims JSON | --token JWT] [--api]

Prints the decision idgate would take, as one line: status, outcome, the rule that matched, why.
  e.g. 403 deny rule=admin-area: needs group admins

options:
  --policy FILE   policy file (default: IDGATE_POLICY_FILE)
  --url URL       the request: https://host/path?query, or a path (/admin/)
  --method M      HTTP method (default GET)
  --claims JSON   the identity's claims, e.g. '{"sub":"bob","groups":["sales"]}'; a token's claims
                  (scp, scope, cid, client_id) make it a machine identity, else a browser session
  --token JWT     read the claims from a token instead (its signature is NOT checked here)
  --api           the client is an API client (no HTML); default: a browser navigating
Without --claims or --token the request is anonymous. Group and role claims are read as
IDGATE_GROUPS_CLAIM (default ${defaultOf('IDGATE_GROUPS_CLAIM')}) and IDGATE_ROLES_CLAIM (default ${defaultOf('IDGATE_ROLES_CLAIM')}) say. As in the check, a
token counts only on rules that ask for tokens (elsewhere the caller is anonymous); an identity whose
iss is not IDGATE_ISSUER (when set) satisfies only conditions naming its issuer; email counts only
with email_verified: true, unless IDGATE_TRUST_UNVERIFIED_EMAIL=1.
`;

function version(): string {
  const pkg = JSON.parse(fs.readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

class UsageError extends Error {}

function options<T extends Record<string, { type: 'string' | 'boolean' }>>(args: string[], spec: T) {
  try {
    return parseArgs({ args, options: { ...spec, help: { type: 'boolean' } }, strict: true, allowPositionals: false }).values as { [K in keyof T]?: T[K]['type'] extends 'string' ? string : boolean } & { help?: boolean };
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

function checkConfig(args: string[]): number {
  const opts = options(args, { policy: { type: 'string' } });
  if (opts.help) return print(CHECK_CONFIG_HELP);
  const { config, problems } = loadConfig();
  const lines = [...problems];
  const policyFile = opts.policy ?? config?.policyFile ?? (process.env.IDGATE_POLICY_FILE || undefined);
  const loaded = policyFile ? loadPolicyFile(policyFile) : undefined;
  const policyProblems = [...(loaded?.problems ?? []), ...(loaded?.policy && config ? orgWideAudienceProblems(config, loaded.policy) : [])];
  // The policy's warnings are printed after its problems; alone they do not fail the check.
  const policyLines = [...policyProblems, ...(loaded?.warnings ?? [])];
  if (lines.length || policyProblems.length) {
    lines.push(...policyLines);
    for (const line of lines) process.stderr.write(`${line}\n`);
    return 1;
  }
  for (const line of policyLines) process.stderr.write(`${line}\n`);
  process.stdout.write(`configuration ok: ${JSON.stringify({ ...describeConfig(config!), policy_file: policyFile ?? '(none: any signed-in user)' })}\n`);
  return 0;
}

function explain(args: string[]): number {
  const opts = options(args, { policy: { type: 'string' }, url: { type: 'string' }, method: { type: 'string' }, claims: { type: 'string' }, token: { type: 'string' }, api: { type: 'boolean' } });
  if (opts.help) return print(EXPLAIN_HELP);
  const policyFile = opts.policy ?? (process.env.IDGATE_POLICY_FILE || undefined);
  if (!policyFile) throw new UsageError('explain needs --policy FILE (or IDGATE_POLICY_FILE)');
  if (!opts.url) throw new UsageError('explain needs --url URL');
  if (opts.claims && opts.token) throw new UsageError('give --claims or --token, not both');
  const { policy, problems } = loadPolicyFile(policyFile);
  if (!policy) throw new UsageError(`the policy has problems, first: ${problems[0]}`);

  let url: URL;
  try {
    url = new URL(opts.url, 'https://app.example.com');
  } catch {
    throw new UsageError(`--url "${opts.url}" is not a URL or a path`);
  }
  // The path as written, not as URL() resolves it: idgate judges (and refuses) the raw path HAProxy sends.
  const rawPath = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i.test(opts.url) ? opts.url.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i, '') || '/' : opts.url;
  const canonical = canonicalPath(rawPath.replace(/#.*$/, ''));
  if (!canonical.ok) {
    process.stdout.write(`400 refused rule=-: ${canonical.reason}\n`);
    return 0;
  }
  const method = (opts.method ?? 'GET').toUpperCase();
  let identity: Identity | undefined;
  if (opts.claims || opts.token) {
    let claims: unknown;
    try {
      claims = opts.claims ? JSON.parse(opts.claims) : jose.decodeJwt(opts.token!);
    } catch (err) {
      throw new UsageError(`${opts.claims ? '--claims is not JSON' : '--token is not a JWT'}: ${(err as Error).message}`);
    }
    if (typeof claims !== 'object' || claims === null || Array.isArray(claims)) throw new UsageError('--claims must be a JSON object of claims');
    const c = claims as Record<string, unknown>;
    const via = opts.token || 'scp' in c || 'scope' in c || 'cid' in c || 'client_id' in c ? 'token' : 'session';
    const issuer = typeof c.iss === 'string' ? c.iss : '';
    identity = identityFromClaims(c, via, {
      groupsClaim: process.env.IDGATE_GROUPS_CLAIM || defaultOf('IDGATE_GROUPS_CLAIM'),
      rolesClaim: process.env.IDGATE_ROLES_CLAIM || defaultOf('IDGATE_ROLES_CLAIM'),
      // Without IDGATE_ISSUER, the claims are taken as the primary issuer's.
      primaryIssuer: process.env.IDGATE_ISSUER || issuer,
      trustUnverifiedEmail: parseFlag(process.env.IDGATE_TRUST_UNVERIFIED_EMAIL ?? '') === true,
    }, issuer);
    if (!identity) throw new UsageError('the claims name no subject (sub, uid or a client id)');
  }
  const facts = {
    method,
    proto: url.protocol === 'http:' ? ('http' as const) : ('https' as const),
    host: url.host.toLowerCase(),
    uri: canonical.query ? `${canonical.path}?${canonical.query}` : canonical.path,
    path: canonical.path,
    clientIp: '',
    requestId: 'explain',
    wantsHtml: !opts.api,
    isXhr: false,
    corsPreflight: false,
  };
  const decision = decide(facts, matchRule(policy, facts), identity, undefined);
  process.stdout.write(`${formatDecision(decision)}\n`);
  return 0;
}

const SETTINGS_HELP = `usage: idgate settings [--markdown]

Prints every IDGATE_* setting with its default and meaning, one per line; with --markdown, the settings
reference of docs/configuration.md, grouped by concern (that file is generated from the same table).
`;

function settings(args: string[]): number {
  const opts = options(args, { markdown: { type: 'boolean' } });
  if (opts.help) return print(SETTINGS_HELP);
  return print(`${opts.markdown ? settingsReference() : SETTINGS_LIST}\n`);
}

const SESSIONS_HELP = `usage: idgate sessions list --user NAME | --sub SUBJECT
       idgate sessions revoke --user NAME | --sub SUBJECT

Lists or ends a user's sessions, on every replica at once (they share Redis). --user is the name idgate
shows as X-Auth-User (preferred_username, email or sub); --sub the subject. Uses the IDGATE_REDIS_*
settings as idgate serve does: IDGATE_REDIS_URL (default ${defaultOf('IDGATE_REDIS_URL')}), or Sentinel or Cluster,
credentials, TLS, and IDGATE_REDIS_PREFIX (default ${defaultOf('IDGATE_REDIS_PREFIX')}). A revocation waits for a Redis replica as
idgate's do (IDGATE_REDIS_WAIT_REPLICAS, IDGATE_REDIS_WAIT_MS) and says when none confirmed it in time.
`;

async function sessions(args: string[]): Promise<number> {
  const [action, ...rest] = args;
  const opts = options(rest, { user: { type: 'string' }, sub: { type: 'string' } });
  if (opts.help || action === '--help' || action === undefined) return print(SESSIONS_HELP);
  if (action !== 'list' && action !== 'revoke') throw new UsageError(`sessions: unknown action "${action}" (list or revoke)`);
  if (!opts.user === !opts.sub) throw new UsageError('sessions: give exactly one of --user NAME or --sub SUBJECT');
  const { config: prefix, problems } = loadRedisConfig(process.env);
  if (!prefix) throw new UsageError(`sessions: ${problems.join('; ')}`);
  const redis = createRedisClient(prefix, 'cli');
  try {
    // The connection's own error says why (a Cluster's connect() rejects with only "None of startup nodes
    // is available"); listening also keeps ioredis from printing it as unhandled.
    let cause: unknown;
    redis.on('error', (err: unknown) => (cause ??= err));
    await redis.connect().catch(async (err: Error) => {
      throw new UsageError(`cannot reach Redis: ${await describeRedisError(prefix, cause ?? err)}`);
    });
    // A revocation waits for a replica: with the settings as `idgate serve` reads them, but a person at a
    // terminal waits longer than a check would.
    const durability: DurabilitySettings = { redisWaitReplicas: prefix.redisWaitReplicas, redisWaitMs: prefix.redisWaitMs, redisTimeoutMs: CLI_REDIS_TIMEOUT_MS };
    const durable = action === 'revoke'
      ? new DurableWrites(redis, durability, (_kind, outcome) => {
          if (outcome.result !== 'replicated') process.stderr.write(`idgate: warning: no Redis replica confirmed the revocation within the bound (${outcome.result}, ${outcome.acked}/${outcome.wanted}); it stands on the primary\n`);
        })
      : undefined;
    const store = new RedisSessionRevocation(redis, prefix, durable);
    try {
      const found = await store.list(opts.user ? { user: opts.user } : { subject: opts.sub! });
      if (action === 'list') {
        for (const s of found) process.stdout.write(`${s.hash.slice(0, 16)}  sub=${s.subject}  user=${s.user}  since=${new Date(s.createdAt).toISOString()}\n`);
        process.stdout.write(`${found.length} session(s)\n`);
      } else {
        process.stdout.write(`revoked ${await store.revoke(found)} session(s)\n`);
      }
    } finally {
      durable?.close();
    }
    return 0;
  } finally {
    redis.disconnect();
  }
}

/** The help of `idgate haproxy-config`; its defaults are defaults.ts's, as the shipped lines', never restated. */
const haproxyConfigHelp = () => `usage: idgate haproxy-config [--mode lua|spoe] [--idgate HOST:PORT,...] [--spoe HOST:PORT,...]
                             [--check-dst unix@PATH] [--user NAME] [--chroot DIR] [--auth-rate-limit N]
                             [--part PART | --template FILE]
       idgate haproxy-config --check-secret

Prints the lines HAProxy 2.6 needs in front of idgate, filled in with your addresses, in four parts
(docs/haproxy.md explains each line):
  global    add to your global section
  frontend  in each frontend idgate protects, right after its bind lines, before your own rules
  routing   in the same frontend, before your own use_backend lines
  backends  at the end of the file
lua-load and the SPOE filter name idgate.lua and spoe-idgate.conf of this installation by full path.

options:
  --mode M          lua (the HTTP check through idgate.lua; default) or spoe (idgate's SPOE agent)
  --idgate ADDRS    idgate's HTTP address(es) as HAProxy reaches them, one server line each
                    (default: IDGATE_LISTEN, else ${IDGATE_ADDRESS})
  --spoe ADDRS      the SPOE agent(s), mode spoe (default: IDGATE_SPOE_LISTEN, else ${SPOE_AGENT_ADDRESS})
  --check-dst DST   mode lua: the unix socket the Lua check calls through HAProxy, in a directory
                    only HAProxy's user can enter (default ${CHECK_SOCKET})
                    (with --chroot: default unix@DIR/${CHECK_SOCKET_NAME})
  --user NAME       mode lua: HAProxy's \`user\` setting, when it has one (Debian: haproxy): the check
                    socket is made that user's, or HAProxy could not connect to it once it drops root
  --chroot DIR      mode lua: HAProxy's \`chroot\` setting, when it has one (Debian: /var/lib/haproxy):
                    the check socket must be inside it
  --auth-rate-limit N  requests to /_auth/ per client address per 10 s before 429 (default ${AUTH_RATE_LIMIT})
  --part PART       print one part only, without comments around it: global, frontend, routing, backends
  --template FILE   print FILE with its lines "@idgate global", "@idgate frontend", "@idgate routing" and
                    "@idgate backends" replaced by the parts of --mode (as the shipped
                    haproxy-conf/haproxy.cfg, one template for both transports)
  --check-secret    print instead the file that gives HAProxy the check secret (the first of
                    IDGATE_CHECK_SECRETS, from the environment): a global section setting
                    IDGATE_CHECK_SECRET, for a file only root reads that HAProxy loads before haproxy.cfg
                    (haproxy -f THAT_FILE -f haproxy.cfg; docs/install.md, "The check secret")
`;

/** `idgate haproxy-config`: the drop-in lines (haproxy-conf/dropin/), filled in; see HAPROXY_CONFIG_HELP. */
function haproxyConfig(args: string[]): number {
  const opts = options(args, { mode: { type: 'string' }, idgate: { type: 'string' }, spoe: { type: 'string' }, 'check-dst': { type: 'string' }, user: { type: 'string' }, chroot: { type: 'string' }, 'auth-rate-limit': { type: 'string' }, part: { type: 'string' }, template: { type: 'string' }, 'check-secret': { type: 'boolean' } });
  if (opts.help) return print(haproxyConfigHelp());
  if (opts['check-secret']) {
    const others = Object.keys(opts).filter((name) => name !== 'check-secret' && name !== 'mode');
    if (others.length > 0) throw new UsageError(`--check-secret takes no other option (--${others[0]})`);
    return print(checkSecretFile());
  }
  const mode = opts.mode ?? 'lua';
  if (mode !== 'lua' && mode !== 'spoe') throw new UsageError(`--mode "${mode}": lua or spoe`);
  if (opts.part !== undefined && !(HAPROXY_PARTS as readonly string[]).includes(opts.part)) throw new UsageError(`--part "${opts.part}": one of ${HAPROXY_PARTS.join(', ')}`);
  if (opts.part !== undefined && opts.template !== undefined) throw new UsageError('give --part or --template, not both');
  for (const flag of ['check-dst', 'user', 'chroot'] as const) {
    if (mode === 'spoe' && opts[flag] !== undefined) throw new UsageError(`--${flag} is for --mode lua (the SPOE transport has no check listener)`);
  }
  if (mode === 'lua' && opts.spoe !== undefined) throw new UsageError('--spoe is for --mode spoe');

  const rateLimit = opts['auth-rate-limit'];
  if (rateLimit !== undefined && !/^[1-9]\d{0,6}$/.test(rateLimit)) throw new UsageError(`--auth-rate-limit "${rateLimit}": a whole number of requests`);
  // Every value is written into the lines (none left to HAProxy's environment), so that each part holds
  // wherever it lands in the file; the defaults are those the lines preset (defaults.ts).
  const spoeListen = process.env.IDGATE_SPOE_LISTEN;
  if (mode === 'spoe' && opts.spoe === undefined && (!spoeListen || spoeListen === 'off')) {
    process.stderr.write(`idgate: note: IDGATE_SPOE_LISTEN is not set, so idgate runs no SPOE agent; set it (e.g. ${SPOE_AGENT_ADDRESS}) where idgate runs\n`);
  }
  const values: HaproxyValues = {
    idgate: opts.idgate !== undefined ? addresses('--idgate', opts.idgate) : addresses('IDGATE_LISTEN', process.env.IDGATE_LISTEN || IDGATE_ADDRESS, '--idgate'),
    ...(mode === 'spoe'
      ? { spoe: opts.spoe !== undefined ? addresses('--spoe', opts.spoe) : addresses('IDGATE_SPOE_LISTEN', spoeListen && spoeListen !== 'off' ? spoeListen : SPOE_AGENT_ADDRESS, '--spoe') }
      : {}),
    ...(mode === 'lua'
      ? {
          checkDst: opts['check-dst'] ?? (opts.chroot !== undefined ? `unix@${opts.chroot.replace(/\/+$/, '')}/${CHECK_SOCKET_NAME}` : CHECK_SOCKET),
          ...(opts.chroot === undefined ? {} : { chroot: opts.chroot }),
          ...(opts.user === undefined ? {} : { haproxyUser: opts.user }),
        }
      : {}),
    authRateLimit: Number(rateLimit ?? AUTH_RATE_LIMIT),
  };
  try {
    if (opts.template !== undefined) {
      let template: string;
      try {
        template = fs.readFileSync(opts.template, 'utf8');
      } catch (err) {
        throw new UsageError(`cannot read --template ${opts.template}: ${(err as Error).message}`);
      }
      return print(`${renderHaproxyTemplate(template, mode, values, opts.template).replace(/\n*$/, '')}\n`);
    }
    if (opts.part !== undefined) return print(haproxyPart(opts.part as HaproxyPart, mode, values));
    return print(allParts(mode, values));
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError((err as Error).message);
  }
}

/**
 * `idgate haproxy-config --check-secret`: HAProxy's IDGATE_CHECK_SECRET as a config file of its own. Loaded
 * before haproxy.cfg, it is read again on every reload (an environment file is read only at start), and
 * it keeps the secret out of haproxy.cfg, which is often world-readable.
 */
function checkSecretFile(): string {
  const secrets = (process.env.IDGATE_CHECK_SECRETS ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (secrets.length === 0) throw new UsageError("--check-secret: IDGATE_CHECK_SECRETS is not set; run it with idgate's settings in the environment (docs/install.md)");
  const problems = checkSecretProblems(secrets);
  if (problems.length > 0) throw new UsageError(problems[0]!);
  return `# idgate ${version()}: HAProxy's check secret (idgate haproxy-config --check-secret), the first of idgate's
# IDGATE_CHECK_SECRETS. Keep this file where only root reads it, and load it before haproxy.cfg:
#   haproxy -f THIS_FILE -f /etc/haproxy/haproxy.cfg
global
    setenv IDGATE_CHECK_SECRET ${secrets[0]}
`;
}

function allParts(mode: HaproxyMode, values: HaproxyValues): string {
  const part = (name: HaproxyPart) => haproxyPart(name, mode, values).replace(/\n*$/, '\n');
  return `# idgate ${version()}: HAProxy 2.6 lines for the ${mode === 'lua' ? 'Lua (HTTP check)' : 'SPOE'} transport (idgate haproxy-config --mode ${mode}).
# Four parts, each for its place in your haproxy.cfg; docs/haproxy.md explains every line.

# ==== 1. global: add these lines to your global section (as here, a global section of its own works too)
global
${part('global')}
# ==== 2. frontend: in each frontend idgate protects, right after its bind lines, before any rule of yours
${part('frontend')}
# ==== 3. routing: in the same frontend, before your own use_backend lines
${part('routing')}
# ==== 4. backends: at the end of the file
${part('backends')}`;
}

/**
 * A comma-separated list of host:port for server lines, from `source` (a flag or a setting); a wildcard
 * listen address is no address to connect to, so it asks for `flag`.
 */
function addresses(source: string, value: string, flag = source): string[] {
  const list = value.split(',').map((v) => v.trim()).filter(Boolean);
  if (list.length === 0) throw new UsageError(`${source}: no address`);
  for (const address of list) {
    if (/^(0\.0\.0\.0|\[::\]|::|\*)?:\d+$/.test(address)) {
      throw new UsageError(`${source}: "${address}" listens on every address; give the address HAProxy reaches idgate at with ${flag} HOST:PORT`);
    }
  }
  return list;
}

function print(text: string): number {
  process.stdout.write(text);
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [command = 'serve', ...rest] = argv;
  switch (command) {
    case 'serve':
      if (rest.includes('--help')) return print('usage: idgate serve\n  runs idgate with the IDGATE_* settings (see idgate --help); SIGHUP reloads the policy\n');
      return serve();
    case 'check-config':
      return checkConfig(rest);
    case 'explain':
      return explain(rest);
    case 'sessions':
      return sessions(rest);
    case 'settings':
      return settings(rest);
    case 'haproxy-config':
      return haproxyConfig(rest);
    case 'version':
    case '--version':
      return print(`idgate ${version()}\n${describeSessionRecordVersions()}\n`);
    case '--help':
    case 'help':
    case '-h':
      return print(HELP);
    default:
      throw new UsageError(`unknown command "${command}"; see idgate --help`);
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`idgate: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
