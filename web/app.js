// Tandem console: vanilla JS, no build step. Talks only to /api/v1 and the
// event stream. Every element is built with h() (no innerHTML of data).
'use strict';
(() => {
  const S = {
    me: null,       // {name, role}
    csrf: '',
    lastID: 0,      // last event ID seen on the stream (resume point)
    recent: [],     // newest first, capped
    gen: 0,         // page generation: stale async renders stop
    onEvent: null,  // current page's live-event handler
    onMark: null,   // current page's reconnect-mark handler
  };
  const RECENT_MAX = 200;
  const EVENT_TYPES = ['server.up', 'server.down', 'server.suspect', 'failover', 'failback', 'backup.changed',
    'session.lost', 'replication.degraded', 'config.pushed', 'config.applied', 'config.failed',
    'rolling.started', 'rolling.step', 'rolling.completed', 'rolling.failed', 'rolling.resumed', 'process.started', 'process.exited',
    'app.started', 'app.exited', 'app.unhealthy', 'app.fetch_failed',
    'deploy.started', 'deploy.step', 'deploy.completed', 'deploy.failed', 'deploy.resumed',
    'capacity.warning', 'drill.started', 'drill.completed', 'drill.failed', 'auth.locked'];
  const TOPO_TYPES = /^(server\.|failover|failback|backup\.|config\.|rolling\.|process\.|app\.|deploy\.)/;

  // ---------- DOM ----------
  function h(tag, props, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'value') el.value = v;
      else if (k === 'checked' || k === 'disabled' || k === 'selected') el[k] = !!v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const kid of kids.flat(Infinity)) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }
  const $ = (sel, root) => (root || document).querySelector(sel);
  const fmtTime = (t) => { const d = new Date(t); return isNaN(d) ? '' : d.toLocaleString(); };
  const fmtClock = (t) => { const d = new Date(t); return isNaN(d) ? '' : d.toLocaleTimeString(); };
  const enc = encodeURIComponent;
  const list = (v, key) => Array.isArray(v) ? v : (v && Array.isArray(v[key]) ? v[key] : []);

  // ---------- API ----------
  class APIError extends Error {
    constructor(status, code, message, field) { super(message); this.status = status; this.code = code; this.field = field || ''; }
  }
  async function api(method, path, body) {
    const opt = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin' };
    if (body !== undefined) { opt.headers['Content-Type'] = 'application/json'; opt.body = JSON.stringify(body); }
    if (method !== 'GET' && S.csrf) opt.headers['X-CSRF-Token'] = S.csrf;
    let res;
    try { res = await fetch('/api/v1' + path, opt); } catch (e) {
      throw new APIError(0, 'network', 'Cannot reach the admin server.', '');
    }
    const text = await res.text();
    let data = null;
    if (text) { try { data = JSON.parse(text); } catch (e) { data = null; } }
    if (!res.ok) {
      const e = (data && data.error) || {};
      if (res.status === 401 && path !== '/login' && path !== '/me' && S.me) { loggedOut('Your session has ended. Please log in again.'); }
      throw new APIError(res.status, e.code || 'http_' + res.status, e.message || res.statusText || 'Request failed', e.field);
    }
    return data;
  }

  // ---------- forms ----------
  // defs: [{name, label, type: text|number|select|checkbox|password, options, hint, required, readonly, placeholder}]
  function makeForm(id, defs, values, submitLabel, onSubmit, extra) {
    const inputs = {};
    const errs = {};
    const formErr = h('div', { class: 'form-error', role: 'alert', hidden: true });
    const rows = [];
    for (const d of defs) {
      const fid = `${id}-${d.name.replace(/\./g, '-')}`;
      const v = values ? getPath(values, d.name) : undefined;
      let input;
      if (d.type === 'select') {
        input = h('select', { id: fid, name: d.name, disabled: d.readonly },
          (d.options || []).map((o) => { const [val, lab] = Array.isArray(o) ? o : [o, o]; return h('option', { value: val, selected: String(v ?? d.value ?? '') === String(val) }, lab); }));
      } else if (d.type === 'checkbox') {
        input = h('input', { id: fid, name: d.name, type: 'checkbox', checked: v ?? d.value });
      } else if (d.type === 'textarea') {
        const text = d.format ? d.format(v) : (v ?? d.value ?? '');
        input = h('textarea', { id: fid, name: d.name, rows: d.rows || 3, placeholder: d.placeholder, spellcheck: 'false' });
        input.value = text;
      } else {
        input = h('input', { id: fid, name: d.name, type: d.type || 'text', value: v ?? d.value ?? '', required: d.required, readonly: d.readonly, placeholder: d.placeholder, autocomplete: d.autocomplete || 'off', min: d.min, inputmode: d.type === 'number' ? 'numeric' : undefined });
      }
      inputs[d.name] = input;
      errs[d.name] = h('div', { class: 'field-error', id: fid + '-error', 'data-field': d.name, hidden: true });
      input.setAttribute('aria-describedby', fid + '-error');
      rows.push(h('label', { for: fid }, d.label), h('div', {}, input, d.hint ? h('div', { class: 'hint' }, d.hint) : null, errs[d.name]));
    }
    const submit = h('button', { type: 'submit', class: 'primary', id: id + '-submit' }, submitLabel);
    const form = h('form', { class: 'fields', id, novalidate: true }, rows, h('div', { class: 'actions' }, submit, extra || null));
    const clear = () => {
      formErr.hidden = true; formErr.textContent = '';
      for (const n in errs) { errs[n].hidden = true; errs[n].textContent = ''; inputs[n].classList.remove('invalid'); inputs[n].removeAttribute('aria-invalid'); }
    };
    const read = () => {
      const out = {};
      for (const d of defs) {
        if (d.readonly && d.skipReadonly) continue;
        const el = inputs[d.name];
        let v;
        if (d.type === 'checkbox') v = el.checked;
        else if (d.type === 'number') v = el.value === '' ? 0 : Number(el.value);
        else if (d.parse) v = d.parse(el.value);
        else v = el.value.trim();
        setPath(out, d.name, v);
      }
      return out;
    };
    const showError = (err) => {
      const name = matchField(err.field, Object.keys(inputs));
      if (name) {
        errs[name].textContent = err.message; errs[name].hidden = false;
        inputs[name].classList.add('invalid'); inputs[name].setAttribute('aria-invalid', 'true');
        inputs[name].focus();
      } else {
        formErr.textContent = err.message + (err.field ? ` (${err.field})` : ''); formErr.hidden = false;
      }
    };
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      clear();
      submit.disabled = true;
      try { await onSubmit(read()); } catch (err) {
        if (err instanceof APIError) showError(err); else { formErr.textContent = String(err.message || err); formErr.hidden = false; }
      } finally { submit.disabled = false; }
    });
    return { form: h('div', {}, formErr, form), inputs, showError, clear };
  }
  function matchField(field, names) {
    if (!field) return '';
    if (names.includes(field)) return field;
    // The API may prefix the field (e.g. "session_config.cookie.domain").
    return names.find((n) => field.endsWith('.' + n)) || names.find((n) => n.endsWith('.' + field)) || '';
  }
  function getPath(o, p) { return p.split('.').reduce((a, k) => (a == null ? undefined : a[k]), o); }
  function setPath(o, p, v) {
    const ks = p.split('.'); let a = o;
    for (let i = 0; i < ks.length - 1; i++) { a[ks[i]] = a[ks[i]] || {}; a = a[ks[i]]; }
    a[ks[ks.length - 1]] = v;
  }
  function twoStep(label, confirmLabel, action) {
    let armed = false; let t = null;
    const b = h('button', { type: 'button', class: 'danger', onclick: async () => {
      if (!armed) { armed = true; b.textContent = confirmLabel; t = setTimeout(() => { armed = false; b.textContent = label; }, 5000); return; }
      clearTimeout(t); armed = false; b.textContent = label; await action(b);
    } }, label);
    return b;
  }
  function notice(el, text, kind) { el.replaceChildren(h('div', { class: 'notice' + (kind ? ' ' + kind : ''), role: 'status' }, text)); }
  function errorBox(el, err) { el.replaceChildren(h('div', { class: 'form-error', role: 'alert' }, err.message || String(err))); }
  function stateBadge(st) { const s = st || 'stopped'; return h('span', { class: 'state ' + s, 'data-state': s }, s); }

  // ---------- event stream ----------
  const stream = {
    ws: null, retry: 0, timer: null, watchdog: null, everOpen: false, wanted: false, status: 'off',
    start() { this.wanted = true; if (!this.ws) this.connect(); },
    stop() {
      this.wanted = false; this.everOpen = false; clearTimeout(this.timer); clearTimeout(this.watchdog);
      if (this.ws) { const ws = this.ws; this.ws = null; ws.close(1000, 'logout'); }
      this.set('off', '');
    },
    connect() {
      const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
      const q = S.lastID > 0 ? '?since=' + S.lastID : '';
      const ws = new WebSocket(proto + '//' + location.host + '/api/v1/events/stream' + q);
      this.ws = ws;
      ws.onopen = () => {
        if (this.ws !== ws) return;
        const again = this.everOpen; this.everOpen = true; this.retry = 0; this.kick();
        this.set('on', 'live');
        if (again) {
          const text = `Stream reconnected at ${new Date().toLocaleTimeString()}; resumed after event #${S.lastID}.`;
          S.recent.unshift({ mark: true, text });
          if (S.onMark) S.onMark(text);
          refreshTopoSoon();
        }
      };
      ws.onmessage = (m) => {
        if (this.ws !== ws) return;
        this.kick();
        let f; try { f = JSON.parse(m.data); } catch (e) { return; }
        // The server never repeats an event on one connection, and its
        // heartbeat names the resume point (lower than ours if the admin
        // server's database was replaced).
        if (f.type === 'heartbeat') { S.lastID = f.id; return; }
        if (f.id) S.lastID = f.id;
        S.recent.unshift(f); if (S.recent.length > RECENT_MAX) S.recent.length = RECENT_MAX;
        if (S.onEvent) S.onEvent(f);
        if (TOPO_TYPES.test(f.type)) refreshTopoSoon();
      };
      ws.onclose = (ev) => {
        if (this.ws !== ws) return;
        this.ws = null; clearTimeout(this.watchdog);
        if (!this.wanted) return;
        const delay = Math.min(10000, 400 * 2 ** this.retry++);
        if (this.retry >= 3) {
          // Repeated failures: maybe the cookie session ended (the handshake
          // gets 401, which WebSocket does not report). Ask.
          api('GET', '/me').catch((err) => { if (err.status === 401 && S.me) loggedOut('Your session has ended. Please log in again.'); });
        }
        this.set('off', ev.code === 1008 ? 'resuming…' : 'reconnecting…');
        this.timer = setTimeout(() => { if (this.wanted) this.connect(); }, ev.code === 1008 ? 0 : delay);
      };
    },
    // The server sends a heartbeat on quiet streams (~15 s); silence much
    // longer than that means the connection is dead even if TCP has not noticed.
    kick() { clearTimeout(this.watchdog); this.watchdog = setTimeout(() => { if (this.ws) this.ws.close(4000, 'no heartbeat'); }, 40000); },
    set(status, text) {
      this.status = status;
      const el = $('#live');
      if (el) { el.className = 'live ' + status; el.textContent = text || (status === 'on' ? 'live' : 'offline'); el.title = 'Event stream: ' + (text || status); }
    },
  };

  let topoTimer = null;
  let topoRefresh = null; // set by the dashboard
  function refreshTopoSoon() {
    if (!topoRefresh || topoTimer) return;
    topoTimer = setTimeout(() => { topoTimer = null; if (topoRefresh) topoRefresh(); }, 150);
  }

  // ---------- shell, routing ----------
  const app = () => $('#app');
  function routeOf() {
    // A page's options follow a '?' (#/history?hours=24); they are not path parts.
    const parts = (location.hash.replace(/^#\/?/, '').split('?')[0] || '').split('/').filter(Boolean).map(decodeURIComponent);
    return parts;
  }
  function shell() {
    const nav = [['#/', 'Dashboard', ''], ['#/clusters', 'Clusters', 'clusters'], ['#/servers', 'Servers', 'servers'], ['#/applications', 'Applications', 'applications'], ['#/events', 'Events', 'events']]
      .concat(extraPages.filter((p) => p.label && (!p.role || roleAtLeast(p.role))).map((p) => ['#/' + p.key, p.label, p.key]));
    const top = routeOf()[0] || '';
    return h('div', {},
      h('header', { class: 'topbar' },
        h('a', { class: 'brand', href: '#/' }, h('img', { src: '/static/favicon.svg', alt: '' }), 'Tandem'),
        h('nav', { class: 'nav', 'aria-label': 'Main' }, nav.map(([href, label, key]) => h('a', { href, class: top === key ? 'active' : '', 'aria-current': top === key ? 'page' : undefined }, label))),
        h('div', { class: 'who' },
          h('span', { id: 'live', class: 'live ' + stream.status }, stream.status === 'on' ? 'live' : 'connecting…'),
          h('span', { id: 'whoami' }, `${S.me.name} (${S.me.role})`),
          h('button', { type: 'button', id: 'logout', onclick: logout }, 'Log out'))),
      h('main', { id: 'main' }));
  }
  async function render() {
    const gen = ++S.gen;
    S.onEvent = null; S.onMark = null; topoRefresh = null;
    if (!S.me) { renderLogin(); return; }
    app().replaceChildren(shell());
    const main = $('#main');
    const [page, name] = routeOf();
    const live = () => gen === S.gen;
    try {
      if (!page) await pageDashboard(main, live);
      else if (page === 'clusters' && name) await pageCluster(main, live, name);
      else if (page === 'clusters') await pageClusters(main, live);
      else if (page === 'servers' && name) await pageServer(main, live, name);
      else if (page === 'servers') await pageServers(main, live);
      else if (page === 'applications' && name) await pageApplication(main, live, name);
      else if (page === 'applications') await pageApplications(main, live);
      else if (page === 'events') await pageEvents(main, live);
      else if (extraPages.some((p) => p.key === page)) await extraPages.find((p) => p.key === page).render(main, live, name);
      else main.replaceChildren(h('div', { class: 'panel' }, h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '#/' }, 'Back to the dashboard'))));
    } catch (err) {
      if (!live()) return;
      if (err instanceof APIError && err.status === 401) return;
      main.replaceChildren(h('div', { class: 'panel' }, h('h1', {}, 'Could not load this page'), h('div', { class: 'form-error', role: 'alert' }, err.message || String(err))));
    }
  }

  // ---------- login / logout ----------
  function renderLogin(message) {
    document.title = 'Log in · Tandem';
    const f = makeForm('login', [
      { name: 'name', label: 'User name', required: true, autocomplete: 'username' },
      { name: 'password', label: 'Password', type: 'password', required: true, autocomplete: 'current-password' },
    ], null, 'Log in', async (v) => {
      const me = await api('POST', '/login', { name: v.name, password: v.password });
      S.me = { name: me.name, role: me.role }; S.csrf = me.csrf_token || '';
      await afterLogin();
    });
    app().replaceChildren(h('div', { class: 'login panel' },
      h('div', { class: 'row' }, h('img', { src: '/static/favicon.svg', alt: '', width: 28, height: 28 }), h('h1', { style: undefined }, 'Tandem console')),
      h('p', { class: 'muted' }, 'Domain administration for clustered application servers.'),
      message ? h('div', { class: 'notice', role: 'status' }, message) : null,
      f.form));
    f.inputs.name.focus();
  }
  async function afterLogin() {
    try {
      const ev = list(await api('GET', '/events?limit=1'), 'events');
      if (ev.length && ev[0].id > S.lastID) S.lastID = ev[0].id;
    } catch (e) { /* the stream starts live-only */ }
    stream.start();
    if (!location.hash || location.hash === '#/login') history.replaceState(null, '', '#/');
    await render();
  }
  function loggedOut(message) {
    S.me = null; S.csrf = ''; stream.stop(); S.recent = [];
    S.gen++; S.onEvent = null; S.onMark = null; topoRefresh = null;
    renderLogin(message);
  }
  async function logout() {
    try { await api('POST', '/logout', {}); } catch (e) { /* the session is gone either way */ }
    loggedOut('You have logged out.');
  }

  // ---------- dashboard ----------
  async function pageDashboard(main, live) {
    document.title = 'Dashboard · Tandem';
    const body = h('div', { id: 'topology' });
    const updated = h('span', { class: 'muted', id: 'topo-updated' });
    const recent = h('ul', { class: 'events', id: 'recent-events' });
    const insight = h('div', { id: 'dashboard-insight' });
    main.replaceChildren(
      h('div', { class: 'row' }, h('h1', {}, 'Domain'), h('span', { class: 'spacer' }), updated),
      insight,
      body,
      h('div', { class: 'panel' }, h('div', { class: 'row' }, h('h2', {}, 'Recent events'), h('span', { class: 'spacer' }), h('a', { href: '#/events' }, 'All events')), recent));
    const drawRecent = () => recent.replaceChildren(...(S.recent.length ? S.recent.slice(0, 12).map((e) => eventItem(e)) : [h('li', { class: 'muted' }, 'No events since you opened the console.')]));
    drawRecent();
    let inflight = false; let again = false;
    const load = async () => {
      if (inflight) { again = true; return; }
      inflight = true;
      try {
        const topo = await api('GET', '/topology');
        if (!live()) return;
        drawTopology(body, topo);
        updated.textContent = 'Updated ' + new Date().toLocaleTimeString();
      } catch (err) {
        if (live()) updated.textContent = 'Update failed: ' + err.message;
      } finally {
        inflight = false;
        if (again && live()) { again = false; load(); }
      }
    };
    topoRefresh = load;
    // Panels other console files add (capacity warnings, failures, the
    // timeline) draw into #dashboard-insight and follow the events too.
    const panelEvents = dashboardPanels.map((fn) => fn(insight, live)).filter((f) => typeof f === 'function');
    S.onEvent = (e) => { drawRecent(); const li = recent.firstChild; if (li) li.classList.add('fresh'); panelEvents.forEach((f) => f(e)); };
    S.onMark = () => drawRecent();
    await load();
  }
  function drawTopology(body, topo) {
    const clusters = list(topo, 'clusters');
    if (!clusters.length) {
      body.replaceChildren(h('div', { class: 'panel' }, h('h2', {}, 'No clusters yet'), h('p', {}, 'Create a cluster, then define its servers. ', h('a', { href: '#/clusters' }, 'Create a cluster'))));
      return;
    }
    const nms = list(topo, 'node_managers');
    const nmPanel = nms.length ? h('section', { class: 'panel', id: 'node-managers' }, h('h2', {}, 'Node managers'),
      h('div', { class: 'table-wrap' }, h('table', {}, h('thead', {}, h('tr', {}, ['Name', 'State', 'Listen', 'PID', 'Host'].map((t) => h('th', {}, t)))),
        h('tbody', {}, nms.map((n) => h('tr', { 'data-node-manager': n.name }, h('td', {}, n.name), h('td', {}, stateBadge(n.state)), h('td', { class: 'mono' }, n.listen || ''), h('td', {}, n.pid ? String(n.pid) : '—'), h('td', { 'data-host': n.host || '' }, hostText(n.host_info)))))))) : null;
    body.replaceChildren(...clusters.map((c) => {
      const servers = list(c.servers, 'servers');
      const sessions = servers.reduce((a, s) => a + (s.sessions || 0), 0);
      const running = servers.filter((s) => s.state === 'running').length;
      const out = h('div', { class: 'push-out' });
      const push = h('button', { type: 'button', class: 'primary', 'data-push': c.name, onclick: () => doPush(c.name, push, out) }, 'Push config');
      return h('section', { class: 'panel cluster', 'data-cluster': c.name },
        h('div', { class: 'cluster-head' },
          h('h2', {}, h('a', { href: '#/clusters/' + enc(c.name) }, c.name)),
          h('span', { class: 'badge' }, 'failover: ' + (c.failover_mode || '?')),
          h('span', { class: 'badge' }, 'backup: ' + (c.backup_policy || '?')),
          h('span', { class: 'muted' }, `${running}/${servers.length} running · ${sessions} sessions`),
          h('span', { class: 'spacer' }), push),
        c.description ? h('p', { class: 'muted' }, c.description) : null,
        servers.length ? h('div', { class: 'servers' }, servers.map(serverTile)) : h('p', { class: 'muted' }, 'No servers in this cluster. ', h('a', { href: '#/servers' }, 'Add a server')),
        servers.length ? h('div', { class: 'ring', 'aria-label': 'Backup pairs' }, 'Backups: ', servers.map((s, i) => [i ? ' · ' : '', h('span', { class: 'arrow' }, `${s.name} → ${s.backup || '—'}`)])) : null,
        byHost(servers), webServers(c), out);
    }), ...(nmPanel ? [nmPanel] : []));
  }
  function hostText(hi) {
    if (!hi) return '—';
    const gib = hi.memory_bytes ? ` · ${(hi.memory_bytes / 2 ** 30).toFixed(1)} GiB` : '';
    const addrs = (hi.addresses || []).length ? ` · ${hi.addresses.join(', ')}` : '';
    return `${hi.name || '?'} · ${hi.cpus || '?'} CPUs${gib}${addrs}`;
  }
  // The cluster's servers grouped by the machine their node manager runs on.
  function byHost(servers) {
    const groups = new Map();
    for (const s of servers) {
      const k = s.host || '';
      if (!groups.has(k)) groups.set(k, []);
      groups.get(k).push(s.name);
    }
    if (groups.size === 1 && groups.has('')) return null;
    return h('p', { class: 'muted hosts', 'aria-label': 'Servers by host' }, 'Hosts: ', [...groups].map(([host, names], i) => [i ? ' · ' : '', h('span', { 'data-host': host }, `${host || 'unknown host'}: ${names.join(', ')}`)]));
  }
  function webServers(c) {
    const ws = list(c.webservers, 'webservers');
    if (!ws.length) return null;
    return h('p', { class: 'muted' }, 'Web servers: ', ws.map((w, i) => [i ? ', ' : '', `${w.name} (${w.listen || ''}${w.state ? ', ' + w.state : ''})`]));
  }
  function serverTile(s) {
    const st = s.state || 'stopped';
    const desired = s.desired_revision ?? 0; const applied = s.applied_revision ?? 0;
    const sync = applied === desired && desired > 0 ? h('span', { class: 'badge ok' }, 'in sync') : h('span', { class: 'badge warn' }, desired ? 'pending' : 'no config');
    return h('div', { class: 'srv ' + st, 'data-server': s.name, 'data-state': st },
      h('div', { class: 'row' }, h('a', { class: 'name', href: '#/servers/' + enc(s.name) }, s.name), h('span', { class: 'spacer' }), stateBadge(st)),
      h('dl', {},
        h('dt', {}, 'Sessions'), h('dd', { class: 'sessions' }, String(s.sessions ?? 0)),
        h('dt', {}, 'Backup'), h('dd', { class: 'arrow' }, s.backup ? `${s.name} → ${s.backup}` : '—'),
        h('dt', {}, 'Listen'), h('dd', { class: 'mono' }, s.listen || ''),
        h('dt', {}, 'PID'), h('dd', {}, s.pid ? String(s.pid) : '—'),
        h('dt', {}, 'Application'), h('dd', { class: 'app' }, appCell(s)),
        h('dt', {}, 'Revision'), h('dd', {}, `${applied} / ${desired} `, sync)));
  }
  // appCell shows a server's application (the cluster's) and the state of
  // its process as the server reports it, with the last reason as a tooltip.
  // Until the server runs the cluster's application (another one still
  // answers), the cell says "pending" and what runs now.
  function appCell(s) {
    const a = s.app || {};
    const name = s.application || 'sample';
    const version = a.version ? '@' + a.version : '';
    const st = a.state || '';
    const runs = a.name || 'sample';
    if (st && (runs !== name || (a.version || '') !== (s.app_version || ''))) {
      const now = `${runs}${version} (${st})`;
      return h('span', { 'data-application': name },
        h('span', { class: 'app-name' }, name + (s.app_version ? '@' + s.app_version : '')), ' ',
        h('span', { class: 'app-state pending', 'data-app-state': 'pending', title: 'Set on the cluster; the server still runs ' + now + (a.message ? ': ' + a.message : '') }, 'pending'),
        h('div', { class: 'hint app-now' }, 'now: ' + now));
    }
    const kids = [h('span', { class: 'app-name' }, name + version)];
    if (st) kids.push(' ', h('span', { class: 'app-state ' + st, 'data-app-state': st, title: a.message || '' }, st));
    if (a.message && (st === 'exited' || st === 'failed' || st === 'unhealthy')) kids.push(h('div', { class: 'hint app-msg' }, a.message.split('\n')[0]));
    return h('span', { 'data-application': name }, kids);
  }
  async function doPush(cluster, btn, out) {
    btn.disabled = true; notice(out, `Pushing configuration to ${cluster}…`);
    try {
      const res = list(await api('POST', `/clusters/${enc(cluster)}/push`, {}), 'results');
      const ok = res.filter((r) => r.ok).length;
      out.replaceChildren(h('div', { class: 'notice' + (ok === res.length ? ' ok' : ''), role: 'status', id: 'push-result' },
        `Pushed to ${cluster}: ${ok} of ${res.length} nodes applied.`),
      h('div', { class: 'table-wrap' }, h('table', { class: 'push-results' }, h('thead', {}, h('tr', {}, ['Node', 'Kind', 'Revision', 'Result'].map((t) => h('th', {}, t)))),
        h('tbody', {}, res.map((r) => h('tr', { 'data-node': r.node }, h('td', {}, r.node), h('td', {}, r.kind || ''), h('td', {}, String(r.revision ?? '')),
          h('td', {}, r.ok ? h('span', { class: 'badge ok' }, 'applied') : h('span', { class: 'badge warn' }, r.error || 'failed'))))))));
    } catch (err) {
      errorBox(out, err);
      if (err.status === 503) { btn.title = err.message; return; }
    } finally { if (btn.title === '') btn.disabled = false; }
  }

  // ---------- clusters ----------
  const clusterDefs = (edit) => [
    { name: 'name', label: 'Name', required: true, readonly: edit, hint: edit ? undefined : 'Lower case letters, digits and dashes.' },
    { name: 'description', label: 'Description' },
    { name: 'failover_mode', label: 'Failover mode', type: 'select', options: [['immediate', 'Immediate (WebLogic)'], ['verify', 'Verify (JEUS)']], hint: 'Immediate: the backup takes over at once. Verify: the receiving server asks the primary first.' },
    { name: 'backup_policy', label: 'Backup policy', type: 'select', options: [['ring', 'Ring'], ['explicit', 'Explicit']], hint: 'Ring: the next live server by name. Explicit: the backup named on each server.' },
    { name: 'heartbeat_interval_ms', label: 'Heartbeat interval (ms)', type: 'number', value: 500 },
    { name: 'heartbeat_timeout_ms', label: 'Heartbeat timeout (ms)', type: 'number', value: 1500, hint: 'At least twice the interval.' },
    { name: 'member_tls', label: 'TLS to the servers', type: 'checkbox', value: false, hint: 'Web servers reach the servers over TLS and check their domain certificates (servers on other hosts). Needs an admin server on HTTPS.' },
  ];
  async function pageClusters(main, live) {
    document.title = 'Clusters · Tandem';
    const [clusters, servers] = await Promise.all([api('GET', '/clusters'), api('GET', '/servers')]);
    if (!live()) return;
    const cs = list(clusters, 'clusters'); const ss = list(servers, 'servers');
    const f = makeForm('cluster-new', clusterDefs(false), null, 'Create cluster', async (v) => {
      const c = await api('POST', '/clusters', v);
      location.hash = '#/clusters/' + enc(c && c.name ? c.name : v.name);
    });
    main.replaceChildren(
      h('h1', {}, 'Clusters'),
      h('div', { class: 'panel table-wrap' }, cs.length ? h('table', { id: 'clusters-table' },
        h('thead', {}, h('tr', {}, ['Name', 'Description', 'Failover', 'Backup policy', 'Heartbeat', 'Servers'].map((t) => h('th', {}, t)))),
        h('tbody', {}, cs.map((c) => h('tr', { 'data-cluster': c.name },
          h('td', {}, h('a', { href: '#/clusters/' + enc(c.name) }, c.name)), h('td', {}, c.description || ''),
          h('td', {}, c.failover_mode), h('td', {}, c.backup_policy), h('td', {}, `${c.heartbeat_interval_ms} / ${c.heartbeat_timeout_ms} ms` + (c.member_tls ? ' · TLS to servers' : '')),
          h('td', {}, String(ss.filter((s) => s.cluster === c.name).length)))))) : h('p', { class: 'muted' }, 'No clusters yet.')),
      h('div', { class: 'panel' }, h('h2', {}, 'New cluster'), f.form));
  }
  async function pageCluster(main, live, name) {
    document.title = name + ' · Clusters · Tandem';
    const [c, servers, topo] = await Promise.all([api('GET', '/clusters/' + enc(name)), api('GET', '/servers'), api('GET', '/topology').catch(() => null)]);
    if (!live()) return;
    const members = list(servers, 'servers').filter((s) => s.cluster === name);
    // The servers with their state and application, redrawn on topology events.
    const srvBox = h('div', { class: 'panel table-wrap' });
    const drawServers = (t) => {
      const state = {};
      for (const tc of list(t, 'clusters')) for (const s of list(tc.servers, 'servers')) state[s.name] = s;
      srvBox.replaceChildren(h('h2', {}, 'Servers'), members.length ? h('table', { id: 'cluster-servers' },
        h('thead', {}, h('tr', {}, ['Name', 'State', 'Application', 'Listen'].map((x) => h('th', {}, x)))),
        h('tbody', {}, members.map((s) => h('tr', { 'data-server': s.name },
          h('td', {}, h('a', { href: '#/servers/' + enc(s.name) }, s.name)), h('td', {}, stateBadge((state[s.name] || {}).state)),
          h('td', {}, appCell(state[s.name] || {})), h('td', { class: 'mono' }, s.listen)))))
        : h('p', { class: 'muted' }, 'None. ', h('a', { href: '#/servers' }, 'Add a server')));
    };
    drawServers(topo);
    const reloadServers = async () => { const t = await api('GET', '/topology').catch(() => null); if (t && live()) drawServers(t); };
    const saved = h('div', {});
    const f = makeForm('cluster-edit', clusterDefs(true), c, 'Save', async (v) => {
      await api('PUT', '/clusters/' + enc(name), { ...v, name });
      notice(saved, 'Cluster saved.', 'ok');
    }, twoStep('Delete cluster', 'Confirm delete', async () => {
      try { await api('DELETE', '/clusters/' + enc(name)); location.hash = '#/clusters'; } catch (err) { f.showError(err); }
    }));
    const pushOut = h('div', {});
    const push = h('button', { type: 'button', class: 'primary', id: 'push', onclick: () => doPush(name, push, pushOut) }, 'Push config to all nodes');
    const rollOut = h('div', { id: 'rolling-out' });
    const roll = h('button', { type: 'button', id: 'rolling', onclick: () => doRolling(name, roll, rollOut, live) }, 'Rolling restart');
    const editor = h('div', {});
    const appPanel = await clusterAppPanel(name, c.application || '', c.app_version || '', live, rollOut, () => reloadServers());
    if (!live()) return;
    main.replaceChildren(
      h('p', {}, h('a', { href: '#/clusters' }, '← Clusters')),
      h('h1', {}, 'Cluster ', name),
      h('div', { class: 'panel' }, h('h2', {}, 'Operations'), h('div', { class: 'row' }, push, roll), pushOut, rollOut),
      appPanel,
      srvBox,
      h('div', { class: 'panel' }, h('h2', {}, 'Settings'), saved, f.form),
      h('div', { class: 'panel' }, h('h2', {}, 'Session defaults'), h('p', { class: 'hint' }, 'Defaults for every server of this cluster; servers may override single fields.'), editor));
    topoRefresh = reloadServers;
    await sessionEditor(editor, live, {
      path: `/clusters/${enc(name)}/session-config`,
      scope: 'cluster-' + name,
      base: async () => ({ cfg: DEFAULTS, from: 'built-in default' }),
    });
  }
  // clusterAppPanel picks the cluster's application.
  async function clusterAppPanel(name, current, currentVersion, live, rollOut, onSet) {
    const apps = list(await api('GET', '/applications'), 'applications');
    const sel = h('select', { id: 'cluster-app', name: 'application', 'aria-describedby': 'cluster-app-hint' },
      h('option', { value: '', selected: current === '' }, 'Built-in sample app'),
      apps.map((a) => h('option', { value: a.name, selected: a.name === current }, `${a.name} (${a.kind})`)));
    const ver = h('select', { id: 'cluster-app-version', name: 'version' });
    const loadVersions = async () => {
      const vs = sel.value ? list(await api('GET', `/applications/${enc(sel.value)}/versions`), 'versions') : [];
      ver.replaceChildren(h('option', { value: '' }, 'Command as defined (no archive)'),
        ...vs.map((v) => h('option', { value: v.version, selected: sel.value === current && v.version === currentVersion }, `${v.version} (${new Date(v.created_at).toLocaleString()}, ${v.size} bytes)`)));
      ver.disabled = !sel.value;
    };
    sel.onchange = () => { loadVersions().catch(() => {}); };
    await loadVersions();
    const out = h('div', { id: 'cluster-app-out' });
    const btn = h('button', { type: 'button', id: 'cluster-app-set' }, 'Set on every server now');
    const deployBtn = h('button', { type: 'button', class: 'primary', id: 'cluster-app-deploy' }, 'Deploy (one server at a time)');
    const rollbackBtn = h('button', { type: 'button', id: 'cluster-app-rollback' }, 'Roll back');
    const startJob = async (b, path, body, what) => {
      b.disabled = true; notice(out, what + '…');
      try {
        const j = await api('POST', `/clusters/${enc(name)}/${path}`, body);
        notice(out, `${what}: job ${j.id} started; each server moves only when the one before runs the new version and every session has a backup again.`, 'ok');
        if (live()) followJob(j.id, rollOut, live);
      } catch (err) { errorBox(out, err); } finally { b.disabled = false; }
    };
    deployBtn.onclick = () => startJob(deployBtn, 'deploy', { application: sel.value, version: ver.value }, `Deploying ${sel.value || 'the sample app'}${ver.value ? '@' + ver.value : ''}`);
    rollbackBtn.onclick = () => startJob(rollbackBtn, 'rollback', undefined, 'Rolling back to what ran before');
    btn.onclick = async () => {
      btn.disabled = true; notice(out, 'Setting the application…');
      try {
        const r = await api('PUT', `/clusters/${enc(name)}/application`, { application: sel.value, version: ver.value });
        const revs = list(r.revisions, 'revisions');
        const label = (r.application || 'sample app') + (r.version ? '@' + r.version : '');
        let text = revs.length ? `Application of ${name}: ${label}. ${revs.length} server(s) got a new revision, pushed now.` : 'Unchanged: the cluster runs it already.';
        if (r.job) text += ` Rolling restart job ${r.job.id} started: the servers restart one by one with the new binary.`;
        if (r.restart_error) text += ' ' + r.restart_error;
        notice(out, text, r.restart_error ? 'warn' : 'ok');
        if (onSet) onSet();
        if (r.job && live()) followJob(r.job.id, rollOut, live);
      } catch (err) { errorBox(out, err); } finally { btn.disabled = false; }
    };
    return h('div', { class: 'panel' }, h('h2', {}, 'Application'),
      h('div', { class: 'fields' }, h('label', { for: 'cluster-app' }, 'Application'),
        h('div', {}, sel), h('label', { for: 'cluster-app-version' }, 'Version'),
        h('div', {}, ver, h('div', { class: 'hint', id: 'cluster-app-hint' }, 'Setting it makes a new revision for every server of the cluster and pushes it. A process application starts beside the running one and takes over when healthy (no session moves); to or from a go application the servers restart one by one. ', h('a', { href: '#/applications' }, 'Manage applications')))),
      h('div', { class: 'actions' }, deployBtn, btn, rollbackBtn), out);
  }
  // followJob shows a job's progress until it ends.
  async function followJob(id, out, live) {
    const status = h('div', { class: 'notice', role: 'status', id: 'job-status' }, `Job ${id}…`);
    const bar = h('progress', { max: 1, value: 0, id: 'job-progress', 'aria-label': 'job progress' });
    const stepList = h('ul', { class: 'job-steps', id: 'job-steps' });
    out.replaceChildren(status, bar, stepList);
    for (;;) {
      if (!live()) return;
      let j;
      try { j = await api('GET', '/jobs/' + id); } catch (err) { errorBox(out, err); return; }
      const steps = list(j.steps, 'steps'); const order = list(j.order, 'order');
      const done = steps.filter((st) => st.state === 'completed' || st.state === 'done').length;
      bar.max = Math.max(order.length, 1); bar.value = done;
      const what = j.deploy ? `deploy of ${j.deploy.application || 'the sample app'}${j.deploy.version ? '@' + j.deploy.version : ''}` : (j.type || 'rolling restart');
      status.textContent = `Job ${id} (${what}): ${j.state}` + (j.current ? `, now ${j.current}` : '') + ` — ${done} of ${order.length} servers` + (j.error ? `: ${j.error}` : '');
      stepList.replaceChildren(...steps.map((st) => h('li', { 'data-server': st.server, 'data-step': st.state }, h('strong', {}, st.server), ' ', stateBadge(st.state === 'done' ? 'running' : st.state === 'failed' ? 'failed' : st.state === 'pending' ? 'stopped' : 'starting'), ' ', st.state, st.error ? ': ' + st.error : '', st.note ? ' (' + st.note + ')' : '')));
      status.className = 'notice' + (j.state === 'completed' ? ' ok' : j.state === 'failed' ? ' warn' : '');
      if (j.state !== 'running') return;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  async function doRolling(cluster, btn, out, live) {
    btn.disabled = true;
    const log = h('ul', { class: 'events', id: 'rolling-events' });
    const status = h('div', { class: 'notice', role: 'status', id: 'rolling-status' }, 'Starting rolling restart…');
    out.replaceChildren(status, log);
    let job;
    try { job = await api('POST', `/clusters/${enc(cluster)}/rolling-restart`, {}); } catch (err) {
      errorBox(out, err);
      if (err.status === 503) { btn.title = err.message; out.append(h('p', { class: 'hint' }, 'Rolling restart is unavailable: ' + err.message)); } else btn.disabled = false;
      return;
    }
    const prev = S.onEvent;
    S.onEvent = (e) => { if (prev) prev(e); if (/^rolling\./.test(e.type) && (!e.cluster || e.cluster === cluster)) log.prepend(eventItem(e)); };
    const id = job && (job.id ?? job.job_id);
    const steps = h('div', { class: 'table-wrap' });
    out.insertBefore(steps, log);
    const show = (j) => {
      const st = j.state || j.status || 'running';
      const ss = Array.isArray(j.steps) ? j.steps : [];
      const done = ss.filter((x) => x.state === 'done').length;
      const parts = [`Rolling restart job ${id}: ${st}`];
      if (ss.length) parts.push(`${done} of ${ss.length} servers done`);
      if (j.current && st === 'running') parts.push(`restarting ${j.current}`);
      if (j.error) parts.push(j.error);
      status.textContent = parts.join(' · ');
      status.className = 'notice' + (st === 'completed' ? ' ok' : '');
      if (st === 'failed') status.className = 'form-error';
      if (ss.length) {
        steps.replaceChildren(h('table', { class: 'rolling-steps' },
          h('thead', {}, h('tr', {}, ['Server', 'Step', 'Sessions before', 'Sessions after', 'Note'].map((t) => h('th', {}, t)))),
          h('tbody', {}, ss.map((x) => h('tr', { 'data-server': x.server },
            h('td', {}, x.server), h('td', {}, x.state === 'done' ? h('span', { class: 'badge ok' }, 'done') : x.state === 'failed' ? h('span', { class: 'badge warn' }, 'failed') : h('span', { class: 'badge' }, x.state || '')),
            h('td', {}, String(x.sessions_before ?? '')), h('td', {}, String(x.sessions_after ?? '')), h('td', {}, x.error || ''))))));
      }
      return /^(completed|failed|done|error|cancelled)$/.test(st);
    };
    if (id === undefined || id === null) { show(job || {}); btn.disabled = false; return; }
    show(job);
    while (live()) {
      await new Promise((r) => setTimeout(r, 1000));
      if (!live()) return;
      try { if (show(await api('GET', '/jobs/' + enc(id)))) break; } catch (err) { status.textContent = 'Progress unavailable: ' + err.message; }
    }
    btn.disabled = false;
  }

  // ---------- applications ----------
  const lines = (t) => t.split('\n').map((x) => x.trim()).filter((x) => x);
  const appDefs = (edit) => [
    { name: 'name', label: 'Name', required: true, readonly: edit, hint: edit ? undefined : 'Lower case letters, digits and dashes.' },
    { name: 'description', label: 'Description' },
    { name: 'kind', label: 'Kind', type: 'select', options: [['process', 'Process (any language, proxied)'], ['go', 'Go (built with the sdk package)']], hint: 'Process: the managed server starts it on a loopback port (PORT) and passes the session in Tandem-Session headers. Go: the node manager starts this binary instead of tandem server.' },
    { name: 'command', label: 'Command', type: 'textarea', rows: 3, placeholder: 'python3\n/srv/cart/app.py', hint: 'One argument per line: the program first.',
      format: (v) => (Array.isArray(v) ? v.join('\n') : ''), parse: lines },
    { name: 'env', label: 'Environment', type: 'textarea', rows: 3, placeholder: 'DB_HOST=db1', hint: 'KEY=VALUE, one per line. PORT and TANDEM_* are set by Tandem.',
      format: (v) => Object.entries(v || {}).map(([k, x]) => k + '=' + x).join('\n'),
      parse: (t) => Object.fromEntries(lines(t).map((l) => { const i = l.indexOf('='); return i < 0 ? [l, ''] : [l.slice(0, i), l.slice(i + 1)]; })) },
    { name: 'health_path', label: 'Health path', value: '/healthz', hint: 'Answers 2xx when the application is ready.' },
    { name: 'start_timeout_seconds', label: 'Start timeout (s)', type: 'number', value: 30 },
    { name: 'request_timeout_seconds', label: 'Request timeout (s)', type: 'number', value: 30, hint: 'Past it the user gets 504.' },
  ];
  async function pageApplications(main, live) {
    document.title = 'Applications · Tandem';
    const [apps, clusters] = await Promise.all([api('GET', '/applications'), api('GET', '/clusters')]);
    if (!live()) return;
    const as = list(apps, 'applications'); const cs = list(clusters, 'clusters');
    const f = makeForm('app-new', appDefs(false), null, 'Create application', async (v) => {
      const a = await api('POST', '/applications', v);
      location.hash = '#/applications/' + enc(a && a.name ? a.name : v.name);
    });
    main.replaceChildren(
      h('h1', {}, 'Applications'),
      h('p', { class: 'hint' }, 'The operator\'s application, set per cluster. Sessions live in the managed servers, so they survive the application\'s restarts.'),
      h('div', { class: 'panel table-wrap' }, as.length ? h('table', { id: 'applications-table' },
        h('thead', {}, h('tr', {}, ['Name', 'Kind', 'Command', 'Health path', 'Clusters'].map((t) => h('th', {}, t)))),
        h('tbody', {}, as.map((a) => h('tr', { 'data-application': a.name },
          h('td', {}, h('a', { href: '#/applications/' + enc(a.name) }, a.name)), h('td', {}, a.kind),
          h('td', { class: 'mono' }, list(a.command, 'command').join(' ')), h('td', { class: 'mono' }, a.health_path),
          h('td', {}, cs.filter((c) => c.application === a.name).map((c) => c.name).join(', ') || '—'))))) : h('p', { class: 'muted' }, 'No applications yet: clusters run the built-in sample app.')),
      h('div', { class: 'panel' }, h('h2', {}, 'New application'), f.form));
  }
  async function pageApplication(main, live, name) {
    document.title = name + ' · Applications · Tandem';
    const [a, clusters] = await Promise.all([api('GET', '/applications/' + enc(name)), api('GET', '/clusters')]);
    if (!live()) return;
    const users = list(clusters, 'clusters').filter((c) => c.application === name);
    const saved = h('div', {});
    const f = makeForm('app-edit', appDefs(true), a, 'Save', async (v) => {
      await api('PUT', '/applications/' + enc(name), { ...v, name });
      notice(saved, 'Application saved; the servers running it get the new settings.', 'ok');
    }, twoStep('Delete application', 'Confirm delete', async () => {
      try { await api('DELETE', '/applications/' + enc(name)); location.hash = '#/applications'; } catch (err) { f.showError(err); }
    }));
    const versions = list(await api('GET', `/applications/${enc(name)}/versions`), 'versions');
    if (!live()) return;
    const upOut = h('div', { id: 'version-upload-out' });
    const upName = h('input', { id: 'version-name', name: 'version', placeholder: 'v2', autocomplete: 'off' });
    const upFile = h('input', { id: 'version-file', name: 'archive', type: 'file', accept: '.tar.gz,.tgz,application/gzip' });
    const upBtn = h('button', { type: 'button', class: 'primary', id: 'version-upload' }, 'Upload version');
    upBtn.onclick = async () => {
      const file = upFile.files && upFile.files[0];
      if (!upName.value.trim() || !file) { notice(upOut, 'Give a version name and choose a .tar.gz archive.', 'warn'); return; }
      upBtn.disabled = true; notice(upOut, `Uploading ${file.name} (${file.size} bytes)…`);
      try {
        const res = await fetch(`/api/v1/applications/${enc(name)}/versions/${enc(upName.value.trim())}`, { method: 'PUT', body: file, credentials: 'same-origin', headers: { 'Content-Type': 'application/gzip', 'X-CSRF-Token': S.csrf } });
        const data = await res.json().catch(() => ({}));
        if (!res.ok) throw new APIError(res.status, (data.error || {}).code || 'http_' + res.status, (data.error || {}).message || res.statusText, (data.error || {}).field);
        notice(upOut, `Version ${data.version} stored (sha256 ${data.sha256.slice(0, 12)}…, ${data.size} bytes).`, 'ok');
      } catch (err) { errorBox(upOut, err); } finally { upBtn.disabled = false; }
    };
    main.replaceChildren(
      h('p', {}, h('a', { href: '#/applications' }, '← Applications')),
      h('h1', {}, 'Application ', name),
      h('div', { class: 'panel table-wrap' }, h('h2', {}, 'Versions'),
        versions.length ? h('table', { id: 'versions-table' }, h('thead', {}, h('tr', {}, ['Version', 'SHA-256', 'Size', 'Uploaded', 'By'].map((t) => h('th', {}, t)))),
          h('tbody', {}, versions.map((v) => h('tr', { 'data-version': v.version }, h('td', {}, v.version), h('td', { class: 'mono' }, v.sha256.slice(0, 16) + '…'),
            h('td', {}, String(v.size)), h('td', {}, new Date(v.created_at).toLocaleString()), h('td', {}, v.actor || ''))))) : h('p', { class: 'muted' }, 'No uploaded versions: the command runs as defined.'),
        h('div', { class: 'fields' }, h('label', { for: 'version-name' }, 'New version'), h('div', {}, upName),
          h('label', { for: 'version-file' }, 'Archive (.tar.gz)'), h('div', {}, upFile, h('div', { class: 'hint' }, 'The command runs relative to the archive\'s root.'))),
        h('div', { class: 'actions' }, upBtn), upOut),
      h('div', { class: 'panel' }, h('h2', {}, 'Runs on'), users.length ? h('ul', {}, users.map((c) => h('li', {}, h('a', { href: '#/clusters/' + enc(c.name) }, c.name)))) : h('p', { class: 'muted' }, 'No cluster yet: set it on a cluster\'s page.')),
      h('div', { class: 'panel' }, h('h2', {}, 'Settings'), saved, f.form));
  }

  // ---------- servers ----------
  async function pageServers(main, live) {
    document.title = 'Servers · Tandem';
    const [servers, clusters, topo] = await Promise.all([api('GET', '/servers'), api('GET', '/clusters'), api('GET', '/topology').catch(() => null)]);
    if (!live()) return;
    const ss = list(servers, 'servers'); const cs = list(clusters, 'clusters');
    const state = {};
    for (const c of list(topo, 'clusters')) for (const s of list(c.servers, 'servers')) state[s.name] = s;
    const f = makeForm('server-new', serverDefs(cs, false), null, 'Create server', async (v) => {
      const s = await api('POST', '/servers', v);
      location.hash = '#/servers/' + enc(s && s.name ? s.name : v.name);
    });
    main.replaceChildren(
      h('h1', {}, 'Servers'),
      h('div', { class: 'panel table-wrap' }, ss.length ? h('table', { id: 'servers-table' },
        h('thead', {}, h('tr', {}, ['Name', 'Cluster', 'State', 'Application', 'Listen', 'Route', 'Node manager', 'Backup'].map((t) => h('th', {}, t)))),
        h('tbody', {}, ss.map((s) => h('tr', { 'data-server': s.name },
          h('td', {}, h('a', { href: '#/servers/' + enc(s.name) }, s.name)), h('td', {}, s.cluster), h('td', {}, stateBadge((state[s.name] || {}).state)),
          h('td', {}, appCell(state[s.name] || {})), h('td', { class: 'mono', title: s.advertise ? 'binds ' + s.listen + '; the other machines reach it at ' + s.advertise : '' }, s.listen + (s.advertise ? ' @ ' + s.advertise : '')), h('td', { class: 'mono' }, s.route || ''), h('td', {}, s.node_manager || '—'), h('td', {}, s.backup || (state[s.name] || {}).backup || '—'))))) : h('p', { class: 'muted' }, 'No servers yet.')),
      h('div', { class: 'panel' }, h('h2', {}, 'New server'), cs.length ? f.form : h('p', {}, 'Create a cluster first: ', h('a', { href: '#/clusters' }, 'Clusters'))));
  }
  function serverDefs(clusters, edit) {
    return [
      { name: 'name', label: 'Name', required: true, readonly: edit },
      { name: 'cluster', label: 'Cluster', type: 'select', options: clusters.map((c) => c.name) },
      { name: 'listen', label: 'Listen address', required: true, placeholder: '127.0.0.1:9741' },
      { name: 'internal_listen', label: 'Internal address', placeholder: 'empty: the next port', hint: 'Where the server serves its peers (replication); never the users. Empty: the port after the listen address.' },
      { name: 'route', label: 'Route', hint: 'Routing id in the session cookie; empty: derived from the name.' },
      { name: 'node_manager', label: 'Node manager', hint: 'Empty: started by hand.' },
      { name: 'backup', label: 'Explicit backup', hint: 'Used with the "explicit" backup policy.' },
    ];
  }
  async function pageServer(main, live, name) {
    document.title = name + ' · Servers · Tandem';
    const [s, clusters, topo] = await Promise.all([api('GET', '/servers/' + enc(name)), api('GET', '/clusters'), api('GET', '/topology').catch(() => null)]);
    if (!live()) return;
    let liveState = {};
    for (const c of list(topo, 'clusters')) for (const x of list(c.servers, 'servers')) if (x.name === name) liveState = x;
    const saved = h('div', {});
    const f = makeForm('server-edit', serverDefs(list(clusters, 'clusters'), true), s, 'Save', async (v) => {
      await api('PUT', '/servers/' + enc(name), { ...v, name });
      notice(saved, 'Server saved.', 'ok');
    }, twoStep('Delete server', 'Confirm delete', async () => {
      try { await api('DELETE', '/servers/' + enc(name)); location.hash = '#/servers'; } catch (err) { f.showError(err); }
    }));
    const actOut = h('div', { id: 'action-out' });
    const buttons = ['start', 'stop', 'restart'].map((a) => h('button', { type: 'button', id: 'action-' + a, onclick: () => serverAction(name, a, buttons, actOut) }, a[0].toUpperCase() + a.slice(1)));
    const stateEl = h('span', { id: 'server-state' }, stateBadge(liveState.state));
    const editor = h('div', {});
    const revs = h('div', {});
    main.replaceChildren(
      h('p', {}, h('a', { href: '#/servers' }, '← Servers')),
      h('div', { class: 'row' }, h('h1', {}, 'Server ', name), stateEl, h('span', { class: 'muted' }, `cluster ${s.cluster} · ${liveState.sessions ?? 0} sessions · backup ${liveState.backup || '—'}` + (s.advertise ? ` · reached at ${s.advertise}` : ''))),
      h('div', { class: 'panel' }, h('h2', {}, 'Actions'), h('div', { class: 'row' }, buttons), actOut),
      h('div', { class: 'panel' }, h('h2', {}, 'Session config'), h('p', { class: 'hint' }, `Per-server overrides of cluster ${s.cluster}'s defaults.`), editor),
      h('div', { class: 'panel' }, h('h2', {}, 'Revision history'), revs),
      h('div', { class: 'panel' }, h('h2', {}, 'Definition'), saved, f.form));
    S.onEvent = (e) => {
      if (e.server === name && /^server\./.test(e.type)) {
        api('GET', '/topology').then((t) => {
          for (const c of list(t, 'clusters')) for (const x of list(c.servers, 'servers')) if (x.name === name) stateEl.replaceChildren(stateBadge(x.state));
        }).catch(() => {});
      }
      if (e.server === name && /^config\./.test(e.type)) loadRevisions(revs, name, live, reloadEditor);
    };
    const edOpts = {
      path: `/servers/${enc(name)}/session-config`,
      scope: 'server-' + name,
      base: async () => {
        const cc = await api('GET', `/clusters/${enc(s.cluster)}/session-config`);
        return { cfg: (cc && cc.effective) || DEFAULTS, from: 'cluster ' + s.cluster };
      },
      after: () => loadRevisions(revs, name, live, reloadEditor),
    };
    const reloadEditor = () => sessionEditor(editor, live, edOpts);
    await Promise.all([reloadEditor(), loadRevisions(revs, name, live, reloadEditor)]);
  }
  async function serverAction(name, action, buttons, out) {
    buttons.forEach((b) => { b.disabled = true; });
    notice(out, `${action} ${name}…`);
    try {
      const r = await api('POST', `/servers/${enc(name)}/${action}`, {});
      notice(out, `${action} ${name}: ${r && (r.message || r.state || (r.pid ? 'pid ' + r.pid : '')) || 'done'}`, 'ok');
      buttons.forEach((b) => { b.disabled = false; });
    } catch (err) {
      if (err.status === 503) {
        buttons.forEach((b) => { b.title = 'Unavailable: ' + err.message; });
        out.replaceChildren(h('div', { class: 'notice', role: 'status', id: 'action-unavailable' }, 'Server actions are unavailable: ' + err.message));
        return;
      }
      errorBox(out, err);
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  // ---------- session config editor ----------
  const DEFAULTS = { shared: true, tracking_mode: 'cookie', cookie: { name: 'JSESSIONID', domain: '', path: '/', secure: false, http_only: true, same_site: 'Lax', max_age_seconds: 0 }, timeout_seconds: 1800, max_sessions: 0, replication: 'sync', failback: true, max_session_bytes: 65536 };
  const CFG = [
    { key: 'shared', label: 'Shared (clustered)', type: 'bool' },
    { key: 'tracking_mode', label: 'Tracking mode', type: 'select', options: [['cookie', 'Cookie'], ['url', 'URL rewriting']] },
    { key: 'cookie.name', label: 'Session cookie name', type: 'text' },
    { key: 'cookie.domain', label: 'Cookie domain', type: 'text', hint: 'Empty: the host of the request.' },
    { key: 'cookie.path', label: 'Cookie path', type: 'text' },
    { key: 'cookie.secure', label: 'Secure', type: 'bool' },
    { key: 'cookie.http_only', label: 'HttpOnly', type: 'bool' },
    { key: 'cookie.same_site', label: 'SameSite', type: 'select', options: ['Lax', 'Strict', 'None'] },
    { key: 'cookie.max_age_seconds', label: 'Cookie max-age (s)', type: 'int', hint: '0: until the browser closes.' },
    { key: 'timeout_seconds', label: 'Session timeout (s)', type: 'int', hint: '60 to 604800.' },
    { key: 'max_sessions', label: 'Max sessions', type: 'int', hint: '0: no limit.' },
    { key: 'max_session_bytes', label: 'Max session size (bytes)', type: 'int', hint: '1024 to 1048576; a change past it is refused and the session stays as it was.' },
    { key: 'replication', label: 'Replication', type: 'select', options: [['sync', 'Synchronous'], ['async', 'Asynchronous']] },
    { key: 'failback', label: 'Failback', type: 'bool' },
  ];
  async function sessionEditor(root, live, opts) {
    const [data, base] = await Promise.all([api('GET', opts.path), opts.base()]);
    if (!live()) return;
    const override = (data && data.override) || {};
    const effective = (data && data.effective) || {};
    const baseCfg = base.cfg;
    const idp = opts.scope; // e.g. "cluster-c1": ids are sc-<scope>-<field>
    const rows = []; const ctl = {};
    const formErr = h('div', { class: 'form-error', role: 'alert', hidden: true });
    const saved = h('div', {});
    for (const f of CFG) {
      const id = `sc-${idp}-${f.key.replace(/\./g, '-')}`;
      const ov = getPath(override, f.key);
      const inherited = getPath(baseCfg, f.key);
      const overridden = ov !== undefined && ov !== null;
      const cur = overridden ? ov : (getPath(effective, f.key) ?? inherited);
      let input;
      if (f.type === 'bool') input = h('select', { id }, h('option', { value: 'true', selected: cur === true }, 'on'), h('option', { value: 'false', selected: cur !== true }, 'off'));
      else if (f.type === 'select') input = h('select', { id }, f.options.map((o) => { const [v, l] = Array.isArray(o) ? o : [o, o]; return h('option', { value: v, selected: String(cur) === v }, l); }));
      else input = h('input', { id, type: f.type === 'int' ? 'number' : 'text', value: cur ?? '', min: f.type === 'int' ? 0 : undefined });
      input.dataset.field = f.key;
      const inh = h('input', { type: 'checkbox', id: id + '-inherit', checked: !overridden, 'aria-label': f.label + ': inherit' });
      const src = h('span', { class: 'src' });
      const err = h('div', { class: 'field-error', id: id + '-error', 'data-field': f.key, hidden: true, role: 'alert' });
      input.setAttribute('aria-describedby', id + '-error');
      const show = (v) => { input.value = f.type === 'bool' ? String(!!v) : (v ?? ''); };
      const sync = () => {
        input.disabled = inh.checked;
        if (inh.checked) { show(inherited); src.textContent = `inherited from ${base.from}`; src.className = 'src'; } else { src.textContent = 'overridden here'; src.className = 'src over'; }
      };
      inh.addEventListener('change', () => { sync(); if (!inh.checked) input.focus(); });
      sync(); if (overridden) show(ov);
      ctl[f.key] = { f, input, inh, err };
      rows.push(h('label', { for: id }, f.label), h('div', {},
        h('div', { class: 'cfg-row' }, input, h('label', { class: 'inherit', for: id + '-inherit' }, inh, 'inherit'), src),
        f.hint ? h('div', { class: 'hint' }, f.hint) : null, err));
    }
    const submit = h('button', { type: 'submit', class: 'primary', id: `sc-${idp}-save` }, 'Save session config');
    const form = h('form', { class: 'fields session-config', novalidate: true }, rows, h('div', { class: 'actions' }, submit));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      formErr.hidden = true;
      for (const k in ctl) { ctl[k].err.hidden = true; ctl[k].input.classList.remove('invalid'); ctl[k].input.removeAttribute('aria-invalid'); }
      const out = {};
      for (const k in ctl) {
        const { f, input, inh } = ctl[k];
        if (inh.checked) continue;
        let v = f.type === 'bool' ? input.value === 'true' : input.value;
        if (f.type === 'int') v = input.value === '' ? 0 : Number(input.value);
        if (f.type === 'text') v = v.trim();
        setPath(out, k, v);
      }
      submit.disabled = true;
      try {
        const r = await api('PUT', opts.path, out);
        const rev = r && r.revision ? ` Revision ${r.revision}.` : '';
        await sessionEditor(root, live, opts);
        notice($('.saved', root) || root, 'Session config saved.' + rev, 'ok');
        if (opts.after) opts.after();
      } catch (err) {
        submit.disabled = false;
        const k = matchField(err.field, Object.keys(ctl));
        if (k) {
          const c = ctl[k];
          c.err.textContent = err.message; c.err.hidden = false; c.input.classList.add('invalid'); c.input.setAttribute('aria-invalid', 'true'); c.input.focus();
        } else { formErr.textContent = err.message + (err.field ? ` (${err.field})` : ''); formErr.hidden = false; }
      }
    });
    const rev = data && data.revision ? h('p', { class: 'hint' }, `Current revision: ${data.revision}`) : null;
    saved.className = 'saved';
    root.replaceChildren(...[saved, rev, formErr, form].filter(Boolean));
  }

  // ---------- revisions ----------
  function flatten(o, prefix, out) {
    out = out || {};
    for (const [k, v] of Object.entries(o || {})) {
      const key = prefix ? prefix + '.' + k : k;
      if (v && typeof v === 'object' && !Array.isArray(v)) flatten(v, key, out); else out[key] = v;
    }
    return out;
  }
  async function loadRevisions(root, name, live, onRollback) {
    let revs;
    try { revs = list(await api('GET', `/servers/${enc(name)}/config/revisions`), 'revisions'); } catch (err) { if (live()) errorBox(root, err); return; }
    if (!live()) return;
    revs = revs.slice().sort((a, b) => (b.revision ?? b.number) - (a.revision ?? a.number));
    const num = (r) => r.revision ?? r.number;
    const latest = revs.length ? num(revs[0]) : 0;
    const diffOut = h('div', { id: 'revision-diff' });
    const msg = h('div', {});
    const showDiff = (i) => {
      const cur = revs[i]; const prev = revs[i + 1];
      const a = flatten(prev ? prev.config : {}); const b = flatten(cur.config);
      const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort().filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]));
      diffOut.replaceChildren(h('h3', {}, prev ? `Revision ${num(prev)} → ${num(cur)}` : `Revision ${num(cur)} (first)`),
        keys.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'diff' }, h('thead', {}, h('tr', {}, h('th', {}, 'Field'), h('th', {}, 'Before'), h('th', {}, 'After'))),
          h('tbody', {}, keys.map((k) => h('tr', {}, h('td', { class: 'mono' }, k), h('td', { class: 'before mono' }, prev ? JSON.stringify(a[k]) : ''), h('td', { class: 'after mono' }, JSON.stringify(b[k]))))))) : h('p', { class: 'muted' }, 'No change in the effective config.'));
    };
    root.replaceChildren(msg, revs.length ? h('div', { class: 'table-wrap' }, h('table', { id: 'revisions' },
      h('thead', {}, h('tr', {}, ['Revision', 'Time', 'Actor', 'Reason', 'Checksum', ''].map((t) => h('th', {}, t)))),
      h('tbody', {}, revs.map((r, i) => h('tr', { 'data-revision': num(r) },
        h('td', {}, String(num(r)), num(r) === latest ? [' ', h('span', { class: 'badge ok' }, 'current')] : null),
        h('td', {}, fmtTime(r.created_at)), h('td', {}, r.actor || ''), h('td', {}, r.reason || ''), h('td', { class: 'mono' }, (r.checksum || '').slice(0, 12)),
        h('td', {}, h('div', { class: 'row' },
          h('button', { type: 'button', onclick: () => showDiff(i) }, 'Diff'),
          num(r) !== latest ? h('button', { type: 'button', class: 'danger', onclick: async (ev) => {
            ev.target.disabled = true;
            try {
              await api('POST', `/servers/${enc(name)}/config/rollback`, { revision: num(r) });
              await loadRevisions(root, name, live, onRollback);
              notice($('div', root), `Rolled back to revision ${num(r)} (as a new revision).`, 'ok');
              if (onRollback) await onRollback();
            } catch (err) { ev.target.disabled = false; errorBox(msg, err); }
          } }, 'Roll back') : null)))))), diffOut) : h('p', { class: 'muted' }, 'No revisions yet.'));
    if (revs.length) showDiff(0);
  }

  // ---------- events ----------
  function eventItem(e) {
    if (e.mark) return h('li', { class: 'mark', role: 'status' }, e.text);
    const who = [e.server, e.peer ? '→ ' + e.peer : ''].filter(Boolean).join(' ');
    return h('li', { 'data-id': e.id, 'data-type': e.type },
      h('span', { class: 'mono muted' }, '#' + e.id),
      h('span', { class: 'etime muted' }, fmtClock(e.time)),
      h('span', { class: 'etype ' + e.type }, e.type),
      h('span', { class: 'emsg' }, [e.cluster ? h('span', { class: 'badge' }, e.cluster) : null, ' ', who ? h('strong', {}, who) : null, ' ',
        e.sessions ? `${e.sessions} sessions ` : '', e.message || '']));
  }
  async function pageEvents(main, live) {
    document.title = 'Events · Tandem';
    const ul = h('ul', { class: 'events', id: 'event-list' });
    const more = h('button', { type: 'button', id: 'events-older' }, 'Load older');
    const info = h('span', { class: 'muted' });
    let filter = { type: '', cluster: '', server: '' };
    let oldest = 0;
    const match = (e) => (!filter.type || e.type === filter.type) && (!filter.cluster || e.cluster === filter.cluster) && (!filter.server || e.server === filter.server || e.peer === filter.server);
    const qs = () => ['type', 'cluster', 'server'].filter((k) => filter[k]).map((k) => `&${k}=${enc(filter[k])}`).join('');
    const page = async (reset) => {
      const q = `/events?limit=50${qs()}${!reset && oldest ? '&before=' + oldest : ''}`;
      more.disabled = true;
      const evs = list(await api('GET', q), 'events').slice().sort((a, b) => b.id - a.id);
      if (!live()) return;
      if (reset) ul.replaceChildren();
      for (const e of evs) { if (!$(`li[data-id="${e.id}"]`, ul)) ul.append(eventItem(e)); }
      if (evs.length) oldest = evs[evs.length - 1].id;
      more.disabled = evs.length < 50;
      more.textContent = evs.length < 50 ? 'No older events' : 'Load older';
      info.textContent = ul.children.length ? `${ul.querySelectorAll('li[data-id]').length} shown` : '';
      if (!ul.children.length) ul.append(h('li', { class: 'muted' }, 'No events match.'));
    };
    more.addEventListener('click', () => page(false).catch((err) => { info.textContent = err.message; more.disabled = false; }));
    const f = makeForm('event-filter', [
      { name: 'type', label: 'Type', type: 'select', options: [['', 'any']].concat(EVENT_TYPES) },
      { name: 'cluster', label: 'Cluster' },
      { name: 'server', label: 'Server' },
    ], null, 'Apply filters', async (v) => { filter = v; oldest = 0; await page(true); });
    main.replaceChildren(
      h('div', { class: 'row' }, h('h1', {}, 'Events'), h('span', { class: 'spacer' }), info),
      h('details', { class: 'panel' }, h('summary', {}, 'Filters'), f.form),
      h('div', { class: 'panel' }, ul, h('div', { class: 'row' }, more)));
    S.onEvent = (e) => {
      if (!match(e) || $(`li[data-id="${e.id}"]`, ul)) return;
      const empty = ul.querySelector('li.muted'); if (empty) empty.remove();
      const li = eventItem(e); li.classList.add('fresh'); ul.prepend(li);
    };
    S.onMark = (text) => { ul.prepend(h('li', { class: 'mark', role: 'status' }, text)); };
    await page(true);
  }

  // ---------- pages from other files ----------
  // Other console files (loaded after this one) add pages through
  // window.Tandem.page; they share these helpers instead of copying them.
  const extraPages = [];
  const dashboardPanels = [];
  const ROLES = ['viewer', 'operator', 'admin'];
  function roleAtLeast(role) { return S.me && ROLES.indexOf(S.me.role) >= ROLES.indexOf(role); }
  window.Tandem = Object.freeze({
    h, $, api, APIError, makeForm, twoStep, notice, errorBox, stateBadge, fmtTime, fmtClock, enc, list, roleAtLeast, eventItem,
    me: () => S.me,
    // page(key, label, render, role): render(main, live, name) draws #/key[/name];
    // an empty label keeps it out of the navigation; role hides it below that role.
    page(key, label, render, role) { extraPages.push({ key, label, render, role }); },
    // onEvent(fn): the current page's live-event handler (reset on navigation).
    onEvent(fn) { S.onEvent = fn; },
    // dashboard(fn): fn(container, live) draws a panel at the top of the
    // dashboard; it may return a handler for the live events.
    dashboard(fn) { dashboardPanels.push(fn); },
  });

  // ---------- boot ----------
  window.addEventListener('hashchange', () => { render(); });
  async function boot() {
    try {
      const me = await api('GET', '/me');
      S.me = { name: me.name, role: me.role }; S.csrf = me.csrf_token || '';
      await afterLogin();
    } catch (err) {
      renderLogin(err.status && err.status !== 401 ? 'Could not reach the admin server: ' + err.message : '');
    }
  }
  // Boot once every console file has run and registered its pages.
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot); else boot();
})();
