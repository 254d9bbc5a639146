// What each recorded Okta event hook delivery (test/fixtures/okta-events) means for idgate: whose sessions
// end and why, or why it is left alone. The route's I/O is covered end to end by okta-logout.test.ts.
import fs from 'node:fs';
import path from 'node:path';
import { isHookSecret, judgeEvent } from '../../service/src/browser/okta-events.js';

const fixtures = path.resolve(import.meta.dirname, '../fixtures/okta-events');
const IDGATE_APP = '0oa1idgate00000000x7';
const jane = { id: '00ub0oNGTSWTBKOLGLNR', login: 'jane.doe@example.com' };

function eventOf(file: string): Record<string, unknown> {
  const delivery = JSON.parse(fs.readFileSync(path.join(fixtures, file), 'utf8')) as { eventType: string; data: { events: Record<string, unknown>[] } };
  expect(delivery.eventType).toBe('com.okta.event_hook');
  return delivery.data.events[0]!;
}

test.each([
  ['user-lifecycle-deactivate.json', 'user.lifecycle.deactivate', 'the user was deactivated at Okta'],
  ['user-lifecycle-suspend.json', 'user.lifecycle.suspend', 'the user was suspended at Okta'],
  ['user-session-end.json', 'user.session.end', 'the user signed out of Okta'],
  ['user-account-reset-password.json', 'user.account.reset_password', "the user's password was reset at Okta"],
  ['user-account-update-password.json', 'user.account.update_password', "the user's password was changed at Okta"],
  ['application-user-membership-remove.json', 'application.user_membership.remove', 'the user was unassigned from the app at Okta'],
])('%s ends the sessions of the user it names (never the admin who acted)', (file, eventType, reason) => {
  const event = eventOf(file);
  expect(judgeEvent(event, IDGATE_APP)).toEqual({ action: 'end_sessions', eventType, eventId: event.uuid, reason, users: [jane] });
});

test.each([
  ['application-user-membership-remove-other-app.json', 'another app'],
  ['user-lifecycle-activate.json', 'not an event that ends sessions'],
])('%s is left alone (%s)', (file, why) => {
  expect(judgeEvent(eventOf(file), IDGATE_APP)).toMatchObject({ action: 'ignore', why });
});

test('a failed event (a wrong old password) ends nothing', () => {
  const event = { ...eventOf('user-account-update-password.json'), outcome: { result: 'FAILURE', reason: 'INVALID_CREDENTIALS' } };
  expect(judgeEvent(event, IDGATE_APP)).toMatchObject({ action: 'ignore', why: 'outcome FAILURE' });
});

test.each([
  ['no target and no user actor', { eventType: 'user.lifecycle.deactivate', uuid: 'u1', target: null, actor: { type: 'SystemPrincipal', id: 'system' } }],
  ['targets that are not users', { eventType: 'user.lifecycle.suspend', uuid: 'u2', target: [{ type: 'Group', id: '00g1' }] }],
  ['a user target without id or login', { eventType: 'user.lifecycle.suspend', uuid: 'u3', target: [{ type: 'User' }] }],
  ['not an object', 'user.lifecycle.deactivate'],
])('an event with %s ends nothing', (_name, event) => {
  expect(judgeEvent(event, IDGATE_APP).action).toBe('ignore');
});

test.each([
  ['the secret itself', 'the-configured-secret-value-123', true],
  ['another value of the same length', 'the-configured-secret-value-124', false],
  ['a prefix', 'the-configured-secret', false],
  ['nothing', undefined, false],
  ['an empty header', '', false],
])('the Authorization header %s is %s the hook secret', (_name, header, expected) => {
  expect(isHookSecret(header, 'the-configured-secret-value-123')).toBe(expected);
});
