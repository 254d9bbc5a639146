// Shipped text that is written from a table (HAProxy lines, docs/ tables): a test holds each file equal
// to what its table generates and, run with IDGATE_WRITE_DOCS=1, writes the file instead.
import fs from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '../..');

/**
 * Holds `file` (under the project's root) equal to `expected(text)`, the file's text as its generator
 * would write it; with IDGATE_WRITE_DOCS=1 writes that instead. `source` names the table, `regenerate`
 * the command that rewrites the file, for the failure's message.
 */
export function heldToGenerated(file: string, expected: (text: string) => string, source: string, regenerate: string): void {
  const full = path.join(root, file);
  const text = fs.existsSync(full) ? fs.readFileSync(full, 'utf8') : '';
  const wanted = expected(text);
  if (wanted === text) return;
  if (process.env.IDGATE_WRITE_DOCS === '1') return fs.writeFileSync(full, wanted);
  throw new Error(`${file} differs from ${source}. Regenerate with:\n  IDGATE_WRITE_DOCS=1 ${regenerate}\nthen review and commit the file.`);
}

/** `text` with the text between `begin` and `end` (markers included) replaced by `generated`; throws without both markers. */
export function betweenMarkers(file: string, text: string, begin: string, end: string, generated: string): string {
  const from = text.indexOf(begin);
  const to = text.indexOf(end, from);
  if (from === -1 || to === -1) throw new Error(`${file}: no "${begin}" followed by "${end}"`);
  return text.slice(0, from) + generated + text.slice(to + end.length);
}
