// `make demo-ha`: the replicated deployment on loopback, until Ctrl-C: Redis Sentinel (a primary, a
// replica, three sentinels), two idgate replicas, and two HAProxy front ends that both balance them.
import path from 'node:path';
import { REPO_ROOT, startStack, stopOnSignals } from '../stack/stack.js';

const ports = {
  front: 8080,
  frontB: 8090,
  // Not 4190: fetch() and browsers refuse it (a "bad port" of the Fetch standard).
  idgate: [4180, 4182],
  spoe: [4181, 4183],
  idp: 9000,
  redis: 6380,
  redisReplica: 6381,
  sentinels: [26380, 26381, 26382],
  upstream: 8081,
  canary: 8082,
};
// IDGATE_HAPROXY_MODE=spoe make demo-ha: HAProxy asks idgate's SPOE agents instead of the HTTP check.
const mode = process.env.IDGATE_HAPROXY_MODE === 'spoe' ? 'spoe' : 'lua';

async function main(): Promise<void> {
  process.stdout.write('starting Redis Sentinel, the local IdP, the sample upstream, two idgate and two HAProxy...\n');
  let stack: Awaited<ReturnType<typeof startStack>>;
  try {
    // The data nodes keep their AOF under .run/redis-ha (gitignored): sessions outlive a restart of the demo.
    stack = await startStack({
      ports,
      echo: true,
      haproxyMode: mode,
      idgateReplicas: 2,
      redis: 'sentinel',
      haproxyFronts: 2,
      redisDir: path.join(REPO_ROOT, '.run/redis-ha'),
    });
  } catch (err) {
    process.stderr.write(`demo-ha: could not start: ${(err as Error).message}\n`);
    const all = [ports.front, ports.frontB, ...ports.idgate, ...ports.spoe, ports.idp, ports.redis, ports.redisReplica, ...ports.sentinels, ports.upstream, ports.canary];
    process.stderr.write(`demo-ha: are the ports ${all.join(', ')} free? Another \`make demo\` or \`make demo-ha\` may be running.\n`);
    process.exit(1);
  }
  const [a, b] = stack.frontUrls as [string, string];
  const sentinel = stack.sentinel!;
  const cli = `redis-cli -p ${sentinel.sentinelPorts[0]}`;
  const pids = sentinel.dataPorts.map((port) => `${port}: pid ${sentinel.node(port)?.child.pid}`).join(', ');
  process.stdout.write(`
  idgate HA demo is running (HAProxy integration: ${mode === 'spoe' ? 'SPOE agent' : 'Lua + HTTP check'}).

  HAProxy A  ${a}/   (the public URL: sign-ins complete here)
  HAProxy B  ${b}/
  both balance idgate ${ports.idgate.map((p) => `127.0.0.1:${p}`).join(' and ')}, which share Redis through the
  sentinels ${sentinel.sentinelPorts.join(', ')} (master name ${sentinel.masterName}; data nodes ${sentinel.dataPorts.join(' and ')}).

  Try this:
    1. Open ${a}/ and sign in as alice / alice (or bob / bob).
    2. Open ${b}/whoami: the same session, no sign-in; the upstream's echo shows X-Auth-User.
    3. Which Redis is the primary:   ${cli} SENTINEL get-master-addr-by-name ${sentinel.masterName}
    4. Fail over to the replica:     ${cli} SENTINEL failover ${sentinel.masterName}
       then reload A and B: still signed in (a moment of 503 at most, never a sign-in page).
    5. Or kill the primary:          kill -9 <pid>   (Redis ${pids})
       checks answer 503 for a few seconds until the sentinels promote the replica, then work again
       with every session; the killed node stays down until the demo is restarted.

  Ctrl-C stops everything.
`);
  stopOnSignals(stack);
}

void main();
