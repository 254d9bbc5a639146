// canonicalPath (service/src/paths.ts): the one path idgate decides on and HAProxy forwards. Examples
// from the design, then properties over paths made of the tokens attacks are made of: refusals are
// refusals, a canonical path is a fixed point with nothing left for an app server to read differently,
// and every common app-server reading of it falls under the same demo-policy rule.
import fc from 'fast-check';
import { canonicalPath } from '../../service/src/paths.js';
import { matchRule } from '../../service/src/policy/policy.js';
import { parsePolicy } from '../../service/src/policy/policy-file.js';
import { demoRule, hostilePath, readings, referenceCanonical } from '../support/path-oracle.js';

const RUNS = 3000;

/** What is left in a canonical path that some app server would read as something else. */
function ambiguities(path: string): string[] {
  const found: string[] = [];
  if (!path.startsWith('/')) found.push('does not start with /');
  if (/[^\x21-\x7e]/.test(path)) found.push('a raw control, space or non-ASCII character');
  for (const ch of [';', '\\', '#', '?']) if (path.includes(ch)) found.push(`a raw ${ch}`);
  if (path.includes('//')) found.push('an empty segment (//)');
  const forbidden = /%(2F|5C|25|3B|3F|23|[01][0-9A-F]|7F)/i.exec(path);
  if (forbidden) found.push(`encoded ${forbidden[0]}`);
  if (/%(?![0-9A-F]{2})/.test(path)) found.push('an escape that is malformed or not upper-case hex');
  const unreserved = /%(2D|2E|3[0-9]|4[1-9A-F]|5[0-9A]|5F|6[1-9A-F]|7[0-9A]|7E)/.exec(path);
  if (unreserved) found.push(`an escaped unreserved character ${unreserved[0]}`);
  const subDelim = /%(21|24|2[6-9A-C]|3D|3A|40)/.exec(path);
  if (subDelim) found.push(`a second spelling of a character that stands raw in a path: ${subDelim[0]}`);
  const unescaped = /[ "<>[\]^`{|}]/.exec(path);
  if (unescaped) found.push(`a raw ${unescaped[0]}, which a path spells as an escape`);
  for (const segment of path.split('/').slice(1)) {
    if (segment === '.' || segment === '..') found.push(`a dot segment ${segment}`);
    else if (/(\.|%20)$/.test(segment)) found.push(`a segment ending with a dot or a space: ${segment}`);
  }
  return found;
}

describe('canonicalPath, examples from the design', () => {
  test.each([
    ['/public/x', '/public/x', ''],
    ['/public/x?a=%2F&b=..;', '/public/x', 'a=%2F&b=..;'],
    ['/', '/', ''],
    ['/public/../admin/', '/admin/', ''],
    ['/public/%2e%2e/admin/', '/admin/', ''],
    ['/public/.%2E/admin', '/admin', ''],
    ['/public/./x/', '/public/x/', ''],
    ['/public/x/..', '/public/', ''],
    ['//admin//x', '/admin/x', ''],
    ['/%70ublic/%7Ex', '/public/~x', ''],
    ['/public/%c3%a9', '/public/%C3%A9', ''],
    ['/public/%3a', '/public/:', ''],
    ['/odata/%24batch', '/odata/$batch', ''],
    ['/v1/orders/42%3Arefund', '/v1/orders/42:refund', ''],
    ['/users/%40me/', '/users/@me/', ''],
    ['/%21%26%27%28%29%2A%2B%2C%3D', "/!&'()*+,=", ''],
    ['/a"b{c}', '/a%22b%7Bc%7D', ''],
    ['/a%5b%5D', '/a%5B%5D', ''],
    ['/ADMIN/', '/ADMIN/', ''],
  ])('%s is forwarded as %s (query %j)', (uri, path, query) => {
    expect(canonicalPath(uri)).toEqual({ ok: true, path, query });
  });

  test.each([
    ['raw backslash', '/public/..\\admin/'],
    ['raw ;', '/public/..;/admin/secret'],
    ['raw ;', '/admin;x/secret'],
    ['raw #', '/public/x#y'],
    ['encoded /', '/public/..%2fadmin/'],
    ['encoded /', '/admin%2Fx'],
    ['encoded \\', '/public/..%5Cadmin/'],
    ['encoded %', '/public/%252e%252e/admin/'],
    ['encoded ;', '/public/..%3b/admin/'],
    ['encoded ?', '/public/%3F/../../admin/'],
    ['encoded #', '/public/%23'],
    ['encoded NUL', '/public/%00/../admin'],
    ['encoded CR LF', '/public/%0d%0a'],
    ['encoded tab', '/admin%09/'],
    ['encoded DEL', '/public/%7f'],
    ['malformed escape', '/public/%'],
    ['malformed escape', '/public/%4'],
    ['malformed escape', '/public/%zz'],
    ['malformed escape', '/public/..%u002fadmin/'],
    ['overlong UTF-8', '/public/..%C0%AFadmin/'],
    ['overlong UTF-8', '/public/%c0%ae%c0%ae/admin/'],
    ['truncated UTF-8', '/public/%C3'],
    ['fullwidth solidus', '/public/..%EF%BC%8Fadmin/'],
    ['fullwidth full stops', '/public/%EF%BC%8E%EF%BC%8E/admin/'],
    ['a look-alike of an ASCII letter (fullwidth a; proposed beyond the design note)', '/%EF%BD%81dmin/'],
    ['a look-alike of an ASCII letter (dotless i; proposed beyond the design note)', '/adm%C4%B1n/'],
    ['.. above the root', '/../admin/'],
    ['.. above the root', '/public/../../admin/'],
    ['.. above the root', '/%2e%2e'],
    ['a segment ending with a dot', '/admin./'],
    ['a segment ending with dots', '/admin...'],
    ['a segment ending with a space', '/admin%20/'],
    ['a segment ending with a dot and a space', '/admin.%20/'],
  ])('%s is refused: %s', (_, uri) => {
    const result = canonicalPath(uri);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toEqual(expect.any(String));
  });
});

describe('canonicalPath, properties over hostile paths', () => {
  test('a refusal has a reason; an accepted path is a fixed point with nothing ambiguous left, and its query is passed through', () => {
    fc.assert(
      fc.property(hostilePath, (uri) => {
        const result = canonicalPath(uri);
        if (!result.ok) {
          expect(result.reason).toMatch(/\S/);
          return;
        }
        const q = uri.indexOf('?');
        expect(result.query).toBe(q < 0 ? '' : uri.slice(q + 1));
        expect({ uri, path: result.path, ambiguities: ambiguities(result.path) }).toEqual({ uri, path: result.path, ambiguities: [] });
        expect(canonicalPath(result.path)).toEqual({ ok: true, path: result.path, query: '' });
      }),
      { numRuns: RUNS },
    );
  });

  test('every app-server reading of a canonical path falls under the same demo-policy rule', () => {
    fc.assert(
      fc.property(hostilePath, (uri) => {
        const result = canonicalPath(uri);
        if (!result.ok) return;
        const rule = demoRule(result.path);
        const elsewhere = readings(result.path)
          .filter((r) => demoRule(r.path) !== rule)
          .map((r) => `${r.name} reads ${r.path} (rule ${demoRule(r.path)})`);
        expect({ uri, canonical: result.path, rule, elsewhere }).toEqual({ uri, canonical: result.path, rule, elsewhere: [] });
      }),
      { numRuns: RUNS },
    );
  });

  test('it refuses and normalises as the design says (an independent reading of the design)', () => {
    fc.assert(
      fc.property(hostilePath, (uri) => {
        const reference = referenceCanonical(uri);
        const result = canonicalPath(uri);
        const summary = (r: typeof result) => (r.ok ? { ok: true, path: r.path, query: r.query } : { ok: false });
        expect({ uri, ...summary(result) }).toEqual({ uri, ...summary(reference) });
      }),
      { numRuns: RUNS },
    );
  });
});

// One spelling per path. Every printable ASCII character that can stand inside a segment gets
// the same canonical path, and so the same rule, whether it came raw or as an escape (either hex case).
const PRINTABLE = Array.from({ length: 0x7f - 0x20 }, (_, i) => String.fromCharCode(0x20 + i));
/** No raw spelling inside a segment: a space ends the request target, `/` separates, `?` starts the query. */
const NO_RAW_SPELLING = [' ', '/', '?'];
const escape = (ch: string, lower = false) => {
  const hex = ch.charCodeAt(0).toString(16).padStart(2, '0');
  return `%${lower ? hex : hex.toUpperCase()}`;
};
const summary = (r: ReturnType<typeof canonicalPath>) => (r.ok ? { ok: true, path: r.path } : { ok: false });

describe('canonicalPath, one spelling per path', () => {
  test.each(PRINTABLE.filter((c) => !NO_RAW_SPELLING.includes(c)).map((c) => [JSON.stringify(c), c]))('%s raw and escaped (both hex cases) give the same canonical path or the same refusal', (_, ch) => {
    for (const at of [(s: string) => `/odata/a${s}b`, (s: string) => `/odata/${s}batch/`, (s: string) => `/odata/x${s}`]) {
      const raw = canonicalPath(at(ch));
      expect({ ch, spelling: 'escaped', ...summary(canonicalPath(at(escape(ch)))) }).toEqual({ ch, spelling: 'escaped', ...summary(raw) });
      expect({ ch, spelling: 'lower-case escape', ...summary(canonicalPath(at(escape(ch, true)))) }).toEqual({ ch, spelling: 'lower-case escape', ...summary(raw) });
    }
  });

  test.each([
    ['a space', ' ', { ok: true, path: '/odata/a%20b' }],
    ['a slash', '/', { ok: false }],
    ['a question mark', '?', { ok: false }],
  ])('%s, which has no raw spelling inside a segment, is refused or kept as its one escape', (_, ch, expected) => {
    expect(summary(canonicalPath(`/odata/a${escape(ch)}b`))).toEqual(expected);
  });

  test("escaped framework paths ($batch, 42:refund, @me) are the paths their rules name", () => {
    expect(canonicalPath('/odata/%24batch')).toEqual({ ok: true, path: '/odata/$batch', query: '' });
    expect(canonicalPath('/v1/orders/42%3Arefund')).toEqual({ ok: true, path: '/v1/orders/42:refund', query: '' });
    expect(canonicalPath('/users/%40me/')).toEqual({ ok: true, path: '/users/@me/', query: '' });
  });

  test('a path spelled with any mix of raw characters and escapes gets the canonical path and the rule of its raw spelling', () => {
    const inSegment = PRINTABLE.filter((c) => !NO_RAW_SPELLING.includes(c) && c !== '%');
    const pathChars = fc.array(fc.oneof(fc.constantFrom(...inSegment), fc.constant('/')), { minLength: 1, maxLength: 16 });
    fc.assert(
      fc.property(pathChars, fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 16, maxLength: 16 }), (chars, how) => {
        const raw = '/' + chars.join('');
        const mixed = '/' + chars.map((c, i) => (c === '/' || how[i] === 0 ? c : escape(c, how[i] === 2))).join('');
        const a = canonicalPath(raw);
        const b = canonicalPath(mixed);
        expect({ mixed, ...summary(b) }).toEqual({ mixed, ...summary(a) });
        if (!a.ok || !b.ok || a.path === '/') return;
        // A rule written for the raw spelling's canonical path matches the mixed spelling too.
        const { policy } = parsePolicy(`rules:\n  - id: written\n    path: ${JSON.stringify(a.path)}\n    case_sensitive: true\n    deny: true\n  - id: other\n    public: true\n`, 'p.yaml');
        expect(policy).toBeDefined();
        expect(matchRule(policy!, { host: 'app.example.com', method: 'GET', path: b.path })?.id).toBe('written');
      }),
      { numRuns: RUNS },
    );
  });
});
