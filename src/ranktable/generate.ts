import type { RankTable, RankTableServerInput } from './types.js';

/**
 * A rank table as hccl_tools.py writes it for one server, and as merge_hccl.py numbers several:
 * ranks 0..N-1 server by server in the given order, device order within a server, every value a string.
 */
export function generateRankTable(servers: RankTableServerInput[]): RankTable {
  let rank = 0;
  return {
    version: '1.0',
    server_count: String(servers.length),
    server_list: servers.map((s) => ({
      server_id: s.serverId,
      device: s.devices.map((d) => ({ device_id: String(d.deviceId), device_ip: d.deviceIp, rank_id: String(rank++) })),
      host_nic_ip: 'reserve',
    })),
    status: 'completed',
  };
}

/** merge_hccl.py: servers in argument order, ranks renumbered; rank ids stay strings (merge_hccl writes numbers). */
export function mergeRankTables(tables: RankTable[]): RankTable {
  return generateRankTable(
    tables.flatMap((t) =>
      t.server_list.map((s) => ({
        serverId: s.server_id,
        devices: s.device.map((d) => ({ deviceId: Number(d.device_id), deviceIp: d.device_ip })),
      })),
    ),
  );
}

/** hccl_tools: `hccl_<n>p_<ids>_<server>.json`; merge_hccl: `hccl_<S>s_<N>p.json`. */
export function rankTableFileName(table: RankTable): string {
  const ranks = table.server_list.reduce((n, s) => n + s.device.length, 0);
  const only = table.server_list.length === 1 ? table.server_list[0] : undefined;
  if (only) return `hccl_${ranks}p_${only.device.map((d) => d.device_id).join('')}_${only.server_id}.json`;
  return `hccl_${table.server_list.length}s_${ranks}p.json`;
}

/** Python's json.dump(..., indent=4): 4 spaces, ", " never at line ends, no trailing newline. */
export function serializeRankTable(table: RankTable): string {
  return JSON.stringify(table, null, 4);
}
