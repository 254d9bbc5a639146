// The peer idgate is measured against in `make bench`: Apache httpd + mod_auth_openidc (Debian's
// packages), as a relying party of the same local IdP, proxying to the same upstream. One Apache child
// with bench/apache-peer.conf listens on three ports: a plain proxy, the module with its Redis cache,
// the module with shared memory. It runs in the foreground in a temp dir of its own (no system service).
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import { freePort, REPO_ROOT, startProcess, waitForPort, type ManagedProcess } from '../stack/processes.js';
import { PEER_RP_CLIENT_ID, PEER_RP_CLIENT_SECRET } from '../stack/idp-accounts.js';

const APACHE = fs.existsSync('/usr/sbin/apache2') ? '/usr/sbin/apache2' : 'apache2';
const MODULE = '/usr/lib/apache2/modules/mod_auth_openidc.so';
const CONFIG = path.join(REPO_ROOT, 'bench/apache-peer.conf');

export interface PeerPorts {
  /** Apache's plain reverse proxy, no authentication. */
  plain: number;
  /** mod_auth_openidc with OIDCCacheType redis. */
  redis: number;
  /** mod_auth_openidc with OIDCCacheType shm. */
  shm: number;
}

export interface ApachePeer {
  readonly ports: PeerPorts;
  /** Where to start a sign-in for each relying party (its protected root). */
  readonly urls: { plain: string; redis: string; shm: string };
  /** The last lines of Apache's error log (why a scenario failed). */
  errorLog(): string;
  stop(): Promise<void>;
}

/** Why the peer cannot run here (a missing package), or undefined when it can. */
export function peerUnavailable(): string | undefined {
  try {
    execFileSync(APACHE, ['-v'], { stdio: 'ignore' });
  } catch {
    return 'apache2 is not installed (Debian: apt-get install apache2-bin libapache2-mod-auth-openidc)';
  }
  if (!fs.existsSync(MODULE)) return `${MODULE} is missing (Debian: apt-get install libapache2-mod-auth-openidc)`;
  return undefined;
}

/** Ports for the peer, picked before the IdP starts: its client's redirect URIs name them. */
export async function pickPeerPorts(): Promise<PeerPorts> {
  return { plain: await freePort(), redis: await freePort(), shm: await freePort() };
}

/** The redirect URIs the IdP registers for the peer's client (apache-peer.conf's OIDCRedirectURI lines). */
export function peerRedirectUris(ports: PeerPorts): string[] {
  return [ports.redis, ports.shm].map((port) => `http://127.0.0.1:${port}/redirect_uri`);
}

/** Starts Apache with apache-peer.conf; resolves once its three ports accept connections. */
export async function startApachePeer(options: { ports: PeerPorts; issuer: string; upstreamPort: number; redisPort: number }): Promise<ApachePeer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'idgate-apache-peer-'));
  const root = process.getuid?.() === 0;
  // Started as root, Apache's workers run as www-data: they must reach the shared-memory files in dir.
  if (root) fs.chmodSync(dir, 0o755);
  const user = os.userInfo().username;
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    PEER_DIR: dir,
    PEER_USER: root ? 'www-data' : user,
    PEER_GROUP: root ? 'www-data' : user,
    PEER_PLAIN_PORT: String(options.ports.plain),
    PEER_REDIS_PORT: String(options.ports.redis),
    PEER_SHM_PORT: String(options.ports.shm),
    PEER_UPSTREAM_PORT: String(options.upstreamPort),
    PEER_REDIS: String(options.redisPort),
    PEER_ISSUER: options.issuer,
    PEER_CLIENT_ID: PEER_RP_CLIENT_ID,
    PEER_CLIENT_SECRET: PEER_RP_CLIENT_SECRET,
    PEER_PASSPHRASE: crypto.randomBytes(24).toString('base64url'),
  };
  const errorLog = () => {
    try {
      return fs.readFileSync(path.join(dir, 'error.log'), 'utf8').split('\n').slice(-15).join('\n');
    } catch {
      return '';
    }
  };
  const url = (port: number) => `http://127.0.0.1:${port}/`;
  const proc: ManagedProcess = startProcess('apache-peer', APACHE, ['-DFOREGROUND', '-d', dir, '-f', CONFIG], { env });
  const stop = async () => {
    await proc.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    const exited = new Promise<never>((_, reject) => proc.child.once('exit', () => reject(new Error(`apache2 exited at start:\n${proc.output()}\n${errorLog()}`))));
    exited.catch(() => undefined);
    await Promise.race([Promise.all(Object.values(options.ports).map((port) => waitForPort(port))), exited]);
    // Our Apache, not another process that took a port between its pick and Apache's bind (Apache then
    // exits, maybe after the wait above): each port answers as this configuration does.
    await Promise.race([new Promise((r) => setTimeout(r, 200)), exited]);
    const plain = await navigationFetch(url(options.ports.plain));
    if (!/apache/i.test(plain.headers.get('server') ?? '')) throw new Error(`127.0.0.1:${options.ports.plain} is not this Apache (server: ${plain.headers.get('server')})\n${proc.output()}\n${errorLog()}`);
    for (const port of [options.ports.redis, options.ports.shm]) {
      // A browser's Accept: mod_auth_openidc answers 401, not a redirect, to a client that does not take HTML.
      const first = await navigationFetch(url(port), { headers: { accept: 'text/html' } });
      if (first.status !== 302 || !(first.headers.get('location') ?? '').startsWith(options.issuer)) {
        throw new Error(`127.0.0.1:${port} does not send to the IdP (${first.status} ${first.headers.get('location') ?? ''})\n${errorLog()}`);
      }
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    ports: options.ports,
    urls: { plain: url(options.ports.plain), redis: url(options.ports.redis), shm: url(options.ports.shm) },
    errorLog,
    stop,
  };
}

/**
 * A fetch for the sign-in through the peer, over node:http: Node's own fetch always sends
 * `Sec-Fetch-Mode: cors`, and mod_auth_openidc answers such (script) requests 401 instead of
 * redirecting to the IdP. A browser navigating sends `navigate`; so does this.
 */
export const navigationFetch = (async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
  const url = new URL(input instanceof Request ? input.url : input.toString());
  const headers = { ...(init?.headers as Record<string, string> | undefined), 'sec-fetch-mode': 'navigate' };
  return new Promise<Response>((resolve, reject) => {
    const req = http.request(url, { method: init?.method ?? 'GET', headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const out = new Headers();
        for (let i = 0; i < res.rawHeaders.length; i += 2) out.append(res.rawHeaders[i]!, res.rawHeaders[i + 1]!);
        const status = res.statusCode ?? 502;
        resolve(new Response(status === 204 || status === 304 ? null : Buffer.concat(chunks), { status, headers: out }));
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(typeof init?.body === 'string' ? init.body : undefined);
  });
}) as typeof fetch;
