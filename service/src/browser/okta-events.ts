// Okta event hooks: Okta posts System Log events to `POST /_auth/okta-events`, and idgate ends every
// session of the user an event names when that user is deactivated, suspended, signed out, has their
// password reset or changed, or is unassigned from idgate's app. Okta has no OIDC back-channel logout; this
// is how a change made at Okta (by an admin, by the user elsewhere) reaches sessions idgate already holds.
//
// Okta sends, as configured on the hook, a fixed Authorization header value: IDGATE_OKTA_EVENT_HOOK_SECRET,
// compared in constant time. Without that setting the route does not exist. When the hook is created,
// Okta verifies the endpoint once: a GET with `x-okta-verification-challenge`, answered {"verification": …}.
//
// A delivery (Okta's documented event hook payload):
//   { "eventType": "com.okta.event_hook", "eventId": …, "data": { "events": [
//       { "uuid": …, "eventType": "user.lifecycle.deactivate", "outcome": { "result": "SUCCESS" },
//         "actor": { "type": "User", … }, "target": [ { "type": "User", "id": "00u…", "alternateId": "jane@example.com" }, … ] } ] } }
// The user's Okta id is the `sub` of their ID tokens, its alternateId their login (idgate's user name):
// sessions are found in the session indexes by either.
import crypto from 'node:crypto';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Logger } from '../audit.js';
import type { Config } from '../config.js';
import { describeError, isIdgateError, sendError } from '../errors.js';
import { OKTA_EVENT_BODY_LIMIT } from '../limits.js';
import type { Metrics } from '../metrics.js';
import type { SessionRef, SessionStore } from '../session/session-store.js';

export interface OktaEventDependencies {
  readonly config: Config;
  readonly sessions: SessionStore;
  readonly logger: Logger;
  readonly metrics: Metrics;
}

/** The Okta event types that end a user's sessions, and why (the audit line's `reason`). */
export const SESSION_ENDING_EVENTS: ReadonlyMap<string, string> = new Map([
  ['user.lifecycle.deactivate', 'the user was deactivated at Okta'],
  ['user.lifecycle.suspend', 'the user was suspended at Okta'],
  ['user.session.end', 'the user signed out of Okta'],
  ['user.account.reset_password', 'the user\'s password was reset at Okta'],
  ['user.account.update_password', 'the user\'s password was changed at Okta'],
  ['application.user_membership.remove', 'the user was unassigned from the app at Okta'],
]);

/** Events one delivery is read for at most (Okta batches up to 50). */
const MAX_EVENTS = 100;
/** Longest Okta id, login or event id looked at. */
const MAX_FIELD_LENGTH = 256;

/** An Okta user an event names: its id (the `sub` of its ID tokens) and its login. */
export interface OktaUser {
  readonly id: string | undefined;
  readonly login: string | undefined;
}

/** What a delivered event means for idgate: the users whose sessions end, or why it is left alone. */
export type EventVerdict =
  | { readonly action: 'end_sessions'; readonly eventType: string; readonly eventId: string | undefined; readonly reason: string; readonly users: readonly OktaUser[] }
  | { readonly action: 'ignore'; readonly eventType: string | undefined; readonly eventId: string | undefined; readonly why: string };

/** The verdict on one event of a delivery (pure: the route does the I/O). `clientId` is idgate's app at Okta. */
export function judgeEvent(event: unknown, clientId: string): EventVerdict {
  const e = (typeof event === 'object' && event !== null ? event : {}) as Record<string, unknown>;
  const eventType = shortString(e.eventType);
  const eventId = shortString(e.uuid);
  const reason = eventType === undefined ? undefined : SESSION_ENDING_EVENTS.get(eventType);
  if (eventType === undefined || reason === undefined) return { action: 'ignore', eventType, eventId, why: 'not an event that ends sessions' };
  const outcome = (e.outcome as { result?: unknown } | undefined)?.result;
  if (outcome !== undefined && outcome !== 'SUCCESS') return { action: 'ignore', eventType, eventId, why: `outcome ${String(outcome).slice(0, 32)}` };
  const targets = Array.isArray(e.target) ? (e.target as unknown[]).filter((t): t is Record<string, unknown> => typeof t === 'object' && t !== null) : [];
  // An unassignment from another app of the org is none of idgate's business: Okta names the app by its
  // instance id, which for an OIDC app is its client id.
  if (eventType === 'application.user_membership.remove') {
    const apps = targets.filter((t) => t.type === 'AppInstance');
    if (apps.length > 0 && !apps.some((t) => t.id === clientId)) return { action: 'ignore', eventType, eventId, why: 'another app' };
  }
  let users = targets.filter((t) => t.type === 'User').map(oktaUser);
  // Signing out of Okta is the user's own act: Okta may name them as the actor only.
  const actor = e.actor as Record<string, unknown> | undefined;
  if (users.length === 0 && eventType === 'user.session.end' && actor?.type === 'User') users = [oktaUser(actor)];
  users = users.filter((u) => u.id !== undefined || u.login !== undefined);
  if (users.length === 0) return { action: 'ignore', eventType, eventId, why: 'names no user' };
  return { action: 'end_sessions', eventType, eventId, reason, users };
}

function oktaUser(entry: Record<string, unknown>): OktaUser {
  return { id: shortString(entry.id), login: shortString(entry.alternateId) };
}

function shortString(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' && value.length <= MAX_FIELD_LENGTH ? value : undefined;
}

/** The Authorization header is the configured secret: compared as SHA-256 digests, in constant time whatever the lengths. */
export function isHookSecret(header: string | undefined, secret: string): boolean {
  if (header === undefined) return false;
  const digest = (value: string) => crypto.hash('sha256', value, 'buffer');
  return crypto.timingSafeEqual(digest(header), digest(secret));
}

/** The routes, for a configured secret; main wiring mounts them only then. */
export function createOktaEventRoutes(deps: OktaEventDependencies, secret: string): express.Router {
  const { config, logger, metrics } = deps;
  const router = express.Router();

  // Before the body is read: an unauthenticated caller costs no parsing.
  const authenticate = (req: Request, res: Response, next: NextFunction) => {
    res.set('Cache-Control', 'no-store');
    if (isHookSecret(req.headers.authorization, secret)) return next();
    metrics.recordEvent('okta_event_rejected');
    logger.log('warn', 'Okta event hook request refused: wrong or missing Authorization header (IDGATE_OKTA_EVENT_HOOK_SECRET)', { client_ip: req.ip, method: req.method });
    sendError(res, 'no_credentials', "the event hook's Authorization header is missing or wrong");
  };

  router.get('/okta-events', authenticate, (req, res) => {
    const challenge = req.headers['x-okta-verification-challenge'];
    if (typeof challenge !== 'string' || challenge === '' || challenge.length > MAX_FIELD_LENGTH) {
      sendError(res, 'invalid_request', 'x-okta-verification-challenge is required');
      return;
    }
    logger.log('info', 'Okta event hook verified');
    res.json({ verification: challenge });
  });

  router.post('/okta-events', authenticate, express.json({ limit: OKTA_EVENT_BODY_LIMIT, type: ['application/json', 'application/*+json'] }), async (req, res) => {
    const events = (req.body as { data?: { events?: unknown } } | undefined)?.data?.events;
    if (!Array.isArray(events)) {
      metrics.recordEvent('okta_event_rejected');
      sendError(res, 'invalid_request', 'data.events must be a list');
      return;
    }
    for (const event of events.slice(0, MAX_EVENTS)) {
      const verdict = judgeEvent(event, config.clientId);
      if (verdict.action === 'ignore') {
        if (verdict.eventType !== undefined && SESSION_ENDING_EVENTS.has(verdict.eventType)) {
          logger.event('okta_event_ignored', { event_type: verdict.eventType, event_id: verdict.eventId, why: verdict.why });
        }
        continue;
      }
      for (const user of verdict.users) {
        const revoked = await deps.sessions.revoke(await sessionsOf(deps.sessions, user));
        metrics.recordRevoked(revoked);
        metrics.recordEvent('okta_event');
        // One audit line per event and user: why (the event type, its id), whom, how many sessions.
        logger.event('okta_event', { event_type: verdict.eventType, event_id: verdict.eventId, reason: verdict.reason, sub: user.id, user: user.login, sessions_revoked: revoked });
      }
    }
    // Okta waits 3 s for a 2xx and retries once otherwise: revoking twice is harmless.
    res.status(200).end();
  });

  router.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const status = (err as { status?: unknown }).status;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      // A body express could not read (not JSON, too large): the sender's problem.
      metrics.recordEvent('okta_event_rejected');
      sendError(res, 'invalid_request', status === 413 ? 'the body is too large' : 'the body is not JSON idgate can read', { status });
      return;
    }
    logger.log('error', 'Okta event hook delivery failed; Okta retries it once', { path: req.path, error_code: isIdgateError(err) ? err.code : 'internal_error', error: describeError(err) });
    sendError(res, 'internal_error', 'idgate cannot end sessions right now');
  });

  return router;
}

/** Every session of an Okta user: by its id (the subject) and by its login (the user name), once each. */
async function sessionsOf(sessions: SessionStore, user: OktaUser): Promise<SessionRef[]> {
  const found = [...(user.id ? await sessions.list({ subject: user.id }) : []), ...(user.login ? await sessions.list({ user: user.login }) : [])];
  const byHash = new Map(found.map((s) => [s.hash, { hash: s.hash, subject: s.subject }]));
  return [...byHash.values()];
}
