// The report at scale: a synthetic 512-rank run folder (64 hosts x 8, 200 training lines per rank, a
// straggling host, a root cause, stopped ranks, checkpoint events), `npurun report` on it, and the page
// opened in headless Debian Chromium: time from navigation to the page drawn, and the file's size.
//   node bench/report-scale.mjs [--hosts 64] [--per-host 8] [--steps 200] [--keep DIR] [--screenshot PNG]
// Prints one JSON object; exits 1 when the page drew the wrong thing (a series or a cell missing).
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Writes a run folder as `npurun launch` leaves it (run.json, merged.log, events.jsonl); returns its path. */
export function writeSyntheticRun(
  parent,
  { hosts = 64, perHost = 8, steps = 200, rootCause = 203, slowHost = 5 } = {},
) {
  const runId = `20260101-000000-scale-${hosts * perHost}`;
  const dir = join(parent, runId);
  mkdirSync(join(dir, 'logs'), { recursive: true });
  const t0 = Date.parse('2026-01-01T00:00:00.000Z');
  const iso = (ms) => new Date(t0 + ms).toISOString();
  const world = hosts * perHost;
  const failAt = Math.floor(steps * 0.9);
  const ranks = [];
  for (let h = 0; h < hosts; h++) {
    for (let d = 0; d < perHost; d++) {
      const rank = h * perHost + d;
      const root = rank === rootCause;
      ranks.push({
        label: String(rank),
        rank,
        local_rank: d,
        node_rank: h,
        role: 'rank',
        host: `node${String(h).padStart(2, '0')}`,
        address: `10.0.${h >> 8}.${h & 255}`,
        device_id: d,
        cpus: [],
        cwd: `/work/train_parallel${rank}`,
        argv: ['python3', 'train.py'],
        env: { NPURUN_RANK: String(rank), NPURUN_CKPT_SAVE: '1' },
        exit: root
          ? { code: 1, signal: null, cause: 'exited', root_cause: true, ended_at: iso(failAt * 1000 + 500) }
          : { code: null, signal: 'SIGTERM', cause: 'stopped', root_cause: false, ended_at: iso(failAt * 1000 + 700) },
      });
    }
  }
  const log = [];
  for (let s = 1; s <= steps; s++) {
    for (const r of ranks) {
      if (r.rank === rootCause && s > failAt) continue;
      if (s > failAt + 1) continue;
      const slow = Math.floor(r.rank / perHost) === slowHost;
      const loss = (6 / (1 + 0.02 * s) + 0.05 * Math.sin(r.rank + s)).toFixed(5);
      const fps = ((slow ? 1500 : 3100) + 20 * Math.sin(r.rank * 7 + s)).toFixed(2);
      log.push(
        `${iso(s * 1000 + r.rank)} [${r.label} ${r.host} dev${r.device_id}] epoch[${1 + Math.floor(s / 20)}], iter[${s}], loss:${loss}, mean_fps:${fps}imgs/sec`,
      );
    }
  }
  const rc = ranks[rootCause];
  for (const line of [
    'Traceback (most recent call last):',
    '  File "train.py", line 88, in <module>',
    'RuntimeError: HCCL error: EI0002 The wait execution of the Notify register times out',
  ]) {
    log.push(`${iso(failAt * 1000 + 400)} [${rc.label} ${rc.host} dev${rc.device_id} stderr] ${line}`);
  }
  writeFileSync(join(dir, 'merged.log'), log.join('\n') + '\n');
  /** @type {Record<string, unknown>[]} */
  const events = [
    {
      time: iso(0),
      event: 'launch',
      world_size: world,
      hosts: ranks.filter((r) => r.local_rank === 0).map((r) => r.host),
    },
  ];
  for (const r of ranks) events.push({ time: iso(200), event: 'rank-started', label: r.label, host: r.host });
  for (let s = 20; s <= failAt; s += 20)
    for (const r of ranks)
      events.push({
        time: iso(s * 1000 + 300),
        event: 'ckpt-saved',
        label: r.label,
        host: r.host,
        epoch: s / 20,
        step: s,
        size: 4096,
      });
  events.push({
    time: iso(failAt * 1000 + 500),
    event: 'rank-exited',
    label: rc.label,
    host: rc.host,
    code: 1,
    signal: null,
    cause: 'exited',
    root_cause: true,
  });
  events.push({
    time: iso(failAt * 1000 + 510),
    event: 'stopping',
    reason: `rank ${rc.label} on ${rc.host} exited with code 1`,
    graceSeconds: 10,
  });
  for (const r of ranks)
    if (r !== rc)
      events.push({
        time: iso(failAt * 1000 + 700),
        event: 'rank-exited',
        label: r.label,
        host: r.host,
        code: null,
        signal: 'SIGTERM',
        cause: 'stopped',
        root_cause: false,
      });
  events.push({
    time: iso(failAt * 1000 + 800),
    event: 'finish',
    status: 'failed',
    exit_code: 1,
    root_cause: rc.label,
  });
  writeFileSync(
    join(dir, 'events.jsonl'),
    events.map((e) => JSON.stringify({ level: 30, run_id: runId, ...e })).join('\n') + '\n',
  );
  const record = {
    schema_version: 1,
    run_id: runId,
    npurun_version: 'bench',
    argv: ['npurun', 'launch'],
    cwd: '/work',
    launcher_host: 'bench-host',
    launcher_pid: 1,
    launcher_start_ticks: null,
    started_at: iso(0),
    ended_at: iso(failAt * 1000 + 800),
    status: 'failed',
    exit_code: 1,
    root_cause: rc.label,
    report: null,
    timestamps: false,
    remote_dir: `/tmp/npurun/${runId}`,
    rank_table_path: null,
    world_size: world,
    master_addr: '10.0.0.0',
    master_port: 29500,
    inventory: ranks
      .filter((r) => r.local_rank === 0)
      .map((r) => ({ name: r.host, address: r.address, local: false, devices: 'auto' })),
    job: {
      source: 'bench',
      profile: 'mindspore',
      command: ['python3', 'train.py'],
      env: {},
      workdir: '/work',
      rankDir: 'train_parallel{rank}',
      bindCores: false,
      graceSeconds: 10,
      masterPort: 29500,
      remoteDir: '/tmp/npurun/{run_id}',
      heartbeatTimeoutSeconds: 3,
      checkpoint: { interval: 1, unit: 'epoch', keepMax: 3, masterOnly: false },
    },
    ranks,
  };
  writeFileSync(join(dir, 'run.json'), JSON.stringify(record, null, 2) + '\n');
  return { dir, world, hosts, steps, failAt, rootCause: rc.label };
}

/** Opens a report file in headless Chromium; ms from navigation to the page drawn, and what it drew. */
export async function measureRender(file, screenshot) {
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({
    executablePath: process.env.NPURUN_CHROMIUM ?? '/usr/bin/chromium',
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`file://${file}`);
    await page.waitForSelector('body[data-rendered]', { timeout: 60_000 });
    // performance.now() counts from the navigation's start: parse, uPlot, data, every section drawn.
    const renderMs = await page.evaluate(() => performance.now());
    const drawn = await page.evaluate(() => ({
      // The page keeps its uPlot charts on window.npurunCharts.
      series: /** @type {Window & { npurunCharts?: Record<string, { series: { label?: string }[] }> }} */ (
        window
      ).npurunCharts['chart-loss'].series.filter((s) => String(s.label).startsWith('rank ')).length,
      cells: document.querySelectorAll('.cell').length,
      rootCause: document.querySelector('.cell[data-state="root-cause"]')?.getAttribute('data-rank') ?? null,
    }));
    if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
    return { renderMs, errors, ...drawn };
  } finally {
    await browser.close();
  }
}

async function main() {
  const { values } = parseArgs({
    options: {
      hosts: { type: 'string' },
      'per-host': { type: 'string' },
      steps: { type: 'string' },
      keep: { type: 'string' },
      screenshot: { type: 'string' },
    },
  });
  const parent = values.keep ?? mkdtempSync(join(tmpdir(), 'npurun-report-scale-'));
  try {
    const run = writeSyntheticRun(parent, {
      hosts: Number(values.hosts ?? 64),
      perHost: Number(values['per-host'] ?? 8),
      steps: Number(values.steps ?? 200),
    });
    const out = join(run.dir, 'report.html');
    const t = process.hrtime.bigint();
    const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'npurun'), 'report', run.dir, '--out', out], {
      encoding: 'utf8',
    });
    const reportMs = Number(process.hrtime.bigint() - t) / 1e6;
    if (r.status !== 0) throw new Error(`npurun report exited ${r.status}: ${r.stderr}`);
    const drawn = await measureRender(out, values.screenshot);
    const result = {
      ranks: run.world,
      hosts: run.hosts,
      linesPerRank: run.failAt,
      mergedLogBytes: statSync(join(run.dir, 'merged.log')).size,
      reportCommandMs: Math.round(reportMs),
      htmlBytes: statSync(out).size,
      renderMs: Math.round(drawn.renderMs),
      renderTargetMs: 2000,
      drawnSeries: drawn.series,
      drawnCells: drawn.cells,
      drawnRootCause: drawn.rootCause,
      pageErrors: drawn.errors,
    };
    process.stdout.write(JSON.stringify(result, null, 2) + '\n');
    const right =
      drawn.series === run.world &&
      drawn.cells === run.world &&
      drawn.rootCause === run.rootCause &&
      drawn.errors.length === 0;
    if (!right) process.stderr.write('!!! the page did not draw every rank, or the root cause\n');
    return right ? 0 : 1;
  } finally {
    if (!values.keep) rmSync(parent, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) process.exitCode = await main();
