// The one path idgate decides on and the app receives. HAProxy forwards the raw request path, and app
// servers read raw paths in many ways: Tomcat and Jetty cut `;` parameters, some decode `%2F` before
// routing, IIS drops trailing dots and spaces, Windows reads `\` as `/`, some decode twice, many route
// case-insensitively. A path that two of those readings could send to different routes has no safe single
// meaning: it is refused. Every other path is put in one canonical form, the policy matches that form, and
// HAProxy replaces the request's path by it before the app sees it (X-Idgate-Path / txn.idgate.path).
//
// Canonical form: one spelling per character. A character with one meaning inside a segment that may
// stand raw in a path (unreserved, `!$&'()*+,=:@`) is written raw, also when it came as an escape:
// Spring, Go's ServeMux, Tomcat, Werkzeug and ASP.NET Core decode `%24` to `$` before routing, so a rule
// for `/odata/$batch` must see `/odata/%24batch` as that path. Any other character is written as an
// upper-case escape, also when it came raw (`"` `<` `>` `[` `]` `^` `` ` `` `{` `|` `}`, space, non-ASCII).
// `.` and `..` are resolved, empty segments dropped, a trailing slash kept, letter case as sent. It
// contains no `;`, `\`, `//`, dot segment, encoded separator or encoded percent sign, so the readings
// above agree on it, apart from case (which the policy ignores unless a rule says otherwise).

export type CanonicalPath = { readonly ok: true; readonly path: string; readonly query: string } | { readonly ok: false; readonly reason: string };

/** Escapes whose decoded character changes how a server splits or reads the path. */
const REFUSED_ESCAPES: Readonly<Record<string, string>> = {
  '2F': 'an encoded slash (%2F)',
  '5C': 'an encoded backslash (%5C)',
  '25': 'an encoded percent sign (%25, double encoding)',
  '3B': 'an encoded semicolon (%3B)',
  '3F': 'an encoded question mark (%3F)',
  '23': 'an encoded number sign (%23)',
};

/** Characters a segment holds raw in canonical form: RFC 3986 pchar without `;` (path parameters). */
const RAW_IN_SEGMENT = /^[A-Za-z0-9\-._~!$&'()*+,=:@]$/;
/** Printable ASCII that must be escaped in a path (RFC 3986): its one spelling is the escape. */
const ESCAPED_IN_SEGMENT = /[ "<>[\]^`{|}]/g;
const READS_AS_ASCII = /[\x00-\x7f]/;
const HEX = /^[0-9A-Fa-f]{2}$/;

/** `uri` is the request's path and query as sent (origin form). */
export function canonicalPath(uri: string): CanonicalPath {
  const q = uri.indexOf('?');
  const raw = q === -1 ? uri : uri.slice(0, q);
  const query = q === -1 ? '' : uri.slice(q + 1);
  if (!raw.startsWith('/')) return refuse('the path does not start with "/"');
  if (raw.includes('\\')) return refuse('a backslash');
  if (raw.includes('#')) return refuse('a raw number sign');
  if (raw.includes(';')) return refuse('a semicolon (path parameters)');

  const segments = raw.split('/');
  const out: string[] = [];
  for (let i = 1; i < segments.length; i++) {
    const segment = canonicalSegment(segments[i]!);
    if (!segment.ok) return segment;
    const { text, decoded } = segment;
    const last = i === segments.length - 1;
    if (decoded === '.' || (decoded === '' && !last)) continue;
    if (decoded === '..') {
      if (out.length === 0) return refuse('a ".." above the root');
      out.pop();
      continue;
    }
    if (decoded.endsWith('.') || decoded.endsWith(' ')) return refuse('a segment ending in a dot or a space');
    out.push(text);
  }
  const lastDecoded = decodeForDots(segments[segments.length - 1]!);
  const trailing = segments.length > 2 && (lastDecoded === '' || lastDecoded === '.' || lastDecoded === '..');
  let path = '/' + out.filter((s) => s !== '').join('/');
  if (trailing && path !== '/') path += '/';
  return { ok: true, path, query };
}

/** How the canonical form spells one printable ASCII character inside a segment: itself, or its escape. */
export function canonicalSpelling(ch: string): string {
  return RAW_IN_SEGMENT.test(ch) ? ch : `%${ch.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`;
}

function escapeUnsafe(text: string): string {
  return text.replace(ESCAPED_IN_SEGMENT, canonicalSpelling);
}

function refuse(what: string): { ok: false; reason: string } {
  return { ok: false, reason: `the path holds ${what}` };
}

/** A segment's canonical text and its decoded value, or why it has no single meaning. */
function canonicalSegment(segment: string): { ok: true; text: string; decoded: string } | { ok: false; reason: string } {
  if (!segment.includes('%')) {
    if (!/^[\x21-\x7e]*$/.test(segment)) return refuse('a control character, a space or a non-ASCII byte');
    return { ok: true, text: escapeUnsafe(segment), decoded: segment };
  }
  let text = '';
  const bytes: number[] = [];
  let decodedAscii = true;
  for (let i = 0; i < segment.length; i++) {
    const c = segment[i]!;
    if (c !== '%') {
      if (c < '\x21' || c > '\x7e') return refuse('a control character, a space or a non-ASCII byte');
      text += escapeUnsafe(c);
      bytes.push(c.charCodeAt(0));
      continue;
    }
    const hex = segment.slice(i + 1, i + 3);
    if (!HEX.test(hex)) return refuse('a malformed percent escape');
    const upper = hex.toUpperCase();
    const byte = parseInt(hex, 16);
    i += 2;
    if (REFUSED_ESCAPES[upper]) return refuse(REFUSED_ESCAPES[upper]);
    if (byte < 0x20 || byte === 0x7f) return refuse('an encoded control character');
    const ch = String.fromCharCode(byte);
    if (byte < 0x80 && RAW_IN_SEGMENT.test(ch)) text += ch;
    else text += `%${upper}`;
    if (byte >= 0x80) decodedAscii = false;
    bytes.push(byte);
  }
  let decoded: string;
  try {
    decoded = new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(bytes));
  } catch {
    return refuse('percent-encoded bytes that are not UTF-8 (an overlong or broken sequence)');
  }
  if (!decodedAscii) {
    if (/[\u0080-\u009f]/u.test(decoded)) return refuse('an encoded control character');
    // Look-alikes: IIS/.NET best-fit mapping, NFKC-normalising frameworks and case-insensitive
    // comparisons read fullwidth "ａ", dotless "ı" or a fullwidth solidus as ASCII, i.e. as another route.
    for (const ch of decoded) {
      if (ch.charCodeAt(0) < 0x80) continue;
      if (READS_AS_ASCII.test(ch.normalize('NFKC')) || READS_AS_ASCII.test(ch.toUpperCase()) || READS_AS_ASCII.test(ch.toLowerCase())) {
        return refuse('a character that Unicode folding or case mapping reads as ASCII (a look-alike)');
      }
    }
    // One spelling per text: NFC/NFKC-normalising apps read "cafe" + a combining acute as "café", and
    // halfwidth katakana as full width, i.e. as the path a rule was written for.
    if (decoded !== decoded.normalize('NFKC')) return refuse('text that is not in Unicode normal form (NFKC)');
  }
  return { ok: true, text, decoded };
}

/**
 * The canonical path as rules that ignore letter case see it: lower case, non-ASCII letters included
 * ("/CAF%C3%89/" is "/caf%c3%a9/"), since case-insensitive routers fold them too. Rule paths are folded
 * the same way when the policy loads.
 */
export function caseFolded(path: string): string {
  const lower = path.toLowerCase();
  if (!/%[89a-f]/.test(lower)) return lower;
  return lower.replace(/(?:%[89a-f][0-9a-f])+/g, (run) => {
    try {
      return encodeURIComponent(decodeURIComponent(run).toLowerCase()).toLowerCase();
    } catch {
      return run; // not UTF-8: canonical paths never hold such runs
    }
  });
}

/** The segment with only its unreserved escapes decoded: enough to recognise `%2e%2e` as "..". */
function decodeForDots(segment: string): string {
  return segment.replace(/%2[Ee]/g, '.');
}
