import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, NPURUN_BIN } from './helpers/cli-build.js';

// Launches here pass --share-devices: other test files' simulated runs on this machine hold the same
// simulated devices while they run.
// Input at the door (issue 17, 13-16): every bad flag, path, host address, YAML file or output is
// refused in words by the real CLI (exit 2, the flag or file and field named, nothing created), and
// nothing a person can cause ends in "internal error", an errno code or a stack trace.

const work = mkdtempSync(join(tmpdir(), 'npurun-input-'));
const npurun = (args: string[], opts: { cwd?: string; env?: Record<string, string>; timeout?: number } = {}) =>
  execa('node', [NPURUN_BIN, ...args], {
    reject: false,
    cwd: opts.cwd ?? work,
    env: { NO_COLOR: '1', ...opts.env },
    timeout: opts.timeout ?? 60_000,
  });
const file = (name: string, text: string) => {
  const p = join(work, name);
  writeFileSync(p, text);
  return p;
};
/** What no message about bad input may contain. */
const UNFRIENDLY = /internal error|\bE[A-Z]{3,}\b|\n\s+at /;

beforeAll(ensureBuilt);

describe('paths mean one thing on every host', () => {
  it('workdir: ~/exp is under the home directory, not a folder named ~ beside the job file', async () => {
    const home = mkdtempSync(join(tmpdir(), 'npurun-home-'));
    const dir = mkdtempSync(join(work, 'job-'));
    writeFileSync(join(dir, 'job.yaml'), 'workdir: ~/exp\nrank_dir: r{rank}\ncommand: [sh, -c, "pwd > where"]\n');
    const r = await npurun(
      [
        'launch',
        '--job',
        join(dir, 'job.yaml'),
        '--simulate',
        '1',
        '--share-devices',
        '--profile',
        'torch',
        '--console',
        'none',
        '--runs-dir',
        join(dir, 'runs'),
      ],
      { env: { HOME: home } },
    );
    expect(r.exitCode, r.stderr).toBe(0);
    expect(existsSync(join(home, 'exp', 'r0', 'where'))).toBe(true);
    expect(readdirSync(dir).sort()).toEqual(['job.yaml', 'runs']);
  });

  it('a relative --remote-dir or remote_dir is refused (it would land at / on every host); ~user is refused', async () => {
    const [flag, job, tilde] = await Promise.all([
      npurun(['launch', '--simulate', '1', '--remote-dir', 'rel/x', '--', 'true']),
      npurun(['launch', '--job', file('remote.yaml', 'remote_dir: tmp/{run_id}\ncommand: [sh]\n'), '--simulate', '1']),
      npurun(['launch', '--simulate', '1', '--workdir', '~nobody/x', '--', 'true']),
    ]);
    expect(flag.exitCode).toBe(2);
    expect(flag.stderr).toMatch(
      /^npurun: --remote-dir: "rel\/x" is a relative path; expected an absolute directory on the hosts/,
    );
    expect(job.exitCode).toBe(2);
    expect(job.stderr).toMatch(/remote\.yaml: remote_dir: "tmp\/\{run_id\}" is a relative path/);
    expect(tilde.exitCode).toBe(2);
    expect(tilde.stderr).toMatch(/--workdir: "~nobody\/x": ~user is not expanded/);
    expect(existsSync(join(work, 'runs'))).toBe(false);
  });
});

describe('host addresses and hostile files', () => {
  it('a host address with shell characters, and a 10 MB one, are refused before any name lookup, in one short message', async () => {
    const semi = file('semi.yaml', 'hosts:\n  - { address: "10.0.0.1; touch x" }\n');
    const huge = file('huge.yaml', `hosts:\n  - { address: "${'a'.repeat(10 * 1024 * 1024)}" }\n`);
    const long = file('long.yaml', `hosts:\n  - { address: "${'a'.repeat(300 * 1024)}" }\n`);
    const hostfile = file('hostfile', '10.0.0.1;touch slots=8\n');
    const rs = await Promise.all(
      [semi, huge, long, hostfile].map((f) => npurun(['launch', '--hosts', f, '--dry-run', '--', 'true'])),
    );
    for (const r of rs) {
      expect(r.exitCode, r.stderr).toBe(2);
      expect(r.stderr.length).toBeLessThan(600);
      expect(r.stderr).not.toMatch(UNFRIENDLY);
    }
    expect(rs[0]?.stderr).toMatch(
      /semi\.yaml: invalid hosts file: hosts\[0\]\.address: got string "10\.0\.0\.1; touch x", expected a host name/,
    );
    expect(rs[1]?.stderr).toMatch(/huge\.yaml: too big for a hosts file: \d+ bytes, expected at most 1048576/);
    expect(rs[2]?.stderr).toMatch(
      /long\.yaml: invalid hosts file: hosts\[0\]\.address: expected at most 253 characters, got 307200/,
    );
    expect(rs[3]?.stderr).toMatch(/hostfile:1: "10\.0\.0\.1;touch" is not a host name or IP address/);
    expect(existsSync(join(work, 'x'))).toBe(false);
  });

  it('an alias bomb, deep nesting and a directory given as a job file are refused in words', async () => {
    const levels = ['a: &a [x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 9; i++)
      levels.push(
        `${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(9)
          .fill(`*${String.fromCharCode(96 + i)}`)
          .join(', ')}]`,
      );
    const bomb = file('bomb.yaml', `${levels.join('\n')}\ncommand: [sh]\n`);
    const deep = file('deep.yaml', `command: ${'['.repeat(5000)}${']'.repeat(5000)}\n`);
    const dir = join(work, 'a-dir.yaml');
    mkdirSync(dir, { recursive: true });
    const [b, d, isDir, missing] = await Promise.all(
      [bomb, deep, dir, join(work, 'nope.yaml')].map((f) => npurun(['launch', '--job', f, '--simulate', '1'])),
    );
    for (const r of [b, d, isDir, missing]) {
      expect(r?.exitCode, r?.stderr).toBe(2);
      expect(r?.stderr).not.toMatch(UNFRIENDLY);
    }
    expect(b?.stderr).toMatch(/bomb\.yaml: refused: .*alias.*\(at most 100 alias expansions\)/i);
    expect(d?.stderr).toMatch(/deep\.yaml: not valid YAML here: nested more than 64 levels deep/);
    expect(isDir?.stderr).toMatch(/a-dir\.yaml: cannot read the job file: is a directory/);
    expect(missing?.stderr).toMatch(/nope\.yaml: cannot read the job file: no such file or directory/);
  });
});

describe('numbers and outputs', () => {
  it('integers where integers are meant, in range', async () => {
    const cases: [string[], RegExp][] = [
      [['--nproc-per-node', '1.5'], /--nproc-per-node: "1\.5" is not a whole number from 1 to 64/],
      [['--master-port', '70000'], /--master-port: "70000" is not a whole number from 1 to 65535/],
      [['--simulate', '2.5'], /--simulate: "2\.5" is not a whole number from 1 to 16/],
      [['--simulate', '0'], /--simulate: "0" is not a whole number from 1 to 16/],
      [['--grace=-1'], /--grace: "-1" is not a number from 0 to 3600/],
      [['--heartbeat-timeout', '1e3'], /--heartbeat-timeout: "1e3" is not a number from 1 to 3600/],
    ];
    const rs = await Promise.all(cases.map(([flags]) => npurun(['launch', ...flags, '--', 'true'])));
    rs.forEach((r, i) => {
      expect(r.exitCode, r.stderr).toBe(2);
      expect(r.stderr).toMatch((cases[i] as [string[], RegExp])[1]);
    });
  });

  it('an unwritable --out is said in words, exit 2, not "internal error"', async () => {
    const r = await npurun([
      'ranktable',
      'generate',
      '--simulate',
      '8',
      '--server-ip',
      '10.0.0.1',
      '--out',
      '/proc/x.json',
    ]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(
      /^npurun: --out \/proc\/x\.json: cannot write the rank table: (no such file or directory|permission denied|operation not permitted)$/m,
    );
    expect(r.stderr).not.toMatch(UNFRIENDLY);
    // A missing folder under /proc: Node's recursive mkdir would never return there.
    const deep = await npurun(
      ['ranktable', 'generate', '--simulate', '8', '--server-ip', '10.0.0.1', '--out', '/proc/npurun-x/t.json'],
      { timeout: 20_000 },
    );
    expect(deep.exitCode).toBe(2);
    expect(deep.stderr).toMatch(
      /^npurun: --out \/proc\/npurun-x\/t\.json: cannot write the rank table: no such file or directory$/m,
    );
  });

  it('an unwritable --runs-dir is refused before anything starts (exit 2, in words)', async () => {
    const r = await npurun(['launch', '--simulate', '1', '--runs-dir', '/proc/x', '--', 'true']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(
      /^npurun: --runs-dir \/proc\/x: cannot write run folders there: (no such file or directory|permission denied|operation not permitted)$/m,
    );
    expect(r.stderr).not.toMatch(/preflight/);
  });

  it('output into a closed pipe (| head -1) ends quietly', async () => {
    const servers = Array.from({ length: 600 }, (_, s) => ({
      server_id: `10.1.${s >> 8}.${s & 255}`,
      device: Array.from({ length: 8 }, (_, d) => ({
        device_id: String(d),
        device_ip: `192.${d}.${s >> 8}.${s & 255}`,
        rank_id: String(s * 8 + d),
      })),
      host_nic_ip: 'reserve',
    }));
    const big = file(
      'big.json',
      JSON.stringify({
        version: '1.0',
        server_count: String(servers.length),
        server_list: servers,
        status: 'completed',
      }),
    );
    const r = await execa('bash', ['-o', 'pipefail', '-c', `node ${NPURUN_BIN} ranktable show ${big} | head -1`], {
      reject: false,
    });
    expect(r.stdout).toMatch(/^server\s+device\s+device ip\s+rank$/);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
  });

  it('a launch whose console pipe closes (| head -1) keeps supervising: every line saved, run.json succeeded, exit 0', async () => {
    const runs = join(work, 'pipe-runs');
    const cmd = `node ${NPURUN_BIN} launch --simulate 2 --share-devices --profile torch --console all --runs-dir ${runs} -- sh -c 'seq 1 200000' | head -1`;
    const r = await execa('bash', ['-o', 'pipefail', '-c', cmd], { reject: false, timeout: 60_000 });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/all 2 ranks succeeded/);
    const [run] = readdirSync(runs);
    const record = JSON.parse(readFileSync(join(runs, run as string, 'run.json'), 'utf8')) as { status: string };
    expect(record.status).toBe('succeeded');
    for (const rank of [0, 1])
      expect(readFileSync(join(runs, run as string, 'logs', `rank-${rank}.log`), 'utf8').split('\n').length).toBe(
        200_001,
      );
  });
});

describe('newcomer friction', () => {
  it('every command that reads runs takes --runs-dir (and the old --run-dir)', async () => {
    const empty = mkdtempSync(join(work, 'runs-'));
    const commands = [
      ['runs'],
      ['logs'],
      ['summary'],
      ['ckpt', 'list'],
      ['ps', 'some-run'],
      ['kill', 'some-run'],
      ['report'],
    ];
    const rs = await Promise.all(
      commands.flatMap((c) => ['--runs-dir', '--run-dir'].map((flag) => npurun([...c, flag, empty]))),
    );
    rs.forEach((r, i) => {
      const what = `${commands[i >> 1]?.join(' ')} ${i % 2 ? '--run-dir' : '--runs-dir'}`;
      expect(r.stderr, what).not.toMatch(/Unknown option/);
      expect(r.stderr, what).not.toMatch(UNFRIENDLY);
      if (commands[i >> 1]?.[0] !== 'runs') expect(r.stderr, what).toContain(empty);
    });
  });

  it('a machine without NPUs is pointed at --simulate by devices', async () => {
    const r = await npurun(['devices'], { env: { PATH: '/usr/bin:/bin', NPURUN_HCCN_CONF: join(work, 'none.conf') } });
    expect(r.stdout).toMatch(/no NPUs found/);
    expect(r.stderr).toMatch(/hint: no Ascend NPUs here\? `--simulate 8`/);
    expect(r.exitCode).toBe(3);
  });

  it('launch on a machine without NPUs is pointed at --simulate too (exit 3, nothing started)', async () => {
    const r = await npurun(['launch', '--runs-dir', join(work, 'no-npu-runs'), '--', 'true'], {
      env: { PATH: '/usr/bin:/bin', NPURUN_HCCN_CONF: join(work, 'none.conf') },
    });
    expect(r.exitCode, r.stderr).toBe(3);
    expect(r.stderr).toMatch(/no NPUs found/);
    expect(r.stderr).toMatch(/hint: no Ascend NPUs here\? --simulate 8/);
  });

  it('launch --help names --simulate for machines without NPUs; --run-dir and --runs-dir are one flag', async () => {
    const [help, both] = await Promise.all([
      npurun(['launch', '--help']),
      npurun(['launch', '--run-dir', 'a', '--runs-dir', 'b', '--', 'true']),
    ]);
    expect(help.stdout).toMatch(/No NPUs here\? Try --simulate 8\./);
    expect(help.stdout).toMatch(/^ {2}--runs-dir DIR +where run folders go \(default \.\/runs; also --run-dir\)$/m);
    expect(both.exitCode).toBe(2);
    expect(both.stderr).toMatch(/--run-dir and --runs-dir are the same flag; give one/);
  });
});
