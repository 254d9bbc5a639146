// Tokens of Okta's org-wide audience (api://default) count only where the clients are named, an audience
// of the API's own is used, or the operator said any app's tokens may: each case is a policy and the
// settings it meets, and the problems check-config, start and reload would report.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig, type Config } from '../../service/src/config.js';
import { parsePolicy } from '../../service/src/policy/policy-file.js';
import { PolicyHolder } from '../../service/src/policy/policy-holder.js';
import { orgWideAudienceProblems } from '../../service/src/tokens/org-wide-audience.js';
import { createLogger } from '../../service/src/audit.js';
import { Metrics } from '../../service/src/metrics.js';

const PRIMARY = 'https://dev-123456.okta.com/oauth2/default';
const OTHER = 'https://dev-123456.okta.com/oauth2/aus-reports';
const base = {
  IDGATE_ISSUER: PRIMARY,
  IDGATE_CLIENT_ID: 'client',
  IDGATE_CLIENT_SECRET: 'super-secret-value',
  IDGATE_PUBLIC_URL: 'https://app.example.com',
  IDGATE_COOKIE_SECRETS: 'a'.repeat(32),
  IDGATE_CHECK_SECRETS: 'c'.repeat(32),
};

function configOf(env: Record<string, string>): Config {
  const { config, problems } = loadConfig({ ...base, ...env });
  if (!config) throw new Error(problems.join('\n'));
  return config;
}

/** The problems of a policy (its rules, YAML) with the settings `env`: the rule ids named. */
function rulesRefused(env: Record<string, string>, rules: string): string[] {
  const { policy, problems } = parsePolicy(`version: 1\nrules:\n${rules}`, 'policy.yaml');
  if (!policy) throw new Error(problems.join('\n'));
  return orgWideAudienceProblems(configOf(env), policy).map((line) => /rule "([^"]+)"/.exec(line)![1]!);
}

const API_BY_SCOPE = `  - id: api\n    path: /api/\n    allow:\n      scopes: [api:read]\n`;
const ISSUERS_WITH_OTHER = (other: Record<string, unknown>) =>
  JSON.stringify([{ issuer: PRIMARY, audiences: ['api://idgate'] }, { issuer: OTHER, audiences: ['api://default'], ...other }]);

describe('a policy where bearer tokens count, with the audience api://default', () => {
  test.each<[string, Record<string, string>, string, string[]]>([
    ['on a rule by scope alone, nothing naming clients: refused', {}, API_BY_SCOPE, ['api']],
    ['with clients on the rule: fine', {}, `  - id: api\n    path: /api/\n    allow:\n      scopes: [api:read]\n      clients: [0oa-ci-bot]\n`, []],
    ['with IDGATE_JWT_CLIENT_IDS: fine', { IDGATE_JWT_CLIENT_IDS: '0oa-ci-bot' }, API_BY_SCOPE, []],
    ['acknowledged with IDGATE_JWT_ANY_CLIENT=1: fine', { IDGATE_JWT_ANY_CLIENT: '1' }, API_BY_SCOPE, []],
    ['changed to an audience of the API\'s own: fine', { IDGATE_JWT_AUDIENCES: 'api://idgate' }, API_BY_SCOPE, []],
    ['next to the API\'s own audience: still refused', { IDGATE_JWT_AUDIENCES: 'api://idgate,api://default' }, API_BY_SCOPE, ['api']],
    ['where no rule takes tokens: fine', {}, `  - id: app\n    path: /\n    authenticated: true\n`, []],
    ['on an authenticated rule that accepts tokens: refused', {}, `  - id: app\n    path: /\n    authenticated: true\n    accept: [session, token]\n`, ['app']],
    ['on a rule with groups that accepts tokens: refused', {}, `  - id: admin\n    path: /admin/\n    allow:\n      groups: [admins]\n    accept: [session, token]\n`, ['admin']],
    ['on a rule whose session alternative has no clients and whose token one has: fine', {}, `  - id: api\n    path: /api/\n    allow_any:\n      - groups: [admins]\n      - scopes: [api:read]\n        clients: [0oa-ci-bot]\n`, []],
    ['on a public or deny rule: fine', {}, `  - id: open\n    path: /public/\n    public: true\n  - id: closed\n    path: /closed/\n    deny: true\n`, []],
    ['of a second issuer, on a rule naming it: refused', { IDGATE_BEARER_ISSUERS: ISSUERS_WITH_OTHER({}) }, `  - id: reports\n    path: /reports/\n    allow:\n      scopes: [reports]\n      issuers: [${OTHER}]\n`, ['reports']],
    ['of a second issuer, on a rule for the primary issuer only: fine', { IDGATE_BEARER_ISSUERS: ISSUERS_WITH_OTHER({}) }, API_BY_SCOPE, []],
    ['of a second issuer with client_ids: fine', { IDGATE_BEARER_ISSUERS: ISSUERS_WITH_OTHER({ client_ids: ['0oa-reports'] }) }, `  - id: reports\n    path: /reports/\n    allow:\n      scopes: [reports]\n      issuers: [${OTHER}]\n`, []],
    ['of a second issuer with any_client: fine', { IDGATE_BEARER_ISSUERS: ISSUERS_WITH_OTHER({ any_client: true }) }, `  - id: reports\n    path: /reports/\n    allow:\n      scopes: [reports]\n      issuers: [${OTHER}]\n`, []],
  ])('%s', (_name, env, rules, refused) => {
    expect(rulesRefused(env, rules)).toEqual(refused);
  });

  test('is refused with a line saying where, why and the three ways out', () => {
    const { policy } = parsePolicy(`version: 1\nrules:\n${API_BY_SCOPE}`, 'policy.yaml');
    expect(orgWideAudienceProblems(configOf({}), policy!)).toEqual([
      `policy.yaml:3: rule "api": bearer tokens of ${PRIMARY} count here with the audience api://default, which Okta's default server puts on every token, whichever app of the org asked for it; name the clients (clients: [...] on the rule, or IDGATE_JWT_CLIENT_IDS / the IDGATE_BEARER_ISSUERS entry's "client_ids"), give the API an audience of its own (e.g. api://idgate), or accept any app's tokens with IDGATE_JWT_ANY_CLIENT=1 / "any_client": true`,
    ]);
  });
});

describe('the policy in force', () => {
  const logger = createLogger({ level: 'error', write: () => undefined });
  const check = (config: Config) => (policy: Parameters<typeof orgWideAudienceProblems>[1]) => orgWideAudienceProblems(config, policy);

  test('is not opened when it lets any app of the org in, and a reload that would is rejected (the previous policy stays)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'idgate-org-wide-'));
    const file = path.join(dir, 'policy.yaml');
    try {
      fs.writeFileSync(file, `version: 1\nrules:\n${API_BY_SCOPE}`);
      expect(PolicyHolder.open(file, logger, new Metrics(), check(configOf({})))).toEqual([expect.stringContaining('rule "api": bearer tokens of')]);
      fs.writeFileSync(file, `version: 1\nrules:\n  - id: app\n    path: /\n    authenticated: true\n`);
      const holder = PolicyHolder.open(file, logger, new Metrics(), check(configOf({})));
      expect(holder).toBeInstanceOf(PolicyHolder);
      fs.writeFileSync(file, `version: 1\nrules:\n${API_BY_SCOPE}`);
      expect((holder as PolicyHolder).reload('test')).toBe(false);
      expect((holder as PolicyHolder).current.rules.map((r) => r.id)).toEqual(['app']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the settings', () => {
  test('IDGATE_JWT_CLIENT_IDS and IDGATE_JWT_ANY_CLIENT apply to IDGATE_ISSUER, and are refused beside IDGATE_BEARER_ISSUERS', () => {
    expect(configOf({ IDGATE_JWT_CLIENT_IDS: 'a,b', IDGATE_JWT_ANY_CLIENT: '1' }).bearerIssuers).toEqual([expect.objectContaining({ issuer: PRIMARY, clientIds: ['a', 'b'], anyClient: true })]);
    const { problems } = loadConfig({ ...base, IDGATE_BEARER_ISSUERS: ISSUERS_WITH_OTHER({}), IDGATE_JWT_CLIENT_IDS: 'a', IDGATE_JWT_ANY_CLIENT: '1' });
    expect(problems).toEqual([
      expect.stringMatching(/^IDGATE_JWT_CLIENT_IDS: set together with IDGATE_BEARER_ISSUERS, .*"client_ids"/),
      expect.stringMatching(/^IDGATE_JWT_ANY_CLIENT: set together with IDGATE_BEARER_ISSUERS, .*"any_client"/),
    ]);
    expect(loadConfig({ ...base, IDGATE_BEARER_ISSUERS: JSON.stringify([{ issuer: OTHER, audiences: ['api://default'], any_client: 'yes' }]) }).problems).toEqual([
      'IDGATE_BEARER_ISSUERS[0].any_client: must be true or false',
    ]);
  });
});
