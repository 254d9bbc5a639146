import { escapeXml, renderChart, type ChartRow } from '../../bench/chart.js';

const ROWS: ChartRow[] = [
  { name: '(a) HAProxy -> upstream, no auth', rps: 30_000, p99_ms: 3.4, kind: 'baseline' },
  { name: '(g) HAProxy + idgate (SPOE), session cookie', rps: 15_000, p99_ms: 6.1, kind: 'idgate' },
  { name: '(l) Apache + mod_auth_openidc <Redis> & "shm"', rps: 2_000, p99_ms: 40, kind: 'peer' },
  { name: '(x) a scenario that did not run', rps: NaN, p99_ms: NaN, kind: 'peer' },
];

/** Every tag closed in order (no XML parser among the dependencies: a stack of element names). */
function wellFormed(svg: string): boolean {
  const open: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([a-zA-Z]+)\b[^>]*?(\/?)>/g)) {
    const [, closing, name, selfClosing] = m;
    if (selfClosing) continue;
    if (!closing) open.push(name!);
    else if (open.pop() !== name) return false;
  }
  return open.length === 0;
}

/** The text of every element, entities decoded, with everything else stripped. */
function texts(svg: string): string[] {
  return [...svg.matchAll(/<text\b[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]!.replaceAll('&lt;', '<').replaceAll('&gt;', '>').replaceAll('&quot;', '"').replaceAll('&apos;', "'").replaceAll('&amp;', '&'));
}

describe('the bench chart (bench/results.svg)', () => {
  const svg = renderChart(ROWS, { title: 'idgate & friends', subtitle: 'commit <abc>' });

  test('is one well-formed SVG document with no script or outside reference', () => {
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(wellFormed(svg)).toBe(true);
    expect(svg).not.toMatch(/<script|href=|url\(/i);
  });

  test('draws one group, a requests/s bar and a p99 bar, per scenario, in the order given', () => {
    const groups = [...svg.matchAll(/<g>([\s\S]*?)<\/g>/g)].map((m) => m[1]!);
    expect(groups).toHaveLength(ROWS.length);
    for (const group of groups) expect(group.match(/<rect /g)).toHaveLength(2);
    const names = texts(svg).filter((t) => /^\([a-z]\)/.test(t));
    expect(names).toEqual(ROWS.map((r) => r.name));
  });

  test('scales bars to the largest value of each panel', () => {
    const widths = [...svg.matchAll(/<g>\n<text[^>]*>[^<]*<\/text>\n<rect [^>]*width="(\d+)"[^>]*\/>\n<text[^>]*>[^<]*<\/text>\n<rect [^>]*width="(\d+)"/g)].map((m) => [Number(m[1]), Number(m[2])]);
    expect(widths[0]![0]).toBe(2 * widths[1]![0]!);
    expect(widths[2]![1]).toBeGreaterThan(widths[1]![1]!);
    expect(widths[3]).toEqual([0, 0]);
  });

  test('escapes names, title and subtitle', () => {
    expect(svg).toContain('(l) Apache + mod_auth_openidc &lt;Redis&gt; &amp; &quot;shm&quot;');
    expect(svg).toContain('<title>idgate &amp; friends</title>');
    expect(svg).toContain('commit &lt;abc&gt;');
    expect(svg).not.toContain('<Redis>');
  });

  test('says when a scenario was not measured instead of drawing a bar', () => {
    expect(texts(svg)).toContain('not measured');
  });

  test.each([
    ['a & b', 'a &amp; b'],
    ['<x y="1">', '&lt;x y=&quot;1&quot;&gt;'],
    ["it's", 'it&apos;s'],
    ['&amp;', '&amp;amp;'],
  ])('escapeXml(%j) is %j', (input, expected) => {
    expect(escapeXml(input)).toBe(expected);
  });
});
