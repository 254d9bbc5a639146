// The demo IdP's fixed accounts: its two users and its machine clients. A module of its own so that
// the tests name the same people and clients without loading the IdP (test/support/identities.ts).
/** The demo's fixed users. The username is also the account id (`sub`). */
export interface DemoUser {
  password: string;
  claims: { name: string; preferred_username: string; email: string; email_verified: boolean; groups: string[] };
}

export const DEMO_USERS: ReadonlyMap<string, DemoUser> = new Map([
  ['alice', {
    password: 'alice',
    claims: {
      name: 'Alice Example',
      preferred_username: 'alice',
      email: 'alice@example.com',
      email_verified: true,
      groups: ['engineering', 'admins'],
    },
  }],
  ['bob', {
    password: 'bob',
    claims: {
      name: 'Bob Example',
      preferred_username: 'bob',
      email: 'bob@example.com',
      email_verified: true,
      groups: ['sales'],
    },
  }],
]);

export const MACHINE_CLIENT_ID = 'demo-bot';
export const MACHINE_CLIENT_SECRET = 'demo-bot-secret';
/** A machine client whose tokens are opaque (like Okta's org authorization server): check them by introspection. */
export const OPAQUE_CLIENT_ID = 'opaque-bot';
export const OPAQUE_CLIENT_SECRET = 'opaque-bot-secret';
/**
 * The benchmark's peer relying party (`make bench`: Apache + mod_auth_openidc, bench/apache-peer.ts), a
 * confidential client like idgate; registered only when the IdP is given its redirect URIs.
 */
export const PEER_RP_CLIENT_ID = 'apache-peer';
export const PEER_RP_CLIENT_SECRET = 'apache-peer-secret';
/**
 * A machine client whose tokens are DPoP-bound (RFC 9449; Okta's "Require DPoP" default for service apps):
 * it asks for a token with a DPoP proof and gets a JWT with cnf.jkt, good only with proofs by that key.
 */
export const DPOP_CLIENT_ID = 'dpop-bot';
export const DPOP_CLIENT_SECRET = 'dpop-bot-secret';
export const API_RESOURCE = 'api://idgate';
export const API_SCOPE = 'api:read';
