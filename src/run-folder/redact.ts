/** Names of environment variables (and `KEY=VALUE` arguments) whose values never go into a run folder. */
export const SECRET_NAME = /(PASS|SECRET|TOKEN|KEY|CREDENTIAL)/i;

export const REDACTED = '<redacted>';

export function redactEnv(env: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, SECRET_NAME.test(k) ? REDACTED : v]));
}

/** `HF_TOKEN=abc` in an argument list (e.g. `npurun launch --env HF_TOKEN=abc`) becomes `HF_TOKEN=<redacted>`. */
export function redactArgv(argv: string[]): string[] {
  return argv.map((arg) => {
    const eq = arg.indexOf('=');
    if (eq <= 0) return arg;
    const name = arg.slice(0, eq).replace(/^-+/, '');
    return SECRET_NAME.test(name) ? `${arg.slice(0, eq + 1)}${REDACTED}` : arg;
  });
}

/**
 * For free-form event fields: every `env` map is redacted by name, every string-valued field whose
 * own name looks secret is replaced, and argument lists are redacted like argv.
 */
export function redactFields(value: unknown, key = ''): unknown {
  if (typeof value === 'string') return key !== '' && SECRET_NAME.test(key) ? REDACTED : value;
  if (Array.isArray(value)) {
    return value.every((v) => typeof v === 'string')
      ? redactArgv(value as string[])
      : value.map((v) => redactFields(v));
  }
  if (value !== null && typeof value === 'object' && !(value instanceof Date)) {
    if (value instanceof Error) return { name: value.name, message: value.message };
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, k === 'env' && isStringMap(v) ? redactEnv(v) : redactFields(v, k)]),
    );
  }
  return value;
}

function isStringMap(v: unknown): v is Record<string, string> {
  return (
    v !== null && typeof v === 'object' && !Array.isArray(v) && Object.values(v).every((x) => typeof x === 'string')
  );
}
