// bench/RESULTS.md keeps the latest run on top and every run appended below (bench/results-md.ts).
import { LATEST_BEGIN, LATEST_END, NEW_RESULTS_FILE, withRun } from '../../bench/results-md.js';

const run = (n: number) => `## run ${n}\n\n| scenario | req/s |\n|---|---|\n| (a) | ${n} |\n`;

test('the latest run replaces the previous one on top, and every run stays appended in order', () => {
  const once = withRun(NEW_RESULTS_FILE, 'latest: run 1', run(1));
  const twice = withRun(once, 'latest: run 2', run(2));
  const top = twice.slice(twice.indexOf(LATEST_BEGIN), twice.indexOf(LATEST_END));
  expect(top).toContain('latest: run 2');
  expect(top).not.toContain('latest: run 1');
  expect(twice.indexOf('## run 1')).toBeLessThan(twice.indexOf('## run 2'));
  expect(twice.indexOf(LATEST_END)).toBeLessThan(twice.indexOf('## run 1'));
});

test('a file without the markers gets the table appended and keeps every other byte', () => {
  const doc = '# Benchmark results\n\nwritten by hand\n';
  expect(withRun(doc, 'latest', run(3))).toBe(`${doc}${run(3)}\n`);
});
