import { readFileSync } from 'node:fs';
import { isIPv4 } from '../devices/npu-smi.js';
import { schemaProblems, typeName, type Problem } from '../schema.js';
import type { RankTable } from './types.js';

export type { Problem };

export interface ValidationResult {
  table?: RankTable;
  problems: Problem[];
  warnings: Problem[];
}

/** 910A servers: 1, 2 or 4 devices inside one group (0-3 or 4-7), or all 8. */
export function groupingProblem(ids: number[]): string | undefined {
  const n = ids.length;
  if (![1, 2, 4, 8].includes(n)) return `${n} devices on one server; HCCL on 910 servers takes 1, 2, 4 or 8`;
  if (n === 8) return ids.every((id, i) => id === i) ? undefined : `8 devices must be 0-7, got ${ids.join(',')}`;
  const inOneGroup = ids.every((id) => id < 4) || ids.every((id) => id >= 4 && id < 8);
  if (!inOneGroup) return `devices ${ids.join(',')} cross the 910 device groups 0-3 and 4-7; use devices within one group, or all 8`;
  return undefined;
}

function formatHint(json: Record<string, unknown>): Problem | undefined {
  const v = json.version;
  if (typeof v === 'string' && v !== '1.0' && /^\d+\.\d+$/.test(v)) {
    return {
      path: 'version',
      message: `version "${v}" (the Atlas A2/A3 super-pod format) is not supported yet; npurun reads and writes version "1.0"`,
    };
  }
  return undefined;
}

interface Pre10Instance {
  rank_id?: unknown;
  server_id?: unknown;
  devices?: { device_id?: unknown; device_ip?: unknown }[];
}

/**
 * The pre-1.0 format (board_id, group_list[].instance_list[]: one rank per instance with its server
 * and device) as a version 1.0 table, servers in order of first appearance. Undefined when the shape
 * is not that one.
 */
export function convertPre10(json: Record<string, unknown>): RankTable | undefined {
  const groups = json.group_list;
  if (!Array.isArray(groups) || groups.length !== 1) return undefined;
  const instances = (groups[0] as { instance_list?: Pre10Instance[] }).instance_list;
  if (!Array.isArray(instances) || instances.length === 0) return undefined;
  const servers = new Map<string, RankTable['server_list'][number]>();
  for (const inst of instances) {
    const dev = Array.isArray(inst.devices) && inst.devices.length === 1 ? inst.devices[0] : undefined;
    if (typeof inst.server_id !== 'string' || typeof inst.rank_id !== 'string' || !dev || typeof dev.device_id !== 'string' || typeof dev.device_ip !== 'string') return undefined;
    const server = servers.get(inst.server_id) ?? { server_id: inst.server_id, device: [], host_nic_ip: 'reserve' };
    server.device.push({ device_id: dev.device_id, device_ip: dev.device_ip, rank_id: inst.rank_id });
    servers.set(inst.server_id, server);
  }
  return { version: '1.0', server_count: String(servers.size), server_list: [...servers.values()], status: 'completed' };
}

/** Schema and semantic checks; every problem with its JSON path and what was expected. */
export function validateRankTable(json: unknown): ValidationResult {
  const problems: Problem[] = [];
  const warnings: Problem[] = [];
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    return { problems: [{ path: '(top level)', message: `expected a JSON object, got ${typeName(json)}` }], warnings };
  }
  const hint = formatHint(json as Record<string, unknown>);
  if (hint) return { problems: [hint], warnings };
  const obj = json as Record<string, unknown>;
  if (obj.version === undefined && ('group_list' in obj || 'board_id' in obj)) {
    const converted = convertPre10(obj);
    if (!converted) {
      return { problems: [{ path: 'group_list', message: 'pre-1.0 rank table (board_id, group_list) whose instance_list is not one device per rank with string server_id/rank_id/device_id/device_ip; regenerate it with `npurun ranktable generate`' }], warnings };
    }
    const inner = validateRankTable(converted);
    return { ...inner, warnings: [{ path: '(top level)', message: 'pre-1.0 rank-table format (group_list/instance_list), read as version 1.0' }, ...inner.warnings] };
  }
  const schema = schemaProblems('rank-table.schema.json', json);
  if (schema.length > 0) return { problems: schema, warnings };
  const t = json as RankTable;
  if (Number(t.server_count) !== t.server_list.length) {
    problems.push({ path: 'server_count', message: `says ${t.server_count} but server_list has ${t.server_list.length} server${t.server_list.length === 1 ? '' : 's'}` });
  }
  const ranks: { rank: number; path: string }[] = [];
  const ips = new Map<string, string>();
  const servers = new Map<string, string>();
  t.server_list.forEach((s, si) => {
    const sp = `server_list[${si}]`;
    if (!isIPv4(s.server_id)) problems.push({ path: `${sp}.server_id`, message: `expected the server's IPv4 address, got "${s.server_id}"` });
    const seenServer = servers.get(s.server_id);
    if (seenServer) problems.push({ path: `${sp}.server_id`, message: `"${s.server_id}" is also ${seenServer}` });
    servers.set(s.server_id, `${sp}.server_id`);
    const ids = new Map<string, string>();
    s.device.forEach((d, di) => {
      const dp = `${sp}.device[${di}]`;
      if (ids.has(d.device_id)) problems.push({ path: `${dp}.device_id`, message: `device ${d.device_id} appears twice on this server (also ${ids.get(d.device_id)})` });
      ids.set(d.device_id, `${dp}.device_id`);
      if (!isIPv4(d.device_ip)) problems.push({ path: `${dp}.device_ip`, message: `expected an IPv4 address, got "${d.device_ip}"` });
      else if (ips.has(d.device_ip)) problems.push({ path: `${dp}.device_ip`, message: `${d.device_ip} is also ${ips.get(d.device_ip)}` });
      else ips.set(d.device_ip, `${dp}.device_ip`);
      const raw = d.rank_id as unknown;
      if (typeof raw === 'number') warnings.push({ path: `${dp}.rank_id`, message: `a number (as merge_hccl.py writes it); HCCL's format wants the string "${raw}"` });
      const rank = typeof raw === 'number' ? raw : /^\d+$/.test(String(raw)) ? Number(raw) : NaN;
      if (Number.isNaN(rank)) problems.push({ path: `${dp}.rank_id`, message: `expected a rank number like "0", got "${String(raw)}"` });
      else ranks.push({ rank, path: `${dp}.rank_id` });
    });
    const grouping = groupingProblem([...ids.keys()].map(Number).sort((a, b) => a - b));
    if (grouping) problems.push({ path: `${sp}.device`, message: grouping });
  });
  const counts = new Set(t.server_list.map((s) => s.device.length));
  if (counts.size > 1) {
    problems.push({ path: 'server_list', message: `servers have different device counts (${t.server_list.map((s) => s.device.length).join(', ')}); every server of a job must use the same number` });
  }
  const seen = new Map<number, string>();
  for (const r of ranks) {
    if (seen.has(r.rank)) problems.push({ path: r.path, message: `rank ${r.rank} repeated (also ${seen.get(r.rank)})` });
    else seen.set(r.rank, r.path);
  }
  const n = ranks.length;
  const missing = [...Array(n).keys()].filter((i) => !seen.has(i));
  if (missing.length > 0) problems.push({ path: 'server_list', message: `rank ids must be 0..${n - 1} without gaps; missing ${missing.join(', ')}` });
  for (const r of ranks) if (r.rank >= n) problems.push({ path: r.path, message: `rank ${r.rank} is out of range 0..${n - 1}` });
  if (problems.length > 0) return { problems, warnings };
  // Normalise merge_hccl's numeric ranks to strings.
  const table: RankTable = { ...t, server_list: t.server_list.map((s) => ({ ...s, host_nic_ip: s.host_nic_ip ?? 'reserve', device: s.device.map((d) => ({ ...d, rank_id: String(d.rank_id) })) })) };
  return { table, problems, warnings };
}

/** Reads and validates a rank-table file; JSON syntax errors get line and column. */
export function validateRankTableFile(file: string): ValidationResult {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return { problems: [{ path: '(file)', message: `cannot read: ${(err as NodeJS.ErrnoException).code ?? String(err)}` }], warnings: [] };
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    const pos = /position (\d+)/.exec(msg);
    let where = '';
    if (pos) {
      const before = text.slice(0, Number(pos[1]));
      const line = before.split('\n').length;
      where = ` at line ${line}, column ${Number(pos[1]) - before.lastIndexOf('\n')}`;
    }
    return { problems: [{ path: '(file)', message: `not valid JSON${where}: ${msg.replace(/ in JSON at position \d+.*$/, '')}` }], warnings: [] };
  }
  return validateRankTable(json);
}
