// Who the tests sign in as, and what idgate should then tell the upstream: read from the demo IdP's own
// account table, so a test never restates a user's email, groups or a client's secret.
import { API_RESOURCE, API_SCOPE, DEMO_USERS, DPOP_CLIENT_ID, DPOP_CLIENT_SECRET, MACHINE_CLIENT_ID, MACHINE_CLIENT_SECRET, OPAQUE_CLIENT_ID, OPAQUE_CLIENT_SECRET } from '../../stack/idp-accounts.js';

export interface DemoPerson {
  /** The account id, the sign-in name and the password alike. */
  readonly sub: string;
  readonly user: string;
  readonly password: string;
  readonly name: string;
  readonly email: string;
  readonly groups: readonly string[];
}

function person(login: string): DemoPerson {
  const account = DEMO_USERS.get(login);
  if (!account) throw new Error(`the demo IdP has no user ${login}`);
  const { claims } = account;
  return { sub: login, user: claims.preferred_username, password: account.password, name: claims.name, email: claims.email, groups: claims.groups };
}

/** In groups engineering and admins: allowed in the demo policy's admin area. */
export const alice = person('alice');
/** In group sales only: denied the admin area. */
export const bob = person('bob');

/** The machine client with JWT access tokens for API_RESOURCE. */
export const machineClient = { id: MACHINE_CLIENT_ID, secret: MACHINE_CLIENT_SECRET, scope: API_SCOPE, audience: API_RESOURCE } as const;
/** The machine client whose JWT access tokens are DPoP-bound (RFC 9449): asked for and used with proofs. */
export const dpopClient = { id: DPOP_CLIENT_ID, secret: DPOP_CLIENT_SECRET, scope: API_SCOPE, audience: API_RESOURCE } as const;
/** The machine client whose access tokens are opaque (checked by introspection). */
export const opaqueClient = { id: OPAQUE_CLIENT_ID, secret: OPAQUE_CLIENT_SECRET, scope: API_SCOPE, audience: API_RESOURCE } as const;

/** HTTP Basic credentials of a client, as its token requests send them. */
export function basicAuth(client: { id: string; secret: string }): string {
  return `Basic ${Buffer.from(`${client.id}:${client.secret}`).toString('base64')}`;
}
