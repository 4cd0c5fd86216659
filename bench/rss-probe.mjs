// Loaded with `node --import bench/rss-probe.mjs bin/npurun ...`: as the launcher exits, writes its own
// peak resident set (KiB, getrusage RUSAGE_SELF: the node process alone, not its ranks) to
// $BENCH_RSS_FILE. A launcher killed by a signal writes nothing (the bench reports it as unknown).
import { writeFileSync } from 'node:fs';

const file = process.env.BENCH_RSS_FILE;
if (file) {
  delete process.env.BENCH_RSS_FILE;
  process.once('exit', () => writeFileSync(file, String(process.resourceUsage().maxRSS)));
}
