// `npx idgate ...` as users run it: the compiled CLI in a child process.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from '../../stack/stack.js';
import { startProcess } from '../../stack/processes.js';
import { waitForOutput } from '../../stack/wait.js';

function idgate(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [path.join(REPO_ROOT, 'bin/idgate.js'), ...args], { env: { PATH: process.env.PATH!, ...env } }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

const good = {
  IDGATE_ISSUER: 'https://dev-123456.okta.com/oauth2/default',
  IDGATE_CLIENT_ID: 'client',
  IDGATE_CLIENT_SECRET: 'the-client-secret-value',
  IDGATE_PUBLIC_URL: 'https://app.example.com',
  IDGATE_COOKIE_SECRETS: 'c'.repeat(48),
  IDGATE_CHECK_SECRETS: 'k'.repeat(64),
};

describe('idgate CLI', () => {
  test('check-config exits 0 on good settings and never prints secrets', async () => {
    const { code, stdout, stderr } = await idgate(['check-config'], good);
    expect(code).toBe(0);
    expect(stdout + stderr).not.toContain('the-client-secret-value');
    expect(stdout + stderr).not.toContain('c'.repeat(48));
    expect(stdout + stderr).not.toContain('k'.repeat(64));
  });

  // The same strings are in test/scan-logs.mjs, which fails `make test` if any captured log holds them.
  const redisUrlWithCredentials = 'rediss://redis-user-of-the-tests:redis-password-of-the-tests@127.0.0.1:1/0?username=redis-user-of-the-tests-2&password=redis-password-of-the-tests-2';

  test('check-config never prints the Redis password or user name, from the URL or its query', async () => {
    const { code, stdout, stderr } = await idgate(['check-config'], { ...good, IDGATE_REDIS_URL: redisUrlWithCredentials });
    expect(code).toBe(0);
    expect(stdout).toContain('"redis_url":"rediss://***:***@127.0.0.1:1/0?username=***&password=***"');
    expect(stdout + stderr).not.toMatch(/redis-(user|password)-of-the-tests/);
  });

  test('serve logs neither the Redis password nor the user name, at start nor when Redis is unreachable', async () => {
    const serve = startProcess('idgate', process.execPath, [path.join(REPO_ROOT, 'bin/idgate.js'), 'serve'], {
      env: { PATH: process.env.PATH!, ...good, IDGATE_REDIS_URL: redisUrlWithCredentials, IDGATE_LISTEN: '127.0.0.1:0', IDGATE_SPOE_LISTEN: 'off', IDGATE_SHUTDOWN_DRAIN_MS: '0' },
    });
    try {
      await waitForOutput(serve, 'redis unavailable', { timeoutMs: 10_000 });
      expect(serve.output()).toContain('"redis_url":"rediss://***:***@127.0.0.1:1/0?username=***&password=***"');
      expect(serve.output()).toContain('redis unavailable');
      expect(serve.output()).not.toMatch(/redis-(user|password)-of-the-tests/);
    } finally {
      await serve.stop();
    }
  });

  test('check-config exits 1 with one line per problem', async () => {
    const { code, stderr } = await idgate(['check-config'], { ...good, IDGATE_ISSUER: 'ftp://x', IDGATE_COOKIE_SECRETS: 'short' });
    expect(code).toBe(1);
    const lines = stderr.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^IDGATE_ISSUER: /);
    expect(lines[1]).toMatch(/^IDGATE_COOKIE_SECRETS: /);
  });

  test('check-config reads an optional JSON config file and rejects unknown keys', async () => {
    const file = path.join(REPO_ROOT, 'test/e2e/fixtures/config-unknown-key.json');
    const { code, stderr } = await idgate(['check-config'], { ...good, IDGATE_CONFIG_FILE: file });
    expect(code).toBe(1);
    expect(stderr).toMatch(/unknown setting "cookie_secret"/);
  });

  test('serve refuses to start on bad settings, with the reason', async () => {
    const { code, stderr } = await idgate(['serve'], {});
    expect(code).toBe(1);
    expect(stderr).toMatch(/IDGATE_ISSUER: required/);
  });

  test('version and --help answer', async () => {
    expect((await idgate(['version'])).stdout).toMatch(/^idgate \d+\.\d+\.\d+/);
    const help = await idgate(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('check-config');
    expect(help.stdout).toContain('IDGATE_TRUSTED_PROXIES');
  });

  test('check-config checks the policy too, problems as FILE:LINE', async () => {
    const bad = path.join(REPO_ROOT, 'test/e2e/fixtures/policy-bad.yaml');
    const { code, stderr } = await idgate(['check-config', '--policy', bad], good);
    expect(code).toBe(1);
    expect(stderr.trim().split('\n')).toEqual([
      `${bad}:6: rule "admin-area": unknown key "group" (expected one of: id, description, host, path, path_regex, format_suffix, case_sensitive, methods, cors_preflight, method_override, public, authenticated, deny, allow, allow_any, accept, api, backend, backends)`,
      `${bad}:5: rule "admin-area": needs one of public, authenticated, deny, allow, allow_any`,
    ]);
    const ok = await idgate(['check-config'], { ...good, IDGATE_JWT_AUDIENCES: 'api://idgate', IDGATE_POLICY_FILE: path.join(REPO_ROOT, 'policy/demo.yaml') });
    expect(ok.code).toBe(0);
  });

  // The demo policy's /api/ takes tokens by scope alone: with Okta's org-wide audience, any app's token would do.
  const demoPolicy = path.join(REPO_ROOT, 'policy/demo.yaml');
  const orgWideLine = `${demoPolicy}:18: rule "api": bearer tokens of ${good.IDGATE_ISSUER} count here with the audience api://default, which Okta's default server puts on every token, whichever app of the org asked for it; name the clients (clients: [...] on the rule, or IDGATE_JWT_CLIENT_IDS / the IDGATE_BEARER_ISSUERS entry's "client_ids"), give the API an audience of its own (e.g. api://idgate), or accept any app's tokens with IDGATE_JWT_ANY_CLIENT=1 / "any_client": true`;

  test('check-config refuses tokens of the audience api://default where no client is named, and says the ways out', async () => {
    const refused = await idgate(['check-config', '--policy', demoPolicy], good);
    expect(refused).toMatchObject({ code: 1, stdout: '' });
    expect(refused.stderr.trim().split('\n')).toEqual([orgWideLine]);
    for (const wayOut of [{ IDGATE_JWT_CLIENT_IDS: '0oa-ci-bot' }, { IDGATE_JWT_ANY_CLIENT: '1' }, { IDGATE_JWT_AUDIENCES: 'api://idgate' }] as Record<string, string>[]) {
      expect((await idgate(['check-config', '--policy', demoPolicy], { ...good, ...wayOut })).code).toBe(0);
    }
  });

  test('serve refuses to start with such a policy, with the reason', async () => {
    const { code, stderr } = await idgate(['serve'], { ...good, IDGATE_POLICY_FILE: demoPolicy, IDGATE_LISTEN: '127.0.0.1:0', IDGATE_SPOE_LISTEN: 'off' });
    expect(code).toBe(1);
    expect(stderr.trim().split('\n')).toEqual([`idgate: ${orgWideLine}`, 'idgate: the policy has 1 problem(s); not starting']);
  });

  test('check-config warns, as FILE:LINE, about a $-anchored path_regex that says nothing of .format suffixes, and exits 0', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'idgate-cli-'));
    const file = path.join(dir, 'policy.yaml');
    fs.writeFileSync(file, 'rules:\n  - id: reports\n    path_regex: /reports/[0-9]+$\n    authenticated: true\n');
    try {
      const { code, stdout, stderr } = await idgate(['check-config', '--policy', file], good);
      expect(code).toBe(0);
      expect(stdout).toContain('configuration ok');
      expect(stderr.trim().split('\n')).toEqual([expect.stringMatching(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3: warning: rule "reports": path_regex ends in "\\$".*format_suffix: true`))]);
      const explained = await Promise.all(['/reports/12', '/reports/12/', '/reports/x/'].map(async (url) => (await idgate(['explain', '--policy', file, '--url', url])).stdout.trim()));
      expect(explained).toEqual(['302 login rule=reports: no credentials', '302 login rule=reports: no credentials', '403 deny rule=no-rule: no policy rule matches this request']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test.each([
    [['--url', '/admin/', '--claims', '{"sub":"bob","groups":["sales"]}'], '403 deny rule=admin-area: needs group admins'],
    [['--url', '/admin/', '--claims', '{"sub":"alice","preferred_username":"alice","groups":["admins"]}'], '200 allow rule=admin-area backend=canary: has group admins'],
    [['--url', 'https://app.example.com/somewhere?x=1'], '302 login rule=signed-in: no credentials'],
    [['--url', '/api/x'], '401 unauthenticated rule=api: no credentials'],
    [['--url', '/api/x', '--method', 'post', '--claims', '{"sub":"bot","cid":"bot","scp":["other"]}'], '403 deny rule=api: needs scope api:read'],
    [['--url', '/public/a'], '200 public rule=public: public route'],
    // The path as HAProxy would send it, not as a URL parser resolves it.
    [['--url', '/ADMIN/', '--claims', '{"sub":"bob","groups":["sales"]}'], '403 deny rule=admin-area: needs group admins'],
    [['--url', '/public/%2e%2e/admin/', '--claims', '{"sub":"bob","groups":["sales"]}'], '403 deny rule=admin-area: needs group admins'],
    [['--url', '/public/..;/admin/secret'], '400 refused rule=-: the path holds a semicolon (path parameters)'],
    [['--url', 'https://app.example.com/public/..%2fadmin/'], '400 refused rule=-: the path holds an encoded slash (%2F)'],
  ])('explain %j', async (args, expected) => {
    const { code, stdout } = await idgate(['explain', '--policy', path.join(REPO_ROOT, 'policy/demo.yaml'), ...args]);
    expect(code).toBe(0);
    expect(stdout).toBe(`${expected}\n`);
  });

  test.each([
    [['--url', '/page', '--api', '--claims', '{"sub":"bot","cid":"bot","scp":["api:read"]}'], {}, '401 unauthenticated rule=signed-in: a bearer token does not count on this route; it needs a signed-in session'],
    [['--url', '/page', '--claims', '{"sub":"bot","cid":"bot","scp":["api:read"]}'], {}, '302 login rule=signed-in: a bearer token does not count on this route; it needs a signed-in session'],
    [['--url', '/api/x', '--claims', '{"iss":"https://partner.example.com","sub":"bot","cid":"bot","scp":["api:read"]}'], { IDGATE_ISSUER: 'https://login.example.com' }, '403 deny rule=api: needs an identity from the primary issuer (IDGATE_ISSUER)'],
    [['--url', '/api/x', '--claims', '{"iss":"https://login.example.com","sub":"bot","cid":"bot","scp":["api:read"]}'], { IDGATE_ISSUER: 'https://login.example.com' }, '200 allow rule=api: has scope api:read'],
  ])('explain answers as the check does about who counts as signed in: %j', async (args, env, expected) => {
    const { code, stdout } = await idgate(['explain', '--policy', path.join(REPO_ROOT, 'policy/demo.yaml'), ...args], env);
    expect(code).toBe(0);
    expect(stdout).toBe(`${expected}\n`);
  });

  test('explain reads a token\'s claims', async () => {
    const b64 = (v: object) => Buffer.from(JSON.stringify(v)).toString('base64url');
    const token = `${b64({ alg: 'RS256' })}.${b64({ sub: 'bot', cid: 'bot', scp: ['api:read'] })}.sig`;
    const { stdout } = await idgate(['explain', '--policy', path.join(REPO_ROOT, 'policy/demo.yaml'), '--url', '/api/x', '--token', token]);
    expect(stdout).toBe('200 allow rule=api: has scope api:read\n');
  });

  test('explain with bad input exits 1 with a one-line reason', async () => {
    for (const args of [['--url', '/'], ['--policy', 'policy/demo.yaml', '--url', '/', '--claims', '{nope'], ['--policy', 'policy/demo.yaml', '--url', '/', '--frob']]) {
      const { code, stderr } = await idgate(['explain', ...args]);
      expect(code).toBe(1);
      expect(stderr.trim().split('\n')).toHaveLength(1);
    }
  });

  test.each([['serve'], ['check-config'], ['explain'], ['sessions'], ['haproxy-config']])('idgate %s --help lists its options', async (command) => {
    const { code, stdout } = await idgate([command, '--help']);
    expect(code).toBe(0);
    expect(stdout).toMatch(new RegExp(`^usage: idgate ${command}`));
  });

  test('--help lists every setting with its default', async () => {
    const { stdout } = await idgate(['--help']);
    expect(stdout).toContain('IDGATE_SESSION_IDLE_TTL');
    expect(stdout).toMatch(/IDGATE_LISTEN .*\(default 127\.0\.0\.1:4180\)/);
    expect(stdout).toMatch(/IDGATE_ISSUER .*\(required\)/);
  });

  test("haproxy-config prints the HAProxy lines with idgate's own addresses (IDGATE_LISTEN, IDGATE_SPOE_LISTEN)", async () => {
    const lua = await idgate(['haproxy-config'], { IDGATE_LISTEN: '10.0.0.5:4180' });
    expect(lua.code).toBe(0);
    expect(lua.stdout).toContain('\n    server idgate1 10.0.0.5:4180\n');
    expect(lua.stdout).toContain(`lua-load "${path.join(REPO_ROOT, 'haproxy-conf')}/idgate.lua"`);
    const spoe = await idgate(['haproxy-config', '--mode', 'spoe', '--part', 'backends'], { IDGATE_LISTEN: '10.0.0.5:4180', IDGATE_SPOE_LISTEN: '10.0.0.5:4181' });
    expect(spoe.stdout).toContain('\n    server idgate1-spoe 10.0.0.5:4181 check');
    expect(spoe.stderr).toBe('');
  });

  test.each([
    [['--mode', 'nginx'], {}, /--mode "nginx": lua or spoe/],
    [[], { IDGATE_LISTEN: '0.0.0.0:4180' }, /IDGATE_LISTEN: "0.0.0.0:4180" listens on every address; give the address HAProxy reaches idgate at with --idgate HOST:PORT/],
    [['--mode', 'spoe', '--check-dst', 'unix@/run/x.sock'], {}, /--check-dst is for --mode lua/],
    [['--check-dst', '127.0.0.1:4190'], {}, /the check listener cannot go into an HAProxy configuration/],
    [['--template', 'README.md'], {}, /README\.md: no @idgate global, @idgate frontend, @idgate routing, @idgate backends line/],
    [['--check-secret'], {}, /--check-secret: IDGATE_CHECK_SECRETS is not set/],
    [['--check-secret'], { IDGATE_CHECK_SECRETS: 'short-check-secret' }, /IDGATE_CHECK_SECRETS: secret #1 is 18 characters/],
    [['--check-secret', '--part', 'global'], { IDGATE_CHECK_SECRETS: 'k'.repeat(64) }, /--check-secret takes no other option \(--part\)/],
  ])('haproxy-config %j refuses with a one-line reason', async (args, env, reason) => {
    const { code, stdout, stderr } = await idgate(['haproxy-config', ...args], env);
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(stderr).toMatch(reason);
  });

  test("haproxy-config --check-secret prints HAProxy's secret file: the newest of IDGATE_CHECK_SECRETS, set in a global section", async () => {
    const { code, stdout, stderr } = await idgate(['haproxy-config', '--check-secret'], { IDGATE_CHECK_SECRETS: `${'n'.repeat(64)}, ${'o'.repeat(64)}` });
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
    expect(stdout).toMatch(/^#[^\n]*\n(#[^\n]*\n)*global\n    setenv IDGATE_CHECK_SECRET n{64}\n$/);
    expect(stdout).not.toContain('o'.repeat(64));
  });

  test('an unknown command exits 1 with a one-line reason', async () => {
    const { code, stderr } = await idgate(['frobnicate']);
    expect(code).toBe(1);
    expect(stderr.trim().split('\n')).toHaveLength(1);
  });
});
