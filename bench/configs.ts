// The HAProxy configurations the benchmarks compare idgate with, each the shipped template rendered with
// another check in the place of idgate's (no regex on shipped lines), so that only the check differs; and
// the HAProxy instances that run them beside the stack's.
import fs from 'node:fs';
import path from 'node:path';
import { haproxyConfigPath, startHaproxy, type HaproxyOptions } from '../stack/haproxy.js';
import { startOnFreePort, type ManagedProcess } from '../stack/processes.js';
import type { Stack } from '../stack/stack.js';
import { renderHaproxyTemplate } from '../service/src/transports/haproxy-config.js';

/**
 * The shipped template rendered for the Lua transport, with `replaceCheck` where idgate's check goes (the
 * check part the renderer can leave out; lua-load names haproxy-conf/idgate.lua by its full path).
 */
function shippedConfigWith(replaceCheck: string): string {
  return renderHaproxyTemplate(fs.readFileSync(haproxyConfigPath(), 'utf8'), 'lua', { replaceCheck });
}

/** The shipped configuration without the identity check: the passthrough baseline. */
export function passthroughConfig(dir: string): string {
  return writeConfig(dir, 'passthrough.cfg', shippedConfigWith(''));
}

/** The shipped configuration with HAProxy's own jwt_verify (RS256, a PEM key) instead of idgate's check. */
export function nativeJwtConfig(dir: string, pemFile: string): string {
  const check = `    http-request deny deny_status 401 unless { http_auth_bearer,jwt_header_query('$.alg') -m str RS256 } { http_auth_bearer,jwt_verify("RS256","${pemFile}") -m int 1 }\n`;
  return writeConfig(dir, 'native-jwt.cfg', shippedConfigWith(check));
}

function writeConfig(dir: string, name: string, text: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
}

/**
 * One more HAProxy beside the stack's, pointed at the stack's idgate, upstream and canary unless `options`
 * say otherwise, on a port it finds free (another if that one was taken). It joins `started`, which the
 * caller stops; resolves with its port and pid.
 */
export async function startHaproxyBeside(
  stack: Stack,
  started: ManagedProcess[],
  options: Omit<HaproxyOptions, 'frontPort' | 'idgatePort' | 'upstreamPort' | 'canaryPort'> & { idgatePort?: number },
): Promise<{ port: number; pid: number }> {
  const { port, started: haproxy } = await startOnFreePort((frontPort) =>
    startHaproxy({ frontPort, idgatePort: stack.ports.idgate[0]!, upstreamPort: stack.ports.upstream, canaryPort: stack.ports.canary, checkSecret: stack.checkSecret, ...options }),
  );
  started.push(haproxy);
  return { port, pid: haproxy.child.pid! };
}

