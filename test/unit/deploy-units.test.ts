// deploy/: the systemd units and their environment file, read as systemd and sh read them. Whether
// systemd itself accepts the units: test/e2e/systemd-verify.test.ts.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../../service/src/config.js';
import { SETTINGS } from '../../service/src/config/settings.js';
import { FINISH_BOUND_MS } from '../../service/src/limits.js';
import { REPO_ROOT } from '../../stack/processes.js';

type Unit = Record<string, [string, string][]>;

/** A unit file as sections of (key, value) pairs in order; repeated keys stay repeated, as systemd sees them. */
function readUnit(file: string): Unit {
  const unit: Unit = {};
  let section = '';
  for (const raw of fs.readFileSync(path.join(REPO_ROOT, 'deploy', file), 'utf8').split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(\w+)\]$/.exec(line);
    if (header) {
      section = header[1]!;
      unit[section] = [];
      continue;
    }
    expect(line).not.toMatch(/\\$/); // no continuation lines: each setting is read whole below
    const eq = line.indexOf('=');
    unit[section]!.push([line.slice(0, eq), line.slice(eq + 1)]);
  }
  return unit;
}

function values(unit: Unit, section: string, key: string): string[] {
  return (unit[section] ?? []).filter(([k]) => k === key).map(([, v]) => v);
}

const UNITS = ['idgate.service', 'idgate@.service'];

describe.each(UNITS)('deploy/%s', (file) => {
  const unit = readUnit(file);
  const service = (key: string) => values(unit, 'Service', key);

  test.each([
    ['User', 'idgate'],
    ['Group', 'idgate'],
    ['NoNewPrivileges', 'yes'],
    ['CapabilityBoundingSet', ''],
    ['AmbientCapabilities', ''],
    ['ProtectSystem', 'strict'],
    ['ProtectHome', 'yes'],
    ['PrivateTmp', 'yes'],
    ['PrivateDevices', 'yes'],
    ['ProtectKernelTunables', 'yes'],
    ['ProtectKernelModules', 'yes'],
    ['ProtectKernelLogs', 'yes'],
    ['ProtectControlGroups', 'yes'],
    ['RestrictAddressFamilies', 'AF_INET AF_INET6 AF_UNIX'],
    ['RestrictNamespaces', 'yes'],
    ['RestrictSUIDSGID', 'yes'],
    ['LockPersonality', 'yes'],
    ['SystemCallArchitectures', 'native'],
    ['Restart', 'on-failure'],
    ['KillSignal', 'SIGTERM'],
  ])('sets %s=%s', (key, value) => {
    expect(service(key)).toEqual([value]);
  });

  test('filters system calls to those of a service, privileged ones out', () => {
    expect(service('SystemCallFilter')).toEqual(['@system-service', '~@privileged']);
  });

  test('leaves MemoryDenyWriteExecute unset: node JIT-compiles', () => {
    expect(service('MemoryDenyWriteExecute')).toEqual([]);
  });

  test('runs idgate serve with the node flags the README recommends', () => {
    expect(service('ExecStart')).toEqual(['/opt/idgate/bin/idgate serve']);
    const recommended = /NODE_OPTIONS="([^"]+)"/.exec(fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8'))![1];
    expect(service('Environment')).toContain(`NODE_OPTIONS="${recommended}"`);
  });

  test('reloads the policy with SIGHUP, after checking it', () => {
    expect(service('ExecReload')).toEqual(['/opt/idgate/bin/idgate check-config', '/bin/kill -HUP $MAINPID']);
  });

  test('gives a stop more time than the default drain and the in-flight bound', () => {
    const [timeout] = service('TimeoutStopSec');
    expect(timeout).toMatch(/^\d+s$/);
    const drainMs = Number(SETTINGS.find((s) => s.env === 'IDGATE_SHUTDOWN_DRAIN_MS')!.default);
    expect(parseInt(timeout!, 10) * 1000).toBeGreaterThanOrEqual(drainMs + FINISH_BOUND_MS + 10_000);
  });

  test('starts with the system, after the network', () => {
    expect(values(unit, 'Install', 'WantedBy')).toEqual(['multi-user.target']);
    expect(values(unit, 'Unit', 'After')[0]).toMatch(/network-online\.target/);
  });
});

test('idgate@.service is idgate.service but for the lines naming the instance', () => {
  const single = readUnit('idgate.service');
  const instance = readUnit('idgate@.service');
  expect(values(instance, 'Service', 'EnvironmentFile')).toEqual(['/etc/idgate/%i.env']);
  expect(values(instance, 'Service', 'SyslogIdentifier')).toEqual(['idgate-%i']);
  expect(values(single, 'Service', 'EnvironmentFile')).toEqual(['/etc/idgate/idgate.env']);
  const common = (unit: Unit) => Object.fromEntries(Object.entries(unit).map(([section, pairs]) => [section, pairs.filter(([k]) => !['EnvironmentFile', 'SyslogIdentifier', 'Description'].includes(k))]));
  expect(common(instance)).toEqual(common(single));
});

describe('deploy/idgate.env.example', () => {
  const file = path.join(REPO_ROOT, 'deploy/idgate.env.example');

  /** The file as `sh` reads it (`set -a; . file`): what `idgate check-config` sees when run as its header says. */
  function asShellReadsIt(): Record<string, string> {
    const out = execFileSync('sh', ['-c', 'set -a; . "$1"; env -0', 'sh', file], { env: { PATH: process.env.PATH! } }).toString();
    return Object.fromEntries(out.split('\0').filter((kv) => kv.startsWith('IDGATE_')).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
  }

  test('names only settings idgate knows, commented out or not', () => {
    const named = [...fs.readFileSync(file, 'utf8').matchAll(/^#?(IDGATE_[A-Z0-9_]+)=/gm)].map((m) => m[1]);
    expect(named.length).toBeGreaterThan(5);
    const known = new Set(SETTINGS.map((s) => s.env));
    expect(named.filter((name) => !known.has(name!))).toEqual([]);
  });

  test('lacks only the three secrets, and is a valid configuration once they are filled in', () => {
    const env = asShellReadsIt();
    expect(env.IDGATE_SCOPES).toBe('openid profile email offline_access');
    expect(loadConfig(env).problems.map((p) => p.split(':')[0])).toEqual(['IDGATE_CLIENT_SECRET', 'IDGATE_COOKIE_SECRETS', 'IDGATE_CHECK_SECRETS']);
    const filled = { ...env, IDGATE_CLIENT_SECRET: 'the-client-secret', IDGATE_COOKIE_SECRETS: 'c'.repeat(48), IDGATE_CHECK_SECRETS: 'k'.repeat(64) };
    expect(loadConfig(filled).problems).toEqual([]);
  });

  test('quotes every value sh would split, so systemd and sh read the same', () => {
    for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
      const m = /^#?(IDGATE_[A-Z0-9_]+|NODE_OPTIONS)=(.*)$/.exec(line);
      if (m && /\s/.test(m[2]!)) expect(m[2]).toMatch(/^'[^']*'$/);
    }
  });
});
