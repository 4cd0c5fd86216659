// Types of check-logs.mjs for the TypeScript tests that import it.
export declare function expectedLine(rank: number, index: number): string;
export declare function checkRankLog(file: string, rank: number, lines: number): string | undefined;
export declare function checkMergedLog(file: string, ranks: number, lines: number): string | undefined;
export declare function checkRankLogs(
  fileOf: (rank: number) => string,
  ranks: number,
  lines: number,
): string | undefined;
