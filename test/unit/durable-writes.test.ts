// The replica wait's decisions, against a stand-in for ioredis (the real thing, with a real replica, is
// test/faults/redis-replica-wait.test.ts): which connection a write goes on, when WAIT is sent, and what
// is reported when it ends.
import type { Redis } from 'ioredis';
import { DurableWrites, type DurabilitySettings, type DurableWriteKind, type WaitOutcome } from '../../service/src/durable-writes.js';

interface Server {
  online: number;
  /** What WAIT answers, and after how many ms (as Redis would at the bound, or a slow network later). */
  acked: number;
  waitTakesMs: number;
  log: string[];
}

class FakeRedis {
  status = 'ready';
  isCluster = false;
  constructor(
    readonly name: string,
    readonly server: Server,
  ) {}
  duplicate(): FakeRedis {
    const name = `pool${this.server.log.filter((l) => l === 'open').length}`;
    this.server.log.push('open');
    return new FakeRedis(name, this.server);
  }
  on(): this {
    return this;
  }
  async info(): Promise<string> {
    this.server.log.push(`${this.name} INFO`);
    const replicas = Array.from({ length: this.server.online }, (_, i) => `slave${i}:ip=127.0.0.1,port=7000,state=online,offset=1,lag=0`);
    return ['# Replication', 'role:master', `connected_slaves:${this.server.online}`, ...replicas, ''].join('\r\n');
  }
  async wait(replicas: number, ms: number): Promise<number> {
    this.server.log.push(`${this.name} WAIT ${replicas} ${ms}`);
    await new Promise((r) => setTimeout(r, this.server.waitTakesMs));
    return this.server.acked;
  }
  async set(key: string): Promise<'OK'> {
    this.server.log.push(`${this.name} SET ${key}`);
    return 'OK';
  }
  disconnect(): void {}
}

const settings = (over: Partial<DurabilitySettings> = {}): DurabilitySettings => ({ redisWaitReplicas: 'auto', redisWaitMs: 50, redisTimeoutMs: 500, ...over });

function setUp(server: Partial<Server> = {}, over: Partial<DurabilitySettings> = {}) {
  const state: Server = { online: 1, acked: 1, waitTakesMs: 1, log: [], ...server };
  const shared = new FakeRedis('shared', state);
  const reports: [DurableWriteKind, WaitOutcome][] = [];
  const durable = new DurableWrites(shared as unknown as Redis, settings(over), (kind, outcome) => reports.push([kind, outcome]));
  return { state, durable, reports };
}

test('with a replica online, a login\'s write goes on a pool connection, then WAIT 1 there, reported replicated', async () => {
  const { state, durable, reports } = setUp();
  expect(await durable.write('session', (r) => r.set('k', 'v'))).toBe('OK');
  expect(state.log.filter((l) => !l.endsWith('INFO'))).toEqual(['open', 'pool0 SET k', 'pool0 WAIT 1 50']);
  expect(reports).toEqual([['session', expect.objectContaining({ result: 'replicated', wanted: 1, acked: 1 })]]);
});

test('with no replica online (auto), the write waits for nothing and nothing is reported', async () => {
  const { state, durable, reports } = setUp({ online: 0 });
  await durable.write('renewal', (r) => r.set('k', 'v'));
  expect(state.log.some((l) => l.includes('WAIT'))).toBe(false);
  expect(reports).toEqual([]);
});

test('a WAIT that ends at the bound without the replica is reported as timeout, and the write still counts', async () => {
  const { durable, reports } = setUp({ acked: 0, waitTakesMs: 50 });
  const started = Date.now();
  expect(await durable.write('revocation', (r) => r.set('k', 'v'))).toBe('OK');
  expect(Date.now() - started).toBeLessThan(500);
  expect(reports).toEqual([['revocation', expect.objectContaining({ result: 'timeout', wanted: 1, acked: 0 })]]);
});

test('IDGATE_REDIS_WAIT_REPLICAS=0 writes on the shared connection: no pool, no INFO, no WAIT', async () => {
  const { state, durable, reports } = setUp({}, { redisWaitReplicas: 0 });
  await durable.write('session', (r) => r.set('k', 'v'));
  expect(state.log).toEqual(['shared SET k']);
  expect(reports).toEqual([]);
});

test('a count of replicas is waited for without asking how many there are', async () => {
  const { state, durable } = setUp({ acked: 2 }, { redisWaitReplicas: 2 });
  await durable.write('session', (r) => r.set('k', 'v'));
  expect(state.log).toEqual(['open', 'pool0 SET k', 'pool0 WAIT 2 50']);
});

test('a write that changed nothing waits for no replica', async () => {
  const { state, durable, reports } = setUp();
  await durable.write('revocation', async () => 0, (deleted) => deleted > 0);
  expect(state.log.some((l) => l.includes('WAIT'))).toBe(false);
  expect(reports).toEqual([]);
});

test('a failed write rejects and reports nothing', async () => {
  const { durable, reports } = setUp();
  await expect(durable.write('session', async () => Promise.reject(new Error('OOM command not allowed')))).rejects.toThrow('OOM');
  expect(reports).toEqual([]);
});

test('with every pool connection held by a slow WAIT, a further write goes on the shared connection after the bound, reported skipped', async () => {
  const { state, durable, reports } = setUp({ acked: 0, waitTakesMs: 600 }, { redisWaitMs: 200 });
  const held = Array.from({ length: 4 }, (_, i) => durable.write('session', (r) => r.set(`held${i}`, 'v')));
  await new Promise((r) => setTimeout(r, 20));
  const extra = await durable.write('session', (r) => r.set('extra', 'v'));
  expect(extra).toBe('OK');
  expect(state.log).toContain('shared SET extra');
  await Promise.all(held);
  expect(reports.map(([, o]) => o.result).sort()).toEqual(['skipped', 'timeout', 'timeout', 'timeout', 'timeout']);
});

test('on Redis Cluster nothing is waited for: one WAIT cannot cover a write spread over shards', async () => {
  const reports: [DurableWriteKind, WaitOutcome][] = [];
  const clusterState: Server = { online: 1, acked: 1, waitTakesMs: 1, log: [] };
  const cluster = Object.assign(new FakeRedis('cluster', clusterState), { isCluster: true });
  const onCluster = new DurableWrites(cluster as unknown as Redis, settings(), (kind, outcome) => reports.push([kind, outcome]));
  await onCluster.write('session', (r) => r.set('k', 'v'));
  expect(clusterState.log).toEqual(['cluster SET k']);
  expect(reports).toEqual([]);
});

test('with Redis away (the shared client not ready) the write goes straight to the shared client and fails as fast as any other', async () => {
  const state: Server = { online: 1, acked: 1, waitTakesMs: 1, log: [] };
  const shared = Object.assign(new FakeRedis('shared', state), { status: 'reconnecting' });
  const durable = new DurableWrites(shared as unknown as Redis, settings(), () => undefined);
  await expect(durable.write('session', async () => Promise.reject(new Error("Stream isn't writeable")))).rejects.toThrow('writeable');
  expect(state.log).toEqual([]);
});
