/** How npurun reaches a remote host over SSH, after the hosts file and ~/.ssh/config were applied. */
export interface SshSettings {
  /** Host to connect to (after ssh_config HostName). */
  hostname: string;
  port: number;
  user: string;
  identityFiles: string[];
  knownHostsFiles: string[];
  /** "yes" (default) or "accept-new"; "no" is refused unless the user set it explicitly in ssh_config. */
  strictHostKeyChecking: 'yes' | 'accept-new' | 'no';
  proxyJump?: string;
  useAgent: boolean;
  /** ssh-agent socket from IdentityAgent, used instead of SSH_AUTH_SOCK. */
  identityAgent?: string;
}

/** One host as the inventory describes it, after ~/.ssh/config was applied. */
export interface HostSpec {
  /** Name used in prefixes, messages and run records (inventory name, else the address). */
  name: string;
  /** Address npurun connects to and that the job uses as this host's address (server_id, MASTER_ADDR). */
  address: string;
  /** True for the launching machine itself: no SSH, processes started with execa. */
  local: boolean;
  ssh?: SshSettings;
  /** "auto" = every healthy device found; else these physical ids. */
  devices: 'auto' | number[];
  /** For the `host slots=N` hostfile form: how many ranks. */
  slots?: number;
  /** A node of the Slurm allocation npurun runs in: its agent is started by srun, never over SSH. */
  slurm?: SlurmNode;
}

/** A node of a Slurm allocation, as `scontrol` names it. */
export interface SlurmNode {
  jobId: string;
  /** Slurm's node name (srun -w); `address` is its NodeAddr. */
  node: string;
}
