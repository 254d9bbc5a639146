// An independent reading of the edge design (notes: "Paths"), for the hostile-path tests: what the
// canonical form of a request path is, how common app servers read a forwarded path, and who may
// open what under the demo policy (policy/demo.yaml). Written apart from service/src/paths.ts on
// purpose: the tests compare the two, and one is not derived from the other.
import fc from 'fast-check';

export type Canonical = { ok: true; path: string; query: string } | { ok: false; reason: string };

/** Encoded bytes with no safe single meaning: separators, `%` itself, `;`, `?`, `#`, controls. */
function forbiddenByte(b: number): boolean {
  return b <= 0x1f || b === 0x7f || b === 0x2f || b === 0x5c || b === 0x25 || b === 0x3b || b === 0x3f || b === 0x23;
}

/** Spelled raw in a canonical segment (decoded when escaped): RFC 3986's pchar, less `;`. */
const RAW_PCHAR = /^[A-Za-z0-9\-._~!$&'()*+,=:@]$/;
/** Characters whose look-alikes (after NFKC) would be read as structure by some app. */
const STRUCTURAL = /[/\\;%?#.]/;

const hex2 = (b: number) => b.toString(16).toUpperCase().padStart(2, '0');

/** Decodes one raw segment: its canonical spelling and its decoded text, or why it is refused. */
function segment(raw: string): { canonical: string; decoded: string } | string {
  let canonical = '';
  let decoded = '';
  let i = 0;
  while (i < raw.length) {
    if (raw[i] !== '%') {
      // printable ASCII that RFC 3986 does not allow raw in a path (`"`, `{`, ...) is spelled as its escape
      canonical += RAW_PCHAR.test(raw[i]!) ? raw[i] : `%${hex2(raw[i]!.charCodeAt(0))}`;
      decoded += raw[i];
      i++;
      continue;
    }
    const bytes: number[] = [];
    // a run of escapes: ASCII ones one at a time, bytes >= 0x80 together (one UTF-8 sequence or more)
    while (i < raw.length && raw[i] === '%') {
      const h = raw.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(h)) return `malformed escape at ${raw.slice(i, i + 3)}`;
      const b = parseInt(h, 16);
      if (b < 0x80) {
        if (bytes.length) break;
        if (forbiddenByte(b)) return `encoded %${hex2(b)}`;
        const ch = String.fromCharCode(b);
        canonical += RAW_PCHAR.test(ch) ? ch : `%${hex2(b)}`;
        decoded += ch;
        i += 3;
        break;
      }
      bytes.push(b);
      i += 3;
    }
    if (!bytes.length) continue;
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(bytes));
    } catch {
      return 'encoded bytes that are not UTF-8';
    }
    if (STRUCTURAL.test(text.normalize('NFKC'))) return 'a look-alike of a separator or dot';
    // Beyond the design note (proposed in the test report): a character that NFKC or a Unicode case
    // mapping turns into ASCII (fullwidth ａ, dotless ı, Kelvin K, long ſ) is a look-alike too, since
    // IIS/.NET best-fit, NFKC-normalising apps and Java's equalsIgnoreCase read it as that ASCII letter,
    // while the policy matched it as something else.
    for (const ch of text) {
      if (/[\x00-\x7f]/.test(ch.normalize('NFKC') + ch.toUpperCase() + ch.toLowerCase())) return 'a look-alike of an ASCII character';
    }
    canonical += bytes.map((b) => `%${hex2(b)}`).join('');
    decoded += text;
  }
  // NFC/NFKC-normalising apps read "cafe" + combining acute as "café": only one spelling is accepted.
  if (decoded !== decoded.normalize('NFKC')) return 'text not in Unicode normal form (NFKC)';
  return { canonical, decoded };
}

/** The canonical form of a raw request-target (origin-form), per the design; refusals carry a reason. */
export function referenceCanonical(uri: string): Canonical {
  const q = uri.indexOf('?');
  const raw = q < 0 ? uri : uri.slice(0, q);
  const query = q < 0 ? '' : uri.slice(q + 1);
  if (!raw.startsWith('/')) return { ok: false, reason: 'not an origin-form path' };
  for (const ch of raw) {
    const c = ch.codePointAt(0)!;
    if (c <= 0x20 || c >= 0x7f) return { ok: false, reason: 'a raw control, space or non-ASCII character' };
    if (ch === '\\' || ch === '#' || ch === ';') return { ok: false, reason: `a raw ${ch}` };
  }
  const parts = raw.slice(1).split('/');
  const out: string[] = [];
  let trailing = false;
  for (let i = 0; i < parts.length; i++) {
    const s = segment(parts[i]!);
    if (typeof s === 'string') return { ok: false, reason: s };
    const last = i === parts.length - 1;
    if (s.decoded === '' || s.decoded === '.' || s.decoded === '..') {
      if (s.decoded === '..') {
        if (!out.length) return { ok: false, reason: 'a .. above the root' };
        out.pop();
      }
      if (last) trailing = true;
      continue;
    }
    if (/[. ]$/.test(s.decoded)) return { ok: false, reason: 'a segment ending with a dot or a space' };
    out.push(s.canonical);
  }
  const path = '/' + out.join('/') + (trailing && out.length ? '/' : '');
  return { ok: true, path, query };
}

// ---------------------------------------------------------------------------------------------
// How app servers read a forwarded path. Each reading is a pipeline of optional steps; `readings`
// returns every combination, so combined tricks (decode, then cut `;`, then resolve) are covered.

/** Percent-decoding as lenient servers do it: malformed escapes stay, invalid UTF-8 becomes U+FFFD. */
function decodeOnce(p: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < p.length; ) {
    if (p[i] === '%' && /^[0-9A-Fa-f]{2}$/.test(p.slice(i + 1, i + 3))) {
      bytes.push(parseInt(p.slice(i + 1, i + 3), 16));
      i += 3;
    } else {
      bytes.push(...Buffer.from(p[i]!, 'utf8'));
      i++;
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/** Tomcat, Jetty, Spring: `;params` cut from every segment. */
const cutParams = (p: string) => p.split('/').map((s) => s.split(';')[0]).join('/');
/** IIS / Windows: trailing dots and spaces of a name are ignored (`..` stays what it is). */
const trimSegments = (p: string) => p.split('/').map((s) => (/^\.+$/.test(s) ? s : s.replace(/[. ]+$/, ''))).join('/');
const collapseSlashes = (p: string) => p.replace(/\/{2,}/g, '/');
const backslashes = (p: string) => p.replace(/\\/g, '/');
/** RFC 3986 remove_dot_segments; a `..` at the root stays at the root (what servers do). */
function resolveDots(p: string): string {
  const out: string[] = [];
  const parts = p.split('/');
  for (let i = 0; i < parts.length; i++) {
    const s = parts[i]!;
    if (s === '.' || s === '..') {
      if (s === '..' && out.length > 1) out.pop();
      if (i === parts.length - 1) out.push('');
      continue;
    }
    out.push(s);
  }
  const joined = out.join('/');
  return joined.startsWith('/') ? joined : '/' + joined;
}

export interface Reading {
  name: string;
  path: string;
}

/** Every combination of the steps app servers take, applied to a path (no query), with a name for each. */
export function readings(path: string): Reading[] {
  const seen = new Map<string, string>();
  for (const params of ['none', 'before-decoding', 'after-decoding'] as const)
    for (const decodes of [0, 1, 2])
      for (const unicode of ['none', 'nfkc', 'fold'] as const)
        for (const bs of [false, true])
          for (const trim of [false, true])
            for (const collapse of [false, true])
              for (const resolve of [false, true]) {
                let p = path;
                const steps: string[] = [];
                if (params === 'before-decoding') (p = cutParams(p)), steps.push('cut ;params');
                for (let d = 0; d < decodes; d++) (p = decodeOnce(p)), steps.push('percent-decode');
                if (params === 'after-decoding') (p = cutParams(p)), steps.push('cut ;params');
                // NFKC (IIS/.NET best fit, Python unicodedata): fullwidth ａ reads as a.
                if (unicode === 'nfkc') (p = p.normalize('NFKC')), steps.push('NFKC');
                // Unicode case-insensitive comparison (Java equalsIgnoreCase: dotless ı equals I).
                if (unicode === 'fold') (p = p.toUpperCase().toLowerCase()), steps.push('Unicode case fold');
                if (bs) (p = backslashes(p)), steps.push('backslash as slash');
                if (trim) (p = trimSegments(p)), steps.push('trim trailing dots/spaces');
                if (collapse) (p = collapseSlashes(p)), steps.push('collapse slashes');
                if (resolve) (p = resolveDots(p)), steps.push('resolve dot segments');
                if (!seen.has(p)) seen.set(p, steps.join(', ') || 'as is');
              }
  return [...seen].map(([p, name]) => ({ name, path: p }));
}

// ---------------------------------------------------------------------------------------------
// The demo policy, independently: rules by first segment, matched case-insensitively.

export type DemoRule = 'public' | 'admin-area' | 'api' | 'signed-in';
export type Caller = 'anonymous' | 'bob' | 'alice';

export function demoRule(path: string): DemoRule {
  const p = path.toLowerCase();
  const under = (prefix: string) => p === prefix || p.startsWith(prefix + '/');
  if (under('/public')) return 'public';
  if (under('/admin')) return 'admin-area';
  if (under('/api')) return 'api';
  return 'signed-in';
}

export function mayOpen(caller: Caller, rule: DemoRule): boolean {
  if (rule === 'public') return true;
  if (caller === 'anonymous') return false;
  if (rule === 'admin-area') return caller === 'alice';
  return true;
}

/** Readings of `path` (no query) that lead `caller` to a route the demo policy does not let it open. */
export function forbiddenReadings(caller: Caller, path: string): string[] {
  return readings(path)
    .filter((r) => !mayOpen(caller, demoRule(r.path)))
    .map((r) => `${r.name} reads ${JSON.stringify(r.path)} (rule ${demoRule(r.path)})`);
}

// ---------------------------------------------------------------------------------------------
// Generated hostile paths, from the tokens the attacks are made of.

export const PATH_TOKENS = [
  '/', '/', '/', '.', '..', '%2e', '%2E', '%2f', '%2F', '%5c', '\\', ';', '%3b', '%25', '%252f', '%252e', '%00', '%0a', '%20', '%20.',
  'public', 'admin', 'ADMIN', 'Admin', 'api', 'x', '%C0%AF', '%c0%ae', '%EF%BC%8F', '%EF%BD%81dmin', 'adm%C4%B1n', '%C3%A9', '%41', '%61', '~', '%7e', '%', '?q=1',
  '$', '%24', ':', '%3a', '@', '%40', '+', '%2B', '"', '%22', '{', '%7b',
];

/** A path made of 1-10 tokens after a leading slash (raw `;`, `\`, `?` included: the design refuses or splits them). Sendable as is in a request line. */
export const hostilePath = fc.array(fc.constantFrom(...PATH_TOKENS), { minLength: 1, maxLength: 10 }).map((tokens) => '/' + tokens.join(''));
