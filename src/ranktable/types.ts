/** HCCL rank table, version "1.0", exactly as hccl_tools.py writes it: every value a string, keys in this order. */
export interface RankTableDevice {
  device_id: string;
  device_ip: string;
  rank_id: string;
}

export interface RankTableServer {
  server_id: string;
  device: RankTableDevice[];
  host_nic_ip: string; // "reserve"
}

export interface RankTable {
  version: '1.0';
  server_count: string;
  server_list: RankTableServer[];
  status: 'completed';
}

/** Input to generation: one server, its host IP and the devices it contributes, in device order. */
export interface RankTableServerInput {
  serverId: string;
  devices: { deviceId: number; deviceIp: string }[];
}
