// The HAProxy and Redis programs the demo and the tests start: the ones on PATH, unless the environment
// names others (`make test-compat` runs the same tests against other HAProxy, Redis and Valkey versions
// this way; Valkey's programs take Redis's arguments, Sentinel included).
import { execFileSync } from 'node:child_process';

export const HAPROXY_BIN = process.env.IDGATE_HAPROXY_BIN || 'haproxy';
/** Also runs the sentinels (`--sentinel`). */
export const REDIS_SERVER_BIN = process.env.IDGATE_REDIS_SERVER_BIN || 'redis-server';
export const REDIS_CLI_BIN = process.env.IDGATE_REDIS_CLI_BIN || 'redis-cli';

let haproxyVersion: readonly [number, number] | undefined;

/**
 * Whether the HAProxy at HAPROXY_BIN is `major.minor` or newer (from `haproxy -v`, read once): for the few
 * tests where HAProxy's own answer differs between versions.
 */
export function haproxyAtLeast(major: number, minor: number): boolean {
  if (!haproxyVersion) {
    const out = execFileSync(HAPROXY_BIN, ['-v'], { encoding: 'utf8' });
    const found = /version (\d+)\.(\d+)/.exec(out);
    if (!found) throw new Error(`${HAPROXY_BIN} -v printed no version: ${out.slice(0, 200)}`);
    haproxyVersion = [Number(found[1]), Number(found[2])];
  }
  const [have, haveMinor] = haproxyVersion;
  return have > major || (have === major && haveMinor >= minor);
}
