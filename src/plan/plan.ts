import { posix } from 'node:path';
import { deviceUsable } from '../devices/probe.js';
import type { HostFacts } from '../devices/types.js';
import { inputError, NpurunError } from '../errors.js';
import { isIPv4 } from '../devices/npu-smi.js';
import { generateRankTable } from '../ranktable/generate.js';
import type { RankTable } from '../ranktable/types.js';
import { groupingProblem } from '../ranktable/validate.js';
import { splitCpus } from './cpus.js';
import type { HostSpec, JobSpec, RankSpec, RunPlan } from './types.js';

export interface PlanInput {
  runId: string;
  job: JobSpec;
  hosts: HostSpec[];
  facts: Record<string, HostFacts>;
  /** A rank table the user gave (already validated): ranks and devices come from it. */
  rankTable?: RankTable;
  /** Checkpoint to resume from, per rank label, with a fallback for ranks that did not save. */
  resume?: { byLabel: Record<string, string>; fallback: string; epoch: number; step: number };
  /** Told about plans that will run but not as asked (e.g. ranks sharing CPUs). */
  onWarning?: (message: string) => void;
}

const NEEDS_RANK_TABLE = new Set(['mindspore', 'tensorflow']);
const NPURUN_VARIABLE = /^NPURUN_/;

function fill(pattern: string, values: Record<string, string | number>): string {
  return pattern.replace(/\{(\w+)\}/g, (m, k: string) => (values[k] !== undefined ? String(values[k]) : m));
}

/** The interface holding `address` on a host: the one gloo/HCCL must use instead of the hostname's. */
function interfaceFor(facts: HostFacts, address: string): string | undefined {
  return facts.interfaces.find((i) => i.addresses.includes(address))?.name;
}

interface HostDevices {
  host: HostSpec;
  facts: HostFacts;
  /** Physical device ids, or nulls for CPU-only ranks. */
  devices: (number | null)[];
}

function chooseDevices(job: JobSpec, host: HostSpec, facts: HostFacts, needIp: boolean): HostDevices {
  const requested = job.devices ?? (host.devices === 'auto' ? undefined : host.devices);
  const count = job.nprocPerNode ?? host.slots;
  if (facts.devices.length === 0) {
    // CPU-only hosts (e.g. torch with gloo): allowed when the number of ranks is given.
    if (job.profile === 'torch' && count !== undefined && requested === undefined)
      return { host, facts, devices: Array<number | null>(count).fill(null) };
    throw new NpurunError(
      'not-ready',
      `host ${host.name}: no NPUs found (${facts.problems.join('; ') || 'npu-smi listed none'})`,
      {
        hint:
          job.profile === 'torch'
            ? 'for a CPU-only run give --nproc-per-node'
            : host.local
              ? 'no Ascend NPUs here? --simulate 8 stands in 8 simulated NPUs'
              : 'check the driver with `npurun devices` on that host',
      },
    );
  }
  let ids: number[];
  if (requested) {
    for (const id of requested) {
      const d = facts.devices.find((x) => x.deviceId === id);
      if (!d)
        throw new NpurunError(
          'not-ready',
          `host ${host.name}: device ${id} not found (npu-smi lists ${facts.devices.map((x) => x.deviceId).join(', ')})`,
        );
      const why = deviceUsable(d, needIp);
      if (why) throw new NpurunError('not-ready', `host ${host.name}: device ${id} ${why}`);
    }
    ids = requested;
  } else {
    // Ascending, like the other device lists: local rank i is then the i-th id of ASCEND_RT_VISIBLE_DEVICES.
    ids = facts.devices
      .filter((d) => !deviceUsable(d, needIp))
      .map((d) => d.deviceId)
      .sort((a, b) => a - b);
    if (ids.length === 0)
      throw new NpurunError('not-ready', `host ${host.name}: no usable device (${facts.problems.join('; ')})`);
  }
  if (count !== undefined) {
    if (count > ids.length)
      throw new NpurunError(
        'not-ready',
        `host ${host.name}: ${count} ranks asked, but only ${ids.length} usable device${ids.length === 1 ? '' : 's'} (${ids.join(', ')})`,
      );
    ids = ids.slice(0, count);
  }
  return { host, facts, devices: ids };
}

function factsFor(hosts: HostSpec[], facts: Record<string, HostFacts>): Record<string, HostFacts> {
  for (const h of hosts) {
    if (!facts[h.name])
      throw new NpurunError('unreachable', `host ${h.name}: preflight found nothing about it (no facts)`);
  }
  return facts;
}

/**
 * A rank table the user gave decides devices and rank ids; it must match the inventory exactly (one
 * server per host, by address) and anything else asked for (--devices, inventory devices, slots,
 * --nproc-per-node), and its devices must be present, healthy and free.
 */
function devicesFromTable(
  table: RankTable,
  job: JobSpec,
  hosts: HostSpec[],
  facts: Record<string, HostFacts>,
): HostDevices[] {
  const where = job.rankTableFile ?? 'rank table';
  table.server_list.forEach((s, i) => {
    if (!hosts.some((h) => h.address === s.server_id)) {
      throw inputError(
        `${where}: server_list[${i}].server_id`,
        `"${s.server_id}" is not in the inventory (${hosts.map((h) => h.address).join(', ')}); expected exactly the inventory's servers`,
      );
    }
  });
  return hosts.map((host) => {
    const index = table.server_list.findIndex((s) => s.server_id === host.address);
    const entry = table.server_list[index];
    if (!entry)
      throw inputError(
        `${where}: server_list`,
        `has no server_id ${host.address} for host ${host.name}; expected one entry per inventory host`,
      );
    const at = `${where}: server_list[${index}]`;
    const ids = entry.device.map((d) => Number(d.device_id));
    const asked = job.devices ?? (host.devices === 'auto' ? undefined : host.devices);
    if (asked && [...ids].sort((a, b) => a - b).join(',') !== asked.join(',')) {
      throw inputError(
        at,
        `lists devices ${ids.join(',')} for host ${host.name}, but ${job.devices ? '--devices' : 'the inventory'} asks for ${asked.join(',')}; expected the same devices`,
      );
    }
    const count = job.nprocPerNode ?? host.slots;
    if (count !== undefined && count !== ids.length) {
      throw inputError(
        at,
        `has ${ids.length} devices for host ${host.name}, but ${job.nprocPerNode !== undefined ? '--nproc-per-node' : 'slots'} asks for ${count}; expected the same number`,
      );
    }
    const f = facts[host.name] as HostFacts;
    entry.device.forEach((d, k) => {
      const found = f.devices.find((x) => x.deviceId === Number(d.device_id));
      if (!found)
        throw new NpurunError(
          'not-ready',
          `host ${host.name}: rank table names device ${d.device_id}, which npu-smi does not list (${f.devices.map((x) => x.deviceId).join(', ') || 'none'})`,
        );
      const why = deviceUsable(found, false);
      if (why) throw new NpurunError('not-ready', `host ${host.name}: device ${d.device_id} ${why}`);
      if (found.deviceIp && found.deviceIp !== d.device_ip) {
        throw inputError(
          `${at}.device[${k}].device_ip`,
          `is ${d.device_ip}, but host ${host.name} reports ${found.deviceIp} for device ${d.device_id}; expected the device's address (hccn.conf)`,
        );
      }
    });
    return { host, facts: f, devices: ids };
  });
}

function commonEnv(job: JobSpec, plan: { runId: string; worldSize: number }): Record<string, string> {
  const env: Record<string, string> = {
    NPURUN_RUN_ID: plan.runId,
    NPURUN_WORLD_SIZE: String(plan.worldSize),
    NPURUN_PROFILE: job.profile,
  };
  const c = job.checkpoint;
  if (c) {
    if (c.interval !== undefined) env.NPURUN_CKPT_INTERVAL = String(c.interval);
    env.NPURUN_CKPT_UNIT = c.unit;
    env.NPURUN_CKPT_KEEP_MAX = String(c.keepMax);
    env.NPURUN_CKPT_MASTER_ONLY = c.masterOnly ? '1' : '0';
    env.NPURUN_CKPT_PATTERN = c.pattern;
  }
  if (job.hangTimeoutSeconds !== undefined) {
    // On a hang npurun sends SIGABRT: with faulthandler on, a Python rank prints every thread's stack.
    env.PYTHONFAULTHANDLER = '1';
    // HCCL's own watchdog (1800 s by default) gives up soon after npurun's detection instead of half an hour later.
    env.HCCL_EXEC_TIMEOUT = String(Math.ceil(job.hangTimeoutSeconds) + 30);
  }
  return env;
}

/** Refusals that need only the job: NPURUN_* set by the user, a rank table for a profile without one. */
function checkJob(job: JobSpec, input: PlanInput, needIp: boolean): void {
  const userNpurun = Object.keys(job.env).find((k) => NPURUN_VARIABLE.test(k));
  if (userNpurun)
    throw inputError(
      `${job.source}: env.${userNpurun}`,
      'NPURUN_* variables are set by npurun itself; expected another name',
    );
  if (input.rankTable && !needIp)
    throw inputError(
      job.rankTableFile ?? '--rank-table',
      `profile ${job.profile} uses no rank table; expected --profile mindspore or tensorflow, or no rank table`,
    );
}

/** Each host's devices (from the given rank table, or chosen from its facts); every host the same count. */
function chooseAll(input: PlanInput, facts: Record<string, HostFacts>, needIp: boolean): HostDevices[] {
  const { job, hosts } = input;
  const chosen = input.rankTable
    ? devicesFromTable(input.rankTable, job, hosts, facts)
    : hosts.map((host) => chooseDevices(job, host, facts[host.name] as HostFacts, needIp));
  const counts = new Set(chosen.map((c) => c.devices.length));
  if (counts.size > 1) {
    throw inputError(
      'devices',
      `hosts would run different numbers of ranks (${chosen.map((c) => `${c.host.name}: ${c.devices.length}`).join(', ')}); every server of a job must use the same number (set --devices or --nproc-per-node)`,
    );
  }
  return chosen;
}

/** The rank table the job needs: the one given, or generated from the chosen devices as hccl_tools.py would. */
function rankTableFor(chosen: HostDevices[], input: PlanInput, needIp: boolean): RankTable | undefined {
  if (input.rankTable || !needIp) return input.rankTable;
  for (const c of chosen) {
    if (!isIPv4(c.host.address))
      throw inputError(
        `host ${c.host.name}`,
        `address "${c.host.address}" is not an IPv4 address; the rank table's server_id must be the server's IP: put it in the hosts file`,
      );
    const bad = groupingProblem((c.devices as number[]).slice().sort((a, b) => a - b));
    if (bad) throw inputError(`host ${c.host.name}`, bad);
  }
  return generateRankTable(
    chosen.map((c) => ({
      serverId: c.host.address,
      devices: (c.devices as number[]).map((id) => ({
        deviceId: id,
        deviceIp: c.facts.devices.find((d) => d.deviceId === id)?.deviceIp as string,
      })),
    })),
  );
}

/** The interface gloo and HCCL must use on a host: the one holding its inventory address. */
function hostNetwork(c: HostDevices, job: JobSpec): { ifAddress: string; iface: string | undefined } {
  const f = c.facts;
  // A local-only run talks over loopback: lo / 127.0.0.1.
  const ifAddress = c.host.local && !isIPv4(c.host.address) ? '127.0.0.1' : c.host.address;
  const iface = isIPv4(ifAddress) ? (interfaceFor(f, ifAddress) ?? (c.host.local ? 'lo' : undefined)) : undefined;
  const userSet = (k: string) => job.env[k] !== undefined;
  if (!iface && !(userSet('GLOO_SOCKET_IFNAME') && userSet('HCCL_SOCKET_IFNAME'))) {
    const owned = f.interfaces.map((i) => `${i.name} ${i.addresses.join(',') || '-'}`).join('; ') || 'none reported';
    const why = isIPv4(c.host.address)
      ? `its inventory address ${c.host.address} is on none of its interfaces (${owned})`
      : `its inventory address "${c.host.address}" is a name, not one of its IPv4 addresses (${owned})`;
    // gloo and HCCL would otherwise pick the interface of the hostname, often 127.x: a hang, not an error.
    throw new NpurunError('not-ready', `host ${c.host.name}: ${why}`, {
      hint: 'list each host by an IPv4 address it owns, or set GLOO_SOCKET_IFNAME and HCCL_SOCKET_IFNAME with --env',
    });
  }
  return { ifAddress, iface };
}

/** CPU sets per local rank (empty = unbound), and the ASCEND_RT_VISIBLE_DEVICES the host's ranks get. */
function hostPlacement(
  c: HostDevices,
  job: JobSpec,
  onWarning: PlanInput['onWarning'],
): { cpuSets: number[][]; visibleDevices: string | undefined } {
  let cpuSets: number[][] = c.devices.map(() => []);
  if (job.bindCores) {
    const split = splitCpus(c.facts.cpus, c.facts.numaNodes, c.devices.length);
    cpuSets = split.sets;
    if (split.warning) onWarning?.(`host ${c.host.name}: ${split.warning}`);
  }
  const visibleDevices = c.devices.every((d) => d !== null) ? c.devices.join(',') : undefined;
  const userVisible = job.env.ASCEND_RT_VISIBLE_DEVICES;
  if (
    (job.profile === 'torch' || job.profile === 'msrun') &&
    userVisible !== undefined &&
    visibleDevices !== undefined &&
    userVisible !== visibleDevices
  ) {
    // The user's value wins, but then ranks run on devices preflight did not check for health and holders.
    onWarning?.(
      `host ${c.host.name}: ASCEND_RT_VISIBLE_DEVICES=${userVisible} (--env or the job file) replaces the devices npurun chose and checked (${visibleDevices})`,
    );
  }
  return { cpuSets, visibleDevices };
}

/**
 * The plan: ranks numbered host by host as merge_hccl.py numbers them, each with its device, CPUs,
 * working dir, argv and environment. Pure: the same input always gives the same plan.
 */
export function planRun(input: PlanInput): RunPlan {
  const { job, hosts, runId } = input;
  const facts = factsFor(hosts, input.facts);
  const needIp = NEEDS_RANK_TABLE.has(job.profile);
  checkJob(job, input, needIp);
  const chosen = chooseAll(input, facts, needIp);
  const rankTable = rankTableFor(chosen, input, needIp);
  const remoteDir = job.remoteDir.replace(/\{run_id\}/g, runId);
  const rankTablePath = rankTable ? posix.join(remoteDir, 'rank_table.json') : undefined;
  const perHost = chosen[0]?.devices.length ?? 0;
  const worldSize = perHost * chosen.length;
  const first = chosen[0] as HostDevices;
  const masterAddr = first.host.address;
  const masterPort = job.masterPort;
  const base = commonEnv(job, { runId, worldSize });
  const rankOf = (nodeRank: number, local: number): number => {
    if (!input.rankTable) return nodeRank * perHost + local;
    const server = input.rankTable.server_list.find((s) => s.server_id === chosen[nodeRank]?.host.address);
    return Number(server?.device[local]?.rank_id);
  };
  const ranks: RankSpec[] = [];
  chosen.forEach((c, nodeRank) => {
    const { ifAddress, iface } = hostNetwork(c, job);
    const { cpuSets, visibleDevices } = hostPlacement(c, job, input.onWarning);
    const roles: { role: RankSpec['role']; local: number }[] = c.devices.map((_, local) => ({ role: 'rank', local }));
    if (job.profile === 'msrun' && nodeRank === 0) roles.unshift({ role: 'scheduler', local: -1 });
    for (const { role, local } of roles) {
      const deviceId = role === 'scheduler' ? null : (c.devices[local] as number | null);
      const rank = role === 'scheduler' ? -1 : rankOf(nodeRank, local);
      const label = role === 'scheduler' ? 'sched' : String(rank);
      const where = { local_rank: local, node_rank: nodeRank, device: deviceId ?? 'none', host: c.host.name };
      const cwd = posix.join(job.workdir, fill(job.rankDir, { rank: role === 'scheduler' ? 'sched' : rank, ...where }));
      const env: Record<string, string> = {
        ...base,
        NPURUN_RANK: String(rank),
        NPURUN_LOCAL_RANK: String(local),
        NPURUN_NODE_RANK: String(nodeRank),
        NPURUN_HOST: c.host.name,
        NPURUN_DEVICE_ID: deviceId === null ? '' : String(deviceId),
        ...(iface ? { GLOO_SOCKET_IFNAME: iface, HCCL_SOCKET_IFNAME: iface, HCCL_IF_IP: ifAddress } : {}),
        ...(job.checkpoint && role === 'rank' ? checkpointEnv(job.checkpoint, rank, where) : {}),
        ...profileEnv(job, {
          rank,
          local,
          nodeRank,
          deviceId,
          perHost,
          worldSize,
          role,
          rankTablePath,
          masterAddr,
          masterPort,
          runId,
          visibleDevices,
        }),
      };
      let argv = job.command;
      if (input.resume && role === 'rank') {
        const path = input.resume.byLabel[label] ?? input.resume.fallback;
        Object.assign(env, {
          NPURUN_RESUME_CKPT: path,
          NPURUN_RESUME_EPOCH: String(input.resume.epoch),
          NPURUN_RESUME_STEP: String(input.resume.step),
        });
        if (job.resumeArg) argv = [...argv, job.resumeArg.replace(/\{path\}/g, path)];
      }
      // The user's environment comes last and wins (NPURUN_* were refused above).
      Object.assign(env, job.env);
      ranks.push({
        rank,
        label,
        localRank: local,
        nodeRank,
        role,
        host: c.host.name,
        address: c.host.address,
        deviceId,
        cpus: role === 'scheduler' ? [] : (cpuSets[local] ?? []),
        cwd,
        argv,
        env,
      });
    }
  });
  const plan: RunPlan = { runId, job, hosts, facts, ranks, worldSize, masterAddr, masterPort, remoteDir };
  if (rankTable) plan.rankTable = rankTable;
  if (rankTablePath) plan.rankTablePath = rankTablePath;
  return plan;
}

/** What a saving rank is told of the checkpoint policy (the rest of NPURUN_CKPT_* is common). */
function checkpointEnv(
  policy: NonNullable<JobSpec['checkpoint']>,
  rank: number,
  where: Record<string, string | number>,
): Record<string, string> {
  const saves = !policy.masterOnly || rank === 0;
  return { NPURUN_CKPT_SAVE: saves ? '1' : '0', NPURUN_CKPT_DIR: fill(policy.dir, { rank, ...where }) };
}

interface RankContext {
  rank: number;
  local: number;
  nodeRank: number;
  deviceId: number | null;
  perHost: number;
  worldSize: number;
  role: RankSpec['role'];
  rankTablePath: string | undefined;
  masterAddr: string;
  masterPort: number;
  runId: string;
  /** The host's chosen physical ids, ascending ("2,5,7"); undefined on CPU-only hosts. */
  visibleDevices: string | undefined;
}

/** CANN's JOB_ID: letters, digits, '-' and '_', not a number starting with 0 (run ids already are). */
export function jobId(runId: string): string {
  const id = runId.replace(/[^A-Za-z0-9_-]/g, '-');
  return /^0\d*$/.test(id) || id === '' ? `npurun-${id}` : id;
}

function visible(r: RankContext): Record<string, string> {
  return r.visibleDevices === undefined ? {} : { ASCEND_RT_VISIBLE_DEVICES: r.visibleDevices };
}

/** The variables each framework reads (names from the MindSpore, ModelZoo-TensorFlow and torch_npu launchers). */
export function profileEnv(job: JobSpec, r: RankContext): Record<string, string> {
  const dev = r.deviceId === null ? '' : String(r.deviceId);
  switch (job.profile) {
    case 'mindspore':
      return {
        RANK_TABLE_FILE: r.rankTablePath as string,
        MINDSPORE_HCCL_CONFIG_PATH: r.rankTablePath as string,
        RANK_SIZE: String(r.worldSize),
        RANK_ID: String(r.rank),
        DEVICE_ID: dev,
        DEVICE_NUM: String(r.perHost),
        SERVER_ID: String(r.nodeRank),
      };
    case 'tensorflow':
      return {
        ASCEND_DEVICE_ID: dev,
        DEVICE_ID: dev,
        RANK_TABLE_FILE: r.rankTablePath as string,
        RANK_ID: String(r.rank),
        RANK_SIZE: String(r.worldSize),
        JOB_ID: jobId(r.runId),
      };
    case 'msrun':
      return {
        MS_ROLE: r.role === 'scheduler' ? 'MS_SCHED' : 'MS_WORKER',
        MS_SCHED_HOST: r.masterAddr,
        MS_SCHED_PORT: String(r.masterPort),
        MS_WORKER_NUM: String(r.worldSize),
        // DEVICE_ID is the local index: it only names the chosen device through ASCEND_RT_VISIBLE_DEVICES.
        ...(r.role === 'scheduler' ? {} : { MS_NODE_ID: String(r.rank), DEVICE_ID: String(r.local), ...visible(r) }),
        RANK_SIZE: String(r.worldSize),
      };
    case 'torch':
      return {
        MASTER_ADDR: r.masterAddr,
        MASTER_PORT: String(r.masterPort),
        RANK: String(r.rank),
        WORLD_SIZE: String(r.worldSize),
        LOCAL_RANK: String(r.local),
        LOCAL_WORLD_SIZE: String(r.perHost),
        NODE_RANK: String(r.nodeRank),
        // torchrun's documented names: one worker group per node, so the group rank is the node rank.
        GROUP_RANK: String(r.nodeRank),
        ROLE_RANK: String(r.rank),
        ROLE_WORLD_SIZE: String(r.worldSize),
        // torch_npu scripts pick npu:LOCAL_RANK: without this, devices 2,5,7 would run on 0,1,2.
        ...visible(r),
      };
  }
}

/** An argument or value as a POSIX shell would need it typed: bare when safe, '...' or $'...' for control characters. */
export function quoteForDisplay(arg: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(arg)) return arg;
  if (/[\x00-\x1f\x7f]/.test(arg)) {
    const named: Record<string, string> = { '\n': '\\n', '\t': '\\t', '\r': '\\r' };
    const body = arg
      .replace(/[\\']/g, '\\$&')
      .replace(/[\x00-\x1f\x7f]/g, (c) => named[c] ?? `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
    return `$'${body}'`;
  }
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** The --dry-run plan for people: per host, per rank, everything that will be run. */
export function describePlan(plan: RunPlan): string {
  const out = [
    `run ${plan.runId}: profile ${plan.job.profile}, ${plan.ranks.filter((r) => r.role === 'rank').length} ranks on ${plan.hosts.length} host${plan.hosts.length === 1 ? '' : 's'}, master ${plan.masterAddr}:${plan.masterPort}`,
  ];
  if (plan.rankTablePath) out.push(`rank table: ${plan.rankTablePath} (copied to every host)`);
  for (const h of plan.hosts) {
    const reach = h.local
      ? 'local'
      : h.ssh
        ? `ssh ${h.ssh.user}@${h.ssh.hostname}:${h.ssh.port}${h.ssh.proxyJump ? ` via ${h.ssh.proxyJump}` : ''}`
        : 'remote';
    out.push('', `host ${h.name} (${reach}), address ${h.address}`);
    for (const r of plan.ranks.filter((x) => x.host === h.name)) {
      out.push(
        `  rank ${r.label}: device ${r.deviceId ?? '-'}, cpus ${r.cpus.length ? compactCpus(r.cpus) : 'any'}, cwd ${r.cwd}`,
      );
      out.push(`    command: ${r.argv.map(quoteForDisplay).join(' ')}`);
      for (const k of Object.keys(r.env).sort()) out.push(`    ${k}=${quoteForDisplay(r.env[k] as string)}`);
    }
  }
  return out.join('\n');
}

export function compactCpus(cpus: number[]): string {
  const parts: string[] = [];
  let i = 0;
  while (i < cpus.length) {
    let j = i;
    while (j + 1 < cpus.length && (cpus[j + 1] as number) === (cpus[j] as number) + 1) j++;
    parts.push(i === j ? String(cpus[i]) : `${cpus[i]}-${cpus[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}
