// Starting the real HAProxy (haproxy-conf/haproxy.cfg with idgate.lua, or with the SPOE agent's lines) for
// the demo and the tests: the shipped template is rendered for the transport as `idgate haproxy-config
// --mode M --template` renders it (its `@idgate` lines filled from haproxy-conf/dropin/), into a private
// directory, and HAProxy reads that.
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { SPOE_AGENT_ADDRESS } from '../service/src/defaults.js';
import { haproxyConfDir, renderHaproxyTemplate, type HaproxyMode } from '../service/src/transports/haproxy-config.js';
import { HAPROXY_BIN } from './binaries.js';
import { REPO_ROOT, startProcess, waitForPort, type ManagedProcess } from './processes.js';
import { pause } from './wait.js';

export interface HaproxyOptions {
  /** The public frontend, 127.0.0.1:<frontPort>. */
  frontPort: number;
  /** idgate (be_idgate), 127.0.0.1:<idgatePort>. */
  idgatePort: number;
  /** A second idgate replica (be_idgate's idgate2); absent: idgate2 is the first replica again. */
  idgatePort2?: number;
  /** The protected app (be_app), 127.0.0.1:<upstreamPort>. */
  upstreamPort: number;
  /** The canary pool (be_app_canary), 127.0.0.1:<canaryPort>. Default: upstreamPort. */
  canaryPort?: number;
  /**
   * Where the Lua check's httpclient connects (the fe_idgate_check listener). Defaults to a unix
   * socket in a private directory made for this instance (removed when it stops), so tests and a
   * running demo never collide and no other local user can speak for HAProxy.
   */
  checkDst?: string;
  /** Copy HAProxy's output (log lines, warnings) to our stdout. */
  echo?: boolean;
  /**
   * Another configuration file (tests of a modified copy): a template with `@idgate` lines is rendered
   * like the shipped one, a file without any is used as it is. Default: the shipped template.
   */
  configPath?: string;
  /** Where the rendered config finds idgate.lua, spoe-idgate.conf and dropin/ (default haproxy-conf/). */
  confDir?: string;
  /** The transport the template is rendered for: lua (idgate.lua and the HTTP check; default) or spoe (idgate's SPOE agent). */
  mode?: HaproxyMode;
  /** TLS in front: fe_public also listens on 127.0.0.1:<port> with this PEM (certificate + key). */
  tls?: { port: number; certFile: string };
  /** idgate's SPOE agent, 127.0.0.1:<spoePort> (mode spoe). */
  spoePort?: number;
  /** The second replica's SPOE agent (mode spoe); absent: the first's again. */
  spoePort2?: number;
  /**
   * The check secret HAProxy sends (IDGATE_CHECK_SECRET): one of the IDGATE_CHECK_SECRETS of the idgate it
   * asks. Default: a fresh one (testCheckSecret), which an idgate without IDGATE_CHECK_SECRETS ignores.
   */
  checkSecret?: string;
  /** More environment for HAProxy (e.g. IDGATE_AUTH_RATE_LIMIT). */
  env?: Record<string, string>;
  /** Process name in logs (default "haproxy"; a second front end needs another). */
  name?: string;
  /** Sockets HAProxy gets as fd 3, 4, … (a port held before HAProxy could start, bound `fd@3`: holdPort). */
  passFds?: number[];
}

/** Absolute path of the shipped HAProxy configuration template (both transports). */
export function haproxyConfigPath(): string {
  return path.join(REPO_ROOT, 'haproxy-conf', 'haproxy.cfg');
}

/** The configuration HAProxy reads: `configPath` rendered (when it is a template) into `dir`. */
export function renderedConfig(configPath: string, mode: HaproxyMode, dir: string, confDir = haproxyConfDir()): string {
  const text = fs.readFileSync(configPath, 'utf8');
  if (!/^\s*@idgate\b/m.test(text)) return configPath;
  const out = path.join(dir, path.basename(configPath));
  fs.writeFileSync(out, renderHaproxyTemplate(text, mode, { confDir }, configPath));
  return out;
}

/** Spawns `haproxy -f <the rendered config>` with the addresses in its environment; resolves once the front port accepts connections. */
export async function startHaproxy(options: HaproxyOptions): Promise<ManagedProcess> {
  // Something already answering on the front port would pass the readiness wait below without
  // this HAProxy ever binding it.
  if (await accepts(options.frontPort)) {
    throw new Error(`cannot start haproxy: 127.0.0.1:${options.frontPort} is already in use`);
  }
  // mkdtemp makes the directory mode 700: only this user can reach the socket inside, or read the config.
  const privateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'idgate-check-'));
  const checkDst = options.checkDst ?? `unix@${privateDir}/check.sock`;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    IDGATE_FRONT_BIND: `127.0.0.1:${options.frontPort}`,
    IDGATE_UPSTREAM_ADDR: `127.0.0.1:${options.upstreamPort}`,
    IDGATE_CANARY_ADDR: `127.0.0.1:${options.canaryPort ?? options.upstreamPort}`,
    IDGATE_ADDR: `127.0.0.1:${options.idgatePort}`,
    IDGATE_CHECK_DST: checkDst,
    IDGATE_CHECK_SECRET: options.checkSecret ?? testCheckSecret(),
    IDGATE_SPOE_ADDR: options.spoePort === undefined ? SPOE_AGENT_ADDRESS : `127.0.0.1:${options.spoePort}`,
    ...(options.idgatePort2 === undefined ? {} : { IDGATE_ADDR_2: `127.0.0.1:${options.idgatePort2}` }),
    ...(options.spoePort2 === undefined ? {} : { IDGATE_SPOE_ADDR_2: `127.0.0.1:${options.spoePort2}` }),
    ...(options.tls === undefined ? {} : { IDGATE_TLS_BIND: `127.0.0.1:${options.tls.port}`, IDGATE_TLS_CERT: options.tls.certFile }),
    ...options.env,
  };
  const mode = options.mode ?? 'lua';
  let config: string;
  try {
    config = renderedConfig(options.configPath ?? haproxyConfigPath(), mode, privateDir, options.confDir);
  } catch (err) {
    fs.rmSync(privateDir, { recursive: true, force: true });
    throw err;
  }
  const started = startProcess(options.name ?? 'haproxy', HAPROXY_BIN, ['-f', config], { env, echo: options.echo, passFds: options.passFds });
  const proc: ManagedProcess = {
    ...started,
    async stop(graceMs?: number) {
      await started.stop(graceMs);
      fs.rmSync(privateDir, { recursive: true, force: true });
    },
  };

  // Fail fast (with HAProxy's own words) if it exits instead of listening, e.g. a port in use.
  let onExit: (() => void) | undefined;
  const exited = new Promise<never>((_, reject) => {
    onExit = () => reject(new Error(`haproxy exited before listening on ${options.frontPort}:\n${proc.output()}`));
    proc.child.once('close', onExit);
  });
  exited.catch(() => undefined);
  try {
    await Promise.race([waitWhileRunning(proc, options.frontPort), exited]);
    // HAProxy binds fe_public before the check listener and exits if a later bind fails (e.g.
    // an IDGATE_CHECK_DST already taken), so make sure it is still there a moment later.
    await Promise.race([pause(150), exited]);
  } catch (err) {
    await proc.stop();
    throw err;
  } finally {
    proc.child.off('close', onExit!);
  }
  return proc;
}

/** waitForPort in short slices, so that no polling outlives a HAProxy that already exited. */
async function waitWhileRunning(proc: ManagedProcess, port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await waitForPort(port, '127.0.0.1', 200);
      return;
    } catch (err) {
      if (proc.child.exitCode !== null || proc.child.signalCode !== null) return; // `exited` reports it
      if (Date.now() > deadline) throw new Error(`haproxy does not listen on ${port} after ${timeoutMs} ms:\n${proc.output()}`);
    }
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('error', () => resolve(false));
  });
}

/**
 * A check secret for a demo or a test (IDGATE_CHECK_SECRETS, HAProxy's IDGATE_CHECK_SECRET), fresh each
 * call. Its fixed prefix lets the suite's log scan (test/scan-logs.mjs) find one that leaked into a log.
 */
export function testCheckSecret(): string {
  return `check-secret-of-the-tests-${crypto.randomBytes(16).toString('hex')}`;
}

/** `haproxy -c -f <the rendered config>`: ok when HAProxy accepts the configuration. */
export async function checkHaproxyConfig(configPath = haproxyConfigPath(), mode: HaproxyMode = 'lua'): Promise<{ ok: boolean; output: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'idgate-haproxy-c-'));
  try {
    const proc = startProcess('haproxy -c', HAPROXY_BIN, ['-c', '-f', renderedConfig(configPath, mode, dir)], { env: { ...process.env, IDGATE_CHECK_SECRET: testCheckSecret() } });
    const code = await new Promise<number | null>((resolve) => {
      proc.child.once('close', (c) => resolve(c));
      proc.child.once('error', () => resolve(null));
    });
    await proc.stop();
    return { ok: code === 0, output: proc.output() };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
