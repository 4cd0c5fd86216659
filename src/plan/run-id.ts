import { randomBytes } from 'node:crypto';

/** Sortable, readable run ids: 20261123-052433-resnext101-a1b2. */
export function newRunId(now: Date, name?: string): string {
  const p = (n: number) => String(n).padStart(2, '0');
  const stamp = `${now.getFullYear()}${p(now.getMonth() + 1)}${p(now.getDate())}-${p(now.getHours())}${p(now.getMinutes())}${p(now.getSeconds())}`;
  const label = (name ?? '').toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 24);
  return [stamp, label, randomBytes(2).toString('hex')].filter(Boolean).join('-');
}
