// Through real HAProxy in both transports against the echoing upstream: one spelling per path
// (a character sent raw or as an escape is one path, one decision, the same bytes for the app), and one
// route, one decision (a trailing slash or a .format suffix does not step around a rule). Requests
// are written byte-exact (raw-http), since fetch() would normalise the very spellings under test.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Stack } from '../../stack/stack.js';
import type { EchoedRequest } from '../../stack/upstream.js';
import { withSignedInStack } from '../support/signed-in-stack.js';
import { rawRequest } from '../support/raw-http.js';
import { canonicalPath } from '../../service/src/paths.js';

const PRINTABLE = Array.from({ length: 0x7f - 0x20 }, (_, i) => String.fromCharCode(0x20 + i));
/** No raw spelling inside a segment: a space ends the request target, `/` separates, `?` starts the query. */
const NO_RAW_SPELLING = [' ', '/', '?'];
const escapeOf = (ch: string) => `%${ch.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`;
const name = (ch: string) => `${JSON.stringify(ch)} (${escapeOf(ch)})`;

/** A rule per character: `/closed/a<c>b` is closed to everyone, so its 403 shows that rule matched. */
function closedPath(ch: string): string | undefined {
  const c = canonicalPath(`/closed/a${escapeOf(ch)}b`);
  return c.ok ? c.path : undefined;
}

function policyYaml(): string {
  const rules = PRINTABLE.filter((ch) => closedPath(ch) !== undefined).map(
    (ch) => `  - id: closed-${ch.charCodeAt(0).toString(16)}\n    path: ${JSON.stringify(closedPath(ch))}\n    case_sensitive: true\n    deny: true\n    description: closed-${ch.charCodeAt(0).toString(16)}\n`,
  );
  // The docs' reports rule (docs/policy.md), closed to bob (not an admin).
  const reports = '  - id: reports\n    path_regex: /reports/[0-9]+$\n    format_suffix: true\n    allow: {groups: [admins]}\n';
  return `version: 1\ndefault: deny\nrules:\n${rules.join('')}${reports}  - id: public\n    path: /public/\n    public: true\n  - id: signed-in\n    authenticated: true\n`;
}

interface Outcome {
  status: number;
  body: string;
  echo?: EchoedRequest;
}

let stack: Stack;
let bobCookie = '';
const policyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'idgate-spellings-'));

async function send(target: string, cookie?: string): Promise<Outcome> {
  const marker = crypto.randomUUID();
  const headers: [string, string][] = [['Accept', 'application/json'], ['X-Edge-Probe', marker]];
  if (cookie) headers.push(['Cookie', cookie]);
  const res = await rawRequest(stack.ports.front, 'GET', target, headers);
  let echo: EchoedRequest | undefined;
  try {
    const body = JSON.parse(res.body) as EchoedRequest;
    if (typeof body.server === 'string' && typeof body.path === 'string' && body.headers) echo = body;
  } catch {
    // not the upstream
  }
  if (echo && echo.headers['x-edge-probe'] !== marker) throw new Error(`echo of another request for ${target}: ${res.body}`);
  return { status: res.status, body: res.body, echo };
}

/** What a spelling got: the status, the rule's reason for bob's 403, and the bytes the app got. */
async function decisionFor(target: string, cookie?: string): Promise<{ status: number; closedBy?: string; appGot?: string }> {
  const o = await send(target, cookie);
  const closedBy = o.status === 403 ? /closed-[0-9a-f]+/.exec(o.body)?.[0] : undefined;
  return { status: o.status, ...(closedBy ? { closedBy } : {}), ...(o.echo ? { appGot: o.echo.path } : {}) };
}

describe.each(['lua', 'spoe'] as const)('one spelling per path, through HAProxy (%s)', (mode) => {
  withSignedInStack(['bob'] as const, () => {
    const policyFile = path.join(policyDir, `policy-${mode}.yaml`);
    fs.writeFileSync(policyFile, policyYaml());
    return { haproxyMode: mode, idgateEnv: { IDGATE_POLICY_FILE: policyFile } };
  }, (started) => {
    ({ stack, cookies: { bob: bobCookie } } = started);
  });

  test('bob is signed in, and a rule of the table closes its path to him', async () => {
    expect(await decisionFor('/some/page', bobCookie)).toMatchObject({ status: 200 });
    expect(await decisionFor('/closed/a$b', bobCookie)).toEqual({ status: 403, closedBy: 'closed-24' });
  });

  test.each(PRINTABLE.filter((ch) => !NO_RAW_SPELLING.includes(ch)).map((ch) => [name(ch), ch]))(
    '%s raw and escaped: the same decision for bob, and the same bytes for the app on a public path',
    async (_, ch) => {
      const [closedRaw, closedEscaped, publicRaw, publicEscaped] = await Promise.all([
        decisionFor(`/closed/a${ch}b`, bobCookie),
        decisionFor(`/closed/a${escapeOf(ch)}b`, bobCookie),
        decisionFor(`/public/a${ch}b`),
        decisionFor(`/public/a${escapeOf(ch)}b`),
      ]);
      expect({ ch, escaped: closedEscaped }).toEqual({ ch, escaped: closedRaw });
      expect({ ch, escaped: publicEscaped }).toEqual({ ch, escaped: publicRaw });
      // Either a rule written with the character decided, or the path has no single meaning (400) for both.
      const canonical = closedPath(ch);
      if (canonical === undefined) expect([closedRaw.status, publicRaw.status]).toEqual([400, 400]);
      else {
        expect(closedRaw).toEqual({ status: 403, closedBy: `closed-${ch.charCodeAt(0).toString(16)}` });
        expect(publicRaw).toEqual({ status: 200, appGot: `/public/a${canonical.slice('/closed/a'.length, -1)}b` });
      }
    },
  );

  test("/reports/12, /reports/12/ and /reports/12.json get the decision of the docs' reports rule; the app gets other paths as sent", async () => {
    const closed = await Promise.all(['/reports/12', '/reports/12/', '/reports/12.json', '/REPORTS/12.xml/', '/reports/%31%32/'].map(async (target) => {
      const o = await send(target, bobCookie);
      return { target, status: o.status, reason: o.status === 403 ? (JSON.parse(o.body) as { reason?: string }).reason : o.body.slice(0, 80) };
    }));
    expect(closed).toEqual(closed.map(({ target }) => ({ target, status: 403, reason: 'needs group admins' })));
    const open = await Promise.all(['/reports/12x/', '/reports/'].map(async (target) => ({ target, ...(await decisionFor(target, bobCookie)) })));
    expect(open).toEqual([
      { target: '/reports/12x/', status: 200, appGot: '/reports/12x/' },
      { target: '/reports/', status: 200, appGot: '/reports/' },
    ]);
  });

  test.each([
    ['a space', ' ', { status: 403, closedBy: 'closed-20' }, { status: 200, appGot: '/public/a%20b' }],
    ['a slash', '/', { status: 400 }, { status: 400 }],
    ['a question mark', '?', { status: 400 }, { status: 400 }],
  ])('%s, which has no raw spelling inside a segment: its escape is decided as one spelling or refused', async (_, ch, closed, pub) => {
    expect(await decisionFor(`/closed/a${escapeOf(ch)}b`, bobCookie)).toEqual(closed);
    expect(await decisionFor(`/public/a${escapeOf(ch)}b`)).toEqual(pub);
  });
});

afterAll(() => fs.rmSync(policyDir, { recursive: true, force: true }));
