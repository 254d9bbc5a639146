// The HTTP transport of the check: GET/HEAD /auth, asked by idgate.lua through HAProxy. The request's
// headers become one CheckInput under the forwarded-header trust rules, and the CheckOutcome goes back as
// the response (check-wire.ts lists each header). Plain node:http, no middleware: this is the hot path.
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { clientAddressOf, httpHeaderListOf } from '../check/check-wire.js';
import { refusedCheckInput, type Check, type CheckInput } from '../check/contract.js';
import type { Config } from '../config.js';
import { CHECK_SECRET_HEADER, createCheckSecretMatcher } from './check-secret.js';
import type { AddressMatcher } from '../net.js';

/** `check`: the one check the wiring built (the SPOE agent holds the same); `peers`: who may ask. */
export function createCheckHandler(check: Check, peers: Pick<Config, 'trustedProxies' | 'checkSecrets'>): (req: IncomingMessage, res: ServerResponse) => void {
  const trusted = peers.trustedProxies;
  const hasSecret = createCheckSecretMatcher(peers.checkSecrets);
  return (req, res) => {
    void check(checkInputFromHttp(req, trusted, hasSecret)).then((outcome) => {
      // Rendered as a [name, value, ...] list: an allow's identity headers come prerendered (check-wire.ts).
      res.writeHead(outcome.status, httpHeaderListOf(outcome));
      res.end(req.method === 'HEAD' ? undefined : outcome.body);
    });
  };
}

/**
 * What HAProxy asks about, from the headers it sets (X-Forwarded-Method, -Proto, -Host, -Uri, -For,
 * X-Request-Id) and the client's own (Cookie, Authorization, DPoP, Accept, X-Requested-With): check-wire.ts
 * INPUT_FIELDS. X-Forwarded-* are believed only from a trusted proxy (IDGATE_TRUSTED_PROXIES) that sends
 * HAProxy's check secret (X-Idgate-Check-Secret, one of IDGATE_CHECK_SECRETS): from any other peer
 * nothing is read at all, and the check refuses the request. `hasSecret` default: no secret needed.
 */
export function checkInputFromHttp(req: IncomingMessage, trusted: AddressMatcher, hasSecret: (presented: unknown) => boolean = () => true): CheckInput {
  const peer = req.socket.remoteAddress;
  if (!trusted(peer)) return refusedCheckInput(peer, undefined);
  if (!hasSecret(req.headers[CHECK_SECRET_HEADER])) return refusedCheckInput(peer, 'secret');
  const h = req.headers;
  return {
    fromTrustedProxy: true,
    peer,
    method: one(h['x-forwarded-method']),
    scheme: one(h['x-forwarded-proto']),
    host: one(h['x-forwarded-host']),
    pathq: one(h['x-forwarded-uri']),
    // The last X-Forwarded-For entry: the one the nearest trusted proxy (HAProxy) added.
    clientAddress: clientAddressOf(one(h['x-forwarded-for']), peer),
    requestId: one(h['x-request-id']),
    cookie: h.cookie,
    authorization: h.authorization,
    dpop: one(h.dpop),
    accept: one(h.accept),
    requestedWith: one(h['x-requested-with']),
    origin: one(h.origin),
    corsRequestMethod: one(h['access-control-request-method']),
    destination: one(h.destination),
  };
}

/** A header repeated on the wire, as one value (node joins most repeats itself; a list is joined the same way). */
function one(value: IncomingHttpHeaders[string]): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}
