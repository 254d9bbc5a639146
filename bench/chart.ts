// bench/results.svg: the bench's figures as a picture a reader takes in at a glance, with no
// dependency. One row per scenario, its name above two bars: requests/s (left panel) and p99 latency
// (right panel), each panel on its own scale; colours tell idgate from the baselines and the peer.

export type ChartKind = 'idgate' | 'baseline' | 'peer';

export interface ChartRow {
  name: string;
  rps: number;
  p99_ms: number;
  kind: ChartKind;
}

export interface ChartText {
  title: string;
  /** A second line: date, commit, machine. */
  subtitle: string;
}

const COLOURS: Record<ChartKind, string> = { idgate: '#2563eb', baseline: '#9ca3af', peer: '#ea580c' };
const LEGEND: [ChartKind, string][] = [['idgate', 'idgate'], ['baseline', 'no auth, or a ceiling (no check)'], ['peer', 'another check, no idgate (Apache + mod_auth_openidc, HAProxy jwt_verify)']];

const WIDTH = 960;
const MARGIN = 12;
/** The requests/s panel: from MARGIN, bars up to RPS_BAR wide, then the value. */
const RPS_BAR = 520;
/** The p99 panel starts here. */
const P99_X = 640;
const P99_BAR = 220;
const HEADER = 96;
const ROW = 38;

/** Text safe inside an SVG element or a double-quoted attribute. */
export function escapeXml(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;').replaceAll("'", '&apos;');
}

function finite(n: number): boolean {
  return Number.isFinite(n) && n >= 0;
}

/** A self-contained SVG document (no scripts, no external references). */
export function renderChart(rows: ChartRow[], text: ChartText): string {
  const maxRps = Math.max(1, ...rows.map((r) => (finite(r.rps) ? r.rps : 0)));
  const maxP99 = Math.max(0.001, ...rows.map((r) => (finite(r.p99_ms) ? r.p99_ms : 0)));
  const height = HEADER + rows.length * ROW + MARGIN;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif" font-size="12" role="img">`,
    `<title>${escapeXml(text.title)}</title>`,
    `<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    `<text x="${MARGIN}" y="22" font-size="16" font-weight="bold">${escapeXml(text.title)}</text>`,
    `<text x="${MARGIN}" y="40" fill="#4b5563">${escapeXml(text.subtitle)}</text>`,
  ];
  let legendX = MARGIN;
  for (const [kind, label] of LEGEND) {
    out.push(`<rect x="${legendX}" y="50" width="12" height="12" fill="${COLOURS[kind]}"/>`, `<text x="${legendX + 16}" y="60">${escapeXml(label)}</text>`);
    legendX += 30 + label.length * 5.9;
  }
  out.push(
    `<text x="${MARGIN}" y="86" font-weight="bold">requests/s (longer is better)</text>`,
    `<text x="${P99_X}" y="86" font-weight="bold">p99 latency, ms (shorter is better)</text>`,
    `<line x1="${P99_X - 12}" y1="72" x2="${P99_X - 12}" y2="${height - MARGIN}" stroke="#e5e7eb"/>`,
  );
  rows.forEach((row, i) => {
    const y = HEADER + i * ROW;
    const colour = COLOURS[row.kind];
    const rpsWidth = finite(row.rps) ? Math.max(1, Math.round((row.rps / maxRps) * RPS_BAR)) : 0;
    const p99Width = finite(row.p99_ms) ? Math.max(1, Math.round((row.p99_ms / maxP99) * P99_BAR)) : 0;
    out.push(
      `<g>`,
      `<text x="${MARGIN}" y="${y + 10}">${escapeXml(row.name)}</text>`,
      `<rect x="${MARGIN}" y="${y + 15}" width="${rpsWidth}" height="14" fill="${colour}"/>`,
      `<text x="${MARGIN + rpsWidth + 6}" y="${y + 26}">${finite(row.rps) ? Math.round(row.rps).toLocaleString('en-US') : 'not measured'}</text>`,
      `<rect x="${P99_X}" y="${y + 15}" width="${p99Width}" height="14" fill="${colour}" fill-opacity="0.55"/>`,
      `<text x="${P99_X + p99Width + 6}" y="${y + 26}">${finite(row.p99_ms) ? String(row.p99_ms) : '-'}</text>`,
      `</g>`,
    );
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
