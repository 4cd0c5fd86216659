import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { browserMissing, launchBrowser, READ_CHARTS, TEST_OUTPUT, type DrawnChart } from './helpers/browser.js';
import { ensureBuilt } from './helpers/cli-build.js';
import { ROOT } from './helpers/run-writer.js';

// Real runs (the demo, and a job whose rank 3 raises and exits 7), their `npurun report` pages
// opened from disk in headless Chromium, checked from what the page drew.

const missing = browserMissing();
const runsDir = mkdtempSync(join(tmpdir(), 'npurun-report-runs-'));
const workDir = mkdtempSync(join(tmpdir(), 'npurun-report-work-'));
let browser: Browser;

function npurun(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'npurun'), ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Launches a job into runsDir and returns its run folder. */
function launch(args: string[], expectCode: number): string {
  const before = new Set(readdirSync(runsDir));
  // --share-devices: simulated NPUs, and other runs on this machine (other tests) may hold the same numbers.
  const r = npurun(['launch', '--share-devices', '--run-dir', runsDir, '--console', 'none', ...args]);
  expect(r.code, r.stderr).toBe(expectCode);
  const made = readdirSync(runsDir).filter((d) => !before.has(d));
  expect(made).toHaveLength(1);
  return join(runsDir, made[0] as string);
}

/** Training lines per rank, from the run's metrics.jsonl. */
function trainPoints(runDir: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const line of readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n')) {
    const row = JSON.parse(line) as { kind: string; rank: string };
    if (row.kind === 'train') counts.set(row.rank, (counts.get(row.rank) ?? 0) + 1);
  }
  return counts;
}

/** Opens a report file, returns what it drew; keeps a full-page screenshot in test-output/. */
async function openReport(file: string, shot: string) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const requests: string[] = [];
  const errors: string[] = [];
  page.on('request', (r) => requests.push(r.url()));
  page.on('pageerror', (e) => errors.push(e.message));
  const t0 = Date.now();
  await page.goto(`file://${file}`);
  await page.waitForSelector('body[data-rendered]');
  const renderMs = Date.now() - t0;
  const charts = (await page.evaluate(READ_CHARTS)) as Record<string, DrawnChart>;
  const cells = await page.$$eval('.cell', (els) =>
    els.map((e) => ({
      rank: e.getAttribute('data-rank'),
      state: e.getAttribute('data-state'),
      href: e.getAttribute('href'),
    })),
  );
  await page.screenshot({ path: join(TEST_OUTPUT, shot), fullPage: true });
  return { page, requests, errors, renderMs, charts, cells };
}

describe.skipIf(missing !== undefined)(
  `report page in headless Chromium${missing ? ` (skipped: ${missing})` : ''}`,
  () => {
    beforeAll(async () => {
      await ensureBuilt();
      browser = await launchBrowser();
    }, 120_000);
    afterAll(async () => {
      await browser?.close();
      rmSync(runsDir, { recursive: true, force: true });
      rmSync(workDir, { recursive: true, force: true });
    });

    it('the demo run: one loss and one fps series per rank with every training line, all ranks ended well, allreduce agrees, no network', async () => {
      const runDir = launch(['--job', 'templates/demo-8p.yaml'], 0);
      const out = join(runDir, 'demo-report.html');
      const r = npurun(['report', runDir, '--out', out, '--csv']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain(out);
      expect(readFileSync(join(runDir, 'metrics.csv'), 'utf8').split('\n')[0]).toMatch(
        /^time,rank,host,device,kind,epoch,step,loss,fps,/,
      );
      const expected = trainPoints(runDir);
      expect([...expected.values()]).toEqual(Array(8).fill(10));

      const { page, requests, errors, charts, cells } = await openReport(out, 'report-demo.png');
      expect(errors).toEqual([]);
      expect(requests.every((u) => u.startsWith('file://'))).toBe(true);
      for (const id of ['chart-loss', 'chart-fps']) {
        expect(charts[id]?.ranks).toEqual(['0', '1', '2', '3', '4', '5', '6', '7']);
        expect(charts[id]?.points).toEqual(charts[id]?.ranks.map((l) => expected.get(l)));
      }
      // Every rank ended well; one the shared machine slowed may be named a straggler, as summary would.
      expect(cells.every((c) => c.state === 'ok' || c.state === 'straggler')).toBe(true);
      expect(await page.textContent('#allreduce-verdict')).toContain('agrees');
      expect(await page.textContent('#eval-accuracy')).toMatch(/top-1 \d+\/50000/);
      expect(await page.isHidden('#root-cause')).toBe(true);
      await page.close();
    });

    it('a failed run: rank 3 is the root cause in the grid and the panel, its series stops where it died', async () => {
      const runDir = launch(
        [
          '--simulate',
          '8',
          '--devices',
          '[0,8)',
          '--name',
          'fail',
          '--workdir',
          workDir,
          '--grace',
          '2',
          '--',
          'python3',
          join(ROOT, 'test/programs/train_lines.py'),
          '--steps',
          '200',
          '--step-time',
          '0.05',
          '--fail-rank',
          '3',
          '--fail-at',
          '6',
        ],
        7,
      );
      const out = join(runDir, 'failed-report.html');
      expect(npurun(['report', runDir, '--out', out]).code).toBe(0);
      const expected = trainPoints(runDir);
      expect(expected.get('3')).toBe(5);

      const { page, errors, charts, cells } = await openReport(out, 'report-failed.png');
      expect(errors).toEqual([]);
      expect(cells.find((c) => c.rank === '3')).toEqual({ rank: '3', state: 'root-cause', href: '#rank-3' });
      expect(cells.filter((c) => c.state === 'stopped').map((c) => c.rank)).toEqual([
        '0',
        '1',
        '2',
        '4',
        '5',
        '6',
        '7',
      ]);
      expect(await page.textContent('#root-rank')).toBe('3');
      expect(await page.textContent('#root-how-it-ended')).toBe('exited with code 7');
      expect(await page.textContent('#root-classification')).toBe(
        'Python exception: ValueError: loss exploded on rank 3',
      );
      expect(await page.textContent('#root-cause pre')).toContain('[stderr] ValueError: loss exploded on rank 3');
      expect(charts['chart-loss']?.points).toEqual(charts['chart-loss']?.ranks.map((l) => expected.get(l)));
      // The cell links to that rank's last lines, which open.
      await page.click('.cell[data-rank="3"]');
      expect(await page.$eval('#rank-3', (d) => d.hasAttribute('open'))).toBe(true);
      expect(await page.textContent('#rank-3 pre')).toContain('ValueError: loss exploded on rank 3');
      expect(await page.textContent('#timeline')).toContain('rank 3 (vm) exited with code 7: root cause');
      await page.close();
    });
  },
);

describe.skipIf(missing !== undefined)(
  `report of a 512-rank run in headless Chromium${missing ? ` (skipped: ${missing})` : ''}`,
  () => {
    it('draws 512 series and 512 cells with the root cause, within the bench bound (2 s target, checked loosely here)', async () => {
      await ensureBuilt();
      const r = spawnSync(
        process.execPath,
        [join(ROOT, 'bench', 'report-scale.mjs'), '--screenshot', join(TEST_OUTPUT, 'report-512.png')],
        { cwd: ROOT, encoding: 'utf8', timeout: 110_000 },
      );
      expect(r.status, r.stderr).toBe(0);
      const m = JSON.parse(r.stdout) as {
        ranks: number;
        drawnSeries: number;
        drawnCells: number;
        drawnRootCause: string;
        renderMs: number;
        htmlBytes: number;
        pageErrors: string[];
      };
      expect(m).toMatchObject({ ranks: 512, drawnSeries: 512, drawnCells: 512, drawnRootCause: '203', pageErrors: [] });
      // The bench's target is 2 s; a machine shared with other work gets slack here, the bench row tells.
      expect(m.renderMs).toBeLessThan(5000);
      expect(m.htmlBytes).toBeLessThan(4 * 1024 * 1024);
    }, 120_000);
  },
);
