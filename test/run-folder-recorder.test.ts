import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import type { HostSpec, RunPlan } from '../src/plan/types.js';
import type { RankTable } from '../src/ranktable/types.js';
import { parseMergedLine } from '../src/run-folder/log-format.js';
import { classifyFailure } from '../src/supervise/classify.js';
import { RunRecorder } from '../src/run-folder/recorder.js';
import { supervise } from '../src/supervise/supervisor.js';
import { LocalTransport } from '../src/transport/local.js';
import type { RunRecord } from '../src/run-folder/record.js';
import { manualPlan } from './helpers/plan.js';

const base = mkdtempSync(join(tmpdir(), 'npurun-rec-'));
const hostA: HostSpec = { name: 'server-a', address: '10.213.0.11', local: true, devices: 'auto' };
const hostB: HostSpec = {
  name: 'server-b',
  address: '10.213.0.12',
  local: false,
  devices: [0, 1, 2, 3],
  ssh: {
    hostname: '10.213.0.12',
    port: 22,
    user: 'train',
    identityFiles: ['/home/train/.ssh/id_ed25519'],
    knownHostsFiles: ['/home/train/.ssh/known_hosts'],
    strictHostKeyChecking: 'yes',
    useAgent: false,
  },
};
const schema = JSON.parse(readFileSync(new URL('../schemas/run.schema.json', import.meta.url), 'utf8')) as object;
const validateRecord = new Ajv({ allErrors: true }).compile(schema);

function twoHostPlan(runId: string, ranksPerHost: number, job: Partial<RunPlan['job']> = {}): RunPlan {
  const ranks = [hostA, hostB].flatMap((h, n) =>
    Array.from({ length: ranksPerHost }, (_, i) => ({
      rank: n * ranksPerHost + i,
      host: h.name,
      deviceId: i,
      cwd: `/work/train_parallel${n * ranksPerHost + i}`,
      argv: ['python', 'train.py', '--device_target=Ascend'],
      env: { RANK_ID: String(n * ranksPerHost + i), HF_TOKEN: 'hf_SECRET_VALUE_1' },
    })),
  );
  return manualPlan(runId, [hostA, hostB], ranks, job);
}

function readRecord(dir: string): RunRecord {
  return JSON.parse(readFileSync(join(dir, 'run.json'), 'utf8')) as RunRecord;
}

function expectValid(record: RunRecord): void {
  const ok = validateRecord(record);
  expect(validateRecord.errors ?? []).toEqual([]);
  expect(ok).toBe(true);
}

/** A console that takes its time: every write completes on a later turn of the event loop. */
function slowConsole(): { out: Writable; text: () => string } {
  const chunks: string[] = [];
  const out = new Writable({
    highWaterMark: 4096,
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString());
      setImmediate(cb);
    },
  });
  return { out, text: () => chunks.join('') };
}

/** Where two long line lists first differ (vitest's deep diff of 100k-element arrays is slow). */
function firstDifference(actual: string[], expected: string[]): string | undefined {
  const n = Math.max(actual.length, expected.length);
  for (let i = 0; i < n; i++)
    if (actual[i] !== expected[i])
      return `line ${i}: ${JSON.stringify(actual[i])} instead of ${JSON.stringify(expected[i])}`;
  return undefined;
}

describe('RunRecorder', () => {
  it('8 fast producers x 100k lines: every line, whole and in order, in per-rank files and merged.log, with bounded buffering', async () => {
    const plan = twoHostPlan('flood', 4);
    const screen = slowConsole();
    const rec = await RunRecorder.create({
      runsDir: base,
      plan,
      argv: ['npurun', 'launch'],
      console: 'rank0',
      color: false,
      out: screen.out,
    });
    const LINES = 100_000;
    let maxBuffered = 0;
    const rssBefore = process.memoryUsage().rss;
    const producer = (rank: number) => {
      let i = 0;
      // Chunks of ~16 KiB cut at arbitrary places, so lines straddle chunks all the time.
      let carry = '';
      return new Readable({
        read() {
          maxBuffered = Math.max(maxBuffered, rec.bufferedBytes());
          let chunk = carry;
          while (chunk.length < 16_000 && i < LINES) chunk += `rank ${rank} line ${i++} ${'x'.repeat(i % 40)}\n`;
          if (chunk.length === 0) return void this.push(null);
          const cut = i < LINES ? chunk.length - 7 : chunk.length;
          carry = chunk.slice(cut);
          this.push(chunk.slice(0, cut));
        },
      });
    };
    await Promise.all(plan.ranks.map((r) => pipeline(producer(r.rank), rec.stream(r.label, 'stdout'))));
    const rssGrowth = process.memoryUsage().rss - rssBefore;
    await rec.finish({ status: 'succeeded', exitCode: 0 });

    const expected = (rank: number) =>
      Array.from({ length: LINES }, (_, i) => `rank ${rank} line ${i} ${'x'.repeat((i + 1) % 40)}`);
    for (const r of plan.ranks) {
      const lines = readFileSync(join(rec.dir, 'logs', `rank-${r.label}.log`), 'utf8').split('\n');
      expect(lines.pop()).toBe('');
      expect(firstDifference(lines, expected(r.rank))).toBeUndefined();
    }
    const merged = readFileSync(join(rec.dir, 'merged.log'), 'utf8').split('\n');
    expect(merged.pop()).toBe('');
    expect(merged).toHaveLength(8 * LINES);
    const perRank = new Map<string, string[]>(plan.ranks.map((r) => [r.label, []]));
    const unparsed: string[] = [];
    for (const text of merged) {
      const m = parseMergedLine(text);
      if (!m || m.host !== (Number(m.label) < 4 ? 'server-a' : 'server-b')) unparsed.push(text);
      else perRank.get(m.label)?.push(m.line);
    }
    expect(unparsed).toEqual([]);
    for (const r of plan.ranks) expect(firstDifference(perRank.get(r.label) ?? [], expected(r.rank))).toBeUndefined();
    // The console showed rank 0 only, every line of it, although it was slower than the producers.
    const shown = screen.text().split('\n');
    expect(shown.pop()).toBe('');
    expect(shown).toHaveLength(LINES);
    expect(shown[0]).toBe('[0 server-a dev0] rank 0 line 0 x');
    // 8 x 100k lines is ~30 MB per copy: a recorder that buffered would hold tens of MB here.
    expect(maxBuffered).toBeLessThan(6 * 1024 * 1024);
    expect(rssGrowth).toBeLessThan(200 * 1024 * 1024);
  });

  it('fragments, CRLF and a last line without newline come out as whole lines in every place', async () => {
    const plan = twoHostPlan('fragments', 1);
    const out = new PassThrough();
    let shown = '';
    out.on('data', (c: Buffer) => (shown += c.toString()));
    const rec = await RunRecorder.create({ runsDir: base, plan, argv: [], console: 'all', color: false, out });
    const o = rec.stream('0', 'stdout');
    const e = rec.stream('0', 'stderr');
    o.write('epoch[1], it');
    e.write('Traceback (most recent');
    o.write('er[10]\r');
    e.write(' call last):\r\nValueError: bad');
    o.write('\nloss: 1.5');
    o.end();
    e.end();
    rec.stream('1', 'stdout').end('hello from b');
    await rec.finish({ status: 'failed', exitCode: 1, rootCause: '0' });
    expect(readFileSync(join(rec.dir, 'logs', 'rank-0.log'), 'utf8')).toBe(
      'epoch[1], iter[10]\n[stderr] Traceback (most recent call last):\nloss: 1.5\n[stderr] ValueError: bad\n',
    );
    const merged = readFileSync(join(rec.dir, 'merged.log'), 'utf8')
      .trimEnd()
      .split('\n')
      .map((l) => l.replace(/^\S+ /, ''));
    expect(merged).toEqual([
      '[0 server-a dev0] epoch[1], iter[10]',
      '[0 server-a dev0 stderr] Traceback (most recent call last):',
      '[0 server-a dev0] loss: 1.5',
      '[0 server-a dev0 stderr] ValueError: bad',
      '[1 server-b dev0] hello from b',
    ]);
    expect(shown).toBe(
      '[0 server-a dev0] epoch[1], iter[10]\n[0 server-a dev0] Traceback (most recent call last):\n[0 server-a dev0] loss: 1.5\n[0 server-a dev0] ValueError: bad\n[1 server-b dev0] hello from b\n',
    );
    expect(rec.lastLines('0', 2)).toEqual(['loss: 1.5', 'ValueError: bad']);
  });

  it('shows only the chosen ranks on the console, coloured when asked, while saving everything', async () => {
    const plan = twoHostPlan('console', 2);
    const out = new PassThrough();
    let shown = '';
    out.on('data', (c: Buffer) => (shown += c.toString()));
    const rec = await RunRecorder.create({ runsDir: base, plan, argv: [], console: ['1', '3'], color: true, out });
    for (const r of plan.ranks) rec.stream(r.label, 'stdout').end(`I am ${r.label}\n`);
    await rec.finish({ status: 'succeeded', exitCode: 0 });
    expect(shown).toBe('\x1b[36m[1 server-a dev1]\x1b[0m I am 1\n\x1b[33m[3 server-b dev1]\x1b[0m I am 3\n');
    expect(readFileSync(join(rec.dir, 'merged.log'), 'utf8').trimEnd().split('\n')).toHaveLength(4);

    const silent = new PassThrough();
    let none = '';
    silent.on('data', (c: Buffer) => (none += c.toString()));
    const rec2 = await RunRecorder.create({
      runsDir: base,
      plan: { ...plan, runId: 'console-none' },
      argv: [],
      console: 'none',
      timestamps: true,
      out: silent,
    });
    rec2.stream('2', 'stdout').end('quiet\n');
    await rec2.finish({ status: 'succeeded', exitCode: 0 });
    expect(none).toBe('');
    expect(readFileSync(join(rec2.dir, 'logs', 'rank-2.log'), 'utf8')).toMatch(
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z quiet\n$/,
    );
  });

  it('run.json follows the schema from start to finish, with secrets redacted everywhere in the run folder', async () => {
    const table: RankTable = {
      version: '1.0',
      server_count: '1',
      server_list: [
        {
          server_id: '10.213.0.11',
          device: [{ device_id: '0', device_ip: '192.168.100.101', rank_id: '0' }],
          host_nic_ip: 'reserve',
        },
      ],
      status: 'completed',
    };
    const plan: RunPlan = {
      ...twoHostPlan('record', 1, {
        env: { MY_API_KEY: 'job_SECRET_VALUE_2', GLOG_v: '2' },
        command: ['python', 'train.py'],
      }),
      rankTable: table,
      rankTablePath: '/tmp/npurun/record/rank_table.json',
    };
    const rec = await RunRecorder.create({
      runsDir: base,
      plan,
      argv: ['npurun', 'launch', '--env', 'DB_PASSWORD=argv_SECRET_VALUE_3', '--', 'python', 'train.py'],
      console: 'none',
    });
    const start = readRecord(rec.dir);
    expectValid(start);
    expect(start).toMatchObject({
      run_id: 'record',
      status: 'running',
      launcher_pid: process.pid,
      exit_code: null,
      ended_at: null,
      remote_dir: '/tmp/npurun/record',
      world_size: 2,
    });
    expect(start.argv).toContain('DB_PASSWORD=<redacted>');
    expect(start.job.env).toEqual({ MY_API_KEY: '<redacted>', GLOG_v: '2' });
    expect(start.ranks[1]).toMatchObject({
      label: '1',
      host: 'server-b',
      device_id: 0,
      cwd: '/work/train_parallel1',
      env: { RANK_ID: '1', HF_TOKEN: '<redacted>' },
      exit: null,
    });
    expect(start.inventory[1]?.ssh?.identityFiles).toEqual(['/home/train/.ssh/id_ed25519']);
    expect(JSON.parse(readFileSync(join(rec.dir, 'rank_table.json'), 'utf8'))).toEqual(table);

    rec.event('preflight', { host: 'server-b', ok: true, env: { SOME_TOKEN: 'event_SECRET_VALUE_4' } });
    rec.rankExited('1', {
      code: 3,
      signal: null,
      cause: 'exited',
      rootCause: true,
      endedAt: '2025-05-01T10:00:00.000Z',
    });
    // run.json follows a rank's exit within 200 ms: one write for all the exits of that window, not one
    // whole-record rewrite per exit (O(ranks^2) at 1024 ranks).
    expect(readRecord(rec.dir).ranks[1]?.exit).toBeNull();
    await new Promise((resolve) => setTimeout(resolve, 400));
    const middle = readRecord(rec.dir);
    expectValid(middle);
    expect(middle.ranks[1]?.exit).toEqual({
      code: 3,
      signal: null,
      cause: 'exited',
      root_cause: true,
      ended_at: '2025-05-01T10:00:00.000Z',
    });
    expect(middle.root_cause).toBe('1');
    expect(middle.status).toBe('running');

    rec.rankExited('0', { code: null, signal: 'SIGTERM', cause: 'stopped' });
    await rec.finish({ status: 'failed', exitCode: 3, rootCause: '1', report: 'rank 1 exited with code 3' });
    const end = readRecord(rec.dir);
    expectValid(end);
    expect(end).toMatchObject({ status: 'failed', exit_code: 3, root_cause: '1', report: 'rank 1 exited with code 3' });
    expect(end.ended_at).not.toBeNull();

    const events = readFileSync(join(rec.dir, 'events.jsonl'), 'utf8')
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events.map((e) => e.event)).toEqual(['launch', 'preflight', 'rank-exited', 'rank-exited', 'finish']);
    expect(events.every((e) => e.run_id === 'record' && typeof e.time === 'string')).toBe(true);
    for (const name of [
      'run.json',
      'events.jsonl',
      'merged.log',
      'rank_table.json',
      ...readdirSync(join(rec.dir, 'logs')).map((f) => `logs/${f}`),
    ]) {
      expect(readFileSync(join(rec.dir, name), 'utf8')).not.toMatch(/SECRET_VALUE/);
    }
  });

  it('refuses to reuse an existing run folder', async () => {
    const plan = twoHostPlan('twice', 1);
    const rec = await RunRecorder.create({ runsDir: base, plan, argv: [], console: 'none' });
    await rec.finish({ status: 'succeeded', exitCode: 0 });
    await expect(RunRecorder.create({ runsDir: base, plan, argv: [], console: 'none' })).rejects.toThrow(
      /already exists/,
    );
  });

  it('records real local ranks under the supervisor: whole lines, exits, root cause and its last lines', async () => {
    const local: HostSpec = { name: 'local', address: '127.0.0.1', local: true, devices: 'auto' };
    const script = (rank: number) =>
      rank === 1
        ? `printf 'epoch[1] loss:2.1\\n'; sleep 0.2; printf 'Traceback (most recent call last):\\n  File "train.py", line 9\\nModuleNotFoundError: No module named mindspore' >&2; exit 1`
        : `printf 'epoch[1] '; sleep 0.1; printf 'loss:2.0\\n'; sleep 30`;
    const plan = manualPlan(
      'supervised',
      [local],
      [0, 1].map((rank) => ({
        rank,
        host: 'local',
        deviceId: rank,
        cwd: join(base, `sup${rank}`),
        argv: ['sh', '-c', script(rank)],
        env: {},
      })),
    );
    const rec = await RunRecorder.create({ runsDir: base, plan, argv: [], console: 'none' });
    const transport = await LocalTransport.connect(local);
    const outcome = await supervise(plan, new Map([['local', transport]]), {
      graceSeconds: 2,
      orphanGraceSeconds: 1,
      sink: rec,
      onEvent: (e) =>
        e.kind === 'rank-ended' ? rec.rankExited(e.outcome.label, e.outcome) : rec.event(e.kind, { ...e }),
    });
    await transport.close();
    await rec.finish({ status: outcome.status, exitCode: outcome.exitCode, rootCause: outcome.rootCause?.label });
    expect(outcome.rootCause?.label).toBe('1');
    expect(readFileSync(join(rec.dir, 'logs', 'rank-0.log'), 'utf8')).toBe('epoch[1] loss:2.0\n');
    expect(rec.lastLines('1', 2)).toEqual([
      '  File "train.py", line 9',
      'ModuleNotFoundError: No module named mindspore',
    ]);
    expect(classifyFailure(rec.lastLines('1', 20))).toBe('Python module not found: No module named mindspore');
    const record = readRecord(rec.dir);
    expectValid(record);
    expect(record.ranks.map((r) => [r.label, r.exit?.cause, r.exit?.root_cause])).toEqual([
      ['0', 'stopped', false],
      ['1', 'exited', true],
    ]);
    expect(record).toMatchObject({ status: 'failed', exit_code: 1, root_cause: '1' });
  });
});
