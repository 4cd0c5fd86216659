// npurun report page: renders the run data embedded in #npurun-data (see src/report/model.ts,
// ReportData) with uPlot; on the dashboard, re-renders on every server-sent update.
/* global uPlot */
(function () {
  'use strict';
  var charts = {};
  window.npurunCharts = charts;

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs)
      for (var k in attrs) {
        if (k === 'text') node.textContent = attrs[k];
        else if (k === 'style') node.style.cssText = attrs[k];
        else node.setAttribute(k, attrs[k]);
      }
    (children || []).forEach(function (c) {
      if (c !== null && c !== undefined) node.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    });
    return node;
  }
  function fill(id, nodes) {
    var box = document.getElementById(id);
    box.replaceChildren.apply(
      box,
      nodes.filter(function (n) {
        return n;
      }),
    );
    return box;
  }
  function duration(ms) {
    var s = Math.round(ms / 1000);
    if (s < 60) return (ms / 1000).toFixed(1) + ' s';
    var m = Math.floor(s / 60),
      h = Math.floor(m / 60);
    return h > 0 ? h + ' h ' + (m % 60) + ' min' : m + ' min ' + (s % 60) + ' s';
  }
  function num(n, digits) {
    if (n === null || n === undefined) return '-';
    return Number.isInteger(n) ? String(n) : n.toFixed(digits === undefined ? 2 : digits);
  }
  function color(i, n) {
    return 'hsl(' + Math.round((i * 137.508) % 360) + ',65%,' + (n > 64 ? 55 : 45) + '%)';
  }

  function renderHeader(d) {
    var r = d.run;
    var kind =
      r.status === 'succeeded'
        ? 'succeeded'
        : r.status === 'running'
          ? 'running'
          : r.status === 'failed'
            ? 'failed'
            : 'other';
    var fields = [
      ['status', el('span', { class: 'badge ' + kind, text: r.status })],
      ['exit code', r.exitCode === null ? '-' : String(r.exitCode)],
      ['world size', String(r.worldSize)],
      ['profile', r.profile || '-'],
      [
        'hosts',
        r.hosts.length <= 8
          ? r.hosts.join(', ')
          : r.hosts.length + ': ' + r.hosts.slice(0, 3).join(', ') + ' \u2026 ' + r.hosts[r.hosts.length - 1],
      ],
      ['started', r.startedAt.replace('T', ' ').replace(/\.\d+Z$/, 'Z')],
      ['duration', duration(r.durationMs) + (r.endedAt ? '' : ' so far')],
    ];
    if (r.attempts) fields.push(['attempts', String(r.attempts.length)]);
    var title = el('h1', {}, ['npurun run ', el('span', { id: 'run-id', text: r.id })]);
    if (window.NPURUN_LIVE)
      title.appendChild(
        el('span', {
          class: 'live',
          id: 'live-state',
          text: r.live ? '● live, updated ' + d.generatedAt.slice(11, 19) + 'Z' : 'run over',
        }),
      );
    fill('run-header', [
      title,
      el(
        'dl',
        { class: 'header-grid' },
        fields.map(function (f) {
          return el('div', {}, [el('dt', { text: f[0] }), el('dd', {}, [f[1]])]);
        }),
      ),
      el('p', { class: 'note' }, [
        el('span', { class: 'muted', text: 'command: ' }),
        el('code', { text: r.command.join(' ') }),
      ]),
    ]);
  }

  var STATES = ['running', 'ok', 'failed', 'root-cause', 'stopped', 'hang', 'straggler', 'unknown'];
  function renderGrid(d) {
    var hosts = [],
      byHost = {},
      width = 0;
    d.ranks.forEach(function (r) {
      if (!byHost[r.host]) {
        byHost[r.host] = [];
        hosts.push(r.host);
      }
      byHost[r.host].push(r);
      width = Math.max(width, byHost[r.host].length);
    });
    var head = el('tr', {}, [el('th', { text: 'host \\ local rank' })]);
    for (var i = 0; i < width; i++) head.appendChild(el('th', { text: String(i), style: 'text-align:center' }));
    var rows = hosts.map(function (h) {
      var tr = el('tr', {}, [el('th', { text: h })]);
      byHost[h].forEach(function (r) {
        var tip =
          'rank ' +
          r.label +
          ' on ' +
          r.host +
          (r.device === null ? '' : ' dev' + r.device) +
          ': ' +
          r.state +
          (r.end ? ' (' + r.end + ')' : '');
        tr.appendChild(
          el('td', {}, [
            el('a', {
              class: 'cell state-' + r.state + (r.root ? ' root' : ''),
              href: '#rank-' + r.label,
              title: tip,
              'data-rank': r.label,
              'data-state': r.state,
              text: r.label,
            }),
          ]),
        );
      });
      return tr;
    });
    var counts = {};
    d.ranks.forEach(function (r) {
      counts[r.state] = (counts[r.state] || 0) + 1;
    });
    var legend = el(
      'div',
      { class: 'legend' },
      STATES.filter(function (s) {
        return counts[s];
      }).map(function (s) {
        return el('span', { style: '--c: var(--' + s + ')', text: s + ' ' + counts[s] });
      }),
    );
    fill('grid', [el('table', { class: 'grid' }, [head].concat(rows)), legend]);
  }

  function renderRootCause(d) {
    var box = document.getElementById('root-cause');
    var rc = d.rootCause;
    box.hidden = !rc;
    if (!rc) return;
    fill('root-cause', [
      el('h2', { text: 'Root cause: rank ' + rc.label }),
      el(
        'dl',
        { class: 'header-grid' },
        [
          ['rank', rc.label],
          ['host', rc.host],
          ['device', rc.device === null ? '-' : String(rc.device)],
          ['how it ended', rc.end],
          ['classification', rc.classification || 'not recognised'],
        ].map(function (f) {
          return el('div', {}, [
            el('dt', { text: f[0] }),
            el('dd', { id: 'root-' + f[0].replace(/ /g, '-'), text: f[1] }),
          ]);
        }),
      ),
      el('p', { class: 'note muted', text: 'last ' + rc.lastLines.length + ' lines of rank ' + rc.label + ':' }),
      el('pre', { text: rc.lastLines.join('\n') || '(no output)' }),
    ]);
  }

  function chartWidth(id) {
    return Math.max(320, document.getElementById(id).clientWidth || 800);
  }

  // Steps are whole numbers: never a tick at 2.5.
  var STEP_INCRS = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 5e6, 1e7,
  ];

  // One series per rank (thin, coloured), the median across ranks (thick, black), outliers thicker.
  // Checkpoint steps as vertical lines: solid green when every saving rank completed, dashed orange if not.
  function checkpointLines(steps) {
    return function (u) {
      var ctx = u.ctx,
        top = u.bbox.top,
        height = u.bbox.height;
      ctx.save();
      ctx.lineWidth = 1.5 * devicePixelRatio;
      ctx.font = 10 * devicePixelRatio + 'px sans-serif';
      steps().forEach(function (c) {
        var x = Math.round(u.valToPos(c.step, 'x', true));
        if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
        ctx.strokeStyle = ctx.fillStyle = c.complete ? 'rgba(46,157,79,0.7)' : 'rgba(224,123,36,0.9)';
        ctx.setLineDash(c.complete ? [] : [5 * devicePixelRatio, 4 * devicePixelRatio]);
        ctx.beginPath();
        ctx.moveTo(x, top);
        ctx.lineTo(x, top + height);
        ctx.stroke();
        var nearRight = x > u.bbox.left + u.bbox.width - 30 * devicePixelRatio;
        ctx.textAlign = nearRight ? 'right' : 'left';
        ctx.fillText('ckpt', x + (nearRight ? -3 : 3) * devicePixelRatio, top + 11 * devicePixelRatio);
      });
      ctx.restore();
    };
  }
  var current = null;

  function rankChart(id, title, yLabel, c, values, medianValues, outliers) {
    var n = c.labels.length;
    var odd = {};
    outliers.forEach(function (o) {
      odd[o.label] = true;
    });
    var data = [c.steps].concat(values).concat([medianValues]);
    var box = document.getElementById(id);
    var u = charts[id];
    if (u && u.series.length === data.length) u.setData(data);
    else {
      if (u) u.destroy();
      box.replaceChildren();
      var series = [{ label: 'step' }]
        .concat(
          c.labels.map(function (l, i) {
            return {
              label: 'rank ' + l,
              stroke: color(i, n),
              width: odd[l] ? 2.5 : 1,
              spanGaps: true,
              points: { show: false },
            };
          }),
        )
        .concat([{ label: 'median', stroke: '#111', width: 3, spanGaps: true, points: { show: false } }]);
      u = new uPlot(
        {
          width: chartWidth(id),
          height: 300,
          title: title,
          scales: { x: { time: false } },
          axes: [
            { label: 'step', incrs: STEP_INCRS },
            { label: yLabel, size: 90 },
          ],
          legend: { show: n <= 16 },
          series: series,
          hooks:
            id === 'chart-loss'
              ? {
                  draw: [
                    checkpointLines(function () {
                      return current ? current.checkpoints : [];
                    }),
                  ],
                }
              : {},
        },
        data,
        box,
      );
      charts[id] = u;
    }
    var pts = values.map(function (s) {
      return s.filter(function (v) {
        return v !== null;
      }).length;
    });
    box.setAttribute('data-series', String(values.length));
    box.setAttribute('data-points', pts.join(','));
  }

  function totalChart(d) {
    var id = 'chart-total',
      t = d.charts.total;
    var data = [t.t, t.fps];
    var u = charts[id];
    if (u) u.setData(data);
    else {
      document.getElementById(id).replaceChildren();
      charts[id] = new uPlot(
        {
          width: chartWidth(id),
          height: 220,
          title: 'Total throughput (sum of every rank\u2019s latest imgs/sec)',
          scales: { x: { time: false } },
          axes: [{ label: 'seconds since start' }, { label: 'imgs/sec', size: 90 }],
          series: [
            { label: 's' },
            { label: 'total', stroke: '#3b82c4', width: 2, fill: 'rgba(59,130,196,0.12)', points: { show: false } },
          ],
        },
        data,
        document.getElementById(id),
      );
    }
    document.getElementById(id).setAttribute('data-points', String(t.t.length));
  }

  function outlierNote(id, outliers, chart, hostOf) {
    var mine = outliers.filter(function (o) {
      return o.chart === chart;
    });
    fill(
      id,
      mine.length === 0
        ? [el('span', { class: 'muted', text: 'no rank stands out' })]
        : [el('b', { text: 'stands out: ' })]
            .concat(
              mine.slice(0, 20).map(function (o, i) {
                return el('span', { 'data-outlier': o.label }, [
                  i ? '; ' : '',
                  el('a', { href: '#rank-' + o.label, text: 'rank ' + o.label }),
                  ' on ' + (hostOf[o.label] || '?') + ' (' + o.why + ')',
                ]);
              }),
            )
            .concat(mine.length > 20 ? [' and ' + (mine.length - 20) + ' more'] : []),
    );
  }

  function renderCharts(d) {
    var c = d.charts;
    var has = c.steps.length > 0;
    document.getElementById('charts').hidden = !has;
    document.getElementById('no-charts').hidden = has;
    if (!has) return;
    rankChart(
      'chart-loss',
      'Loss per rank',
      'loss',
      c,
      c.loss,
      c.lossMedian,
      c.outliers.filter(function (o) {
        return o.chart === 'loss';
      }),
    );
    rankChart(
      'chart-fps',
      'Throughput per rank',
      'imgs/sec',
      c,
      c.fps,
      c.fpsMedian,
      c.outliers.filter(function (o) {
        return o.chart === 'fps';
      }),
    );
    totalChart(d);
    var hostOf = {};
    d.ranks.forEach(function (r) {
      hostOf[r.label] = r.host;
    });
    outlierNote('outliers-loss', c.outliers, 'loss', hostOf);
    outlierNote('outliers-fps', c.outliers, 'fps', hostOf);
    document.getElementById('chart-stride').textContent =
      c.stride > 1 ? 'Long run: every ' + c.stride + 'th step drawn (metrics.jsonl has all).' : '';
  }

  function renderEval(d) {
    var e = d.eval,
      s = e.summary,
      out = [el('h2', { text: 'Training and evaluation' })];
    if (s.training)
      out.push(
        el('p', {
          text:
            'training: epoch ' +
            s.training.lastEpoch +
            ', step ' +
            s.training.lastIter +
            ', mean last loss ' +
            num(s.training.meanLoss, 4) +
            (s.training.totalFps !== undefined ? ', total ' + num(s.training.totalFps) + ' imgs/sec' : ''),
        }),
      );
    if (s.eval)
      out.push(
        el('p', {
          id: 'eval-accuracy',
          text:
            'accuracy from the summed per-rank counts (' +
            s.eval.ranks +
            ' ranks): top-1 ' +
            s.eval.top1Correct +
            '/' +
            s.eval.total +
            ' = ' +
            num(s.eval.top1Accuracy) +
            '%, top-5 ' +
            s.eval.top5Correct +
            '/' +
            s.eval.total +
            ' = ' +
            num(s.eval.top5Accuracy) +
            '%',
        }),
      );
    if (e.verdict !== 'none') {
      var text =
        e.verdict === 'agrees'
          ? 'allreduce cross-check: every rank\u2019s in-script allreduce agrees and equals the sum of the per-rank counts'
          : 'allreduce cross-check FAILED (see the problems below)';
      out.push(el('p', { id: 'allreduce-verdict', class: 'verdict-' + e.verdict, text: text }));
    }
    [
      ['problems', 'problem', 'verdict-mismatch'],
      ['warnings', 'warning', ''],
      ['notes', 'note', 'muted'],
    ].forEach(function (k) {
      var list = s[k[0]] || [];
      if (list.length === 0) return;
      out.push(
        el(
          'ul',
          { id: 'summary-' + k[0], class: 'note ' + k[2] },
          list
            .slice(0, 50)
            .map(function (p) {
              return el('li', { text: k[1] + ': ' + p });
            })
            .concat(
              list.length > 50
                ? [el('li', { text: '\u2026 and ' + (list.length - 50) + ' more (npurun summary lists all)' })]
                : [],
            ),
        ),
      );
    });
    if (s.throughput)
      out.push(
        el('p', {
          text: 'inference: ' + num(s.throughput.totalImgsPerSec) + ' img/sec over ' + s.throughput.ranks + ' ranks',
        }),
      );
    Object.keys(s.metrics).forEach(function (name) {
      var m = s.metrics[name];
      out.push(el('p', { text: name + ' (' + m.reduce + ' over ' + m.ranks + ' ranks): ' + num(m.value, 4) }));
    });
    if (e.perRank.length > 0) {
      var table = el(
        'table',
        { class: 'data' },
        [
          el(
            'tr',
            {},
            ['rank', 'top-1 correct', 'top-5 correct', 'total'].map(function (h) {
              return el('th', { text: h });
            }),
          ),
        ].concat(
          e.perRank.map(function (r) {
            return el(
              'tr',
              {},
              [r.label, r.top1, r.top5, r.total].map(function (v) {
                return el('td', { text: String(v) });
              }),
            );
          }),
        ),
      );
      out.push(
        e.perRank.length > 16
          ? el('details', {}, [el('summary', { text: 'per-rank counts (' + e.perRank.length + ' ranks)' }), table])
          : table,
      );
    }
    if (out.length === 1)
      out.push(el('p', { class: 'muted', text: 'no training or evaluation lines recognised in the output' }));
    fill('eval', out);
  }

  function renderTimeline(d) {
    fill('timeline', [
      el('h2', { text: 'Timeline' }),
      el(
        'ol',
        { class: 'timeline' },
        d.timeline.map(function (t) {
          return el('li', { class: t.level, 'data-kind': t.kind }, [
            el('span', { class: 't', text: '+' + (t.offsetMs / 1000).toFixed(1) + ' s' }),
            t.text,
          ]);
        }),
      ),
    ]);
  }

  var opened = {};
  function renderRankLines(d) {
    fill(
      'rank-lines',
      [el('h2', { text: 'Last lines of every rank' })].concat(
        d.ranks.map(function (r) {
          var det = el('details', { id: 'rank-' + r.label }, [
            el('summary', {
              text:
                'rank ' +
                r.label +
                ' \u00b7 ' +
                r.host +
                (r.device === null ? '' : ' dev' + r.device) +
                ' \u00b7 ' +
                r.state +
                (r.end ? ' \u00b7 ' + r.end : '') +
                ' \u00b7 ' +
                r.lines +
                ' lines',
            }),
            el('pre', { text: r.lastLines.join('\n') || '(no output yet)' }),
          ]);
          if (opened[r.label]) det.open = true;
          det.addEventListener('toggle', function () {
            opened[r.label] = det.open;
          });
          return det;
        }),
      ),
    );
    openTarget();
  }
  function openTarget() {
    var target = location.hash && document.getElementById(decodeURIComponent(location.hash.slice(1)));
    if (target && target.tagName === 'DETAILS') {
      target.open = true;
      opened[target.id.slice(5)] = true;
    }
  }

  function render(d) {
    current = d;
    document.title = 'npurun ' + d.run.id + ' (' + d.run.status + ')';
    renderHeader(d);
    renderGrid(d);
    renderRootCause(d);
    renderCharts(d);
    renderEval(d);
    renderTimeline(d);
    renderRankLines(d);
    document.body.setAttribute('data-rendered', d.generatedAt);
  }

  window.addEventListener('hashchange', openTarget);
  window.addEventListener('resize', function () {
    Object.keys(charts).forEach(function (id) {
      charts[id].setSize({ width: chartWidth(id), height: charts[id].height });
    });
  });
  render(JSON.parse(document.getElementById('npurun-data').textContent));
  if (window.NPURUN_LIVE) {
    var source = new EventSource(window.NPURUN_LIVE);
    source.onmessage = function (msg) {
      render(JSON.parse(msg.data));
    };
  }
})();
