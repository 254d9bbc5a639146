// `make demo`: the whole stack on the default ports (docs/reference.md), until Ctrl-C.
import path from 'node:path';
import { CANARY_ADDRESS, FRONT_ADDRESS, IDGATE_ADDRESS, SPOE_AGENT_ADDRESS, UPSTREAM_ADDRESS } from '../service/src/defaults.js';
import { REPO_ROOT, startStack, stopOnSignals } from '../stack/stack.js';

/** The port of a documented address (service/src/defaults.ts). */
const portOf = (address: string) => Number(address.slice(address.lastIndexOf(':') + 1));
// The local IdP and the demo's Redis have no address of idgate's to follow: theirs are the demo's own.
const ports = { front: portOf(FRONT_ADDRESS), idgate: [portOf(IDGATE_ADDRESS)], idp: 9000, redis: 6380, upstream: portOf(UPSTREAM_ADDRESS), canary: portOf(CANARY_ADDRESS), spoe: [portOf(SPOE_AGENT_ADDRESS)] };
// IDGATE_HAPROXY_MODE=spoe make demo: HAProxy asks idgate's SPOE agent instead of the HTTP check.
const mode = process.env.IDGATE_HAPROXY_MODE === 'spoe' ? 'spoe' : 'lua';
// make demo IDP=okta (IDP_PROFILE=okta): the local IdP answers the way Okta does (docs/okta.md, "Try it locally").
const idpProfile = process.env.IDP_PROFILE === 'okta' ? 'okta' : 'demo';
if (!['', 'demo', 'okta'].includes(process.env.IDP_PROFILE ?? '')) {
  process.stderr.write(`demo: IDP must be demo or okta, got "${process.env.IDP_PROFILE}"\n`);
  process.exit(2);
}

async function main(): Promise<void> {
  process.stdout.write('starting Redis, the local IdP, the sample upstream, idgate and HAProxy...\n');
  let stack: Awaited<ReturnType<typeof startStack>>;
  try {
    // Redis keeps its AOF in .run/redis (gitignored): sessions outlive a restart of the demo.
    stack = await startStack({ ports, echo: true, haproxyMode: mode, idpProfile, redisDir: path.join(REPO_ROOT, '.run/redis') });
  } catch (err) {
    process.stderr.write(`demo: could not start: ${(err as Error).message}\n`);
    process.stderr.write(`demo: are the ports ${[ports.front, ...ports.idgate, ports.idp, ports.redis, ports.upstream, ports.canary, ...ports.spoe].join(', ')} free? Another \`make demo\` may be running.\n`);
    process.exit(1);
  }
  process.stdout.write(`
  idgate demo is running (HAProxy integration: ${mode === 'spoe' ? 'SPOE agent' : 'Lua + HTTP check'}; IdP: ${idpProfile === 'okta' ? 'Okta-shaped' : 'demo'}).

  Open ${stack.frontUrl}/ in a browser and sign in as
      alice / alice   (groups engineering, admins: can open /admin/; served by the canary pool)
      bob / bob       (group sales: gets 403 on /admin/)

  ${stack.frontUrl}/public/      public, no login
  ${stack.frontUrl}/api/         API route: 401 without credentials, never a redirect
  A machine token:  curl -s -u demo-bot:demo-bot-secret -d grant_type=client_credentials -d scope=api:read ${stack.issuer}/token
  then:             curl -H "Authorization: Bearer <access_token>" ${stack.frontUrl}/api/hello
${idpProfile === 'okta' ? `
  Okta-shaped IdP: access tokens carry cid, uid and scp; groups come only from userinfo (no groups scope);
  refresh tokens rotate (reuse after 30 s revokes the grant); dpop-bot needs a DPoP proof (invalid_dpop_proof
  without) holding the token endpoint's nonce (use_dpop_nonce and a DPoP-Nonce header first); opaque-bot gets
  opaque tokens that idgate introspects. See docs/okta.md, "Try it locally".
` : ''}
  Ctrl-C stops everything.
`);
  stopOnSignals(stack);
}

void main();
