#!/usr/bin/env node
// One rank-table size in a fresh process (so heap and RSS are not inherited from a larger size):
//   node --expose-gc bench/ranktable-scale.mjs SERVERS REPEAT
// prints one JSON line: median times of generate+serialize and parse+validate, heap/RSS growth.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const { generateRankTable, serializeRankTable } = await import(join(root, 'dist', 'ranktable', 'generate.js'));
const { validateRankTable } = await import(join(root, 'dist', 'ranktable', 'validate.js'));

const servers = Number(process.argv[2]);
const repeat = Number(process.argv[3] ?? 3);
if (!Number.isInteger(servers) || servers < 1 || !Number.isInteger(repeat) || repeat < 1) {
  process.stderr.write('usage: node --expose-gc bench/ranktable-scale.mjs SERVERS REPEAT\n');
  process.exit(2);
}
if (typeof global.gc !== 'function') {
  process.stderr.write('ranktable-scale.mjs needs node --expose-gc (heap deltas would include garbage)\n');
  process.exit(2);
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const seconds = (t0) => Number(process.hrtime.bigint() - t0) / 1e9;
// Server s: 10.x.y.1, its 8 devices 172.(16+d).x.y, unique up to 65536 servers.
const inputFor = (n) =>
  Array.from({ length: n }, (_, s) => ({
    serverId: `10.${(s >> 8) & 255}.${s & 255}.1`,
    devices: Array.from({ length: 8 }, (_, d) => ({
      deviceId: d,
      deviceIp: `172.${16 + d}.${(s >> 8) & 255}.${s & 255}`,
    })),
  }));

// Warm-up: the first validation compiles the JSON schema, a one-time cost that is not per server.
validateRankTable(JSON.parse(serializeRankTable(generateRankTable(inputFor(1)))));

const input = inputFor(servers);
const samples = [];
for (let i = 0; i < repeat; i++) {
  global.gc();
  const heap0 = process.memoryUsage().heapUsed;
  const rss0 = process.memoryUsage().rss;
  const t0 = process.hrtime.bigint();
  const text = serializeRankTable(generateRankTable(input));
  const generateSecs = seconds(t0);
  const t1 = process.hrtime.bigint();
  const result = validateRankTable(JSON.parse(text));
  const validateSecs = seconds(t1);
  // Measured while text and result are still live: what holding the table and its check costs.
  const mem = process.memoryUsage();
  if (result.problems.length > 0) {
    process.stderr.write(`generated ${servers}-server table is invalid: ${result.problems[0].message}\n`);
    process.exit(1);
  }
  samples.push({
    generateSecs,
    validateSecs,
    heapMiB: (mem.heapUsed - heap0) / 2 ** 20,
    rssMiB: (mem.rss - rss0) / 2 ** 20,
    bytes: text.length,
  });
}

process.stdout.write(
  JSON.stringify({
    servers,
    ranks: servers * 8,
    generateSecs: median(samples.map((s) => s.generateSecs)),
    validateSecs: median(samples.map((s) => s.validateSecs)),
    secs: median(samples.map((s) => s.generateSecs + s.validateSecs)),
    heapMiB: median(samples.map((s) => s.heapMiB)),
    rssGrowthMiB: Math.max(...samples.map((s) => s.rssMiB)),
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
    bytes: samples[0].bytes,
  }) + '\n',
);
