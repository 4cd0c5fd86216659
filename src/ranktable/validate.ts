import { isIPv4 } from '../devices/npu-smi.js';
import { JSON_MAX_BYTES, readInputText, schemaProblems, typeName, type Problem } from '../schema.js';
import type { SuperPodRankTable } from './super-pod.js';
import type { RankTable } from './types.js';

export type { Problem };

export interface ValidationResult {
  /** A valid version 1.0 table (pre-1.0 files converted), rank ids as strings. */
  table?: RankTable;
  /** A valid version 1.2 (Atlas A3 SuperPoD) table: validated and shown, not generated or launched. */
  superPod?: SuperPodRankTable;
  problems: Problem[];
  warnings: Problem[];
}

export interface ValidateOptions {
  /**
   * A number where HCCL wants a string (merge_hccl.py's rank_id) is a warning, not a problem: for old
   * CANN, or for a file that is only read to be rewritten (merge writes strings).
   */
  lenient?: boolean;
}

/** Server types by their device count: 910A/910B servers have 8 NPUs (ids 0-7), A3 servers 16 dies (0-15). */
export type ServerKind = '910' | 'a3';

/**
 * Devices one server may contribute. 910A/910B servers (ids 0-7): 1, 2 or 4 devices inside one
 * group (0-3 or 4-7), or all 8, as hccl_tools.py allows. A3 servers (two dies per NPU, 16 devices,
 * ids 0-15) are not held to the 910 groups. Ids above 7 can only be an A3's: when the server's kind
 * is known (probed or simulated) a 910 server with them is refused; when it is not, see `a3OnlyWarning`.
 */
export function groupingProblem(ids: number[], kind?: ServerKind): string | undefined {
  const n = ids.length;
  if (ids.some((id) => id > 15)) return `device ids ${ids.join(',')} go beyond 15; a server has at most 16 devices`;
  const beyond = ids.filter((id) => id > 7);
  if (beyond.length > 0) {
    return kind === '910'
      ? `device ids ${beyond.join(',')} are beyond 7: a 910A/910B server has 8 NPUs (ids 0-7); only A3 servers have 16 dies`
      : undefined;
  }
  if (kind === 'a3') return undefined;
  if (![1, 2, 4, 8].includes(n)) return `${n} devices on one server; HCCL on 910 servers takes 1, 2, 4 or 8`;
  if (n === 8) return undefined;
  const inOneGroup = ids.every((id) => id < 4) || ids.every((id) => id >= 4);
  if (!inOneGroup)
    return `devices ${ids.join(',')} cross the 910 device groups 0-3 and 4-7; use devices within one group, or all 8`;
  return undefined;
}

/** A probed or simulated server's kind: A3 servers show two dies (chips) per NPU, or more than 8 devices. */
export function serverKindOf(devices: { chipId: number }[]): ServerKind {
  return devices.length > 8 || devices.some((d) => d.chipId > 0) ? 'a3' : '910';
}

/** A table alone does not say the server's kind: ids above 7 are right only on an A3 server. */
export function a3OnlyWarning(ids: number[]): string | undefined {
  const beyond = ids.filter((id) => id > 7 && id <= 15);
  if (beyond.length === 0) return undefined;
  return `${ids.length} devices with ids ${beyond.join(',')} above 7: right only on an A3 server (16 dies, ids 0-15); a 910A/910B server has 8 NPUs (ids 0-7), so there this table is wrong`;
}

const SUPPORTED_VERSIONS = ['1.0', '1.2'];

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
    if (
      typeof inst.server_id !== 'string' ||
      typeof inst.rank_id !== 'string' ||
      !dev ||
      typeof dev.device_id !== 'string' ||
      typeof dev.device_ip !== 'string'
    )
      return undefined;
    const server = servers.get(inst.server_id) ?? { server_id: inst.server_id, device: [], host_nic_ip: 'reserve' };
    server.device.push({ device_id: dev.device_id, device_ip: dev.device_ip, rank_id: inst.rank_id });
    servers.set(inst.server_id, server);
  }
  return {
    version: '1.0',
    server_count: String(servers.size),
    server_list: [...servers.values()],
    status: 'completed',
  };
}

/** What both versions share, as the semantic checks see it. */
interface ServerView {
  server_id: string;
  host_ip?: string;
  device: { device_id: string; device_ip?: string; rank_id: unknown }[];
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** Checks common to 1.0 and 1.2: servers, device ids and IPs, device counts, rank numbering. */
function checkServers(
  servers: ServerView[],
  serverCount: string | undefined,
  v10: boolean,
  problems: Problem[],
  warnings: Problem[],
  lenient: boolean,
): void {
  if (serverCount !== undefined && Number(serverCount) !== servers.length) {
    problems.push({
      path: 'server_count',
      message: `says ${serverCount} but server_list has ${plural(servers.length, 'server')}`,
    });
  }
  const ranks: { rank: number; path: string; server: number }[] = [];
  const ips = new Map<string, string>();
  const serverIds = new Map<string, string>();
  servers.forEach((s, si) => {
    const sp = `server_list[${si}]`;
    if (v10 && !isIPv4(s.server_id))
      problems.push({
        path: `${sp}.server_id`,
        message: `expected the server's IPv4 address (what MindSpore matches against the host it runs on), got "${s.server_id}"`,
      });
    const seenServer = serverIds.get(s.server_id);
    if (seenServer) problems.push({ path: `${sp}.server_id`, message: `"${s.server_id}" is also ${seenServer}` });
    serverIds.set(s.server_id, `${sp}.server_id`);
    if (s.host_ip !== undefined && !isIPv4(s.host_ip))
      problems.push({ path: `${sp}.host_ip`, message: `expected an IPv4 address, got "${s.host_ip}"` });
    const ids = new Map<string, string>();
    s.device.forEach((d, di) => {
      const dp = `${sp}.device[${di}]`;
      if (ids.has(d.device_id))
        problems.push({
          path: `${dp}.device_id`,
          message: `device ${d.device_id} appears twice on this server (also ${ids.get(d.device_id)})`,
        });
      ids.set(d.device_id, `${dp}.device_id`);
      if (d.device_ip !== undefined) {
        if (!isIPv4(d.device_ip))
          problems.push({ path: `${dp}.device_ip`, message: `expected an IPv4 address, got "${d.device_ip}"` });
        else if (ips.has(d.device_ip))
          problems.push({ path: `${dp}.device_ip`, message: `${d.device_ip} is also ${ips.get(d.device_ip)}` });
        else ips.set(d.device_ip, `${dp}.device_ip`);
      }
      const raw = d.rank_id;
      if (typeof raw === 'number')
        (lenient ? warnings : problems).push({
          path: `${dp}.rank_id`,
          message: `a number (as merge_hccl.py writes it): HCCL's own parser takes only strings and fails at init with EI0017 ("json object property value ... is not string"); write "${raw}" (as hccl_tools.py and npurun ranktable merge do${lenient ? '' : '; --lenient accepts it, for old CANN'})`,
        });
      const rank = typeof raw === 'number' ? raw : /^\d+$/.test(String(raw)) ? Number(raw) : NaN;
      if (Number.isNaN(rank))
        problems.push({ path: `${dp}.rank_id`, message: `expected a rank number like "0", got "${String(raw)}"` });
      else ranks.push({ rank, path: `${dp}.rank_id`, server: si });
    });
    const sorted = [...ids.keys()].map(Number).sort((a, b) => a - b);
    const grouping = v10 ? groupingProblem(sorted) : undefined;
    if (grouping) problems.push({ path: `${sp}.device`, message: grouping });
    const a3Only = v10 ? a3OnlyWarning(sorted) : undefined;
    if (a3Only) warnings.push({ path: `${sp}.device`, message: a3Only });
  });
  const counts = servers.map((s) => s.device.length);
  if (new Set(counts).size > 1) {
    problems.push({
      path: 'server_list',
      message: `servers have different device counts (${counts.join(', ')}); every server of a job must use the same number`,
    });
  }
  checkRanks(ranks, problems);
}

/** Rank ids 0..N-1, each once, and each server a consecutive block (HCCL refuses ranks interleaved across servers). */
function checkRanks(ranks: { rank: number; path: string; server: number }[], problems: Problem[]): void {
  const before = problems.length;
  const seen = new Map<number, string>();
  for (const r of ranks) {
    if (seen.has(r.rank))
      problems.push({ path: r.path, message: `rank ${r.rank} repeated (also ${seen.get(r.rank)})` });
    else seen.set(r.rank, r.path);
  }
  const n = ranks.length;
  const missing = [...Array(n).keys()].filter((i) => !seen.has(i));
  if (missing.length > 0)
    problems.push({
      path: 'server_list',
      message: `rank ids must be 0..${n - 1} without gaps; missing ${missing.join(', ')}`,
    });
  for (const r of ranks)
    if (r.rank >= n) problems.push({ path: r.path, message: `rank ${r.rank} is out of range 0..${n - 1}` });
  if (problems.length > before) return;
  const byServer = new Map<number, number[]>();
  for (const r of ranks) byServer.set(r.server, [...(byServer.get(r.server) ?? []), r.rank]);
  for (const [server, list] of byServer) {
    const sorted = [...list].sort((a, b) => a - b);
    if ((sorted.at(-1) as number) - (sorted[0] as number) !== sorted.length - 1) {
      problems.push({
        path: `server_list[${server}].device`,
        message: `ranks ${sorted.join(',')} are not consecutive; HCCL does not support ranks interleaved across servers (e.g. 0-3 on one server, 4-7 on the next)`,
      });
    }
  }
}

/** Version 1.2 only: every SuperPoD names known servers, once, listed together, with unique super_device_ids. */
function checkSuperPods(t: SuperPodRankTable, problems: Problem[], warnings: Problem[]): void {
  const pods = t.super_pod_list;
  if (!pods) return;
  const index = new Map(t.server_list.map((s, i) => [s.server_id, i]));
  const podOf = new Map<string, string>();
  const podIds = new Set<string>();
  pods.forEach((pod, pi) => {
    const pp = `super_pod_list[${pi}]`;
    if (podIds.has(pod.super_pod_id))
      problems.push({ path: `${pp}.super_pod_id`, message: `"${pod.super_pod_id}" appears twice` });
    podIds.add(pod.super_pod_id);
    const positions: number[] = [];
    const superIds = new Map<string, string>();
    pod.server_list.forEach((ref, ri) => {
      const rp = `${pp}.server_list[${ri}].server_id`;
      const at = index.get(ref.server_id);
      if (at === undefined)
        return void problems.push({ path: rp, message: `"${ref.server_id}" is not a server_id of server_list` });
      const other = podOf.get(ref.server_id);
      if (other !== undefined)
        return void problems.push({ path: rp, message: `server "${ref.server_id}" is already in SuperPoD "${other}"` });
      podOf.set(ref.server_id, pod.super_pod_id);
      positions.push(at);
      (t.server_list[at] as SuperPodRankTable['server_list'][number]).device.forEach((d, di) => {
        if (d.super_device_id === undefined) return;
        const dp = `server_list[${at}].device[${di}].super_device_id`;
        if (superIds.has(d.super_device_id))
          problems.push({
            path: dp,
            message: `${d.super_device_id} is also ${superIds.get(d.super_device_id)}, in the same SuperPoD "${pod.super_pod_id}"`,
          });
        else superIds.set(d.super_device_id, dp);
      });
    });
    const sorted = [...positions].sort((a, b) => a - b);
    if (sorted.length > 0 && (sorted.at(-1) as number) - (sorted[0] as number) !== sorted.length - 1) {
      problems.push({
        path: `${pp}.server_list`,
        message: `the servers of SuperPoD "${pod.super_pod_id}" must be listed together in server_list (they are at positions ${sorted.join(', ')})`,
      });
    }
  });
  t.server_list.forEach((s, si) => {
    if (!podOf.has(s.server_id))
      warnings.push({
        path: `server_list[${si}].server_id`,
        message: `"${s.server_id}" is in no SuperPoD of super_pod_list`,
      });
  });
}

/** Schema and semantic checks; every problem with its JSON path and what was expected. */
export function validateRankTable(json: unknown, opts: ValidateOptions = {}): ValidationResult {
  const lenient = opts.lenient === true;
  const problems: Problem[] = [];
  const warnings: Problem[] = [];
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    return { problems: [{ path: '(top level)', message: `expected a JSON object, got ${typeName(json)}` }], warnings };
  }
  const obj = json as Record<string, unknown>;
  if (typeof obj.version === 'string' && !SUPPORTED_VERSIONS.includes(obj.version)) {
    const message = `unknown rank-table version "${obj.version}"; HCCL documents "1.0" (hccl_tools.py, Atlas training and A2 servers, A3 typical networking) and "1.2" (Atlas A3 SuperPoD), which npurun reads`;
    return { problems: [{ path: 'version', message }], warnings };
  }
  if (obj.version === undefined && ('group_list' in obj || 'board_id' in obj)) {
    const converted = convertPre10(obj);
    if (!converted) {
      return {
        problems: [
          {
            path: 'group_list',
            message:
              'pre-1.0 rank table (board_id, group_list) whose instance_list is not one device per rank with string server_id/rank_id/device_id/device_ip; regenerate it with `npurun ranktable generate`',
          },
        ],
        warnings,
      };
    }
    const inner = validateRankTable(converted, opts);
    return {
      ...inner,
      warnings: [
        { path: '(top level)', message: 'pre-1.0 rank-table format (group_list/instance_list), read as version 1.0' },
        ...inner.warnings,
      ],
    };
  }
  // The schema picks 1.0 or 1.2 with if/then/else; ajv adds a "must match then/else" line that says nothing more.
  const schema = schemaProblems('rank-table.schema.json', json).filter(
    (p) => !/^must match "(then|else)" schema/.test(p.message),
  );
  if (schema.length > 0) return { problems: schema, warnings };
  if (obj.version === '1.2') {
    const t = json as SuperPodRankTable;
    checkServers(t.server_list, t.server_count, false, problems, warnings, lenient);
    checkSuperPods(t, problems, warnings);
    if (problems.length > 0) return { problems, warnings };
    const superPod: SuperPodRankTable = {
      ...t,
      server_list: t.server_list.map((s) => ({
        ...s,
        device: s.device.map((d) => ({ ...d, rank_id: String(d.rank_id) })),
      })),
    };
    return { superPod, problems, warnings };
  }
  const t = json as RankTable;
  checkServers(t.server_list, t.server_count, true, problems, warnings, lenient);
  if (problems.length > 0) return { problems, warnings };
  // Normalise merge_hccl's numeric ranks to strings (--lenient).
  const table: RankTable = {
    ...t,
    server_list: t.server_list.map((s) => ({
      ...s,
      host_nic_ip: s.host_nic_ip ?? 'reserve',
      device: s.device.map((d) => ({ ...d, rank_id: String(d.rank_id) })),
    })),
  };
  return { table, problems, warnings };
}

/** Reads and validates a rank-table file; JSON syntax errors get line and column. */
export function validateRankTableFile(file: string, opts: ValidateOptions = {}): ValidationResult {
  let text: string;
  try {
    text = readInputText(file, 'rank table', JSON_MAX_BYTES);
  } catch (err) {
    return { problems: [{ path: '(file)', message: (err as Error).message.replace(`${file}: `, '') }], warnings: [] };
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
    return {
      problems: [
        { path: '(file)', message: `not valid JSON${where}: ${msg.replace(/ in JSON at position \d+.*$/, '')}` },
      ],
      warnings: [],
    };
  }
  return validateRankTable(json, opts);
}
