import { randomBytes } from 'node:crypto';

/**
 * Sortable, readable run ids: 20261123-052433-resnext101-a1b2 (UTC time, the job name lower-cased
 * to letters, digits and '-', 4 random hex digits so two runs in one second differ). UTC so ids
 * sort in start order across daylight-saving changes and launch machines.
 */
export function newRunId(now: Date, name?: string): string {
  const p = (n: number) => String(n).padStart(2, '0');
  const stamp = `${now.getUTCFullYear()}${p(now.getUTCMonth() + 1)}${p(now.getUTCDate())}-${p(now.getUTCHours())}${p(now.getUTCMinutes())}${p(now.getUTCSeconds())}`;
  const label = (name ?? '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 24)
    .replace(/-+$/, '');
  return [stamp, label, randomBytes(2).toString('hex')].filter(Boolean).join('-');
}
