// The rows on this machine alone (`launch --simulate`): start, failure, log throughput, memory.
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkMergedLog, checkRankLog, checkRankLogs } from './check-logs.mjs';
import {
  BIN,
  FAULT,
  PY,
  REPEAT,
  WARMUP,
  checkNothingLeft,
  checkRunRecord,
  compared,
  fmt,
  median,
  mib,
  notes,
  problem,
  root,
  rounds,
  run,
  runCounted,
  runNpurun,
  target,
  work,
} from './harness.mjs';

const TORCHRUN = [PY, join(root, 'bench', 'torchrun_patched.py')];
export const LINES = Number(process.env.BENCH_LINES ?? 200_000);
/** Memory row: "MiB x ranks" pairs. */
const MEM = (process.env.BENCH_MEM ?? '1024x1,500x8').split(',').map((p) => p.split('x').map(Number));
const RSS_BOUND_MIB = 300;

// BENCH_FAULT=missing-rank starts npurun with 7 ranks where the bench expects 8: its checks must notice.
const simulated = (n) => String(FAULT === 'missing-rank' ? n - 1 : n);

const npurunLaunch = (runDir, cmd, ranks = 8) => [
  'launch',
  '--simulate',
  simulated(ranks),
  '--profile',
  'torch',
  '--console',
  'none',
  '--run-dir',
  runDir,
  // Keep the pid-file folders inside the bench's scratch space rather than in /tmp/npurun.
  '--remote-dir',
  join(work, 'remote', '{run_id}'),
  '--',
  ...cmd,
];

/** One fresh run folder per launch, so run.json is this launch's alone. */
let runSeq = 0;
const freshRuns = (label) => join(work, `${label}-runs-${runSeq++}`);

/** torchrun's flags as Debian's 1.13 spells them (no dashed aliases yet). */
const torchrun = (extra, cmd) => [...TORCHRUN.slice(1), '--standalone', '--nproc_per_node', '8', ...extra, ...cmd];

// 1. Local start: 8 no-op ranks, wall time of the launcher.
export function benchLocalStart(torch) {
  const rss = [];
  const contenders = [
    {
      name: 'npurun',
      measure: () => {
        const runs = freshRuns('start');
        const r = runNpurun(npurunLaunch(runs, ['true']));
        checkNothingLeft('local start, npurun');
        checkRunRecord('local start, npurun', runs, { ranks: 8 });
        rss.push(r.rssKiB);
        rmSync(runs, { recursive: true, force: true });
        return r.secs;
      },
    },
    {
      name: 'shell loop: 8 × `true &`, wait (floor)',
      measure: () => run('sh', ['-c', 'for i in 1 2 3 4 5 6 7 8; do true & done; wait']).secs,
    },
    { name: '`node -e 0` (one Node start)', measure: () => run('node', ['-e', '0']).secs },
  ];
  if (torch) {
    // Its agent looks at the workers every monitor interval, so the default interval also bounds how soon it sees them finish.
    for (const interval of [torch.monitorInterval, '0.1']) {
      const tuned = interval === torch.monitorInterval ? ' (default)' : '';
      contenders.push({
        name: `torchrun --monitor_interval ${interval}${tuned} --no_python true`,
        measure: () => {
          const s = run(PY, torchrun(['--monitor_interval', interval, '--no_python'], ['true'])).secs;
          checkNothingLeft('local start, torchrun');
          return s;
        },
      });
    }
  }
  const r = rounds(contenders);
  const nodeE0 = r['`node -e 0` (one Node start)'];
  target(
    'local',
    'local start, 8 no-op ranks ÷ `node -e 0` (issue 19: at most 3)',
    r.npurun.secs / nodeE0.secs,
    3,
    '×',
  );
  // Context, not contenders: what the interpreters alone cost before either launcher does anything.
  const contextRuns = Math.min(REPEAT, 3);
  const nodeAlone = median(Array.from({ length: contextRuns }, () => run('node', [BIN, '--version']).secs));
  const torchImport = torch
    ? median(Array.from({ length: contextRuns }, () => run(PY, ['-c', 'import torch.distributed.run']).secs))
    : undefined;
  return compared('local start, 8 no-op ranks (wall time of the launcher)', r, 'npurun', {
    remark:
      `run.json checked after every round (8 ranks, each exited 0); launcher peak RSS ${mib(median(rss.slice(WARMUP)))}; ` +
      `of which starting the interpreter and loading the code: \`npurun --version\` ${fmt(nodeAlone)}` +
      (torchImport ? `, \`import torch.distributed.run\` ${fmt(torchImport)}` : ''),
    nodeAloneSecs: nodeAlone,
    torchImportSecs: torchImport,
    launcherRssKiB: rss,
  });
}

// 2. Failure to all-stopped: rank 3 exits 1 after 1 s, the others sleep 60.
export function benchFailure(torch) {
  const failer = join(work, 'fail.py');
  writeFileSync(
    failer,
    [
      'import os, sys, time',
      'if os.environ["RANK"] == "3":',
      '    time.sleep(1)',
      '    with open(os.environ["STAMP"], "w") as f:',
      '        f.write(repr(time.time()))',
      '    sys.exit(1)',
      'time.sleep(60)',
      '',
    ].join('\n'),
  );
  // From rank 3's last act to the launcher's exit, both clocks being this machine's wall clock.
  const measure = (label, start) => (i) => {
    const stamp = join(work, `stamp-${label}-${i}`);
    start({ expect: 1, env: { STAMP: stamp } });
    const end = Date.now() / 1000;
    checkNothingLeft(`failure, ${label}`);
    if (!existsSync(stamp))
      throw new Error(`${label}: rank 3 never wrote its exit time (did another rank fail first?)`);
    return end - Number(readFileSync(stamp, 'utf8'));
  };
  const contenders = [
    {
      name: 'npurun',
      measure: measure('npurun', (opts) => {
        const runs = freshRuns('fail');
        runNpurun(npurunLaunch(runs, [PY, failer]), opts);
        checkRunRecord('failure, npurun', runs, { ranks: 8, status: 'failed', exitCode: 1 });
        rmSync(runs, { recursive: true, force: true });
      }),
    },
  ];
  if (torch) {
    contenders.push({
      name: `torchrun --monitor_interval ${torch.monitorInterval} (default)`,
      measure: measure('torchrun', (o) => run(PY, torchrun([], [failer]), o)),
    });
    contenders.push({
      name: 'torchrun --monitor_interval 0.1',
      measure: measure('torchrun-0.1', (o) => run(PY, torchrun(['--monitor_interval', '0.1'], [failer]), o)),
    });
  }
  const r = rounds(contenders);
  return compared(
    'failure: rank 3 of 8 exits 1, the others sleep; its exit until the launcher has stopped all and exited',
    r,
    'npurun',
    {
      remark:
        "both exit 1 (the failed rank's code); checked right at exit that no rank is still running; npurun's run.json says failed, exit code 1, 8 ranks",
    },
  );
}

/** The log row's writer: line i of rank r is check-logs.mjs's expectedLine(r, i); BENCH_FAULT breaks rank 3 on purpose. */
export function writeWriter(file) {
  const k = Math.floor(LINES / 2);
  const faults = {
    'drop-line': `    if r == "3" and i == ${k}: continue\n`,
    'cut-line': `    if r == "3" and i == ${k}:\n        w(("rank %s line %d some training log text loss:1.234567" % (r, i))[:5] + "\\n"); continue\n`,
    'swap-lines': `    if r == "3" and i == ${k}: i = ${k + 1}\n    elif r == "3" and i == ${k + 1}: i = ${k}\n`,
  };
  writeFileSync(
    file,
    `import os, sys\nr = os.environ.get("RANK", "0")\nw = sys.stdout.write\nfor i in range(${LINES}):\n${faults[FAULT] ?? ''}    w("rank %s line %d some training log text loss:1.234567\\n" % (r, i))\n`,
  );
}

// 3. Log throughput: 8 ranks × LINES lines, everything saved, every line checked.
export function benchLogs(torch) {
  const writer = join(work, 'writer.py');
  writeWriter(writer);
  const bytes = { total: 0 };
  const checks = new Map();
  const cpu = {};
  const rss = { npurun: [] };
  const verdict = (label, p) => {
    if (p) problem(`log throughput, ${label}: ${p}`);
    checks.set(label, checks.get(label) === false ? false : !p);
  };
  const counted = (label, cmd, args) => {
    const r = runCounted(cmd, args);
    (cpu[label] ??= []).push(r.cpu);
    return r;
  };
  const contenders = [
    {
      name: 'npurun',
      measure: () => {
        const runs = freshRuns('logs');
        const r = runNpurun(npurunLaunch(runs, [PY, writer]), { counted: true });
        (cpu.npurun ??= []).push(r.cpu);
        rss.npurun.push(r.rssKiB);
        checkNothingLeft('log throughput, npurun');
        checkRunRecord('log throughput, npurun', runs, { ranks: 8 });
        const dirs = readdirSync(runs).filter((d) => existsSync(join(runs, d, 'run.json')));
        const dir = join(runs, dirs[0] ?? 'none');
        const rankLog = (rank) => join(dir, 'logs', `rank-${rank}.log`);
        verdict('npurun', checkRankLogs(rankLog, 8, LINES) ?? checkMergedLog(join(dir, 'merged.log'), 8, LINES));
        bytes.total = [0, 1, 2, 3, 4, 5, 6, 7].reduce(
          (n, k) => n + (existsSync(rankLog(k)) ? statSync(rankLog(k)).size : 0),
          0,
        );
        rmSync(runs, { recursive: true, force: true });
        return r.secs;
      },
    },
    {
      name: 'ranks writing straight to files (floor)',
      measure: (i) => {
        const d = join(work, `logs-floor-${i}`);
        mkdirSync(d);
        const r = counted('floor', 'sh', [
          '-c',
          `for r in 0 1 2 3 4 5 6 7; do RANK=$r ${PY} ${writer} > ${d}/rank$r.log & done; wait`,
        ]);
        verdict(
          'floor',
          checkRankLogs((k) => join(d, `rank${k}.log`), 8, LINES),
        );
        rmSync(d, { recursive: true, force: true });
        return r.secs;
      },
    },
  ];
  if (torch) {
    for (const mode of ['redirects', 'tee']) {
      const label = `torchrun --${mode}`;
      contenders.push({
        // At the default 5 s monitor interval torchrun's time would be its polling, not its logging.
        name:
          `torchrun --monitor_interval 0.1 --${mode} 3 --log_dir` +
          (mode === 'tee' ? ' (files + prefixed console, to /dev/null)' : ' (files only)'),
        measure: (i) => {
          const d = join(work, `logs-torch-${mode}-${i}`);
          const r = counted(
            label,
            PY,
            torchrun(['--monitor_interval', '0.1', `--${mode}`, '3', '--log_dir', d], [writer]),
          );
          checkNothingLeft(`log throughput, ${label}`);
          verdict(label, checkTorchrunLogs(d));
          rmSync(d, { recursive: true, force: true });
          return r.secs;
        },
      });
    }
  }
  const r = rounds(contenders);
  const verified = [...checks]
    .map(([k, ok]) => `${k}: ${ok ? 'every line saved' : 'LINES LOST OR DAMAGED'}`)
    .join('; ');
  notes.push(
    `log throughput, every line checked (content and order per rank, ${LINES} per rank, all 8 files; npurun: per-rank logs and merged.log): ${verified}`,
  );
  const cpuMedians = Object.entries(cpu)
    .filter(([, v]) => v.length > WARMUP && !Number.isNaN(v[WARMUP]))
    .map(([k, v]) => `${k} ${median(v.slice(WARMUP)).toFixed(2)}`);
  return compared(`log throughput, 8 ranks × ${LINES} lines, everything saved (wall time)`, r, 'npurun', {
    mibPerSecond: bytes.total / 2 ** 20 / r.npurun.secs,
    launcherRssKiB: rss.npurun,
    cpuSeconds: Object.fromEntries(
      Object.entries(cpu).map(([k, v]) => [k, { median: median(v.slice(WARMUP)), samples: v.slice(WARMUP) }]),
    ),
    remark:
      `npurun saves each line twice (per-rank log and merged.log): ${(bytes.total / 2 ** 20).toFixed(0)} MiB of rank output at ${(bytes.total / 2 ** 20 / r.npurun.secs).toFixed(0)} MiB/s; ` +
      `launcher peak RSS ${mib(median(rss.npurun.slice(WARMUP)))}; CPU seconds (user + system, launcher and ranks, GNU time): ${cpuMedians.join(', ') || 'n/a'}`,
  });
}

/** torchrun --log_dir D: D/<run id>/attempt_0/<local rank>/stdout.log for each of the 8 ranks. */
function checkTorchrunLogs(d) {
  const found = new Map();
  for (const p of readdirSync(d, { recursive: true, encoding: 'utf8' })) {
    const m = /(?:^|\/)(\d+)\/stdout\.log$/.exec(p);
    if (m) found.set(Number(m[1]), join(d, p));
  }
  for (let rank = 0; rank < 8; rank++) {
    if (!found.has(rank)) return `${d}: no stdout.log for rank ${rank} (found ${found.size})`;
    const p = checkRankLog(found.get(rank), rank, LINES);
    if (p) return p;
  }
  return undefined;
}

// 4. Memory (issue 17.11): launcher peak RSS while ranks print huge output without a newline.
export function benchMemory() {
  const results = [];
  for (const [mibPerRank, ranks] of MEM) {
    const runs = freshRuns('mem');
    const script = `import sys\nb = b"x" * (1 << 20)\nw = sys.stdout.buffer.write\nfor _ in range(${mibPerRank}):\n    w(b)\nsys.stdout.flush()\n`;
    const what = `${ranks} rank(s) × ${mibPerRank} MiB without a newline`;
    process.stderr.write(`npurun bench: memory, ${what}...\n`);
    try {
      const r = runNpurun(npurunLaunch(runs, [PY, '-c', script], ranks));
      checkNothingLeft(`memory, ${what}`);
      checkRunRecord(`memory, ${what}`, runs, { ranks });
      target(
        'memory',
        `launcher peak RSS, ${what} (issue 17.11: at most ${RSS_BOUND_MIB} MiB)`,
        r.rssKiB / 1024,
        RSS_BOUND_MIB,
        ' MiB',
      );
      results.push({ what, mibPerRank, ranks, secs: r.secs, launcherRssKiB: r.rssKiB });
    } catch (e) {
      // A launcher that dies of it (out of memory, a crash) misses the target too; the other rows go on.
      target(
        'memory',
        `launcher peak RSS, ${what} (issue 17.11: at most ${RSS_BOUND_MIB} MiB): the launch failed`,
        Infinity,
        RSS_BOUND_MIB,
        ' MiB',
      );
      results.push({ what, mibPerRank, ranks, error: e.message.slice(0, 300) });
    } finally {
      rmSync(runs, { recursive: true, force: true });
    }
  }
  return { name: 'memory: launcher peak RSS while ranks print without a newline', memory: results };
}
