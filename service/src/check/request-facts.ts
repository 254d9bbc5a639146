// The facts of the request a check is about, read from what the transport said and validated the same
// way for both transports: one method, one host, one canonical path (or the reason there is none).
import crypto from 'node:crypto';
import type { Config } from '../config.js';
import { NEVER_ALLOWED_METHODS, type RequestFacts } from '../policy/policy.js';
import { canonicalPath } from '../paths.js';
import { MAX_HOST_LENGTH, MAX_PATH_LENGTH, MAX_URI_LENGTH } from '../limits.js';
import { methodOverrideOf } from './method-override.js';
import { destinationPathOf } from './destination.js';
import type { CheckInput } from './contract.js';

const METHOD = /^[A-Z]{1,16}$/;
const HOST = /^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.?(?::\d{1,5})?$|^\[[0-9a-f:.]+\](?::\d{1,5})?$/;
const URI = /^\/[\x21-\x7e]*$/;
const REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;

/** Why a check cannot be judged at all: never answered as if it were some default request. */
export interface FactsProblem {
  readonly problem: 'untrusted_peer' | 'invalid_request' | 'method_not_allowed';
  readonly reason: string;
}

/**
 * The facts of the original request, or why there are none. Only a trusted peer (HAProxy) speaks for the
 * client, and it must say which method, host and URI it asks about. The reasons name the HTTP check's
 * headers: the SPOE message's arguments carry the same facts.
 */
export function readRequestFacts(request: CheckInput, config: Config): RequestFacts | FactsProblem {
  if (!request.fromTrustedProxy) {
    if (request.refusedFor === 'secret') return { problem: 'untrusted_peer', reason: `the check from ${request.peer ?? 'an unknown peer'} lacks HAProxy's check secret (IDGATE_CHECK_SECRETS)` };
    return { problem: 'untrusted_peer', reason: `the check came from ${request.peer ?? 'an unknown peer'}, which is not in IDGATE_TRUSTED_PROXIES` };
  }
  const { method: methodSent, host: hostSent, pathq: uri } = request;
  // Before anything else: a CONNECT names no path at all, and is refused as a method, not as a malformed check.
  if (methodSent !== undefined && NEVER_ALLOWED_METHODS.has(methodSent.toUpperCase())) return { problem: 'method_not_allowed', reason: `${methodSent.toUpperCase()} is never allowed` };
  if (methodSent === undefined || hostSent === undefined || uri === undefined) {
    const missing = [methodSent === undefined && 'X-Forwarded-Method', hostSent === undefined && 'X-Forwarded-Host', uri === undefined && 'X-Forwarded-Uri'].filter(Boolean);
    return { problem: 'invalid_request', reason: `the check lacks ${missing.join(', ')}` };
  }
  const method = methodSent.toUpperCase();
  if (!METHOD.test(method)) return { problem: 'invalid_request', reason: 'X-Forwarded-Method is not a method' };
  const host = hostSent.toLowerCase();
  if (host.length > MAX_HOST_LENGTH || !HOST.test(host)) return { problem: 'invalid_request', reason: 'X-Forwarded-Host is not a host name' };
  if (uri.length > MAX_URI_LENGTH || !URI.test(uri)) return { problem: 'invalid_request', reason: 'X-Forwarded-Uri is not an origin-form path' };
  const canonical = canonicalPath(uri);
  if (!canonical.ok) return { problem: 'invalid_request', reason: canonical.reason };
  if (canonical.path.length > MAX_PATH_LENGTH) return { problem: 'invalid_request', reason: `the path is longer than ${MAX_PATH_LENGTH} characters` };
  // `?_method=DELETE`: the method the app will run is the one judged (where a rule allows overrides at all).
  const override = methodOverrideOf(canonical.query);
  if (override !== undefined && 'problem' in override) return { problem: 'invalid_request', reason: override.problem };
  const destination = request.destination === undefined ? undefined : destinationPathOf(request.destination, host);
  if (destination !== undefined && 'problem' in destination) return { problem: 'invalid_request', reason: destination.problem };
  const { scheme, requestId, requestedWith } = request;
  return {
    method: override?.method ?? method,
    overriddenFrom: override === undefined ? undefined : method,
    destination: destination?.path,
    proto: scheme === 'https' ? 'https' : scheme === 'http' ? 'http' : config.publicUrl.protocol === 'https:' ? 'https' : 'http',
    host,
    uri: canonical.query === '' && !uri.includes('?') ? canonical.path : `${canonical.path}?${canonical.query}`,
    path: canonical.path,
    clientIp: request.clientAddress,
    requestId: isWellFormedRequestId(requestId) ? requestId : crypto.randomUUID(),
    wantsHtml: prefersHtml(request.accept),
    isXhr: requestedWith !== undefined && requestedWith.toLowerCase() === 'xmlhttprequest',
    corsPreflight: method === 'OPTIONS' && request.origin !== undefined && request.corsRequestMethod !== undefined,
  };
}

/** HAProxy's request id, when it is one idgate may log and forward as sent. */
export function isWellFormedRequestId(requestId: string | undefined): requestId is string {
  return requestId !== undefined && REQUEST_ID.test(requestId);
}

/** Accept puts text/html (or XHTML) at least as high as any other specific type: a browser navigating. */
export function prefersHtml(accept: string | undefined): boolean {
  if (!accept) return false;
  // A few browsers and clients send a few Accept values, over and over: each is read once (bounded).
  const known = acceptsRead.get(accept);
  if (known !== undefined) return known;
  const answer = readAccept(accept);
  if (accept.length <= 512) {
    if (acceptsRead.size >= 256) acceptsRead.clear();
    acceptsRead.set(accept, answer);
  }
  return answer;
}

const acceptsRead = new Map<string, boolean>();

function readAccept(accept: string): boolean {
  let html = 0;
  let other = 0;
  for (const part of accept.split(',')) {
    const [type = '', ...params] = part.split(';');
    const mediaType = type.trim().toLowerCase();
    let q = 1;
    for (const param of params) {
      const [k, v] = param.split('=');
      if (k?.trim() === 'q' && v !== undefined) q = Number.parseFloat(v) || 0;
    }
    if (mediaType === 'text/html' || mediaType === 'application/xhtml+xml') html = Math.max(html, q);
    else if (mediaType !== '*/*' && !mediaType.endsWith('/*') && !mediaType.startsWith('image/')) other = Math.max(other, q);
  }
  return html > 0 && html >= other;
}
