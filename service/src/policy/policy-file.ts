// The policy file: YAML read, validated (every problem with its file and line, unknown keys included),
// compiled into the Policy that `decide` reads. Reloading it is policy-holder.ts.
import fs from 'node:fs';
import { LineCounter, isMap, isScalar, isSeq, parseDocument, type Document, type Node } from 'yaml';
import { RE2JS } from 're2js';
import { canonicalPath, canonicalSpelling, caseFolded } from '../paths.js';
import { NEVER_ALLOWED_METHODS, asksForToken, indexRules, type Condition, type Credential, type PathMatcher, type Policy, type PolicyRule } from './policy.js';
import { CONDITION_ENTRIES, planOf, type ConditionEntry } from './policy-conditions.js';

export interface PolicyLoadResult {
  readonly policy: Policy | undefined;
  /** "FILE:LINE: what is wrong (what was expected)", one per problem. */
  readonly problems: readonly string[];
  /** "FILE:LINE: warning: what may not be meant", for a policy that loads all the same. */
  readonly warnings: readonly string[];
}

const TOP_KEYS = ['version', 'default', 'rules'];
const RULE_KEYS = ['id', 'description', 'host', 'path', 'path_regex', 'format_suffix', 'case_sensitive', 'methods', 'cors_preflight', 'method_override', 'public', 'authenticated', 'deny', 'allow', 'allow_any', 'accept', 'api', 'backend', 'backends'];
const ACCESS_KEYS = ['public', 'authenticated', 'deny', 'allow', 'allow_any'];
// A Map, not an object: a condition named "constructor" or "toString" must be unknown, not found on the prototype.
const CONDITION_BY_KEY: ReadonlyMap<string, ConditionEntry> = new Map(CONDITION_ENTRIES.map((e) => [e.row.key, e]));
const CONDITION_KEYS = CONDITION_ENTRIES.map((e) => e.row.key).join(', ');
const TOKEN_CONDITION_KEYS = CONDITION_ENTRIES.filter((e) => e.row.forTokens).map((e) => e.row.key);
/** For the accept error: what makes a condition ask for a bearer token, in words. */
const TOKEN_KEYS = `via: token, ${TOKEN_CONDITION_KEYS.slice(0, -1).join(', ')} or ${TOKEN_CONDITION_KEYS.at(-1)}`;
const RULE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const BACKEND = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const HOST_PATTERN = /^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\d{1,5})?$/;
const METHOD = /^[A-Z]{1,16}$/;

export function loadPolicyFile(file: string): PolicyLoadResult {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    return { policy: undefined, problems: [`${file}:0: cannot read the policy file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`], warnings: [] };
  }
  return parsePolicy(text, file);
}

/** Parses and validates a policy; `source` names it in problems (a file path). */
export function parsePolicy(text: string, source: string): PolicyLoadResult {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  const problems: string[] = [];
  const at = (node: Node | null | undefined) => (node?.range ? lineCounter.linePos(node.range[0]).line : 0);
  const problem = (node: Node | null | undefined, message: string) => problems.push(`${source}:${at(node)}: ${message}`);
  const warnings: string[] = [];
  const warning = (node: Node | null | undefined, message: string) => warnings.push(`${source}:${at(node)}: warning: ${message}`);

  for (const error of doc.errors) problems.push(`${source}:${error.linePos?.[0]?.line ?? 0}: YAML: ${error.message.split('\n')[0]}`);
  if (problems.length) return { policy: undefined, problems, warnings };

  const top = doc.contents;
  if (!isMap(top)) {
    problem(top, 'the policy must be a mapping with "rules" (a list of rules)');
    return { policy: undefined, problems, warnings };
  }
  for (const pair of top.items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : '';
    if (!TOP_KEYS.includes(key)) problem(pair.key as Node, `unknown key "${key}" (expected one of: ${TOP_KEYS.join(', ')})`);
  }
  const version = top.get('version', true) as Node | undefined;
  if (version !== undefined && !(isScalar(version) && version.value === 1)) problem(version, 'version must be 1');
  const defaultNode = top.get('default', true) as Node | undefined;
  let defaultAccess: Policy['defaultAccess'] = 'deny';
  if (defaultNode !== undefined) {
    const value = isScalar(defaultNode) ? defaultNode.value : undefined;
    if (value === 'deny' || value === 'authenticated') defaultAccess = value;
    else problem(defaultNode, 'default must be "deny" or "authenticated" (what happens when no rule matches)');
  }
  const rulesNode = top.get('rules', true) as Node | undefined;
  if (!isSeq(rulesNode)) {
    problem(rulesNode ?? top, "rules: required, a list of rules (e.g. rules: [{id: everyone, authenticated: true}])");
    return { policy: undefined, problems, warnings };
  }

  const rules: PolicyRule[] = [];
  const ids = new Map<string, number>();
  const regexSources = new Map<string, string>();
  rulesNode.items.forEach((ruleNode, index) => {
    const rule = compileRule(ruleNode as Node, index, { doc, at, problem, warning, ids, regexSources });
    if (rule) rules.push(rule);
  });
  if (problems.length) return { policy: undefined, problems, warnings };
  return { policy: Object.freeze({ rules: Object.freeze(rules), index: indexRules(rules, regexSources), defaultAccess, source }), problems, warnings };
}

interface Context {
  doc: Document;
  at: (node: Node | null | undefined) => number;
  problem: (node: Node | null | undefined, message: string) => void;
  warning: (node: Node | null | undefined, message: string) => void;
  ids: Map<string, number>;
  /** path_regex as written, by rule id (for the index). */
  regexSources: Map<string, string>;
}

function compileRule(node: Node, index: number, ctx: Context): PolicyRule | undefined {
  const { problem, at } = ctx;
  if (!isMap(node)) {
    problem(node, `rule #${index + 1}: must be a mapping with at least "id" and one of ${ACCESS_KEYS.join(', ')}`);
    return undefined;
  }
  const values = new Map<string, Node>();
  for (const pair of node.items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : '';
    values.set(key, pair.value as Node);
  }
  const idNode = values.get('id');
  const id = isScalar(idNode) && typeof idNode.value === 'string' ? idNode.value : undefined;
  const name = id ? `rule "${id}"` : `rule #${index + 1}`;
  const fail = (n: Node | null | undefined, message: string) => problem(n ?? node, `${name}: ${message}`);

  for (const pair of node.items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : '';
    if (!RULE_KEYS.includes(key)) fail(pair.key as Node, `unknown key "${key}" (expected one of: ${RULE_KEYS.join(', ')})`);
  }
  if (!id) fail(idNode, 'id: required, letters, digits, ".", "_", "-" (e.g. id: admin-area)');
  else if (!RULE_ID.test(id)) fail(idNode, `id "${id}": letters, digits, ".", "_", "-" only, 64 at most`);
  else if (ctx.ids.has(id)) fail(idNode, `id "${id}" is already used by the rule at line ${ctx.ids.get(id)}`);
  else ctx.ids.set(id, at(node));

  const strings = (key: string, n: Node | undefined): string[] | undefined => {
    if (n === undefined) return undefined;
    if (isSeq(n) && n.items.length > 0 && n.items.every((i) => isScalar(i) && typeof i.value === 'string' && i.value !== '')) {
      return n.items.map((i) => (i as { value: string }).value);
    }
    fail(n, `${key}: expected a non-empty list of strings (e.g. ${key}: [admins])`);
    return undefined;
  };
  const flag = (key: string): boolean => {
    const n = values.get(key);
    if (n === undefined) return false;
    if (isScalar(n) && typeof n.value === 'boolean') return n.value;
    fail(n, `${key}: expected true or false`);
    return false;
  };
  const text = (key: string): string | undefined => {
    const n = values.get(key);
    if (n === undefined) return undefined;
    if (isScalar(n) && typeof n.value === 'string' && n.value !== '') return n.value;
    fail(n, `${key}: expected a string`);
    return undefined;
  };

  const hostNode = values.get('host');
  let hosts: string[] | undefined;
  if (hostNode !== undefined) {
    hosts = isScalar(hostNode) ? (typeof hostNode.value === 'string' ? [hostNode.value] : []) : strings('host', hostNode);
    for (const h of hosts ?? []) if (!HOST_PATTERN.test(h)) fail(hostNode, `host "${h}": expected a lower-case host name, optionally with :port, or *.domain`);
    if (hosts?.length === 0) fail(hostNode, 'host: expected a host name or a list of them');
  }

  const caseSensitive = flag('case_sensitive');
  let pathPrefix = text('path');
  if (pathPrefix !== undefined) {
    // Requests are matched in canonical form (paths.ts), so a rule written otherwise could never match.
    const canonical = canonicalPath(pathPrefix);
    if (!pathPrefix.startsWith('/')) fail(values.get('path'), `path "${pathPrefix}": must start with "/"`);
    else if (!canonical.ok) fail(values.get('path'), `path "${pathPrefix}": ${canonical.reason.replace('the path holds', 'holds')}, which requests are refused for`);
    else if (canonical.path !== pathPrefix || canonical.query !== '' || pathPrefix.includes('?')) {
      const respelled = respellings(pathPrefix);
      fail(values.get('path'), `path "${pathPrefix}": not in canonical form (requests are matched as "${canonical.path}"${respelled ? `: ${respelled}` : ''}); write that`);
    }
    if (!caseSensitive) pathPrefix = caseFolded(pathPrefix);
  }
  const regexText = text('path_regex');
  let pathRegex: PathMatcher | undefined;
  if (regexText !== undefined) {
    if (pathPrefix !== undefined) fail(values.get('path_regex'), 'path and path_regex exclude each other');
    try {
      // RE2 syntax, matched in linear time: no pattern can stall the check whatever the path. Anchored at
      // the start: "/admin" must not match "/x/admin".
      // A path never holds an escape of a character it spells raw (`%24` is `$`): such a pattern could never match.
      const escaped = [...regexText.matchAll(/%([0-9A-Fa-f]{2})/g)].map((m) => String.fromCharCode(parseInt(m[1]!, 16))).filter((ch) => canonicalSpelling(ch) === ch);
      if (escaped.length) {
        const named = escaped.map((ch) => `${escapeOf(ch)} is ${/[$()*+.?[\]{}|^\\]/.test(ch) ? `\\${ch}` : ch}`).join(', ');
        fail(values.get('path_regex'), `path_regex: paths are matched with these characters decoded, so an escape of one never matches (${named}); write the character`);
      }
      pathRegex = RE2JS.compile(`^(?:${regexText})`, caseSensitive ? 0 : RE2JS.CASE_INSENSITIVE);
      if (id) ctx.regexSources.set(id, regexText);
    } catch (err) {
      fail(values.get('path_regex'), `path_regex: not a valid RE2 regular expression (no lookaround, no backreferences): ${(err as Error).message}`);
    }
  }
  if (values.has('case_sensitive') && pathPrefix === undefined && regexText === undefined) {
    fail(values.get('case_sensitive'), 'case_sensitive: only means something with path or path_regex');
  }
  const formatSuffix = flag('format_suffix');
  if (values.has('format_suffix') && pathPrefix === undefined && regexText === undefined) {
    fail(values.get('format_suffix'), 'format_suffix: only means something with path or path_regex');
  }
  // A trailing slash is matched either way (policy.ts routeMatches); a `.format` suffix only when the
  // rule says so, since only some frameworks route it to the same handler. Saying nothing is what is warned.
  if (regexText !== undefined && /(^|[^\\])\$$/.test(regexText) && !values.has('format_suffix')) {
    ctx.warning(
      values.get('path_regex'),
      `${name}: path_regex ends in "$", so a path with a .format suffix on its last segment (as .../12.json) does not match it, though Rails routes it to the same handler; add format_suffix: true, or format_suffix: false if the app routes no such suffix (a trailing slash is matched either way)`,
    );
  }

  const methodsNode = values.get('methods');
  const methods = strings('methods', methodsNode)?.map((m) => m.toUpperCase());
  for (const m of methods ?? []) if (!METHOD.test(m)) fail(methodsNode, `methods: "${m}" is not an HTTP method`);
  for (const m of methods ?? []) if (NEVER_ALLOWED_METHODS.has(m)) fail(methodsNode, `methods: ${m} is never allowed (CONNECT would tunnel the connection past every check; TRACE echoes credentials back)`);
  const corsNode = values.get('cors_preflight');
  const corsPreflight = text('cors_preflight');
  if (corsPreflight !== undefined && corsPreflight !== 'pass') fail(corsNode, 'cors_preflight: only "cors_preflight: pass" means something (a CORS preflight goes to the app unjudged, without identity)');

  const present = ACCESS_KEYS.filter((k) => values.has(k));
  if (present.length !== 1) {
    fail(node, present.length === 0 ? `needs one of ${ACCESS_KEYS.join(', ')}` : `${present.join(' and ')} exclude each other`);
  }
  let access: PolicyRule['access'] = 'deny';
  let allow: Condition[] | undefined;
  for (const key of ['public', 'authenticated', 'deny'] as const) {
    if (values.has(key)) {
      if (!flag(key)) fail(values.get(key), `${key}: only "${key}: true" means something${key === 'authenticated' ? ' (a signed-in browser session; to let bearer tokens in too, add accept: [session, token])' : ''}`);
      access = key;
    }
  }
  if (values.has('allow')) {
    access = 'restricted';
    const condition = compileCondition(values.get('allow')!, 'allow', fail);
    allow = condition ? [condition] : [];
  }
  if (values.has('allow_any')) {
    access = 'restricted';
    const n = values.get('allow_any')!;
    if (!isSeq(n) || n.items.length === 0) fail(n, 'allow_any: expected a non-empty list of conditions (e.g. allow_any: [{groups: [admins]}, {scopes: [api:read]}])');
    else allow = n.items.map((item, i) => compileCondition(item as Node, `allow_any[${i}]`, fail)).filter((c): c is Condition => c !== undefined);
  }

  const accept = compileAccept(values.get('accept'), access, allow, fail);

  const api = flag('api');
  const backend = text('backend');
  if (backend !== undefined && !BACKEND.test(backend)) fail(values.get('backend'), `backend "${backend}": letters, digits, ".", "_", "-" only`);
  let backends: { when: Condition; backend: string }[] | undefined;
  const backendsNode = values.get('backends');
  if (backendsNode !== undefined) {
    if (!isSeq(backendsNode) || backendsNode.items.length === 0) {
      fail(backendsNode, 'backends: expected a list of {when: {conditions}, backend: name}');
    } else {
      backends = [];
      backendsNode.items.forEach((item, i) => {
        const where = `backends[${i}]`;
        if (!isMap(item)) return fail(item as Node, `${where}: expected {when: {conditions}, backend: name}`);
        for (const pair of item.items) {
          const key = isScalar(pair.key) ? String(pair.key.value) : '';
          if (key !== 'when' && key !== 'backend') fail(pair.key as Node, `${where}: unknown key "${key}" (expected when, backend)`);
        }
        const when = item.get('when', true) as Node | undefined;
        const name = item.get('backend', true) as Node | undefined;
        const condition = when ? compileCondition(when, `${where}.when`, fail) : (fail(item as Node, `${where}.when: required`), undefined);
        const pool = isScalar(name) && typeof name.value === 'string' && BACKEND.test(name.value) ? name.value : undefined;
        if (!pool) fail(name ?? (item as Node), `${where}.backend: required, letters, digits, ".", "_", "-"`);
        if (condition && pool) backends!.push({ when: condition, backend: pool });
      });
    }
  }
  if ((access === 'public' || access === 'deny') && (backend !== undefined || backends !== undefined)) {
    fail(values.get('backend') ?? backendsNode, `backend: a ${access} rule sends no identity, so it chooses no pool`);
  }

  const rule: PolicyRule = {
    id: id ?? `#${index + 1}`,
    line: at(node),
    access,
    api,
    ...(hosts ? { hosts: hosts.map((h) => h.toLowerCase()) } : {}),
    ...(pathPrefix !== undefined ? { pathPrefix } : {}),
    ...(pathRegex ? { pathRegex } : {}),
    ...(caseSensitive ? { caseSensitive } : {}),
    ...(formatSuffix ? { formatSuffix } : {}),
    ...(methods ? { methods } : {}),
    ...(corsPreflight === 'pass' ? { corsPreflight } : {}),
    ...(flag('method_override') ? { methodOverride: true } : {}),
    ...(allow ? { allow } : {}),
    ...(accept ? { accept } : {}),
    ...(backend !== undefined ? { backend } : {}),
    ...(backends ? { backends } : {}),
    ...(text('description') !== undefined ? { description: text('description') } : {}),
  };
  return Object.freeze(rule);
}

const CREDENTIALS: readonly Credential[] = ['session', 'token'];

/** How a rule path's characters are spelled otherwise in canonical form, in words ("%24 is $"), or ''. */
function respellings(rulePath: string): string {
  const found = new Set<string>();
  for (const m of rulePath.matchAll(/%([0-9A-Fa-f]{2})/g)) {
    const ch = String.fromCharCode(parseInt(m[1]!, 16));
    const spelled = canonicalSpelling(ch);
    if (spelled !== m[0] && ch >= ' ' && ch <= '~') found.add(`${m[0]} is ${spelled}`);
  }
  for (const ch of rulePath.replace(/%[0-9A-Fa-f]{2}/g, '')) {
    if (ch >= ' ' && ch <= '~' && ch !== '/' && ch !== '%' && canonicalSpelling(ch) !== ch) found.add(`${ch} is ${canonicalSpelling(ch)}`);
  }
  return [...found].join(', ');
}

function escapeOf(ch: string): string {
  return `%${ch.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`;
}

/**
 * `accept: [session, token]`: which credentials count on the rule. Without it, `authenticated`, `deny` and
 * conditions that do not ask for tokens mean a browser session; a condition asks for tokens with `via:
 * token` or a part only tokens have (`forTokens` in policy-conditions.ts). A list that contradicts the
 * rule's own conditions is an error.
 */
function compileAccept(node: Node | undefined, access: PolicyRule['access'], allow: readonly Condition[] | undefined, fail: (n: Node | null | undefined, message: string) => void): Credential[] | undefined {
  if (node === undefined) return undefined;
  const expected = 'accept: expected a list of session and/or token, the credentials that count on this rule (e.g. accept: [session, token])';
  if (!isSeq(node) || node.items.length === 0 || !node.items.every((i) => isScalar(i) && CREDENTIALS.includes(i.value as Credential))) {
    fail(node, expected);
    return undefined;
  }
  const accept = [...new Set(node.items.map((i) => (i as { value: Credential }).value))];
  if (accept.length !== node.items.length) fail(node, 'accept: each credential once');
  if (access === 'public') fail(node, 'accept: a public rule needs no credentials');
  for (const condition of allow ?? []) {
    if (asksForToken(condition) && !accept.includes('token')) fail(node, `accept: leaves out token, but a condition of this rule asks for a bearer token (${TOKEN_KEYS})`);
    if (condition.via === 'session' && !accept.includes('session')) fail(node, 'accept: leaves out session, but a condition of this rule asks for via: session');
  }
  return accept;
}

function compileCondition(node: Node, where: string, fail: (n: Node | null | undefined, message: string) => void): Condition | undefined {
  if (!isMap(node) || node.items.length === 0) {
    fail(node, `${where}: expected a mapping of conditions (e.g. {groups: [admins]}; known: ${CONDITION_KEYS})`);
    return undefined;
  }
  const condition: Record<string, unknown> = {};
  for (const pair of node.items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : '';
    const entry = CONDITION_BY_KEY.get(key);
    if (!entry) {
      fail(pair.key as Node, `${where}: unknown condition "${key}" (expected one of: ${CONDITION_KEYS})`);
      continue;
    }
    const value = entry.row.parse(plainValue(pair.value as Node));
    if (value === undefined) fail(pair.value as Node, `${where}.${key}: ${entry.row.expected}`);
    else condition[entry.field] = value;
  }
  const compiled = Object.freeze(condition) as Condition;
  planOf(compiled); // at load, so that no request pays for it
  return compiled;
}

/**
 * A condition's value as plain data for its row: scalars and lists of them. Anything else (a mapping, an
 * alias) becomes undefined, which no row accepts.
 */
function plainValue(node: Node | null): unknown {
  if (isScalar(node)) return node.value;
  if (isSeq(node)) return node.items.map((item) => plainValue(item as Node));
  return undefined;
}
