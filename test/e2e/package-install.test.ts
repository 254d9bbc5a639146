// The package as users install it: `npm pack`, then `npm install -g --prefix <dir> idgate-<version>.tgz`,
// then the installed `idgate` (no TypeScript, no dev dependency, nothing from this checkout) checks its
// settings and serves against the real Redis and IdP. Packs and installs once, for every test below.
// Last, the install path end to end, all with the installed package: its `idgate haproxy-config` lines
// added to a third-party haproxy.cfg (test/support/third-party-site.ts), `haproxy -c`, its `idgate serve`,
// HAProxy terminating TLS, and a browser signing in through it, both transports.
//
// The tarball is packed from this checkout's dist/ (`make test` builds first) with --ignore-scripts: the
// prepack build (package.json) would rewrite dist/ under the other tests running beside this one.
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { HAPROXY_BIN } from '../../stack/binaries.js';
import { checkHaproxyConfig, startHaproxy, testCheckSecret } from '../../stack/haproxy.js';
import { holdPort, loggedPort, REPO_ROOT, startOnFreePort, startProcess, waitForReport, type ManagedProcess } from '../../stack/processes.js';
import { Browser, signIn } from '../support/browser.js';
import { checkFacts, startRedisAndIdp, type RedisAndIdp } from '../support/idgate.js';
import { bindingHeldTls, fetchTrusting, luaCheckArgs, PART_NAMES, selfSignedCertificate, startSiteApps, thirdPartyConfig, withIdgate, type IdgateParts, type SiteApps } from '../support/third-party-site.js';
import { probeUntil } from '../../stack/wait.js';

const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string; devDependencies: Record<string, string> };

let tmp: string;
let packed: string[];
/** The installed package's directory and its `idgate` command (the bin link npm made). */
let installed: string;
let idgateBin: string;
let parts: RedisAndIdp;
/**
 * The third-party site's TLS frontend of each transport (the install path below): the IdP must know its
 * callback before it starts, so each port is held from then on and its socket handed to that HAProxy.
 */
const heldTls: Partial<Record<'lua' | 'spoe', Awaited<ReturnType<typeof holdPort>>>> = {};

/** Only what the installed command needs: node on PATH (bin/idgate.js starts with `#!/usr/bin/env node`). */
const baseEnv = { PATH: `${path.dirname(process.execPath)}:/usr/bin:/bin` };

function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(idgateBin, args, { cwd: tmp, env: { ...baseEnv, ...env } }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'idgate-package-'));
  // The IdP must know each TLS origin's callback before it starts, the installed idgate (which needs the
  // IdP's issuer) has it as its public URL, and HAProxy (which needs idgate's port) comes last: each TLS
  // port is held from now on (holdPort), and its socket handed to that transport's HAProxy.
  for (const mode of ['lua', 'spoe'] as const) heldTls[mode] = await holdPort();
  const callbacks = Object.values(heldTls).map((held) => `https://127.0.0.1:${held.port}/_auth/callback`);
  const stack = startRedisAndIdp({ IDP_REDIRECT_URIS: ['http://app.test/_auth/callback', ...callbacks].join(',') });
  try {
    await packAndInstall();
  } finally {
    parts = await stack;
  }
}, 180_000);

async function packAndInstall(): Promise<void> {
  const pack = await promisify(execFile)('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], { cwd: REPO_ROOT });
  const [report] = JSON.parse(pack.stdout) as { filename: string; files: { path: string }[] }[];
  packed = report!.files.map((f) => f.path).sort();
  // The npm cache is warm after `npm ci` (every dependency is in package-lock.json); the registry answers the rest.
  await promisify(execFile)('npm', ['install', '-g', '--prefix', path.join(tmp, 'prefix'), '--prefer-offline', '--no-audit', '--no-fund', path.join(tmp, report!.filename)], { cwd: tmp });
  installed = path.join(tmp, 'prefix/lib/node_modules/idgate');
  idgateBin = path.join(tmp, 'prefix/bin/idgate');
}

/** Waits until idgate at `base` answers /readyz 200; fails with its output if it does not within 15 s. */
async function expectReady(base: string, serve: ManagedProcess): Promise<void> {
  const ready = await probeUntil(() => fetch(`${base}/readyz`).then((r) => r.status === 200, () => false), (ok) => ok, { timeoutMs: 15_000 });
  expect({ ready, output: ready ? '' : serve.output() }).toEqual({ ready: true, output: '' });
}

afterAll(async () => {
  await Promise.all(Object.values(heldTls).map((held) => held.release()));
  await parts?.stop();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('the tarball', () => {
  test.each([
    'bin/idgate.js',
    'dist/service/src/cli.js',
    'dist/service/src/main.js',
    'dist/service/src/check/check.js',
    'haproxy-conf/haproxy.cfg',
    'haproxy-conf/idgate-unavailable.http',
    'haproxy-conf/idgate.lua',
    'haproxy-conf/spoe-idgate.conf',
    'redis/redis.conf',
    'policy/demo.yaml',
    'deploy/idgate.service',
    'deploy/idgate@.service',
    'deploy/idgate.env.example',
    'docs/install.md',
    'README.md',
    'package.json',
  ])('holds %s', (file) => {
    expect(packed).toContain(file);
  });

  test('holds no test, demo, bench or TypeScript source, no source map', () => {
    expect(packed.filter((f) => /^(test|demo|bench|service)\/|^dist\/(?!service\/src\/)|\.(ts|map)$|^node_modules\//.test(f))).toEqual([]);
  });

  test('holds the compiled form of every service source, and nothing stale', () => {
    const compiled = packed.filter((f) => f.startsWith('dist/service/src/')).map((f) => f.slice('dist/service/src/'.length, -'.js'.length));
    const sources = fs.readdirSync(path.join(REPO_ROOT, 'service/src'), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts')).map((f) => f.slice(0, -'.ts'.length));
    expect(compiled.sort()).toEqual(sources.sort());
  });
});

describe('installed with npm install -g --prefix', () => {
  test('brings the dependencies and no devDependency', () => {
    const modules = path.join(installed, 'node_modules');
    const names = fs.readdirSync(modules).flatMap((n) => (n.startsWith('@') ? fs.readdirSync(path.join(modules, n)).map((m) => `${n}/${m}`) : [n]));
    expect(names).toEqual(expect.arrayContaining(['express', 'ioredis', 'jose', 'openid-client']));
    expect(names.filter((n) => n in pkg.devDependencies)).toEqual([]);
    expect(names).not.toContain('typescript');
  });

  test('idgate version names the package version and the session record versions', async () => {
    expect(await run(['version'])).toEqual({ code: 0, stdout: `idgate ${pkg.version}\nsession records: reads v1, writes v1\n`, stderr: '' });
  });

  const settings = () => ({
    IDGATE_ISSUER: 'https://dev-123456.okta.com/oauth2/default',
    IDGATE_CLIENT_ID: '0oa1b2c3d4e5f6g7h8i9',
    IDGATE_CLIENT_SECRET: 'the-client-secret-of-the-package-test',
    IDGATE_PUBLIC_URL: 'https://app.example.com',
    IDGATE_COOKIE_SECRETS: crypto.randomBytes(32).toString('base64url'),
    IDGATE_CHECK_SECRETS: testCheckSecret(),
    IDGATE_POLICY_FILE: path.join(installed, 'policy/demo.yaml'),
    // The example policy takes tokens by scope: with Okta's org-wide audience it would be refused.
    IDGATE_JWT_AUDIENCES: 'api://idgate',
  });

  test('idgate check-config accepts good settings and the shipped example policy', async () => {
    const { code, stdout, stderr } = await run(['check-config'], settings());
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
    expect(stdout).toMatch(/^configuration ok: /);
    expect(stdout).not.toContain('the-client-secret-of-the-package-test');
  });

  test('idgate check-config names every bad setting and exits 1', async () => {
    const { IDGATE_ISSUER: _, ...withoutIssuer } = settings();
    const { code, stdout, stderr } = await run(['check-config'], { ...withoutIssuer, IDGATE_COOKIE_SECRETS: 'too-short' });
    expect({ code, stdout }).toEqual({ code: 1, stdout: '' });
    expect(stderr.trim().split('\n').map((l) => l.split(':')[0])).toEqual(['IDGATE_ISSUER', 'IDGATE_COOKIE_SECRETS']);
  });

  test.each(['lua', 'spoe'] as const)('HAProxy accepts the installed haproxy-conf/haproxy.cfg rendered for %s, its Lua and SPOE files found beside it', async (mode) => {
    const { ok, output } = await checkHaproxyConfig(path.join(installed, 'haproxy-conf', 'haproxy.cfg'), mode);
    expect({ ok, output }).toEqual({ ok: true, output: expect.any(String) });
  });

  test('idgate serve gets ready, answers a check, and stops cleanly on SIGTERM', async () => {
    const checkSecret = testCheckSecret();
    const serve = startProcess('idgate-installed', idgateBin, ['serve'], {
      cwd: tmp,
      env: {
        ...baseEnv,
        IDGATE_ISSUER: parts.issuer,
        IDGATE_CLIENT_ID: 'idgate',
        IDGATE_CLIENT_SECRET: 'idgate-secret',
        IDGATE_PUBLIC_URL: 'http://app.test',
        IDGATE_INSECURE_HTTP: '1',
        IDGATE_REDIS_URL: `redis://127.0.0.1:${parts.redisPort}`,
        IDGATE_COOKIE_SECRETS: crypto.randomBytes(32).toString('base64url'),
        IDGATE_CHECK_SECRETS: checkSecret,
        IDGATE_POLICY_FILE: path.join(installed, 'policy/demo.yaml'),
        IDGATE_JWT_AUDIENCES: 'api://idgate',
        IDGATE_LISTEN: '127.0.0.1:0',
        IDGATE_SHUTDOWN_DRAIN_MS: '200',
        // As deploy/idgate.service runs it.
        NODE_OPTIONS: '--max-semi-space-size=4 --max-old-space-size=128',
      },
    });
    const exited = new Promise<number | null>((resolve) => serve.child.once('exit', (code) => resolve(code)));
    try {
      const base = `http://127.0.0.1:${await waitForReport(serve, loggedPort('idgate listening on '))}`;
      await expectReady(base, serve);

      // An anonymous browser asking for a signed-in page: sent to log in.
      const check = await fetch(`${base}/auth`, { headers: { ...checkFacts('app.test', '/private/page'), Accept: 'text/html', 'X-Idgate-Check-Secret': checkSecret }, redirect: 'manual' });
      expect(check.status).toBe(302);
      // Only HAProxy asks: the same check without the secret is refused.
      expect((await fetch(`${base}/auth`, { headers: { ...checkFacts('app.test', '/private/page'), Accept: 'text/html' }, redirect: 'manual' })).status).toBe(403);
      expect(check.headers.get('location')).toBe('http://app.test/_auth/login?rd=%2Fprivate%2Fpage');

      serve.child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(serve.output()).toContain('"stopped"');
    } finally {
      await serve.stop();
    }
  }, 40_000);
});

describe('the install path end to end: the installed lines in a third-party haproxy.cfg, TLS in front, sign in', () => {
  let site: string;
  let pem: string;
  let certPem: string;
  let apps: SiteApps;

  beforeAll(async () => {
    site = path.join(tmp, 'site');
    fs.mkdirSync(site);
    ({ pem, certPem } = selfSignedCertificate(site));
    apps = await startSiteApps();
  }, 30_000);

  afterAll(async () => {
    await apps?.stop();
  });

  describe.each(['lua', 'spoe'] as const)('--mode %s', (mode) => {
    const tlsPort = () => heldTls[mode]!.port;
    const origin = () => `https://127.0.0.1:${tlsPort()}`;
    let serve: ManagedProcess;
    /** The service's settings, as in its environment file: `idgate haproxy-config` reads its addresses from them. */
    let serviceEnv: Record<string, string>;
    let configFile: string;
    /** The config with the site's plain-http frontend on `plain`, as written and as started (bindingHeldTls). */
    let writeConfig: (plain: number) => string;
    /** IDGATE_CHECK_SECRETS of this idgate, and IDGATE_CHECK_SECRET in HAProxy's environment. */
    const checkSecret = testCheckSecret();

    beforeAll(async () => {
      // The installed idgate of this transport's origin (both its HTTP check and its SPOE agent listen).
      // The test IdP speaks plain http: IDGATE_INSECURE_HTTP=1, so the cookies are not Secure here
      // (haproxy-dropin.test.ts checks them with an https issuer).
      serve = startProcess(`idgate-installed-serve-${mode}`, idgateBin, ['serve'], {
        cwd: tmp,
        env: {
          ...baseEnv,
          // Ports of the kernel's choosing; serviceEnv names the ones it reports.
          IDGATE_LISTEN: '127.0.0.1:0',
          IDGATE_SPOE_LISTEN: '127.0.0.1:0',
          IDGATE_ISSUER: parts.issuer,
          IDGATE_CLIENT_ID: 'idgate',
          IDGATE_CLIENT_SECRET: 'idgate-secret',
          IDGATE_PUBLIC_URL: origin(),
          IDGATE_INSECURE_HTTP: '1',
          IDGATE_SCOPES: 'openid profile email groups',
          IDGATE_REDIS_URL: `redis://127.0.0.1:${parts.redisPort}`,
          IDGATE_REDIS_PREFIX: `idgate-install-path-${mode}:`,
          IDGATE_COOKIE_SECRETS: crypto.randomBytes(32).toString('base64url'),
          IDGATE_CHECK_SECRETS: checkSecret,
          IDGATE_POLICY_FILE: path.join(installed, 'policy/demo.yaml'),
          IDGATE_JWT_AUDIENCES: 'api://idgate',
          IDGATE_SHUTDOWN_DRAIN_MS: '200',
        },
      });
      const [idgatePort, spoePort] = [await waitForReport(serve, loggedPort('idgate listening on ')), await waitForReport(serve, loggedPort('SPOE agent listening on '))];
      serviceEnv = { IDGATE_LISTEN: `127.0.0.1:${idgatePort}`, IDGATE_SPOE_LISTEN: `127.0.0.1:${spoePort}` };
      await expectReady(`http://${serviceEnv.IDGATE_LISTEN}`, serve);

      const chroot = path.join(site, `chroot-${mode}`);
      fs.mkdirSync(chroot, { mode: 0o755 });
      const rendered: Partial<IdgateParts> = {};
      for (const name of PART_NAMES) {
        const { code, stdout, stderr } = await run(['haproxy-config', '--mode', mode, '--part', name, ...(mode === 'lua' ? luaCheckArgs(chroot) : [])], serviceEnv);
        expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
        rendered[name] = stdout;
      }
      configFile = path.join(site, `haproxy-${mode}.cfg`);
      const runFile = path.join(site, `haproxy-${mode}.held-tls.cfg`);
      writeConfig = (plain) => {
        const config = withIdgate(thirdPartyConfig({ tls: tlsPort(), plain, ...apps.ports }, pem, chroot), rendered as IdgateParts);
        fs.writeFileSync(configFile, config);
        fs.writeFileSync(runFile, bindingHeldTls(config, tlsPort()));
        return runFile;
      };
      // haproxy -c binds nothing: any port does until HAProxy starts (below, on one it finds free).
      writeConfig(tlsPort() + 1);
    }, 30_000);

    afterAll(async () => {
      await serve?.stop();
    });

    test("the lines name the installed package's files, and haproxy -c accepts the config without warnings", async () => {
      const config = fs.readFileSync(configFile, 'utf8');
      expect(config).toContain(path.join(installed, 'haproxy-conf', mode === 'lua' ? 'idgate.lua' : 'spoe-idgate.conf'));
      expect(config).not.toContain(REPO_ROOT);
      const check = await promisify(execFile)(HAPROXY_BIN, ['-c', '-f', configFile], { env: { ...process.env, IDGATE_CHECK_SECRET: checkSecret } }).then(
        ({ stdout, stderr }) => ({ code: 0, output: stdout + stderr }),
        (err: { code?: number; stdout?: string; stderr?: string }) => ({ code: err.code ?? 1, output: `${err.stdout ?? ''}${err.stderr ?? ''}` }),
      );
      expect(check.output).not.toMatch(/WARNING|ALERT/);
      expect(check.code).toBe(0);
    });

    test('signing in through TLS lands back on the https deep link, and the app gets the identity', async () => {
      const idgatePort = Number(serviceEnv.IDGATE_LISTEN!.split(':')[1]);
      // The plain-http port is named by nothing but the config: when it was taken, HAProxy starts again on
      // another. The TLS port is the held socket, handed over (fd 3): HAProxy is ready once the plain port answers.
      const held = heldTls[mode]!;
      const { started: haproxy } = await startOnFreePort((plain) =>
        startHaproxy({ frontPort: plain, idgatePort, upstreamPort: apps.ports.web, configPath: writeConfig(plain), passFds: [held.fd], name: `haproxy-installed-${mode}`, checkSecret }),
      );
      await held.release();
      try {
        const browser = new Browser({}, fetchTrusting(certPem));
        const deepLink = `${origin()}/reports/${mode}?format=csv&sort=-date`;
        const { res, url } = await signIn(browser, deepLink, 'alice');
        expect({ status: res.status, url: url.href, body: await res.text() }).toEqual({ status: 200, url: deepLink, body: `web /reports/${mode}?format=csv&sort=-date user=alice` });
        // Every hop on the site stayed https, and the login redirect carried the deep link.
        expect(browser.hops.filter((h) => new URL(h.url).port === String(tlsPort())).every((h) => h.url.startsWith('https://'))).toBe(true);
        const login = browser.hops.find((h) => new URL(h.url).pathname === `/reports/${mode}`)!;
        expect(new URL(login.location!, origin()).searchParams.get('rd')).toBe(`/reports/${mode}?format=csv&sort=-date`);

        const app = apps.seen.filter((s) => s.url === `/reports/${mode}?format=csv&sort=-date`).at(-1)!;
        expect(app.headers['x-auth-user']).toBe('alice');
        expect(app.headers['x-auth-email']).toBe('alice@example.com');
        expect(app.headers['x-forwarded-proto']).toBe('https');
        expect(app.headers['x-site']).toBe('www');
      } finally {
        await haproxy.stop();
      }
    }, 30_000);
  });
});
