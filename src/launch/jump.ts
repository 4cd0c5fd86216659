import { parseSshConfig, resolveJumpSpec } from '../inventory/ssh-config.js';
import type { SshSettings } from '../transport/ssh.js';

/** ProxyJump hops resolved through the same ssh_config as the hosts themselves. */
export function sshJumpResolver(configText: string | undefined): (jump: string) => SshSettings {
  const config = configText !== undefined ? parseSshConfig(configText) : undefined;
  return (jump) => resolveJumpSpec(jump, config);
}
