/** What npurun knows about one NPU on one host. */
export interface NpuDevice {
  /** Physical device id (npu-smi Phy-ID / the `N` of hccn.conf `address_N`): what DEVICE_ID and the rank table use. */
  deviceId: number;
  /** NPU id as npu-smi prints it in the first column (equals deviceId on 910A/910B; on A3 two chips share one NPU id). */
  npuId: number;
  /** Chip index inside the NPU (0 on 910A/910B). */
  chipId: number;
  /** Chip name, e.g. "910B3". */
  name: string;
  /** Health as npu-smi prints it: OK, Warning, Alarm, Critical, ... */
  health: string;
  busId?: string;
  /** IPv4 address of the device's RoCE NIC, when known. */
  deviceIp?: string;
  /** Where deviceIp came from. */
  ipSource?: 'hccn.conf' | 'hccn_tool' | 'given' | 'simulated';
  /** Processes npu-smi lists on this device (a non-empty list means "held by another job"). */
  processes: { pid: number; name?: string; memoryMiB?: number }[];
}

export interface NumaNode {
  node: number;
  cpus: number[];
}

export interface NetInterface {
  name: string;
  /** IPv4 addresses without prefix length. */
  addresses: string[];
}

/** Everything preflight learns about one host, from one probe round-trip. */
export interface HostFacts {
  hostname: string;
  devices: NpuDevice[];
  /** CPUs this host offers (online CPU ids). */
  cpus: number[];
  numaNodes: NumaNode[];
  interfaces: NetInterface[];
  /** Human-readable problems found while probing (tool missing, device without address, ...). */
  problems: string[];
  /** Paths of the tools found, for messages. */
  tools: { npuSmi?: string; hccnTool?: string };
  /** True when the facts come from `--simulate`, not a real probe. */
  simulated?: boolean;
}

/** Runs a POSIX sh script on a host (locally via execa, remotely over SSH) and returns its output. */
export type ShellRunner = (script: string) => Promise<{ stdout: string; stderr: string; code: number | null }>;
