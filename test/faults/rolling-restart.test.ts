// Rolling restarts: two idgate replicas behind the real HAProxy, restarted one by one (SIGTERM, as an
// orchestrator does) while keep-alive clients with a signed-in session send requests back to back.
// Every request must be answered 200: the stopping replica says unready first (/readyz 503, SPOE health
// checks refused), HAProxy takes it out, and only then does it finish what is running and exit.
import { startStack, type Stack } from '../../stack/stack.js';
import { Browser, signIn } from '../support/browser.js';
import { describeCounts, startLoad } from '../support/load.js';
import { waitUntil } from '../../stack/wait.js';

describe.each(['lua', 'spoe'] as const)('rolling restart through HAProxy (%s)', (mode) => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await startStack({ idgateReplicas: 2, haproxyMode: mode });
  }, 60_000);

  afterAll(async () => {
    await stack?.stop();
  });

  test('restarting both replicas one by one under load fails no request', async () => {
    // HAProxy's own account of its servers: "Server be_idgate/idgate1 is DOWN, reason: Layer7 ...".
    const serverEvents: string[] = [];
    stack.processes.haproxy!.child.stderr!.on('data', (chunk: Buffer) => serverEvents.push(...chunk.toString().split('\n').filter((l) => / is (UP|DOWN)/.test(l))));
    const server = (n: number) => (mode === 'lua' ? `be_idgate/idgate${n}` : `be_idgate_spoe/idgate${n}-spoe`);
    const browser = new Browser();
    await signIn(browser, `${stack.frontUrl}/`, 'alice');
    const cookie = browser.cookieHeader(new URL(stack.frontUrl))!;
    const load = startLoad({ url: `${stack.frontUrl}/rolling/restart`, headers: { cookie, accept: 'application/json' }, concurrency: 8, maxMs: 150_000 });
    const disconnectsAtMs: number[] = [];
    try {
      for (const index of [0, 1]) {
        const before = load.counts.total;
        const seen = serverEvents.length;
        const stopping = stack.stopIdgate(index);
        // The drain: HAProxy's health check takes the replica out while it still answers.
        await waitUntil(`${server(index + 1)} DOWN`, () => serverEvents.slice(seen).some((l) => l.includes(`${server(index + 1)} is DOWN, reason: Layer7`)), { timeoutMs: 30_000 });
        await stopping;
        disconnectsAtMs.push(load.now());
        await stack.startIdgate(index);
        await waitUntil(`${server(index + 1)} UP`, () => serverEvents.slice(seen).some((l) => l.includes(`${server(index + 1)} is UP`)), { timeoutMs: 30_000 });
        console.log(`${mode}: replica ${index + 1} restarted and back in HAProxy at ${(load.now() / 1000).toFixed(1)} s; ${load.counts.total - before} requests meanwhile`);
      }
    } finally {
      const counts = await load.stop();
      console.log(`${describeCounts(`rolling restart (${mode})`, counts)}; failures ${JSON.stringify(counts.failures)}; replicas exited at ${disconnectsAtMs.map(Math.round).join(', ')} ms`);
      expect(counts.byStatus['200']).toBeGreaterThan(200);
      // SPOE: a frame HAProxy writes while the stopping agent's AGENT-DISCONNECT is on its way is lost;
      // HAProxy's SPOE lines ask once more (another replica answers), so that request is only slower.
      expect(counts.failures).toEqual([]);
    }
    for (const n of [1, 2]) expect(serverEvents.join('\n')).toMatch(new RegExp(`${server(n)} is DOWN, reason: Layer7`));
  }, 180_000);
});
