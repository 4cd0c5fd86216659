import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { ReportData } from './model.js';

/**
 * The report as one HTML file: uPlot (from node_modules), the page's own script and styles
 * (src/report/assets) and the run's data, all inline, so it opens anywhere without a network.
 */

const require = createRequire(import.meta.url);
// src/report/page.ts and dist/report/page.js are both two levels below the package root.
const ASSETS = new URL('../../src/report/assets/', import.meta.url);

interface Assets {
  uplotJs: string;
  uplotCss: string;
  pageJs: string;
  pageCss: string;
}

let assets: Assets | undefined;

function loadAssets(): Assets {
  assets ??= {
    uplotJs: readFileSync(require.resolve('uplot/dist/uPlot.iife.min.js'), 'utf8'),
    uplotCss: readFileSync(require.resolve('uplot/dist/uPlot.min.css'), 'utf8'),
    pageJs: readFileSync(new URL('page.js', ASSETS), 'utf8'),
    pageCss: readFileSync(new URL('page.css', ASSETS), 'utf8'),
  };
  return assets;
}

/** JSON that is safe inside a <script> element: no "</script>", no "<!--". */
export function scriptJson(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

/** Script text inside <script>: only "</script" could end it early. */
function inlineScript(text: string): string {
  return text.replace(/<\/script/gi, '<\\/script');
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c] as string);
}

export interface PageOptions {
  /** The dashboard: the URL of the server-sent event stream that carries new data. */
  liveUrl?: string;
}

export function renderReportHtml(data: ReportData, opts: PageOptions = {}): string {
  const a = loadAssets();
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="npurun report">
<title>npurun ${escapeHtml(data.run.id)}</title>
<style>${a.uplotCss}</style>
<style>${a.pageCss}</style>
</head>
<body>
<main>
<section id="run-header"></section>
<section id="grid-section"><h2>Ranks by host</h2><div id="grid"></div></section>
<section id="root-cause" class="root-cause" hidden></section>
<section id="charts-section">
<h2>Loss and throughput</h2>
<p id="no-charts" class="muted" hidden>No training lines (<code>epoch[E], iter[I], loss:L</code>) in the output yet.</p>
<div id="charts">
<div id="chart-loss" class="chart"></div><p id="outliers-loss" class="note"></p>
<div id="chart-fps" class="chart"></div><p id="outliers-fps" class="note"></p>
<div id="chart-total" class="chart"></div>
<p id="chart-stride" class="note muted"></p>
</div>
</section>
<section id="eval"></section>
<section id="timeline"></section>
<section id="rank-lines"></section>
</main>
<script type="application/json" id="npurun-data">${scriptJson(data)}</script>
${opts.liveUrl ? `<script>window.NPURUN_LIVE = ${scriptJson(opts.liveUrl)};</script>` : ''}
<script>${inlineScript(a.uplotJs)}</script>
<script>${inlineScript(a.pageJs)}</script>
</body>
</html>
`;
}
