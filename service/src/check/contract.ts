// The check's contract: the one request a transport hands the check (CheckInput) and the one answer it
// gets back (CheckOutcome), as data. Both transports build the first and render the second; how each
// field travels on each of them is check-wire.ts.
/**
 * The request HAProxy asks about, as its transport carried it: nothing here is validated yet (check.ts
 * does that, the same way for both transports). One object shape for both transports, so that the hot
 * path sees one shape.
 */
export interface CheckInput {
  /**
   * The peer may speak for the client (IDGATE_TRUSTED_PROXIES). When false, the transport read nothing
   * else of the request: every fact below is absent, and the check refuses it.
   */
  readonly fromTrustedProxy: boolean;
  /**
   * Why fromTrustedProxy is false: `secret` when the peer's address is trusted but the check lacks
   * HAProxy's check secret (check-secret.ts); absent otherwise (the address is not trusted).
   */
  readonly refusedFor?: 'secret';
  /** Address of the peer that asked (HAProxy). */
  readonly peer: string | undefined;
  readonly method: string | undefined;
  /** `http` or `https` as HAProxy saw the client's connection; anything else means the public URL's. */
  readonly scheme: string | undefined;
  /** Host as the client sent it. */
  readonly host: string | undefined;
  /** Path and query as the client sent them (origin form). */
  readonly pathq: string | undefined;
  /** The client's address as the nearest trusted proxy saw it, else the peer's; '' when neither is known. */
  readonly clientAddress: string;
  /** HAProxy's unique id for the request (used only when well-formed). */
  readonly requestId: string | undefined;
  // The credentials: the Cookie header (all its lines as one), the Authorization header, and the DPoP
  // proof that goes with an `Authorization: DPoP` token (RFC 9449; several lines joined by commas).
  readonly cookie: string | undefined;
  readonly authorization: string | undefined;
  readonly dpop: string | undefined;
  // The kind of client: Accept and X-Requested-With tell a browser navigating from XHR and API clients.
  readonly accept: string | undefined;
  readonly requestedWith: string | undefined;
  // A CORS preflight's two headers (with method OPTIONS): passed unjudged where a rule says so.
  readonly origin: string | undefined;
  readonly corsRequestMethod: string | undefined;
  /** WebDAV's Destination (MOVE, COPY): a second path, judged too. */
  readonly destination: string | undefined;
}

/** A check refused unread: from a peer outside IDGATE_TRUSTED_PROXIES, or (`secret`) without HAProxy's check secret. */
export function refusedCheckInput(peer: string | undefined, refusedFor: CheckInput['refusedFor']): CheckInput {
  return { fromTrustedProxy: false, refusedFor, peer, method: undefined, scheme: undefined, host: undefined, pathq: undefined, clientAddress: peer || '', requestId: undefined, cookie: undefined, authorization: undefined, dpop: undefined, accept: undefined, requestedWith: undefined, origin: undefined, corsRequestMethod: undefined, destination: undefined };
}

export type OutcomeKind = 'allow' | 'public' | 'login' | 'unauthenticated' | 'deny' | 'invalid_request' | 'method_not_allowed' | 'untrusted_peer' | 'unavailable';

/** An identity as it travels: every value single-line and percent-encoded (`identityFields` below). */
export interface WireIdentity {
  readonly user: string;
  readonly subject: string | undefined;
  readonly issuer: string | undefined;
  readonly email: string | undefined;
  /** Comma-separated (a comma inside a group is %2C). */
  readonly groups: string | undefined;
  readonly groupsTruncated: boolean;
  /** Space-separated (a space inside a scope is %20). */
  readonly scopes: string | undefined;
  readonly scopesTruncated: boolean;
  readonly client: string | undefined;
  readonly backend: string | undefined;
}

/** The check's answer, as data. Every field is always present (one object shape: see `checkOutcome`). */
export interface CheckOutcome {
  readonly kind: OutcomeKind;
  readonly status: number;
  /** Why, in words (audit lines carry it too); on the wire only with an `error`. */
  readonly reason: string;
  /** The JSON body's `error` (4xx and 503 answers in JSON); undefined for other bodies. */
  readonly error: string | undefined;
  /** On an allow, who to forward; on a denial, only `user` (for HAProxy's log line, never the client). */
  readonly identity: WireIdentity | undefined;
  /** On 200 answers: HAProxy's request id, forwarded to the app. */
  readonly requestId: string | undefined;
  /** Where to sign in (302/303). */
  readonly location: string | undefined;
  /** The WWW-Authenticate challenge (401, and 403 for a missing scope). */
  readonly challenge: string | undefined;
  /** On a 405: the methods not refused here, comma-separated (policy.ts `allowedMethods`), for the Allow header. */
  readonly allow: string | undefined;
  /**
   * A DPoP nonce for the client (IDGATE_DPOP_NONCE, RFC 9449 section 8): on a 401 use_dpop_nonce, and on any
   * answer to a proof whose nonce is from the previous slot. HAProxy adds it to the client's response.
   */
  readonly dpopNonce: string | undefined;
  readonly contentType: string | undefined;
  readonly body: string;
  /** A renewed session's cookie, sent back with any answer. */
  readonly setCookie: string | undefined;
  /** On 200 answers: the canonical path decided on, which HAProxy forwards instead of the one sent. */
  readonly path: string | undefined;
  /**
   * On 200 answers when the client sent idgate's cookies: the Cookie header without them, which HAProxy
   * forwards instead ('' for none left). Undefined: the Cookie header goes on untouched.
   */
  readonly appCookies: string | undefined;
}

export type OutcomeDetails = Partial<Omit<CheckOutcome, 'kind' | 'status' | 'reason'>>;

/**
 * An outcome with every field present, in one order: the renderers and the agent then see a single
 * object shape. Fields stay writable inside check.ts (a renewed cookie and the forwarded path are added
 * after the answer is chosen), readonly to everyone else.
 */
export function checkOutcome(kind: OutcomeKind, status: number, reason: string, d: OutcomeDetails = {}): { -readonly [K in keyof CheckOutcome]: CheckOutcome[K] } {
  return {
    kind,
    status,
    reason,
    error: d.error,
    identity: d.identity,
    requestId: d.requestId,
    location: d.location,
    challenge: d.challenge,
    allow: d.allow,
    dpopNonce: d.dpopNonce,
    contentType: d.contentType,
    body: d.body ?? '',
    setCookie: d.setCookie,
    path: d.path,
    appCookies: d.appCookies,
  };
}

/** The check as both transports hold it: built once by the wiring, handed to each. Never rejects. */
export type Check = (request: CheckInput) => Promise<CheckOutcome>;
