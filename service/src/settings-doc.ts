// The settings reference of docs/configuration.md, generated from SETTINGS (config/settings.ts) so that it never
// drifts: `idgate settings --markdown` prints it, and a unit test fails when the file holds anything else
// between its markers. Only the grouping by concern lives here; names, defaults and meanings stay in SETTINGS.
import { describeValues, SETTINGS, type Setting } from './config/settings.js';

/** One section of the reference: a concern and the settings that belong to it, in SETTINGS order. */
interface Concern {
  readonly title: string;
  /** Settings named here, or (`prefix`) every setting whose name starts with it and that no earlier concern named. */
  readonly settings?: readonly string[];
  readonly prefix?: string;
}

// Every setting must land in exactly one concern: settingsReference() throws naming one that does not.
const CONCERNS: readonly Concern[] = [
  { title: 'OIDC login', settings: ['IDGATE_ISSUER', 'IDGATE_CLIENT_ID', 'IDGATE_CLIENT_SECRET', 'IDGATE_PUBLIC_URL', 'IDGATE_REDIRECT_URL', 'IDGATE_SCOPES', 'IDGATE_GROUPS_CLAIM', 'IDGATE_ROLES_CLAIM', 'IDGATE_TRUST_UNVERIFIED_EMAIL', 'IDGATE_ALLOWED_REDIRECT_HOSTS', 'IDGATE_LOGIN_TTL', 'IDGATE_INSECURE_HTTP', 'IDGATE_OKTA_EVENT_HOOK_SECRET'] },
  { title: 'Sessions and cookies', settings: ['IDGATE_COOKIE_SECRETS', 'IDGATE_COOKIE_NAME', 'IDGATE_COOKIE_DOMAIN', 'IDGATE_SESSION_IDLE_TTL', 'IDGATE_SESSION_MAX_AGE', 'IDGATE_SESSION_CACHE_MS', 'IDGATE_SESSION_CACHE_SIZE'] },
  { title: 'Bearer tokens (machine clients)', settings: ['IDGATE_JWT_AUDIENCES', 'IDGATE_JWT_CLIENT_IDS', 'IDGATE_JWT_ANY_CLIENT', 'IDGATE_JWT_ALGORITHMS', 'IDGATE_BEARER_ISSUERS', 'IDGATE_CLOCK_SKEW', 'IDGATE_DPOP_MAX_AGE', 'IDGATE_DPOP_ALGORITHMS', 'IDGATE_DPOP_NONCE', 'IDGATE_JWKS_CACHE', 'IDGATE_JWKS_COOLDOWN', 'IDGATE_INTROSPECTION_CACHE', 'IDGATE_INTROSPECTION_CACHE_SIZE'] },
  { title: 'Redis', prefix: 'IDGATE_REDIS_' },
  { title: 'Policy', settings: ['IDGATE_POLICY_FILE'] },
  { title: 'Transports: HTTP check and SPOE agent', settings: ['IDGATE_LISTEN', 'IDGATE_TRUSTED_PROXIES', 'IDGATE_CHECK_SECRETS', 'IDGATE_SPOE_LISTEN', 'IDGATE_SPOE_MAX_CONNECTIONS', 'IDGATE_SPOE_MAX_INFLIGHT', 'IDGATE_SHUTDOWN_DRAIN_MS'] },
  { title: 'Limits', settings: ['IDGATE_LOGIN_MAX_PENDING_PER_BROWSER', 'IDGATE_LOGIN_MAX_PENDING', 'IDGATE_INTROSPECTION_MAX_INFLIGHT_PER_SOURCE', 'IDGATE_INTROSPECTION_CALLS_PER_SOURCE'] },
  { title: 'Logging', settings: ['IDGATE_LOG_LEVEL', 'IDGATE_LOG_FILE'] },
];

export const REFERENCE_BEGIN = '<!-- settings reference: generated from SETTINGS in service/src/config/settings.ts by `idgate settings --markdown`; do not edit by hand -->';
export const REFERENCE_END = '<!-- end of the settings reference -->';

/** The settings grouped by concern, in CONCERNS order, each group in SETTINGS order. */
export function settingsByConcern(settings: readonly Setting[] = SETTINGS): { title: string; settings: Setting[] }[] {
  const placed = new Map<string, string>();
  const groups = CONCERNS.map((concern) => {
    const members = settings.filter((s) => (concern.settings ? concern.settings.includes(s.env) : !placed.has(s.env) && s.env.startsWith(concern.prefix!)));
    for (const s of members) {
      if (placed.has(s.env)) throw new Error(`${s.env} is in two concerns (${placed.get(s.env)}, ${concern.title}) in service/src/settings-doc.ts`);
      placed.set(s.env, concern.title);
    }
    return { title: concern.title, settings: members };
  });
  for (const s of settings) {
    if (!placed.has(s.env)) throw new Error(`${s.env} belongs to no concern: add it to CONCERNS in service/src/settings-doc.ts`);
  }
  return groups;
}

/** The Markdown reference: one table per concern (setting, file key, value, default, meaning). */
export function settingsReference(settings: readonly Setting[] = SETTINGS): string {
  const out: string[] = [REFERENCE_BEGIN, ''];
  for (const group of settingsByConcern(settings)) {
    out.push(`### ${group.title}`, '', '| setting | file key | value | default | meaning |', '|---|---|---|---|---|');
    for (const s of group.settings) {
      const example = s.example !== s.default ? ` E.g. \`${s.example}\`.` : '';
      out.push(`| \`${s.env}\` | \`${s.key}\` | ${describeValues(s)} | ${defaultText(s)} | ${cell(s.doc)}.${cell(example)} |`);
    }
    out.push('');
  }
  out.push(REFERENCE_END);
  return out.join('\n');
}

/** `doc` with the region between the markers replaced by `reference`; throws when the markers are missing. */
export function withReference(doc: string, reference: string = settingsReference()): string {
  const begin = doc.indexOf(REFERENCE_BEGIN);
  const end = doc.indexOf(REFERENCE_END);
  if (begin === -1 || end === -1 || end < begin) throw new Error('the settings reference markers are missing');
  return doc.slice(0, begin) + reference + doc.slice(end + REFERENCE_END.length);
}

function defaultText(s: Setting): string {
  if (s.default === undefined) return s.optional ? 'unset' : '**required**';
  if (s.default === '') return 'empty';
  return `\`${s.default}\``;
}

/**
 * A table cell. Outside code spans, Markdown would read `<x>` as a tag and `*` or a word-initial `_` as
 * emphasis (`*.domain`, `__Host-`): those are escaped. Pipes are escaped everywhere.
 */
function cell(text: string): string {
  const plain = (part: string) =>
    part
      .replace(/</g, '&lt;')
      .replace(/>/g, '&gt;')
      .replace(/\*/g, '\\*')
      .replace(/(^|[^A-Za-z0-9_])(_+)/g, (_m, before: string, underscores: string) => before + underscores.replace(/_/g, '\\_'));
  return text
    .split('`')
    .map((part, i) => (i % 2 === 1 ? part : plain(part)))
    .join('`')
    .replace(/\|/g, '\\|');
}
