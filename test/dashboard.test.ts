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

function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; type: string; body: string }> {
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

  it('on any other address, warns that every rank\'s output is exposed', async () => {
    const warnings: string[] = [];
    open = await startDashboard({ runDir: FIXTURE, port: 0, host: '0.0.0.0', warn: (m) => warnings.push(m) });
    expect(warnings).toEqual(["dashboard listens on 0.0.0.0: anyone who can reach it can read every rank's output"]);
    expect((await get(open.url, { host: 'some-name' })).status).toBe(200);
  });

  it('a folder that is not a run is refused before listening', async () => {
    await expect(startDashboard({ runDir: '/nonexistent-run', port: 0 })).rejects.toThrow(/run\.json/);
  });
});
