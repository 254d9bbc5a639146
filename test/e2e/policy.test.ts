// The policy file in the whole stack: pools chosen by identity and honoured by HAProxy, hot reload on
// file change and on SIGHUP, an invalid policy refused while the old one stays in force.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from '../../stack/processes.js';
import { startStack, type Stack } from '../../stack/stack.js';
import { Browser, signIn } from '../support/browser.js';
import { pause, waitForOutput, waitUntil } from '../../stack/wait.js';

let stack: Stack;
let dir: string;
/** The file idgate reads: a link to `target`, so that writing `target` is seen only on SIGHUP. */
let linked: string;
let target: string;
/** A plain file in a watched directory: writing it is seen at once. */
let watched: string;
let alice: Browser;
let bob: Browser;

const demo = fs.readFileSync(path.join(REPO_ROOT, 'policy/demo.yaml'), 'utf8');

interface Echo {
  server: string;
  headers: Record<string, string>;
}

async function page(browser: Browser, uri: string): Promise<{ status: number; echo?: Echo }> {
  const res = await browser.fetch(`${stack.frontUrl}${uri}`);
  return { status: res.status, echo: res.status === 200 ? ((await res.json()) as Echo) : (await res.arrayBuffer(), undefined) };
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'idgate-policy-'));
  fs.mkdirSync(path.join(dir, 'watched'));
  fs.mkdirSync(path.join(dir, 'targets'));
  watched = path.join(dir, 'watched', 'policy.yaml');
  fs.writeFileSync(watched, demo);
  stack = await startStack({ idgateReplicas: 1, idgateEnv: { IDGATE_POLICY_FILE: watched } });
  alice = new Browser();
  bob = new Browser();
  await signIn(alice, `${stack.frontUrl}/`, 'alice');
  await signIn(bob, `${stack.frontUrl}/`, 'bob');
}, 60_000);

afterAll(async () => {
  await stack?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('pools', () => {
  test('the pool the policy chose serves the request: alice on canary, bob on main', async () => {
    const a = await page(alice, '/');
    expect(a.echo).toMatchObject({ server: 'canary', headers: { 'x-auth-backend': 'canary', 'x-auth-user': 'alice' } });
    const b = await page(bob, '/');
    expect(b.echo!.server).toBe('main');
    expect(b.echo!.headers['x-auth-backend']).toBeUndefined();
    const admin = await page(alice, '/admin/');
    expect(admin.echo!.server).toBe('canary');
  });
});

describe('hot reload', () => {
  test('editing the file swaps the policy in without dropping a request', async () => {
    const toMain = demo.replaceAll('backend: canary', 'backend: main');
    let stop = false;
    const statuses: number[] = [];
    const servers = new Set<string>();
    /** Answers in a row from the pool last seen. */
    let last = { server: '', inARow: 0 };
    const load = (async () => {
      while (!stop) {
        const r = await page(alice, '/');
        statuses.push(r.status);
        if (r.echo) servers.add(r.echo.server);
        last = r.echo?.server === last.server ? { server: last.server, inARow: last.inARow + 1 } : { server: r.echo?.server ?? '', inARow: 1 };
      }
    })();
    // Each version is swapped in under load: the next write waits until a few requests went to the pool it chose.
    for (let i = 0; i < 6; i++) {
      const [policy, pool] = i % 2 === 0 ? [toMain, 'main'] : [demo, 'canary'];
      fs.writeFileSync(watched, policy);
      await waitUntil(`four answers in a row from ${pool}`, () => last.server === pool && last.inARow >= 4);
    }
    stop = true;
    await load;
    expect(statuses.length).toBeGreaterThan(20);
    expect(statuses.every((s) => s === 200)).toBe(true);
    expect([...servers].sort()).toEqual(['canary', 'main']);
    await waitUntil('alice served by canary', async () => (await page(alice, '/')).echo?.server === 'canary');
  });

  test('a pool name HAProxy does not know falls back to the default pool', async () => {
    fs.writeFileSync(watched, demo.replaceAll('backend: canary', 'backend: nowhere'));
    await waitUntil('alice routed to nowhere', async () => (await page(alice, '/')).echo?.headers['x-auth-backend'] === 'nowhere');
    expect((await page(alice, '/')).echo!.server).toBe('main');
    fs.writeFileSync(watched, demo);
    await waitUntil('alice served by canary', async () => (await page(alice, '/')).echo?.server === 'canary');
  });

  test('an invalid policy is refused and logged with its problems; the policy in force stays', async () => {
    fs.writeFileSync(watched, demo.replace('allow:\n      groups: [admins]', 'allow:\n      group: [admins]'));
    await waitForOutput(stack.processes.idgate!, 'policy reload rejected');
    const line = stack.processes.idgate!.output().split('\n').find((l) => l.includes('policy reload rejected'))!;
    expect(line).toContain('unknown condition \\"group\\"');
    expect(line).toMatch(/policy\.yaml:\d+: rule \\"admin-area\\"/);
    expect((await page(bob, '/admin/')).status).toBe(403);
    expect((await page(alice, '/admin/')).status).toBe(200);
    fs.writeFileSync(watched, demo);
  });

  test('SIGHUP reloads a policy whose change no watcher saw', async () => {
    // A second stack-free check: a new idgate file path behind a symlink, changed through its target.
    target = path.join(dir, 'targets', 'policy.yaml');
    linked = path.join(dir, 'watched', 'linked.yaml');
    fs.writeFileSync(target, demo);
    fs.symlinkSync(target, linked);
    await stack.stopIdgate(0);
    stack.env.IDGATE_POLICY_FILE = linked;
    await stack.startIdgate(0);
    await waitUntil('alice served', async () => (await page(alice, '/')).status === 200);
    fs.writeFileSync(target, demo.replace('path: /admin/\n    allow:\n      groups: [admins]', 'path: /admin/\n    allow:\n      groups: [sales]'));
    // Proving that no watcher reloads: nothing to wait for but time. A watcher would have fired within
    // milliseconds (the watched-file test above sees its change at once).
    await pause(500);
    expect((await page(bob, '/admin/')).status).toBe(403);
    stack.processes.idgate!.child.kill('SIGHUP');
    await waitUntil('bob served on /admin/', async () => (await page(bob, '/admin/')).status === 200);
    expect((await page(alice, '/admin/')).status).toBe(403);
  });
});
