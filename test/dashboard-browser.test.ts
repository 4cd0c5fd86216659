import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { browserMissing, launchBrowser, READ_CHARTS, TEST_OUTPUT, type DrawnChart } from './helpers/browser.js';
import { ensureBuilt } from './helpers/cli-build.js';
import { ROOT } from './helpers/run-writer.js';

// A run started by one npurun process, its dashboard served by another, watched in headless
// Chromium: the page gains points while the run goes and says when it is over.

const missing = browserMissing();
const runsDir = mkdtempSync(join(tmpdir(), 'npurun-dash-runs-'));
const workDir = mkdtempSync(join(tmpdir(), 'npurun-dash-work-'));
const children: ChildProcessWithoutNullStreams[] = [];
let browser: Browser;

function start(args: string[]): {
  child: ChildProcessWithoutNullStreams;
  out: () => string;
  exited: Promise<number | null>;
} {
  const child = spawn(process.execPath, [join(ROOT, 'bin', 'npurun'), ...args], { cwd: ROOT });
  children.push(child);
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, out: () => out, exited };
}

async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

async function lossPoints(page: Page): Promise<number[] | undefined> {
  const charts = (await page.evaluate(READ_CHARTS)) as Record<string, DrawnChart>;
  return charts['chart-loss']?.points;
}

describe.skipIf(missing !== undefined)(
  `live dashboard in headless Chromium${missing ? ` (skipped: ${missing})` : ''}`,
  () => {
    beforeAll(async () => {
      await ensureBuilt();
      browser = await launchBrowser();
    }, 120_000);
    afterAll(async () => {
      for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
      await browser?.close();
      rmSync(runsDir, { recursive: true, force: true });
      rmSync(workDir, { recursive: true, force: true });
    });

    it('gains points while another npurun runs the job, and shows the whole run once it ended', async () => {
      const steps = 24;
      const run = start([
        'launch',
        '--share-devices',
        '--run-dir',
        runsDir,
        '--console',
        'none',
        '--simulate',
        '4',
        '--devices',
        '[0,4)',
        '--name',
        'live',
        '--workdir',
        workDir,
        '--',
        'python3',
        join(ROOT, 'test/programs/train_lines.py'),
        '--steps',
        String(steps),
        '--step-time',
        '0.3',
      ]);
      const runDir = await until('the run folder', () => {
        const d = readdirSync(runsDir)[0];
        return d && existsSync(join(runsDir, d, 'run.json')) ? join(runsDir, d) : undefined;
      });
      const dash = start(['dashboard', runDir, '--port', '0']);
      const url = await until('the dashboard URL', () => /at (http:\/\/127\.0\.0\.1:\d+\/)/.exec(dash.out())?.[1]);

      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(url);
      await page.waitForSelector('body[data-rendered]');
      const first = await until('a first training line on the page', async () => {
        const p = await lossPoints(page);
        return p && p.length === 4 && Math.min(...p) > 0 ? p : undefined;
      });
      expect(await page.textContent('#live-state')).toMatch(/live, updated/);
      // Without reloading, the same page draws more points as the ranks print them.
      const later = await until('more points on the live page', async () => {
        const p = await lossPoints(page);
        return p && Math.min(...p) >= Math.max(...first) + 2 ? p : undefined;
      });
      expect(Math.max(...later)).toBeLessThan(steps);
      expect(await page.$$eval('.cell', (els) => els.map((e) => e.getAttribute('data-state')))).toEqual([
        'running',
        'running',
        'running',
        'running',
      ]);
      await page.screenshot({ path: join(TEST_OUTPUT, 'dashboard-live.png'), fullPage: true });

      expect(await run.exited).toBe(0);
      await until('the page to say the run is over', async () =>
        (await page.textContent('#live-state')) === 'run over' ? true : undefined,
      );
      expect(await lossPoints(page)).toEqual([steps, steps, steps, steps]);
      // Every rank ended well (one the shared machine slowed may be named a straggler, as summary would).
      expect(
        (await page.$$eval('.cell', (els) => els.map((e) => e.getAttribute('data-state')))).every(
          (st) => st === 'ok' || st === 'straggler',
        ),
      ).toBe(true);
      expect(await page.textContent('.badge')).toBe('succeeded');
      await page.screenshot({ path: join(TEST_OUTPUT, 'dashboard-ended.png'), fullPage: true });
      expect(errors).toEqual([]);

      // After the run it keeps serving (a new visitor sees the finished run); SIGTERM ends it cleanly.
      const again = await browser.newPage();
      await again.goto(url);
      await again.waitForSelector('body[data-rendered]');
      expect(await lossPoints(again)).toEqual([steps, steps, steps, steps]);
      dash.child.kill('SIGTERM');
      expect(await dash.exited).toBe(0);
    });
  },
);
