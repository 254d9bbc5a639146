// Real Redis deployments on loopback for the topology tests: a Cluster (three primaries; or TLS only, with
// ACL users) and a TLS server, with a CA made by openssl (makeTestCa; the Sentinel set, which `make demo-ha`
// runs too, is stack/redis-sentinel.ts, and takes the same CA and ACL users).
// Every process is a child tracked by stack/processes.ts, and every `stop()` ends all it started and
// removes its files.
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { REDIS_CLI_BIN, REDIS_SERVER_BIN } from '../../stack/binaries.js';
import { freePort, holdPort, idpListening, listenOnAnyPort, REPO_ROOT, startOnFreePort, startProcess, waitForPort, waitForReport, type ManagedProcess } from '../../stack/processes.js';
import { aclFileText, redisCli, REDIS_LOGLEVEL, redisListening, tlsOnlyArgs, type RedisAcl, type RedisCliAuth, type RedisTlsFiles } from '../../stack/redis.js';
import { testIdpEnv } from '../../stack/test-idp-profile.js';
import { startDelayProxy, type DelayProxy } from './delay-proxy.js';
import { configFrom, startInProcess, stopInProcess, type InProcessIdgate } from './idgate.js';
import { probeUntil, waitUntil } from '../../stack/wait.js';
import type { Clock } from '../../service/src/clock.js';

const run = promisify(execFile);

/** Settings common to every test server: loopback, nothing on disk, its readiness logged. */
const BASE_ARGS = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', REDIS_LOGLEVEL];

function tempDir(name: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `idgate-${name}-`));
}

export interface RedisCluster {
  readonly ports: readonly number[];
  readonly env: Record<string, string>;
  /** The port of the primary serving `key`'s hash slot. */
  nodeOf(key: string): Promise<number>;
  /** SIGKILLs the node on `port`. */
  kill(port: number): Promise<void>;
  /** Stops the node on `port` as an operator does: SIGTERM (it writes out its AOF), then waits for its exit. */
  stopNode(port: number): Promise<void>;
  /** Starts the node on `port` again: same port, data and nodes.conf (its id and slots); resolves once it listens. */
  startNode(port: number): Promise<void>;
  /** Resolves once every running node says cluster_state:ok and every slot is served. */
  waitForOk(timeoutMs?: number): Promise<void>;
  /** With `delayProxies`: the proxy each node announces, in the order of `ports`. */
  readonly proxies: readonly DelayProxy[];
  /** Resolves once the cluster serves `key` from a primary other than `oldPort` and every slot again. */
  waitForFailover(key: string, oldPort: number, timeoutMs?: number): Promise<number>;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  /** Primaries, each with its share of the slots (3 when not given). */
  readonly primaries?: number;
  /** Replicas of each primary (none when not given). */
  readonly replicasEach?: number;
  /**
   * Each node keeps an append-only file, fsync every second as redis/redis.conf, so that a node stopped
   * and started again (stopNode, startNode) comes back with its data; its nodes.conf keeps its identity.
   */
  readonly persistent?: boolean;
  /**
   * Each node announces a delay proxy in front of it (`cluster-announce-port`) as its address, so that
   * clients, which connect where the cluster tells them, reach it only through the proxy (`proxies`).
   */
  readonly delayProxies?: boolean;
  /** TLS only, for clients, replication and the bus (`tls-cluster yes`), with these files (makeTestCa). */
  readonly tls?: RedisTlsFiles;
  /** ACL users instead of none: replicas and redis-cli log in as `admin`, `env` names `idgate`. */
  readonly acl?: RedisAcl;
}

/**
 * A Redis Cluster of `primaries` primaries with `replicasEach` replicas each, every slot assigned, state ok
 * on every node. Like redis/cluster-example.conf, nodes answer for their slots while another's are
 * uncovered (`cluster-require-full-coverage no`).
 */
export async function startCluster(options: ClusterOptions = {}): Promise<RedisCluster> {
  const { primaries = 3, replicasEach = 0, tls, acl } = options;
  const dir = tempDir('cluster');
  const cliAuth: RedisCliAuth = { ...acl?.admin, caFile: tls?.caFile };
  const cli = (port: number, args: string[]) => redisCli(port, args, cliAuth);
  const secured: string[] = [...(tls ? ['--tls-cluster', 'yes'] : []), ...(acl ? ['--aclfile', path.join(dir, 'users.acl'), '--masteruser', acl.admin.user, '--masterauth', acl.admin.password] : [])];
  if (acl) fs.writeFileSync(path.join(dir, 'users.acl'), aclFileText(acl), { mode: 0o600 });
  const ports: number[] = [];
  const nodes = new Map<number, ManagedProcess>();
  const argsOf = new Map<number, string[]>();
  const proxies: DelayProxy[] = [];
  const total = primaries * (1 + replicasEach);
  /** Starts a node on `port` with `busPort`, listening (its proxy first, which it announces); stops what it started if that fails. */
  const startNewNode = async (port: number, busPort: number) => {
    const proxy = options.delayProxies ? await startDelayProxy(port) : undefined;
    const args = [
      '--port', String(port), ...BASE_ARGS, '--dir', dir,
      '--cluster-enabled', 'yes', '--cluster-port', String(busPort), '--cluster-config-file', `nodes-${port}.conf`,
      '--cluster-node-timeout', '1000', '--cluster-require-full-coverage', 'no', '--cluster-replica-validity-factor', '0',
      // Every node writes in the shared dir: an AOF (in appendonlydir) of its own name.
      ...(options.persistent ? ['--appendonly', 'yes', '--appendfsync', 'everysec', '--appendfilename', `appendonly-${port}.aof`] : []),
      ...(proxy ? ['--cluster-announce-port', String(proxy.port)] : []),
      ...(tls ? tlsOnlyArgs(port, tls) : []), ...secured,
    ];
    try {
      nodes.set(port, await redisListening(startProcess(`redis-cluster-${port}`, REDIS_SERVER_BIN, args), port));
    } catch (err) {
      await proxy?.close();
      throw err;
    }
    ports.push(port);
    argsOf.set(port, args);
    if (proxy) proxies.push(proxy);
  };
  const live = () => ports.filter((p) => nodes.has(p));
  const stopAll = async () => {
    await Promise.all([...nodes.values()].map((n) => n.stop()));
    await Promise.all(proxies.map((p) => p.close()));
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const waitForOk = (timeoutMs = 30_000) =>
    waitUntil('cluster state ok', async () => {
      const infos = await Promise.all(live().map((p) => cli(p, ['cluster', 'info'])));
      return infos.every((i) => /cluster_state:ok/.test(i) && /cluster_slots_ok:16384/.test(i) && new RegExp(`cluster_known_nodes:${total}\\b`).test(i));
    }, { timeoutMs, everyMs: 100 });
  try {
    // Each node on a picked port and bus port (given, not port+10000, which may be past 65535 or taken),
    // started again on others when one was taken (startOnFreePort).
    for (let i = 0; i < total; i++) await startOnFreePort(async (port) => startNewNode(port, await freePort()));
    const createAuth = [...(tls ? ['--tls', '--cacert', tls.caFile] : []), ...(acl ? ['--user', acl.admin.user, '--pass', acl.admin.password, '--no-auth-warning'] : [])];
    await run(REDIS_CLI_BIN, [...createAuth, '--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', String(replicasEach), '--cluster-yes'], { timeout: 30_000 });
    await waitForOk();
    if (replicasEach > 0) {
      await waitUntil('replicas in sync', async () => {
        const infos = await Promise.all(ports.map((p) => cli(p, ['info', 'replication'])));
        return infos.filter((i) => /role:slave/.test(i)).every((i) => /master_link_status:up/.test(i)) && infos.filter((i) => /role:slave/.test(i)).length === primaries * replicasEach;
      }, { timeoutMs: 30_000, everyMs: 100 });
    }
  } catch (err) {
    await stopAll();
    throw err;
  }
  const nodeOf = async (key: string, via = live()[0]!) => {
    const slot = Number((await cli(via, ['cluster', 'keyslot', key])).trim());
    // `cluster shards` would be tidier; `cluster slots` prints, per range: start, end, then the primary's ip and port.
    const lines = (await cli(via, ['cluster', 'slots'])).trim().split('\n');
    for (let i = 0; i + 3 < lines.length; i++) {
      if (/^\d+$/.test(lines[i]!) && /^\d+$/.test(lines[i + 1]!) && lines[i + 2] === '127.0.0.1' && slot >= Number(lines[i]) && slot <= Number(lines[i + 1])) return realPort(Number(lines[i + 3]));
    }
    throw new Error(`no node serves slot ${slot}`);
  };
  const realPort = (announced: number) => ports[proxies.findIndex((p) => p.port === announced)] ?? announced;
  return {
    ports,
    proxies,
    env: {
      IDGATE_REDIS_CLUSTER_NODES: (options.delayProxies ? proxies.map((p) => p.port) : ports).map((p) => `127.0.0.1:${p}`).join(','),
      ...(acl ? { IDGATE_REDIS_USERNAME: acl.idgate.user, IDGATE_REDIS_PASSWORD: acl.idgate.password } : {}),
      ...(tls ? { IDGATE_REDIS_TLS: '1', IDGATE_REDIS_CA_FILE: tls.caFile } : {}),
    },
    nodeOf: (key) => nodeOf(key),
    async kill(port) {
      const node = nodes.get(port)!;
      nodes.delete(port);
      node.child.kill('SIGKILL');
      await node.stop();
    },
    async stopNode(port) {
      const node = nodes.get(port)!;
      nodes.delete(port);
      await node.stop();
    },
    async startNode(port) {
      nodes.set(port, startProcess(`redis-cluster-${port}`, REDIS_SERVER_BIN, argsOf.get(port)!));
      await waitForPort(port);
    },
    waitForOk,
    async waitForFailover(key, oldPort, timeoutMs = 20_000) {
      let now = oldPort;
      await waitUntil('cluster failover', async () => {
        now = await nodeOf(key);
        const info = await cli(live()[0]!, ['cluster', 'info']);
        return now !== oldPort && /cluster_slots_ok:16384/.test(info);
      }, { timeoutMs, everyMs: 100 });
      return now;
    },
    stop: stopAll,
  };
}

export interface TlsRedis {
  /** The TLS port (plain TCP is off). */
  readonly port: number;
  /** PEM of the CA that signed the server's certificate (made for this run). */
  readonly caFile: string;
  /** A CA that signed nothing here: a client trusting only it must refuse the server. */
  readonly otherCaFile: string;
  stop(): Promise<void>;
}

/**
 * One Redis server reachable only over TLS, its certificate (for 127.0.0.1) signed by a CA made now, with
 * ACL users: `default` is off, `users` maps each name to its password and the prefix of the only keys and
 * channels it may use (with the commands redis/sentinel-example.conf gives idgate's user).
 */
export async function startTlsRedis(users: Record<string, { password: string; prefix: string }>): Promise<TlsRedis> {
  const { dir } = await makeTestCa();
  const file = (name: string) => path.join(dir, name);
  const aclFile = file('users.acl');
  fs.writeFileSync(aclFile, ['user default off', ...Object.entries(users).map(([name, { password, prefix }]) => `user ${name} on >${password} ~${prefix}* &${prefix}* +@all -@dangerous +info`), ''].join('\n'));
  let port: number;
  let server: ManagedProcess;
  try {
    // On a picked port, and again on another when that one was taken.
    ({ port, started: server } = await startOnFreePort((port) =>
      redisListening(startProcess(`redis-tls-${port}`, REDIS_SERVER_BIN, [
        '--port', '0', '--tls-port', String(port), ...BASE_ARGS, '--dir', dir,
        '--tls-cert-file', file('server.pem'), '--tls-key-file', file('server.key'), '--tls-ca-cert-file', file('ca.pem'), '--tls-auth-clients', 'no',
        '--aclfile', aclFile,
      ]), port),
    ));
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    port,
    caFile: file('ca.pem'),
    otherCaFile: file('other-ca.pem'),
    async stop() {
      await server.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A CA made for this run and the one certificate it signed, which every TLS node and sentinel of a test shares. */
export interface TestCa extends RedisTlsFiles {
  /** The temp dir holding the files (a server may keep its data there too); remove() deletes it. */
  readonly dir: string;
  /** A CA that signed nothing here: a client trusting only it must refuse every server. */
  readonly otherCaFile: string;
  remove(): void;
}

/** Two CAs made now by openssl, and a certificate for 127.0.0.1 (IP SAN; DNS localhost) signed by the first. */
export async function makeTestCa(): Promise<TestCa> {
  const dir = tempDir('tls');
  const file = (name: string) => path.join(dir, name);
  const openssl = (args: string[]) => run('openssl', args, { cwd: dir, timeout: 20_000 });
  for (const ca of ['ca', 'other-ca']) {
    await openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', `/CN=idgate test ${ca}`, '-keyout', `${ca}.key`, '-out', `${ca}.pem`]);
  }
  fs.writeFileSync(file('server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  await openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', 'server.key', '-out', 'server.csr']);
  await openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-extfile', 'server.ext', '-out', 'server.pem']);
  return { dir, caFile: file('ca.pem'), otherCaFile: file('other-ca.pem'), certFile: file('server.pem'), keyFile: file('server.key'), remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

export interface IdgateReplicas {
  /** Where replica i listens; replica 0's origin is the public URL (the IdP sends browsers back there). */
  readonly urls: readonly string[];
  readonly replicas: readonly InProcessIdgate[];
  readonly issuer: string;
  /** The settings every replica runs with (without IDGATE_CONFIG_FILE), e.g. for the compiled CLI. */
  readonly env: Record<string, string>;
  /** The answer of replica `i` to HAProxy's check of `uri` with this Cookie header. */
  check(i: number, cookie: string | undefined, uri?: string): Promise<number>;
  /**
   * The answer of replica `i` once a revocation has reached it: the announcement travels by pub/sub a
   * moment after the revoking call returns (docs/operations.md measures it), so this asks again for up to
   * 2 s while the answer is still 200.
   */
  checkAfterRevocation(i: number, cookie: string | undefined): Promise<number>;
  stop(): Promise<void>;
}

/**
 * The local IdP and `count` idgate replicas in this process, all on the Redis that `redisEnv` names:
 * what a deployment with several idgates behind HAProxy shares.
 */
export async function startIdgateReplicas(redisEnv: Record<string, string>, count = 2, extraEnv: Record<string, string> = {}, options: { clock?: Clock } = {}): Promise<IdgateReplicas> {
  // Replica 0's origin is the public URL, which the IdP must know before it starts and idgate needs the
  // IdP's issuer: its port is held listening until the replica is made (holdPort). The others and the IdP
  // bind port 0.
  const first = await holdPort();
  const urls = [`http://127.0.0.1:${first.port}`];
  const idp = startProcess('idp', process.execPath, [path.join(REPO_ROOT, 'dist/stack/idp-main.js')], {
    env: { ...process.env, IDP_PORT: '0', ...testIdpEnv(), IDP_REDIRECT_URIS: `${urls[0]}/_auth/callback`, IDP_POST_LOGOUT_REDIRECT_URIS: `${urls[0]}/_auth/logged-out` },
  });
  const { issuer } = await waitForReport(idp, idpListening).catch(async (err: unknown) => {
    await idp.stop();
    await first.release();
    throw err;
  });
  const env = {
    IDGATE_ISSUER: issuer,
    IDGATE_CLIENT_ID: 'idgate',
    IDGATE_CLIENT_SECRET: 'idgate-secret',
    IDGATE_PUBLIC_URL: urls[0]!,
    IDGATE_COOKIE_SECRETS: crypto.randomBytes(32).toString('base64url'),
    IDGATE_INSECURE_HTTP: '1',
    ...redisEnv,
    ...extraEnv,
  };
  const replicas: InProcessIdgate[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const replica = await startInProcess(configFrom(env), undefined, { clock: options.clock });
      if (i === 0) await first.handOver(replica.server);
      else urls.push(`http://127.0.0.1:${await listenOnAnyPort(replica.server)}`);
      replicas.push(replica);
    }
  } catch (err) {
    stopInProcess();
    if (replicas.length === 0) await first.release();
    await idp.stop();
    throw err;
  }
  const replicaSet: IdgateReplicas = {
    urls,
    replicas,
    issuer,
    env,
    async check(i, cookie, uri = '/') {
      const headers: Record<string, string> = { accept: 'application/json', 'x-forwarded-method': 'GET', 'x-forwarded-host': new URL(urls[0]!).host, 'x-forwarded-uri': uri };
      if (cookie) headers.cookie = cookie;
      const res = await fetch(`${urls[i]}/auth`, { headers, redirect: 'manual', signal: AbortSignal.timeout(5000) });
      await res.arrayBuffer();
      return res.status;
    },
    async checkAfterRevocation(i, cookie) {
      return probeUntil(() => replicaSet.check(i, cookie), (status) => status !== 200);
    },
    async stop() {
      stopInProcess();
      await idp.stop();
    },
  };
  return replicaSet;
}

/** The idgate CLI (compiled) with these settings; resolves with its exit code and output. */
export async function idgateCli(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [path.join(REPO_ROOT, 'bin/idgate.js'), ...args], { env: { PATH: process.env.PATH!, ...env }, timeout: 20_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}
