import { probeHost } from '../devices/probe.js';
import { simulatedHostFacts } from '../devices/simulate.js';
import type { HostFacts } from '../devices/types.js';
import { NpurunError, isNpurunError } from '../errors.js';
import type { HostSpec } from '../plan/types.js';
import { shellQuote } from '../shell.js';
import type { SshOptions } from '../transport/ssh.js';
import { connectHost, withFanout } from './hosts.js';
import { runScript, type HostTransport } from '../transport/types.js';
import { DEFAULT_REMOTE_DIR, heldScript, markHeld, parseHeld } from '../devices/held.js';
import { trace } from '../trace.js';

export { connectHost } from './hosts.js';

export interface PreflightOptions {
  /** `--simulate N`: the local host reports N simulated NPUs instead of probing. */
  simulate?: number;
  /** The program every rank runs (argv[0]); checked on every host. */
  program?: string;
  /** For an interpreter (python, bash...), its script when given by absolute path; checked too. */
  script?: string;
  /** PATH the ranks will use, when the job sets one. */
  programPath?: string;
  ssh?: SshOptions;
  /** Hosts connected and probed at once (default 256). */
  fanout?: number;
  /** The job's remote-dir template: live runs' pid files there tell which devices they hold. */
  remoteDir?: string;
  /** Let this run use devices another live npurun run holds. */
  shareDevices?: boolean;
  /** Progress display: listr2 on a TTY, plain lines otherwise, nothing for `--json`. */
  progress: 'tty' | 'lines' | 'none';
}

export interface PreflightResult {
  transports: Map<string, HostTransport>;
  facts: Record<string, HostFacts>;
}

const INTERPRETER = /(^|\/)(python[\d.]*|bash|sh|perl|ruby|node)$/;

/** The script an interpreter command runs, when it is named by absolute path (the one case preflight can check). */
export function scriptOf(argv: string[]): string | undefined {
  const [program, first] = argv;
  if (!program || !first || !INTERPRETER.test(program)) return undefined;
  return first.startsWith('/') ? first : undefined;
}

export const DEFAULT_FANOUT = 256;
/** Beyond this many hosts a terminal gets one counting line instead of a row per host. */
const LISTR_MAX_HOSTS = 16;

/** `preflight: 97/128 hosts ready, 1 failed` redrawn in place on a terminal. */
class ProgressLine {
  private ok = 0;
  private failed = 0;
  constructor(private readonly total: number) {}
  tick(ok: boolean): void {
    if (ok) this.ok++;
    else this.failed++;
    process.stderr.write(
      `\r\x1b[Kpreflight: ${this.ok}/${this.total} hosts ready${this.failed ? `, ${this.failed} failed` : ''}`,
    );
  }
  done(): void {
    process.stderr.write('\n');
  }
}

/** What preflight learned about one host, or why it failed. */
type HostCheck = { host: HostSpec; transport?: HostTransport; facts?: HostFacts; error?: string; answered?: boolean };

/**
 * Shell lines appended to the probe, so checking the program (and an interpreter's script) costs no
 * extra round trip: every SSH exec starts the user's login shell, which can be slow (conda or pyenv
 * initialisation in ~/.bashrc).
 */
export function programChecks(
  program: string | undefined,
  path: string | undefined,
  script: string | undefined,
): string {
  const lines: string[] = [];
  // A relative path with a slash is resolved in the rank's own working dir, which does not exist yet.
  if (program && !(program.includes('/') && !program.startsWith('/'))) {
    const setPath = path ? `PATH=${shellQuote(path)} ` : '';
    lines.push(
      `echo "@@npurun:program@@"; if ${setPath}sh -c 'command -v -- "$1"' sh ${shellQuote(program)} >/dev/null 2>&1 || [ -x ${shellQuote(program)} ]; then echo ok; fi`,
    );
  }
  if (script) lines.push(`echo "@@npurun:script@@"; [ -r ${shellQuote(script)} ] && echo ok`);
  return lines.join('\n');
}

async function checkHost(check: HostCheck, opts: PreflightOptions): Promise<string> {
  const { host } = check;
  check.transport = await connectHost(host, opts.ssh);
  trace(`preflight: ${host.name}: agent up`);
  const transport = check.transport;
  const simulated = host.local && opts.simulate !== undefined;
  // The probe reads the default remote dir's pid files itself; a simulated host has no probe.
  const held = opts.remoteDir && (simulated || opts.remoteDir !== DEFAULT_REMOTE_DIR) ? heldScript(opts.remoteDir) : '';
  const checks = [programChecks(opts.program, opts.programPath, opts.script), held].filter(Boolean).join('\n');
  let output = '';
  check.facts =
    simulated && opts.simulate !== undefined
      ? simulatedHostFacts(opts.simulate)
      : await probeHost(async (script) => {
          const r = await runScript(transport, `${script}\n${checks}\n`);
          output = r.stdout;
          return { stdout: r.stdout, stderr: r.stderr, code: r.code };
        });
  if (checks && output === '') output = (await runScript(transport, `${checks}\n`)).stdout;
  trace(`preflight: ${host.name}: probed`);
  markHeld(check.facts, parseHeld(output));
  if (opts.shareDevices) {
    for (const d of check.facts.devices) d.processes = d.processes.filter((p) => !p.name?.startsWith('npurun run '));
    check.facts.problems = check.facts.problems.filter((p) => !/is held by npurun run /.test(p));
  }
  const said = (section: string) => new RegExp(`@@npurun:${section}@@\\nok\\n`).test(output);
  if (checks.includes('@@npurun:program@@') && !said('program')) {
    throw new NpurunError(
      'not-ready',
      `program "${opts.program}" not found (not on PATH of a non-interactive shell, nor an executable file)`,
    );
  }
  if (opts.script && !said('script'))
    throw new NpurunError(
      'not-ready',
      `script ${opts.script} not found on this host (is it on storage every host shares?)`,
    );
  const n = check.facts.devices.length;
  const chip = check.facts.devices[0]?.name ?? '';
  return `${n} NPU${n === 1 ? '' : 's'}${chip ? ` (${chip})` : ''}${check.facts.simulated ? ', simulated' : ''}`;
}

function failureText(err: unknown): string {
  if (isNpurunError(err)) return err.message.replace(/^host [^:]+: /, '') + (err.hint ? ` (${err.hint})` : '');
  return err instanceof Error ? err.message : String(err);
}

/**
 * Connects to every host at once, probes its devices and checks the program. Either every host passes
 * and the connections stay open for the launch, or all are closed and one error lists every failing
 * host (exit 3): nothing is ever started on a partly reachable cluster.
 */
export async function preflight(hosts: HostSpec[], opts: PreflightOptions): Promise<PreflightResult> {
  const checks: HostCheck[] = hosts.map((host) => ({ host }));
  const runCheck = async (c: HostCheck): Promise<string> => {
    try {
      return await checkHost(c, opts);
    } catch (err) {
      c.error = failureText(err);
      c.answered = isNpurunError(err) && err.kind === 'not-ready';
      throw new Error(`${c.host.name}: ${c.error}`, { cause: err });
    }
  };
  const fanout = opts.fanout ?? DEFAULT_FANOUT;
  if (opts.progress === 'tty' && checks.length <= LISTR_MAX_HOSTS) {
    const { Listr } = await import('listr2');
    await new Listr(
      checks.map((c) => ({
        title: `${c.host.name}`,
        task: async (_ctx: unknown, task: { title: string }) => {
          task.title = `${c.host.name}: ${await runCheck(c)}`;
        },
      })),
      { concurrent: fanout, exitOnError: false, collectErrors: false, rendererOptions: { collapseErrors: false } },
    ).run();
  } else {
    const counter = opts.progress === 'tty' ? new ProgressLine(checks.length) : undefined;
    await withFanout(checks, fanout, async (c) => {
      try {
        const summary = await runCheck(c);
        if (opts.progress === 'lines') process.stderr.write(`preflight: ${c.host.name}: ok, ${summary}\n`);
      } catch {
        if (opts.progress !== 'none')
          process.stderr.write(`${counter ? '\r\x1b[K' : ''}preflight: ${c.host.name}: FAILED: ${c.error}\n`);
      }
      counter?.tick(c.error === undefined);
    });
    counter?.done();
  }
  const failed = checks.filter((c) => c.error !== undefined);
  if (failed.length > 0) {
    await Promise.all(checks.map(async (c) => c.transport?.close()));
    // "not ready" when every failing host answered (a device busy, a program missing), else unreachable.
    throw new NpurunError(
      failed.every((c) => c.answered) ? 'not-ready' : 'unreachable',
      `preflight failed on ${failed.length} of ${checks.length} host${checks.length === 1 ? '' : 's'}; nothing was started`,
      {
        details: failed.map((c) => `${c.host.name} (${c.host.address}): ${c.error}`),
      },
    );
  }
  const transports = new Map<string, HostTransport>();
  const facts: Record<string, HostFacts> = {};
  for (const c of checks) {
    transports.set(c.host.name, c.transport as HostTransport);
    facts[c.host.name] = c.facts as HostFacts;
  }
  return { transports, facts };
}
