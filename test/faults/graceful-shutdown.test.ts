// idgate's own side of a graceful stop, on a real process: SIGTERM makes /readyz answer 503 while the
// check and /healthz still answer; after IDGATE_SHUTDOWN_DRAIN_MS it exits 0 with its last log line
// written. A second signal ends it at once.
import { startStack, type Stack } from '../../stack/stack.js';
import { checkFacts } from '../support/idgate.js';
import { waitForOutput } from '../../stack/wait.js';

const DRAIN_MS = 1500;
let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ idgateReplicas: 1, haproxy: false, spoeAgent: false, idgateEnv: { IDGATE_SHUTDOWN_DRAIN_MS: String(DRAIN_MS) } });
}, 60_000);

afterAll(async () => {
  await stack?.stop();
});

const exited = (child: NonNullable<Stack['processes'][string]>['child']) =>
  new Promise<{ code: number | null; at: number }>((resolve) => child.once('exit', (code) => resolve({ code, at: performance.now() })));

test('on SIGTERM idgate is unready but still answering for the drain, then exits 0', async () => {
  const url = stack.idgateUrls[0]!;
  const proc = stack.processes.idgate!;
  const exit = exited(proc.child);
  const signalledAt = performance.now();
  proc.child.kill('SIGTERM');
  await waitForOutput(proc, 'stopping on SIGTERM');
  const ready = await fetch(`${url}/readyz`);
  expect(ready.status).toBe(503);
  expect(await ready.text()).toContain('draining');
  expect((await fetch(`${url}/healthz`)).status).toBe(200);
  // A check during the drain is answered as ever (anonymous on a public path: allowed).
  expect((await fetch(`${url}/auth`, { headers: { ...checkFacts('127.0.0.1', '/public/x'), ...stack.checkHeaders } })).status).toBe(200);
  const { code, at } = await exit;
  console.log(`graceful stop: exit ${code} ${Math.round(at - signalledAt)} ms after SIGTERM (drain ${DRAIN_MS} ms)`);
  expect(code).toBe(0);
  expect(at - signalledAt).toBeGreaterThanOrEqual(DRAIN_MS - 50);
  expect(at - signalledAt).toBeLessThan(DRAIN_MS + 3000);
  expect(proc.output()).toContain('"stopped"');
  await stack.startIdgate(0);
});

test('a second SIGTERM during the drain exits at once', async () => {
  const proc = stack.processes.idgate!;
  const exit = exited(proc.child);
  proc.child.kill('SIGTERM');
  await waitForOutput(proc, 'stopping on SIGTERM');
  const secondAt = performance.now();
  proc.child.kill('SIGTERM');
  const { code, at } = await exit;
  console.log(`second SIGTERM: exit ${code} ${Math.round(at - secondAt)} ms after it (drain ${DRAIN_MS} ms)`);
  // The second signal's own exit (143; the drain's end would exit 0 after logging "stopped"), and before
  // the drain would have ended: a bound a loaded machine meets, the figure printed above.
  expect(code).toBe(143);
  expect(proc.output()).not.toContain('"stopped"');
  expect(at - secondAt).toBeLessThan(DRAIN_MS);
  await stack.startIdgate(0);
});
