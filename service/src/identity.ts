// Who a request comes from, once its credentials are verified: what sessions and tokens produce, what the
// policy judges and the check answers with. Below all of them, so that none imports another to name it.

export interface Identity {
  /** How the caller proved who it is. */
  readonly via: 'session' | 'token';
  readonly subject: string;
  readonly user: string;
  readonly email: string | undefined;
  readonly groups: readonly string[];
  readonly roles: readonly string[];
  readonly scopes: readonly string[];
  /** Client id of a machine token. */
  readonly clientId: string | undefined;
  readonly issuer: string;
  /**
   * Issued by IDGATE_ISSUER (the login issuer; every session is). Conditions that name no `issuers` hold
   * only for such identities: a token from another trusted issuer needs a rule that names its issuer.
   */
  readonly fromPrimaryIssuer: boolean;
}

/** The two ways to be signed in: a browser session, or a bearer access token. */
export type Credential = Identity['via'];
