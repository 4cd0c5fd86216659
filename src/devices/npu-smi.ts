import type { NpuDevice } from './types.js';

/**
 * Parses `npu-smi info` as 910A/910B servers print it (two table rows per chip: "NPU Name | Health"
 * then "Chip | Bus-Id"), including the A3 layout where the second row also carries the chip's
 * Phy-ID (two chips per NPU, devices numbered 0..15 by Phy-ID), and the process section
 * ("No running processes found in NPU n", or rows naming the pid holding a chip). Pure.
 */
export interface NpuSmiInfo {
  version?: string;
  devices: NpuDevice[];
}

function cells(line: string): string[] {
  return line
    .trim()
    .replace(/^\|/, '')
    .replace(/\|$/, '')
    .split('|')
    .map((c) => c.trim());
}

export function parseNpuSmiInfo(text: string): NpuSmiInfo {
  const lines = text.split(/\r?\n/);
  const info: NpuSmiInfo = { devices: [] };
  const version = /npu-smi\s+(\S+)/.exec(text);
  if (version?.[1]) info.version = version[1];
  let inProcesses = false;
  let hasPhyId = false;
  let pending: { npuId: number; name: string; health: string } | undefined;
  const byNpuChip = new Map<string, NpuDevice>();
  for (const line of lines) {
    if (!line.startsWith('|')) continue;
    const c = cells(line);
    const first = c[0] ?? '';
    if (/Process id/i.test(line)) {
      inProcesses = true;
      continue;
    }
    if (/^Chip\s+Phy-ID/i.test(first)) hasPhyId = true;
    if (!inProcesses) {
      const head = /^(\d+)\s+(\S.*)$/.exec(first);
      const chipRow = /^(\d+)(?:\s+(\d+))?$/.exec(first);
      if (pending && chipRow) {
        const chipId = Number(chipRow[1]);
        const deviceId = hasPhyId && chipRow[2] !== undefined ? Number(chipRow[2]) : pending.npuId;
        const dev: NpuDevice = {
          deviceId,
          npuId: pending.npuId,
          chipId,
          name: pending.name,
          health: pending.health,
          processes: [],
        };
        const bus = c[1];
        if (bus && /^[0-9A-Fa-f]{4}:/.test(bus)) dev.busId = bus;
        info.devices.push(dev);
        byNpuChip.set(`${pending.npuId}/${chipId}`, dev);
        pending = undefined;
      } else if (head && c.length >= 2) {
        pending = { npuId: Number(head[1]), name: (head[2] as string).trim(), health: c[1] ?? 'Unknown' };
      }
      continue;
    }
    const proc = /^(\d+)\s+(\d+)$/.exec(first);
    if (proc && c[1] && /^\d+$/.test(c[1])) {
      const dev = byNpuChip.get(`${proc[1]}/${proc[2]}`);
      if (!dev) continue;
      const entry: NpuDevice['processes'][number] = { pid: Number(c[1]) };
      if (c[2]) entry.name = c[2];
      if (c[3] && /^\d+$/.test(c[3])) entry.memoryMiB = Number(c[3]);
      dev.processes.push(entry);
    }
  }
  info.devices.sort((a, b) => a.deviceId - b.deviceId);
  return info;
}

/** `/etc/hccn.conf`: `address_N=...`, `netmask_N=...` per device. Returns key -> device -> value. */
export function parseHccnConf(text: string): Map<number, Record<string, string>> {
  const out = new Map<number, Record<string, string>>();
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([A-Za-z_]+?)_(\d+)\s*=\s*(.*)$/.exec(line);
    if (!m) continue;
    const id = Number(m[2]);
    const rec = out.get(id) ?? {};
    rec[m[1] as string] = (m[3] as string).trim();
    out.set(id, rec);
  }
  return out;
}

/** `hccn_tool -i N -ip -g`: the address after `ipaddr:` on its first line (as hccl_tools.py reads it). */
export function parseHccnToolIp(text: string): string | undefined {
  const m = /^\s*ipaddr\s*:\s*(\S+)/m.exec(text);
  return m?.[1];
}

export function isIPv4(s: string): boolean {
  const parts = s.split('.');
  return (
    parts.length === 4 &&
    parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255 && !(p.length > 1 && p.startsWith('0')))
  );
}
