// DPoP (RFC 9449): an access token sent as `Authorization: DPoP <token>` counts only with a `DPoP` proof,
// a JWT the client signs for this one request with the key the token is bound to. The proof is checked as
// section 4.3 lists, cheapest first: one well-formed JWT; typ dpop+jwt; an asymmetric algorithm from
// IDGATE_DPOP_ALGORITHMS; a public `jwk` (no private members) of a kind and size idgate allows
// (proofKeyProblem) and fitting that algorithm; jti, htm, htu and iat present; htm and htu naming the
// request as HAProxy saw it (method; scheme, host and path, without query or fragment, both sides
// normalized); iat within IDGATE_DPOP_MAX_AGE (plus the clock skew); `ath` the hash of the token sent.
// These read the proof's claims before its signature is checked: they cost no cryptography, and nothing
// counts until the signature is checked. Then the token, whose binding (`cnf.jkt`) is compared with the
// thumbprint of the proof's key (tokens.ts `proofKey`); then the proof's signature; last its jti,
// remembered in Redis so that a proof is good for one request, on every replica.
// With IDGATE_DPOP_NONCE on, the proof must also carry a nonce idgate issued (dpop-nonce.ts), checked right
// after the proof's claims: without one, 401 `use_dpop_nonce` and a nonce to retry with; with one from the
// previous slot, a fresh nonce goes back with the answer. Off (the default), freshness rests on iat and the
// jti memory.
import crypto from 'node:crypto';
import * as jose from 'jose';
import type { Config } from '../config.js';
import { IdgateError } from '../errors.js';
import type { Identity } from '../identity.js';
import type { ReplayCache } from '../replay-cache.js';
import type { Clock } from '../clock.js';
import type { BearerVerifier } from './tokens.js';
import { dpopNoncesOf } from './dpop-nonce.js';

/** A DPoP proof is a short JWT (about 600-900 characters); anything far longer is not one. */
const MAX_PROOF_LENGTH = 4096;
/** jti values longer than this are refused (they are remembered, hashed, but they must stay sane). */
const MAX_JTI_LENGTH = 256;
/** JWK members that only a private (or symmetric) key has. */
const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

export type DpopSettings = Pick<Config, 'dpopAlgorithms' | 'dpopMaxAgeSeconds' | 'clockSkewSeconds'>;

/** The request a proof must name, as HAProxy saw it. */
export interface ProofTarget {
  /** Upper-case method. */
  readonly method: string;
  /** `scheme://host[:port]/path`, as the client sent them (a query is ignored). */
  readonly url: string;
}

/** A proof that passed every check but the replay check: the key that signed it and its id. */
export interface CheckedProof {
  /** RFC 7638 thumbprint (SHA-256, base64url) of the proof's public key: what a bound token's cnf.jkt names. */
  readonly keyThumbprint: string;
  readonly jti: string;
  /** Seconds since epoch. */
  readonly iat: number;
  /** The server nonce it carries (RFC 9449 section 8), if any. */
  readonly nonce: string | undefined;
}

/** A proof whose every part but its signature was checked (readDpopProof): verifyDpopProofSignature is still owed. */
export interface ReadProof extends CheckedProof {
  readonly proof: string;
  readonly alg: string;
}

const refuse = (expose: string, detail?: string) => new IdgateError('invalid_dpop_proof', expose, detail);

/**
 * Checks a DPoP proof (RFC 9449 section 4.3) for a request and the access token sent with it, all but its
 * jti's novelty (ReplayCache.firstUseOfDpopProof). Throws IdgateError 'invalid_dpop_proof' saying what is wrong.
 * `now`: ms since epoch.
 */
export async function checkDpopProof(proof: string | undefined, target: ProofTarget, accessToken: string, settings: DpopSettings, now = Date.now()): Promise<CheckedProof> {
  const read = await readDpopProof(proof, target, accessToken, settings, now);
  await verifyDpopProofSignature(read);
  return { keyThumbprint: read.keyThumbprint, jti: read.jti, iat: read.iat, nonce: read.nonce };
}

/**
 * Every check of checkDpopProof but the signature, which costs no cryptography: the key's kind and size
 * are bounded here, before anything is verified with it. Throws IdgateError 'invalid_dpop_proof'.
 */
export async function readDpopProof(proof: string | undefined, target: ProofTarget, accessToken: string, settings: DpopSettings, now = Date.now()): Promise<ReadProof> {
  if (proof === undefined || proof === '') throw refuse('the request lacks a DPoP proof');
  // Two DPoP header lines arrive joined by a comma, which no JWT contains (section 4.3: exactly one).
  if (proof.includes(',')) throw refuse('the request carries more than one DPoP proof');
  if (proof.length > MAX_PROOF_LENGTH) throw refuse('the DPoP proof is malformed', 'too long');
  let header: jose.ProtectedHeaderParameters;
  let payload: jose.JWTPayload;
  try {
    header = jose.decodeProtectedHeader(proof);
    payload = jose.decodeJwt(proof);
  } catch {
    throw refuse('the DPoP proof is malformed');
  }
  if (typeof header.typ !== 'string' || header.typ.toLowerCase() !== 'dpop+jwt') throw refuse('the DPoP proof is not typed dpop+jwt');
  if (typeof header.alg !== 'string' || !settings.dpopAlgorithms.includes(header.alg)) throw refuse('the DPoP proof signature algorithm is not accepted', String(header.alg));
  const jwk = header.jwk;
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) throw refuse('the DPoP proof carries no public key (jwk)');
  if (PRIVATE_JWK_MEMBERS.some((m) => m in jwk)) throw refuse('the DPoP proof key must be a public key');
  const keyProblem = proofKeyProblem(jwk, header.alg);
  if (keyProblem) throw refuse('the DPoP proof key is not accepted', keyProblem);
  const { jti, htm, htu, iat, ath, nonce } = payload as { jti?: unknown; htm?: unknown; htu?: unknown; iat?: unknown; ath?: unknown; nonce?: unknown };
  if (typeof jti !== 'string' || jti === '' || jti.length > MAX_JTI_LENGTH) throw refuse('the DPoP proof lacks a jti');
  if (typeof htm !== 'string') throw refuse('the DPoP proof lacks htm');
  if (typeof htu !== 'string') throw refuse('the DPoP proof lacks htu');
  if (typeof iat !== 'number' || !Number.isFinite(iat)) throw refuse('the DPoP proof lacks iat');
  if (htm !== target.method) throw refuse('the DPoP proof is for another method', `htm ${htm.slice(0, 16)}`);
  const wanted = normalizedHtu(target.url);
  if (wanted === undefined || normalizedHtu(htu) !== wanted) throw refuse('the DPoP proof is for another URL');
  const nowSeconds = now / 1000;
  if (iat > nowSeconds + settings.clockSkewSeconds) throw refuse('the DPoP proof is not valid yet', 'iat in the future');
  if (iat < nowSeconds - settings.dpopMaxAgeSeconds - settings.clockSkewSeconds) throw refuse('the DPoP proof is too old', `iat ${Math.round(nowSeconds - iat)} s ago`);
  if (typeof ath !== 'string') throw refuse('the DPoP proof lacks ath (the access token hash)');
  if (ath !== crypto.hash('sha256', accessToken, 'base64url')) throw refuse('the DPoP proof is for another access token');
  if (nonce !== undefined && typeof nonce !== 'string') throw refuse('the DPoP proof nonce is not a string');
  let keyThumbprint: string;
  try {
    keyThumbprint = await jose.calculateJwkThumbprint(jwk as jose.JWK, 'sha256');
  } catch {
    throw refuse('the DPoP proof key is not accepted', 'members missing');
  }
  return { proof, alg: header.alg, keyThumbprint, jti, iat, nonce };
}

/** Verifies the signature of a proof readDpopProof passed, with the key it carries. Throws IdgateError 'invalid_dpop_proof'. */
export async function verifyDpopProofSignature(read: ReadProof): Promise<void> {
  try {
    // EmbeddedJWK: the key is the header's jwk, refused unless it is a public key of the algorithm's type.
    await jose.jwtVerify(read.proof, jose.EmbeddedJWK, { typ: 'dpop+jwt', algorithms: [read.alg] });
  } catch (err) {
    throw refuse('the DPoP proof signature is invalid', (err as { code?: string }).code);
  }
}

/**
 * The keys a proof may carry, for the algorithm it names: EC P-256 (ES256) or P-384 (ES384), Ed25519
 * (EdDSA), or RSA (RS*, PS*) of 2048 to 4096 bits with the exponent 65537. Anything else is refused before
 * it verifies anything: an RSA key's cost grows with its exponent and modulus, both the sender's to choose,
 * and no client needs more than these. Returns why a key is refused (for the log), or undefined.
 */
export function proofKeyProblem(jwk: Readonly<Record<string, unknown>>, alg: string): string | undefined {
  const family = alg.startsWith('RS') || alg.startsWith('PS') ? 'RSA' : alg === 'ES256' ? 'P-256' : alg === 'ES384' ? 'P-384' : alg === 'EdDSA' ? 'Ed25519' : undefined;
  if (family === undefined) return `algorithm ${alg.slice(0, 16)} has no accepted key kind`;
  if (family !== 'RSA') {
    const kty = family === 'Ed25519' ? 'OKP' : 'EC';
    return jwk.kty === kty && jwk.crv === family ? undefined : `${String(jwk.kty).slice(0, 8)} ${String(jwk.crv).slice(0, 16)} key for ${alg}`;
  }
  if (jwk.kty !== 'RSA') return `${String(jwk.kty).slice(0, 8)} key for ${alg}`;
  // 65537 is AQAB, written without leading zeros (RFC 7518 section 6.3.1.2).
  if (jwk.e !== 'AQAB') return 'RSA exponent other than 65537';
  if (typeof jwk.n !== 'string' || !/^[A-Za-z0-9_-]+$/.test(jwk.n)) return 'RSA modulus not base64url';
  const bits = bitLength(Buffer.from(jwk.n, 'base64url'));
  return bits >= MIN_RSA_BITS && bits <= MAX_RSA_BITS ? undefined : `RSA modulus of ${bits} bits`;
}

const MIN_RSA_BITS = 2048;
const MAX_RSA_BITS = 4096;

/** Bits of a big-endian unsigned integer, leading zeros not counted. */
function bitLength(bytes: Buffer): number {
  let i = 0;
  while (i < bytes.length && bytes[i] === 0) i += 1;
  return i === bytes.length ? 0 : (bytes.length - i - 1) * 8 + (32 - Math.clz32(bytes[i]!));
}

/**
 * An htu or request URL compared the RFC 9449 way (section 4.3, point 9): no query, no fragment, with
 * RFC 3986 syntax- and scheme-based normalization: scheme and host lower-case, the default port dropped,
 * an empty path as "/", dot segments resolved, percent-encodings upper-case and unreserved ones decoded.
 * Undefined when it is not an http(s) URL.
 */
export function normalizedHtu(url: string): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return undefined;
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') return undefined;
  const path = parsed.pathname.replace(/%([0-9a-fA-F]{2})/g, (_m, hex: string) => {
    const c = String.fromCharCode(Number.parseInt(hex, 16));
    return /[A-Za-z0-9\-._~]/.test(c) ? c : `%${hex.toUpperCase()}`;
  });
  return `${parsed.protocol}//${parsed.host}${path}`;
}

/** The request's URL as the proof must name it: scheme and host as HAProxy saw them, the path as the client sent it. */
export function proofTargetUrl(scheme: string, host: string, pathq: string): string {
  const q = pathq.indexOf('?');
  return `${scheme}://${host}${q === -1 ? pathq : pathq.slice(0, q)}`;
}

/**
 * The identity of a DPoP request: its proof's claims and key checked (with IDGATE_DPOP_NONCE, its nonce
 * too), its token verified and bound to the proof's key, the proof's signature verified, its jti then remembered (a proof seen before, here or on
 * another replica, is refused). `nonce`: a fresh nonce for the answer, when the proof's is from the previous
 * slot. Throws IdgateError 'invalid_dpop_proof', 'use_dpop_nonce' or 'invalid_token' (401), or what the
 * token check and the store throw.
 */
export async function verifyDpopRequest(
  deps: { readonly bearer: BearerVerifier; readonly replays: ReplayCache; readonly config: Config; readonly clock: Clock },
  request: {
    readonly proof: string | undefined;
    readonly target: ProofTarget;
    readonly accessToken: string;
    /** The client's address: introspection calls are bounded per source. */
    readonly source: string;
    /** HAProxy's unique id of the request: the same request asked again is not a replay. */
    readonly requestId: string;
  },
): Promise<{ identity: Identity; nonce: string | undefined }> {
  const { config } = deps;
  const now = deps.clock();
  const proof = await readDpopProof(request.proof, request.target, request.accessToken, config, now);
  const nonce = config.dpopNonceRequired ? checkDpopNonce(config, proof.nonce, now) : undefined;
  // The token before the proof's signature: an anonymous caller then cannot make idgate verify a proof
  // with a key of its choosing, but only with the key a valid token is bound to. The token's own check costs
  // at most one verification with the issuer's key (none when cached), as for a Bearer token, or one
  // introspection call, bounded per source.
  const identity = await deps.bearer.verify(request.accessToken, { source: request.source, proofKey: proof.keyThumbprint });
  await verifyDpopProofSignature(proof);
  // Last, so that only proofs good in every other way take room in Redis. Remembered as long as its iat can pass.
  const ttl = config.dpopMaxAgeSeconds + 2 * config.clockSkewSeconds;
  const digest = crypto.hash('sha256', `${proof.keyThumbprint}\0${proof.jti}`, 'base64url');
  if (!(await deps.replays.firstUseOfDpopProof(digest, ttl, request.requestId))) throw refuse('the DPoP proof was already used');
  return { identity, nonce };
}

/**
 * A proof's nonce where idgate requires one: undefined when it is of this slot, a fresh nonce when it is of
 * the previous one (the client takes it for its next proofs). Throws IdgateError 'use_dpop_nonce' when
 * there is none, or one idgate did not issue or issued too long ago.
 */
function checkDpopNonce(config: Pick<Config, 'cookieSecrets'>, nonce: string | undefined, now: number): string | undefined {
  if (nonce === undefined || nonce === '') throw new IdgateError('use_dpop_nonce', 'the DPoP proof lacks the nonce idgate gives (DPoP-Nonce)');
  const nonces = dpopNoncesOf(config);
  const age = nonces.check(nonce, now);
  if (age === undefined) throw new IdgateError('use_dpop_nonce', 'the DPoP proof nonce is not one idgate gave lately (DPoP-Nonce)');
  return age === 'previous' ? nonces.issue(now) : undefined;
}

/**
 * The WWW-Authenticate challenge of the DPoP scheme (RFC 9449 section 7.1): the error, when there is one,
 * and the proof algorithms accepted. `quoted`: the description, already safe inside quotes.
 */
export function dpopChallenge(config: Pick<Config, 'dpopAlgorithms'>, error?: string, quoted?: string): string {
  const parts = ['DPoP realm="idgate"'];
  if (error) parts.push(`error="${error}"`);
  if (error && quoted) parts.push(`error_description="${quoted}"`);
  parts.push(`algs="${config.dpopAlgorithms.join(' ')}"`);
  return parts.join(', ');
}
