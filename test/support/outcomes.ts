// Check outcomes for tests that script the check (the SPOE agent's and HAProxy's side of the boundary).
import { checkOutcome, type CheckOutcome, type OutcomeDetails, type WireIdentity } from '../../service/src/check/contract.js';

/** An identity as it travels, with only the given values. */
export function wireIdentity(values: Partial<WireIdentity> & Pick<WireIdentity, 'user'>): WireIdentity {
  return { subject: undefined, issuer: undefined, email: undefined, groups: undefined, groupsTruncated: false, scopes: undefined, scopesTruncated: false, client: undefined, backend: undefined, ...values };
}

/** An allow forwarding `path`, for the given identity. */
export function allowOutcome(path: string | undefined, identity: WireIdentity, details: OutcomeDetails = {}): CheckOutcome {
  return checkOutcome('allow', 200, 'authenticated', { identity, requestId: 'r', path, ...details });
}

/** An answer with a JSON body `{"error","reason"}`, as the check writes them. */
export function jsonOutcome(kind: CheckOutcome['kind'], status: number, error: string, reason: string, details: OutcomeDetails = {}): CheckOutcome {
  return checkOutcome(kind, status, reason, { error, contentType: 'application/json', body: JSON.stringify({ error, reason }), ...details });
}
