import type { SuperPodRankTable } from './super-pod.js';
import type { RankTable } from './types.js';

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** One line per rank: server, device, device ip, rank (and super device, SuperPoD for version 1.2). */
export function renderRankTable(table: RankTable | SuperPodRankTable): string {
  const pods = new Map<string, string>();
  if (table.version === '1.2')
    for (const p of table.super_pod_list ?? []) for (const s of p.server_list) pods.set(s.server_id, p.super_pod_id);
  const superPod = table.version === '1.2';
  const rows = [['server', 'device', 'device ip', 'rank', ...(superPod ? ['super device', 'super pod'] : [])]];
  for (const s of table.server_list) {
    for (const d of s.device) {
      const extra = superPod
        ? [('super_device_id' in d && d.super_device_id) || '-', pods.get(s.server_id) ?? '-']
        : [];
      rows.push([s.server_id, d.device_id, d.device_ip ?? '-', String(d.rank_id), ...extra]);
    }
  }
  const widths = (rows[0] as string[]).map((_, i) => Math.max(...rows.map((r) => (r[i] as string).length)));
  const ranks = rows.length - 1;
  const summary = `${plural(table.server_list.length, 'server')}, ${plural(ranks, 'rank')}${superPod ? ` (version 1.2, ${pods.size ? plural(new Set(pods.values()).size, 'SuperPoD') : 'no super_pod_list'})` : ''}`;
  return [
    ...rows.map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i] as number))
        .join('  ')
        .trimEnd(),
    ),
    summary,
  ].join('\n');
}

/** "FILE: valid rank table, S servers, N ranks" (validate's line). */
export function validLine(file: string, table: RankTable | SuperPodRankTable): string {
  const ranks = table.server_list.reduce((n, s) => n + s.device.length, 0);
  const version = table.version === '1.2' ? ' (version 1.2, Atlas A3 SuperPoD)' : '';
  return `${file}: valid rank table${version}, ${plural(table.server_list.length, 'server')}, ${plural(ranks, 'rank')}`;
}
