import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt } from './helpers/cli-build.js';
import { ROOT } from './helpers/run-writer.js';

// `npurun report` and `npurun dashboard` as processes: where they write, and bad input.
const FIXTURE = new URL('./fixtures/report-demo/', import.meta.url).pathname;
const runsDir = mkdtempSync(join(tmpdir(), 'npurun-report-cli-'));
const RUN = '20261123-201306-demo-77f2';

function npurun(args: string[]) {
  const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'npurun'), ...args], {
    cwd: runsDir,
    encoding: 'utf8',
    timeout: 30_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(async () => {
  await ensureBuilt();
  cpSync(FIXTURE, join(runsDir, 'runs', RUN), { recursive: true });
}, 120_000);
afterAll(() => rmSync(runsDir, { recursive: true, force: true }));

describe('npurun report (process)', () => {
  it('finds the newest run in ./runs, writes report.html and metrics.jsonl there, and --csv', () => {
    const r = npurun(['report', '--csv']);
    expect(r.code, r.stderr).toBe(0);
    const dir = join(runsDir, 'runs', RUN);
    expect(r.stdout.trim().split('\n')).toEqual([
      join(dir, 'report.html'),
      join(dir, 'metrics.jsonl'),
      join(dir, 'metrics.csv'),
    ]);
    expect(readFileSync(join(dir, 'report.html'), 'utf8')).toMatch(/^<!doctype html>/);
    expect(readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n')).toHaveLength(112);
    expect(readFileSync(join(dir, 'metrics.csv'), 'utf8').trim().split('\n')).toHaveLength(113);
  });

  it('takes a run id prefix with --runs-dir, and --out', () => {
    const out = join(runsDir, 'elsewhere.html');
    const r = npurun(['report', RUN.slice(0, 12), '--runs-dir', join(runsDir, 'runs'), '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(out)).toBe(true);
  });

  it('bad input: exit 2, one line naming what was expected', () => {
    const unknown = npurun(['report', 'nosuchrun']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/^npurun: nosuchrun: no such run in .*; expected a run id/);
    const noDir = npurun(['report', '--out', join(runsDir, 'missing', 'dir', 'r.html')]);
    expect(noDir.code).toBe(2);
    expect(noDir.stderr).toMatch(/^npurun: --out: cannot write .*missing\/dir\/r\.html/);
    const flag = npurun(['report', '--bogus']);
    expect(flag.code).toBe(2);
    expect(npurun(['report', 'a', 'b']).stderr).toContain('one run expected, got 2');
    expect(npurun(['dashboard', '--port', '70000']).code).toBe(2);
    expect(npurun(['dashboard', '--port', '1.5']).stderr).toContain('--port');
  });

  it('--help of both commands', () => {
    expect(npurun(['report', '--help']).stdout).toContain('Usage: npurun report [RUN]');
    expect(npurun(['dashboard', '--help']).stdout).toContain('Usage: npurun dashboard [RUN]');
  });
});

describe('npurun report on a broken run folder', () => {
  it('a run.json that is not a run record: exit 2 naming the file', () => {
    const dir = join(runsDir, 'broken');
    cpSync(FIXTURE, dir, { recursive: true });
    writeFileSync(join(dir, 'run.json'), '{"run_id": 5}');
    const r = npurun(['report', dir]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      `npurun: ${join(dir, 'run.json')}: schema_version missing; expected 1 (a run.json written by npurun launch)\n`,
    );
  });

  it('a folder with only run.json (no output yet): a page with no charts', () => {
    const dir = join(runsDir, 'bare');
    mkdirSync(dir);
    cpSync(join(FIXTURE, 'run.json'), join(dir, 'run.json'));
    const r = npurun(['report', dir]);
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(join(dir, 'metrics.jsonl'), 'utf8')).toBe('');
  });
});

describe('npurun report on the folder of a launcher killed mid-run', () => {
  it('still writes the page and every metric line that reached the folder', async () => {
    const { spawn } = await import('node:child_process');
    const work = mkdtempSync(join(tmpdir(), 'npurun-report-killed-'));
    const runs = join(work, 'runs');
    const child = spawn(
      process.execPath,
      [
        join(ROOT, 'bin', 'npurun'),
        'launch',
        '--share-devices',
        '--run-dir',
        runs,
        '--console',
        'none',
        '--simulate',
        '2',
        '--devices',
        '0,1',
        '--workdir',
        work,
        '--',
        'python3',
        join(ROOT, 'test/programs/train_lines.py'),
        '--steps',
        '400',
        '--step-time',
        '0.05',
      ],
      { cwd: ROOT, stdio: 'ignore' },
    );
    const exited = new Promise((resolve) => child.on('exit', resolve));
    try {
      const deadline = Date.now() + 20_000;
      const trainLines = () => {
        try {
          const dir = join(runs, readdirSync(runs)[0] as string);
          return readFileSync(join(dir, 'merged.log'), 'utf8')
            .split('\n')
            .filter((l) => l.includes('iter[')).length;
        } catch {
          return 0;
        }
      };
      while (trainLines() < 10 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      child.kill('SIGKILL');
      await exited;
      const dir = join(runs, readdirSync(runs)[0] as string);
      const r = npurun(['report', dir]);
      expect(r.code, r.stderr).toBe(0);
      const html = readFileSync(join(dir, 'report.html'), 'utf8');
      expect(html).toContain('"status":"unknown (launcher gone)"');
      const rows = readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { kind: string });
      const logged = readFileSync(join(dir, 'merged.log'), 'utf8')
        .split('\n')
        .filter((l) => l.includes('iter[')).length;
      expect(rows.filter((x) => x.kind === 'train')).toHaveLength(logged);
      expect(logged).toBeGreaterThanOrEqual(10);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      rmSync(work, { recursive: true, force: true });
    }
  }, 60_000);
});
