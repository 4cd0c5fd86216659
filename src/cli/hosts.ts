import { accessSync, constants } from 'node:fs';
import { resolve } from 'node:path';
import { fileError } from '../errors.js';
import { makeDirs } from '../make-dirs.js';
import type { HostFacts } from '../devices/types.js';
import type { HostSpec } from '../plan/types.js';

/**
 * The flags that name hosts and places (--hosts, --ssh-config, --runs-dir) turned into what the library
 * takes. SSH and the launcher load only when a command reaches hosts, so local commands start fast.
 */

const warn = (m: string) => process.stderr.write(`npurun: warning: ${m}\n`);

/** The hosts of `hostsFile` (else this machine) and its spares, their SSH settings from `ssh -G` or ssh_config, and SSH options for their ProxyJump hops. */
export async function inventoryOf(hostsFile: string | undefined, sshConfigFlag: string | undefined) {
  const [{ loadHostsFile, localHost }, { hostSettings, sshOptionsOf }, { expandTilde }] = await Promise.all([
    import('../inventory/inventory.js'),
    import('../launch/hosts.js'),
    import('../plan/job.js'),
  ]);
  const settings = hostSettings(sshConfigFlag, warn);
  const { hosts, spares } = hostsFile
    ? await loadHostsFile(resolve(expandTilde(hostsFile, '--hosts')), { settings, onWarning: warn })
    : { hosts: [localHost()], spares: [] };
  return { hosts, spares, ssh: sshOptionsOf(settings) };
}

/** Every host of an inventory, probed over SSH (or locally): facts by host name. `check` runs before any connection. */
export async function probeInventory(
  hostsFile: string,
  sshConfigFlag: string | undefined,
  check: (hosts: HostSpec[]) => void = () => {},
): Promise<{ hosts: HostSpec[]; facts: Record<string, HostFacts> }> {
  const { hosts, ssh } = await inventoryOf(hostsFile, sshConfigFlag);
  check(hosts);
  const { probeHosts } = await import('../launch/hosts.js');
  return { hosts, facts: await probeHosts(hosts, { ssh }) };
}

/** This machine probed (or N simulated devices). */
export async function probeThisHost(simulate: number | undefined): Promise<HostFacts> {
  if (simulate !== undefined) return (await import('../devices/simulate.js')).simulatedHostFacts(simulate);
  const [{ probeHost }, { localShellRunner }] = await Promise.all([
    import('../devices/probe.js'),
    import('../transport/local.js'),
  ]);
  return probeHost(localShellRunner);
}

/** A directory npurun writes into (launch's --runs-dir): created if missing, refused in words before anything starts if it cannot be. */
export function writableDir(dir: string, flag: string): string {
  try {
    makeDirs(dir);
    accessSync(dir, constants.W_OK);
  } catch (err) {
    throw fileError(`${flag} ${dir}`, 'cannot write run folders there', err);
  }
  return dir;
}
