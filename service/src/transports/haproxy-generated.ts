// The HAProxy lines written from idgate's own tables rather than by hand: the SPOE messages' arguments
// (INPUT_FIELDS, COOKIE_LINE_ARGUMENTS), the identity headers the SPOE lines set (OUTCOME_FIELDS), the defaults HAProxy presets
// (defaults.ts) and the 503 page (defaults.ts). The shipped files under haproxy-conf/ hold these lines
// between markers (the page is a file of its own), so HAProxy reads them as they are; the test
// test/unit/haproxy-generated.test.ts holds every one equal to what is generated here, and rewrites them.
import { CHECK_SECRET_ARGUMENT } from './check-secret.js';
import { COOKIE_LINE_ARGUMENTS } from './spoe-agent.js';
import { INPUT_FIELDS, OUTCOME_FIELDS } from '../check/check-wire.js';
import {
  AUTH_RATE_LIMIT, CANARY_ADDRESS, CHECK_SOCKET, FRONT_ADDRESS, IDGATE_ADDRESS, LUA_CHECK_BACKSTOP_MS, SPOE_AGENT_ADDRESS,
  TLS_FRONT_ADDRESS, UNAVAILABLE_PAGE, UNAVAILABLE_RETRY_AFTER_SECONDS, UPSTREAM_ADDRESS,
} from '../defaults.js';

/** One run of generated lines in a shipped file: where it is, what it is made from, and the lines. */
export interface GeneratedBlock {
  /** The file under the project's root. */
  readonly file: string;
  /** The first line of the run (it names the source); the run ends at END_OF_GENERATED_LINES. */
  readonly begin: string;
  /** The lines between the two markers. Every run of the file that starts with `begin` holds them. */
  readonly lines: readonly string[];
}

export const END_OF_GENERATED_LINES = '# end of the generated lines';

const INDENT = '    ';
const begin = (source: string) => `# generated from ${source}; do not edit by hand`;

/**
 * The arguments of the SPOE messages `idgate-check` and `idgate-check-retry`: each fact of INPUT_FIELDS
 * under its argument name, filled by its fetch, and HAProxy's check secret (check-secret.ts).
 */
export function spoeArgsLine(): string {
  return `args ${[...INPUT_FIELDS.map((f) => `${f.argument}=${f.fetch}`), `${CHECK_SECRET_ARGUMENT}=env(IDGATE_CHECK_SECRET)`].join(' ')}`;
}

/** The arguments of `idgate-cookies` and `idgate-cookies-retry`: the first Cookie lines, one argument each. */
export function spoeCookieArgsLine(): string {
  return `args ${COOKIE_LINE_ARGUMENTS.map((a) => `${a.argument}=${a.fetch}`).join(' ')}`;
}

/**
 * The SPOE lines that give the app idgate's identity, one header per identity field of OUTCOME_FIELDS: the
 * agent's variable when it is set (a flag: `true`), and nothing else (the client's own went before the check).
 */
export function spoeIdentityHeaderLines(): string[] {
  return OUTCOME_FIELDS.filter((f) => f.name.startsWith('identity.')).map((f) => {
    const found = `{ var(txn.idgate.${f.variable}) -m found }`;
    return `http-request set-header ${f.header} ${f.flag ? 'true' : `%[var(txn.idgate.${f.variable})]`} if ${found}`;
  });
}

/** A variable HAProxy presets (`presetenv`: its environment may say otherwise) and the lines read. */
export interface HaproxyPreset {
  readonly name: string;
  readonly value: string;
}

/** What the template presets in its own global section: the addresses it reads. */
export const TEMPLATE_PRESETS: readonly HaproxyPreset[] = [
  { name: 'IDGATE_FRONT_BIND', value: FRONT_ADDRESS },
  { name: 'IDGATE_TLS_BIND', value: TLS_FRONT_ADDRESS },
  { name: 'IDGATE_UPSTREAM_ADDR', value: UPSTREAM_ADDRESS },
  { name: 'IDGATE_CANARY_ADDR', value: CANARY_ADDRESS },
  { name: 'IDGATE_ADDR', value: IDGATE_ADDRESS },
  { name: 'IDGATE_ADDR_2', value: '"${IDGATE_ADDR}"' },
  { name: 'IDGATE_SPOE_ADDR', value: SPOE_AGENT_ADDRESS },
  { name: 'IDGATE_SPOE_ADDR_2', value: '"${IDGATE_SPOE_ADDR}"' },
];

/** What the global lines of both transports preset (dropin/global.cfg). */
export const GLOBAL_PRESETS: readonly HaproxyPreset[] = [{ name: 'IDGATE_AUTH_RATE_LIMIT', value: String(AUTH_RATE_LIMIT) }];

/** What the Lua transport's global lines preset (dropin/global-lua.cfg), which idgate.lua reads. */
export const LUA_PRESETS: readonly HaproxyPreset[] = [
  { name: 'IDGATE_CHECK_DST', value: CHECK_SOCKET },
  { name: 'IDGATE_CHECK_TIMEOUT_MS', value: String(LUA_CHECK_BACKSTOP_MS) },
];

const presetLines = (presets: readonly HaproxyPreset[]) => presets.map((p) => `presetenv ${p.name} ${p.value}`);

/** The file HAProxy answers a check's 503 with (an errorfile: a whole HTTP response), which idgate.lua reads too. */
export const UNAVAILABLE_FILE = 'idgate-unavailable.http';

/** The 503 response in HAProxy's errorfile form: status line, headers, a blank line, the page; CRLF ends each line. */
export function unavailableResponse(): string {
  return [
    'HTTP/1.1 503 Service Unavailable',
    'Content-Type: text/html; charset=utf-8',
    'Cache-Control: no-store',
    `Retry-After: ${UNAVAILABLE_RETRY_AFTER_SECONDS}`,
    `Content-Length: ${Buffer.byteLength(UNAVAILABLE_PAGE)}`,
    '',
    UNAVAILABLE_PAGE,
  ].join('\r\n');
}

/** Every run of generated lines in the shipped files under haproxy-conf/. */
export function generatedBlocks(): GeneratedBlock[] {
  const indented = (lines: string[]) => lines.map((l) => INDENT + l);
  return [
    { file: 'haproxy-conf/haproxy.cfg', begin: INDENT + begin('service/src/defaults.ts'), lines: indented(presetLines(TEMPLATE_PRESETS)) },
    { file: 'haproxy-conf/dropin/global.cfg', begin: INDENT + begin('service/src/defaults.ts'), lines: indented(presetLines(GLOBAL_PRESETS)) },
    { file: 'haproxy-conf/dropin/global-lua.cfg', begin: INDENT + begin('service/src/defaults.ts'), lines: indented(presetLines(LUA_PRESETS)) },
    { file: 'haproxy-conf/spoe-idgate.conf', begin: INDENT + begin('INPUT_FIELDS in service/src/check/check-wire.ts'), lines: indented([spoeArgsLine()]) },
    { file: 'haproxy-conf/spoe-idgate.conf', begin: INDENT + begin('COOKIE_LINE_ARGUMENTS in service/src/transports/spoe-agent.ts'), lines: indented([spoeCookieArgsLine()]) },
    { file: 'haproxy-conf/dropin/frontend-spoe.cfg', begin: INDENT + begin('OUTCOME_FIELDS in service/src/check/check-wire.ts'), lines: indented(spoeIdentityHeaderLines()) },
  ];
}

/**
 * `text` with every run that starts with `block.begin` holding `block.lines`; throws when it has none, or
 * a run without its end.
 */
export function withGeneratedLines(text: string, block: GeneratedBlock): string {
  const lines = text.split('\n');
  const out: string[] = [];
  let runs = 0;
  for (let i = 0; i < lines.length; i++) {
    out.push(lines[i]!);
    if (lines[i] !== block.begin) continue;
    const end = lines.findIndex((l, j) => j > i && l.trim() === END_OF_GENERATED_LINES);
    if (end === -1) throw new Error(`${block.file}:${i + 1}: generated lines without "${END_OF_GENERATED_LINES}" after them`);
    out.push(...block.lines, lines[end]!);
    i = end;
    runs++;
  }
  if (runs === 0) throw new Error(`${block.file}: no "${block.begin.trim()}" line`);
  return out.join('\n');
}
