// `npx idgate ...` as users run it: the compiled CLI in a child process.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { REPO_ROOT } from '../../demo/stack.js';

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
};

describe('idgate CLI', () => {
  test('check-config exits 0 on good settings and never prints secrets', async () => {
    const { code, stdout, stderr } = await idgate(['check-config'], good);
    expect(code).toBe(0);
    expect(stdout + stderr).not.toContain('the-client-secret-value');
    expect(stdout + stderr).not.toContain('c'.repeat(48));
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

  test('an unknown command exits 1 with a one-line reason', async () => {
    const { code, stderr } = await idgate(['frobnicate']);
    expect(code).toBe(1);
    expect(stderr.trim().split('\n')).toHaveLength(1);
  });
});
