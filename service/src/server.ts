// Wiring of one idgate process: the check path and the operational endpoints on plain node:http, every
// browser endpoint (/_auth/*) through express with the session middleware. The order is visible here.
import http from 'node:http';
import express from 'express';
import type { RedisClient } from './redis.js';
import type { CheckDependencies } from './check/check.js';
import type { Check } from './check/contract.js';
import { createCheckHandler } from './transports/http-check.js';
import { createBrowserRoutes } from './browser/login.js';
import { refuseTwoSessionCookies } from './browser/two-session-cookies.js';
import { createFrontChannelLogoutRoutes } from './browser/frontchannel.js';
import { createOktaEventRoutes } from './browser/okta-events.js';
import { sendError } from './errors.js';
import { HTTP_HEADERS_TIMEOUT_MS, HTTP_KEEP_ALIVE_MS, HTTP_REQUEST_TIMEOUT_MS } from './limits.js';
import type { OidcRelyingParty } from './idp/relying-party.js';
import { createSessionMiddleware } from './session/express-adapter.js';
import type { BearerVerifier } from './tokens/tokens.js';

/** What a process wires together: the check's dependencies are all of them. */
export type ServerDependencies = CheckDependencies;

export interface ServerOptions {
  /**
   * True once the process is stopping: /readyz answers 503 so that HAProxy's health check takes this
   * replica out while it still answers everything else (main.ts, graceful shutdown).
   */
  readonly draining?: () => boolean;
}

/** `check`: the check the wiring built once, which the SPOE agent holds too. */
export function createIdgateServer(deps: ServerDependencies, check: Check, options: ServerOptions = {}): http.Server {
  const { config, redis, sessions, oidc, bearer, logger, metrics, clock } = deps;
  const answerCheck = createCheckHandler(check, config);

  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', (address: string) => config.trustedProxies(address));
  // The IdP's own calls need no browser session: they come before the session middleware.
  app.use('/_auth', createFrontChannelLogoutRoutes({ config, sessions, oidc, logger, metrics }));
  if (config.oktaEventHookSecret !== undefined) app.use('/_auth', createOktaEventRoutes({ config, sessions, logger, metrics }, config.oktaEventHookSecret));
  // Two session cookies count as none here too: taken out before express-session would pick the first.
  app.use('/_auth', refuseTwoSessionCookies(config, logger), createSessionMiddleware(config, sessions), createBrowserRoutes({ config, sessions, oidc, logger, metrics, clock }));
  app.use((_req, res) => {
    sendError(res, 'not_found');
  });

  const server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    if (path === '/auth' && (req.method === 'GET' || req.method === 'HEAD')) return answerCheck(req, res);
    if (path === '/healthz') return sendText(res, 200, 'ok\n');
    if (path === '/readyz' && options.draining?.()) return sendText(res, 503, 'draining: this replica is stopping\n');
    if (path === '/readyz') return void readiness(redis, oidc, bearer).then(({ ok, detail }) => sendText(res, ok ? 200 : 503, `${detail}\n`));
    if (path === '/metrics') return void metrics.render().then((text) => sendText(res, 200, text, metrics.contentType));
    return app(req, res);
  });
  // HAProxy keeps connections to idgate open; let it close them first.
  server.keepAliveTimeout = HTTP_KEEP_ALIVE_MS;
  server.headersTimeout = HTTP_HEADERS_TIMEOUT_MS;
  server.requestTimeout = HTTP_REQUEST_TIMEOUT_MS;
  return server;
}

async function readiness(redis: RedisClient, oidc: OidcRelyingParty, bearer: BearerVerifier): Promise<{ ok: boolean; detail: string }> {
  let redisOk = false;
  try {
    redisOk = (await redis.ping()) === 'PONG';
  } catch {
    redisOk = false;
  }
  const idpOk = oidc.ready;
  const keysOk = bearer.ready;
  // A configuration error is named with its cause: keys may be loaded while an issuer refuses idgate's credentials.
  const problems = bearer.configurationProblems;
  const keys = problems.length > 0 ? `keys=misconfigured (${problems.join('; ')})` : `keys=${keysOk ? 'ok' : 'not loaded'}`;
  return { ok: redisOk && idpOk && keysOk, detail: `redis=${redisOk ? 'ok' : 'down'} idp=${idpOk ? 'ok' : 'not loaded'} ${keys}` };
}

function sendText(res: http.ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store', 'Content-Length': String(Buffer.byteLength(body)) });
  res.end(body);
}
