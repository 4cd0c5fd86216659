import { existsSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileError, inputError, NpurunError } from '../errors.js';
import { makeDirs } from '../make-dirs.js';
import { mergeRankTables, rankTableFileName, serializeRankTable } from './generate.js';
import type { RankTable } from './types.js';
import { validateRankTable, validateRankTableFile, type Problem } from './validate.js';

/**
 * Writes a rank table where --out says: a directory (existing, or ending in /) gets `name` (the
 * hccl_tools file name by default), any other path is the file itself; default rank-tables/.
 * Returns the path written. An unwritable place is refused in words.
 */
export function writeRankTable(table: RankTable, out: string | undefined, name = rankTableFileName(table)): string {
  const target = resolve(out ?? 'rank-tables');
  const isDir = out === undefined || out.endsWith('/') || (existsSync(target) && statSync(target).isDirectory());
  const file = isDir ? join(target, name) : target;
  try {
    makeDirs(dirname(file));
    writeFileSync(file, serializeRankTable(table));
  } catch (err) {
    throw fileError(out !== undefined ? `--out ${file}` : file, 'cannot write the rank table', err);
  }
  return file;
}

/** A version 1.0 table read for merging; its warnings go to `onWarning` as "FILE: warning: path: message". */
function readForMerge(file: string, onWarning: (line: string) => void): RankTable {
  // Lenient: merge rewrites every rank id as a string, so a merge_hccl.py file is fine to read.
  const r = validateRankTableFile(file, { lenient: true });
  if (r.superPod)
    throw inputError(file, 'a version 1.2 (Atlas A3 SuperPoD) rank table; merge works on version 1.0 tables');
  if (!r.table)
    throw new NpurunError('input', `${file}: invalid rank table`, {
      details: r.problems.map((p) => `${file}: ${p.path}: ${p.message}`),
    });
  for (const w of r.warnings) onWarning(warningLine(file, w));
  return r.table;
}

export function warningLine(file: string, w: Problem): string {
  return `${file}: warning: ${w.path}: ${w.message}`;
}

/** merge_hccl.py: servers in argument order, ranks renumbered server by server; a merged table that clashes is refused. */
export function mergeRankTableFiles(files: string[], onWarning: (line: string) => void): RankTable {
  if (files.length < 2)
    throw inputError('npurun ranktable merge', `expected at least two rank-table files, got ${files.length}`);
  const merged = mergeRankTables(files.map((f) => readForMerge(f, onWarning)));
  // Servers that clash (same host twice, same device IPs, different device counts) show up only once merged.
  const problems = validateRankTable(merged).problems.map((p) => `merged ${p.path}: ${p.message}`);
  if (problems.length > 0)
    throw new NpurunError('input', 'the merged rank table would be invalid', { details: problems });
  return merged;
}
