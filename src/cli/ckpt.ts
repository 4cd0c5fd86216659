import { resolve } from 'node:path';
import { scanCheckpoints, type CheckpointScan } from '../checkpoints/scan.js';
import { savingRanks } from '../checkpoints/watcher.js';
import { inputError, NpurunError } from '../errors.js';
import { connectHost } from '../launch/preflight.js';
import { sshJumpResolver } from '../launch/jump.js';
import type { RankSpec } from '../plan/types.js';
import { readRunRecord, type RunInfo } from '../sinks/run-folder.js';
import type { HostTransport } from '../transport/types.js';
import { boolFlag, parseCommandArgs, stringFlag } from './args.js';
import { sshConfigText } from './launch.js';

const HELP = `Usage: npurun ckpt list [RUN] [--run-dir DIR] [--json]
       npurun ckpt latest [RUN] [--run-dir DIR] [--json]

list:   every checkpoint of every saving rank of RUN (the latest run by default), per rank and step,
        read from the hosts (SFTP for remote ones), each marked complete or not.
latest: the newest step that every saving rank completed: a step where one rank's file is missing,
        still being written, or short (a save cut off by a crash) does not count. Exit 1 if none.
        \`npurun launch --resume RUN\` starts from it.`;

const OPTIONS = { 'run-dir': { type: 'string' }, 'ssh-config': { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } as const;

/** Connects to the run's hosts and scans every saving rank's checkpoint directory. */
export async function scanRun(info: RunInfo, configText: string | undefined): Promise<CheckpointScan> {
  const ranks = savingRanks({ ranks: info.record.ranks.map((r) => ({ label: r.label, host: r.host, cwd: r.cwd, env: r.env }) as RankSpec) });
  if (ranks.length === 0) throw new NpurunError('input', `run ${info.runId} has no checkpoint policy (no rank was told to save: set checkpoint: in the job file)`);
  const hosts = info.hosts.filter((h) => ranks.some((r) => r.host === h.name));
  const transports = new Map<string, HostTransport>();
  try {
    await Promise.all(hosts.map(async (h) => transports.set(h.name, await connectHost(h, { resolveJump: sshJumpResolver(configText) }))));
    const pattern = info.record.ranks[0]?.env.NPURUN_CKPT_PATTERN;
    return await scanCheckpoints(ranks, transports, pattern ? { pattern } : {});
  } finally {
    await Promise.all([...transports.values()].map((t) => t.close()));
  }
}

export async function run(argv: string[]): Promise<number> {
  const args = parseCommandArgs('ckpt', argv, OPTIONS);
  const [sub, runId, ...extra] = args.positionals;
  if (boolFlag(args, 'help') || sub === undefined) {
    process.stdout.write(HELP + '\n');
    return sub === undefined && !boolFlag(args, 'help') ? 2 : 0;
  }
  if (sub !== 'list' && sub !== 'latest') throw inputError('npurun ckpt', `unknown subcommand "${sub}"; expected list or latest`);
  if (extra.length > 0) throw inputError(`npurun ckpt ${sub}`, `one run id expected, got ${extra.length + 1}`);
  const info = readRunRecord(resolve(stringFlag(args, 'run-dir') ?? 'runs'), runId);
  const scan = await scanRun(info, sshConfigText(stringFlag(args, 'ssh-config')));
  const json = boolFlag(args, 'json');
  if (sub === 'latest') {
    if (json) process.stdout.write(JSON.stringify({ run_id: info.runId, latest: scan.latest ?? null }, null, 2) + '\n');
    else if (scan.latest) {
      process.stdout.write(`run ${info.runId}: latest complete checkpoint: epoch ${scan.latest.epoch}, step ${scan.latest.step}\n`);
      for (const r of scan.ranks) if (scan.latest.files[r.label]) process.stdout.write(`  rank ${r.label} (${r.host}): ${r.dir}/${scan.latest.files[r.label]}\n`);
    } else process.stdout.write(`run ${info.runId}: no step was completed by every saving rank\n`);
    return scan.latest ? 0 : 1;
  }
  if (json) {
    process.stdout.write(JSON.stringify({ run_id: info.runId, ...scan }, null, 2) + '\n');
    return 0;
  }
  for (const r of scan.ranks) {
    process.stdout.write(`rank ${r.label} (${r.host}) ${r.dir}${r.error ? `: ${r.error}` : ''}\n`);
    for (const f of r.files) process.stdout.write(`  epoch ${String(f.epoch).padStart(4)}  step ${String(f.step).padStart(8)}  ${String(f.size).padStart(12)} B  ${f.complete ? 'complete' : f.stable ? 'PARTIAL' : 'being written'}  ${f.name}\n`);
  }
  process.stdout.write(scan.latest ? `latest complete: epoch ${scan.latest.epoch}, step ${scan.latest.step}\n` : 'no step completed by every saving rank\n');
  return 0;
}
