// Two HAProxy and two idgate processes on one Redis: HAProxy A asks only idgate 1, HAProxy B only
// idgate 2. A session made through A is valid through B; a logout through A, or `idgate sessions revoke`,
// is refused through B too, and how long that takes (the revocation propagation time: from the revoke
// returning to B answering 401, with B's session cache warm) is measured and printed, p50 and max.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { startHaproxy } from '../../stack/haproxy.js';
import { REPO_ROOT, startOnFreePort, type ManagedProcess } from '../../stack/processes.js';
import { startStack, type Stack } from '../../stack/stack.js';
import { Browser, signIn } from '../support/browser.js';

/**
 * B's session cache lifetime, far above the 10 s msUntilRefused allows: a refusal within those 10 s came
 * from the revocation's announcement, never from the cached read expiring, however slow the machine.
 */
const SESSION_CACHE_MS = 30_000;
let stack: Stack;
let haproxyA: ManagedProcess;
let haproxyB: ManagedProcess;
let frontB: string;

beforeAll(async () => {
  // A's port is the public URL, named by the IdP and idgate before A can start: when it was taken by then,
  // the stack starts again on another (startOnFreePort). B's is named by nothing but B.
  ({ started: [stack, haproxyA] } = await startOnFreePort(async (front) => {
    const started = await startStack({ idgateReplicas: 2, haproxy: false, ports: { front }, idgateEnv: { IDGATE_SESSION_CACHE_MS: String(SESSION_CACHE_MS) } });
    const common = { upstreamPort: started.ports.upstream, canaryPort: started.ports.canary, checkSecret: started.checkSecret };
    return [started, await startHaproxy({ ...common, frontPort: front, idgatePort: started.ports.idgate[0]! }).catch(async (err: unknown) => {
      await started.stop();
      throw err;
    })] as const;
  }));
  const common = { upstreamPort: stack.ports.upstream, canaryPort: stack.ports.canary, checkSecret: stack.checkSecret };
  let portB: number;
  ({ port: portB, started: haproxyB } = await startOnFreePort((port) => startHaproxy({ ...common, frontPort: port, idgatePort: stack.ports.idgate[1]! })));
  frontB = `http://127.0.0.1:${portB}`;
}, 60_000);

afterAll(async () => {
  await Promise.all([haproxyA?.stop(), haproxyB?.stop()]);
  await stack?.stop();
});

const api = { accept: 'application/json' };

/** Status of GET <front>/replicas with `cookie`, as an API client (401 rather than a login redirect). */
async function statusThrough(front: string, cookie: string): Promise<number> {
  const res = await fetch(`${front}/replicas`, { headers: { ...api, cookie } });
  await res.arrayBuffer();
  return res.status;
}

/** Milliseconds until `front` refuses `cookie`; polls back to back, up to 10 s. */
async function msUntilRefused(front: string, cookie: string, since: number): Promise<number> {
  while (performance.now() - since < 10_000) {
    if ((await statusThrough(front, cookie)) === 401) return performance.now() - since;
  }
  throw new Error(`${front} still accepts the revoked session after 10 s`);
}

function runCli(args: string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(REPO_ROOT, 'bin/idgate.js'), ...args], { env: { ...process.env, ...stack.env }, stdio: 'ignore' });
    child.once('close', (code) => resolve(code ?? 1));
  });
}

/** Signs alice in through HAProxy A and makes idgate 2 cache her session (a check through B). */
async function aliceSignedInThroughA(): Promise<{ browser: Browser; cookie: string }> {
  const browser = new Browser();
  await signIn(browser, `${stack.frontUrl}/`, 'alice');
  const cookie = browser.cookieHeader(new URL(stack.frontUrl))!;
  expect(await statusThrough(frontB, cookie)).toBe(200);
  expect(await statusThrough(frontB, cookie)).toBe(200);
  return { browser, cookie };
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

test('a login through HAProxy A and idgate 1 is valid through HAProxy B and idgate 2', async () => {
  const { cookie } = await aliceSignedInThroughA();
  const res = await fetch(`${frontB}/whoami`, { headers: { ...api, cookie } });
  expect(res.status).toBe(200);
  const echo = (await res.json()) as { headers: Record<string, string> };
  expect(echo.headers['x-auth-user']).toBe('alice');
});

test('logout through A and `idgate sessions revoke` are refused through B by the announcement, not the cache expiring; the time it takes is measured', async () => {
  const rounds = 10;
  const logout: number[] = [];
  const revoke: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const { browser, cookie } = await aliceSignedInThroughA();
    const res = await browser.fetch(`${stack.frontUrl}/_auth/logout`, { method: 'POST', headers: { origin: stack.frontUrl } });
    expect(res.status).toBe(303);
    logout.push(await msUntilRefused(frontB, cookie, performance.now()));
  }
  for (let i = 0; i < rounds; i++) {
    const { cookie } = await aliceSignedInThroughA();
    expect(await runCli(['sessions', 'revoke', '--user', 'alice'])).toBe(0);
    revoke.push(await msUntilRefused(frontB, cookie, performance.now()));
  }
  const all = [...logout, ...revoke].sort((a, b) => a - b);
  const fmt = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return `p50 ${percentile(s, 50).toFixed(1)} ms, max ${s[s.length - 1]!.toFixed(1)} ms`;
  };
  console.log(`revocation propagation to the other replica (${all.length} revocations, session cache ${SESSION_CACHE_MS} ms, warm): ` +
    `logout through A: ${fmt(logout)}; idgate sessions revoke: ${fmt(revoke)}; all: ${fmt(all)}`);
  // Every one was refused (msUntilRefused throws after 10 s otherwise), far inside the session cache's
  // lifetime: the pub/sub announcement, not the cache's expiry, ended it. How soon is the figure above.
  expect(all).toHaveLength(2 * rounds);
  expect(all[all.length - 1]!).toBeLessThan(SESSION_CACHE_MS / 3);
}, 90_000);
