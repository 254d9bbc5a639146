// How idgate finds and follows a Sentinel-managed primary: the newest configuration any sentinel names,
// and what a +switch-master does to each connection, whatever state it is in. Fake sentinels speak just
// enough RESP for `SENTINEL MASTER`; the real failover is in test/e2e/redis-tls-topologies.test.ts.
import { jest } from '@jest/globals';
import net from 'node:net';
import { SentinelConnector, type Redis } from 'ioredis';
import { announcedPrimary, checkOnPrimary, followPrimary, resolveNewestPrimary, type PrimaryWatch } from '../../service/src/redis.js';

interface FakeSentinel {
  readonly port: number;
  close(): Promise<void>;
}

/** A sentinel that names `primary` with `epoch` (or never answers, with `silent`). */
async function fakeSentinel(named: { ip: string; port: number; epoch: number } | 'silent'): Promise<FakeSentinel> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    let pending = '';
    socket.on('data', (data) => {
      if (named === 'silent') return;
      pending += data.toString('latin1');
      // Each command is an array of bulk strings: *<n>\r\n then $<len>\r\n<arg>\r\n n times.
      for (;;) {
        const command = readCommand(pending);
        if (!command) return;
        pending = pending.slice(command.length);
        if (command.args[0]?.toLowerCase() !== 'sentinel') {
          socket.write('+OK\r\n');
          continue;
        }
        const fields = ['name', 'idgate', 'ip', named.ip, 'port', String(named.port), 'flags', 'master', 'config-epoch', String(named.epoch)];
        socket.write(`*${fields.length}\r\n${fields.map((f) => `$${Buffer.byteLength(f)}\r\n${f}\r\n`).join('')}`);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** The first whole command in `text`, with the length it takes, or undefined if it has not all arrived. */
function readCommand(text: string): { args: string[]; length: number } | undefined {
  const header = /^\*(\d+)\r\n/.exec(text);
  if (!header) return undefined;
  let at = header[0].length;
  const args: string[] = [];
  for (let i = 0; i < Number(header[1]); i++) {
    const bulk = /^\$(\d+)\r\n/.exec(text.slice(at));
    if (!bulk) return undefined;
    at += bulk[0].length;
    if (text.length < at + Number(bulk[1]) + 2) return undefined;
    args.push(text.slice(at, at + Number(bulk[1])));
    at += Number(bulk[1]) + 2;
  }
  return { args, length: at };
}

describe('finding the primary: the newest configuration that any sentinel names', () => {
  const started: FakeSentinel[] = [];
  afterEach(async () => {
    await Promise.all(started.splice(0).map((s) => s.close()));
  });

  async function resolveWith(sentinels: Parameters<typeof fakeSentinel>[0][], timeoutMs = 1000) {
    const fakes = await Promise.all(sentinels.map(fakeSentinel));
    started.push(...fakes);
    const endpoints = fakes.map((f) => ({ host: '127.0.0.1', port: f.port }));
    const connector = new SentinelConnector({ name: 'idgate', sentinels: endpoints, connectTimeout: timeoutMs, sentinelCommandTimeout: timeoutMs });
    return resolveNewestPrimary.call(connector, endpoints[0]!);
  }

  test('a sentinel yet to hear of a failover, asked first, does not win over one that has', async () => {
    const resolved = await resolveWith([{ ip: '127.0.0.1', port: 7001, epoch: 3 }, { ip: '127.0.0.1', port: 7002, epoch: 4 }, { ip: '127.0.0.1', port: 7001, epoch: 3 }]);
    expect(resolved).toEqual({ host: '127.0.0.1', port: 7002 });
  });

  test('a sentinel that does not answer holds the answer up by a bounded moment only', async () => {
    // The sentinels' own timeouts far above SENTINEL_STRAGGLER_MS: an answer well before them was ended by
    // the straggler bound, and the bound below holds on a loaded machine.
    const SENTINEL_TIMEOUT_MS = 8000;
    const startedAt = Date.now();
    const resolved = await resolveWith(['silent', { ip: '127.0.0.1', port: 7002, epoch: 4 }, { ip: '127.0.0.1', port: 7002, epoch: 4 }], SENTINEL_TIMEOUT_MS);
    expect(resolved).toEqual({ host: '127.0.0.1', port: 7002 });
    expect(Date.now() - startedAt).toBeLessThan(SENTINEL_TIMEOUT_MS / 2);
  }, 15_000);

  test('no sentinel answering is an error, which ioredis reports and retries', async () => {
    const closed = await fakeSentinel('silent');
    await closed.close();
    const connector = new SentinelConnector({ name: 'idgate', sentinels: [{ host: '127.0.0.1', port: closed.port }], connectTimeout: 1000 });
    await expect(resolveNewestPrimary.call(connector, { host: '127.0.0.1', port: closed.port })).rejects.toThrow();
  });
});

describe('a +switch-master, for each state a connection can be in', () => {
  const OLD = { ip: '127.0.0.1', port: 7001 };
  const NEW = { ip: '127.0.0.1', port: 7002 };

  /** Enough of an ioredis client: its status, where its socket goes, and disconnect. */
  function follower(status: string, on?: { ip: string; port: number }) {
    return {
      status,
      stream: on && { remoteAddress: `::ffff:${on.ip}`, remotePort: on.port },
      disconnect: jest.fn<(reconnect?: boolean) => void>(),
    };
  }
  type Follower = ReturnType<typeof follower>;
  const watchOf = (...followers: Follower[]): PrimaryWatch => ({ followers: new Set(followers as unknown as Redis[]), sentinels: [] });
  const ready = (client: Follower, on: { ip: string; port: number }) => Object.assign(client, { status: 'ready', stream: { remoteAddress: on.ip, remotePort: on.port } });

  test('a ready connection to the old primary reconnects; one to the new primary stays', () => {
    const [onOld, onNew] = [follower('ready', OLD), follower('ready', NEW)];
    followPrimary(watchOf(onOld, onNew), NEW);
    expect(onOld.disconnect).toHaveBeenCalledWith(true);
    expect(onNew.disconnect).not.toHaveBeenCalled();
  });

  test('a connection being made is left to finish, then reconnects if it reached another node than the one announced', () => {
    const [connecting, setUp] = [follower('connecting'), follower('connect')];
    const watch = watchOf(connecting, setUp);
    followPrimary(watch, NEW, 1000);
    expect(connecting.disconnect).not.toHaveBeenCalled();
    expect(setUp.disconnect).not.toHaveBeenCalled();
    // A sentinel yet to hear of the failover sent one to the old primary, which still passes the role check.
    checkOnPrimary(watch, ready(connecting, OLD) as unknown as Redis, 1500);
    checkOnPrimary(watch, ready(setUp, NEW) as unknown as Redis, 1500);
    expect(connecting.disconnect).toHaveBeenCalledWith(true);
    expect(setUp.disconnect).not.toHaveBeenCalled();
  });

  test('long after the announcement, a connection is no longer held to it (a later switch may have been missed)', () => {
    const late = follower('connecting');
    const watch = watchOf(late);
    followPrimary(watch, NEW, 1000);
    checkOnPrimary(watch, ready(late, OLD) as unknown as Redis, 1000 + 60_000);
    expect(late.disconnect).not.toHaveBeenCalled();
  });

  test('with no announcement yet, a connection stays where the sentinels sent it', () => {
    const first = follower('connecting');
    const watch = watchOf(first);
    checkOnPrimary(watch, ready(first, OLD) as unknown as Redis);
    expect(first.disconnect).not.toHaveBeenCalled();
  });

  test('sentinels announcing host names: a connection is not judged by an address it cannot be compared with', () => {
    const [onIp, connecting] = [follower('ready', OLD), follower('connecting')];
    const watch = watchOf(onIp, connecting);
    followPrimary(watch, { ip: 'redis-1.example.internal', port: 7002 });
    checkOnPrimary(watch, ready(connecting, NEW) as unknown as Redis);
    expect(onIp.disconnect).not.toHaveBeenCalled();
    expect(connecting.disconnect).not.toHaveBeenCalled();
  });

  test('a connection waiting to reconnect is left alone: its next attempt asks the sentinels', () => {
    const waiting = follower('reconnecting');
    followPrimary(watchOf(waiting), NEW);
    expect(waiting.disconnect).not.toHaveBeenCalled();
  });
});

describe('the announcements of a new primary that idgate follows', () => {
  test.each([
    ['+switch-master', 'idgate 127.0.0.1 7001 127.0.0.1 7002', { ip: '127.0.0.1', port: 7002 }],
    ['+promoted-slave', 'slave 127.0.0.1:7002 127.0.0.1 7002 @ idgate 127.0.0.1 7001', { ip: '127.0.0.1', port: 7002 }],
    ['+switch-master', 'other-group 127.0.0.1 7001 127.0.0.1 7002', undefined],
    ['+promoted-slave', 'slave 127.0.0.1:7002 127.0.0.1 7002 @ other-group 127.0.0.1 7001', undefined],
    ['+promoted-slave', 'sentinel 127.0.0.1:26379 127.0.0.1 26379 @ idgate 127.0.0.1 7001', undefined],
    ['+switch-master', 'idgate 127.0.0.1 7001', undefined],
    ['+switch-master', 'idgate 127.0.0.1 7001 127.0.0.1 not-a-port', undefined],
    ['+sdown', 'master idgate 127.0.0.1 7001', undefined],
  ])('%s "%s" names %j', (channel, message, primary) => {
    expect(announcedPrimary(channel, message, 'idgate')).toEqual(primary);
  });
});
