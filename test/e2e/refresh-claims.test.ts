// Renewal as Okta answers it, against the real stack (HAProxy, idgate, Redis, the local IdP issuing
// 4-second access tokens): a refresh asks for the scopes granted at login, `openid` among them, so the
// IdP sends a new ID token and idgate reads the user's groups anew. Run against the demo IdP (oidc-provider,
// which sends an ID token on every refresh) and an Okta-like one (an ID token only when `openid` is asked).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startStack, type Stack } from '../../stack/stack.js';
import { Browser, signIn } from '../support/browser.js';
import { alice } from '../support/identities.js';

const TOKEN_TTL_S = 4;

describe('per IdP profile', () => {
  describe.each([
    ['the demo IdP', 'always'],
    ['an Okta-like IdP (an ID token only when openid is asked)', 'when-openid-asked'],
  ])('with %s', (_name, idTokenOnRefresh) => {
    let stack: Stack;
    let dir: string;
    let groupsFile: string;

    beforeAll(async () => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'idgate-refresh-claims-'));
      groupsFile = path.join(dir, 'groups.json');
      stack = await startStack({
        spoeAgent: false,
        idgateClock: 'test',
        idpEnv: { IDP_ACCESS_TOKEN_TTL: String(TOKEN_TTL_S), IDP_ID_TOKEN_ON_REFRESH: idTokenOnRefresh, IDP_GROUPS_FILE: groupsFile },
      });
    }, 60_000);

    afterAll(async () => {
      await stack?.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    });

    test('groups changed at the IdP reach the session at its next renewal', async () => {
      const browser = new Browser();
      await signIn(browser, `${stack.frontUrl}/`, alice.user);
      const groups = async () => ((await (await browser.fetch(`${stack.frontUrl}/_auth/userinfo`)).json()) as { groups: string[] }).groups;
      expect(await groups()).toEqual(alice.groups);
      fs.writeFileSync(groupsFile, JSON.stringify({ [alice.user]: ['engineering', 'new-team'] }));
      // Due for renewal at half the tokens' lifetime, on idgate's clock (the IdP keeps the machine's).
      await stack.advanceIdgateClock((TOKEN_TTL_S / 2) * 1000 + 300);
      const res = await browser.fetch(`${stack.frontUrl}/after-renewal`);
      expect(res.status).toBe(200);
      expect(res.headers.getSetCookie().some((c) => c.startsWith('_idgate='))).toBe(true);
      expect(await groups()).toEqual(['engineering', 'new-team']);
    });
  });
});
