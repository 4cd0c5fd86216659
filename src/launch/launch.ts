import { readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import { EXIT, fileErrorWords, NpurunError } from '../errors.js';
import { failureReport } from '../supervise/failure-report.js';
import { readRunRecord, STOP_REQUEST_FILE } from '../run-folder/record.js';
import type { HostLossPolicy, HostSpec, JobSpec, RunPlan } from '../plan/types.js';
import { describePlan, planRun, type PlanInput } from '../plan/plan.js';
import { newRunId } from '../plan/run-id.js';
import { serializeRankTable } from '../ranktable/generate.js';
import { validateRankTableFile } from '../ranktable/validate.js';
import type { RankTable } from '../ranktable/types.js';
import { RunRecorder, type ConsoleChoice } from '../run-folder/recorder.js';
import { supervise, type RunControl, type RunOutcome, type SupervisorEvent } from '../supervise/supervisor.js';
import { HangDetector } from './hang-detector.js';
import type { SshOptions } from '../transport/ssh.js';
import type { HostTransport } from '../transport/types.js';
import { connectHost, DEFAULT_FANOUT, preflight, scriptOf, type PreflightOptions } from './preflight.js';
import { hostLossPolicy, hostsForRestart, type HostSwap } from './host-loss.js';
import { CheckpointWatcher, savingRanks } from '../checkpoints/watcher.js';
import { CKPT_INDEX_FILE } from '../checkpoints/ownership.js';
import type { CompleteStep } from '../checkpoints/policy.js';
import { checkResumeWorld, resumeFrom } from '../checkpoints/scan.js';
import { hasContent, writeSummary } from '../summary/run-summary.js';
import { renderStragglers, StragglerWatch } from '../summary/stragglers.js';
import { renderSummary } from '../summary/summary.js';
import { RunAnalysis } from './run-analysis.js';
import { METRICS_FILE } from '../report/metrics-file.js';
import { trace } from '../trace.js';

export interface LaunchRequest {
  job: JobSpec;
  hosts: HostSpec[];
  /** The hosts file's `spares:`: stand-ins for a host lost at a restart (--on-host-loss spare). */
  spares?: HostSpec[];
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
    throw new NpurunError(
      'input',
      `${file}: a version 1.2 (A3 SuperPoD) rank table: launch uses version 1.0 tables only so far; \`npurun ranktable validate\` and \`show\` read it`,
    );
  }
  if (!result.table || result.problems.length > 0) {
    throw new NpurunError('input', `${file}: invalid rank table`, {
      details: result.problems.map((p) => `${p.path}: ${p.message}`),
    });
  }
  return result.table;
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
  if (!req.job.command[0])
    throw new NpurunError('input', 'no command to run: give it after `--` or as `command:` in the job file');
  const onHostLoss = hostLossPolicy(req.job, req.spares ?? []);
  trace(`launch: preflight of ${req.hosts.length} hosts`);
  const { transports, facts } = await preflight(req.hosts, preflightOptions(req, req.job.command, progress));
  trace('launch: preflight done');
  const closeAll = () => Promise.all([...transports.values()].map((t) => t.close()));
  let plan: RunPlan;
  try {
    req.job.remoteDir = expandUid(req.job.remoteDir, transports);
    const resume = req.resume
      ? await resumeFrom(
          readRunRecord(req.runsDir, req.resume.runId),
          { transports, connect: (h) => connectHost(h, req.ssh) },
          req.job.resumeMap,
        )
      : undefined;
    if (resume)
      process.stderr.write(`npurun: resuming from run ${resume.runId}, epoch ${resume.epoch}, step ${resume.step}\n`);
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
    trace('launch: planned');
  } catch (err) {
    await closeAll();
    throw err;
  }
  if (req.dryRun) {
    await closeAll();
    out.write(req.json ? JSON.stringify(plan, null, 2) + '\n' : describePlan(plan) + '\n');
    return { exitCode: EXIT.ok, plan };
  }
  return runPlanned(plan, transports, req, onHostLoss).finally(async () => {
    await closeAll();
    trace('launch: connections closed');
  });
}

/**
 * `{uid}` in the remote dir (default /tmp/npurun-{uid}/{run_id}) is the launching user's uid on the
 * hosts: each user gets a private directory under /tmp, so nobody else's files are trusted.
 */
function expandUid(remoteDir: string, transports: Map<string, HostTransport>): string {
  if (!remoteDir.includes('{uid}')) return remoteDir;
  const uids = new Set([...transports.values()].map((t) => t.hello.uid));
  if (uids.size > 1) {
    throw new NpurunError(
      'input',
      `--remote-dir: {uid} stands for one uid, but the hosts log in as uids ${[...uids].join(', ')}`,
      {
        hint: 'give --remote-dir (or remote_dir:) without {uid}, in a directory private to you on every host',
      },
    );
  }
  return remoteDir.replace(/\{uid\}/g, String([...uids][0]));
}

async function copyRankTable(plan: RunPlan, transports: Map<string, HostTransport>): Promise<void> {
  if (!plan.rankTable || !plan.rankTablePath) return;
  const data = Buffer.from(serializeRankTable(plan.rankTable));
  const path = plan.rankTablePath;
  await Promise.all([...transports.values()].map((t) => t.putFile(path, data, 0o644)));
}

/** What preflight checks on every host, the same for the first attempt and every restart. */
function preflightOptions(
  req: LaunchRequest,
  command: string[],
  progress: PreflightOptions['progress'],
): PreflightOptions {
  return {
    ...(req.simulate !== undefined ? { simulate: req.simulate } : {}),
    program: command[0] as string,
    ...(scriptOf(command) ? { script: scriptOf(command) as string } : {}),
    ...(req.job.env.PATH ? { programPath: req.job.env.PATH } : {}),
    // The connection tolerates as long a silence as the agents do (a blip shorter than the heartbeat
    // timeout is survived), never less than 3 s.
    ssh: {
      ...req.ssh,
      keepaliveIntervalMs: 1000,
      keepaliveCountMax: Math.max(3, Math.ceil(req.job.heartbeatTimeoutSeconds)),
    },
    ...(req.fanout !== undefined ? { fanout: req.fanout } : {}),
    remoteDir: req.job.remoteDir,
    ...(req.shareDevices ? { shareDevices: true } : {}),
    progress,
  };
}

/** Every few seconds, ranks that fell behind while the run goes: on the console and in events.jsonl. */
const STRAGGLER_CHECK_MS = 5000;
function sayStragglers(
  watch: StragglerWatch,
  analysis: RunAnalysis,
  recorder: RunRecorder,
  say: (line: string) => void,
): NodeJS.Timeout {
  const timer = setInterval(() => {
    for (const line of watch.check(analysis.stepTimes, Date.now())) {
      say(`npurun: ${line}`);
      recorder.event('straggler', { line });
    }
  }, STRAGGLER_CHECK_MS);
  timer.unref();
  return timer;
}

/** Seconds before restart attempt n+1 (after n failed): 3, 6, 12, ... at most 60. */
export function restartBackoff(failed: number): number {
  return Math.min(60, 3 * 2 ** (failed - 1));
}

/** Each rank's file of a complete checkpoint step, as a resume of the same plan's ranks. */
function resumeOf(plan: RunPlan, step: CompleteStep): NonNullable<PlanInput['resume']> {
  const dirs = new Map(savingRanks(plan).map((s) => [s.label, s.dir]));
  const byLabel: Record<string, string> = {};
  for (const [label, name] of Object.entries(step.files)) {
    const dir = dirs.get(label);
    if (dir) byLabel[label] = posix.join(dir, name);
  }
  return { byLabel, fallback: Object.values(byLabel)[0] as string, epoch: step.epoch, step: step.step };
}

/** Sleeps `seconds`, or less when npurun is told to stop meanwhile (then resolves false). */
function waitUnlessStopped(seconds: number): Promise<boolean> {
  return new Promise((resolve) => {
    const stop = () => done(false);
    const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
    const timer = setTimeout(() => done(true), seconds * 1000);
    function done(ok: boolean) {
      clearTimeout(timer);
      for (const s of signals) process.off(s, stop);
      resolve(ok);
    }
    for (const s of signals) process.on(s, stop);
  });
}

/**
 * Runs the planned job, and with `restarts` relaunches it after a failure: everything is stopped (as
 * always), then every host is connected and probed again, and the job is planned again from the newest
 * checkpoint every saving rank completed (the run's own, as the watcher found them), in the same run
 * folder. run.json gets one entry per attempt; events.jsonl says which attempt each event belongs to.
 */
async function runPlanned(
  first: RunPlan,
  transports: Map<string, HostTransport>,
  req: LaunchRequest,
  onHostLoss: HostLossPolicy,
): Promise<LaunchResult> {
  const say = (line: string) => process.stderr.write(line + '\n');
  let hang: HangDetector | undefined;
  const analysis = new RunAnalysis(first);
  // One for every attempt: a rank named once is not named again at each restart.
  const behind = new StragglerWatch();
  const recorder = await RunRecorder.create({
    ...(first.job.hangTimeoutSeconds !== undefined
      ? { onLine: (label: string, line: Buffer) => hang?.line(label, line) }
      : {}),
    onLines: (label: string, lines: Buffer[], time: string, bytes: Buffer) => analysis.lines(label, lines, time, bytes),
    runsDir: req.runsDir,
    plan: first,
    argv: req.argv,
    timestamps: req.timestamps,
    console: req.console,
    ...(req.out ? { out: req.out } : {}),
  });
  analysis.open(recorder.dir);
  say(
    `npurun: run ${first.runId}: ${first.ranks.length} process${first.ranks.length === 1 ? '' : 'es'} on ${first.hosts.length} host${first.hosts.length === 1 ? '' : 's'}, logs in ${recorder.dir}`,
  );
  const checkpoint = first.job.checkpoint;
  // One watcher for every attempt: it knows which checkpoints the run wrote, whichever attempt wrote them.
  const watcher = checkpoint
    ? new CheckpointWatcher(savingRanks(first), transports, {
        keepMax: checkpoint.keepMax,
        pattern: checkpoint.pattern,
        indexFile: join(recorder.dir, CKPT_INDEX_FILE),
        onEvent: (e) => recorder.event(e.kind, { ...e }),
      })
    : undefined;
  let plan = first;
  let outcome: RunOutcome | undefined;
  let report: string | undefined;
  let stoppedBy: string | undefined;
  let resumedFrom: CompleteStep | undefined;
  let hostChange: { replaced?: HostSwap[]; dropped?: string[] } = {};
  // A run that cannot go on (a host could not be had): its exit code and why, in place of the last attempt's.
  let ended: { exitCode: number; report: string } | undefined;
  const spares = [...(req.spares ?? [])];
  for (let attempt = 1; ; attempt++) {
    recorder.beginAttempt(
      attempt,
      resumedFrom ? { epoch: resumedFrom.epoch, step: resumedFrom.step, files: resumedFrom.files } : null,
      { world_size: plan.worldSize, ...hostChange },
    );
    try {
      await copyRankTable(plan, transports);
      trace('launch: rank table copied');
      if (plan.rankTablePath)
        recorder.event('rank-table-copied', { path: plan.rankTablePath, hosts: plan.hosts.map((h) => h.name) });
    } catch (err) {
      await recorder.finish({
        status: 'failed',
        exitCode: EXIT.host,
        report: err instanceof Error ? err.message : String(err),
      });
      throw err;
    }
    if (attempt === 1) await watcher?.start();
    hang = plan.job.hangTimeoutSeconds !== undefined ? new HangDetector(plan, transports, recorder, say) : undefined;
    const current = hang;
    const liveStragglers = sayStragglers(behind, analysis, recorder, say);
    outcome = await supervise(plan, transports, {
      graceSeconds: plan.job.graceSeconds,
      orphanGraceSeconds: req.orphanGraceSeconds,
      sink: recorder,
      handleSignals: true,
      ...(current ? { control: (ctl: RunControl) => current.start(ctl) } : {}),
      onEvent: (e) => {
        const line = eventLine(e);
        if (line) say(line);
        if (e.kind === 'rank-ended') {
          current?.ended(e.outcome.label);
          recorder.rankExited(e.outcome.label, e.outcome);
        } else recorder.event(e.kind, { ...e });
      },
    });
    current?.stop();
    clearInterval(liveStragglers);
    stoppedBy = outcome.status === 'interrupted' ? whoStopped(recorder.dir, outcome.interruptedBy) : undefined;
    report =
      [current?.report, failureReport(outcome, recorder, plan, stoppedBy)].filter((r) => r !== undefined).join('\n') ||
      undefined;
    recorder.endAttempt({
      cause: outcome.status === 'failed' ? (outcome.rootCause?.cause ?? 'failed') : outcome.status,
      rootCause: outcome.rootCause?.label ?? null,
      exitCode: outcome.exitCode,
    });
    if (outcome.status !== 'failed' || attempt > plan.job.maxRestarts) break;
    if (report) say(report);
    const next = await nextAttempt(plan, transports, req, { policy: onHostLoss, spares }, watcher, attempt, say);
    if (!next) break;
    if ('exitCode' in next) {
      ended = next;
      break;
    }
    plan = next.plan;
    analysis.replanned(plan);
    resumedFrom = next.from;
    hostChange = {
      ...(next.replaced.length > 0 ? { replaced: next.replaced } : {}),
      ...(next.dropped.length > 0 ? { dropped: next.dropped } : {}),
    };
    if (next.replaced.length > 0 || next.dropped.length > 0) {
      recorder.replan(plan);
      watcher?.follow(savingRanks(plan));
    }
  }
  if (ended) report = [report, ended.report].filter((r) => r !== undefined).join('\n');
  const exitCode = ended?.exitCode ?? outcome.exitCode;
  await watcher?.stop(outcome.ranks.filter((r) => r.code !== 0).map((r) => r.label));
  const latest = watcher?.latest();
  if (latest) recorder.event('ckpt-latest', { ...latest });
  const stragglers = analysis.stragglers();
  if (stragglers.length > 0) recorder.event('stragglers', { ranks: stragglers });
  if (report) say(report);
  else say(`npurun: run ${plan.runId}: all ${plan.ranks.length} ranks succeeded`);
  await recorder.finish({
    status: outcome.status,
    exitCode,
    ...(outcome.rootCause ? { rootCause: outcome.rootCause.label } : {}),
    ...(report ? { report } : {}),
    ...(stoppedBy ? { stoppedBy } : {}),
  });
  const summary = analysis.summary();
  try {
    writeSummary(recorder.dir, summary);
  } catch (err) {
    say(
      `npurun: cannot write the summary into ${recorder.dir} (${(err as NodeJS.ErrnoException).code === 'ENOSPC' ? 'no space left on device' : (err as Error).message}); it is shown below`,
    );
  }
  // The per-rank series the report plots, for pandas (metrics.jsonl), written as the lines came.
  await analysis
    .close()
    .catch((err: unknown) =>
      say(`npurun: cannot write ${join(recorder.dir, METRICS_FILE)} (${fileErrorWords(err)}); the run is not affected`),
    );
  if (hasContent(summary)) say(`--- summary of run ${plan.runId} ---\n${renderSummary(summary)}`);
  for (const line of renderStragglers(stragglers)) say(`npurun: ${line}`);
  if (latest) say(`npurun: latest checkpoint every saving rank completed: epoch ${latest.epoch}, step ${latest.step}`);
  return { exitCode, plan, outcome, runDir: recorder.dir };
}

/** The next attempt, planned; or how the run ends when it cannot go on. */
type NextAttempt =
  | { plan: RunPlan; from: CompleteStep | undefined; replaced: HostSwap[]; dropped: string[] }
  | { exitCode: number; report: string };

/** "host h2 replaced by spare h3 (4 ranks, as before)" / "going on without host h2: 2 ranks on 1 host (was 4)". */
function hostChangeLine(
  attempt: number,
  next: RunPlan,
  before: RunPlan,
  replaced: HostSwap[],
  dropped: string[],
): string {
  const ranks = (n: number) => `${n} rank${n === 1 ? '' : 's'}`;
  const parts = replaced.map((r) => `host ${r.host} replaced by spare ${r.by}`);
  if (replaced.length > 0) parts[parts.length - 1] += ` (${ranks(next.worldSize)}, as before)`;
  if (dropped.length > 0)
    parts.push(
      `going on without host${dropped.length === 1 ? '' : 's'} ${dropped.join(', ')}: ${ranks(next.worldSize)} on ${next.hosts.length} host${next.hosts.length === 1 ? '' : 's'} (was ${before.worldSize})`,
    );
  return `npurun: attempt ${attempt}: ${parts.join('; ')}${next.rankTable ? '; new rank table' : ''}`;
}

/**
 * After a change of hosts, a rank may resume from a file another host wrote (a rank moved to a spare;
 * rank 0's file read by every rank left after a shrink): it must be on storage this host sees too.
 * Undefined when every such file is there, else what is missing. One listing per host and directory.
 */
async function resumeFilesElsewhere(
  next: RunPlan,
  before: RunPlan,
  transports: Map<string, HostTransport>,
): Promise<string | undefined> {
  const writer = new Map(savingRanks(before).map((s) => [s.dir, s.host]));
  const listed = new Map<string, Promise<Set<string>>>();
  for (const r of next.ranks) {
    const path = r.env.NPURUN_RESUME_CKPT;
    const t = transports.get(r.host);
    const dir = path ? posix.dirname(path) : '';
    if (!path || !t || writer.get(dir) === r.host) continue;
    const key = `${r.host}\0${dir}`;
    if (!listed.has(key))
      listed.set(
        key,
        t.listDir(dir).then(
          (l) => new Set((l ?? []).map((f) => f.name)),
          () => new Set<string>(),
        ),
      );
    if (!(await listed.get(key))?.has(posix.basename(path)))
      return `rank ${r.label}'s checkpoint ${path} (written on ${writer.get(dir) ?? 'another host'}) is not on ${r.host}: checkpoints must be on storage every host sees to resume on other hosts`;
  }
  return undefined;
}

/**
 * Prepares a restart after attempt `failed`: waits the backoff (Ctrl-C ends the run instead), closes
 * the agents, connects and probes every host again (a lost one waited for, replaced by a spare or left
 * out, as `--on-host-loss` says), and plans the job from the newest complete checkpoint. Undefined when
 * the run is stopped or cannot be planned again (said why); an exit code when a host cannot be had.
 */
async function nextAttempt(
  plan: RunPlan,
  transports: Map<string, HostTransport>,
  req: LaunchRequest,
  loss: { policy: HostLossPolicy; spares: HostSpec[] },
  watcher: CheckpointWatcher | undefined,
  failed: number,
  say: (line: string) => void,
): Promise<NextAttempt | undefined> {
  const wait = restartBackoff(failed);
  const left = plan.job.maxRestarts - failed + 1;
  say(`npurun: attempt ${failed} failed; restarting in ${wait} s (${left} restart${left === 1 ? '' : 's'} left)`);
  if (!(await waitUnlessStopped(wait))) {
    say('npurun: stopped while waiting to restart');
    return undefined;
  }
  await Promise.all([...transports.values()].map((t) => t.close()));
  transports.clear();
  const options = preflightOptions(req, plan.job.command, req.json ? 'none' : 'lines');
  const had = await hostsForRestart({
    hosts: plan.hosts,
    spares: loss.spares,
    policy: loss.policy,
    waitSeconds: plan.job.hostWaitSeconds,
    fanout: req.fanout ?? DEFAULT_FANOUT,
    probe: (h) => preflight([h], options),
    sleep: waitUnlessStopped,
    say,
  });
  if (!had) {
    say('npurun: stopped while waiting for hosts');
    return undefined;
  }
  if ('lost' in had) {
    const hosts = `host${had.lost.length === 1 ? '' : 's'} ${had.lost.join(', ')}`;
    const report = `npurun: cannot restart: ${hosts} could not be had within ${plan.job.hostWaitSeconds} s (--host-wait)${loss.policy === 'spare' ? ' and no spare was left' : ''}\n  ${had.why.join('\n  ')}`;
    return { exitCode: EXIT.host, report };
  }
  for (const [name, t] of had.transports) transports.set(name, t);
  const step = watcher?.latest();
  say(
    step
      ? `npurun: attempt ${failed + 1} resumes from epoch ${step.epoch}, step ${step.step} (every saving rank completed it)`
      : `npurun: attempt ${failed + 1} starts from the beginning: no checkpoint every saving rank completed`,
  );
  const cannot = (why: string) => {
    say(`npurun: cannot restart: ${why}`);
    return undefined;
  };
  try {
    const resume = step ? resumeOf(plan, step) : undefined;
    const map = plan.job.resumeMap ?? 'error';
    const next = planRun({
      runId: plan.runId,
      job: plan.job,
      hosts: had.hosts,
      facts: had.facts,
      // Fewer ranks loading rank 0's file (resume_map rank0): none takes its own.
      ...(resume ? { resume: had.dropped.length > 0 && map === 'rank0' ? { ...resume, byLabel: {} } : resume } : {}),
      onWarning: (m) => say(`npurun: warning: ${m}`),
    });
    if (had.replaced.length === 0 && had.dropped.length === 0) {
      const same =
        next.ranks.map((r) => `${r.label}@${r.host}`).join(' ') ===
        plan.ranks.map((r) => `${r.label}@${r.host}`).join(' ');
      if (!same) return cannot('the hosts no longer give the same ranks (a device became unusable?)');
    } else if (had.replaced.length > 0 && had.dropped.length === 0 && next.worldSize !== plan.worldSize) {
      return cannot(
        `with ${had.replaced.map((r) => `spare ${r.by}`).join(', ')} the hosts give ${next.worldSize} ranks, the run has ${plan.worldSize} (a spare needs as many usable devices as the host it replaces)`,
      );
    }
    if (resume && had.dropped.length > 0)
      checkResumeWorld(next, {
        ...resume,
        runId: plan.runId,
        map,
        oldRanks: plan.ranks.filter((r) => r.role === 'rank').map((r) => r.label),
        savers: Object.keys(resume.byLabel),
      });
    const moved = had.replaced.length > 0 || had.dropped.length > 0;
    const missing = resume && moved ? await resumeFilesElsewhere(next, plan, transports) : undefined;
    if (missing) return cannot(missing);
    if (moved) say(hostChangeLine(failed + 1, next, plan, had.replaced, had.dropped));
    return { plan: next, from: step, replaced: had.replaced, dropped: had.dropped };
  } catch (err) {
    return cannot(err instanceof Error ? err.message : String(err));
  }
}
