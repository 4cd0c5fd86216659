import { readdir, readFile, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { EVENTS_FILE, MERGED_LOG_FILE, RUN_RECORD_FILE } from '../run-folder/record.js';
import { findStragglers, type Straggler } from '../summary/stragglers.js';
import { buildReportData, readEvents, readRunRecordFile, runIsLive, type ReportData } from './model.js';
import { renderReportHtml } from './page.js';
import { RunSeriesReader } from './series.js';

/**
 * The live dashboard: an HTTP server on loopback serving the report page of one run folder, and a
 * server-sent event stream that carries the page's data again whenever the folder changed. It only
 * reads the folder, so it follows a run started by any npurun process, and keeps serving after it.
 */

export interface DashboardOptions {
  runDir: string;
  /** 0: any free port. */
  port?: number;
  /** Default 127.0.0.1. Anything but loopback exposes every rank's output: `warn` says so. */
  host?: string;
  /** How often the run folder is looked at (ms). */
  pollMs?: number;
  warn?: (message: string) => void;
}

export interface Dashboard {
  url: string;
  close(): Promise<void>;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

async function fingerprint(runDir: string): Promise<string> {
  const parts = await Promise.all(
    [RUN_RECORD_FILE, EVENTS_FILE, MERGED_LOG_FILE].map((f) =>
      stat(join(runDir, f)).then(
        (s) => `${s.size}:${s.mtimeMs}`,
        () => '-',
      ),
    ),
  );
  return parts.join('|');
}

/** Follows one run folder: re-reads what changed, keeps the page data of the latest look. */
class RunFolderFollower {
  private readonly series: RunSeriesReader;
  private last = '';
  private finished = false;
  /** Judged once the run is over (a pass over the whole log: not on every look of a live run). */
  private stragglers: Straggler[] = [];
  data: ReportData | undefined;
  json = '';

  constructor(private readonly runDir: string) {
    this.series = new RunSeriesReader(runDir);
  }

  /** true when the data changed. */
  async update(): Promise<boolean> {
    const now = await fingerprint(this.runDir);
    if (now === this.last && this.data) return false;
    const record = await readRunRecordFile(this.runDir);
    await this.series.refresh();
    if (!runIsLive(record) && !this.finished) {
      this.series.finish();
      this.finished = true;
      const pattern = record.job?.progressPattern;
      this.stragglers = await findStragglers(this.runDir, pattern !== undefined ? { progressPattern: pattern } : {});
    }
    this.data = buildReportData(record, await readEvents(this.runDir), this.series, new Date(), this.stragglers);
    this.json = JSON.stringify(this.data);
    this.last = now;
    return true;
  }

  close(): Promise<void> {
    return this.series.close();
  }
}

function hostAllowed(req: IncomingMessage, bound: string): boolean {
  if (!LOOPBACK.has(bound)) return true;
  // Bound to loopback: refuse names that are not (a page elsewhere rebinding its DNS to 127.0.0.1).
  const name = (req.headers.host ?? '').replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
  return LOOPBACK.has(name);
}

export async function startDashboard(opts: DashboardOptions): Promise<Dashboard> {
  const host = opts.host ?? '127.0.0.1';
  const pollMs = opts.pollMs ?? 500;
  const follower = new RunFolderFollower(opts.runDir);
  await follower.update();
  const clients = new Set<ServerResponse>();

  const server = createServer((req, res) => {
    if (!hostAllowed(req, host)) {
      res.writeHead(403, { 'content-type': 'text/plain' }).end('npurun dashboard: only served to localhost\n');
      return;
    }
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET') {
      res.writeHead(405, { allow: 'GET' }).end();
    } else if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(renderReportHtml(follower.data as ReportData, { liveUrl: '/events' }));
    } else if (path === '/data.json') {
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(follower.json);
    } else if (path === '/events') {
      res.writeHead(200, {
        'content-type': 'text/event-stream',
        'cache-control': 'no-store',
        connection: 'keep-alive',
      });
      res.write(`data: ${follower.json}\n\n`);
      clients.add(res);
      req.on('close', () => clients.delete(res));
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  });

  let polling = true;
  let timer: NodeJS.Timeout | undefined;
  const poll = async () => {
    const started = Date.now();
    try {
      if (await follower.update()) for (const c of clients) c.write(`data: ${follower.json}\n\n`);
      else for (const c of clients) c.write(': idle\n\n');
    } catch {
      // A file replaced or half written as we read it: the next look sees it whole.
    }
    // A look that cost T ms waits 10 T before the next: beside a launcher, at most ~10% of its loop.
    if (polling) timer = setTimeout(() => void poll(), Math.max(pollMs, 10 * (Date.now() - started)));
  };

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  if (!LOOPBACK.has(host))
    (opts.warn ?? ((m) => process.stderr.write(`npurun: warning: ${m}\n`)))(
      `dashboard listens on ${host}: anyone who can reach it can read every rank's output`,
    );
  timer = setTimeout(() => void poll(), pollMs);
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : (opts.port ?? 0);
  const shown = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  const url = `http://${isIP(shown) === 6 ? `[${shown}]` : shown}:${port}/`;
  return {
    url,
    close: async () => {
      polling = false;
      if (timer) clearTimeout(timer);
      // The run's last state reaches open pages before the server goes.
      try {
        if (await follower.update()) for (const c of clients) c.write(`data: ${follower.json}\n\n`);
      } catch {
        // As in a poll: the pages keep what they had.
      }
      for (const c of clients) c.end();
      clients.clear();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await follower.close();
    },
  };
}

/**
 * `npurun launch --dashboard`: waits for the run folder this process is writing to appear in
 * `runsDir` (its run.json names this pid), then serves its dashboard and calls `onUrl`. `close()`
 * stops waiting or serving.
 */
export function dashboardOfThisLauncher(opts: {
  runsDir: string;
  port?: number;
  host?: string;
  onUrl: (url: string, runDir: string) => void;
}): { close(): Promise<void> } {
  let dashboard: Dashboard | undefined;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  const look = async () => {
    const runDir = await findOwnRunDir(opts.runsDir);
    if (closed) return;
    if (!runDir) {
      timer = setTimeout(() => void look(), 100);
      return;
    }
    try {
      dashboard = await startDashboard({
        runDir,
        ...(opts.port !== undefined ? { port: opts.port } : {}),
        ...(opts.host ? { host: opts.host } : {}),
      });
    } catch (err) {
      process.stderr.write(`npurun: warning: no dashboard: ${(err as Error).message}\n`);
      return;
    }
    if (closed) await dashboard.close();
    else opts.onUrl(dashboard.url, runDir);
  };
  void look();
  return {
    close: async () => {
      closed = true;
      if (timer) clearTimeout(timer);
      await dashboard?.close();
    },
  };
}

async function findOwnRunDir(runsDir: string): Promise<string | undefined> {
  let names: string[];
  try {
    names = await readdir(runsDir);
  } catch {
    return undefined;
  }
  for (const name of names.sort().reverse()) {
    try {
      const record = JSON.parse(await readFile(join(runsDir, name, RUN_RECORD_FILE), 'utf8')) as {
        launcher_pid?: number;
        launcher_host?: string;
      };
      if (record.launcher_pid === process.pid && record.launcher_host === hostname()) return join(runsDir, name);
    } catch {
      // Not a run folder, or its run.json is being written: the next look sees it.
    }
  }
  return undefined;
}
