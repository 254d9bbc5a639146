// The HAProxy lines idgate needs, for either transport, from haproxy-conf/dropin/: printed for an
// existing haproxy.cfg (`idgate haproxy-config`), and filled into a template's `@idgate <part>` lines
// (the shipped haproxy.cfg, one template for both transports, rendered this way by the demo, the tests
// and the bench too). The transport is chosen here, once, by the parts picked for it. One copy of every
// line: the files in dropin/ own them (some written from idgate's tables: haproxy-generated.ts), this
// module only assembles and fills them.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export type HaproxyMode = 'lua' | 'spoe';

/**
 * Where each part goes in a haproxy.cfg:
 *   global    the global section
 *   frontend  each protected frontend, right after its bind lines, before any rule of its own
 *   routing   the same frontend, before its own use_backend lines
 *   backends  anywhere after the frontends (idgate's backends, and the Lua check's listener)
 */
export const HAPROXY_PARTS = ['global', 'frontend', 'routing', 'backends'] as const;
export type HaproxyPart = (typeof HAPROXY_PARTS)[number];

/** The files of each part, in order: the lines both transports share, then the transport's own. */
const PART_FILES: Record<HaproxyPart, Record<HaproxyMode, string[]>> = {
  global: { lua: ['global.cfg', 'global-lua.cfg'], spoe: ['global.cfg'] },
  frontend: { lua: ['frontend.cfg', 'frontend-lua.cfg'], spoe: ['frontend.cfg', 'frontend-spoe.cfg'] },
  routing: { lua: ['routing.cfg'], spoe: ['routing.cfg'] },
  backends: { lua: ['backends.cfg', 'backends-lua.cfg'], spoe: ['backends.cfg', 'backends-spoe.cfg'] },
};

/**
 * The check of each transport: the lines of the frontend part that ask idgate and act on its answer
 * (HaproxyValues.replaceCheck leaves them out).
 */
const CHECK_FILES: Record<HaproxyMode, string> = { lua: 'frontend-lua.cfg', spoe: 'frontend-spoe.cfg' };

/** What fills the lines in. Every field is optional: what is absent stays as HAProxy reads it from its environment ("${IDGATE_ADDR}"). */
export interface HaproxyValues {
  /** Directory holding idgate.lua and spoe-idgate.conf, written into lua-load and the SPOE filter. Default: haproxyConfDir(). */
  confDir?: string;
  /** Every idgate replica's HTTP address (IDGATE_LISTEN), host:port: one server line each in be_idgate. */
  idgate?: readonly string[];
  /** Every replica's SPOE agent (IDGATE_SPOE_LISTEN), host:port: one server line each in be_idgate_spoe. */
  spoe?: readonly string[];
  /** The Lua check's listener, unix@/path (the IDGATE_CHECK_DST default in global-lua.cfg). */
  checkDst?: string;
  /** Requests to /_auth/ per client address per 10 s before 429 (IDGATE_AUTH_RATE_LIMIT). */
  authRateLimit?: number;
  /**
   * HAProxy's `user`, when it switches to one (Debian: haproxy): the check listener's socket is then
   * made that user's, else root would own it and HAProxy could not connect to it. Lua transport.
   */
  haproxyUser?: string;
  /** HAProxy's `chroot` (Debian: /var/lib/haproxy): checkDst must lie inside it (idgate.lua connects from there). */
  chroot?: string;
  /**
   * Lines to stand where the transport's check goes (CHECK_FILES), or '' for none: only for the bench's
   * baselines (bench/configs.ts), which measure HAProxy without idgate or with another check. Chosen in
   * code and never by HAProxy's environment, so that no variable of a running site can turn the check off.
   * Default: the check.
   */
  replaceCheck?: string;
}

/** haproxy-conf/ of this copy of idgate: the source tree, the build (dist/) or an installed package. */
export function haproxyConfDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, 'haproxy-conf');
    if (fs.existsSync(path.join(candidate, 'dropin', 'frontend.cfg'))) return candidate;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('cannot find haproxy-conf/dropin/ above the idgate code');
    dir = parent;
  }
}

/** The lines of one part for one transport, filled with `values`. Throws on a value HAProxy could misread. */
export function haproxyPart(part: HaproxyPart, mode: HaproxyMode, values: HaproxyValues = {}): string {
  const confDir = values.confDir ?? haproxyConfDir();
  checkValue('the haproxy-conf directory', confDir, /^[^"$\\\n]+$/);
  const text = PART_FILES[part][mode]
    .map((file) => (file === CHECK_FILES[mode] && values.replaceCheck !== undefined ? values.replaceCheck : fs.readFileSync(path.join(confDir, 'dropin', file), 'utf8')))
    .join('');
  return fill(text, { ...values, confDir });
}

/**
 * A template with its `@idgate <part>` lines replaced by the parts (each part exactly once: a config
 * with the frontend's checks but not their backends, or the reverse, is refused). `source` names the
 * template in errors.
 */
export function renderHaproxyTemplate(template: string, mode: HaproxyMode, values: HaproxyValues = {}, source = 'template'): string {
  const seen = new Map<string, number>();
  const lines = template.split('\n').map((line, index) => {
    if (!line.trim().startsWith('@idgate')) return line;
    const part = /^\s*@idgate\s+(\S+)\s*$/.exec(line)?.[1];
    if (part === undefined || !(HAPROXY_PARTS as readonly string[]).includes(part)) {
      throw new Error(`${source}:${index + 1}: "${line.trim()}" is not one of ${HAPROXY_PARTS.map((p) => `@idgate ${p}`).join(', ')}`);
    }
    if (seen.has(part)) throw new Error(`${source}:${index + 1}: @idgate ${part} again (first at line ${seen.get(part)})`);
    seen.set(part, index + 1);
    return haproxyPart(part as HaproxyPart, mode, values).replace(/\n$/, '');
  });
  const missing = HAPROXY_PARTS.filter((p) => !seen.has(p));
  if (missing.length) throw new Error(`${source}: no ${missing.map((p) => `@idgate ${p}`).join(', ')} line (a template needs each part once)`);
  return lines.join('\n');
}

function fill(text: string, values: HaproxyValues & { confDir: string }): string {
  let out = text.replaceAll('${IDGATE_HAPROXY_CONF}', values.confDir);
  if (values.idgate) out = serverLines(out, 'IDGATE_ADDR', 'idgate1', values.idgate);
  if (values.spoe) out = serverLines(out, 'IDGATE_SPOE_ADDR', 'idgate1-spoe', values.spoe);
  if (values.checkDst !== undefined) {
    // A unix socket only: see global-lua.cfg for why never a TCP port or an abstract socket.
    checkValue('the check listener', values.checkDst, /^unix@\/[^\s"$\\]+$/);
    out = setVariable(out, 'IDGATE_CHECK_DST', values.checkDst);
  }
  if (values.chroot !== undefined) {
    checkValue('the chroot directory', values.chroot, /^\/[^\s"$\\]*$/);
    const inside = `unix@${values.chroot.replace(/\/+$/, '')}/`;
    if (!values.checkDst?.startsWith(inside)) throw new Error(`the check listener (${values.checkDst ?? 'unset'}) must be inside HAProxy's chroot ${values.chroot}: the Lua check connects from there`);
    out = out.replace(/^(\s*)(setenv IDGATE_CHECK_DST .*)$/m, `$1$2\n$1# HAProxy's chroot: idgate.lua connects to the socket's path inside it.\n$1setenv IDGATE_CHECK_CHROOT ${values.chroot}`);
  }
  if (values.haproxyUser !== undefined) {
    checkValue('the HAProxy user', values.haproxyUser, /^[a-z_][a-z0-9_-]*\$?$/i);
    out = out.replace(/^(\s*bind "?\S+"? mode 600)$/m, `$1 user ${values.haproxyUser}`);
  }
  if (values.authRateLimit !== undefined) {
    if (!Number.isInteger(values.authRateLimit) || values.authRateLimit < 1) throw new Error(`the /_auth/ rate limit must be a whole number of requests, not ${values.authRateLimit}`);
    out = setVariable(out, 'IDGATE_AUTH_RATE_LIMIT', String(values.authRateLimit));
  }
  return out;
}

/**
 * A variable the lines preset in the global part (`presetenv NAME default`) and read elsewhere
 * ("${NAME}"), given a value: written into every line that reads it, so that the lines hold no matter
 * where each part lands in the file (HAProxy reads "${NAME}" as it parses the line), and set rather
 * than preset in the global part (idgate.lua reads IDGATE_CHECK_DST from the environment at run time).
 */
function setVariable(text: string, name: string, value: string): string {
  return text.replace(new RegExp(`^(\\s*)presetenv ${name} .*$`, 'm'), `$1setenv ${name} ${value}`).replaceAll(`"\${${name}}"`, value);
}

/**
 * One server line per address where the part has the first replica's ("${VAR}", named `first`), and
 * none of the second replica's ("${VAR_2}"): `server idgate1 "${IDGATE_ADDR}"` becomes
 * `server idgate1 10.0.0.5:4180`, `server idgate2 10.0.0.6:4180`...
 */
function serverLines(text: string, variable: string, first: string, addresses: readonly string[]): string {
  if (addresses.length === 0) throw new Error(`no address given for ${variable}`);
  for (const address of addresses) checkValue(`the address "${address}"`, address, /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/);
  const lines: string[] = [];
  for (const line of text.split('\n')) {
    if (line.includes(`"\${${variable}_2}"`)) continue;
    if (line.includes(`"\${${variable}}"`) && line.includes(first)) {
      addresses.forEach((address, i) => lines.push(line.replace(first, first.replace('1', String(i + 1))).replace(`"\${${variable}}"`, address)));
      continue;
    }
    lines.push(line);
  }
  return lines.join('\n');
}

function checkValue(what: string, value: string, pattern: RegExp): void {
  if (!pattern.test(value)) throw new Error(`${what} cannot go into an HAProxy configuration as it is ("${value}")`);
}
