import { markHeld, parseHeld } from '../devices/held.js';
import { probeHost } from '../devices/probe.js';
import type { HostFacts } from '../devices/types.js';
import { NpurunError } from '../errors.js';
import { openSshSource, ownParserSource, type SshSettingsSource } from '../inventory/openssh-config.js';
import { readSshConfig } from '../inventory/ssh-config.js';
import type { HostSpec } from '../inventory/types.js';
import { LocalTransport } from '../transport/local.js';
import { findSshClient, sshConfigQuery } from '../transport/openssh.js';
import type { SshOptions } from '../transport/ssh.js';
import { runScript, type HostTransport } from '../transport/types.js';
import { withFanout } from '../fanout.js';

/** The one module that opens host connections: launch's preflight and every command that reaches hosts. */

let warnedNoClient = false;

/**
 * Where hosts' SSH settings come from: `ssh -G` (with `-F FILE` for --ssh-config) wherever an ssh
 * client is installed, so Match, Include, tokens and multi-hop ProxyJump mean what they mean to ssh;
 * else npurun's own ssh_config parser, said once per process.
 */
export function hostSettings(
  sshConfigFile: string | undefined,
  onWarning: (message: string) => void,
): SshSettingsSource {
  // Read even when ssh answers: a --ssh-config that cannot be read is named as such (exit 2).
  const text = readSshConfig(sshConfigFile);
  const ssh = findSshClient();
  if (ssh) return openSshSource(sshConfigQuery(ssh, sshConfigFile));
  if (!warnedNoClient) {
    warnedNoClient = true;
    onWarning(
      'no ssh client on PATH: ssh_config is read by npurun\'s own parser (no Match blocks; see README "Hosts")',
    );
  }
  return ownParserSource(text, undefined, onWarning);
}

/** SSH options whose ProxyJump hops resolve through the same source as the hosts. */
export function sshOptionsOf(settings: SshSettingsSource, options: SshOptions = {}): SshOptions {
  return { ...options, resolveJump: (jump) => settings.jump(jump) };
}

/** Connects to a host and starts its agent: the only way npurun reaches a host. */
export async function connectHost(host: HostSpec, ssh: SshOptions = {}): Promise<HostTransport> {
  if (host.local) return LocalTransport.connect(host);
  if (host.slurm) return (await import('../transport/srun.js')).SrunTransport.connect(host, host.slurm, ssh);
  // ssh2 is loaded only when a remote host is reached: a local run starts faster without it.
  const { SshTransport } = await import('../transport/ssh.js');
  return SshTransport.connect(host, ssh);
}

export { withFanout } from '../fanout.js';

export const HOSTS_FANOUT = 256;

/** What `fn` returned on one host, or why the host could not be reached or `fn` failed there. */
export interface HostResult<T> {
  host: HostSpec;
  value?: T;
  error?: NpurunError;
}

export interface WithHostsOptions {
  ssh?: SshOptions;
  /** Hosts connected at once (default 256). */
  fanout?: number;
}

function asHostError(host: HostSpec, err: unknown): NpurunError {
  if (err instanceof NpurunError)
    return err.message.startsWith(`host ${host.name}: `)
      ? err
      : new NpurunError(err.kind, `host ${host.name}: ${err.message}`, err.hint ? { hint: err.hint } : {});
  return new NpurunError('unreachable', `host ${host.name}: ${err instanceof Error ? err.message : String(err)}`);
}

/**
 * Connects every host (at most `fanout` at once), runs `fn` on each, closes each connection as its
 * `fn` ends. Never throws for one host: its error (exit 3 kind) is in its result, in `hosts` order.
 */
export async function withHosts<T>(
  hosts: HostSpec[],
  options: WithHostsOptions,
  fn: (transport: HostTransport, host: HostSpec) => Promise<T>,
): Promise<HostResult<T>[]> {
  const results: HostResult<T>[] = hosts.map((host) => ({ host }));
  await withFanout(results, options.fanout ?? HOSTS_FANOUT, async (r) => {
    let transport: HostTransport | undefined;
    try {
      transport = await connectHost(r.host, options.ssh);
      r.value = await fn(transport, r.host);
    } catch (err) {
      r.error = asHostError(r.host, err);
    } finally {
      await transport?.close().catch(() => undefined);
    }
  });
  return results;
}

/**
 * Every host's devices, probed through its agent (`devices --hosts`, `ranktable --hosts`): facts by
 * host name, or one error listing every host that failed (exit 3; "not ready" when all of them answered).
 */
export async function probeHosts(hosts: HostSpec[], options: WithHostsOptions): Promise<Record<string, HostFacts>> {
  const results = await withHosts(hosts, options, async (transport) => {
    let output = '';
    const facts = await probeHost(async (script) => {
      const r = await runScript(transport, script);
      output = r.stdout;
      return { stdout: r.stdout, stderr: r.stderr, code: r.code };
    });
    // The probe also reads the default remote dir's pid files: devices another live run holds.
    markHeld(facts, parseHeld(output));
    return facts;
  });
  const failed = results.filter((r) => r.error);
  if (failed.length > 0) {
    const kind = failed.every((r) => r.error?.kind === 'not-ready') ? 'not-ready' : 'unreachable';
    throw new NpurunError(
      kind,
      `${failed.length} of ${results.length} host${results.length === 1 ? '' : 's'} could not be probed`,
      {
        details: failed.map(
          ({ host, error }) =>
            `${host.name} (${host.address}): ${error?.message.replace(/^host [^:]+: /, '')}${error?.hint ? ` (${error.hint})` : ''}`,
        ),
      },
    );
  }
  return Object.fromEntries(results.map((r) => [r.host.name, r.value as HostFacts]));
}
