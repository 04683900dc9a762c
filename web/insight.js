// Tandem console: operator insight. The session inspector, what one more
// failure would do (capacity), failover drills, and the history charts
// (uPlot, vendored under web/vendor). It uses the helpers app.js shares
// as window.Tandem.
'use strict';
(() => {
  const T = window.Tandem;
  if (!T) return;
  const { h, $, api, makeForm, notice, errorBox, stateBadge, fmtTime, fmtClock, enc, roleAtLeast, eventItem } = T;

  const ms = (v) => (v < 0 ? 'never' : v < 1000 ? v + ' ms' : (v / 1000).toFixed(1) + ' s');
  const shortID = (id) => (id && id.length > 12 ? id.slice(0, 8) + '…' + id.slice(-4) : id);
  const td = (...kids) => h('td', {}, ...kids);
  const kv = (rows) => h('table', { class: 'kv' }, h('tbody', {}, rows.filter(Boolean).map(([k, v]) => h('tr', {}, h('th', { scope: 'row' }, k), h('td', {}, v)))));

  // sessionIDFrom takes what an operator pastes: an id, a cookie value
  // (id!primary!backup), or a whole cookie ("JSESSIONID=...; Path=/").
  function sessionIDFrom(text) {
    let v = (text || '').trim();
    v = v.replace(/^cookie:\s*/i, '').split(';')[0].trim();
    const eq = v.indexOf('=');
    if (eq >= 0) v = v.slice(eq + 1).trim();
    try { v = decodeURIComponent(v); } catch (e) { /* as typed */ }
    return v;
  }

  // ---------- sessions ----------
  async function pageSessions(main, live, id) {
    document.title = 'Sessions · Tandem';
    const result = h('div', { id: 'session-result', 'aria-live': 'polite' });
    const f = makeForm('session-search', [
      { name: 'q', label: 'Session id or cookie', placeholder: 'e.g. 3f2a…!ms1!ms2, or JSESSIONID=…', hint: 'Paste a session id, a cookie value with its routes, or a whole Cookie header.' },
    ], { q: id || '' }, 'Find', async (v) => {
      const sid = sessionIDFrom(v.q);
      if (!sid) { f.showError({ field: 'q', message: 'Enter a session id or a cookie.' }); return; }
      location.hash = '#/sessions/' + enc(sid);
    });
    const byServer = h('div', { id: 'server-sessions' });
    main.replaceChildren(
      h('h1', {}, 'Sessions'),
      h('div', { class: 'panel' }, h('h2', {}, 'Find a session'), f.form, result),
      h('div', { class: 'panel' }, h('h2', {}, 'Sessions of a server'), byServer));
    serverSessions(byServer, live);
    if (!id) { f.inputs.q.focus(); return; }
    await showSession(result, id, false, live);
  }

  async function showSession(box, id, values, live) {
    notice(box, 'Asking the cluster…');
    let s;
    try { s = await api('GET', '/sessions/' + enc(id) + (values ? '?values=1' : '')); } catch (err) {
      if (live()) errorBox(box, err);
      return;
    }
    if (!live()) return;
    const attrs = s.attributes.length ? h('ul', { class: 'attrs' }, s.attributes.map((a) => h('li', { 'data-attr': a },
      h('code', {}, a), s.values && a in s.values ? [' = ', h('code', { class: 'value' }, JSON.stringify(s.values[a]))] : null))) : h('span', { class: 'muted' }, 'none');
    const showValues = !values && roleAtLeast('admin') && s.attributes.length
      ? h('button', { type: 'button', id: 'session-values', onclick: () => showSession(box, id, true, live) }, 'Show values (audited)') : null;
    const copies = h('table', { id: 'session-copies' }, h('thead', {}, h('tr', {}, ['Server', 'Holds it as', 'Epoch', 'Version'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, (s.copies || []).map((c) => h('tr', { 'data-server': c.server }, td(h('a', { href: '#/servers/' + enc(c.server) }, c.server)), td(c.role === 'owner' ? 'owner' : 'backup copy'), td(String(c.epoch)), td(String(c.version))))));
    const hist = h('ul', { class: 'events', id: 'session-history' }, s.history.length ? s.history.slice().reverse().map(eventItem) : h('li', { class: 'muted' }, 'Nothing has moved it since it was created.'));
    box.replaceChildren(
      h('div', { class: 'session', 'data-owner': s.owner, 'data-backup': s.backup || '', 'data-epoch': s.epoch },
        kv([
          ['Id', h('code', { title: s.id }, shortID(s.id))],
          ['Cluster', h('a', { href: '#/clusters/' + enc(s.cluster) }, s.cluster)],
          ['Owner', h('strong', { id: 'session-owner' }, s.owner)],
          ['Backup', h('span', { id: 'session-backup' }, s.backup || 'none')],
          ['Home', s.home || '—'],
          ['Epoch · version', h('span', { id: 'session-epoch' }, `${s.epoch} · ${s.version}`)],
          ['Size', `${s.bytes} bytes`],
          ['Created', fmtTime(s.created_at)],
          ['Last access', fmtTime(s.last_access)],
          ['Expires', s.expires_at && !s.expires_at.startsWith('0001') ? fmtTime(s.expires_at) : 'never (no idle timeout)'],
          ['Attributes', h('div', {}, attrs, showValues)],
        ]),
        h('h3', {}, 'Copies'), copies,
        h('h3', {}, 'History'), hist));
  }

  async function serverSessions(box, live) {
    let topo;
    try { topo = await api('GET', '/topology'); } catch (err) { errorBox(box, err); return; }
    if (!live()) return;
    const names = []; for (const c of topo.clusters || []) for (const s of c.servers || []) names.push(s.name);
    if (!names.length) { box.replaceChildren(h('p', { class: 'muted' }, 'No servers defined.')); return; }
    const sel = h('select', { id: 'server-sessions-server', class: 'inline' }, names.map((n) => h('option', { value: n }, n)));
    const out = h('div', { class: 'table-wrap' });
    let offset = 0;
    const PAGE = 50;
    const load = async () => {
      notice(out, 'Asking ' + sel.value + '…');
      let page;
      try { page = await api('GET', `/servers/${enc(sel.value)}/sessions?offset=${offset}&limit=${PAGE}`); } catch (err) { if (live()) errorBox(out, err); return; }
      if (!live()) return;
      const prev = h('button', { type: 'button', disabled: offset === 0, onclick: () => { offset = Math.max(0, offset - PAGE); load(); } }, 'Previous');
      const next = h('button', { type: 'button', disabled: offset + PAGE >= page.total, onclick: () => { offset += PAGE; load(); } }, 'Next');
      out.replaceChildren(
        h('p', { class: 'muted' }, `${page.total} sessions owned by ${page.server}; ${page.total ? offset + 1 : 0}–${offset + page.sessions.length} shown.`),
        page.sessions.length ? h('table', {}, h('thead', {}, h('tr', {}, ['Session', 'Backup', 'Epoch', 'Size', 'Last access', 'Attributes'].map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, page.sessions.map((s) => h('tr', {}, td(h('a', { href: '#/sessions/' + enc(s.id), class: 'mono' }, shortID(s.id))), td(s.backup || '—'), td(String(s.epoch)), td(s.bytes + ' B'), td(fmtClock(s.last_access)), td(s.attributes.join(', ')))))) : h('p', { class: 'muted' }, 'None.'),
        h('div', { class: 'row' }, prev, next));
    };
    sel.addEventListener('change', () => { offset = 0; load(); });
    box.replaceChildren(h('div', { class: 'row' }, h('label', { for: 'server-sessions-server' }, 'Server'), sel), out);
    await load();
  }

  // ---------- capacity ----------
  function capacityTable(cap) {
    return h('table', { class: 'capacity', 'data-cluster': cap.cluster },
      h('thead', {}, h('tr', {}, ['Server', 'State', 'Sessions', 'Copies held', 'Backup', 'If it fails'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, cap.servers.map((s) => {
        const f = s.if_it_fails;
        let what = h('span', { class: 'muted' }, '—');
        if (f) {
          what = h('span', { class: f.overflow || f.lost || f.stays_single_copy ? 'bad' : '' },
            f.takes_over ? `${f.takes_over} takes its sessions → ${f.resulting_sessions}${f.max_sessions ? ' of max ' + f.max_sessions : ''}` : 'no running backup',
            f.lost ? `; ${f.lost} lost` : '', `; ${f.single_copy} with one copy${f.stays_single_copy ? ' for good' : ' until copied again'}`);
        }
        return h('tr', { 'data-server': s.name }, td(s.name), td(stateBadge(s.state)), td(String(s.sessions) + (s.max_sessions ? ' / ' + s.max_sessions : '')), td(String(s.backup_sessions)), td(s.backup || '—'), td(what));
      })));
  }
  function capacityWarning(cap, here) {
    if (cap.healthy) return null;
    return h('div', { class: 'warning capacity-warning', role: 'alert', 'data-cluster': cap.cluster },
      h('strong', {}, `Cluster ${cap.cluster}: one more failure would hurt. `),
      h('ul', {}, cap.warnings.map((w) => h('li', {}, w))),
      here ? null : h('a', { href: '#/drills?cluster=' + enc(cap.cluster) }, 'Capacity and drills'));
  }

  // ---------- dashboard panels ----------
  T.dashboard((box, live) => {
    const warnings = h('div', { id: 'capacity-warnings' });
    const failures = h('div', { id: 'failures' });
    const chart = h('div', { class: 'panel', id: 'dashboard-timeline' });
    box.replaceChildren(warnings, failures, chart);
    let timer = null;
    const loadWarnings = async () => {
      try {
        const topo = await api('GET', '/topology');
        const caps = await Promise.all((topo.clusters || []).map((c) => api('GET', `/clusters/${enc(c.name)}/capacity`).catch(() => null)));
        if (!live()) return;
        warnings.replaceChildren(...caps.filter(Boolean).map(capacityWarning).filter(Boolean));
        const fs = await api('GET', '/failures');
        if (!live()) return;
        failures.replaceChildren(...fs.map((f) => h('div', { class: 'warning failure', role: 'status', 'data-server': f.server },
          h('strong', {}, `${f.server} failed`), ` at ${fmtTime(f.time)}${f.count > 1 ? ` (${f.count} failures)` : ''}: ${f.message || ''} `,
          roleAtLeast('operator') ? h('button', { type: 'button', class: 'ack', 'aria-label': 'Acknowledge the failures of ' + f.server, onclick: async (ev) => {
            ev.target.disabled = true;
            try { await api('POST', `/servers/${enc(f.server)}/acknowledge`, {}); } catch (err) { ev.target.disabled = false; return; }
            loadWarnings();
          } }, 'Acknowledge') : null)));
      } catch (err) { /* the topology panel shows the failure */ }
      if (live()) { clearTimeout(timer); timer = setTimeout(loadWarnings, 5000); }
    };
    loadWarnings();
    drawHistory(chart, live, { hours: 24, title: 'Last 24 hours', metric: 'sessions', compact: true });
    return (e) => {
      if (/^(server\.|failover|failback|capacity\.|backup\.)/.test(e.type)) { clearTimeout(timer); timer = setTimeout(loadWarnings, 300); }
      if (/^(failover|failback|server\.down)$/.test(e.type) && chart.redraw) chart.redraw();
    };
  });

  // ---------- history ----------
  const COLORS = ['#2f6fb3', '#d9730d', '#2b9a66', '#b03a8c', '#7a5af5', '#c23b22', '#1b9aaa', '#8a6d3b'];
  const MARK_COLORS = { failover: '#c23b22', failback: '#2b9a66', 'server.down': '#c23b22', 'server.up': '#2b9a66', 'drill.started': '#7a5af5', 'drill.completed': '#7a5af5', 'drill.failed': '#c23b22', 'capacity.warning': '#d9730d', 'session.lost': '#000' };

  // drawHistory draws one metric of every server over the last opt.hours,
  // with the marks (failovers, failbacks, ...) on the same time axis.
  async function drawHistory(box, live, opt) {
    const metric = opt.metric || 'sessions';
    const labels = { sessions: 'Sessions per server', rps: 'Requests per second', lag_ms: 'Replication lag (ms)', backup_sessions: 'Copies held' };
    const plotBox = h('div', { class: 'chart', id: 'chart-' + metric + (opt.compact ? '-dash' : '') });
    const marksList = h('ul', { class: 'marks', id: 'marks-' + metric + (opt.compact ? '-dash' : '') });
    box.replaceChildren(h('div', { class: 'row' }, h('h2', {}, opt.title || labels[metric]), h('span', { class: 'spacer' }), opt.compact ? h('a', { href: '#/history' }, 'History') : null), plotBox,
      h('details', { class: 'marks-wrap' }, h('summary', {}, 'Failovers and failbacks on this chart'), marksList));
    let plot = null;
    const load = async () => {
      const to = new Date(); const from = new Date(to.getTime() - opt.hours * 3600e3);
      const q = `/series?from=${enc(from.toISOString().replace(/\.\d+Z$/, 'Z'))}&to=${enc(to.toISOString().replace(/\.\d+Z$/, 'Z'))}` + (opt.cluster ? '&cluster=' + enc(opt.cluster) : '');
      let v;
      try { v = await api('GET', q); } catch (err) { if (live()) errorBox(plotBox, err); return; }
      if (!live()) return;
      const servers = Object.keys(v.series).sort();
      const xsSet = new Set();
      for (const s of servers) for (const p of v.series[s]) xsSet.add(Date.parse(p.t) / 1000);
      const xs = Array.from(xsSet).sort((a, b) => a - b);
      const idx = new Map(xs.map((x, i) => [x, i]));
      const data = [xs];
      for (const s of servers) {
        const ys = new Array(xs.length).fill(null);
        for (const p of v.series[s]) ys[idx.get(Date.parse(p.t) / 1000)] = p.state === 'running' || p.state === 'suspect' ? p[metric] : null;
        data.push(ys);
      }
      const marks = (v.marks || []).filter((m) => /^(failover|failback|server\.down|drill\.|session\.lost|capacity\.)/.test(m.type));
      marksList.replaceChildren(...(marks.length ? marks.slice().reverse().map((m) => { const li = eventItem(m); return li; }) : [h('li', { class: 'muted' }, 'None in this period.')]));
      plotBox.dataset.points = String(xs.length);
      plotBox.dataset.series = servers.join(',');
      plotBox.dataset.marks = String(marks.length);
      if (!xs.length) { plotBox.replaceChildren(h('p', { class: 'muted empty' }, 'No history yet: servers are sampled every few seconds.')); plot = null; return; }
      if (typeof window.uPlot !== 'function') { plotBox.replaceChildren(h('p', { class: 'muted' }, 'Charting library not loaded.')); return; }
      const width = Math.max(320, plotBox.clientWidth || box.clientWidth || 800);
      // A domain younger than the period: start near its first sample.
      const t0 = Math.max(from.getTime() / 1000, xs[0] - (to.getTime() / 1000 - xs[0]) * 0.05);
      const o = {
        width, height: opt.compact ? 180 : 240,
        scales: { x: { time: true, range: [t0, to.getTime() / 1000] } },
        series: [{}].concat(servers.map((s, i) => ({ label: s, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: false, points: { show: false } }))),
        axes: [{}, { size: 50 }],
        legend: { live: !opt.compact },
        hooks: {
          draw: [(u) => {
            const c = u.ctx; c.save(); c.lineWidth = 1.5 * devicePixelRatio;
            for (const m of marks) {
              const x = u.valToPos(Date.parse(m.time) / 1000, 'x', true);
              if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
              c.strokeStyle = MARK_COLORS[m.type] || '#555';
              c.setLineDash(m.type === 'failback' || m.type === 'server.up' ? [4, 3] : []);
              c.beginPath(); c.moveTo(x, u.bbox.top); c.lineTo(x, u.bbox.top + u.bbox.height); c.stroke();
            }
            c.restore();
          }],
        },
      };
      if (plot) { plot.destroy(); plot = null; }
      plotBox.replaceChildren();
      plot = new window.uPlot(o, data, plotBox);
      plotBox.querySelector('canvas')?.setAttribute('aria-label', `${labels[metric]}: ${servers.join(', ')}; ${marks.length} failover marks`);
      plotBox.querySelector('canvas')?.setAttribute('role', 'img');
    };
    box.redraw = load;
    await load();
    const t = setInterval(() => { if (!live()) { clearInterval(t); if (plot) plot.destroy(); return; } load(); }, 15000);
  }

  async function pageHistory(main, live) {
    document.title = 'History · Tandem';
    const topo = await api('GET', '/topology');
    if (!live()) return;
    const params = new URLSearchParams(location.hash.split('?')[1] || '');
    const hours = Number(params.get('hours')) || 1;
    const cluster = params.get('cluster') || '';
    const ranges = [[1, '1 hour'], [6, '6 hours'], [24, '24 hours'], [168, '7 days'], [720, '30 days']];
    const range = h('select', { id: 'history-range', class: 'inline' }, ranges.map(([v, l]) => h('option', { value: v, selected: v === hours }, l)));
    const cl = h('select', { id: 'history-cluster', class: 'inline' }, h('option', { value: '' }, 'all clusters'), (topo.clusters || []).map((c) => h('option', { value: c.name, selected: c.name === cluster }, c.name)));
    const go = () => { location.hash = `#/history?hours=${range.value}&cluster=${enc(cl.value)}`; };
    range.addEventListener('change', go); cl.addEventListener('change', go);
    const panels = ['sessions', 'rps', 'lag_ms'].map((m) => h('div', { class: 'panel', id: 'history-' + m }));
    main.replaceChildren(
      h('div', { class: 'row' }, h('h1', {}, 'History'), h('span', { class: 'spacer' }),
        h('label', { for: 'history-cluster' }, 'Cluster'), cl, h('label', { for: 'history-range' }, 'Period'), range),
      h('p', { class: 'muted' }, 'Sampled from the heartbeats every few seconds (--history-every); 24 hours kept at full resolution, 30 days as 5-minute averages. Red lines: failovers and servers down; green dashed: failbacks and servers up.'),
      ...panels);
    await Promise.all(['sessions', 'rps', 'lag_ms'].map((m, i) => drawHistory(panels[i], live, { hours, metric: m, cluster })));
  }

  // ---------- drills ----------
  async function pageDrills(main, live, id) {
    if (id) { await pageDrill(main, live, id); return; }
    document.title = 'Capacity and drills · Tandem';
    const topo = await api('GET', '/topology');
    if (!live()) return;
    const clusters = (topo.clusters || []).map((c) => c.name);
    if (!clusters.length) { main.replaceChildren(h('h1', {}, 'Capacity and drills'), h('p', { class: 'muted' }, 'No clusters yet.')); return; }
    const params = new URLSearchParams(location.hash.split('?')[1] || '');
    const cluster = clusters.includes(params.get('cluster')) ? params.get('cluster') : clusters[0];
    const sel = h('select', { id: 'drill-cluster', class: 'inline' }, clusters.map((c) => h('option', { value: c, selected: c === cluster }, c)));
    sel.addEventListener('change', () => { location.hash = '#/drills?cluster=' + enc(sel.value); });
    const capBox = h('div', { id: 'capacity' });
    const listBox = h('div', { id: 'drill-list' });
    const servers = ((topo.clusters || []).find((c) => c.name === cluster) || { servers: [] }).servers.map((s) => s.name);
    let form = null;
    if (roleAtLeast('admin')) {
      form = makeForm('drill', [
        { name: 'server', label: 'Server', type: 'select', options: servers },
        { name: 'fault', label: 'Fault', type: 'select', options: [['kill', 'kill: SIGKILL, the node manager restarts it'], ['freeze', 'freeze: SIGSTOP for some seconds, then SIGCONT']] },
        { name: 'seconds', label: 'Seconds (freeze)', type: 'number', value: 5, min: 1, hint: '1 to 30: longer than the heartbeat timeout to see a takeover.' },
      ], null, 'Start the drill', async (v) => {
        const d = await api('POST', `/clusters/${enc(cluster)}/drills`, { server: v.server, fault: v.fault, seconds: v.fault === 'freeze' ? v.seconds : 0 });
        location.hash = '#/drills/' + d.id;
      });
    }
    main.replaceChildren(
      h('div', { class: 'row' }, h('h1', {}, 'Capacity and drills'), h('span', { class: 'spacer' }), h('label', { for: 'drill-cluster' }, 'Cluster'), sel),
      h('div', { class: 'panel' }, h('h2', {}, 'Can the cluster lose a server now?'), capBox),
      h('div', { class: 'panel' }, h('h2', {}, 'Failover drill'),
        h('p', { class: 'muted' }, 'Applies a real fault to one server under the live traffic and measures detection, takeover, recovery and failback; no session may be lost. Refused while the cluster cannot take a failure.'),
        form ? form.form : h('p', { class: 'muted' }, 'Starting a drill needs the admin role.')),
      h('div', { class: 'panel' }, h('h2', {}, 'Drill history'), listBox));
    const loadCap = async () => {
      try {
        const cap = await api('GET', `/clusters/${enc(cluster)}/capacity`);
        if (!live()) return;
        capBox.replaceChildren(...[cap.healthy ? h('div', { class: 'notice ok', id: 'capacity-ok' }, `Yes: any one server of ${cluster} can fail without overflowing another or losing a copy for good.`) : capacityWarning(cap, true),
          cap.unprotected ? h('p', {}, `${cap.unprotected} sessions have one copy right now.`) : null, capacityTable(cap)].filter(Boolean));
      } catch (err) { if (live()) errorBox(capBox, err); }
    };
    const loadList = async () => {
      try {
        const ds = await api('GET', `/clusters/${enc(cluster)}/drills`);
        if (!live()) return;
        listBox.replaceChildren(ds.length ? drillTable(ds) : h('p', { class: 'muted' }, 'No drills yet.'));
      } catch (err) { if (live()) errorBox(listBox, err); }
    };
    await Promise.all([loadCap(), loadList()]);
    T.onEvent((e) => { if (e.cluster === cluster) { if (/^drill\./.test(e.type)) loadList(); if (/^(server\.|failover|failback|capacity\.|backup\.)/.test(e.type)) loadCap(); } });
  }
  function drillTable(ds) {
    return h('table', { id: 'drills' }, h('thead', {}, h('tr', {}, ['Drill', 'Server', 'Fault', 'State', 'Verdict', 'Started'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, ds.map((d) => h('tr', { 'data-id': d.id, 'data-state': d.state }, td(h('a', { href: '#/drills/' + d.id }, '#' + d.id)), td(d.server), td(d.fault + (d.fault === 'freeze' ? ` ${d.seconds}s` : '')),
        td(h('span', { class: 'drill-state ' + d.state }, d.state)), td(d.report.verdict || d.phase), td(fmtTime(d.started_at))))));
  }
  async function pageDrill(main, live, id) {
    document.title = `Drill ${id} · Tandem`;
    const box = h('div', { id: 'drill' });
    main.replaceChildren(h('p', {}, h('a', { href: '#/drills' }, '← Capacity and drills')), box);
    const load = async () => {
      let d;
      try { d = await api('GET', '/drills/' + enc(id)); } catch (err) { if (live()) errorBox(box, err); return; }
      if (!live()) return;
      const r = d.report;
      box.replaceChildren(
        h('div', { class: 'panel', 'data-state': d.state },
          h('div', { class: 'row' }, h('h1', {}, `Drill #${d.id}: ${d.fault} ${d.server}`), h('span', { class: 'drill-state ' + d.state, id: 'drill-state' }, d.state)),
          d.state === 'running' ? h('p', { role: 'status' }, h('progress', { 'aria-label': 'Drill in progress' }), ' ', d.phase) : h('p', { id: 'drill-verdict', class: d.state === 'passed' ? 'ok' : 'bad' }, r.verdict),
          kv([
            ['Cluster', d.cluster], ['Started by', d.actor], ['Started', fmtTime(d.started_at)], ['Finished', d.finished_at ? fmtTime(d.finished_at) : '—'],
            ['Its sessions then', `${r.server_sessions} (backup: ${r.takes_over || 'none'})`],
            ['Detected after', h('span', { id: 'drill-detection' }, ms(r.detection_ms))],
            ['Taken over after', ms(r.takeover_ms) + (r.taken_over ? ` (${r.taken_over} sessions)` : '')],
            ['Back after', ms(r.recovery_ms)],
            ['Failed back after', ms(r.failback_ms) + (r.failed_back ? ` (${r.failed_back} sessions)` : '')],
            ['Requests retried by the web servers', String(r.retried)],
            ['Requests failed', h('span', { id: 'drill-failed' }, String(r.failed))],
            ['Sessions lost', h('strong', { id: 'drill-lost', class: r.sessions_lost ? 'bad' : 'ok' }, String(r.sessions_lost))],
            ['Cluster sessions before · after', `${r.sessions_before} · ${r.sessions_after}`],
          ])),
        h('div', { class: 'panel' }, h('h2', {}, 'What the cluster recorded'), h('ul', { class: 'events' }, r.events.length ? r.events.slice().reverse().map(eventItem) : h('li', { class: 'muted' }, 'Nothing yet.'))));
      if (d.state === 'running') setTimeout(() => { if (live()) load(); }, 1000);
    };
    await load();
  }

  T.page('sessions', 'Sessions', pageSessions);
  T.page('history', 'History', pageHistory);
  T.page('drills', 'Drills', pageDrills);
})();
