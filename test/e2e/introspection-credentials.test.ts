// An issuer that refuses idgate's own introspection credentials (401/403) is a configuration error, not an
// outage: the client gets the same 503 as in an outage, while the audit line, the log, the metrics and
// /readyz name the configuration. A scripted issuer (real HTTP) answers; idgate runs in-process on a real Redis.
import http from 'node:http';
import request from 'supertest';
import { parsePolicy } from '../../service/src/policy/policy-file.js';
import { listenOnAnyPort, type ManagedProcess } from '../../stack/processes.js';
import { startFreeTempRedis } from '../../stack/redis.js';
import { checkFacts, configFrom, metricValue, startInProcess, stopInProcess, type InProcessIdgate } from '../support/idgate.js';
import { waitUntil } from '../../stack/wait.js';

let redis: ManagedProcess;
let issuerServer: http.Server;
let issuer: string;
let idgate: InProcessIdgate;
/** The status the introspection endpoint answers with; 200 answers an active token. */
let introspectionStatus = 200;

beforeAll(async () => {
  const started = await startFreeTempRedis();
  redis = started.server;
  const redisPort = started.port;
  issuerServer = http.createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    if (req.url === '/.well-known/openid-configuration') {
      res.end(JSON.stringify({ issuer, authorization_endpoint: `${issuer}/auth`, token_endpoint: `${issuer}/token`, jwks_uri: `${issuer}/jwks`, introspection_endpoint: `${issuer}/introspect`, response_types_supported: ['code'], subject_types_supported: ['public'], id_token_signing_alg_values_supported: ['RS256'] }));
    } else if (req.url === '/jwks') res.end(JSON.stringify({ keys: [] }));
    else if (req.url === '/introspect') {
      req.resume().on('end', () => {
        if (introspectionStatus !== 200) res.writeHead(introspectionStatus).end('{"error":"invalid_client"}');
        else res.end(JSON.stringify({ active: true, sub: 'svc', aud: 'api://scripted', scope: 'api:read', client_id: 'svc-client', exp: Math.floor(Date.now() / 1000) + 300 }));
      });
    } else res.writeHead(404).end('{}');
  });
  // The answers above read `issuer` when asked, by which time it names the port the server got.
  issuer = `http://127.0.0.1:${await listenOnAnyPort(issuerServer)}`;
  const { policy, problems } = parsePolicy('version: 1\nrules:\n  - id: api\n    path: /api/\n    api: true\n    allow: {scopes: [api:read]}\n', 'api.yaml');
  if (!policy) throw new Error(problems.join('\n'));
  idgate = await startInProcess(
    configFrom({
      IDGATE_ISSUER: issuer,
      IDGATE_CLIENT_ID: 'idgate',
      IDGATE_CLIENT_SECRET: 'idgate-secret',
      IDGATE_PUBLIC_URL: 'http://app.test',
      IDGATE_REDIS_URL: `redis://127.0.0.1:${redisPort}`,
      IDGATE_COOKIE_SECRETS: 'c'.repeat(40),
      IDGATE_INSECURE_HTTP: '1',
      IDGATE_BEARER_ISSUERS: JSON.stringify([{ issuer, audiences: ['api://scripted'], jwt: false, introspection: true }]),
    }),
    policy,
  );
}, 30_000);

afterAll(async () => {
  stopInProcess();
  await new Promise((r) => issuerServer?.close(r));
  await redis?.stop();
});

const check = (token: string) => request(idgate.server).get('/auth').set(checkFacts('app.test', '/api/x')).set('Authorization', `Bearer ${token}`).set('Accept', 'application/json');
const decisionsOf = (requestId: string) => idgate.logLines.filter((l) => l.includes('"event":"decision"')).map((l) => JSON.parse(l) as Record<string, unknown>).filter((d) => d.request_id === requestId);

test.each([401, 403])('introspection answered %i: the client gets 503, the audit line, log, metrics and /readyz say configuration', async (status) => {
  introspectionStatus = 200;
  expect((await check('opaque-ok').set('X-Request-Id', `ok-${status}`)).status).toBe(200);
  expect((await request(idgate.server).get('/readyz')).status).toBe(200);
  const refusedBefore = metricValue(await idgate.metrics.render(), 'idgate_introspection_credentials_refused_total');
  const outagesBefore = metricValue(await idgate.metrics.render(), 'idgate_idp_errors_total');

  introspectionStatus = status;
  const requestId = `refused-${status}`;
  const res = await check(`opaque-${status}`).set('X-Request-Id', requestId);
  expect(res.status).toBe(503);
  expect(res.body).toMatchObject({ error: 'unavailable' });
  await waitUntil('the decision logged', () => decisionsOf(requestId).length === 1);
  expect(decisionsOf(requestId)[0]).toMatchObject({ decision: 'unavailable', status: 503, reason: 'introspection_config_error' });
  expect((await check(`opaque-${status}-again`)).status).toBe(503);
  const text = await idgate.metrics.render();
  expect(metricValue(text, 'idgate_introspection_credentials_refused_total')).toBe(refusedBefore + 2);
  expect(metricValue(text, 'idgate_idp_errors_total')).toBe(outagesBefore);
  expect(metricValue(text, 'idgate_decisions_total{outcome="unavailable",reason="introspection_config_error"}')).toBeGreaterThanOrEqual(2);
  const readyz = await request(idgate.server).get('/readyz');
  expect(readyz.status).toBe(503);
  expect(readyz.text).toContain(`keys=misconfigured (${issuer} answers HTTP ${status} to idgate's introspection credentials)`);
  // Said once, with the fix, however many requests meet it.
  await waitUntil('the refusal logged', () => idgate.logLines.filter((l) => l.includes('introspection refused')).length >= 1);

  // Fixed at the issuer: the next call (a check, or the background probe) clears it.
  introspectionStatus = 200;
  expect((await check(`opaque-${status}-fixed`)).status).toBe(200);
  expect((await request(idgate.server).get('/readyz')).status).toBe(200);
});

test('the configuration error is logged once per episode, never with the client secret', () => {
  const said = idgate.logLines.filter((l) => l.includes('introspection refused'));
  expect(said).toHaveLength(2);
  for (const line of said) {
    expect(JSON.parse(line)).toMatchObject({ level: 'error', error_code: 'introspection_config_error', client_id: 'idgate' });
    expect(line).not.toContain('idgate-secret');
  }
  expect(idgate.logLines.join('')).not.toContain('idgate-secret');
});
