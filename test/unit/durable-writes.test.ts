// The replica wait's decisions, against a stand-in for ioredis (the real thing, with a real replica, is
// test/faults/redis-replica-wait.test.ts): which connection a write goes on, when WAIT is sent, and what
// is reported when it ends.
import type { Redis } from 'ioredis';
import { combineShardWaits, DurableWrites, type DurabilitySettings, type DurableWriteKind, type ShardWait, type WaitOutcome } from '../../service/src/session/durable-writes.js';
import { pause, waitUntil } from '../../stack/wait.js';

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
    readonly options: { host?: string; port?: number } = {},
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
    await pause(this.server.waitTakesMs);
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
  // A command timeout far above the WAIT's: the write ends on WAIT's answer, not on a timer, and the
  // bound below holds on a loaded machine.
  const { durable, reports } = setUp({ acked: 0, waitTakesMs: 50 }, { redisTimeoutMs: 3000 });
  const started = Date.now();
  expect(await durable.write('revocation', (r) => r.set('k', 'v'))).toBe('OK');
  expect(Date.now() - started).toBeLessThan(3000);
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
  await waitUntil('four WAITs', () => state.log.filter((l) => l.includes(' WAIT ')).length === 4); // every pool connection is in its WAIT
  const extra = await durable.write('session', (r) => r.set('extra', 'v'));
  expect(extra).toBe('OK');
  expect(state.log).toContain('shared SET extra');
  await Promise.all(held);
  expect(reports.map(([, o]) => o.result).sort()).toEqual(['skipped', 'timeout', 'timeout', 'timeout', 'timeout']);
});

test('with Redis away (the shared client not ready) the write goes straight to the shared client and fails as fast as any other', async () => {
  const state: Server = { online: 1, acked: 1, waitTakesMs: 1, log: [] };
  const shared = Object.assign(new FakeRedis('shared', state), { status: 'reconnecting' });
  const durable = new DurableWrites(shared as unknown as Redis, settings(), () => undefined);
  await expect(durable.write('session', async () => Promise.reject(new Error("Stream isn't writeable")))).rejects.toThrow('writeable');
  expect(state.log).toEqual([]);
});

// Redis Cluster: a stand-in whose keys starting with "a" live in slot 1 on primary A, "b" in slot 2 on
// primary B; its commands go through sendCommand, as ioredis's do, which is where the pool records slots.
const PRIMARIES = { A: '127.0.0.1:7001', B: '127.0.0.1:7002' } as const;
const slotOf = (key: string) => (key.startsWith('a') ? 1 : 2);

class FakeCluster {
  status = 'ready';
  isCluster = true;
  readonly slots: string[][] = [];
  readonly #nodes: FakeRedis[];
  constructor(
    readonly name: string,
    readonly servers: Record<keyof typeof PRIMARIES, Server>,
  ) {
    this.slots[1] = [PRIMARIES.A];
    this.slots[2] = [PRIMARIES.B];
    this.#nodes = (Object.keys(PRIMARIES) as (keyof typeof PRIMARIES)[]).map((p) => {
      const [host, port] = PRIMARIES[p].split(':');
      return new FakeRedis(`${name}@${p}`, servers[p], { host, port: Number(port) });
    });
  }
  duplicate(): FakeCluster {
    const log = this.servers.A.log;
    const name = `pool${log.filter((l) => l === 'open').length}`;
    log.push('open');
    return new FakeCluster(name, this.servers);
  }
  on(): this {
    return this;
  }
  nodes(): FakeRedis[] {
    return this.#nodes;
  }
  sendCommand(command: { name: string; args: string[]; getSlot(): number | null }): Promise<unknown> {
    this.servers.A.log.push(`${this.name} ${command.name} ${command.args.join(' ')}`);
    return Promise.resolve(command.name === 'DEL' ? 1 : 'OK');
  }
  set(key: string): Promise<unknown> {
    return this.sendCommand({ name: 'SET', args: [key], getSlot: () => slotOf(key) });
  }
  del(key: string): Promise<unknown> {
    return this.sendCommand({ name: 'DEL', args: [key], getSlot: () => slotOf(key) });
  }
  publish(channel: string): Promise<unknown> {
    return this.sendCommand({ name: 'PUBLISH', args: [channel], getSlot: () => null });
  }
  disconnect(): void {}
}

function setUpCluster(servers: { A?: Partial<Server>; B?: Partial<Server> } = {}, over: Partial<DurabilitySettings> = {}) {
  const log: string[] = [];
  const server = (s: Partial<Server> = {}): Server => ({ online: 1, acked: 1, waitTakesMs: 1, ...s, log });
  const shared = new FakeCluster('shared', { A: server(servers.A), B: server(servers.B) });
  const reports: [DurableWriteKind, WaitOutcome][] = [];
  const durable = new DurableWrites(shared as unknown as Redis, settings(over), (kind, outcome) => reports.push([kind, outcome]));
  return { log, durable, reports };
}

test('on Redis Cluster a write goes on a pooled Cluster client, then WAITs on each primary that took part of it, reported once', async () => {
  const { log, durable, reports } = setUpCluster();
  await durable.write('session', async (r) => Promise.all([r.set('a-session', 'v'), r.set('b-index', 'v')]));
  expect(log.filter((l) => !l.endsWith('INFO'))).toEqual(['open', 'pool0 SET a-session', 'pool0 SET b-index', 'pool0@A WAIT 1 50', 'pool0@B WAIT 1 50']);
  expect(log).toEqual(expect.arrayContaining(['pool0@A INFO', 'pool0@B INFO']));
  expect(reports).toEqual([['session', expect.objectContaining({ result: 'replicated', wanted: 2, acked: 2 })]]);
});

test('on Redis Cluster a primary the write did not reach is not waited on, and a keyless PUBLISH reaches none', async () => {
  const { log, durable, reports } = setUpCluster({ B: { acked: 0, waitTakesMs: 50 } });
  await durable.write('revocation', async (r) => {
    const deleted = await r.del('a-session');
    await r.publish('revoked', 'x');
    return deleted;
  });
  expect(log.filter((l) => l.includes('WAIT') || l.includes('INFO'))).toEqual(['pool0@A INFO', 'pool0@A WAIT 1 50']);
  expect(reports).toEqual([['revocation', expect.objectContaining({ result: 'replicated', wanted: 1, acked: 1 })]]);
});

test('on Redis Cluster one primary whose replica falls short makes the write a timeout, and the write still counts', async () => {
  const { durable, reports } = setUpCluster({ B: { acked: 0, waitTakesMs: 50 } });
  expect(await durable.write('renewal', (r) => Promise.all([r.set('a-x', 'v'), r.set('b-y', 'v')]))).toEqual(['OK', 'OK']);
  expect(reports).toEqual([['renewal', expect.objectContaining({ result: 'timeout', wanted: 2, acked: 1 })]]);
});

test('on Redis Cluster, auto waits only on primaries with an online replica; none at all reports nothing', async () => {
  const some = setUpCluster({ A: { online: 0 } });
  await some.durable.write('session', (r) => Promise.all([r.set('a-x', 'v'), r.set('b-y', 'v')]));
  expect(some.log.filter((l) => l.includes('WAIT'))).toEqual(['pool0@B WAIT 1 50']);
  expect(some.reports).toEqual([['session', expect.objectContaining({ result: 'replicated', wanted: 1, acked: 1 })]]);
  const none = setUpCluster({ A: { online: 0 }, B: { online: 0 } });
  await none.durable.write('session', (r) => Promise.all([r.set('a-x', 'v'), r.set('b-y', 'v')]));
  expect(none.log.some((l) => l.includes('WAIT'))).toBe(false);
  expect(none.reports).toEqual([]);
});

test('on Redis Cluster, with IDGATE_REDIS_WAIT_REPLICAS=0 the write goes on the shared client', async () => {
  const { log, durable, reports } = setUpCluster({}, { redisWaitReplicas: 0 });
  await durable.write('session', (r) => r.set('a-x', 'v'));
  expect(log).toEqual(['shared SET a-x']);
  expect(reports).toEqual([]);
});

test.each<[string, (ShardWait | undefined)[], Omit<WaitOutcome, 'ms'> | undefined]>([
  ['every primary got its replica', [{ wanted: 1, acked: 1 }, { wanted: 1, acked: 1 }], { result: 'replicated', wanted: 2, acked: 2 }],
  ['one primary fell short', [{ wanted: 1, acked: 1 }, { wanted: 1, acked: 0 }], { result: 'timeout', wanted: 2, acked: 1 }],
  ['extra acks on one primary do not hide another falling short', [{ wanted: 1, acked: 2 }, { wanted: 1, acked: 0 }], { result: 'timeout', wanted: 2, acked: 1 }],
  ['a primary without a replica wants none', [{ wanted: 0, acked: 0 }, { wanted: 1, acked: 1 }], { result: 'replicated', wanted: 1, acked: 1 }],
  ['no primary wants a replica: nothing to report', [{ wanted: 0, acked: 0 }], undefined],
  ['the write reached no primary (keyless)', [], undefined],
  ['asking one primary failed', [{ wanted: 1, acked: 1 }, undefined], { result: 'error', wanted: 1, acked: 1 }],
])('combining the primaries\' waits: %s', (_case, shards, expected) => {
  expect(combineShardWaits(shards)).toEqual(expected);
});
