// The layers of service/src, held to the whiteboard: docs/architecture.md's table says which layer each
// file is in (top to bottom), and this test fails on any import that runs up a layer, any loop of files
// and any two folders that import each other. The table, not this file, is the one place the layers are
// written, so the drawing cannot drift from the code unnoticed.

import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import ts from 'typescript';

const SOURCE_ROOT = 'service/src';
const WHITEBOARD = 'docs/architecture.md';

interface Layer {
  readonly name: string;
  /** Paths relative to service/src; a folder ends in '/'. */
  readonly entries: readonly string[];
}

interface Import {
  readonly from: string;
  readonly line: number;
  readonly specifier: string;
  readonly to: string;
}

function readLayers(markdown: string): Layer[] {
  const lines = markdown.split('\n');
  const header = lines.findIndex((line) => /^\|\s*layer\s*\|/.test(line));
  if (header < 0) throw new Error(`${WHITEBOARD}: no table whose first column is "layer"`);
  const layers: Layer[] = [];
  for (const line of lines.slice(header + 2)) {
    if (!line.startsWith('|')) break;
    const [name, files] = line.split('|').slice(1, 3).map((cell) => cell.trim());
    const entries = [...files.matchAll(/`([^`]+)`/g)].map((m) => m[1]);
    layers.push({ name, entries });
  }
  return layers;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [relative(SOURCE_ROOT, path)] : [];
  });
}

/** Every relative import of a file: static, `import type`, `export … from`, and dynamic `import()`. */
function importsOf(file: string): Import[] {
  const text = readFileSync(join(SOURCE_ROOT, file), 'utf8');
  const { importedFiles } = ts.preProcessFile(text, true, true);
  return importedFiles
    .filter(({ fileName }) => fileName.startsWith('.'))
    .map(({ fileName, pos }) => ({
      from: file,
      line: text.slice(0, pos).split('\n').length,
      specifier: fileName,
      to: normalize(join(dirname(file), fileName.replace(/\.js$/, '.ts'))),
    }));
}

/** The layer of a file: the longest table entry that names it. */
function placeOf(file: string, layers: readonly Layer[]): { layer: number; entry: string } | undefined {
  let best: { layer: number; entry: string } | undefined;
  layers.forEach((layer, index) => {
    for (const entry of layer.entries) {
      const names = entry.endsWith('/') ? file.startsWith(entry) : file === entry;
      if (names && (!best || entry.length > best.entry.length)) best = { layer: index, entry };
    }
  });
  return best;
}

/** Each loop of files once, as the set of files that reach each other (Tarjan's strongly connected components). */
function loopsOf(files: readonly string[], edges: ReadonlyMap<string, readonly string[]>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const loops: string[][] = [];
  let next = 0;
  const visit = (file: string): void => {
    index.set(file, next);
    low.set(file, next);
    next += 1;
    stack.push(file);
    onStack.add(file);
    for (const to of edges.get(file) ?? []) {
      if (!index.has(to)) {
        visit(to);
        low.set(file, Math.min(low.get(file)!, low.get(to)!));
      } else if (onStack.has(to)) {
        low.set(file, Math.min(low.get(file)!, index.get(to)!));
      }
    }
    if (low.get(file) === index.get(file)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== file);
      const selfImport = (edges.get(file) ?? []).includes(file);
      if (component.length > 1 || selfImport) loops.push(component.reverse());
    }
  };
  for (const file of files) if (!index.has(file)) visit(file);
  return loops;
}

const layers = readLayers(readFileSync(WHITEBOARD, 'utf8'));
const files = sourceFiles(SOURCE_ROOT).sort();
const imports = files.flatMap(importsOf);

describe('the layers of service/src (docs/architecture.md)', () => {
  it('the whiteboard lists layers, each naming files', () => {
    expect(layers.length).toBeGreaterThan(1);
    for (const layer of layers) expect(layer.entries.length).toBeGreaterThan(0);
  });

  it('places every file of service/src in a layer, and every entry names a file', () => {
    const unplaced = files.filter((file) => !placeOf(file, layers)).map((file) => `${SOURCE_ROOT}/${file} is in no layer of ${WHITEBOARD}`);
    const stale = layers.flatMap((layer) => layer.entries
      .filter((entry) => !files.some((file) => (entry.endsWith('/') ? file.startsWith(entry) : file === entry)))
      .map((entry) => `${WHITEBOARD}: \`${entry}\` (layer "${layer.name}") names no file of ${SOURCE_ROOT}`));
    expect([...unplaced, ...stale]).toEqual([]);
  });

  it('every import stays in its layer or runs down, to a file that exists', () => {
    const problems: string[] = [];
    for (const { from, line, specifier, to } of imports) {
      const where = `${SOURCE_ROOT}/${from}:${line} imports '${specifier}'`;
      if (!files.includes(to)) {
        problems.push(`${where}: no such file in ${SOURCE_ROOT}`);
        continue;
      }
      const source = placeOf(from, layers);
      const target = placeOf(to, layers);
      if (source && target && target.layer < source.layer) {
        problems.push(`${where}: runs up from "${layers[source.layer].name}" to "${layers[target.layer].name}"`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('no files import each other in a loop', () => {
    const edges = new Map<string, string[]>();
    for (const { from, to } of imports) edges.set(from, [...(edges.get(from) ?? []), to]);
    const loops = loopsOf(files, edges).map((loop) => `loop: ${loop.map((file) => `${SOURCE_ROOT}/${file}`).join(' -> ')}`);
    expect(loops).toEqual([]);
  });

  it('no two folders import each other, so each layer draws as folders in one order', () => {
    // A file at the top of service/src stands for itself (entry points, wiring and ground files live
    // there), or for the folder of its name beside it, whose face it is (config.ts and config/).
    const folders = new Set(files.map((file) => dirname(file)));
    const folderOf = (file: string) => {
      if (dirname(file) !== '.') return `${SOURCE_ROOT}/${dirname(file)}/`;
      const namesake = file.replace(/\.ts$/, '');
      return `${SOURCE_ROOT}/${folders.has(namesake) ? `${namesake}/` : file}`;
    };
    const units = [...new Set(files.map(folderOf))];
    const edges = new Map<string, string[]>();
    for (const { from, to } of imports) {
      if (folderOf(from) !== folderOf(to)) edges.set(folderOf(from), [...(edges.get(folderOf(from)) ?? []), folderOf(to)]);
    }
    const loops = loopsOf(units, edges).map((loop) => {
      const ties = imports.filter(({ from, to }) => loop.includes(folderOf(from)) && loop.includes(folderOf(to)) && folderOf(from) !== folderOf(to));
      return `folders import each other: ${loop.join(', ')} (${ties.map(({ from, line, specifier }) => `${SOURCE_ROOT}/${from}:${line} '${specifier}'`).join('; ')})`;
    });
    expect(loops).toEqual([]);
  });
});
