// Someone else's site in front of which idgate is installed: their haproxy.cfg (TLS frontend with its own
// ACLs and rules, two backends, a plain-http redirect frontend), where idgate's lines go in it, its
// self-signed certificate, its two apps, and a fetch that trusts that certificate. Shared by the drop-in
// test (the repo's CLI) and the install-path test (the installed package's).
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { listenOnAnyPort } from '../../stack/processes.js';

/**
 * Run as root (as Debian runs HAProxy), the site's config drops privileges into a chroot the way Debian's
 * default haproxy.cfg does: the Lua check's socket must then be the HAProxy user's and inside the chroot.
 */
export const debianStyle = process.getuid?.() === 0 && spawnSync('getent', ['passwd', 'haproxy']).status === 0;

/** The `haproxy-config --mode lua` options for a check socket in `chroot` (and, Debian-style, the user and chroot). */
export function luaCheckArgs(chroot: string): string[] {
  return ['--check-dst', `unix@${chroot}/check.sock`, ...(debianStyle ? ['--user', 'haproxy', '--chroot', chroot] : [])];
}

/** A small site's haproxy.cfg as its owner wrote it, before idgate. */
export function thirdPartyConfig(ports: { tls: number; plain: number; web: number; api: number }, pem: string, chroot: string): string {
  return `global
    maxconn 1000
    nbthread 2
${debianStyle ? `    chroot ${chroot}\n    user haproxy\n    group haproxy\n` : ''}
defaults
    mode http
    log stdout format raw local0
    option httplog
    option dontlognull
    timeout connect 5s
    timeout client 30s
    timeout server 30s

# Plain http: only a redirect to https.
frontend http_in
    bind 127.0.0.1:${ports.plain}
    http-request redirect scheme https code 301

frontend www
    bind 127.0.0.1:${ports.tls} ssl crt ${pem} alpn h2,http/1.1
    acl is_api path_beg /api/
    acl is_internal path_beg /internal/
    http-request deny deny_status 403 if is_internal
    http-request set-header X-Site www
    http-response set-header Strict-Transport-Security "max-age=63072000"
    use_backend be_api if is_api
    default_backend be_web

backend be_web
    balance roundrobin
    server web1 127.0.0.1:${ports.web} check

backend be_api
    server api1 127.0.0.1:${ports.api}
`;
}

export type IdgateParts = Record<'global' | 'frontend' | 'routing' | 'backends', string>;
export const PART_NAMES = ['global', 'frontend', 'routing', 'backends'] as const;

/**
 * The site's config as the tests start it: its TLS frontend binds the socket the test has held since
 * before HAProxy could start (holdPort; HAProxy gets it as fd 3) instead of binding the port itself, so
 * no other process can take the port between the IdP learning the callback and HAProxy listening.
 */
export function bindingHeldTls(config: string, tlsPort: number): string {
  const line = `bind 127.0.0.1:${tlsPort} ssl`;
  if (!config.includes(line)) throw new Error(`no "${line}" in the config`);
  return config.replace(line, 'bind fd@3 ssl');
}

/**
 * The owner's config with idgate's parts added where docs/haproxy.md says: global at the end of the global
 * section, frontend after the binds, routing before the first use_backend, backends at the end.
 */
export function withIdgate(config: string, parts: IdgateParts): string {
  const lines = config.split('\n');
  lines.splice(lines.indexOf(''), 0, parts.global.replace(/\n$/, ''));
  const start = lines.indexOf('frontend www');
  const lastBind = start + lines.slice(start + 1).findIndex((l) => !l.trim().startsWith('bind '));
  lines.splice(lastBind + 1, 0, parts.frontend.replace(/\n$/, ''));
  const firstUseBackend = lines.findIndex((l, i) => i > start && l.trim().startsWith('use_backend'));
  lines.splice(firstUseBackend, 0, parts.routing.replace(/\n$/, ''));
  return `${lines.join('\n')}\n${parts.backends}`;
}

/**
 * A self-signed certificate for 127.0.0.1 and localhost, as `openssl` makes one, in `dir`: `pem` is the
 * file HAProxy's `crt` reads (certificate then key, mode 600), `certPem` the certificate a client trusts.
 */
export function selfSignedCertificate(dir: string): { pem: string; certPem: string } {
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')], { stdio: 'ignore' });
  const certPem = fs.readFileSync(path.join(dir, 'cert.pem'), 'utf8');
  const pem = path.join(dir, 'site.pem');
  fs.writeFileSync(pem, certPem + fs.readFileSync(path.join(dir, 'key.pem'), 'utf8'), { mode: 0o600 });
  return { pem, certPem };
}

/**
 * fetch over node:http(s), trusting the test's self-signed certificate as its only CA (the global fetch
 * trusts the system's CAs alone): the browser's TLS is verified, name and all.
 */
export function fetchTrusting(ca: string): typeof fetch {
  return ((input: string | URL, init: RequestInit = {}) => {
    const url = new URL(String(input));
    const send = url.protocol === 'https:' ? https.request : http.request;
    return new Promise<Response>((resolve, reject) => {
      const req = send(url, { method: init.method ?? 'GET', headers: init.headers as Record<string, string>, ca }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const headers = new Headers();
          for (let i = 0; i < res.rawHeaders.length; i += 2) headers.append(res.rawHeaders[i]!, res.rawHeaders[i + 1]!);
          resolve(new Response([204, 304].includes(res.statusCode!) ? null : Buffer.concat(chunks), { status: res.statusCode, headers }));
        });
      });
      req.on('error', reject);
      req.end(init.body === undefined || init.body === null ? undefined : String(init.body));
    });
  }) as typeof fetch;
}

/** A request one of the site's apps received. */
export interface Seen {
  app: 'web' | 'api';
  url: string;
  headers: http.IncomingHttpHeaders;
}

export interface SiteApps {
  readonly ports: { web: number; api: number };
  /** Every request the apps received, in order. */
  readonly seen: Seen[];
  stop(): Promise<void>;
}

/** The site's two apps (be_web, be_api): each answers "<app> <url> user=<X-Auth-User>" and records what it received. */
export async function startSiteApps(): Promise<SiteApps> {
  const seen: Seen[] = [];
  const servers: http.Server[] = [];
  const ports = { web: 0, api: 0 };
  for (const app of ['web', 'api'] as const) {
    const server = http.createServer({ maxHeaderSize: 65536 }, (req, res) => {
      seen.push({ app, url: req.url!, headers: req.headers });
      req.resume();
      res.writeHead(200, { 'content-type': 'text/plain' }).end(`${app} ${req.url} user=${String(req.headers['x-auth-user'])}`);
    });
    ports[app] = await listenOnAnyPort(server);
    servers.push(server);
  }
  return {
    ports,
    seen,
    async stop() {
      await Promise.all(servers.map((s) => new Promise<void>((resolve) => { s.closeAllConnections(); s.close(() => resolve()); })));
    },
  };
}
