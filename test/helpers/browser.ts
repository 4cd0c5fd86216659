import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';

/** Debian's chromium (`.ci/run` installs it); never a downloaded browser. */
export const CHROMIUM = process.env.NPURUN_CHROMIUM ?? '/usr/bin/chromium';

/** Screenshots for people to look at: test-output/ (gitignored). */
export const TEST_OUTPUT = fileURLToPath(new URL('../../test-output/', import.meta.url));

/** Why browser tests cannot run here, or undefined. Under CI=true a missing browser is a failure, not a skip. */
export function browserMissing(): string | undefined {
  if (existsSync(CHROMIUM)) return undefined;
  const reason = `${CHROMIUM} not found (apt-get install chromium)`;
  if (process.env.CI === 'true') throw new Error(`CI=true and ${reason}`);
  return reason;
}

/**
 * Headless Chromium with the flags this machine needs (no background traffic). Playwright gives
 * each launch a new empty profile of its own.
 */
export async function launchBrowser(): Promise<Browser> {
  mkdirSync(TEST_OUTPUT, { recursive: true });
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** What the page's charts hold, read from the uPlot instances it drew. */
export interface DrawnChart {
  /** Series per rank (the x series and the median left out). */
  ranks: string[];
  /** Non-null points per rank series. */
  points: number[];
}

export const READ_CHARTS = `(() => {
  const out = {};
  for (const [id, u] of Object.entries(window.npurunCharts)) {
    const series = u.series.slice(1).map((s, i) => ({ label: s.label, data: u.data[i + 1] }));
    const ranks = series.filter((s) => s.label.startsWith('rank '));
    out[id] = { ranks: ranks.map((s) => s.label.slice(5)), points: ranks.map((s) => s.data.filter((v) => v !== null && v !== undefined).length) };
  }
  return out;
})()`;
