import { request } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { startDashboard, type Dashboard } from '../src/report/dashboard.js';
import type { ReportData } from '../src/report/model.js';

// The dashboard's HTTP server on a real socket, serving a real run folder (the demo's).
const FIXTURE = new URL('./fixtures/report-demo/', import.meta.url).pathname;

let open: Dashboard | undefined;
afterEach(async () => {
  await open?.close();
  open = undefined;
});

function get(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    request(url, { headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
        // An event stream never ends: its first event is enough.
        if (res.headers['content-type'] === 'text/event-stream' && body.includes('\n\n')) res.destroy();
      });
      res.on('close', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }));
    })
      .on('error', reject)
      .end();
  });
}

describe('npurun dashboard server', () => {
  it('listens on 127.0.0.1 by default and serves the live page, its data and an event stream', async () => {
    open = await startDashboard({ runDir: FIXTURE, port: 0 });
    expect(open.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    const page = await get(open.url);
    expect(page.status).toBe(200);
    expect(page.type).toBe('text/html; charset=utf-8');
    expect(page.body).toContain('window.NPURUN_LIVE = "/events"');
    const data = JSON.parse((await get(`${open.url}data.json`)).body) as ReportData;
    expect(data.run.id).toBe('20261123-201306-demo-77f2');
    expect(data.charts.points).toEqual(Array(8).fill(10));
    const events = await get(`${open.url}events`);
    expect(events.type).toBe('text/event-stream');
    expect((JSON.parse(events.body.replace(/^data: /, '')) as ReportData).run.id).toBe('20261123-201306-demo-77f2');
    expect((await get(`${open.url}nothing`)).status).toBe(404);
  });

  it('bound to loopback, refuses requests that name another host (DNS rebinding)', async () => {
    open = await startDashboard({ runDir: FIXTURE, port: 0 });
    expect((await get(open.url, { host: 'evil.example:80' })).status).toBe(403);
    expect((await get(open.url, { host: 'localhost' })).status).toBe(200);
  });

  it("on any other address, warns that every rank's output is exposed", async () => {
    const warnings: string[] = [];
    open = await startDashboard({ runDir: FIXTURE, port: 0, host: '0.0.0.0', warn: (m) => warnings.push(m) });
    expect(warnings).toEqual(["dashboard listens on 0.0.0.0: anyone who can reach it can read every rank's output"]);
    expect((await get(open.url, { host: 'some-name' })).status).toBe(200);
  });

  it('a folder that is not a run is refused before listening', async () => {
    await expect(startDashboard({ runDir: '/nonexistent-run', port: 0 })).rejects.toThrow(/run\.json/);
  });
});

describe('npurun launch --dashboard (processes)', () => {
  it('serves the run it launches while it runs, says where, and closes with it', async () => {
    const { spawn } = await import('node:child_process');
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { ensureBuilt } = await import('./helpers/cli-build.js');
    const { ROOT } = await import('./helpers/run-writer.js');
    await ensureBuilt();
    const base = mkdtempSync(join(tmpdir(), 'npurun-launch-dash-'));
    try {
      const child = spawn(
        process.execPath,
        [
          join(ROOT, 'bin', 'npurun'),
          'launch',
          '--share-devices',
          '--dashboard',
          '--dashboard-port',
          '0',
          '--run-dir',
          join(base, 'runs'),
          '--console',
          'none',
          '--simulate',
          '2',
          '--devices',
          '0,1',
          '--workdir',
          base,
          '--',
          'python3',
          join(ROOT, 'test/programs/train_lines.py'),
          '--steps',
          '12',
          '--step-time',
          '0.25',
        ],
        { cwd: ROOT },
      );
      let err = '';
      child.stderr.on('data', (c: Buffer) => (err += c.toString()));
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      const deadline = Date.now() + 20_000;
      let url: string | undefined;
      while (!(url = /dashboard at (http:\/\/127\.0\.0\.1:\d+\/)/.exec(err)?.[1]) && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 50));
      expect(url, err).toBeDefined();
      const data = JSON.parse((await get(`${url}data.json`)).body) as ReportData;
      expect(data.run.id).toMatch(/^\d{8}-\d{6}-/);
      expect(data.run.live).toBe(true);
      expect(data.ranks.map((r) => r.state)).toEqual(['running', 'running']);
      expect(await exited).toBe(0);
      await expect(get(url as string)).rejects.toThrow(/ECONNREFUSED/);
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  }, 60_000);
});
