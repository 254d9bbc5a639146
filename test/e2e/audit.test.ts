// The audit trail and the operational surface, on the real stack: one line per decision with every
// field, HAProxy's log line and idgate's audit line joined by the request id, metrics that move, and
// readiness that follows Redis.
import { startStack, type Stack } from '../../stack/stack.js';
import { Browser, signIn } from '../support/browser.js';
import { metricValue } from '../support/idgate.js';
import { decisionLinesIn, decisionsCaughtUp } from '../support/logs.js';
import { probeUntil, waitForOutput, waitUntil } from '../../stack/wait.js';

let stack: Stack;

beforeAll(async () => {
  stack = await startStack();
}, 60_000);

afterAll(async () => {
  await stack?.stop();
});

const FIELDS = ['time', 'request_id', 'decision', 'status', 'reason', 'rule', 'sub', 'user', 'client', 'scheme', 'method', 'host', 'path', 'client_ip', 'latency_ms'];

const auditLines = () => decisionLinesIn(stack.processes.idgate!.output());

/** Every decision idgate took so far is in its output (a marker decision taken after them shows). */
const decisionsWritten = () => decisionsCaughtUp(stack.idgateUrls[0]!, () => stack.processes.idgate!.output(), `127.0.0.1:${stack.ports.front}`, stack.checkHeaders);

async function lineFor(requestId: string): Promise<Record<string, unknown>> {
  const find = () => auditLines().find((l) => l.request_id === requestId);
  await waitUntil(`an audit line for ${requestId}`, () => find() !== undefined);
  return find()!;
}

async function haproxyLineFor(requestId: string): Promise<string> {
  const find = () => stack.processes.haproxy!.output().split('\n').find((l) => l.includes(`id=${requestId}`));
  await waitUntil(`a HAProxy line for ${requestId}`, () => find() !== undefined);
  return find()!;
}

async function metrics(): Promise<string> {
  return (await fetch(`${stack.idgateUrls[0]}/metrics`)).text();
}

describe('audit lines', () => {
  describe('per IdP profile', () => {
    test('every kind of decision writes one line with every field of docs/reference.md', async () => {
      const alice = new Browser();
      await signIn(alice, `${stack.frontUrl}/`, 'alice');
      const bob = new Browser();
      await signIn(bob, `${stack.frontUrl}/`, 'bob');
      const cases: [string, () => Promise<Response>, Record<string, unknown>][] = [
        ['public', () => fetch(`${stack.frontUrl}/public/x?token=secret-in-query`), { decision: 'public', status: 200, rule: 'public', sub: null, path: '/public/x' }],
        ['allow', () => alice.fetch(`${stack.frontUrl}/admin/panel`), { decision: 'allow', status: 200, rule: 'admin-area', sub: 'alice', user: 'alice', client: null, path: '/admin/panel' }],
        ['login', () => fetch(`${stack.frontUrl}/page`, { headers: { accept: 'text/html' }, redirect: 'manual' }), { decision: 'login', status: 302, reason: 'no credentials', path: '/page' }],
        ['unauthenticated', () => fetch(`${stack.frontUrl}/api/x`, { method: 'DELETE' }), { decision: 'unauthenticated', status: 401, rule: 'api', method: 'DELETE', path: '/api/x' }],
        ['deny', () => bob.fetch(`${stack.frontUrl}/admin/`), { decision: 'deny', status: 403, rule: 'admin-area', reason: 'needs group admins', user: 'bob', path: '/admin/' }],
      ];
      await decisionsWritten(); // the sign-ins' own lines are out, not counted below
      for (const [name, send, expected] of cases) {
        const before = auditLines().length;
        const res = await send();
        await res.arrayBuffer();
        // Lines are written asynchronously: count those of this request's path.
        const ofThisRequest = () => auditLines().slice(before).filter((l) => l.path === (expected.path ?? l.path));
        await decisionsWritten(); // a second line of this request would show now
        const added = ofThisRequest();
        expect({ name, count: added.length }).toEqual({ name, count: 1 });
        const line = added[0]!;
        for (const field of FIELDS) expect({ name, field, present: field in line }).toEqual({ name, field, present: true });
        expect(line).toMatchObject({ ...expected, host: `127.0.0.1:${stack.ports.front}`, client_ip: '127.0.0.1' });
        expect(typeof line.latency_ms).toBe('number');
        expect(JSON.stringify(line)).not.toContain('secret-in-query');
      }
    });
  });

  test('a denied request is explained by the idgate line found with the request id of HAProxy\'s line', async () => {
    const bob = new Browser();
    await signIn(bob, `${stack.frontUrl}/`, 'bob');
    const res = await bob.fetch(`${stack.frontUrl}/admin/reports`);
    expect(res.status).toBe(403);
    const requestId = /<code>([^<]+)<\/code>/.exec(await res.text())![1]!;
    const haproxy = await haproxyLineFor(requestId);
    expect(haproxy).toContain('user=bob');
    expect(haproxy).toContain('check=403');
    expect(await lineFor(requestId)).toMatchObject({ decision: 'deny', rule: 'admin-area', reason: 'needs group admins', user: 'bob', path: '/admin/reports' });
  });

  test('the upstream sees the same request id as both logs', async () => {
    const alice = new Browser();
    await signIn(alice, `${stack.frontUrl}/`, 'alice');
    const echo = (await (await alice.fetch(`${stack.frontUrl}/trace-me`)).json()) as { headers: Record<string, string> };
    const id = echo.headers['x-auth-request-id']!;
    expect(echo.headers['x-request-id']).toBe(id);
    expect(await haproxyLineFor(id)).toContain('user=alice');
    expect((await lineFor(id)).user).toBe('alice');
  });
});

describe('metrics and health', () => {
  test('metrics move with logins, decisions and latency', async () => {
    const before = await metrics();
    const bob = new Browser();
    await signIn(bob, `${stack.frontUrl}/`, 'bob');
    await (await bob.fetch(`${stack.frontUrl}/admin/`)).arrayBuffer();
    const after = await metrics();
    const delta = (sample: string) => metricValue(after, sample) - metricValue(before, sample);
    expect(delta('idgate_logins_total{result="ok"}')).toBe(1);
    expect(delta('idgate_decisions_total{outcome="deny",reason="policy"}')).toBe(1);
    expect(delta('idgate_decisions_total{outcome="login",reason="no_credentials"}')).toBe(1);
    expect(delta('idgate_check_duration_seconds_count')).toBeGreaterThanOrEqual(3);
    // Labels stay low-cardinality: no user names or paths.
    expect(after).not.toMatch(/bob|\/admin/);
  });

  test('readiness goes false when Redis stops and true when it returns; meanwhile checks are audited as unavailable', async () => {
    const readyz = async () => (await fetch(`${stack.idgateUrls[0]}/readyz`)).status;
    const alice = new Browser();
    await signIn(alice, `${stack.frontUrl}/`, 'alice');
    expect(await readyz()).toBe(200);
    await decisionsWritten(); // the sign-in's own lines are out, not counted below
    await stack.stopRedis();
    expect(await readyz()).toBe(503);
    // idgate drops its session cache when its revocation subscription goes down, and says so.
    await waitForOutput(stack.processes.idgate!, 'session cache off');
    expect(stack.processes.idgate!.output()).toContain('session cache off');
    const before = auditLines().length;
    const res = await fetch(`${stack.idgateUrls[0]}/auth`, { headers: { ...stack.checkHeaders, cookie: alice.cookieHeader(new URL(stack.frontUrl))!, 'x-request-id': 'while-redis-is-down', 'x-forwarded-method': 'GET', 'x-forwarded-uri': '/', 'x-forwarded-host': `127.0.0.1:${stack.ports.front}` } });
    expect(res.status).toBe(503);
    await decisionsWritten();
    expect(auditLines().slice(before)).toEqual([expect.objectContaining({ request_id: 'while-redis-is-down', decision: 'unavailable', status: 503, reason: 'store_unavailable' })]);
    expect((await fetch(`${stack.idgateUrls[0]}/healthz`)).status).toBe(200);
    await stack.startRedis();
    expect(await probeUntil(readyz, (status) => status === 200)).toBe(200);
  });
});
