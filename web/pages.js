// Tandem console: the administration pages (users, API tokens, audit log,
// jobs, web servers, node managers, HAProxy export). They use the helpers
// app.js shares as window.Tandem.
'use strict';
(() => {
  const T = window.Tandem;
  if (!T) return;
  const { h, $, api, APIError, makeForm, twoStep, notice, errorBox, stateBadge, fmtTime, enc, list, roleAtLeast } = T;

  // ---------- shared ----------
  const ROLE_OPTS = [['viewer', 'Viewer (reads)'], ['operator', 'Operator (changes the domain)'], ['admin', 'Admin (also users and tokens)']];
  // tableOf draws a table, or a short sentence when there are no rows.
  function tableOf(id, heads, rows, empty) {
    if (!rows.length) return h('p', { class: 'muted', id: id + '-empty' }, empty);
    return h('div', { class: 'table-wrap' }, h('table', { id },
      h('thead', {}, h('tr', {}, heads.map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, rows)));
  }
  // later calls fn once, ms after the last of a burst of calls.
  function later(fn, ms) {
    let t = null;
    return () => { clearTimeout(t); t = setTimeout(fn, ms); };
  }
  // every calls fn every ms while the page is shown.
  function every(live, ms, fn) {
    const id = setInterval(() => { if (!live()) { clearInterval(id); return; } fn(); }, ms);
  }
  // copyText puts text on the clipboard; where the Clipboard API is
  // missing or refused, it selects el's text for the user to copy.
  async function copyText(text, el, out) {
    try {
      if (!navigator.clipboard || !window.isSecureContext) throw new Error('no clipboard');
      await navigator.clipboard.writeText(text);
      notice(out, 'Copied to the clipboard.', 'ok');
      return;
    } catch (e) { /* fall back to a selection */ }
    const range = document.createRange();
    range.selectNodeContents(el);
    const sel = window.getSelection();
    sel.removeAllRanges(); sel.addRange(range);
    let ok = false;
    try { ok = document.execCommand('copy'); } catch (e) { ok = false; }
    notice(out, ok ? 'Copied to the clipboard.' : 'The text is selected: press Ctrl+C (⌘C on a Mac) to copy it.', ok ? 'ok' : '');
  }
  function when(t) { return t ? h('time', { datetime: t, title: t }, fmtTime(t)) : '—'; }
  // liveOf returns the live state of web servers and node managers by name.
  function liveOf(topo) {
    const out = {};
    for (const c of list(topo, 'clusters')) for (const w of list(c.webservers, 'webservers')) out[w.name] = w;
    for (const n of list(topo, 'node_managers')) out[n.name] = n;
    return out;
  }
  // readOnly shows a form's values to a role that may not change them.
  function readOnly(f) {
    for (const k in f.inputs) f.inputs[k].disabled = true;
    const actions = $('.actions', f.form);
    if (actions) actions.hidden = true;
  }
  const viewOnly = () => h('p', { class: 'hint' }, 'Your role can view this page; an operator or admin can change it.');

  // ---------- users ----------
  async function pageUsers(main, live, name) {
    if (name) { await pageUser(main, live, name); return; }
    document.title = 'Users · Tandem';
    const msg = h('div', { id: 'users-msg' });
    const box = h('div', { class: 'panel' });
    const me = T.me() || {};
    const reload = async () => {
      const us = list(await api('GET', '/users'), 'users');
      if (!live()) return;
      box.replaceChildren(h('h2', {}, 'Console users'), tableOf('users-table', ['Name', 'Role', 'Created'], us.map((u) => h('tr', { 'data-user': u.name, 'data-role': u.role },
        h('td', {}, h('a', { href: '#/users/' + enc(u.name) }, u.name), u.name === me.name ? [' ', h('span', { class: 'badge' }, 'you')] : null),
        h('td', {}, h('span', { class: 'badge role-' + u.role }, u.role)),
        h('td', {}, when(u.created_at)))), 'No users.'));
    };
    const f = makeForm('user-new', [
      { name: 'name', label: 'Name', required: true, hint: 'Lower case letters, digits and dashes.' },
      { name: 'role', label: 'Role', type: 'select', options: ROLE_OPTS, value: 'viewer' },
      { name: 'password', label: 'Password', type: 'password', required: true, autocomplete: 'new-password', hint: '8 to 72 characters.', parse: (v) => v },
    ], null, 'Create user', async (v) => {
      const u = await api('POST', '/users', v);
      f.inputs.name.value = ''; f.inputs.password.value = '';
      await reload();
      notice(msg, `User ${u.name} created with role ${u.role}.`, 'ok');
    });
    main.replaceChildren(
      h('h1', {}, 'Users'),
      h('p', { class: 'hint' }, 'People who log in to this console. Scripts and CI use API tokens instead.'),
      msg, box,
      h('div', { class: 'panel' }, h('h2', {}, 'New user'), f.form));
    await reload();
  }
  async function pageUser(main, live, name) {
    document.title = name + ' · Users · Tandem';
    const u = await api('GET', '/users/' + enc(name));
    if (!live()) return;
    let role = u.role;
    const msg = h('div', { id: 'user-msg' });
    const roleEl = h('span', { id: 'user-role' }, h('span', { class: 'badge role-' + role }, role));
    const roleForm = makeForm('user-role', [
      { name: 'role', label: 'Role', type: 'select', options: ROLE_OPTS },
    ], u, 'Change role', async (v) => {
      const r = await api('PUT', '/users/' + enc(name), { name, role: v.role, password: '' });
      role = r.role;
      roleEl.replaceChildren(h('span', { class: 'badge role-' + role }, role));
      notice(msg, `Role of ${name} changed to ${role}.`, 'ok');
    });
    const pw = makeForm('user-password', [
      { name: 'password', label: 'New password', type: 'password', required: true, autocomplete: 'new-password', hint: '8 to 72 characters.', parse: (v) => v },
      { name: 'confirm', label: 'Repeat it', type: 'password', required: true, autocomplete: 'new-password', parse: (v) => v },
    ], null, 'Reset password', async (v) => {
      if (v.password !== v.confirm) { pw.showError({ field: 'confirm', message: 'The two passwords differ.' }); return; }
      await api('PUT', '/users/' + enc(name), { name, role, password: v.password });
      pw.inputs.password.value = ''; pw.inputs.confirm.value = '';
      notice(msg, `Password of ${name} reset; their open console sessions have ended.`, 'ok');
    });
    const del = twoStep('Delete user', 'Confirm delete', async (b) => {
      b.disabled = true;
      try { await api('DELETE', '/users/' + enc(name)); location.hash = '#/users'; } catch (err) { b.disabled = false; errorBox(msg, err); }
    });
    del.id = 'user-delete';
    main.replaceChildren(
      h('p', {}, h('a', { href: '#/users' }, '← Users')),
      h('div', { class: 'row' }, h('h1', {}, 'User ', name), roleEl, h('span', { class: 'muted' }, 'created ', when(u.created_at))),
      msg,
      h('div', { class: 'panel' }, h('h2', {}, 'Role'), roleForm.form),
      h('div', { class: 'panel' }, h('h2', {}, 'Reset password'), pw.form),
      h('div', { class: 'panel' }, h('h2', {}, 'Delete'), h('p', { class: 'hint' }, 'The user can no longer log in; the last admin cannot be deleted.'), del));
  }

  // ---------- API tokens ----------
  async function pageTokens(main, live) {
    document.title = 'API tokens · Tandem';
    const msg = h('div', { id: 'tokens-msg' });
    const secretBox = h('div', { id: 'token-secret-box' });
    const box = h('div', { class: 'panel' });
    const reload = async () => {
      const ts = list(await api('GET', '/tokens'), 'tokens');
      if (!live()) return;
      const now = new Date();
      box.replaceChildren(h('h2', {}, 'Tokens'), tableOf('tokens-table', ['Name', 'Role', 'Created', 'Expires', 'Last used', ''], ts.map((t) => {
        const expired = t.expires_at && new Date(t.expires_at) <= now;
        const revoke = twoStep('Revoke', 'Confirm revoke', async (b) => {
          b.disabled = true;
          try {
            await api('DELETE', '/tokens/' + enc(t.name));
            secretBox.replaceChildren();
            await reload();
            notice(msg, `Token ${t.name} revoked: requests with it are refused from now on.`, 'ok');
          } catch (err) { b.disabled = false; errorBox(msg, err); }
        });
        revoke.id = 'token-revoke-' + t.name;
        revoke.setAttribute('aria-describedby', 'token-name-' + t.name);
        return h('tr', { 'data-token': t.name, 'data-role': t.role },
          h('td', { id: 'token-name-' + t.name }, t.name),
          h('td', {}, h('span', { class: 'badge role-' + t.role }, t.role)),
          h('td', {}, when(t.created_at)),
          h('td', { class: expired ? 'expired' : '' }, t.expires_at ? [when(t.expires_at), expired ? [' ', h('span', { class: 'badge warn' }, 'expired')] : null] : 'never'),
          h('td', {}, t.last_used ? when(t.last_used) : h('span', { class: 'muted' }, 'never')),
          h('td', {}, revoke));
      }), 'No API tokens.'));
    };
    const showSecret = (t) => {
      const out = h('div', { id: 'token-secret-out' });
      const value = h('code', { id: 'token-secret-value', class: 'secret-value', tabindex: 0 }, t.token);
      const copy = h('button', { type: 'button', class: 'primary', id: 'token-secret-copy', onclick: () => copyText(t.token, value, out) }, 'Copy');
      const done = h('button', { type: 'button', id: 'token-secret-dismiss', onclick: () => { secretBox.replaceChildren(); f.inputs.name.focus(); } }, 'I have copied it');
      secretBox.replaceChildren(h('section', { class: 'panel secret', id: 'token-secret', role: 'alert', 'aria-labelledby': 'token-secret-title', 'data-token': t.name },
        h('h2', { id: 'token-secret-title' }, `Token ${t.name} created: copy its secret now`),
        h('p', {}, 'This is the only time the secret is shown. Tandem keeps only a hash of it: if it is lost, revoke the token and create another.'),
        h('div', { class: 'secret-row' }, value, copy),
        h('p', { class: 'hint' }, 'Send it as the header ', h('code', {}, 'Authorization: Bearer <token>'), '.'),
        out, h('div', { class: 'actions' }, done)));
      copy.focus();
    };
    const f = makeForm('token-new', [
      { name: 'name', label: 'Name', required: true, hint: 'Lower case letters, digits and dashes; say what uses it (e.g. ci-deploy).' },
      { name: 'role', label: 'Role', type: 'select', options: ROLE_OPTS, value: 'viewer' },
      { name: 'expires_at', label: 'Expires', type: 'datetime-local', hint: 'Optional, your local time; empty: the token never expires.' },
    ], null, 'Create token', async (v) => {
      const body = { name: v.name, role: v.role };
      if (v.expires_at) {
        const d = new Date(v.expires_at);
        if (isNaN(d)) { f.showError({ field: 'expires_at', message: 'Not a valid date and time.' }); return; }
        body.expires_at = d.toISOString();
      }
      const t = await api('POST', '/tokens', body);
      f.inputs.name.value = ''; f.inputs.expires_at.value = '';
      msg.replaceChildren();
      showSecret(t);
      await reload();
    });
    main.replaceChildren(
      h('h1', {}, 'API tokens'),
      h('p', { class: 'hint' }, 'Bearer tokens for scripts, CI and the REST API. Each has a role, like a user.'),
      secretBox, msg, box,
      h('div', { class: 'panel' }, h('h2', {}, 'New token'), f.form));
    await reload();
  }

  // ---------- audit log ----------
  const AUDIT_PAGE = 50;
  const AUDIT_KINDS = ['token/', 'user/', 'cluster/', 'server/', 'webserver/', 'nodemanager/', 'application/'];
  // auditLink links a target to its page where it has one.
  function auditTarget(target) {
    const [kind, name, more] = target.split('/');
    const pages = { user: 'users', cluster: 'clusters', server: 'servers', webserver: 'webservers', nodemanager: 'node-managers', application: 'applications' };
    if (pages[kind] && name && !more) return h('a', { href: `#/${pages[kind]}/${enc(name)}`, class: 'mono' }, target);
    return h('span', { class: 'mono' }, target);
  }
  function pretty(s) {
    if (!s) return '—';
    try { return JSON.stringify(JSON.parse(s), null, 2); } catch (e) { return s; }
  }
  function auditRow(a) {
    const changes = (a.before || a.after) ? h('details', { class: 'audit-change' }, h('summary', {}, 'Before / after'),
      h('div', { class: 'grid2' },
        h('div', {}, h('div', { class: 'hint' }, 'Before'), h('pre', { class: 'json' }, pretty(a.before))),
        h('div', {}, h('div', { class: 'hint' }, 'After'), h('pre', { class: 'json' }, pretty(a.after))))) : h('span', { class: 'muted' }, '—');
    return h('tr', { 'data-id': a.id, 'data-action': a.action, 'data-actor': a.actor, 'data-target': a.target },
      h('td', { class: 'nowrap' }, when(a.time)),
      h('td', {}, a.actor),
      h('td', { class: 'nowrap' }, h('code', {}, a.action)),
      h('td', { class: 'nowrap' }, auditTarget(a.target)),
      h('td', {}, changes));
  }
  async function pageAudit(main, live) {
    document.title = 'Audit log · Tandem';
    let filter = {};
    let oldest = 0;
    const tbody = h('tbody', { id: 'audit-rows' });
    const table = h('div', { class: 'table-wrap' }, h('table', { id: 'audit-table' },
      h('thead', {}, h('tr', {}, ['Time', 'Actor', 'Action', 'Target', 'Change'].map((x) => h('th', { scope: 'col' }, x)))), tbody));
    const empty = h('p', { class: 'muted', id: 'audit-empty', hidden: true }, 'No audit entries match.');
    const more = h('button', { type: 'button', id: 'audit-older' }, 'Load older');
    const info = h('span', { class: 'muted', id: 'audit-info' });
    const msg = h('div', { id: 'audit-msg' });
    const query = () => {
      const p = new URLSearchParams();
      for (const k of ['actor', 'resource', 'since', 'until']) if (filter[k]) p.set(k, filter[k]);
      p.set('limit', String(AUDIT_PAGE));
      if (oldest) p.set('before', String(oldest));
      return p.toString();
    };
    const load = async (reset) => {
      if (reset) oldest = 0;
      more.disabled = true;
      const as = list(await api('GET', '/audit?' + query()), 'audit');
      if (!live()) return;
      if (reset) tbody.replaceChildren();
      for (const a of as) if (!$(`tr[data-id="${a.id}"]`, tbody)) tbody.append(auditRow(a));
      if (as.length) oldest = as[as.length - 1].id;
      const end = as.length < AUDIT_PAGE;
      more.disabled = end;
      more.textContent = end ? 'No older entries' : 'Load older';
      empty.hidden = tbody.children.length > 0;
      table.hidden = tbody.children.length === 0;
      const shown = tbody.children.length;
      const active = Object.keys(filter).filter((k) => filter[k]);
      info.textContent = `${shown} shown` + (active.length ? ` · filtered by ${active.join(', ')}` : '');
    };
    more.addEventListener('click', () => load(false).catch((err) => { errorBox(msg, err); more.disabled = false; }));
    const f = makeForm('audit-filter', [
      { name: 'actor', label: 'Actor', placeholder: 'admin', hint: 'A user or token name, exactly.' },
      { name: 'resource', label: 'Resource', placeholder: 'token/ or user/alice', hint: 'The start of the target: a kind with its slash (token/), or kind/name.' },
      { name: 'since', label: 'Since', type: 'datetime-local', hint: 'Your local time, inclusive.' },
      { name: 'until', label: 'Until', type: 'datetime-local', hint: 'Your local time, to the end of that minute.' },
    ], null, 'Apply filters', async (v) => {
      const next = { actor: v.actor, resource: v.resource };
      for (const k of ['since', 'until']) {
        if (!v[k]) continue;
        const d = new Date(v[k]);
        if (isNaN(d)) { f.showError({ field: k, message: 'Not a valid date and time.' }); return; }
        if (k === 'until' && v[k].length <= 16) d.setSeconds(59, 999);
        next[k] = d.toISOString();
      }
      if (next.since && next.until && next.until < next.since) { f.showError({ field: 'until', message: 'Until is before since.' }); return; }
      msg.replaceChildren();
      filter = next;
      await load(true);
    }, h('button', { type: 'button', id: 'audit-filter-clear', onclick: async () => {
      for (const k in f.inputs) f.inputs[k].value = '';
      f.clear(); msg.replaceChildren(); filter = {};
      try { await load(true); } catch (err) { errorBox(msg, err); }
    } }, 'Clear'));
    const kinds = h('datalist', { id: 'audit-resource-kinds' }, AUDIT_KINDS.map((k) => h('option', { value: k })));
    f.inputs.resource.setAttribute('list', 'audit-resource-kinds');
    main.replaceChildren(
      h('div', { class: 'row' }, h('h1', {}, 'Audit log'), h('span', { class: 'spacer' }), info),
      h('p', { class: 'hint' }, 'Every change to the domain, who made it and when, newest first.'),
      h('div', { class: 'panel' }, h('h2', {}, 'Filters'), f.form, kinds),
      msg,
      h('div', { class: 'panel' }, table, empty, h('div', { class: 'row' }, more)));
    await load(true);
  }

  // ---------- jobs ----------
  const JOB_EVENTS = /^(rolling|deploy)\./;
  function jobWhat(j) {
    const d = j.deploy;
    if (d) {
      const to = (d.application || 'the sample app') + (d.version ? '@' + d.version : '');
      return d.rollback ? `Rollback to ${to}` : `Deploy of ${to}`;
    }
    return j.type === 'rolling-restart' ? 'Rolling restart' : (j.type || 'Job');
  }
  function jobProgress(j) {
    const steps = list(j.steps, 'steps');
    const total = steps.length;
    const done = j.state === 'completed' ? total : steps.filter((s) => s.state === 'done').length;
    return { done, total };
  }
  function jobBadge(st, id) { return h('span', { class: 'job-state ' + (st || 'unknown'), 'data-state': st || '', id }, st || '?'); }
  function stepBadge(st) {
    const cls = st === 'done' ? 'ok' : st === 'failed' ? 'warn' : st === 'pending' ? '' : 'busy';
    return h('span', { class: 'badge step ' + cls, 'data-step': st }, st);
  }
  async function pageJobs(main, live, id) {
    if (id) { await pageJob(main, live, id); return; }
    document.title = 'Jobs · Tandem';
    const box = h('div', { class: 'panel' });
    const updated = h('span', { class: 'muted', id: 'jobs-updated' });
    let jobs = [];
    const draw = () => {
      box.replaceChildren(tableOf('jobs-table', ['Job', 'Kind', 'Cluster', 'State', 'Progress', 'By', 'Started', 'Finished'], jobs.map((j) => {
        const p = jobProgress(j);
        return h('tr', { 'data-job': j.id, 'data-state': j.state },
          h('td', {}, h('a', { href: '#/jobs/' + j.id }, '#' + j.id)),
          h('td', {}, jobWhat(j)),
          h('td', {}, h('a', { href: '#/clusters/' + enc(j.cluster) }, j.cluster)),
          h('td', {}, jobBadge(j.state), j.current ? h('div', { class: 'hint' }, 'now ' + j.current) : null),
          h('td', { class: 'nowrap' }, h('progress', { max: Math.max(p.total, 1), value: p.done, 'aria-label': `job ${j.id}: ${p.done} of ${p.total} servers` }), ` ${p.done}/${p.total}`),
          h('td', {}, j.actor || ''),
          h('td', { class: 'nowrap' }, when(j.created_at)),
          h('td', { class: 'nowrap' }, when(j.finished_at)));
      }), 'No jobs yet. A rolling restart or a deploy, started from a cluster\'s page, appears here.'));
    };
    let inflight = false;
    const reload = async () => {
      if (inflight) return;
      inflight = true;
      try {
        const js = list(await api('GET', '/jobs?limit=50'), 'jobs');
        if (!live()) return;
        jobs = js; draw();
        updated.textContent = 'Updated ' + new Date().toLocaleTimeString();
      } catch (err) { if (live()) updated.textContent = 'Update failed: ' + err.message; } finally { inflight = false; }
    };
    main.replaceChildren(
      h('div', { class: 'row' }, h('h1', {}, 'Jobs'), h('span', { class: 'spacer' }), updated),
      h('p', { class: 'hint' }, 'Rolling restarts and deploys, newest first. Start one from a cluster\'s page.'),
      box);
    const soon = later(reload, 200);
    T.onEvent((e) => { if (JOB_EVENTS.test(e.type)) soon(); });
    // A fallback for a missed event: every 2 s while a job runs, else every 10 s.
    let ticks = 0;
    every(live, 2000, () => { if (jobs.some((j) => j.state === 'running') || ++ticks % 5 === 0) reload(); });
    await reload();
  }
  async function pageJob(main, live, id) {
    document.title = `Job ${id} · Tandem`;
    if (!/^[1-9][0-9]*$/.test(id)) throw new APIError(404, 'not_found', `No job ${id}.`, '');
    let job = await api('GET', '/jobs/' + id);
    if (!live()) return;
    const kind = h('dd', { id: 'job-kind' });
    const cluster = h('dd', { id: 'job-cluster' });
    const state = h('dd', {});
    const actorEl = h('dd', { id: 'job-actor' });
    const created = h('dd', { id: 'job-created' });
    const finished = h('dd', { id: 'job-finished' });
    const current = h('dd', { id: 'job-current' });
    const bar = h('progress', { id: 'job-bar', max: 1, value: 0 });
    const barText = h('span', { id: 'job-bar-text', class: 'muted' });
    const errBox = h('div', { id: 'job-error' });
    const steps = h('div', { id: 'job-steps-box' });
    const evList = h('ul', { class: 'events', id: 'job-events' });
    const updated = h('span', { class: 'muted', id: 'job-updated' });
    const draw = (j) => {
      job = j;
      const p = jobProgress(j);
      kind.textContent = jobWhat(j);
      cluster.replaceChildren(h('a', { href: '#/clusters/' + enc(j.cluster) }, j.cluster));
      state.replaceChildren(...[jobBadge(j.state, 'job-state'), j.resumes ? h('span', { class: 'hint' }, ` resumed ${j.resumes}×`) : null].filter(Boolean));
      actorEl.textContent = j.actor || '—';
      created.replaceChildren(when(j.created_at));
      finished.replaceChildren(when(j.finished_at));
      current.textContent = j.current ? `${j.current} (step ${j.step} of ${p.total})` : '—';
      bar.max = Math.max(p.total, 1); bar.value = p.done;
      bar.dataset.done = String(p.done); bar.dataset.total = String(p.total);
      barText.textContent = `${p.done} of ${p.total} servers` + (j.state === 'completed' ? ' — completed' : j.state === 'failed' ? ' — failed' : '');
      if (j.error) errBox.replaceChildren(h('div', { class: 'form-error', role: 'alert' }, j.error)); else errBox.replaceChildren();
      steps.replaceChildren(tableOf('job-steps', ['#', 'Server', 'Step', 'Sessions before', 'Sessions after', 'PID', 'Started', 'Finished', 'Note'], list(j.steps, 'steps').map((s, i) => h('tr', { 'data-server': s.server, 'data-step': s.state, class: s.server === j.current ? 'current' : '' },
        h('td', {}, String(i + 1)),
        h('td', {}, h('a', { href: '#/servers/' + enc(s.server) }, s.server)),
        h('td', {}, stepBadge(s.state)),
        h('td', {}, String(s.sessions_before ?? '')),
        h('td', {}, s.state === 'done' || s.state === 'failed' ? String(s.sessions_after ?? '') : ''),
        h('td', { class: 'mono' }, s.pid_before || s.pid ? `${s.pid_before || '—'} → ${s.pid || '—'}` : '—'),
        h('td', { class: 'nowrap' }, when(s.started_at)),
        h('td', { class: 'nowrap' }, when(s.finished_at)),
        h('td', {}, [s.error ? h('span', { class: 'field-error' }, s.error) : null, s.error && s.note ? ' ' : null, s.note || '']))), 'No steps.'));
      updated.textContent = 'Updated ' + new Date().toLocaleTimeString();
    };
    let inflight = false; let again = false;
    const refresh = async () => {
      if (inflight) { again = true; return; }
      inflight = true;
      try {
        const j = await api('GET', '/jobs/' + id);
        if (live()) draw(j);
      } catch (err) {
        if (live()) updated.textContent = 'Update failed: ' + err.message;
      } finally {
        inflight = false;
        if (again && live()) { again = false; refresh(); }
      }
    };
    const eventItem = (e) => h('li', { 'data-id': e.id, 'data-type': e.type },
      h('span', { class: 'mono muted' }, '#' + e.id),
      h('span', { class: 'etime muted' }, T.fmtClock(e.time)),
      h('span', { class: 'etype ' + e.type }, e.type),
      h('span', { class: 'emsg' }, e.server ? [h('strong', {}, e.server), ' '] : null, e.message || ''));
    const addEvent = (e, fresh) => {
      if ($(`li[data-id="${e.id}"]`, evList)) return;
      const none = $('li.muted', evList); if (none) none.remove();
      const li = eventItem(e);
      if (fresh) { li.classList.add('fresh'); evList.prepend(li); } else evList.append(li);
    };
    main.replaceChildren(
      h('p', {}, h('a', { href: '#/jobs' }, '← Jobs')),
      h('div', { class: 'row' }, h('h1', {}, `Job ${id}`), h('span', { class: 'spacer' }), updated),
      h('section', { class: 'panel', id: 'job-detail', 'data-job': id },
        h('dl', { class: 'facts' },
          h('dt', {}, 'Kind'), kind, h('dt', {}, 'Cluster'), cluster, h('dt', {}, 'State'), state,
          h('dt', {}, 'Now'), current, h('dt', {}, 'Started by'), actorEl, h('dt', {}, 'Started'), created, h('dt', {}, 'Finished'), finished),
        h('div', { class: 'job-progress' }, h('label', { for: 'job-bar' }, 'Progress'), bar, barText),
        errBox),
      h('section', { class: 'panel' }, h('h2', {}, 'Steps'), steps),
      h('section', { class: 'panel' }, h('h2', {}, 'Events of this job'), evList));
    draw(job);
    const terminal = /\.(completed|failed)$/;
    T.onEvent((e) => {
      if (!JOB_EVENTS.test(e.type) || (e.cluster && e.cluster !== job.cluster)) return;
      addEvent(e, true);
      refresh();
      // The roller records its last event just before it saves the job:
      // look once more shortly after.
      if (terminal.test(e.type)) setTimeout(() => { if (live()) refresh(); }, 500);
    });
    // A fallback for a missed event: poll while the job runs.
    every(live, 2000, () => { if (job.state === 'running') refresh(); });
    // The job's earlier events: the cluster's rolling and deploy events
    // since the job began.
    try {
      const types = 'rolling.started,rolling.step,rolling.completed,rolling.failed,rolling.resumed,deploy.started,deploy.step,deploy.completed,deploy.failed,deploy.resumed';
      const evs = list(await api('GET', `/events?limit=200&cluster=${enc(job.cluster)}&type=${types}`), 'events');
      if (!live()) return;
      const from = new Date(job.created_at).getTime() - 1000;
      const to = job.finished_at ? new Date(job.finished_at).getTime() + 1000 : Infinity;
      evs.filter((e) => { const t = new Date(e.time).getTime(); return t >= from && t <= to; })
        .sort((a, b) => b.id - a.id).forEach((e) => addEvent(e, false));
    } catch (err) { /* the live ones still come */ }
    if (!evList.children.length) evList.append(h('li', { class: 'muted' }, 'No events yet.'));
  }

  // ---------- web servers ----------
  async function commandAction(kind, path, name, action, buttons, out, after) {
    buttons.forEach((b) => { b.disabled = true; });
    notice(out, `${action} ${kind} ${name}…`);
    try {
      const r = await api('POST', `${path}/${enc(name)}/${action}`, {});
      notice(out, `${action} ${name}: done${r && r.pid ? ' (pid ' + r.pid + ')' : ''}.`, 'ok');
      if (after) after();
    } catch (err) {
      errorBox(out, err);
    } finally { buttons.forEach((b) => { b.disabled = false; }); }
  }
  function actionButtons(prefix, name, out, after) {
    const buttons = ['start', 'stop', 'restart'].map((a) => h('button', { type: 'button', id: `${prefix}-${a}-${name}`, 'data-action': a, 'aria-label': `${a[0].toUpperCase() + a.slice(1)} web server ${name}`,
      onclick: () => commandAction('web server', '/webservers', name, a, buttons, out, after) }, a[0].toUpperCase() + a.slice(1)));
    return buttons;
  }
  const wsDefs = (clusters, nms, edit) => [
    { name: 'name', label: 'Name', required: true, readonly: edit, hint: edit ? undefined : 'Lower case letters, digits and dashes.' },
    { name: 'cluster', label: 'Cluster', type: 'select', options: clusters.map((c) => c.name), hint: 'The cluster whose servers it routes to.' },
    { name: 'listen', label: 'Listen address', required: true, placeholder: '127.0.0.1:8080', hint: 'host:port the users connect to.' },
    { name: 'node_manager', label: 'Node manager', type: 'select', options: [['', 'None: started by hand']].concat(nms.map((n) => n.name)), hint: 'Starts, stops and restarts it.' },
  ];
  async function pageWebServers(main, live, name) {
    if (name) { await pageWebServer(main, live, name); return; }
    document.title = 'Web servers · Tandem';
    const [ws, clusters, nms] = await Promise.all([api('GET', '/webservers'), api('GET', '/clusters'), api('GET', '/node-managers')]);
    if (!live()) return;
    const cs = list(clusters, 'clusters');
    const canEdit = roleAtLeast('operator');
    const out = h('div', { id: 'webservers-msg' });
    const cells = {};
    const refreshStates = async () => {
      const t = await api('GET', '/topology').catch(() => null);
      if (!t || !live()) return;
      const st = liveOf(t);
      for (const [n, c] of Object.entries(cells)) {
        const l = st[n] || {};
        c.state.replaceChildren(stateBadge(l.state)); c.pid.textContent = l.pid ? String(l.pid) : '—';
      }
    };
    const rows = list(ws, 'webservers').map((w) => {
      cells[w.name] = { state: h('td', { class: 'ws-state' }, stateBadge('')), pid: h('td', {}, '—') };
      return h('tr', { 'data-webserver': w.name },
        h('td', {}, h('a', { href: '#/webservers/' + enc(w.name) }, w.name)),
        h('td', {}, h('a', { href: '#/clusters/' + enc(w.cluster) }, w.cluster)),
        h('td', { class: 'mono' }, w.listen),
        h('td', {}, w.node_manager || '—'),
        cells[w.name].state, cells[w.name].pid,
        canEdit ? h('td', {}, h('div', { class: 'row tight' }, actionButtons('ws', w.name, out, () => refreshStates()))) : null);
    });
    const f = makeForm('webserver-new', wsDefs(cs, list(nms, 'node_managers'), false), null, 'Create web server', async (v) => {
      const w = await api('POST', '/webservers', v);
      location.hash = '#/webservers/' + enc(w && w.name ? w.name : v.name);
    });
    main.replaceChildren(
      h('h1', {}, 'Web servers'),
      h('p', { class: 'hint' }, 'They route each request by its session cookie to the primary, then the backup, then any live server.'),
      out,
      h('div', { class: 'panel' }, tableOf('webservers-table', ['Name', 'Cluster', 'Listen', 'Node manager', 'State', 'PID'].concat(canEdit ? ['Actions'] : []), rows, 'No web servers yet.')),
      h('div', { class: 'panel' }, h('h2', {}, 'New web server'), !canEdit ? viewOnly() : cs.length ? f.form : h('p', {}, 'Create a cluster first: ', h('a', { href: '#/clusters' }, 'Clusters'))));
    const soon = later(refreshStates, 150);
    T.onEvent((e) => { if (cells[e.server] || /^(process|server)\./.test(e.type)) soon(); });
    every(live, 5000, refreshStates);
    await refreshStates();
  }
  async function pageWebServer(main, live, name) {
    document.title = name + ' · Web servers · Tandem';
    const [w, clusters, nms] = await Promise.all([api('GET', '/webservers/' + enc(name)), api('GET', '/clusters'), api('GET', '/node-managers')]);
    if (!live()) return;
    const canEdit = roleAtLeast('operator');
    const saved = h('div', { id: 'webserver-saved' });
    const out = h('div', { id: 'webserver-action-out' });
    const stateEl = h('span', { id: 'webserver-state' }, stateBadge(''));
    const pidEl = h('span', { class: 'muted', id: 'webserver-pid' });
    const refreshState = async () => {
      const t = await api('GET', '/topology').catch(() => null);
      if (!t || !live()) return;
      const l = liveOf(t)[name] || {};
      stateEl.replaceChildren(stateBadge(l.state)); pidEl.textContent = l.pid ? 'pid ' + l.pid : '';
    };
    const f = makeForm('webserver-edit', wsDefs(list(clusters, 'clusters'), list(nms, 'node_managers'), true), w, 'Save', async (v) => {
      await api('PUT', '/webservers/' + enc(name), { ...v, name });
      notice(saved, 'Web server saved; its node manager and routing table follow.', 'ok');
    }, canEdit ? twoStep('Delete web server', 'Confirm delete', async () => {
      try { await api('DELETE', '/webservers/' + enc(name)); location.hash = '#/webservers'; } catch (err) { f.showError(err); }
    }) : null);
    if (!canEdit) readOnly(f);
    main.replaceChildren(
      h('p', {}, h('a', { href: '#/webservers' }, '← Web servers')),
      h('div', { class: 'row' }, h('h1', {}, 'Web server ', name), stateEl, pidEl, h('span', { class: 'muted' }, `cluster ${w.cluster} · ${w.listen}`)),
      ...(canEdit ? [h('div', { class: 'panel' }, h('h2', {}, 'Actions'), h('div', { class: 'row' }, actionButtons('webserver', name, out, () => refreshState())),
        w.node_manager ? null : h('p', { class: 'hint' }, 'No node manager: start and stop it by hand, or choose one below.'), out)] : []),
      h('div', { class: 'panel' }, h('h2', {}, 'Definition'), saved, canEdit ? f.form : [viewOnly(), f.form]));
    const soon = later(refreshState, 150);
    T.onEvent((e) => { if (e.server === name || /^process\./.test(e.type)) soon(); });
    every(live, 5000, refreshState);
    await refreshState();
  }

  // ---------- node managers ----------
  const nmDefs = (edit) => [
    { name: 'name', label: 'Name', required: true, readonly: edit, hint: edit ? undefined : 'Lower case letters, digits and dashes; the name it starts with (--name).' },
    { name: 'listen', label: 'Listen address', required: true, placeholder: '127.0.0.1:9740', hint: 'host:port of its own health and metrics endpoint.' },
  ];
  function hostText(hi) {
    if (!hi) return '—';
    const gib = hi.memory_bytes ? ` · ${(hi.memory_bytes / 2 ** 30).toFixed(1)} GiB` : '';
    return `${hi.name || '?'} · ${hi.cpus || '?'} CPUs${gib}`;
  }
  async function pageNodeManagers(main, live, name) {
    if (name) { await pageNodeManager(main, live, name); return; }
    document.title = 'Node managers · Tandem';
    const [nms, servers, ws] = await Promise.all([api('GET', '/node-managers'), api('GET', '/servers'), api('GET', '/webservers')]);
    if (!live()) return;
    const canEdit = roleAtLeast('operator');
    const under = (n) => list(servers, 'servers').filter((s) => s.node_manager === n).map((s) => s.name)
      .concat(list(ws, 'webservers').filter((w) => w.node_manager === n).map((w) => w.name));
    const cells = {};
    const rows = list(nms, 'node_managers').map((n) => {
      cells[n.name] = { state: h('td', {}, stateBadge('')), pid: h('td', {}, '—'), host: h('td', {}, '—') };
      const procs = under(n.name);
      return h('tr', { 'data-node-manager': n.name },
        h('td', {}, h('a', { href: '#/node-managers/' + enc(n.name) }, n.name)),
        h('td', { class: 'mono' }, n.listen),
        cells[n.name].state, cells[n.name].pid, cells[n.name].host,
        h('td', {}, procs.length ? procs.join(', ') : h('span', { class: 'muted' }, 'none')));
    });
    const refreshStates = async () => {
      const t = await api('GET', '/topology').catch(() => null);
      if (!t || !live()) return;
      const st = liveOf(t);
      for (const [n, c] of Object.entries(cells)) {
        const l = st[n] || {};
        c.state.replaceChildren(stateBadge(l.state)); c.pid.textContent = l.pid ? String(l.pid) : '—'; c.host.textContent = hostText(l.host_info);
      }
    };
    const f = makeForm('nm-new', nmDefs(false), null, 'Create node manager', async (v) => {
      const n = await api('POST', '/node-managers', v);
      location.hash = '#/node-managers/' + enc(n && n.name ? n.name : v.name);
    });
    main.replaceChildren(
      h('h1', {}, 'Node managers'),
      h('p', { class: 'hint' }, 'One per machine: it starts, stops and restarts the managed servers and web servers placed on it.'),
      h('div', { class: 'panel' }, tableOf('node-managers-table', ['Name', 'Listen', 'State', 'PID', 'Host', 'Processes'], rows, 'No node managers yet.')),
      h('div', { class: 'panel' }, h('h2', {}, 'New node manager'), canEdit ? f.form : viewOnly()));
    const soon = later(refreshStates, 150);
    T.onEvent((e) => { if (cells[e.server] || /^server\./.test(e.type)) soon(); });
    every(live, 5000, refreshStates);
    await refreshStates();
  }
  async function pageNodeManager(main, live, name) {
    document.title = name + ' · Node managers · Tandem';
    const [n, servers, ws, topo] = await Promise.all([api('GET', '/node-managers/' + enc(name)), api('GET', '/servers'), api('GET', '/webservers'), api('GET', '/topology').catch(() => null)]);
    if (!live()) return;
    const canEdit = roleAtLeast('operator');
    const l = liveOf(topo)[name] || {};
    const saved = h('div', { id: 'nm-saved' });
    const f = makeForm('nm-edit', nmDefs(true), n, 'Save', async (v) => {
      await api('PUT', '/node-managers/' + enc(name), { ...v, name });
      notice(saved, 'Node manager saved.', 'ok');
    }, canEdit ? twoStep('Delete node manager', 'Confirm delete', async () => {
      try { await api('DELETE', '/node-managers/' + enc(name)); location.hash = '#/node-managers'; } catch (err) { f.showError(err); }
    }) : null);
    if (!canEdit) readOnly(f);
    const procs = list(servers, 'servers').filter((s) => s.node_manager === name).map((s) => h('li', {}, 'server ', h('a', { href: '#/servers/' + enc(s.name) }, s.name)))
      .concat(list(ws, 'webservers').filter((w) => w.node_manager === name).map((w) => h('li', {}, 'web server ', h('a', { href: '#/webservers/' + enc(w.name) }, w.name))));
    main.replaceChildren(
      h('p', {}, h('a', { href: '#/node-managers' }, '← Node managers')),
      h('div', { class: 'row' }, h('h1', {}, 'Node manager ', name), h('span', { id: 'nm-state' }, stateBadge(l.state)), h('span', { class: 'muted' }, hostText(l.host_info))),
      h('div', { class: 'panel' }, h('h2', {}, 'Processes it runs'), procs.length ? h('ul', { id: 'nm-processes' }, procs) : h('p', { class: 'muted' }, 'None. Choose it as the node manager of a server or web server.')),
      h('div', { class: 'panel' }, h('h2', {}, 'Definition'), saved, canEdit ? f.form : [viewOnly(), f.form],
        canEdit && procs.length ? h('p', { class: 'hint' }, 'It can be deleted once no server or web server uses it.') : null));
  }

  // ---------- HAProxy export ----------
  let haproxyURL = null; // the current download's Blob URL, revoked when replaced
  async function pageHAProxy(main, live, name) {
    document.title = 'HAProxy export · Tandem';
    const cs = list(await api('GET', '/clusters'), 'clusters');
    if (!live()) return;
    if (haproxyURL) { URL.revokeObjectURL(haproxyURL); haproxyURL = null; }
    const sel = h('select', { id: 'haproxy-cluster', name: 'cluster' },
      h('option', { value: '', selected: !name, disabled: true }, 'Choose a cluster'),
      cs.map((c) => h('option', { value: c.name, selected: c.name === name }, c.name)));
    const listen = h('input', { id: 'haproxy-listen', name: 'listen', placeholder: 'default: the cluster\'s first web server', autocomplete: 'off', 'aria-describedby': 'haproxy-listen-hint' });
    const out = h('div', { id: 'haproxy-out' });
    const msg = h('div', { id: 'haproxy-msg' });
    const show = h('button', { type: 'submit', class: 'primary', id: 'haproxy-show' }, 'Show configuration');
    const form = h('form', { class: 'fields', id: 'haproxy-form', novalidate: true },
      h('label', { for: 'haproxy-cluster' }, 'Cluster'), h('div', {}, sel),
      h('label', { for: 'haproxy-listen' }, 'Frontend address'), h('div', {}, listen, h('div', { class: 'hint', id: 'haproxy-listen-hint' }, 'Optional host:port the HAProxy frontend binds.')),
      h('div', { class: 'actions' }, show));
    const load = async () => {
      const c = sel.value;
      if (!c) { notice(out, 'Choose a cluster to see its configuration.'); return; }
      msg.replaceChildren();
      show.disabled = true;
      try {
        const q = listen.value.trim() ? '?listen=' + enc(listen.value.trim()) : '';
        const res = await fetch(`/api/v1/clusters/${enc(c)}/haproxy.cfg${q}`, { credentials: 'same-origin', headers: { Accept: 'text/plain' } });
        const text = await res.text();
        if (!live()) return;
        if (!res.ok) {
          let e = {};
          try { e = (JSON.parse(text) || {}).error || {}; } catch (x) { e = {}; }
          // A lapsed session: the shared api() shows the login form.
          if (res.status === 401) await api('GET', '/clusters').catch(() => {});
          throw new APIError(res.status, e.code || 'http_' + res.status, e.message || res.statusText || 'Request failed', e.field);
        }
        if (haproxyURL) URL.revokeObjectURL(haproxyURL);
        haproxyURL = URL.createObjectURL(new Blob([text], { type: 'text/plain' }));
        const pre = h('pre', { id: 'haproxy-cfg', class: 'config', tabindex: 0, 'aria-label': `HAProxy configuration of ${c}` }, text);
        const copyOut = h('div', { id: 'haproxy-copy-out' });
        out.replaceChildren(
          h('div', { class: 'row' },
            h('h2', {}, 'haproxy-' + c + '.cfg'), h('span', { class: 'spacer' }),
            h('button', { type: 'button', id: 'haproxy-copy', onclick: () => copyText(text, pre, copyOut) }, 'Copy'),
            h('a', { class: 'btn', id: 'haproxy-download', href: haproxyURL, download: `haproxy-${c}.cfg` }, 'Download')),
          copyOut, pre);
      } catch (err) {
        out.replaceChildren();
        if (err.field === 'listen') errorBox(msg, { message: 'Frontend address: ' + err.message }); else errorBox(msg, err);
      } finally { show.disabled = false; }
    };
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      if (sel.value !== (name || '')) { location.hash = '#/haproxy/' + enc(sel.value); return; }
      load();
    });
    sel.addEventListener('change', () => { if (sel.value) location.hash = '#/haproxy/' + enc(sel.value); });
    main.replaceChildren(
      h('h1', {}, 'HAProxy export'),
      h('p', { class: 'hint' }, 'An equivalent HAProxy configuration for a cluster, for operators who keep their own load balancer: the session cookie\'s route picks the primary, the backup is the fallback, and every server is health-checked.'),
      h('div', { class: 'panel' }, cs.length ? form : h('p', {}, 'No clusters yet: ', h('a', { href: '#/clusters' }, 'create one')), msg, out));
    if (name) await load(); else if (cs.length) notice(out, 'Choose a cluster to see its configuration.');
  }

  // ---------- registration ----------
  T.page('jobs', 'Jobs', pageJobs);
  T.page('webservers', 'Web servers', pageWebServers);
  T.page('node-managers', 'Node managers', pageNodeManagers);
  T.page('haproxy', 'HAProxy', pageHAProxy);
  T.page('audit', 'Audit', pageAudit);
  T.page('users', 'Users', pageUsers, 'admin');
  T.page('tokens', 'API tokens', pageTokens, 'admin');
})();
