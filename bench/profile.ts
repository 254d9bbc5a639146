// `make profile`: a V8 CPU profile of idgate while HAProxy's SPOE agent path is under load, with a
// session cookie (PROFILE_TRANSPORT=lua: the Lua action's HTTP check instead; PROFILE_REQUEST=bearer: a
// machine's bearer JWT instead). Writes .run/profile/*.cpuprofile (open in Chrome DevTools) and prints
// the functions with the most self time.
import fs from 'node:fs';
import path from 'node:path';
import { startHaproxy } from '../stack/haproxy.js';
import { REPO_ROOT, startOnFreePort } from '../stack/processes.js';
import { startStack } from '../stack/stack.js';
import { cpuTicks, runWrk } from './load.js';
import { benchRequests } from './requests.js';

const out = path.join(REPO_ROOT, '.run/profile');
fs.rmSync(out, { recursive: true, force: true });
fs.mkdirSync(out, { recursive: true });
const stack = await startStack({ idgateNodeArgs: ['--cpu-prof', `--cpu-prof-dir=${out}`], idgateEnv: { IDGATE_LOG_FILE: path.join(out, 'idgate.log') } });
const { port: spoePort, started: haproxy } = await startOnFreePort((frontPort) => startHaproxy({ frontPort, idgatePort: stack.ports.idgate[0]!, upstreamPort: stack.ports.upstream, canaryPort: stack.ports.canary, spoePort: stack.ports.spoe[0]!, mode: 'spoe', checkSecret: stack.checkSecret }));
try {
  const requests = await benchRequests(stack);
  const bearer = process.env.PROFILE_REQUEST === 'bearer';
  const seconds = Number(process.env.PROFILE_SECONDS ?? 8);
  const before = cpuTicks();
  // PROFILE_TRANSPORT=lua: the stack's own HAProxy, whose Lua action asks idgate's HTTP check.
  const lua = process.env.PROFILE_TRANSPORT === 'lua';
  const r = await runWrk({ url: `${lua ? stack.frontUrl : `http://127.0.0.1:${spoePort}`}${bearer ? '/api/hello' : '/'}`, headers: bearer ? requests.bearer : requests.session, duration: seconds });
  process.stdout.write(`${lua ? 'Lua' : 'SPOE'} ${bearer ? 'bearer' : 'session'}: ${r.rps} req/s, p99 ${r.p99_ms} ms, errors ${r.errors}\n`);
  const after = cpuTicks();
  for (const [pid, t] of after) {
    const used = (t.ticks - (before.get(pid)?.ticks ?? 0)) / 100 / seconds;
    if (used > 0.02) process.stdout.write(`  ${t.name.padEnd(16)} ${(used * 100).toFixed(0)}% of a core\n`);
  }
} finally {
  await haproxy.stop();
  await stack.stop();
}

interface Node { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number; children?: number[] }
for (const file of fs.readdirSync(out).filter((f) => f.endsWith('.cpuprofile'))) {
  const profile = JSON.parse(fs.readFileSync(path.join(out, file), 'utf8')) as { nodes: Node[] };
  const self = new Map<string, number>();
  let total = 0;
  for (const n of profile.nodes) {
    const key = `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.replace(/^.*\/(node_modules|dist)\//, '$1/')}:${n.callFrame.lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + (n.hitCount ?? 0));
    total += n.hitCount ?? 0;
  }
  process.stdout.write(`\n${file}: top self time of ${total} samples\n`);
  for (const [key, hits] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 40)) process.stdout.write(`${((100 * hits) / total).toFixed(1).padStart(5)}%  ${key}\n`);
}
