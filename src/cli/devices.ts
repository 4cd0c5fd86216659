import { renderDeviceTable, readiness, SIMULATE_HINT } from '../devices/report.js';
import type { HostFacts } from '../devices/types.js';
import { EXIT, inputError } from '../errors.js';
import { boolFlag, intFlag, runCommand, SHARED, stringFlag, type CommandSpec } from './args.js';
import { probeInventory, probeThisHost } from './hosts.js';

export const SPEC: CommandSpec = {
  name: 'devices',
  usage: 'npurun devices [--hosts FILE] [--simulate N] [--json]',
  about: `The NPUs of this host (or of every host of --hosts, over SSH): device id, NPU/chip, chip name,
health, HCCL NIC address and where it came from (/etc/hccn.conf or hccn_tool), bus id, and the
pids holding a device. Problems (no npu-smi, unhealthy device, device without address, device held
by another process) are listed under the table.`,
  flags: {
    hosts: { ...SHARED.hosts, help: 'probe every host of this inventory over SSH' },
    'ssh-config': SHARED['ssh-config'],
    simulate: {
      ...SHARED.simulate,
      help: 'N simulated devices instead of probing this host: 1-8 NPUs of a 910B server,\n9-16 dies of an A3 server',
    },
    json: { ...SHARED.json, help: 'the facts as JSON (one object; with --hosts one per host name)' },
  },
  footer: `Exit code: 0 every device healthy, free and addressed; 1 some devices have problems (the others are
usable); 3 a host has no usable (healthy and free) device, or cannot be reached.
Tools are searched on PATH and in /usr/local/Ascend/driver/tools, /usr/local/sbin, /usr/local/bin and
/usr/local/dcmi; NPURUN_HCCN_CONF names another file than /etc/hccn.conf (tests).`,
};

const EXIT_OF = { ready: EXIT.ok, problems: EXIT.problems, 'not-ready': EXIT.host } as const;

export function run(argv: string[]): Promise<number> {
  return runCommand(SPEC, argv, async (args) => {
    const simulate = intFlag(args, 'simulate', 1, 16);
    const hostsFile = stringFlag(args, 'hosts');
    let all: Record<string, HostFacts>;
    if (hostsFile) {
      if (simulate !== undefined) throw inputError('--simulate', 'not with --hosts: each host is probed as it is');
      all = (await probeInventory(hostsFile, stringFlag(args, 'ssh-config'))).facts;
    } else {
      const local = await probeThisHost(simulate);
      all = { [local.hostname || 'this host']: local };
    }
    if (boolFlag(args, 'json'))
      process.stdout.write(JSON.stringify(hostsFile ? all : Object.values(all)[0], null, 2) + '\n');
    else
      process.stdout.write(
        Object.entries(all)
          .map(([h, f]) => renderDeviceTable(h, f))
          .join('\n\n') + '\n',
      );
    const facts = Object.values(all);
    if (!hostsFile && facts.every((f) => f.devices.length === 0)) process.stderr.write(`${SIMULATE_HINT}\n`);
    return EXIT_OF[readiness(facts)];
  });
}
