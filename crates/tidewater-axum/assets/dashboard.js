// tidewater dashboard: polls api/pools every second and draws the selected
// pool. Plain JavaScript, charts on <canvas>, nothing loaded from elsewhere.
//
// Stable hooks for tests and scripts:
//   body[data-ready="true"]       after the first successful render
//   body[data-renders]            renders so far
//   main[data-pool]               the pool shown
//   [data-metric=NAME][data-value] each number (raw value in data-value)
//   #alerts li[data-alert=NAME]   each firing alert
//   #leaks tr[data-connection-id] each leak suspect
//   #fleet tr[data-member]        each member of the pool's fleet
//   canvas[data-points]           history points drawn
'use strict';

(() => {
  const POLL_MS = 1000;
  const FETCH_TIMEOUT_MS = 5000;
  const MIN_WINDOW_MS = 60 * 1000;
  const API = new URL('api/pools', document.baseURI);

  const state = {
    pools: new Map(), // name -> { report, history: [] }
    order: [],
    selected: null,
    lastSample: 0,
    capacity: 600,
    intervalSeconds: 1,
    firing: null, // alert names of the selected pool, for announcements
    fleetState: null, // its fleet's state, for announcements
  };

  const $ = (selector, root = document) => root.querySelector(selector);

  // ---- formatting --------------------------------------------------------

  function formatDuration(seconds) {
    if (!Number.isFinite(seconds)) return '–';
    if (seconds === 0) return '0';
    if (seconds < 1e-3) return `${(seconds * 1e6).toFixed(seconds < 1e-5 ? 1 : 0)} µs`;
    if (seconds < 1) return `${(seconds * 1e3).toFixed(seconds < 1e-2 ? 2 : 1)} ms`;
    if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
    const minutes = Math.floor(seconds / 60);
    const rest = Math.floor(seconds % 60);
    if (minutes < 60) return `${minutes}m ${String(rest).padStart(2, '0')}s`;
    return `${Math.floor(minutes / 60)}h ${String(minutes % 60).padStart(2, '0')}m`;
  }

  function formatCount(n) {
    return Number(n).toLocaleString('en-US');
  }

  function formatClock(unixMs) {
    return new Date(unixMs).toLocaleTimeString('en-GB', { hour12: false });
  }

  function setMetric(name, value, text) {
    for (const element of document.querySelectorAll(`[data-metric="${name}"]`)) {
      element.dataset.value = String(value);
      if (element.tagName === 'METER') {
        element.value = Number(value);
      } else {
        element.textContent = text ?? String(value);
      }
    }
  }

  // ---- data --------------------------------------------------------------

  function merge(report) {
    state.capacity = report.history_capacity;
    state.intervalSeconds = report.sample_interval_seconds;
    const names = [];
    for (const pool of report.pools) {
      names.push(pool.name);
      let entry = state.pools.get(pool.name);
      if (!entry) {
        entry = { report: pool, history: [] };
        state.pools.set(pool.name, entry);
      }
      entry.report = pool;
      const last = entry.history.length ? entry.history[entry.history.length - 1].sample : 0;
      for (const point of pool.history) {
        if (point.sample > last) entry.history.push(point);
      }
      if (entry.history.length > state.capacity) {
        entry.history.splice(0, entry.history.length - state.capacity);
      }
    }
    for (const name of [...state.pools.keys()]) {
      if (!names.includes(name)) state.pools.delete(name);
    }
    state.order = names;
    state.lastSample = Math.max(state.lastSample, report.last_sample);
  }

  function wantedPool() {
    return new URLSearchParams(window.location.search).get('pool');
  }

  function select() {
    const wanted = wantedPool();
    const selected = wanted !== null && state.pools.has(wanted) ? wanted : state.order[0] ?? null;
    if (selected !== state.selected) {
      state.firing = null;
      state.fleetState = null;
    }
    state.selected = selected;
  }

  async function poll() {
    const url = new URL(API);
    if (state.lastSample > 0) url.searchParams.set('after', String(state.lastSample));
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), FETCH_TIMEOUT_MS);
    let report = null;
    try {
      const response = await fetch(url, {
        signal: abort.signal,
        cache: 'no-store',
        headers: { accept: 'application/json' },
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      report = await response.json();
    } catch (error) {
      const reason = error.name === 'AbortError' ? 'no answer in time' : error.message;
      setConnection('error', `Cannot reach the service (${reason}); retrying`);
    } finally {
      clearTimeout(timer);
    }
    // A failure to draw the report is a bug of this page, not the service's:
    // logged as an error (tests watch for those), and polling goes on.
    try {
      if (report !== null) {
        merge(report);
        select();
        render();
        setConnection('live', `Live · updated ${formatClock(Date.now())}`);
      }
    } catch (error) {
      console.error('tidewater dashboard: cannot show the report:', error);
      setConnection('error', `Cannot show the report (${error.message}); retrying`);
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  function setConnection(kind, text) {
    const element = $('#connection');
    element.dataset.state = kind;
    element.textContent = text;
  }

  // ---- rendering ---------------------------------------------------------

  function render() {
    renderTabs();
    const entry = state.selected === null ? null : state.pools.get(state.selected);
    $('#no-pools').hidden = entry !== null;
    $('#pool').hidden = entry === null;
    if (entry) renderPool(entry);
    document.body.dataset.ready = 'true';
    document.body.dataset.renders = String(Number(document.body.dataset.renders) + 1);
  }

  function renderTabs() {
    const list = $('#pool-tabs');
    const wanted = state.order.join('\n') + '\n' + state.selected;
    if (list.dataset.key !== wanted) {
      list.dataset.key = wanted;
      list.replaceChildren(
        ...state.order.map((name) => {
          const item = document.createElement('li');
          const link = document.createElement('a');
          link.href = `?pool=${encodeURIComponent(name)}`;
          link.dataset.pool = name;
          link.append(document.createTextNode(name));
          const dot = document.createElement('span');
          dot.className = 'dot';
          dot.hidden = true;
          link.append(dot);
          if (name === state.selected) link.setAttribute('aria-current', 'page');
          link.addEventListener('click', (event) => {
            if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
            event.preventDefault();
            window.history.pushState(null, '', link.href);
            select();
            render();
            $('#main').focus();
          });
          item.append(link);
          return item;
        }),
      );
    }
    for (const link of list.querySelectorAll('a')) {
      const alerts = state.pools.get(link.dataset.pool)?.report.alerts ?? [];
      const dot = $('.dot', link);
      dot.hidden = alerts.length === 0;
      dot.textContent = String(alerts.length);
      dot.dataset.severity = alerts.some((alert) => alert.severity === 'critical') ? 'critical' : 'warning';
      link.setAttribute(
        'aria-label',
        `${link.dataset.pool}${alerts.length ? `, ${alerts.length} alert${alerts.length > 1 ? 's' : ''} firing` : ''}`,
      );
    }
  }

  function renderPool(entry) {
    const pool = entry.report;
    const status = pool.status;
    const totals = pool.totals;
    const last = entry.history[entry.history.length - 1];
    $('#main').dataset.pool = pool.name;
    $('#pool-name').textContent = pool.name;
    document.title = `${pool.name} · tidewater`;

    setMetric('in_use', status.in_use);
    setMetric('max_size', status.max_size);
    const sizing = pool.sizing;
    setMetric('limit', status.limit, sizing.mode === 'adaptive'
      ? `${status.limit} (adaptive, ${sizing.reason.replace(/_/g, ' ')})`
      : `${status.limit} (fixed)`);
    setMetric('idle', status.idle);
    setMetric('waiters', status.waiters);
    setMetric('opening', status.opening);
    setMetric('utilization', status.in_use / Math.max(status.max_size, 1));
    setMetric('timeouts', totals.timeouts, formatCount(totals.timeouts));
    setMetric('connect_errors', totals.connect_errors, formatCount(totals.connect_errors));
    setMetric('acquired', totals.acquired, formatCount(totals.acquired));
    setMetric('opened', totals.opened, formatCount(totals.opened));
    setMetric('closed', totals.closed, formatCount(totals.closed));
    setMetric('rejected', totals.rejected, formatCount(totals.rejected));
    setMetric('leaks_detected', totals.leaks_detected, formatCount(totals.leaks_detected));
    setMetric('wait_p50', last ? last.wait_p50_seconds : '', last ? formatDuration(last.wait_p50_seconds) : '–');
    setMetric('wait_p99', last ? last.wait_p99_seconds : '', last ? formatDuration(last.wait_p99_seconds) : '–');
    $('[data-metric="waiters"]').dataset.alarm = String(status.waiters > 0);
    $('[data-metric="timeouts"]').dataset.alarm = String(totals.timeouts > 0);

    const breaker = status.breaker_open ? 'open' : 'closed';
    setMetric('breaker', breaker, status.breaker_open ? 'breaker open: database unreachable' : 'breaker closed');

    const capacity = $('#capacity');
    capacity.hidden = !pool.capacity;
    if (pool.capacity) {
      const { available, max_connections: max } = pool.capacity;
      capacity.dataset.value = String(available);
      capacity.dataset.low = String(available < 0.1 * max);
      capacity.textContent = `server: ${available} of ${max} connections free`;
    }

    renderFleet(pool);
    renderAlerts(pool);
    renderLeaks(pool);
    renderCharts(entry);
  }

  function renderAlerts(pool) {
    const alerts = pool.alerts;
    setMetric('alerts_count', alerts.length);
    $('#alerts-empty').hidden = alerts.length > 0;
    $('#alerts').replaceChildren(
      ...alerts.map((alert) => {
        const item = document.createElement('li');
        item.dataset.alert = alert.name;
        item.dataset.severity = alert.severity;
        const head = document.createElement('div');
        const severity = document.createElement('span');
        severity.className = 'severity';
        severity.textContent = `${alert.severity} `;
        const name = document.createElement('span');
        name.className = 'name';
        name.textContent = alert.name;
        head.append(severity, name);
        const summary = document.createElement('p');
        summary.textContent = alert.summary;
        const description = document.createElement('p');
        description.className = 'description';
        description.textContent = alert.description;
        const since = document.createElement('p');
        since.className = 'since';
        const started = Date.parse(alert.since);
        since.textContent = `firing since ${formatClock(started)} (${formatDuration(Math.max(0, (Date.now() - started) / 1000))})`;
        item.append(head, summary, description, since);
        return item;
      }),
    );
    const names = alerts.map((alert) => alert.name);
    if (state.firing !== null) {
      const fired = names.filter((name) => !state.firing.includes(name));
      const resolved = state.firing.filter((name) => !names.includes(name));
      const news = [...fired.map((name) => `Alert firing: ${name}.`), ...resolved.map((name) => `Alert resolved: ${name}.`)];
      if (news.length) $('#announce').textContent = news.join(' ');
    }
    state.firing = names;
  }

  function renderLeaks(pool) {
    const leaks = pool.leak_suspects;
    const threshold = pool.thresholds.leak_detection_threshold_seconds;
    setMetric('leak_count', leaks.length);
    $('#leaks-threshold').textContent =
      threshold === null
        ? 'Leak detection is off for this pool.'
        : `Connections held longer than ${formatDuration(threshold)}, longest first, with the line that took them.`;
    $('#leaks-empty').hidden = leaks.length > 0;
    const table = $('#leaks');
    table.hidden = leaks.length === 0;
    $('tbody', table).replaceChildren(
      ...leaks.map((leak) => {
        const row = document.createElement('tr');
        row.dataset.connectionId = String(leak.connection_id);
        const id = document.createElement('td');
        id.textContent = String(leak.connection_id);
        const caller = document.createElement('td');
        const code = document.createElement('code');
        code.dataset.field = 'caller';
        code.textContent = leak.caller;
        caller.append(code);
        const held = document.createElement('td');
        held.dataset.field = 'held_for';
        held.dataset.value = String(leak.held_for_seconds);
        held.textContent = formatDuration(leak.held_for_seconds);
        row.append(id, caller, held);
        return row;
      }),
    );
  }

  function renderFleet(pool) {
    const fleet = pool.fleet;
    const section = $('#fleet');
    section.hidden = !fleet;
    if (!fleet) {
      state.fleetState = null;
      return;
    }
    $('#fleet-name').textContent = fleet.fleet;
    const degraded = fleet.state === 'degraded';
    setMetric('fleet_state', fleet.state, degraded ? 'degraded: on a fallback share' : 'coordinated');
    const reason = $('#fleet-reason');
    reason.hidden = !degraded;
    reason.textContent = degraded
      ? `Coordination lost: ${fleet.reason ?? 'reason unknown'}; on a fallback share of ${fleet.grant} connections.`
      : '';
    setMetric('fleet_grant', fleet.grant);
    setMetric('fleet_budget', fleet.budget);
    $('tbody', section).replaceChildren(
      ...fleet.members.map((member) => {
        const row = document.createElement('tr');
        row.dataset.member = member.member;
        const id = document.createElement('td');
        const code = document.createElement('code');
        code.textContent = member.member;
        id.append(code);
        if (member.member === fleet.member) {
          row.setAttribute('aria-current', 'true');
          const tag = document.createElement('span');
          tag.className = 'tag';
          tag.textContent = 'this replica';
          id.append(' ', tag);
        }
        const cells = [member.grant, member.held, member.demand].map((value) => {
          const cell = document.createElement('td');
          cell.textContent = String(value);
          return cell;
        });
        const lease = document.createElement('td');
        lease.dataset.value = String(member.lease_age_seconds);
        lease.textContent = formatDuration(member.lease_age_seconds);
        row.append(id, ...cells, lease);
        return row;
      }),
    );
    if (state.fleetState !== null && state.fleetState !== fleet.state) {
      $('#announce').textContent = degraded
        ? `Fleet coordination lost: ${fleet.reason ?? 'reason unknown'}.`
        : 'Fleet coordination restored.';
    }
    state.fleetState = fleet.state;
  }

  // ---- charts ------------------------------------------------------------

  function cssColor(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#000';
  }

  function renderCharts(entry) {
    const history = entry.history;
    const thresholds = entry.report.thresholds;
    const span = spanOf(history);
    drawChart('chart-connections', history, {
      series: [
        { label: 'in use', color: '--series-1', value: (p) => p.in_use },
        { label: 'idle', color: '--series-3', value: (p) => p.idle },
        { label: 'waiting', color: '--series-5', value: (p) => p.waiters },
        { label: 'max', color: '--series-muted', value: (p) => p.max_size, dash: true },
        { label: 'limit', color: '--series-2', value: (p) => p.limit, dash: true },
      ],
      format: (v) => String(Math.round(v)),
      integer: true,
      describe: (p) => `now ${p.in_use} in use, ${p.idle} idle, ${p.waiters} waiting, limit ${p.limit}, ${p.max_size} at most`,
    }, span);

    let peak = 0;
    for (const point of history) peak = Math.max(peak, point.wait_p99_seconds);
    const expected = thresholds.expected_wait_p99_seconds;
    drawChart('chart-wait', history, {
      series: [
        { label: 'p50', color: '--series-1', value: (p) => p.wait_p50_seconds },
        { label: 'p99', color: '--series-2', value: (p) => p.wait_p99_seconds },
        ...(peak >= expected / 2
          ? [{ label: `expected p99 (${formatDuration(expected)})`, color: '--series-muted', value: () => expected, dash: true }]
          : []),
      ],
      format: formatDuration,
      describe: (p) => `last sample p50 ${formatDuration(p.wait_p50_seconds)}, p99 ${formatDuration(p.wait_p99_seconds)}`,
    }, span);

    drawChart('chart-errors', history, {
      series: [
        { label: 'timeouts', color: '--series-5', value: (p, q) => (q ? p.timeouts_total - q.timeouts_total : 0) },
        { label: 'connection errors', color: '--series-4', value: (p, q) => (q ? p.connect_errors_total - q.connect_errors_total : 0) },
      ],
      format: (v) => String(Math.round(v)),
      integer: true,
      describe: (p) => `${p.timeouts_total} timeouts and ${p.connect_errors_total} connection errors since the start`,
    }, span);
  }

  function spanOf(history) {
    if (history.length === 0) return null;
    const end = history[history.length - 1].unix_ms;
    const start = Math.min(history[0].unix_ms, end - MIN_WINDOW_MS);
    return { start, end };
  }

  function niceCeiling(value, integer) {
    if (!(value > 0)) return integer ? 4 : 0.001;
    const exponent = Math.floor(Math.log10(value));
    const base = 10 ** exponent;
    for (const step of [1, 2, 2.5, 5, 10]) {
      const candidate = step * base;
      if (candidate >= value) return integer ? Math.max(4, Math.ceil(candidate)) : candidate;
    }
    return 10 * base;
  }

  function drawChart(id, history, options, span) {
    const canvas = document.getElementById(id);
    const legend = document.querySelector(`[data-legend="${id}"]`);
    const legendKey = options.series.map((s) => s.label).join('|');
    if (legend.dataset.key !== legendKey) {
      legend.dataset.key = legendKey;
      legend.replaceChildren(
        ...options.series.map((series) => {
          const item = document.createElement('li');
          const swatch = document.createElement('span');
          swatch.className = 'swatch';
          swatch.style.borderTopColor = cssColor(series.color);
          swatch.dataset.dash = String(Boolean(series.dash));
          item.append(swatch, document.createTextNode(series.label));
          return item;
        }),
      );
    }

    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(canvas.clientWidth, 200);
    const height = Math.max(canvas.clientHeight, 120);
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const context = canvas.getContext('2d');
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.clearRect(0, 0, width, height);
    canvas.dataset.points = String(history.length);

    const text = cssColor('--muted');
    const grid = cssColor('--grid');
    context.font = '12px system-ui, sans-serif';
    context.fillStyle = text;

    if (!span || history.length === 0) {
      context.fillText('Collecting samples…', 12, height / 2);
      canvas.setAttribute('aria-label', 'No samples yet');
      return;
    }

    const values = options.series.map((series) =>
      history.map((point, i) => series.value(point, i > 0 ? history[i - 1] : null)),
    );
    let top = 0;
    for (const list of values) for (const v of list) top = Math.max(top, v);
    top = niceCeiling(top, options.integer);

    const left = 56;
    const right = 12;
    const upper = 10;
    const lower = 24;
    const plotWidth = width - left - right;
    const plotHeight = height - upper - lower;
    const x = (t) => left + ((t - span.start) / Math.max(span.end - span.start, 1)) * plotWidth;
    const y = (v) => upper + plotHeight - (v / top) * plotHeight;

    // Grid and y labels.
    context.strokeStyle = grid;
    context.lineWidth = 1;
    context.textAlign = 'right';
    context.textBaseline = 'middle';
    const steps = 4;
    for (let i = 0; i <= steps; i += 1) {
      const v = (top * i) / steps;
      const py = Math.round(y(v)) + 0.5;
      context.beginPath();
      context.moveTo(left, py);
      context.lineTo(width - right, py);
      context.stroke();
      if (!options.integer || Number.isInteger(v)) context.fillText(options.format(v), left - 6, py);
    }

    // Time labels: minutes (or seconds) before the last sample.
    context.textAlign = 'center';
    context.textBaseline = 'top';
    const spanSeconds = (span.end - span.start) / 1000;
    const tick = spanSeconds > 300 ? 120 : spanSeconds > 120 ? 60 : 15;
    for (let s = 0; s <= spanSeconds; s += tick) {
      const px = x(span.end - s * 1000);
      const label = s === 0 ? 'now' : s % 60 === 0 ? `−${s / 60}m` : `−${s}s`;
      context.fillText(label, px, height - lower + 6);
    }

    // Series.
    options.series.forEach((series, index) => {
      context.strokeStyle = cssColor(series.color);
      context.lineWidth = series.dash ? 1.5 : 2;
      context.setLineDash(series.dash ? [6, 4] : []);
      context.beginPath();
      history.forEach((point, i) => {
        const px = x(point.unix_ms);
        const py = y(values[index][i]);
        if (i === 0) context.moveTo(px, py);
        else context.lineTo(px, py);
      });
      if (history.length === 1) {
        const px = x(history[0].unix_ms);
        context.moveTo(px - 2, y(values[index][0]));
      }
      context.stroke();
    });
    context.setLineDash([]);

    const minutes = Math.max(1, Math.round(spanSeconds / 60));
    const label = `${document.getElementById(`${id}-title`).textContent} over the last ${minutes} minute${minutes > 1 ? 's' : ''}: ${options.describe(history[history.length - 1])}`;
    canvas.setAttribute('aria-label', label);
  }

  // ---- start -------------------------------------------------------------

  window.addEventListener('popstate', () => {
    select();
    render();
  });
  let resizing = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => {
      if (state.pools.size) render();
    }, 100);
  });
  poll();
})();
