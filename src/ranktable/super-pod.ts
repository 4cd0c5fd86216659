/**
 * HCCL rank table version "1.2": Atlas A3 SuperPoD networking, fields as the HCCL user guide
 * ("rank table configuration, Atlas A3") documents them. npurun validates and shows it; generate,
 * merge and launch work on version "1.0".
 */
export interface SuperPodDevice {
  device_id: string;
  /** The chip's id inside the SuperPoD (npu-smi info -t spod-info: SDID). */
  super_device_id?: string;
  device_ip?: string;
  device_port?: string;
  backup_device_ip?: string;
  backup_device_port?: string;
  host_port?: string;
  rank_id: string;
}

export interface SuperPodServer {
  /** Any unique string up to 64 characters (the guide's examples use "node_0"). */
  server_id: string;
  host_ip?: string;
  device: SuperPodDevice[];
}

export interface SuperPodRankTable {
  version: '1.2';
  server_count?: string;
  server_list: SuperPodServer[];
  super_pod_list?: { super_pod_id: string; server_list: { server_id: string }[] }[];
  status: 'completed';
}
