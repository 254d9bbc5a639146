// Runs the demo IdP as its own process: `node dist/stack/idp-main.js`.
//
// Environment (all optional):
//   IDP_PORT                       port to listen on (default 9000; 0: any free port, reported below)
//   IDP_HOST                       address to listen on (default 127.0.0.1)
//   IDP_ISSUER                     issuer identifier (default http://127.0.0.1:<the port bound>)
//   IDP_REDIRECT_URIS              comma-separated redirect_uris of the idgate client
//   IDP_POST_LOGOUT_REDIRECT_URIS  comma-separated post_logout_redirect_uris of the idgate client
//   IDP_BACKCHANNEL_LOGOUT_URI     idgate's back-channel logout endpoint
//   IDP_FRONTCHANNEL_LOGOUT_URI    idgate's front-channel logout endpoint (loaded in an iframe by the IdP's
//                                  "Signed out" page, with iss and sid)
//   IDP_PEER_REDIRECT_URIS         comma-separated redirect_uris of the bench's peer client (apache-peer);
//                                  unset: that client is not registered
//   IDP_ACCESS_TOKEN_TTL           access token lifetime in seconds (default 3600)
//   IDP_KEYS_FILE                  keep the signing keys in this file, so a restart signs with the same keys
//   IDP_ID_TOKEN_TTL               ID token lifetime in seconds (default 3600)
//   IDP_REFRESH_TOKEN_TTL          refresh token lifetime in seconds (default 86400)
//   IDP_ID_TOKEN_ON_REFRESH        always (default) or when-openid-asked (Okta's way: only when the refresh asks for openid)
//   IDP_PROFILE                    demo (default) or okta: answer the way Okta does (stack/idp.ts, IdpOptions.profile)
//   IDP_REFRESH_REUSE_GRACE        profile okta: seconds a rotated refresh token stays redeemable (0 to 60, default 30)
//   IDP_GROUPS_FILE                JSON {"<user>": [groups]} read at every answer, replacing those users' groups (tests)
//
// Prints `idp listening on <issuer> (port <port bound>)` once it accepts requests. Signals:
//   SIGTERM, SIGINT  stop and exit 0
//   SIGUSR1          rotate: sign with a new key, keep publishing the old ones
//   SIGUSR2          retire: publish only the newest key
import { startIdp, type IdpProfile } from './idp.js';

function list(value: string | undefined): string[] {
  return (value ?? '').split(',').map((item) => item.trim()).filter(Boolean);
}

function seconds(name: string): number | undefined {
  const value = process.env[name];
  if (value === undefined || value === '') return undefined;
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed <= 0) throw new Error(`${name} must be a positive whole number of seconds, got "${value}"`);
  return parsed;
}

function idTokenOnRefresh(value: string | undefined): 'always' | 'when-openid-asked' | undefined {
  if (value === undefined || value === '') return undefined;
  if (value === 'always' || value === 'when-openid-asked') return value;
  throw new Error(`IDP_ID_TOKEN_ON_REFRESH must be always or when-openid-asked, got "${value}"`);
}

function profile(value: string | undefined): IdpProfile | undefined {
  if (value === undefined || value === '') return undefined;
  if (value === 'demo' || value === 'okta') return value;
  throw new Error(`IDP_PROFILE must be demo or okta, got "${value}"`);
}

function graceSeconds(value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 0 || parsed > 60) throw new Error(`IDP_REFRESH_REUSE_GRACE must be a whole number of seconds from 0 to 60 (Okta's range), got "${value}"`);
  return parsed;
}

async function main(): Promise<void> {
  const port = Number(process.env.IDP_PORT ?? 9000);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) throw new Error(`IDP_PORT is not a valid port: "${process.env.IDP_PORT}"`);

  const idp = await startIdp({
    port,
    host: process.env.IDP_HOST || undefined,
    issuer: process.env.IDP_ISSUER || undefined,
    redirectUris: list(process.env.IDP_REDIRECT_URIS),
    postLogoutRedirectUris: list(process.env.IDP_POST_LOGOUT_REDIRECT_URIS),
    backchannelLogoutUri: process.env.IDP_BACKCHANNEL_LOGOUT_URI || undefined,
    frontchannelLogoutUri: process.env.IDP_FRONTCHANNEL_LOGOUT_URI || undefined,
    peerRedirectUris: list(process.env.IDP_PEER_REDIRECT_URIS),
    accessTokenTtlSeconds: seconds('IDP_ACCESS_TOKEN_TTL'),
    idTokenTtlSeconds: seconds('IDP_ID_TOKEN_TTL'),
    refreshTokenTtlSeconds: seconds('IDP_REFRESH_TOKEN_TTL'),
    keysFile: process.env.IDP_KEYS_FILE || undefined,
    idTokenOnRefresh: idTokenOnRefresh(process.env.IDP_ID_TOKEN_ON_REFRESH),
    groupsFile: process.env.IDP_GROUPS_FILE || undefined,
    profile: profile(process.env.IDP_PROFILE),
    refreshReuseGraceSeconds: graceSeconds(process.env.IDP_REFRESH_REUSE_GRACE),
  });
  console.log(`idp listening on ${idp.issuer} (port ${idp.port})`);

  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    idp.close().then(() => process.exit(0), (error: Error) => {
      console.error(`idp: error while stopping: ${error.message}`);
      process.exit(1);
    });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);

  process.on('SIGUSR1', () => {
    idp.rotateSigningKey().then(
      () => console.log('idp signing key rotated'),
      (error: Error) => console.error(`idp: key rotation failed: ${error.message}`),
    );
  });
  process.on('SIGUSR2', () => {
    idp.retireOldSigningKeys().then(
      () => console.log('idp old signing keys retired'),
      (error: Error) => console.error(`idp: retiring old keys failed: ${error.message}`),
    );
  });
}

main().catch((error: Error) => {
  console.error(`idp: ${error.message}`);
  process.exit(1);
});
