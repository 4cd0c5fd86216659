/**
 * NPURUN_TRACE=1: one stderr line per launch phase with milliseconds since the process started, to see
 * where a launch spends its wall time (npurun mostly waits on hosts: its own CPU time says little).
 */
const enabled = Boolean(process.env.NPURUN_TRACE);

export function trace(what: string): void {
  if (enabled) process.stderr.write(`npurun trace ${performance.now().toFixed(0).padStart(6)} ms  ${what}\n`);
}
