import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NPURUN_BIN, ensureBuilt } from './helpers/cli-build.js';
import { launchLocal, taggedPids, waitForLines, waitForNoTagged } from './helpers/local-launch.js';

// Faults around a run (issue 17), each with a real launcher and real ranks on this machine: the
// launcher always ends, never crashes on a fault, keeps the bytes ranks wrote, and says what it loses.

const base = mkdtempSync(join(tmpdir(), 'npurun-faults-'));
const isRoot = process.getuid?.() === 0;
afterAll(() => {
  if (isRoot) spawnSync('umount', [join(base, 'full')]);
  rmSync(base, { recursive: true, force: true });
});
beforeAll(() => ensureBuilt(), 120_000);

function cli(args: string[], timeout = 60_000): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [NPURUN_BIN, ...args], { encoding: 'utf8', timeout });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function runDirOf(runsDir: string): string {
  const dirs = readdirSync(runsDir).filter((d) => existsSync(join(runsDir, d, 'run.json')));
  expect(dirs).toHaveLength(1);
  return join(runsDir, dirs[0] as string);
}

describe('faults around a local run (real launcher, real ranks)', () => {
  it('a rank that leaves a setsid daemon holding its output and exits 0: npurun ends at once, nothing is left', () => {
    const runsDir = join(base, 'daemon');
    const tag = `daemon-${process.pid}`;
    const started = Date.now();
    const r = cli([
      'launch',
      '--simulate',
      '2',
      '--profile',
      'torch',
      '--console',
      'none',
      '--run-dir',
      runsDir,
      '--remote-dir',
      join(base, 'daemon-remote', '{run_id}'),
      '--env',
      `TEST_TAG=${tag}`,
      '--',
      'sh',
      '-c',
      'setsid sleep 300 & nohup sleep 301 & echo bye; exit 0',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(taggedPids(tag)).toEqual([]);
    expect(readFileSync(join(runDirOf(runsDir), 'logs', 'rank-0.log'), 'utf8')).toBe('bye\n');
  });

  it('an --env value or argument that is not UTF-8 (it could not arrive byte for byte) is refused, exit 2, nothing started', () => {
    const runsDir = join(base, 'not-utf8');
    for (const bad of [`--env "X=$(printf 'a\\304\\343b')" -- true`, `-- echo "$(printf '\\377')"`]) {
      const r = spawnSync(
        'sh',
        [
          '-c',
          `exec "${process.execPath}" "${NPURUN_BIN}" launch --simulate 1 --profile torch --run-dir "${runsDir}" ${bad}`,
        ],
        { encoding: 'utf8' },
      );
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/is not valid UTF-8 on npurun's command line, so it cannot be passed on byte for byte/);
    }
    expect(existsSync(runsDir) ? readdirSync(runsDir) : []).toEqual([]);
  });

  it('rank logs keep the bytes the rank wrote: GBK text and random binary, byte for byte', () => {
    const runsDir = join(base, 'bytes');
    const gbk = Buffer.from([0xc4, 0xe3, 0xba, 0xc3, 0x0a]); // "你好\n" in GBK: not UTF-8
    const binary = Buffer.from(randomBytes(64 * 1024).filter((b) => b !== 0x0a && b !== 0x0d));
    const payload = Buffer.concat([gbk, binary, Buffer.from('\n')]);
    const file = join(base, 'payload.bin');
    writeFileSync(file, payload);
    const r = cli([
      'launch',
      '--simulate',
      '1',
      '--profile',
      'torch',
      '--console',
      'none',
      '--run-dir',
      runsDir,
      '--remote-dir',
      join(base, 'bytes-remote', '{run_id}'),
      '--',
      'cat',
      file,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(join(runDirOf(runsDir), 'logs', 'rank-0.log')).equals(payload)).toBe(true);
    const merged = readFileSync(join(runDirOf(runsDir), 'merged.log'));
    expect(merged.includes(binary)).toBe(true);
  });

  it.runIf(isRoot)(
    "a run folder on a full disk: said once per file in words, the ranks unharmed, the exit code the job's",
    () => {
      const full = join(base, 'full');
      mkdirSync(full);
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=512k', 'tmpfs', full]);
      const r = cli([
        'launch',
        '--simulate',
        '2',
        '--profile',
        'torch',
        '--console',
        'none',
        '--run-dir',
        full,
        '--remote-dir',
        join(base, 'full-remote', '{run_id}'),
        '--',
        '/usr/bin/python3',
        '-c',
        // Metric lines too: metrics.jsonl, written as they come, meets the full disk as well.
        'import sys\nfor i in range(40000):\n    print("line %06d " % i + "x" * 40)\n    if i % 50 == 0: print("epoch[1], iter[%d], loss:1.0" % i)\nsys.exit(0)',
      ]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/no space left on device/);
      expect(r.stderr).not.toMatch(/internal error|ENOSPC|at .*\.js:\d+/);
      // Once per file, not once per line.
      expect(r.stderr.split('\n').filter((l) => /no space left/.test(l)).length).toBeLessThan(8);
    },
  );

  it('a second launch on devices a live run holds is refused naming that run (exit 3, nothing started); --share-devices allows it', async () => {
    const remote = join(base, 'held-remote', '{run_id}');
    const first = launchLocal({
      ranks: 4,
      runsDir: join(base, 'held-a'),
      remoteDir: join(base, 'held-remote'),
      argv: ['/usr/bin/python3', '-c', 'import time\nprint("ready", flush=True)\ntime.sleep(30)'],
    });
    await waitForLines(first, 'ready', 4);
    const firstId = first.runDir()!.split('/').pop() as string;
    const tag = `held-${process.pid}`;
    const args = (extra: string[]) => [
      'launch',
      '--simulate',
      '4',
      '--profile',
      'torch',
      '--console',
      'none',
      '--run-dir',
      join(base, 'held-b'),
      '--remote-dir',
      remote,
      '--env',
      `TEST_TAG=${tag}`,
      ...extra,
      '--',
      'sh',
      '-c',
      'echo ran',
    ];
    const auto = cli(args([]));
    expect(auto.code, auto.stderr).toBe(3);
    expect(auto.stderr).toContain(`held by npurun run ${firstId}`);
    const explicit = cli(args(['--devices', '2']));
    expect(explicit.code, explicit.stderr).toBe(3);
    expect(explicit.stderr).toMatch(new RegExp(`device 2 held by npurun run ${firstId} rank 2 \\(pid \\d+\\)`));
    expect(existsSync(join(base, 'held-b')) ? readdirSync(join(base, 'held-b')) : []).toEqual([]);
    const shared = cli(args(['--share-devices']));
    expect(shared.code, shared.stderr).toBe(0);
    first.child.kill('SIGINT');
    await first.exited;
  }, 90_000);

  it('npurun kill RUN while its launcher lives: recorded as stopped by that kill, not as a rank failure; nothing left', async () => {
    const run = launchLocal({
      ranks: 4,
      runsDir: join(base, 'kill'),
      remoteDir: join(base, 'kill-remote'),
      argv: ['/usr/bin/python3', '-c', 'import time\nprint("ready", flush=True)\ntime.sleep(60)'],
    });
    await waitForLines(run, 'ready', 4);
    const runId = run.runDir()!.split('/').pop() as string;
    const k = cli(['kill', runId, '--run-dir', run.runsDir]);
    expect(k.code, k.stderr + k.stdout).toBe(0);
    expect(k.stderr).toMatch(/asked the launcher/);
    expect((await run.exited).code).toBe(143);
    const record = JSON.parse(readFileSync(join(run.runDir() as string, 'run.json'), 'utf8')) as {
      status: string;
      stopped_by?: string;
      root_cause: string | null;
      ranks: { exit: { cause: string } }[];
    };
    expect(record.status).toBe('interrupted');
    expect(record.stopped_by).toMatch(/^npurun kill \(user .+, pid \d+\)$/);
    expect(record.root_cause).toBeNull();
    expect(record.ranks.map((r) => r.exit.cause)).toEqual(['stopped', 'stopped', 'stopped', 'stopped']);
    expect(run.stderr()).toMatch(/stopped by npurun kill/);
    expect(await waitForNoTagged(run.tag, 3000)).toEqual([]);
  }, 90_000);

  it('Ctrl-Z (SIGTSTP) is refused while ranks run: the run goes on and succeeds', async () => {
    const run = launchLocal({
      ranks: 2,
      runsDir: join(base, 'tstp'),
      remoteDir: join(base, 'tstp-remote'),
      argv: ['/usr/bin/python3', '-c', 'import time\nprint("ready", flush=True)\ntime.sleep(4)'],
    });
    await waitForLines(run, 'ready', 2);
    run.child.kill('SIGTSTP');
    expect(await run.exited, run.stderr()).toEqual({ code: 0, signal: null });
    expect(run.stderr()).toMatch(/not suspending/);
  }, 60_000);

  it('SIGHUP stops the run like SIGINT; a second SIGINT kills at once, even ranks that ignore SIGTERM', async () => {
    const hup = launchLocal({
      ranks: 2,
      runsDir: join(base, 'hup'),
      remoteDir: join(base, 'hup-remote'),
      argv: ['/usr/bin/python3', '-c', 'import time\nprint("ready", flush=True)\ntime.sleep(60)'],
    });
    await waitForLines(hup, 'ready', 2);
    hup.child.kill('SIGHUP');
    expect(await hup.exited).toEqual({ code: 129, signal: null });
    expect(await waitForNoTagged(hup.tag, 3000)).toEqual([]);

    const stubborn =
      'import signal,time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint("ready", flush=True)\ntime.sleep(120)';
    const run = launchLocal({
      ranks: 2,
      runsDir: join(base, 'int2'),
      remoteDir: join(base, 'int2-remote'),
      argv: ['/usr/bin/python3', '-c', stubborn],
      extra: ['--grace', '60'],
    });
    await waitForLines(run, 'ready', 2);
    run.child.kill('SIGINT');
    await new Promise((r) => setTimeout(r, 500));
    expect(taggedPids(run.tag).length).toBe(2); // SIGTERM ignored, grace 60 s
    const second = Date.now();
    run.child.kill('SIGINT');
    expect(await run.exited).toEqual({ code: 130, signal: null });
    expect(await waitForNoTagged(run.tag, 3000)).toEqual([]);
    process.stdout.write(`second SIGINT: npurun ended ${Date.now() - second} ms later (grace was 60 s)\n`);
    expect(Date.now() - second).toBeLessThan(15_000);
  }, 90_000);
});

describe('a host whose SSH port accepts but never speaks', () => {
  it('launch, devices and ps each exit 3 with one line naming the host, never a crash', async () => {
    const server = net.createServer((s) => s.on('error', () => {}));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const dir = join(base, 'silent');
    mkdirSync(dir, { recursive: true });
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'id')]);
    // An ssh_config alias, so the address is not loopback (which npurun runs locally).
    writeFileSync(
      join(dir, 'ssh_config'),
      `Host silent\n  HostName 127.0.0.1\n  Port ${port}\n  IdentityFile ${join(dir, 'id')}\n  ConnectTimeout 3\n`,
    );
    writeFileSync(join(dir, 'hosts.yaml'), 'hosts:\n  - address: silent\n');
    const common = ['--hosts', join(dir, 'hosts.yaml'), '--ssh-config', join(dir, 'ssh_config')];
    const runs = await Promise.all(
      [
        [
          'launch',
          ...common,
          '--profile',
          'torch',
          '--nproc-per-node',
          '1',
          '--run-dir',
          join(dir, 'runs'),
          '--',
          '/bin/true',
        ],
        ['devices', ...common],
        ['ps', ...common],
      ].map(
        (args) =>
          new Promise<{ args: string[]; code: number | null; out: string }>((resolve) => {
            const child = spawn(process.execPath, [NPURUN_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
            let out = '';
            child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
            child.stderr?.on('data', (c: Buffer) => (out += c.toString()));
            child.on('exit', (code) => resolve({ args, code, out }));
          }),
      ),
    );
    server.close();
    for (const r of runs) {
      expect(r.code, `${r.args[0]}: ${r.out}`).toBe(3);
      expect(r.out, r.args[0]).toMatch(/silent/);
      expect(r.out, r.args[0]).not.toMatch(/Unhandled|node:events|at .*\.js:\d+|internal error/);
    }
    expect(existsSync(join(dir, 'runs')) ? readdirSync(join(dir, 'runs')) : []).toEqual([]);
  }, 90_000);
});
