import { identityFromClaims, readClaim, stringList } from '../../service/src/policy/claims.js';

const names = { groupsClaim: 'groups', rolesClaim: 'realm_access.roles', primaryIssuer: 'i', trustUnverifiedEmail: false };

describe('claims', () => {
  test.each([
    ['a list', ['a', 'b'], ['a', 'b']],
    ['a single string', 'admins', ['admins']],
    ['an empty string', '', []],
    ['a number', 42, []],
    ['an object', { admins: true }, []],
    ['null', null, []],
    ['a list with other types mixed in', ['a', 1, null, { x: 1 }, '', 'b'], ['a', 'b']],
  ])('groups given as %s are read safely', (_name, value, expected) => {
    expect(stringList(value)).toEqual(expected);
    expect(identityFromClaims({ sub: 's', groups: value }, 'session', names, 'i')!.groups).toEqual(expected);
  });

  test('nested claims are read by dotted path; an exact claim name with dots wins', () => {
    expect(readClaim({ realm_access: { roles: ['r1'] } }, 'realm_access.roles')).toEqual(['r1']);
    expect(readClaim({ 'https://example.com/roles': ['x'] }, 'https://example.com/roles')).toEqual(['x']);
    expect(readClaim({ realm_access: 'nope' }, 'realm_access.roles')).toBeUndefined();
    expect(readClaim({ realm_access: ['roles'] }, 'realm_access.0')).toBeUndefined();
    expect(readClaim({}, 'constructor.name')).toBeUndefined();
  });

  test('a token identity maps Okta claims; a session identity prefers preferred_username', () => {
    expect(identityFromClaims({ sub: 'alice@example.com', uid: '00u1', cid: '0oa1', scp: ['a', 'b'], realm_access: { roles: ['r'] } }, 'token', names, 'i')).toMatchObject({
      subject: '00u1',
      user: 'alice@example.com',
      clientId: '0oa1',
      scopes: ['a', 'b'],
      roles: ['r'],
    });
    expect(identityFromClaims({ sub: 'x', scope: 'read write' }, 'token', names, 'i')!.scopes).toEqual(['read', 'write']);
    // Entra ID's form: scp as one space-separated string.
    expect(identityFromClaims({ sub: 'x', scp: 'Reports.Read  User.Read' }, 'token', names, 'i')!.scopes).toEqual(['Reports.Read', 'User.Read']);
    expect(identityFromClaims({ sub: '00u1', preferred_username: 'alice', email: 'a@x' }, 'session', names, 'i')!.user).toBe('alice');
    expect(identityFromClaims({ client_id: 'svc' }, 'token', names, 'i')).toMatchObject({ subject: 'svc', clientId: 'svc' });
    expect(identityFromClaims({ groups: ['x'] }, 'session', names, 'i')).toBeUndefined();
  });

  test.each([
    ['with email_verified true is kept', { email_verified: true }, false, 'a@example.com'],
    ['with email_verified "true" (a string, as some IdPs send it) is kept', { email_verified: 'true' }, false, 'a@example.com'],
    ['with email_verified false is left out', { email_verified: false }, false, undefined],
    ['without email_verified is left out', {}, false, undefined],
    ['without email_verified, from an issuer trusted without it, is kept', {}, true, 'a@example.com'],
    ['with email_verified false, from an issuer trusted without it, is kept', { email_verified: false }, true, 'a@example.com'],
  ])('an email %s', (_name, claims, trustUnverifiedEmail, expected) => {
    for (const via of ['session', 'token'] as const) {
      const identity = identityFromClaims({ sub: 's', email: 'a@example.com', ...claims }, via, { ...names, trustUnverifiedEmail }, 'i')!;
      expect(identity.email).toBe(expected);
    }
  });

  test('an unverified email is not the user name of a session either', () => {
    expect(identityFromClaims({ sub: '00u1', email: 'boss@example.com' }, 'session', names, 'i')!.user).toBe('00u1');
    expect(identityFromClaims({ sub: '00u1', email: 'boss@example.com', email_verified: true }, 'session', names, 'i')!.user).toBe('boss@example.com');
  });

  test('an identity is from the primary issuer only when its issuer is exactly IDGATE_ISSUER', () => {
    const reading = { ...names, primaryIssuer: 'https://login.example.com/oauth2/default' };
    expect(identityFromClaims({ sub: 's' }, 'token', reading, 'https://login.example.com/oauth2/default')!.fromPrimaryIssuer).toBe(true);
    expect(identityFromClaims({ sub: 's' }, 'token', reading, 'https://login.example.com/oauth2/default/')!.fromPrimaryIssuer).toBe(false);
    expect(identityFromClaims({ sub: 's' }, 'token', reading, 'https://partner.example.com')!.fromPrimaryIssuer).toBe(false);
  });
});
