import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { CLUSTER_START_TIMEOUT, describeCluster, startCluster, type Cluster } from './cluster/index.js';

// Stragglers across hosts: the ranks of one host (h2) sleep three times as long per step. While the run
// goes, one console line names that host's ranks; at the end the summary names exactly them.

const BIN = fileURLToPath(new URL('../bin/npurun', import.meta.url));

describeCluster('stragglers on the test cluster', () => {
  let c: Cluster;
  beforeAll(async () => {
    c = await startCluster(3);
  }, CLUSTER_START_TIMEOUT);
  afterAll(async () => c?.stop());
  afterEach(async () => {
    expect(await c.waitForNoLeftovers(5000)).toEqual([]);
  });

  it("one host's slow ranks are named live, once, while the run goes, and by the summary at the end", async () => {
    const runs = mkdtempSync(join(tmpdir(), 'npurun-stragglers-cluster-'));
    const job = [
      'import os, time',
      'slow = os.environ["NPURUN_HOST"] == "h2"',
      'for i in range(1, 61):',
      '    time.sleep(0.3 if slow else 0.1)',
      '    print("epoch[1], iter[%d], loss:1.0" % i, flush=True)',
    ].join('\n');
    const started = Date.now();
    let seenAt = 0;
    let out = '';
    const run = execa(
      'node',
      [
        BIN,
        'launch',
        '--hosts',
        c.hostsFile(),
        '--profile',
        'torch',
        '--nproc-per-node',
        '2',
        '--console',
        'none',
        '--run-dir',
        runs,
        '--',
        '/usr/bin/python3',
        '-c',
        job,
      ],
      { reject: false, all: true, env: { NO_COLOR: '1' } },
    );
    run.all?.on('data', (b: Buffer) => {
      out += b.toString();
      if (!seenAt && /npurun: straggler: host h2/.test(out)) seenAt = Date.now();
    });
    const r = await run;
    const ended = Date.now();
    expect(r.exitCode, r.all).toBe(0);
    const live = r.all.split('\n').filter((l) => /^npurun: straggler: host /.test(l));
    expect(live).toHaveLength(1);
    expect(live[0]).toMatch(
      /^npurun: straggler: host h2, ranks 2-3 \(dev 0-1\) [23]\.\dx the median step time \(\d+ ms vs \d+ ms\), \d+ steps behind$/,
    );
    // Said while the run went: well before h2's ranks finished their 60 slow steps (18 s).
    console.log(
      `live straggler line ${((seenAt - started) / 1000).toFixed(1)} s after the start; run ended at ${((ended - started) / 1000).toFixed(1)} s`,
    );
    expect(seenAt).toBeGreaterThan(0);
    expect(ended - seenAt).toBeGreaterThan(5000);
    // The end of the launch and `npurun summary` name exactly h2's ranks.
    const named = (text: string) =>
      [...text.matchAll(/straggler: rank (\d+) \(host (\w+)/g)].map((m) => `${m[1]}@${m[2]}`).sort();
    expect(named(r.all)).toEqual(['2@h2', '3@h2']);
    const s = await execa('node', [BIN, 'summary', '--runs-dir', runs], { reject: false });
    expect(named(s.stdout)).toEqual(['2@h2', '3@h2']);
  }, 120_000);
});
