import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NpurunError } from '../errors.js';
import { readRunRecord, STOP_REQUEST_FILE } from '../sinks/run-folder.js';
import type { HostSpec, JobSpec, RunPlan } from '../plan/types.js';
import { describePlan, planRun } from '../plan/plan.js';
import { newRunId } from '../plan/run-id.js';
import { serializeRankTable } from '../ranktable/generate.js';
import { validateRankTableFile } from '../ranktable/validate.js';
import type { RankTable } from '../ranktable/types.js';
import { classifyFailure } from '../sinks/classify.js';
import { RunRecorder, type ConsoleChoice } from '../sinks/run-recorder.js';
import { describeEnd, supervise, type RunControl, type RunOutcome, type SupervisorEvent } from '../supervise/supervisor.js';
import { HangDetector } from './hang-detector.js';
import type { SshOptions } from '../transport/ssh.js';
import type { HostTransport } from '../transport/types.js';
import { connectHost, preflight, scriptOf } from './preflight.js';
import { CheckpointWatcher, savingRanks } from '../checkpoints/watcher.js';
import { CKPT_INDEX_FILE } from '../checkpoints/ownership.js';
import { checkResumeWorld, resumeFrom } from '../checkpoints/scan.js';
import { hasContent, summarizeRunFolder, writeSummary } from '../summary/run-summary.js';
import { findStragglers, renderStragglers } from '../summary/stragglers.js';
import { renderSummary } from '../summary/summary.js';

export interface LaunchRequest {
  job: JobSpec;
  hosts: HostSpec[];
  simulate?: number;
  dryRun: boolean;
  json: boolean;
  runsDir: string;
  console: ConsoleChoice;
  timestamps: boolean;
  argv: string[];
  ssh?: SshOptions;
  /** Seconds a guard waits before SIGKILL once the launcher is gone. */
  orphanGraceSeconds: number;
  /** Hosts connected and probed at once (default 256). */
  fanout?: number;
  /** Use devices that another live npurun run holds (default: refuse them). */
  shareDevices?: boolean;
  /** Resume from the latest checkpoint every saving rank of this earlier run completed. */
  resume?: { runId: string };
  out?: NodeJS.WriteStream;
}

export interface LaunchResult {
  exitCode: number;
  plan?: RunPlan;
  outcome?: RunOutcome;
  runDir?: string;
}

function loadGivenRankTable(file: string): RankTable {
  const result = validateRankTableFile(file);
  if (result.superPod && result.problems.length === 0) {
    throw new NpurunError('input', `${file}: a version 1.2 (A3 SuperPoD) rank table: launch uses version 1.0 tables only so far; \`npurun ranktable validate\` and \`show\` read it`);
  }
  if (!result.table || result.problems.length > 0) {
    throw new NpurunError('input', `${file}: invalid rank table`, { details: result.problems.map((p) => `${p.path}: ${p.message}`) });
  }
  return result.table;
}

/** The failure report: the root-cause rank, where it ran, how it ended, and its last lines. */
export function failureReport(outcome: RunOutcome, recorder: Pick<RunRecorder, 'lastLines'>, plan: RunPlan, stoppedBy?: string): string | undefined {
  if (outcome.status === 'interrupted') {
    const stopped = outcome.ranks.filter((r) => r.cause === 'stopped').length;
    return `npurun: stopped by ${stoppedBy ?? outcome.interruptedBy}; stopped ${stopped} rank${stopped === 1 ? '' : 's'} on ${plan.hosts.length} host${plan.hosts.length === 1 ? '' : 's'}`;
  }
  const rc = outcome.rootCause;
  if (!rc) return undefined;
  const lines = recorder.lastLines(rc.label, 20);
  const kind = classifyFailure(lines, rc.signal ?? undefined);
  const device = rc.deviceId === null ? '' : `, device ${rc.deviceId}`;
  const victims = outcome.ranks.filter((r) => r.cause === 'stopped').length;
  const out = [
    `npurun: rank ${rc.label} (host ${rc.host}${device}) ${describeEnd(rc)}${kind ? ` [${kind}]` : ''}`,
    `npurun: stopped the other ${victims} rank${victims === 1 ? '' : 's'}; exit code ${outcome.exitCode}`,
  ];
  if (lines.length > 0) out.push(`--- last ${lines.length} lines of rank ${rc.label} ---`, ...lines, '---');
  return out.join('\n');
}

function eventLine(e: SupervisorEvent): string | undefined {
  switch (e.kind) {
    case 'stopping':
      return `npurun: stopping all ranks: ${e.reason} (grace ${e.graceSeconds} s)`;
    case 'host-lost':
      return `npurun: host ${e.host} lost: ${e.reason}`;
    case 'escalate':
      return `npurun: ranks still running after the grace period: SIGKILL on ${e.hosts.length} host${e.hosts.length === 1 ? '' : 's'}`;
    case 'suspend-refused':
      return 'npurun: not suspending (Ctrl-Z): the hosts would stop the ranks once heartbeats stop; Ctrl-C stops the run';
    default:
      return undefined;
  }
}

/** Who stopped an interrupted run: `npurun kill` leaves a note in the run folder before signalling. */
function whoStopped(runDir: string, signal: string | undefined): string {
  try {
    const req = JSON.parse(readFileSync(join(runDir, STOP_REQUEST_FILE), 'utf8')) as { by?: string };
    if (typeof req.by === 'string') return req.by;
  } catch {
    // no note: a signal from a terminal or another program
  }
  return signal === 'SIGINT' ? 'SIGINT (Ctrl-C)' : `${signal ?? 'a signal'} to npurun`;
}

/**
 * The main job: preflight every host, plan, (dry run stops here), copy the rank table to every host,
 * start every rank under its guard, supervise, record, report.
 */
export async function launch(req: LaunchRequest): Promise<LaunchResult> {
  const out = req.out ?? process.stdout;
  const givenTable = req.job.rankTableFile ? loadGivenRankTable(req.job.rankTableFile) : undefined;
  const progress = req.json ? 'none' : process.stderr.isTTY && process.stdout.isTTY ? 'tty' : 'lines';
  const program = req.job.command[0];
  if (!program) throw new NpurunError('input', 'no command to run: give it after `--` or as `command:` in the job file');
  const { transports, facts } = await preflight(req.hosts, {
    ...(req.simulate !== undefined ? { simulate: req.simulate } : {}),
    program,
    ...(scriptOf(req.job.command) ? { script: scriptOf(req.job.command) as string } : {}),
    ...(req.job.env.PATH ? { programPath: req.job.env.PATH } : {}),
    // The connection tolerates as long a silence as the agents do (a blip shorter than the heartbeat
    // timeout is survived), never less than 3 s.
    ssh: { ...req.ssh, keepaliveIntervalMs: 1000, keepaliveCountMax: Math.max(3, Math.ceil(req.job.heartbeatTimeoutSeconds)) },
    ...(req.fanout !== undefined ? { fanout: req.fanout } : {}),
    remoteDir: req.job.remoteDir,
    ...(req.shareDevices ? { shareDevices: true } : {}),
    progress,
  });
  const closeAll = () => Promise.all([...transports.values()].map((t) => t.close()));
  let plan: RunPlan;
  try {
    req.job.remoteDir = expandUid(req.job.remoteDir, transports);
    const resume = req.resume ? await resumeFrom(readRunRecord(req.runsDir, req.resume.runId), { transports, connect: (h) => connectHost(h, req.ssh) }, req.job.resumeMap) : undefined;
    if (resume) process.stderr.write(`npurun: resuming from run ${resume.runId}, epoch ${resume.epoch}, step ${resume.step}\n`);
    plan = planRun({
      runId: newRunId(new Date(), req.job.name),
      job: req.job,
      hosts: req.hosts,
      facts,
      ...(givenTable ? { rankTable: givenTable } : {}),
      ...(resume ? { resume } : {}),
      onWarning: (m) => process.stderr.write(`npurun: warning: ${m}\n`),
    });
    if (resume) checkResumeWorld(plan, resume);
  } catch (err) {
    await closeAll();
    throw err;
  }
  if (req.dryRun) {
    await closeAll();
    out.write(req.json ? JSON.stringify(plan, null, 2) + '\n' : describePlan(plan) + '\n');
    return { exitCode: 0, plan };
  }
  return runPlanned(plan, transports, req).finally(closeAll);
}

/**
 * `{uid}` in the remote dir (default /tmp/npurun-{uid}/{run_id}) is the launching user's uid on the
 * hosts: each user gets a private directory under /tmp, so nobody else's files are trusted.
 */
function expandUid(remoteDir: string, transports: Map<string, HostTransport>): string {
  if (!remoteDir.includes('{uid}')) return remoteDir;
  const uids = new Set([...transports.values()].map((t) => t.hello.uid));
  if (uids.size > 1) {
    throw new NpurunError('input', `--remote-dir: {uid} stands for one uid, but the hosts log in as uids ${[...uids].join(', ')}`, {
      hint: 'give --remote-dir (or remote_dir:) without {uid}, in a directory private to you on every host',
    });
  }
  return remoteDir.replace(/\{uid\}/g, String([...uids][0]));
}

async function copyRankTable(plan: RunPlan, transports: Map<string, HostTransport>): Promise<void> {
  if (!plan.rankTable || !plan.rankTablePath) return;
  const data = Buffer.from(serializeRankTable(plan.rankTable));
  const path = plan.rankTablePath;
  await Promise.all([...transports.values()].map((t) => t.putFile(path, data, 0o644)));
}

async function runPlanned(plan: RunPlan, transports: Map<string, HostTransport>, req: LaunchRequest): Promise<LaunchResult> {
  const say = (line: string) => process.stderr.write(line + '\n');
  let hang: HangDetector | undefined;
  const recorder = await RunRecorder.create({
    ...(plan.job.hangTimeoutSeconds !== undefined ? { onLine: (label: string, line: Buffer) => hang?.line(label, line) } : {}),
    runsDir: req.runsDir,
    plan,
    argv: req.argv,
    timestamps: req.timestamps,
    console: req.console,
    ...(req.out ? { out: req.out } : {}),
  });
  if (plan.job.hangTimeoutSeconds !== undefined) hang = new HangDetector(plan, transports, recorder, say);
  say(`npurun: run ${plan.runId}: ${plan.ranks.length} process${plan.ranks.length === 1 ? '' : 'es'} on ${plan.hosts.length} host${plan.hosts.length === 1 ? '' : 's'}, logs in ${recorder.dir}`);
  try {
    await copyRankTable(plan, transports);
    if (plan.rankTablePath) recorder.event('rank-table-copied', { path: plan.rankTablePath, hosts: plan.hosts.map((h) => h.name) });
  } catch (err) {
    await recorder.finish({ status: 'failed', exitCode: 3, report: err instanceof Error ? err.message : String(err) });
    throw err;
  }
  const checkpoint = plan.job.checkpoint;
  const watcher = checkpoint
    ? new CheckpointWatcher(savingRanks(plan), transports, {
        keepMax: checkpoint.keepMax ?? 5,
        ...(checkpoint.pattern ? { pattern: checkpoint.pattern } : {}),
        indexFile: join(recorder.dir, CKPT_INDEX_FILE),
        onEvent: (e) => recorder.event(e.kind, { ...e }),
      })
    : undefined;
  await watcher?.start();
  const outcome = await supervise(plan, transports, {
    graceSeconds: plan.job.graceSeconds,
    orphanGraceSeconds: req.orphanGraceSeconds,
    sink: recorder,
    handleSignals: true,
    ...(hang ? { control: (ctl: RunControl) => hang?.start(ctl) } : {}),
    onEvent: (e) => {
      const line = eventLine(e);
      if (line) say(line);
      if (e.kind === 'rank-ended') {
        hang?.ended(e.outcome.label);
        recorder.rankExited(e.outcome.label, e.outcome);
      } else recorder.event(e.kind, { ...e });
    },
  });
  hang?.stop();
  await watcher?.stop(outcome.ranks.filter((r) => r.code !== 0).map((r) => r.label));
  const latest = watcher?.latest();
  if (latest) recorder.event('ckpt-latest', { ...latest });
  const stragglers = await findStragglers(recorder.dir, plan.job.progressPattern !== undefined ? { progressPattern: plan.job.progressPattern } : {}).catch(() => []);
  if (stragglers.length > 0) recorder.event('stragglers', { ranks: stragglers });
  const stoppedBy = outcome.status === 'interrupted' ? whoStopped(recorder.dir, outcome.interruptedBy) : undefined;
  const report = [hang?.report, failureReport(outcome, recorder, plan, stoppedBy)].filter((r) => r !== undefined).join('\n') || undefined;
  if (report) say(report);
  else say(`npurun: run ${plan.runId}: all ${plan.ranks.length} ranks succeeded`);
  await recorder.finish({
    status: outcome.status,
    exitCode: outcome.exitCode,
    ...(outcome.rootCause ? { rootCause: outcome.rootCause.label } : {}),
    ...(report ? { report } : {}),
    ...(stoppedBy ? { stoppedBy } : {}),
  });
  const summary = await summarizeRunFolder(recorder.dir, plan);
  try {
    writeSummary(recorder.dir, summary);
  } catch (err) {
    say(`npurun: cannot write the summary into ${recorder.dir} (${(err as NodeJS.ErrnoException).code === 'ENOSPC' ? 'no space left on device' : (err as Error).message}); it is shown below`);
  }
  if (hasContent(summary)) say(`--- summary of run ${plan.runId} ---\n${renderSummary(summary)}`);
  for (const line of renderStragglers(stragglers)) say(`npurun: ${line}`);
  if (latest) say(`npurun: latest checkpoint every saving rank completed: epoch ${latest.epoch}, step ${latest.step}`);
  return { exitCode: outcome.exitCode, plan, outcome, runDir: recorder.dir };
}

