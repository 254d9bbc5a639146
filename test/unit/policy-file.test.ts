import { parsePolicy } from '../../service/src/policy/policy-file.js';

function problemsOf(yaml: string): string[] {
  return [...parsePolicy(yaml, 'p.yaml').problems];
}

describe('policy file validation', () => {
  test('a valid file compiles', () => {
    const { policy, problems } = parsePolicy('version: 1\nrules:\n  - id: all\n    authenticated: true\n', 'p.yaml');
    expect(problems).toEqual([]);
    expect(policy!.rules.map((r) => r.id)).toEqual(['all']);
  });

  test.each([
    ['unknown rule key, with its line and the keys expected', 'rules:\n  - id: a\n    group: [x]\n    authenticated: true\n', /^p\.yaml:3: rule "a": unknown key "group" \(expected one of: id, description, host/],
    ['unknown top-level key', 'rule:\n  - id: a\n', /^p\.yaml:1: unknown key "rule"/],
    ['unknown condition', 'rules:\n  - id: a\n    allow: {group: [x]}\n', /^p\.yaml:3: rule "a": allow: unknown condition "group" \(expected one of: via, groups, groups_all/],
    ['a string where a list is expected', 'rules:\n  - id: a\n    allow: {groups: admins}\n', /^p\.yaml:3: rule "a": allow\.groups: expected a non-empty list of strings \(e\.g\. groups: \[admins\]\)/],
    ['a rule without access', 'rules:\n  - id: a\n    path: /x/\n', /^p\.yaml:2: rule "a": needs one of public, authenticated, deny, allow, allow_any/],
    ['two accesses', 'rules:\n  - id: a\n    public: true\n    authenticated: true\n', /public and authenticated exclude each other/],
    ['duplicate ids', 'rules:\n  - id: a\n    public: true\n  - id: a\n    public: true\n', /^p\.yaml:4: rule "a": id "a" is already used by the rule at line 2/],
    ['missing id', 'rules:\n  - public: true\n', /^p\.yaml:2: rule #1: id: required/],
    ['a bad regular expression', 'rules:\n  - id: a\n    path_regex: "/x/("\n    public: true\n', /^p\.yaml:3: rule "a": path_regex: not a valid RE2 regular expression/],
    ['a regex that needs backtracking', 'rules:\n  - id: a\n    path_regex: "/(?=x)"\n    public: true\n', /^p\.yaml:3: rule "a": path_regex: not a valid RE2 regular expression \(no lookaround/],
    ['a path that requests can never have', 'rules:\n  - id: a\n    path: /a//b/\n    public: true\n', /^p\.yaml:3: rule "a": path "\/a\/\/b\/": not in canonical form \(requests are matched as "\/a\/b\/"\)/],
    ['a path with an escape of a character paths spell raw, naming it', 'rules:\n  - id: a\n    path: /odata/%24batch\n    deny: true\n', /^p\.yaml:3: rule "a": path "\/odata\/%24batch": not in canonical form \(requests are matched as "\/odata\/\$batch": %24 is \$\); write that/],
    ['a path with a raw character paths spell as an escape, naming it', 'rules:\n  - id: a\n    path: "/a{b}"\n    deny: true\n', /^p\.yaml:3: rule "a": path "\/a\{b\}": not in canonical form \(requests are matched as "\/a%7Bb%7D": \{ is %7B, \} is %7D\)/],
    ['a path_regex with an escape of a character paths spell raw, naming it', 'rules:\n  - id: a\n    path_regex: /odata/%24batch|/users/%40me/\n    deny: true\n', /^p\.yaml:3: rule "a": path_regex: paths are matched with these characters decoded, so an escape of one never matches \(%24 is \\\$, %40 is @\); write the character/],
    ['a path with a semicolon', 'rules:\n  - id: a\n    path: /a;b\n    public: true\n', /^p\.yaml:3: rule "a": path "\/a;b": holds a semicolon/],
    ['case_sensitive without a path', 'rules:\n  - id: a\n    case_sensitive: true\n    public: true\n', /^p\.yaml:3: rule "a": case_sensitive: only means something with path or path_regex/],
    ['a relative path', 'rules:\n  - id: a\n    path: admin/\n    public: true\n', /path "admin\/": must start with "\/"/],
    ['a bad host', 'rules:\n  - id: a\n    host: "http://x"\n    public: true\n', /host "http:\/\/x": expected a lower-case host name/],
    ['a bad method', 'rules:\n  - id: a\n    methods: [GET, "P OST"]\n    public: true\n', /methods: "P OST" is not an HTTP method/],
    ['CONNECT in methods', 'rules:\n  - id: a\n    methods: [GET, connect]\n    public: true\n', /^p\.yaml:3: rule "a": methods: CONNECT is never allowed \(CONNECT would tunnel/],
    ['TRACE in methods', 'rules:\n  - id: a\n    methods: [TRACE]\n    authenticated: true\n', /methods: TRACE is never allowed/],
    ['method_override other than a flag', 'rules:\n  - id: a\n    method_override: yes please\n    authenticated: true\n', /^p\.yaml:3: rule "a": method_override: expected true or false/],
    ['cors_preflight other than pass', 'rules:\n  - id: a\n    cors_preflight: judge\n    authenticated: true\n', /^p\.yaml:3: rule "a": cors_preflight: only "cors_preflight: pass" means something/],
    ['a bad default', 'default: allow\nrules: []\n', /^p\.yaml:1: default must be "deny" or "authenticated"/],
    ['a backend on a public rule', 'rules:\n  - id: a\n    public: true\n    backend: x\n', /a public rule sends no identity, so it chooses no pool/],
    ['bad YAML', 'rules:\n  - id: a\n   public: true\n', /^p\.yaml:\d+: YAML: /],
    ['duplicate keys', 'rules:\n  - id: a\n    public: true\n    public: true\n', /^p\.yaml:\d+: YAML: .*[Uu]nique/],
    ['a via that is neither session nor token', 'rules:\n  - id: a\n    allow: {via: cookie}\n', /allow\.via: expected "session" or "token"/],
    ['no rules', 'default: deny\n', /rules: required/],
    ['authenticated: token, with a hint at accept', 'rules:\n  - id: a\n    authenticated: token\n', /^p\.yaml:3: rule "a": authenticated: only "authenticated: true" means something \(a signed-in browser session; to let bearer tokens in too, add accept: \[session, token\]\)/],
    ['accept with an unknown credential', 'rules:\n  - id: a\n    authenticated: true\n    accept: [session, cookie]\n', /^p\.yaml:4: rule "a": accept: expected a list of session and\/or token/],
    ['accept as a single word', 'rules:\n  - id: a\n    authenticated: true\n    accept: token\n', /accept: expected a list of session and\/or token, .*\(e\.g\. accept: \[session, token\]\)/],
    ['accept listing a credential twice', 'rules:\n  - id: a\n    authenticated: true\n    accept: [token, token]\n', /accept: each credential once/],
    ['accept on a public rule', 'rules:\n  - id: a\n    public: true\n    accept: [session]\n', /accept: a public rule needs no credentials/],
    ['accept leaving out token where a condition asks for scopes', 'rules:\n  - id: a\n    accept: [session]\n    allow: {scopes: [api:read]}\n', /accept: leaves out token, but a condition of this rule asks for a bearer token/],
    ['accept leaving out session where a condition says via: session', 'rules:\n  - id: a\n    accept: [token]\n    allow_any: [{via: session}, {scopes: [x]}]\n', /accept: leaves out session/],
    ['issuers that are not URLs', 'rules:\n  - id: a\n    allow: {issuers: [okta], scopes: [x]}\n', /allow\.issuers: expected a non-empty list of issuer URLs, exactly as in the tokens' iss/],
    ['issuers as a single string', 'rules:\n  - id: a\n    allow: {issuers: "https://x.example.com"}\n', /allow\.issuers: expected a non-empty list of issuer URLs/],
  ])('%s', (_name, yaml, expected) => {
    const problems = problemsOf(yaml);
    expect(problems.some((p) => expected.test(p))).toBe(true);
  });

  test('accept and issuers compile into the rule and its conditions', () => {
    const { policy, problems } = parsePolicy('rules:\n  - id: a\n    accept: [session, token]\n    allow: {issuers: [https://partner.example.com/], groups: [x]}\n', 'p.yaml');
    expect(problems).toEqual([]);
    expect(policy!.rules[0]).toMatchObject({ accept: ['session', 'token'], allow: [{ issuers: ['https://partner.example.com/'], groups: ['x'] }] });
  });

  test('format_suffix only with a path or a path_regex', () => {
    expect(problemsOf('rules:\n  - id: a\n    format_suffix: true\n    public: true\n')).toEqual(['p.yaml:3: rule "a": format_suffix: only means something with path or path_regex']);
  });

  test('a path_regex anchored with $ and no word on .format suffixes is a warning with its line, not a problem', () => {
    const warned = parsePolicy('rules:\n  - id: reports\n    path_regex: /reports/[0-9]+$\n    deny: true\n', 'p.yaml');
    expect(warned.problems).toEqual([]);
    expect(warned.warnings).toEqual([expect.stringMatching(/^p\.yaml:3: warning: rule "reports": path_regex ends in "\$", so a path with a \.format suffix .* add format_suffix: true, or format_suffix: false if the app routes no such suffix/)]);
    for (const said of ['true', 'false']) expect(parsePolicy(`rules:\n  - id: reports\n    path_regex: /reports/[0-9]+$\n    format_suffix: ${said}\n    deny: true\n`, 'p.yaml').warnings).toEqual([]);
    expect(parsePolicy('rules:\n  - id: price\n    path_regex: /price/\\$\n    deny: true\n', 'p.yaml').warnings).toEqual([]);
  });

  test('every problem is reported, not just the first', () => {
    const problems = problemsOf('rules:\n  - id: a\n    group: [x]\n    public: true\n  - id: b\n    allow: {groups: admins}\n  - id: "bad id!"\n    public: true\n');
    expect(problems).toHaveLength(3);
  });
});

test('the example policy in docs/policy.md is valid', async () => {
  const fs = await import('node:fs');
  const { REPO_ROOT } = await import('../../stack/processes.js');
  const doc = fs.readFileSync(`${REPO_ROOT}/docs/policy.md`, 'utf8');
  const example = /## An example[\s\S]*?```yaml\n([\s\S]*?)```/.exec(doc)![1]!;
  expect(parsePolicy(example, 'docs/policy.md').problems).toEqual([]);
});
