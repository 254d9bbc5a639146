// One idgate replica killed (SIGKILL: no drain, no goodbye) under load, behind the real HAProxy. HAProxy
// moves everything to the survivor; the only requests allowed to fail are those in flight on the killed
// process at that instant (at most the number of clients). The counts are printed.
import { startStack, type Stack } from '../../stack/stack.js';
import { Browser, signIn } from '../support/browser.js';
import { describeCounts, startLoad } from '../support/load.js';
import { waitAtMost, waitUntil } from '../../stack/wait.js';

const CLIENTS = 8;
/** Allowed answers counted before the kill, and again after HAProxy has said the replica is DOWN. */
const SURVIVOR_ANSWERS = 300;

describe.each(['lua', 'spoe'] as const)('one idgate killed under load (%s)', (mode) => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await startStack({ idgateReplicas: 2, haproxyMode: mode });
  }, 60_000);

  afterAll(async () => {
    await stack?.stop();
  });

  test('HAProxy moves to the survivor; only the requests in flight on the killed replica fail', async () => {
    const downEvents: string[] = [];
    // When HAProxy said so, on the load's clock (set once the load runs).
    let downAtMs: number | undefined;
    let loadNow: (() => number) | undefined;
    stack.processes.haproxy!.child.stderr!.on('data', (chunk: Buffer) => {
      const lines = chunk.toString().split('\n').filter((l) => l.includes(' is DOWN'));
      if (lines.length > 0 && loadNow && downAtMs === undefined) downAtMs = loadNow();
      downEvents.push(...lines);
    });
    const browser = new Browser();
    await signIn(browser, `${stack.frontUrl}/`, 'alice');
    const cookie = browser.cookieHeader(new URL(stack.frontUrl))!;
    const load = startLoad({ url: `${stack.frontUrl}/faults/kill`, headers: { cookie, accept: 'application/json' }, concurrency: CLIENTS, maxMs: 60_000 });
    loadNow = load.now;
    const allowed = () => load.counts.byStatus['200'] ?? 0;
    // Counts of answers, not a rate: how many come in a second is the machine's speed, not the behaviour.
    await waitAtMost(() => allowed() >= SURVIVOR_ANSWERS, 30_000);
    const killedAtMs = load.now();
    stack.processes.idgate!.child.kill('SIGKILL');
    // HAProxy notices (a refused connection or a failed health check), then the survivor carries on.
    await waitUntil('HAProxy says the replica is DOWN', () => downEvents.length > 0, { timeoutMs: 30_000 });
    const allowedAtDown = allowed();
    await waitUntil('the survivor answers', () => allowed() >= allowedAtDown + SURVIVOR_ANSWERS, { timeoutMs: 30_000 });
    const counts = await load.stop();
    console.log(
      `${describeCounts(`idgate 1 killed under load (${mode})`, counts)}; killed at ${Math.round(killedAtMs)} ms; HAProxy said DOWN at ${downAtMs === undefined ? '-' : Math.round(downAtMs)} ms; ` +
        `failures ${JSON.stringify(counts.failures)}; HAProxy: ${downEvents[0]?.replace(/^.*Server /, '')}`,
    );
    expect(counts.byStatus['200']).toBeGreaterThanOrEqual(allowedAtDown + SURVIVOR_ANSWERS);
    expect(counts.failures.length).toBeLessThanOrEqual(CLIENTS);
    // Each failed request was under way when the process died, or sent before HAProxy knew (SPOE: a frame
    // then waits for its ACK until the 800 ms timeout): none was sent after HAProxy said the replica was
    // DOWN. That moment is HAProxy's own line, not a guess of how soon after the kill it comes.
    expect(downAtMs).toBeDefined();
    for (const f of counts.failures) expect(f.atMs).toBeLessThanOrEqual(downAtMs!);
    for (const f of counts.failures) expect(f.what).toBe('503');
  }, 120_000);
});
