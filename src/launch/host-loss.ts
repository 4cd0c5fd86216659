import type { HostFacts } from '../devices/types.js';
import { inputError, isNpurunError } from '../errors.js';
import type { HostLossPolicy, HostSpec, JobSpec } from '../plan/types.js';
import type { HostTransport } from '../transport/types.js';
import { withFanout } from './hosts.js';
import type { PreflightResult } from './preflight.js';

/**
 * Hosts lost between attempts (`--on-host-loss wait|spare|shrink`): the policy, checked before anything
 * starts, and the hosts a restart runs on: the same ones (waited for), a spare in a lost host's place,
 * or the ones left.
 */

const WHERE = '--on-host-loss (job on_host_loss)';

/**
 * The policy of a run: the one asked for, else `spare` when the hosts file lists spares, else `wait`.
 * Combinations that could not restart as asked are refused now (exit 2), not at the first loss.
 */
export function hostLossPolicy(job: JobSpec, spares: HostSpec[]): HostLossPolicy {
  const policy = job.onHostLoss ?? (spares.length > 0 ? 'spare' : 'wait');
  if (policy === 'spare' && spares.length === 0)
    throw inputError(
      WHERE,
      'spare: the hosts file lists no spares; expected a `spares:` list (same fields as `hosts:`)',
    );
  if (policy !== 'wait' && job.rankTableFile)
    throw inputError(
      WHERE,
      `${policy}: the given rank table ${job.rankTableFile} names every server of the run, so no host can change; expected wait, or a generated rank table (no --rank-table)`,
    );
  if (policy === 'shrink' && job.checkpoint && !job.checkpoint.masterOnly && (job.resumeMap ?? 'error') === 'error')
    throw inputError(
      WHERE,
      'shrink: every rank saves a checkpoint of its own, and fewer ranks cannot load them rank for rank; expected `resume_map: rank0` or `same-rank` in the job file (how the ranks left load them), or master_only checkpoints',
    );
  return policy;
}

/** A lost host and the spare that took its place. */
export interface HostSwap {
  host: string;
  by: string;
}

/** The hosts a restart runs on, connected and probed. */
export interface RestartHosts {
  hosts: HostSpec[];
  transports: Map<string, HostTransport>;
  facts: Record<string, HostFacts>;
  replaced: HostSwap[];
  dropped: string[];
}

/** What one host's preflight gave: its connection and facts, or why it failed. */
type Probed = { host: HostSpec; result?: PreflightResult; error?: string };

export interface RestartHostsOptions {
  /** The last attempt's hosts, in rank order. */
  hosts: HostSpec[];
  /** Spares not used yet, in the hosts file's order; those taken are removed. */
  spares: HostSpec[];
  policy: HostLossPolicy;
  waitSeconds: number;
  fanout: number;
  /** Connects and probes one host (preflight of that host alone). */
  probe: (host: HostSpec) => Promise<PreflightResult>;
  /** Sleeps, unless npurun is told to stop meanwhile (then false). */
  sleep: (seconds: number) => Promise<boolean>;
  say: (line: string) => void;
}

function errorText(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  // Preflight of one host: its one detail line, without the "name (address): " the caller adds.
  return isNpurunError(err) && err.details.length
    ? err.details.map((d) => d.replace(/^\S+ \([^)]*\): /, '')).join('; ')
    : message;
}

async function probeAll(hosts: HostSpec[], opts: RestartHostsOptions): Promise<Probed[]> {
  const probed: Probed[] = hosts.map((host) => ({ host }));
  await withFanout(probed, opts.fanout, async (p) => {
    try {
      p.result = await opts.probe(p.host);
    } catch (err) {
      p.error = errorText(err);
    }
  });
  return probed;
}

async function closeAll(probed: Probed[]): Promise<void> {
  await Promise.all(
    probed.flatMap((p) => [...(p.result?.transports.values() ?? [])].map((t) => t.close().catch(() => undefined))),
  );
}

/**
 * The hosts for a pure restart decision: lost hosts replaced in place by ready spares (`spare`) or left
 * out (`shrink`, while at least one host is left). `missing`: lost hosts still without a place.
 */
export function placeHosts(
  hosts: HostSpec[],
  lost: ReadonlySet<string>,
  policy: HostLossPolicy,
  spareFor: (lost: HostSpec) => HostSpec | undefined,
): { hosts: HostSpec[]; replaced: HostSwap[]; dropped: string[]; missing: string[] } {
  const replaced: HostSwap[] = [];
  const missing: string[] = [];
  if (policy === 'shrink' && hosts.some((h) => !lost.has(h.name)))
    return { hosts: hosts.filter((h) => !lost.has(h.name)), replaced, dropped: [...lost], missing };
  const placed = hosts.map((h) => {
    if (!lost.has(h.name)) return h;
    const spare = policy === 'spare' ? spareFor(h) : undefined;
    if (spare) replaced.push({ host: h.name, by: spare.name });
    else missing.push(h.name);
    return spare ?? h;
  });
  return { hosts: placed, replaced, dropped: [], missing };
}

/**
 * Connects and probes every host of the next attempt. A host that fails is replaced by the first spare
 * that passes preflight (`spare`), left out (`shrink`), or waited for (`wait`, and any policy once
 * nothing else is left) up to `waitSeconds`, probing again every few seconds. Either every host of the
 * result is connected, or `lost` names those that could not be had (every connection closed), or
 * undefined when npurun was told to stop.
 */
export async function hostsForRestart(
  opts: RestartHostsOptions,
): Promise<RestartHosts | { lost: string[]; why: string[] } | undefined> {
  const deadline = Date.now() + opts.waitSeconds * 1000;
  let hosts = opts.hosts;
  const replaced: HostSwap[] = [];
  const dropped: string[] = [];
  for (let tries = 1; ; tries++) {
    const probed = await probeAll(hosts, opts);
    const failed = probed.filter((p) => p.error !== undefined);
    const lost = new Set(failed.map((p) => p.host.name));
    // Spares in the file's order, as many at once as hosts still need one; the first lost host gets the
    // first spare that passes preflight.
    const ready = new Map<string, Probed>();
    const spareFor = (h: HostSpec): HostSpec | undefined => ready.get(h.name)?.host;
    const need = opts.policy === 'spare' ? failed.map((f) => f.host.name) : [];
    while (need.length > 0 && opts.spares.length > 0) {
      for (const p of await probeAll(opts.spares.splice(0, need.length), opts)) {
        if (p.result) ready.set(need.shift() as string, p);
        else opts.say(`npurun: restart: spare ${p.host.name} (${p.host.address}) is not usable either: ${p.error}`);
      }
    }
    const next = placeHosts(hosts, lost, opts.policy, spareFor);
    replaced.push(...next.replaced);
    dropped.push(...next.dropped);
    const used = [...probed.filter((p) => p.result), ...ready.values()];
    if (next.missing.length === 0) {
      const transports = new Map<string, HostTransport>();
      const facts: Record<string, HostFacts> = {};
      for (const p of used) {
        for (const [name, t] of p.result?.transports ?? []) transports.set(name, t);
        Object.assign(facts, p.result?.facts);
      }
      return { hosts: next.hosts, transports, facts, replaced, dropped };
    }
    await closeAll(used);
    hosts = next.hosts;
    const why = failed
      .filter((f) => next.missing.includes(f.host.name))
      .map((f) => `${f.host.name} (${f.host.address}): ${f.error}`);
    const left = Math.round((deadline - Date.now()) / 1000);
    if (left <= 0) return { lost: next.missing, why };
    const spent = opts.policy === 'spare' ? ' (no spare left)' : '';
    opts.say(
      `npurun: restart: not every host is ready (try ${tries})${spent}; waiting for them, ${left} s left\n  ${why.join('\n  ')}`,
    );
    if (!(await opts.sleep(Math.min(5, left)))) return undefined;
  }
}
