// The docs quote the source: the settings reference of docs/configuration.md is generated from SETTINGS,
// and docs/troubleshooting.md quotes idgate's messages word for word. These tests keep both true.
import fs from 'node:fs';
import path from 'node:path';
import { SETTINGS } from '../../service/src/config/settings.js';
import { REFERENCE_BEGIN, REFERENCE_END, settingsByConcern, settingsReference, withReference } from '../../service/src/settings-doc.js';

const root = path.resolve(import.meta.dirname, '../..');
const read = (file: string) => fs.readFileSync(path.join(root, file), 'utf8');

describe('docs/configuration.md', () => {
  const file = 'docs/configuration.md';
  const regenerate = 'IDGATE_WRITE_DOCS=1 NODE_OPTIONS=--experimental-vm-modules npx jest test/unit/docs-match-source.test.ts';

  test('its settings reference is exactly what SETTINGS generates', () => {
    const doc = read(file);
    const expected = withReference(doc);
    if (expected !== doc && process.env.IDGATE_WRITE_DOCS === '1') {
      fs.writeFileSync(path.join(root, file), expected);
      return;
    }
    if (expected !== doc) {
      throw new Error(`${file} differs from the settings table (service/src/config/settings.ts SETTINGS). Regenerate its reference with:\n  ${regenerate}\nthen review and commit the file.`);
    }
  });

  test('every setting is in one concern and in the reference once', () => {
    const groups = settingsByConcern();
    expect(groups.flatMap((g) => g.settings.map((s) => s.env)).sort()).toEqual(SETTINGS.map((s) => s.env).sort());
    for (const g of groups) expect(g.settings.length).toBeGreaterThan(0);
    const reference = settingsReference();
    for (const s of SETTINGS) expect(reference.split(`| \`${s.env}\` |`).length).toBe(2);
    expect(reference.startsWith(REFERENCE_BEGIN) && reference.endsWith(REFERENCE_END)).toBe(true);
  });

  test('a setting that belongs to no concern is named', () => {
    const stray = { ...SETTINGS[0]!, env: 'IDGATE_SOMETHING_NEW' };
    expect(() => settingsByConcern([...SETTINGS, stray])).toThrow('IDGATE_SOMETHING_NEW belongs to no concern');
  });

  test('the reference writes defaults, required settings and escapes as Markdown needs', () => {
    const reference = settingsReference();
    expect(reference).toContain('| `IDGATE_ISSUER` | `issuer` | URL | **required** |');
    expect(reference).toContain('| `IDGATE_LISTEN` | `listen` | host:port | `127.0.0.1:4180` |');
    expect(reference).toContain('| `IDGATE_SESSION_CACHE_MS` | `session_cache_ms` | whole number, 0 or more | `5000` |');
    // Outside code spans, no raw tag and no emphasis opener.
    expect(reference).toContain('&lt;public_url&gt;/\\_auth/callback');
    expect(reference).toContain('(or \\*.domain)');
  });
});

describe('docs/troubleshooting.md', () => {
  const doc = read('docs/troubleshooting.md');
  // Every line of idgate's own source that a message could come from (messages are single-line literals).
  const sourceDir = path.join(root, 'service/src');
  const sourceLines = fs.readdirSync(sourceDir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts')).flatMap((f) => fs.readFileSync(path.join(sourceDir, f), 'utf8').split('\n'));
  // **Message** (where it appears): `the message`, with … for the part that varies.
  const messages = [...doc.matchAll(/\*\*Message\*\*(?: \([^)\n]*\))?: `([^`\n]+)`/g)].map((m) => m[1]!);
  const pattern = (message: string) => new RegExp(message.split('…').map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*?'));

  test('holds ten numbered problems, each quoting at least one message', () => {
    const sections = doc.split(/^## /m).slice(1);
    const numbered = sections.filter((s) => /^\d+\. /.test(s));
    expect(numbered.map((s) => Number(s.split('.')[0]))).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    for (const section of numbered) expect(section).toMatch(/\*\*Message\*\*(?: \([^)\n]*\))?: `/);
  });

  test.each(messages.map((m) => [m]))('"%s" is still what idgate says (service/src)', (message) => {
    const re = pattern(message);
    const found = sourceLines.some((line) => re.test(line));
    if (!found) throw new Error(`docs/troubleshooting.md quotes "${message}", which no line of service/src/**/*.ts says any more: quote the new message (and check the cause and fix still hold)`);
  });

  test('a message that idgate does not say is caught', () => {
    expect(sourceLines.some((line) => pattern('the token is for … another galaxy').test(line))).toBe(false);
  });
});
