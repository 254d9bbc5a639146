// bench/RESULTS.md: the latest run's targets on top, every run's table appended below, in order (what
// `make bench` promises: a dated table with the command, appended). Older runs and their readings live
// in bench/HISTORY.md, moved there by hand.

export const LATEST_BEGIN = '<!-- latest run: make bench rewrites this part -->';
export const LATEST_END = '<!-- end of the latest run -->';

export const NEW_RESULTS_FILE = [
  '# Benchmark results',
  '',
  'What `make bench` measures and the targets it holds idgate to are below the latest run; every run appends its whole table at the end, oldest first.',
  '',
  LATEST_BEGIN,
  LATEST_END,
  '',
  '## Runs',
  '',
].join('\n');

/**
 * `doc` with the part between the markers replaced by `latest` (markers kept), then `table` appended.
 * A file without the markers (edited by hand) still gets the table appended, and nothing else changes.
 */
export function withRun(doc: string, latest: string, table: string): string {
  const begin = doc.indexOf(LATEST_BEGIN);
  const end = doc.indexOf(LATEST_END);
  const top = begin !== -1 && end > begin ? `${doc.slice(0, begin + LATEST_BEGIN.length)}\n${latest.trim()}\n${doc.slice(end)}` : doc;
  return `${top.endsWith('\n') ? top : `${top}\n`}${table}\n`;
}
