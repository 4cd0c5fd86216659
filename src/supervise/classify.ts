/**
 * A short name for why a rank failed, from its last lines (and the signal that ended it), for the
 * failure report: "HCCL timeout (EI0002)", "Python exception: ValueError: bad shape", ...
 * Pure: no I/O. undefined when nothing recognisable is there.
 */

// Error texts as CANN/HCCL print them: EI0002 "The wait execution of the Notify register times out",
// EI0006 "wait socket establish timeout" (HCCL_CONNECT_TIMEOUT), "Task run failed ... [Timeout]".
const HCCL_CODE = /\b(EI000[0-9]|EI00[1-9][0-9])\b/;
const HCCL_TIMEOUT =
  /Notify register times out|socket establish timeout|notify wait timeout|\bHCCL\b.*time ?out|time ?out.*\bHCCL\b/i;
const DEVICE_OOM = /\bout of memory\b|memory isn't enough|Out of Memory!!!|\bOOM\b/i;
const HOST_OOM = /\bMemoryError\b|^\s*Killed\s*$|oom-kill|Out of memory: Killed process/;
const PYTHON_EXCEPTION = /^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)(: .*)?$/;
const MODULE_NOT_FOUND = /\b(ModuleNotFoundError|ImportError): (.*)$/;
const FILE_NOT_FOUND = /\bFileNotFoundError: (.*)$|No such file or directory/;

function lastMatching(lines: string[], re: RegExp): { line: string; match: RegExpExecArray } | undefined {
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i] as string;
    const match = re.exec(line);
    if (match) return { line, match };
  }
  return undefined;
}

/** The exception line that ends the last Python traceback ("ValueError: bad shape"). */
function pythonException(lines: string[]): string | undefined {
  const start = lines.map((l) => l.includes('Traceback (most recent call last):')).lastIndexOf(true);
  if (start === -1) return undefined;
  for (let i = start + 1; i < lines.length; i++) {
    const line = (lines[i] as string).trim();
    if (PYTHON_EXCEPTION.test(line)) return line;
  }
  return undefined;
}

function clip(text: string, max = 160): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

export function classifyFailure(lines: string[], signal?: string): string | undefined {
  const code = lastMatching(lines, HCCL_CODE)?.match[1];
  if (lastMatching(lines, HCCL_TIMEOUT) || (code && lastMatching(lines, /time ?out|times out/i))) {
    return `HCCL timeout${code ? ` (${code})` : ''}: another rank probably failed first or a link is down`;
  }
  if (lastMatching(lines, DEVICE_OOM) && !lastMatching(lines, /\bMemoryError\b/)) return 'out of device memory';
  if (lastMatching(lines, HOST_OOM)) {
    return 'out of host memory (MemoryError or killed by the OOM killer)';
  }
  const module = lastMatching(lines, MODULE_NOT_FOUND);
  if (module) return `Python module not found: ${clip(module.match[2] ?? module.line)}`;
  const file = lastMatching(lines, FILE_NOT_FOUND);
  if (file) return `file not found: ${clip(file.match[1] ?? file.line.trim())}`;
  const exception = pythonException(lines);
  if (exception) return `Python exception: ${clip(exception)}`;
  // Nothing printed and SIGKILL from outside npurun is most often the kernel's OOM killer.
  if (signal === 'SIGKILL') return 'killed by SIGKILL (often the host OOM killer)';
  if (signal) return `killed by ${signal}`;
  return undefined;
}
