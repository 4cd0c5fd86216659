import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { heldScript, markHeld, parseHeld } from '../src/devices/held.js';
import type { HostFacts } from '../src/devices/types.js';

function startTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
}

describe('devices held by other npurun runs (pid files, checked by sh as on a host)', () => {
  it('finds live ranks with their device, skips dead and reused pids, expands {uid} and quotes the path', () => {
    const root = mkdtempSync(join(tmpdir(), "npurun held 'q'-"));
    const uid = process.getuid?.() ?? 0;
    const pids = join(root, `u${uid}`, 'run-a', 'pids');
    mkdirSync(pids, { recursive: true });
    const live = spawn('sleep', ['30']);
    const pid = live.pid as number;
    writeFileSync(
      join(pids, '0.json'),
      JSON.stringify({ run_id: 'run-a', label: '0', pid, start_ticks: startTicks(pid), device: 3 }),
    );
    writeFileSync(
      join(pids, '1.json'),
      JSON.stringify({ run_id: 'run-a', label: '1', pid, start_ticks: startTicks(pid) - 1, device: 4 }),
    ); // pid reused
    writeFileSync(
      join(pids, '2.json'),
      JSON.stringify({ run_id: 'run-a', label: '2', pid: 999999999, start_ticks: 1, device: 5 }),
    ); // gone
    writeFileSync(
      join(pids, 'agent.json'),
      JSON.stringify({
        run_id: 'run-a',
        label: 'agent',
        pid: process.pid,
        start_ticks: startTicks(process.pid),
        agent: true,
      }),
    );
    const out = execFileSync('sh', ['-s'], { input: heldScript(join(root, 'u{uid}', '{run_id}')), encoding: 'utf8' });
    live.kill();
    const held = parseHeld(out);
    expect(held).toEqual([{ runId: 'run-a', label: '0', pid, device: 3 }]);
    const facts = {
      devices: [
        { deviceId: 3, processes: [] },
        { deviceId: 4, processes: [] },
      ],
      problems: [],
    } as unknown as HostFacts;
    markHeld(facts, held);
    expect(facts.devices[0]?.processes).toEqual([{ pid, name: 'npurun run run-a rank 0' }]);
    expect(facts.devices[1]?.processes).toEqual([]);
    expect(facts.problems).toEqual([`device 3 is held by npurun run run-a (rank 0, pid ${pid})`]);
  });
});
