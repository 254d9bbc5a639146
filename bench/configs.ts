// The HAProxy configurations the benchmarks compare idgate with, each derived from the shipped one so that
// only the check differs, and the HAProxy instances that run them beside the stack's.
import fs from 'node:fs';
import path from 'node:path';
import { haproxyConfigPath, startHaproxy, type HaproxyOptions } from '../stack/haproxy.js';
import { startOnFreePort, type ManagedProcess } from '../stack/processes.js';
import type { Stack } from '../stack/stack.js';
import { renderHaproxyTemplate } from '../service/src/transports/haproxy-config.js';

/** The shipped haproxy.cfg, rendered (lua-load names haproxy-conf/idgate.lua by its full path). */
export function shippedConfig(): string {
  return renderHaproxyTemplate(fs.readFileSync(haproxyConfigPath(), 'utf8'), 'lua');
}

/** The shipped haproxy.cfg with the identity check removed: the passthrough baseline. */
export function passthroughConfig(dir: string): string {
  const text = shippedConfig();
  const out = text
    .split('\n')
    .filter((l) => !/http-request lua\.idgate-check|http-request return status 503|http-response lua\.idgate-set-cookies/.test(l))
    .join('\n');
  return writeConfig(dir, 'passthrough.cfg', out);
}

/** The shipped haproxy.cfg with the check replaced by HAProxy's own jwt_verify (RS256, a PEM key). */
export function nativeJwtConfig(dir: string, pemFile: string): string {
  const text = shippedConfig();
  const out = text
    .split('\n')
    .map((l) =>
      /http-request lua\.idgate-check/.test(l)
        ? `    http-request deny deny_status 401 unless { http_auth_bearer,jwt_header_query('$.alg') -m str RS256 } { http_auth_bearer,jwt_verify("RS256","${pemFile}") -m int 1 }`
        : l,
    )
    .filter((l) => !/http-request return status 503|http-response lua\.idgate-set-cookies/.test(l))
    .join('\n');
  return writeConfig(dir, 'native-jwt.cfg', out);
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

