// The install path's HAProxy step, in both transports: `idgate haproxy-config` lines added to someone
// else's haproxy.cfg (TLS frontend with its own ACLs and rules, two backends, a plain-http redirect
// frontend), checked by `haproxy -c`, then served through: a browser signs in over TLS and lands back on
// its deep link, the cookies are Secure (__Host-), the app gets the identity. Real HAProxy, Redis, IdP and
// idgate (in this process, so that its cookies can be Secure while the test IdP speaks plain http).
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HAPROXY_BIN } from '../../stack/binaries.js';
import { probeUntil } from '../../stack/wait.js';
import { startHaproxy, testCheckSecret } from '../../stack/haproxy.js';
import { holdPort, listenOnAnyPort, REPO_ROOT, startOnFreePort, startProcess, type ManagedProcess } from '../../stack/processes.js';
import { loadConfig, type Config } from '../../service/src/config.js';
import type { HaproxyMode } from '../../service/src/transports/haproxy-config.js';
import { Browser, signIn } from '../support/browser.js';
import { startInProcess, startRedisAndIdp, stopInProcess, type RedisAndIdp } from '../support/idgate.js';
import { bindingHeldTls, fetchTrusting, luaCheckArgs, selfSignedCertificate, startSiteApps, thirdPartyConfig, withIdgate, type Seen, type SiteApps } from '../support/third-party-site.js';
import { alice } from '../support/identities.js';
import { testLoginScopes } from '../../stack/test-idp-profile.js';

const MODES: HaproxyMode[] = ['lua', 'spoe'];

/** What `idgate haproxy-config` prints, run as a user runs it (the built CLI, the service's environment). */
function haproxyConfig(mode: HaproxyMode, args: string[], env: Record<string, string>): string {
  return execFileSync(process.execPath, [path.join(REPO_ROOT, 'dist/service/src/cli.js'), 'haproxy-config', '--mode', mode, ...args], { env: { PATH: process.env.PATH, ...env }, encoding: 'utf8' });
}

let dir: string;
let pem: string;
let certPem: string;
let stack: RedisAndIdp;
let apps: SiteApps;
let seen: Seen[];
let ports: { web: number; api: number };
const tlsPorts: Record<HaproxyMode, number> = { lua: 0, spoe: 0 };
const heldTls: Partial<Record<HaproxyMode, Awaited<ReturnType<typeof holdPort>>>> = {};

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'idgate-dropin-'));
  ({ pem, certPem } = selfSignedCertificate(dir));
  apps = await startSiteApps();
  ({ seen, ports } = apps);
  // The IdP must know each TLS origin's callback before it starts, idgate (which needs the IdP's issuer)
  // has it as its public URL, and HAProxy (which needs idgate's port) comes last: each TLS port is held
  // from now on, and its socket handed to that mode's HAProxy (bindingHeldTls).
  for (const mode of MODES) {
    heldTls[mode] = await holdPort();
    tlsPorts[mode] = heldTls[mode]!.port;
  }
  stack = await startRedisAndIdp({ IDP_REDIRECT_URIS: MODES.map((m) => `https://127.0.0.1:${tlsPorts[m]}/_auth/callback`).join(',') });
});

afterAll(async () => {
  await Promise.all(Object.values(heldTls).map((held) => held.release()));
  stopInProcess();
  await stack?.stop();
  await apps?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe.each(MODES)('a third-party haproxy.cfg with the %s lines, TLS in front', (mode) => {
  let haproxy: ManagedProcess | undefined;
  let configFile: string;
  let origin: string;
  const checkSecret = testCheckSecret();

  beforeAll(async () => {
    const tls = tlsPorts[mode];
    origin = `https://127.0.0.1:${tls}`;
    const { config: loaded, problems } = loadConfig({
      // Port 0 here: the in-process idgate and its agent listen on ports of the kernel's choosing (below).
      IDGATE_LISTEN: '127.0.0.1:0',
      ...(mode === 'spoe' ? { IDGATE_SPOE_LISTEN: '127.0.0.1:0' } : {}),
      // An https issuer, so that the cookie settings are exactly a production deployment's; only the
      // test IdP is then reached over plain http (it has no TLS).
      IDGATE_ISSUER: 'https://idp.example.com',
      IDGATE_CLIENT_ID: 'idgate',
      IDGATE_CLIENT_SECRET: 'idgate-secret',
      IDGATE_PUBLIC_URL: origin,
      IDGATE_REDIS_URL: `redis://127.0.0.1:${stack.redisPort}`,
      IDGATE_REDIS_PREFIX: `idgate-${mode}:`,
      IDGATE_COOKIE_SECRETS: crypto.randomBytes(32).toString('base64url'),
      // HAProxy gets the same one in its environment (IDGATE_CHECK_SECRET), as docs/install.md sets it up.
      IDGATE_CHECK_SECRETS: checkSecret,
      IDGATE_SCOPES: testLoginScopes(),
    });
    expect(problems).toEqual([]);
    const config: Config = Object.freeze({ ...loaded!, issuer: new URL(stack.issuer), issuerId: stack.issuer, insecureHttp: true, bearerIssuers: [] });
    const idgate = await startInProcess(config, undefined, { spoe: mode === 'spoe' });
    const idgatePort = await listenOnAnyPort(idgate.server);
    const spoePort = idgate.spoeAgent ? await listenOnAnyPort(idgate.spoeAgent) : undefined;
    // The service's own settings, with the ports it got; idgate haproxy-config reads its addresses from them.
    const serviceEnv = {
      IDGATE_LISTEN: `127.0.0.1:${idgatePort}`,
      ...(spoePort === undefined ? {} : { IDGATE_SPOE_LISTEN: `127.0.0.1:${spoePort}` }),
    };

    const chroot = path.join(dir, `chroot-${mode}`);
    fs.mkdirSync(chroot, { mode: 0o755 });
    const part = (name: string) => haproxyConfig(mode, ['--part', name, ...(mode === 'lua' ? luaCheckArgs(chroot) : [])], serviceEnv);
    const parts = { global: part('global'), frontend: part('frontend'), routing: part('routing'), backends: part('backends') };
    configFile = path.join(dir, `haproxy-${mode}.cfg`);
    const runFile = path.join(dir, `haproxy-${mode}.held-tls.cfg`);
    // The plain-http port is named by nothing but this config: when it was taken, HAProxy starts again on
    // another. The TLS port is the held socket: HAProxy is ready once the plain port answers.
    const held = heldTls[mode]!;
    ({ started: haproxy } = await startOnFreePort((plain) => {
      const config = withIdgate(thirdPartyConfig({ tls, plain, ...ports }, pem, chroot), parts);
      fs.writeFileSync(configFile, config);
      fs.writeFileSync(runFile, bindingHeldTls(config, tls));
      return startHaproxy({ frontPort: plain, idgatePort, upstreamPort: ports.web, configPath: runFile, passFds: [held.fd], name: `haproxy-${mode}`, checkSecret });
    }));
    await held.release();
    // Ready once the check answers through HAProxy: the plain port listening says only that HAProxy runs.
    // Until HAProxy has a connection to the SPOE agent (its HELLO is bounded by `timeout hello`, which a
    // loaded machine can exceed with the agent in this busy process), a check fails closed with 503.
    const fetchSite = fetchTrusting(certPem);
    const ready = await probeUntil(() => fetchSite(`${origin}/start`, { headers: { accept: 'text/html' } }).then((r) => r.status, () => 0), (status) => status === 302, { timeoutMs: 30_000 });
    expect(ready).toBe(302);
  });

  afterAll(async () => {
    await haproxy?.stop();
  });

  test('haproxy -c accepts it, without warnings', async () => {
    // The secret as docs/install.md gives it: a file of its own, printed by idgate, loaded first.
    const secretFile = path.join(dir, `idgate-check-secret-${mode}.cfg`);
    fs.writeFileSync(secretFile, haproxyConfig(mode, ['--check-secret'], { IDGATE_CHECK_SECRETS: `${checkSecret},${testCheckSecret()}` }), { mode: 0o600 });
    expect(fs.readFileSync(secretFile, 'utf8')).toContain(`\n    setenv IDGATE_CHECK_SECRET ${checkSecret}\n`);
    const { IDGATE_CHECK_SECRET: _, ...withoutSecret } = process.env;
    const check = startProcess('haproxy -c', HAPROXY_BIN, ['-c', '-f', secretFile, '-f', configFile], { env: withoutSecret });
    const code = await new Promise<number | null>((resolve) => check.child.once('close', resolve));
    await check.stop();
    expect(check.output()).not.toMatch(/WARNING|ALERT/);
    expect(code).toBe(0);
  });

  test('signing in over TLS lands back on the https deep link, with Secure __Host- cookies, and the app gets the identity', async () => {
    const browser = new Browser({}, fetchTrusting(certPem));
    const setCookies: string[] = [];
    const store = browser.storeCookies.bind(browser);
    browser.storeCookies = (url, lines) => {
      setCookies.push(...lines);
      store(url, lines);
    };
    const deepLink = `${origin}/reports/2026/q3?format=csv&sort=-date`;
    const { res, url } = await signIn(browser, deepLink, 'alice');
    expect(res.status).toBe(200);
    expect(url.href).toBe(deepLink);
    expect(await res.text()).toBe(`web /reports/2026/q3?format=csv&sort=-date user=alice`);
    // Every hop on the site itself stayed https; the login redirect carried the deep link, path and
    // query. idgate writes it relative only when the request's origin, scheme included, is the public
    // https origin: so the check saw https (Lua: X-Forwarded-Proto from idgate.lua; SPOE: ssl_fc).
    const siteHops = browser.hops.filter((h) => h.url.startsWith(`https://127.0.0.1:${tlsPorts[mode]}/`) || h.url.startsWith(`http://127.0.0.1:${tlsPorts[mode]}/`));
    expect(siteHops.every((h) => h.url.startsWith('https://'))).toBe(true);
    const login = browser.hops.find((h) => new URL(h.url).pathname === '/reports/2026/q3')!;
    expect(login.status).toBe(302);
    expect(new URL(login.location!, origin).searchParams.get('rd')).toBe('/reports/2026/q3?format=csv&sort=-date');

    const sessionCookies = setCookies.filter((c) => c.startsWith('__Host-idgate'));
    expect(sessionCookies.map((c) => c.split('=')[0])).toEqual(expect.arrayContaining(['__Host-idgate_login', '__Host-idgate']));
    for (const line of sessionCookies) expect(line).toMatch(/;\s*Secure(;|$)/i);

    const app = seen.filter((s) => s.url === '/reports/2026/q3?format=csv&sort=-date').at(-1)!;
    expect(app.app).toBe('web');
    expect(app.headers['x-auth-user']).toBe('alice');
    expect(app.headers['x-auth-email']).toBe(alice.email);
    expect(app.headers['x-forwarded-proto']).toBe('https');
    expect(app.headers['x-site']).toBe('www');
    expect(app.headers.cookie ?? '').not.toContain('__Host-idgate');
  });

  test("the site's own ACLs still route and deny, after idgate's check, and client identity headers never pass", async () => {
    const browser = new Browser({}, fetchTrusting(certPem));
    await signIn(browser, `${origin}/start`, 'bob');
    const api = await browser.fetch(`${origin}/api/orders?id=7`, { headers: { 'X-Auth-User': 'mallory', 'X_Auth_Groups': 'admins' } });
    expect(await api.text()).toBe('api /api/orders?id=7 user=bob');
    const apiSeen = seen.filter((s) => s.url === '/api/orders?id=7').at(-1)!;
    expect(apiSeen.headers['x-auth-user']).toBe('bob');
    expect(apiSeen.headers.x_auth_groups).toBeUndefined();
    expect((await browser.fetch(`${origin}/internal/metrics`)).status).toBe(403);
    // Anonymous: idgate answers first (the API's 401), the site's routing never sees the request.
    const anonymous = await new Browser({}, fetchTrusting(certPem)).fetch(`${origin}/api/orders?id=8`, { headers: { accept: 'application/json' } });
    expect(anonymous.status).toBe(401);
    expect(seen.some((s) => s.url === '/api/orders?id=8')).toBe(false);
  });
});
