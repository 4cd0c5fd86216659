import { resolve } from 'node:path';
import type { HostFacts } from '../devices/types.js';
import type { HostSpec } from '../plan/types.js';

/**
 * The flags that name hosts and runs (--hosts, --ssh-config) turned into what the library
 * takes. SSH and the launcher load only when a command reaches hosts, so local commands start fast.
 */

const warn = (m: string) => process.stderr.write(`npurun: warning: ${m}\n`);

/** The ssh_config text and the hosts of `hostsFile` read through it. */
export async function inventoryOf(hostsFile: string, sshConfigFlag: string | undefined) {
  const [{ loadInventory }, { readSshConfig }, { expandTilde }] = await Promise.all([
    import('../inventory/inventory.js'),
    import('../inventory/ssh-config.js'),
    import('../plan/job.js'),
  ]);
  const configText = readSshConfig(sshConfigFlag);
  const hosts = loadInventory(resolve(expandTilde(hostsFile, '--hosts')), { ...(configText !== undefined ? { sshConfigText: configText } : {}), onWarning: warn });
  return { hosts, configText };
}

/** Every host of an inventory, probed over SSH (or locally): facts by host name. `check` runs before any connection. */
export async function probeInventory(
  hostsFile: string,
  sshConfigFlag: string | undefined,
  check: (hosts: HostSpec[]) => void = () => {},
): Promise<{ hosts: HostSpec[]; facts: Record<string, HostFacts> }> {
  const { hosts, configText } = await inventoryOf(hostsFile, sshConfigFlag);
  check(hosts);
  const [{ preflight }, { sshJumpResolver }] = await Promise.all([import('../launch/preflight.js'), import('../launch/jump.js')]);
  const { transports, facts } = await preflight(hosts, { progress: 'none', ssh: { resolveJump: sshJumpResolver(configText) } });
  await Promise.all([...transports.values()].map((t) => t.close()));
  return { hosts, facts };
}

/** This machine probed (or N simulated devices). */
export async function probeThisHost(simulate: number | undefined): Promise<HostFacts> {
  if (simulate !== undefined) return (await import('../devices/simulate.js')).simulatedHostFacts(simulate);
  const { probeHost, localShellRunner } = await import('../devices/probe.js');
  return probeHost(localShellRunner);
}
