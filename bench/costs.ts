// `make costs`: where the CPU of a checked request goes, process by process. Every scenario runs at one
// fixed rate (well under any scenario's maximum), so that the figures are CPU per request and do not
// depend on how the two shared cores happened to be divided: µs of each process (HAProxy, the agent or
// auth backend, the upstream, Redis, the load generator) per request. Set against passthrough and each
// transport's ceiling, the differences say what a check adds, and who pays for it.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ManagedProcess } from '../stack/processes.js';
import { startStack } from '../stack/stack.js';
import { passthroughConfig, startHaproxyBeside } from './configs.js';
import { startConstantAgent } from './constant-agent.js';
import { benchRequests, realAnswers } from './requests.js';
import { cpuTicks, runAtRate } from './load.js';
import { startNullAuthBackend, type NullAuthBackend } from './null-auth.js';

const RATE = Number(process.env.COSTS_RATE ?? 3000);
const SECONDS = Number(process.env.COSTS_SECONDS ?? 5);

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'idgate-costs-'));
const stack = await startStack({ idgateEnv: { IDGATE_LOG_FILE: path.join(dir, 'idgate.log') } });
const extra: ManagedProcess[] = [];
let nullAuth: NullAuthBackend | undefined;
try {
  const startExtraHaproxy = (name: string, options: Parameters<typeof startHaproxyBeside>[2]) => startHaproxyBeside(stack, extra, { name, ...options });
  const requests = await benchRequests(stack);
  const { session, bearer, sessionCheck } = requests;
  const answers = await realAnswers(stack, requests);
  const constantAgent = await startConstantAgent(stack.env, answers.agent);
  nullAuth = await startNullAuthBackend(answers.backend);
  extra.push(constantAgent.process);

  const passthrough = await startExtraHaproxy('haproxy-passthrough', { configPath: passthroughConfig(dir) });
  const spoe = await startExtraHaproxy('haproxy-spoe', { spoePort: stack.ports.spoe[0]!, mode: 'spoe' });
  const spoeCeiling = await startExtraHaproxy('haproxy-spoe-ceiling', { spoePort: constantAgent.port, mode: 'spoe' });
  const luaCeiling = await startExtraHaproxy('haproxy-lua-ceiling', { idgatePort: nullAuth.port });
  const lua = { port: stack.ports.front, pid: stack.processes.haproxy!.child.pid! };

  // Who is who, by pid: the rest of the machine is counted as "other".
  const roles = new Map<number, string>([
    [process.pid, 'load generator'],
    [nullAuth.process.child.pid!, 'null auth backend'],
    [stack.processes.idgate!.child.pid!, 'idgate'],
    [constantAgent.process.child.pid!, 'constant agent'],
    [stack.processes.upstream!.child.pid!, 'upstream'],
    // The demo policy sends admins (alice) to the canary pool: another upstream process.
    [stack.processes.canary!.child.pid!, 'upstream'],
    [stack.processes.redis!.child.pid!, 'redis'],
  ]);
  const scenarios: { name: string; url: string; haproxyPid?: number; headers: Record<string, string> }[] = [
    { name: '(a) passthrough', url: `http://127.0.0.1:${passthrough.port}/`, haproxyPid: passthrough.pid, headers: session },
    { name: '(i) SPOE, constant agent, session request', url: `http://127.0.0.1:${spoeCeiling.port}/`, haproxyPid: spoeCeiling.pid, headers: session },
    { name: '(g) SPOE, idgate, session', url: `http://127.0.0.1:${spoe.port}/`, haproxyPid: spoe.pid, headers: session },
    { name: '(o) SPOE, constant agent, bearer request', url: `http://127.0.0.1:${spoeCeiling.port}/api/hello`, haproxyPid: spoeCeiling.pid, headers: bearer },
    { name: '(h) SPOE, idgate, bearer JWT', url: `http://127.0.0.1:${spoe.port}/api/hello`, haproxyPid: spoe.pid, headers: bearer },
    { name: '(j) Lua, null backend, session request', url: `http://127.0.0.1:${luaCeiling.port}/`, haproxyPid: luaCeiling.pid, headers: session },
    { name: '(b) Lua, idgate, session', url: `http://127.0.0.1:${lua.port}/`, haproxyPid: lua.pid, headers: session },
    { name: '(p) Lua, null backend, bearer request', url: `http://127.0.0.1:${luaCeiling.port}/api/hello`, haproxyPid: luaCeiling.pid, headers: bearer },
    { name: '(c) Lua, idgate, bearer JWT', url: `http://127.0.0.1:${lua.port}/api/hello`, haproxyPid: lua.pid, headers: bearer },
    // The HTTP check's two answerers asked directly, without HAProxy: what each costs per check.
    { name: '(n) null backend directly', url: `http://127.0.0.1:${nullAuth.port}/auth`, headers: sessionCheck },
    { name: '(d) idgate /auth directly, session', url: `${stack.idgateUrls[0]}/auth`, headers: sessionCheck },
    { name: '(q) idgate /auth directly, bearer JWT', url: `${stack.idgateUrls[0]}/auth`, headers: requests.bearerCheck },
  ];
  const columns = ['HAProxy', 'idgate', 'constant agent', 'null auth backend', 'load generator', 'upstream', 'redis', 'other', 'total'];
  const rows: string[] = [];
  for (const s of scenarios) {
    await runAtRate({ url: s.url, headers: s.headers, rate: RATE, duration: 1, connections: 32 });
    const before = cpuTicks();
    const r = await runAtRate({ url: s.url, headers: s.headers, rate: RATE, duration: SECONDS, connections: 32 });
    const after = cpuTicks();
    const used = new Map<string, number>();
    for (const [pid, { ticks }] of after) {
      const role = pid === s.haproxyPid ? 'HAProxy' : roles.get(pid) ?? 'other';
      used.set(role, (used.get(role) ?? 0) + ticks - (before.get(pid)?.ticks ?? ticks));
    }
    const requests = r.rps * SECONDS;
    // One tick is 10 ms of CPU (USER_HZ 100).
    const micros = (ticks: number) => ((ticks * 10_000) / requests).toFixed(0);
    const total = [...used.values()].reduce((a, b) => a + b, 0);
    rows.push(`| ${s.name} | ${r.rps} | ${r.p99_ms} | ${r.errors} | ${columns.map((c) => micros(c === 'total' ? total : used.get(c) ?? 0)).join(' | ')} |`);
    process.stdout.write(`${s.name}: ${r.rps} req/s\n`);
  }
  process.stdout.write(`\nCPU µs per request, at ${RATE} req/s for ${SECONDS} s (\`make costs\`; /proc ticks):\n\n`);
  process.stdout.write(`| scenario | req/s | p99 ms | errors | ${columns.join(' | ')} |\n|${'---|'.repeat(columns.length + 4)}\n${rows.join('\n')}\n`);
} finally {
  await Promise.all(extra.map((p) => p.stop()));
  await nullAuth?.close();
  await stack.stop();
  fs.rmSync(dir, { recursive: true, force: true });
}
