// A Redis Sentinel deployment on loopback: a primary, one replica and three sentinels (quorum 2), as
// redis/sentinel-example.conf describes, for `make demo-ha` and the tests. The data nodes run the shipped
// redis/redis.conf (AOF), each from a copy in a directory of its own (the sentinels rewrite the configs of
// the nodes they reconfigure); the sentinels fail over 1 s after the primary goes silent, so a failover
// is quick enough to watch. Options add ACL users and TLS only (every node and sentinel, and their links to
// each other), for test/e2e/redis-tls-topologies.test.ts. Every `stop()` ends all it started.
import fs from 'node:fs';
import path from 'node:path';
import { REDIS_SERVER_BIN } from './binaries.js';
import { startOnFreePort, startProcess, waitForPort, waitForReport, type ManagedProcess } from './processes.js';
import { waitUntil } from './wait.js';
import { aclFileText, redisCli, REDIS_LOGLEVEL, removeRedisDir, startRedisListening, startRedisServer, tempRedisDir, tlsOnlyArgs, type RedisAcl, type RedisCliAuth, type RedisTlsFiles } from './redis.js';

export interface SentinelSetOptions {
  /** The master group name the sentinels monitor (default idgate, as in redis/sentinel-example.conf). */
  masterName?: string;
  /** Fixed ports (the demo); absent: each node and sentinel on a port found free (tried again on another if taken). */
  ports?: { primary: number; replica: number; sentinels: readonly number[] };
  /**
   * Where the data nodes keep their AOF (a subdirectory per port) and the sentinels their configs, which
   * are written anew at every start. Absent: a temp dir that stop() removes.
   */
  dir?: string;
  /** requirepass and masterauth of the data nodes; absent: none (the demo: loopback only, as `make demo`). */
  password?: string;
  /** requirepass of the sentinels; absent: none. */
  sentinelPassword?: string;
  /** ACL users on the data nodes instead of `password` (the replica and the sentinels log in as `admin`, idgate as `idgate`). */
  acl?: RedisAcl;
  /** An ACL user on the sentinels for `sentinelPassword` (the default user off; the sentinels log in to each other as it). */
  sentinelUser?: string;
  /** TLS only, with these files: data nodes and sentinels on `tls-port`, replicating and monitoring over TLS. */
  tls?: RedisTlsFiles;
  /** Copy every node's and sentinel's output to our stdout (the demo). */
  echo?: boolean;
}

export interface SentinelSet {
  readonly masterName: string;
  /** The data nodes' password (requirepass and masterauth), if any. */
  readonly password: string | undefined;
  /** The sentinels' own password (their requirepass), if any. */
  readonly sentinelPassword: string | undefined;
  /** The two data nodes, the first primary first. */
  readonly dataPorts: readonly number[];
  readonly sentinelPorts: readonly number[];
  /** The IDGATE_REDIS_* settings that reach this set. */
  readonly env: Record<string, string>;
  /** The process of the data node on `port` (undefined once it was killed). */
  node(port: number): ManagedProcess | undefined;
  /** Port of the current primary, as the sentinels see it. */
  primaryPort(): Promise<number>;
  /** SIGKILLs the current primary (no shutdown, no last write); resolves with its port. */
  killPrimary(): Promise<number>;
  /** `SENTINEL FAILOVER`: the replica is promoted without waiting for the primary to fail; resolves with the new primary's port. */
  failover(timeoutMs?: number): Promise<number>;
  /** Resolves once the sentinels name a primary other than `oldPort`. */
  waitForFailover(oldPort: number, timeoutMs?: number): Promise<number>;
  /** Resolves once the sentinels see a replica of the current primary, in sync: one they could promote next. */
  waitForReplica(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/** A primary, one replica and three sentinels; resolves once the replica is in sync and the sentinels know each other. */
export async function startSentinelSet(options: SentinelSetOptions = {}): Promise<SentinelSet> {
  const masterName = options.masterName ?? 'idgate';
  const { password, sentinelPassword, sentinelUser, acl, tls, echo } = options;
  const dir = options.dir ?? tempRedisDir();
  fs.mkdirSync(dir, { recursive: true });
  // Fixed ports (the demo) or, absent, each node and sentinel is started on a picked port and again on
  // another when that one was taken (startOnFreePort): their ports are in their configuration.
  const fixed = options.ports;
  let primary = fixed?.primary ?? 0;
  let replica = fixed?.replica ?? 0;
  const sentinelPorts = fixed ? [...fixed.sentinels] : [];
  // A kept dir (the demo): the node the sentinels last named primary has the newest data, so it starts as
  // the primary again, and the other's AOF is replaced by its data at the first sync.
  if (fixed && lastPrimary(dir, masterName, sentinelPorts[0]!) === replica) [primary, replica] = [replica, primary];
  const aclFile = path.join(dir, 'users.acl');
  if (acl) fs.writeFileSync(aclFile, aclFileText(acl), { mode: 0o600 });
  const auth = acl
    ? ['--aclfile', aclFile, '--masteruser', acl.admin.user, '--masterauth', acl.admin.password]
    : password === undefined ? [] : ['--requirepass', password, '--masterauth', password];
  const dataCli: RedisCliAuth = { ...(acl ? acl.admin : { password }), caFile: tls?.caFile };
  const sentinelCli: RedisCliAuth = { user: sentinelUser, password: sentinelPassword, caFile: tls?.caFile };
  // A full sync starts at once rather than after 5 s (waiting for more replicas to share it): there is one.
  const nodeArgs = [...auth, '--repl-diskless-sync-delay', '0'];
  const nodes = new Map<number, ManagedProcess>();
  const nodeOptions = (port: number, args: string[]) => ({ port, dir: path.join(dir, `redis-${port}`), name: `redis-${port}`, args: [...nodeArgs, ...(tls ? tlsOnlyArgs(port, tls) : []), ...args], echo, privateConf: true });
  /** Starts a data node on `port` (0: a free one), listening; resolves with its port. */
  const startNode = async (port: number, args: string[]) => {
    if (port === 0) {
      ({ port } = await startOnFreePort(async (free) => nodes.set(free, await startRedisListening(nodeOptions(free, args)))));
    } else {
      nodes.set(port, startRedisServer(nodeOptions(port, args)));
      await waitForPort(port);
    }
    return port;
  };
  const sentinels: ManagedProcess[] = [];
  const stopAll = async () => {
    // Sentinels first, so that none fails over while the data nodes stop.
    await Promise.all(sentinels.map((p) => p.stop()));
    await Promise.all([...nodes.values()].map((p) => p.stop()));
    if (options.dir === undefined) removeRedisDir(dir);
  };
  try {
    primary = await startNode(primary, []);
    replica = await startNode(replica, ['--replicaof', '127.0.0.1', String(primary)]);
    await waitUntil('replica in sync', async () => /master_link_status:up/.test(await redisCli(replica, ['info', 'replication'], dataCli)), { timeoutMs: 10_000, everyMs: 100 });
    const sentinelConf = (port: number) => {
      const conf = path.join(dir, `sentinel-${port}.conf`);
      // tls-replication makes a sentinel talk TLS to the data nodes and to the other sentinels too.
      const tlsLines = tls
        ? ['port 0', `tls-port ${port}`, 'tls-replication yes', `tls-cert-file ${tls.certFile}`, `tls-key-file ${tls.keyFile}`, `tls-ca-cert-file ${tls.caFile}`, 'tls-auth-clients no']
        : [`port ${port}`];
      const sentinelAuth = sentinelPassword === undefined ? []
        : sentinelUser === undefined ? [`requirepass ${sentinelPassword}`]
        : ['user default off', `user ${sentinelUser} on >${sentinelPassword} ~* &* +@all`, `sentinel sentinel-user ${sentinelUser}`, `sentinel sentinel-pass ${sentinelPassword}`];
      fs.writeFileSync(conf, [
        ...tlsLines,
        'bind 127.0.0.1',
        `dir ${dir}`,
        ...sentinelAuth,
        `sentinel monitor ${masterName} 127.0.0.1 ${primary} 2`,
        ...(acl ? [`sentinel auth-user ${masterName} ${acl.admin.user}`, `sentinel auth-pass ${masterName} ${acl.admin.password}`]
          : password === undefined ? [] : [`sentinel auth-pass ${masterName} ${password}`]),
        `sentinel down-after-milliseconds ${masterName} 1000`,
        `sentinel failover-timeout ${masterName} 5000`,
        `sentinel parallel-syncs ${masterName} 1`,
        `loglevel ${REDIS_LOGLEVEL}`,
        '',
      ].join('\n'), { mode: 0o600 });
      return conf;
    };
    if (fixed) {
      sentinels.push(...sentinelPorts.map((port) => startProcess(`sentinel-${port}`, REDIS_SERVER_BIN, [sentinelConf(port), '--sentinel'], { echo })));
      await Promise.all(sentinelPorts.map((p) => waitForPort(p)));
    } else {
      for (let i = 0; i < 3; i++) {
        const { port, started } = await startOnFreePort(async (free) => {
          const sentinel = startProcess(`sentinel-${free}`, REDIS_SERVER_BIN, [sentinelConf(free), '--sentinel'], { echo });
          // Its ID line comes once it has bound its port; a taken port ends it first ("Address already in use").
          await waitForReport(sentinel, (line) => (line.includes('Sentinel ID is') ? true : undefined)).catch(async (err: unknown) => {
            await sentinel.stop();
            throw err;
          });
          return sentinel;
        });
        sentinelPorts.push(port);
        sentinels.push(started);
      }
    }
    // Sentinels find each other through the primary's hello channel: wait until each knows the others.
    await waitUntil('sentinels know each other', async () => {
      const counts = await Promise.all(sentinelPorts.map(async (p) => /num-other-sentinels\s+(\d+)/.exec((await redisCli(p, ['sentinel', 'master', masterName], sentinelCli)).replace(/\n/g, ' '))?.[1]));
      return counts.every((c) => c === String(sentinelPorts.length - 1));
    }, { timeoutMs: 15_000, everyMs: 100 });
  } catch (err) {
    const logs = [...nodes.values(), ...sentinels].map((p) => `--- ${p.name}\n${p.output().slice(-2000)}`).join('\n');
    await stopAll();
    throw new Error(`${(err as Error).message}\n${logs}`);
  }

  const primaryPort = async () => Number((await redisCli(sentinelPorts[0]!, ['sentinel', 'get-master-addr-by-name', masterName], sentinelCli)).trim().split('\n')[1]);
  const waitForFailover = async (oldPort: number, timeoutMs = 20_000) => {
    let now = oldPort;
    await waitUntil('failover', async () => {
      now = await primaryPort();
      return now !== oldPort && now > 0;
    }, { timeoutMs, everyMs: 100 });
    return now;
  };
  return {
    masterName,
    password,
    sentinelPassword,
    dataPorts: [primary, replica],
    sentinelPorts,
    env: {
      IDGATE_REDIS_SENTINELS: sentinelPorts.map((p) => `127.0.0.1:${p}`).join(','),
      IDGATE_REDIS_SENTINEL_NAME: masterName,
      ...(sentinelPassword === undefined ? {} : { IDGATE_REDIS_SENTINEL_PASSWORD: sentinelPassword }),
      ...(sentinelUser === undefined ? {} : { IDGATE_REDIS_SENTINEL_USERNAME: sentinelUser }),
      ...(acl ? { IDGATE_REDIS_USERNAME: acl.idgate.user, IDGATE_REDIS_PASSWORD: acl.idgate.password } : password === undefined ? {} : { IDGATE_REDIS_PASSWORD: password }),
      ...(tls ? { IDGATE_REDIS_TLS: '1', IDGATE_REDIS_CA_FILE: tls.caFile } : {}),
    },
    node: (port) => nodes.get(port),
    primaryPort,
    async killPrimary() {
      const port = await primaryPort();
      const node = nodes.get(port)!;
      nodes.delete(port);
      node.child.kill('SIGKILL');
      await node.stop();
      return port;
    },
    async failover(timeoutMs) {
      const old = await primaryPort();
      await redisCli(sentinelPorts[0]!, ['sentinel', 'failover', masterName], sentinelCli);
      return waitForFailover(old, timeoutMs);
    },
    waitForFailover,
    async waitForReplica(timeoutMs = 20_000) {
      await waitUntil('a replica in sync', async () => {
        // Flat key/value lines per replica: "flags" then "slave" (no s_down, no disconnected) and "master-link-status" then "ok".
        const lines = (await redisCli(sentinelPorts[0]!, ['sentinel', 'replicas', masterName], sentinelCli)).split('\n').map((l) => l.trim());
        const value = (key: string) => lines.flatMap((l, i) => (l === key ? [lines[i + 1]] : []));
        return value('flags').some((f, i) => f === 'slave' && value('master-link-status')[i] === 'ok');
      }, { timeoutMs, everyMs: 100 });
    },
    stop: stopAll,
  };
}

/** The primary that a sentinel of an earlier run in `dir` last named (it rewrites its config at each failover). */
function lastPrimary(dir: string, masterName: string, sentinelPort: number): number | undefined {
  let conf: string;
  try {
    conf = fs.readFileSync(path.join(dir, `sentinel-${sentinelPort}.conf`), 'utf8');
  } catch {
    return undefined;
  }
  const port = new RegExp(`^sentinel monitor ${masterName} \\S+ (\\d+) `, 'm').exec(conf)?.[1];
  return port === undefined ? undefined : Number(port);
}
