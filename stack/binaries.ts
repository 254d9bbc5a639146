// The HAProxy and Redis programs the demo and the tests start: the ones on PATH, unless the environment
// names others (`make test-compat` runs the same tests against other HAProxy, Redis and Valkey versions
// this way; Valkey's programs take Redis's arguments, Sentinel included).
export const HAPROXY_BIN = process.env.IDGATE_HAPROXY_BIN || 'haproxy';
/** Also runs the sentinels (`--sentinel`). */
export const REDIS_SERVER_BIN = process.env.IDGATE_REDIS_SERVER_BIN || 'redis-server';
export const REDIS_CLI_BIN = process.env.IDGATE_REDIS_CLI_BIN || 'redis-cli';
