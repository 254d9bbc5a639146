// The compiled idgate and its SPOE agent's port: none unless IDGATE_SPOE_LISTEN asks for one, and then
// served only to IDGATE_TRUSTED_PROXIES. Which ports a process listens on is read from /proc (its socket
// file descriptors against the kernel's table of listening TCP sockets), so "no agent" means no port at
// all, not just nothing on 4181.
import fs from 'node:fs';
import path from 'node:path';
import { startStack, type Stack } from '../../stack/stack.js';
import { loggedPort, REPO_ROOT, startProcess, waitForReport, type ManagedProcess } from '../../stack/processes.js';
import { FRAME } from '../../service/src/transports/spoe-codec.js';
import { converse, hello } from '../support/spop.js';
import { waitForOutput } from '../../stack/wait.js';

/** TCP ports the process `pid` listens on, from /proc. */
function listeningPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  const ports: number[] = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of fs.readFileSync(table, 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      // local_address is HEXIP:HEXPORT; state 0A is LISTEN; column 9 is the inode.
      if (cols.length > 9 && cols[3] === '0A' && inodes.has(cols[9]!)) ports.push(parseInt(cols[1]!.split(':')[1]!, 16));
    }
  }
  return ports.sort((a, b) => a - b);
}

let stack: Stack;
const extra: ManagedProcess[] = [];

beforeAll(async () => {
  stack = await startStack({ haproxy: false, spoeAgent: false });
}, 60_000);

afterAll(async () => {
  await Promise.all(extra.map((p) => p.stop()));
  await stack?.stop();
});

/**
 * One more idgate on the stack's Redis and IdP, with `env` on top of the stack's settings; its HTTP port
 * and, with IDGATE_SPOE_LISTEN 127.0.0.1:0, its agent's: the ports it reports having bound.
 */
async function startIdgate(env: Record<string, string>): Promise<{ process: ManagedProcess; httpPort: number; spoePort?: number }> {
  // No HAProxy to drain from: stop at once.
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...stack.env, IDGATE_LISTEN: '127.0.0.1:0', IDGATE_SHUTDOWN_DRAIN_MS: '0', ...env };
  const p = startProcess(`idgate-extra-${extra.length + 1}`, process.execPath, [path.join(REPO_ROOT, 'dist/service/src/cli.js'), 'serve'], { env: childEnv });
  extra.push(p);
  const httpPort = await waitForReport(p, loggedPort('idgate listening on '));
  const spoePort = env.IDGATE_SPOE_LISTEN === undefined ? undefined : await waitForReport(p, loggedPort('SPOE agent listening on '));
  return { process: p, httpPort, spoePort };
}

test('without IDGATE_SPOE_LISTEN, idgate listens on its HTTP port only: no SPOE agent, on 4181 or anywhere', async () => {
  const idgate = stack.processes.idgate!;
  // Logged right where the agent would have been started: after it, no listen can still come.
  await waitForOutput(idgate, 'SPOE agent off (IDGATE_SPOE_LISTEN unset)', { timeoutMs: 10_000 });
  expect(idgate.output()).toContain('SPOE agent off (IDGATE_SPOE_LISTEN unset)');
  expect(idgate.output()).not.toContain('SPOE agent listening');
  expect(listeningPorts(idgate.child.pid!)).toEqual([stack.ports.idgate[0]]);
});

test('with IDGATE_SPOE_LISTEN set, the agent listens there and answers HAProxy\'s hello', async () => {
  const { process: p, httpPort, spoePort } = await startIdgate({ IDGATE_SPOE_LISTEN: '127.0.0.1:0' });
  expect(listeningPorts(p.child.pid!)).toEqual([httpPort, spoePort!].sort((a, b) => a - b));
  expect((await converse(spoePort!, [hello()], 1)).frames.map((f) => f.type)).toEqual([FRAME.AGENT_HELLO]);
});

test('a peer outside IDGATE_TRUSTED_PROXIES is closed unanswered, and the log names it', async () => {
  const { process: p, spoePort } = await startIdgate({ IDGATE_SPOE_LISTEN: '127.0.0.1:0', IDGATE_TRUSTED_PROXIES: '10.0.0.0/8' });
  for (let i = 0; i < 3; i++) expect(await converse(spoePort!, [hello()], 1, 5000)).toEqual({ frames: [], closed: true });
  await waitForOutput(p, 'refused a connection from');
  const lines = p.output().split('\n').filter((l) => l.includes('refused a connection from'));
  // Three refusals, one line: the warning is rate-limited per peer.
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/"level":"warn".*refused a connection from (::ffff:)?127\.0\.0\.1, not in IDGATE_TRUSTED_PROXIES/);
});
