// The Samband web console: a client of the admin API (/api/v1) in the same origin. The token is
// kept in sessionStorage and sent as a bearer header (never a cookie, so no request can be forged
// from another site). Everything the API returns is put on the page as text, never as HTML.

const TOKEN_KEY = 'samband.token';
const $ = (id) => document.getElementById(id);
const views = ['login', 'overview', 'deliveries', 'delivery', 'errors', 'audit'];
let me = null;  // {name, roles}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(method, path, body) {
  const headers = {Authorization: 'Bearer ' + sessionStorage.getItem(TOKEN_KEY)};
  const init = {method, headers, cache: 'no-store', credentials: 'omit'};
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const msg = data && data.error ? data.error.message : `HTTP ${res.status}`;
    if (res.status === 401 && method === 'GET' && path === '/api/v1/whoami') throw new ApiError(401, msg);
    if (res.status === 401) {
      logout('Your token was refused: ' + msg);
    }
    throw new ApiError(res.status, msg);
  }
  return data;
}

function el(tag, text, attrs) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
  if (rows.length === 0) {
    const tr = el('tr');
    const td = el('td', 'nothing', {class: 'empty'});
    td.colSpan = tbody.parentElement.querySelectorAll('thead th').length || 1;
    tr.append(td);
    tbody.append(tr);
  }
}

function row(cells) {
  const tr = el('tr');
  for (const c of cells) {
    const td = el('td');
    if (c instanceof Node) td.append(c);
    else td.textContent = c === undefined || c === null ? '' : String(c);
    tr.append(td);
  }
  return tr;
}

function say(text, isError) {
  const m = $('message');
  m.textContent = text || '';
  m.className = isError ? 'error' : '';
}

function has(role) {
  return me !== null && me.roles.includes(role);
}

function show(view) {
  for (const v of views) $(v).hidden = v !== view;
  for (const b of document.querySelectorAll('#nav button')) {
    b.setAttribute('aria-current', b.dataset.view === view ? 'page' : 'false');
  }
}

async function go(view, arg) {
  say('');
  show(view);
  try {
    if (view === 'overview') await overview();
    else if (view === 'deliveries') await deliveries();
    else if (view === 'delivery') await delivery(arg);
    else if (view === 'errors') await errors();
    else if (view === 'audit') await audit();
  } catch (e) {
    if (e.status !== 401) say(e.message, true);
  }
}

// ---- login

async function login(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  try {
    me = await api('GET', '/api/v1/whoami');
  } catch (e) {
    sessionStorage.removeItem(TOKEN_KEY);
    me = null;
    $('login-error').textContent = e.status === 401 ? 'This token is not valid: ' + e.message : e.message;
    return;
  }
  $('login-error').textContent = '';
  $('who').textContent = `${me.name} (${me.roles.join(', ')})`;
  for (const b of document.querySelectorAll('#nav button')) {
    const needs = (b.dataset.needs || '').split(' ').filter(Boolean);
    b.hidden = needs.length > 0 && !needs.some(has);
  }
  $('nav').hidden = false;
  $('logout').hidden = false;
  await go('overview');
}

function logout(why) {
  sessionStorage.removeItem(TOKEN_KEY);
  me = null;
  $('nav').hidden = true;
  $('logout').hidden = true;
  $('who').textContent = '';
  $('token').value = '';
  $('login-error').textContent = why || '';
  show('login');
}

// ---- overview

const STATES = ['pending', 'in_flight', 'delivered', 'acknowledged', 'failed', 'dead', 'blocked', 'held'];

async function overview() {
  const s = await api('GET', '/api/v1/status');
  $('alerts').replaceChildren(...(s.alerts || []).map((a) =>
    el('li', `Alert since ${a.since}: ${a.message}`, {'data-kind': a.kind})));
  const head = el('tr');
  for (const h of ['Destination', ...STATES, 'Oldest waiting (s)']) head.append(el('th', h));
  $('queues').tHead.replaceChildren(head);
  fill($('queues').tBodies[0], s.destinations.map((d) =>
    row([d.destination, ...STATES.map((k) => d[k]), d.oldest_waiting_s])));
  fill($('endpoints').tBodies[0], s.endpoints.map((e) => {
    const r = row([e.name, e.plugin, e.kinds, e.state + (e.stuck ? ' (stuck)' : ''), e.failure]);
    r.dataset.state = e.state;
    return r;
  }));
}

// ---- deliveries

function linkTo(id) {
  const b = el('button', id, {type: 'button', class: 'link', 'data-delivery': id});
  b.addEventListener('click', () => go('delivery', id));
  return b;
}

async function deliveries() {
  const f = new FormData($('delivery-filter'));
  const q = new URLSearchParams({limit: '500'});
  for (const k of ['state', 'destination', 'event']) {
    const v = (f.get(k) || '').trim();
    if (v) q.set(k, v);
  }
  const list = await api('GET', '/api/v1/deliveries?' + q.toString());
  fill($('delivery-list').tBodies[0], list.map((d) => {
    const r = row([linkTo(d.id), d.event_type, d.destination, d.state, d.attempts, d.updated_at, d.reason]);
    r.dataset.id = d.id;
    r.dataset.state = d.state;
    r.dataset.type = d.event_type;
    return r;
  }));
}

async function delivery(id) {
  const d = await api('GET', '/api/v1/deliveries/' + encodeURIComponent(id));
  const x = d.delivery;
  $('delivery-title').textContent = `Delivery ${x.id}`;
  const dl = $('delivery-fields');
  dl.replaceChildren();
  const fields = [['Event', x.event_id], ['Event type', x.event_type], ['Destination', x.destination],
    ['Route', x.route], ['State', x.state], ['Attempts', x.attempts], ['Next attempt', x.next_attempt_at],
    ['External id', x.external_id], ['Reason', x.reason], ['Created', x.created_at], ['Updated', x.updated_at]];
  for (const [k, v] of fields) {
    dl.append(el('dt', k));
    dl.append(el('dd', v, {'data-field': k.toLowerCase().replace(/ /g, '_')}));
  }
  $('retry').hidden = !(has('operator') && ['dead', 'failed', 'held'].includes(x.state));
  $('override').hidden = !(has('clinician') && ['blocked', 'held'].includes(x.state));
  $('retry').dataset.id = x.id;
  $('override').dataset.id = x.id;
  fill($('attempts').tBodies[0], (d.attempts || []).map((a) =>
    row([a.n, a.started_at, a.ended_at, a.outcome, a.reason])));
  fill($('receipts').tBodies[0], (d.receipts || []).map((r) => row([r.at, r.kind, r.text])));
  fill($('trail').tBodies[0], (d.audit || []).map((a) => row([a.at, a.actor, a.action, a.detail])));
}

// Asks for a reason in the dialog; resolves to the text, or null when cancelled.
function askReason(title) {
  const dlg = $('reason-dialog');
  $('reason-title').textContent = title;
  $('reason').value = '';
  dlg.showModal();
  return new Promise((resolve) => {
    const done = (value) => {
      $('reason-form').removeEventListener('submit', onSubmit);
      $('reason-cancel').removeEventListener('click', onCancel);
      dlg.removeEventListener('cancel', onCancel);
      dlg.close();
      resolve(value);
    };
    const onSubmit = (ev) => {
      ev.preventDefault();
      const v = $('reason').value.trim();
      if (v) done(v);
    };
    const onCancel = (ev) => {
      ev.preventDefault();
      done(null);
    };
    $('reason-form').addEventListener('submit', onSubmit);
    $('reason-cancel').addEventListener('click', onCancel);
    dlg.addEventListener('cancel', onCancel);
  });
}

async function act(verb, id) {
  const title = verb === 'retry' ? `Retry delivery ${id}` : `Override the consent gate for delivery ${id}`;
  const reason = await askReason(title);
  if (reason === null) return;
  try {
    await api('POST', `/api/v1/deliveries/${encodeURIComponent(id)}/${verb}`, {reason});
    await delivery(id);
    say(verb === 'retry' ? `Delivery ${id} is pending again.` : `Delivery ${id} was let past the gate.`);
  } catch (e) {
    if (e.status !== 401) say(e.message, true);
  }
}

// ---- refused inputs

async function errors() {
  $('error-input').hidden = true;
  const list = await api('GET', '/api/v1/errors?limit=500');
  fill($('error-list').tBodies[0], list.map((e) => {
    let action = '';
    if (has('clinician')) {
      action = el('button', 'Show input…', {type: 'button', 'data-error': e.id});
      action.addEventListener('click', () => showInput(e.id));
    }
    return row([e.id, e.source, e.reason, e.idempotency_key, action]);
  }));
}

async function showInput(id) {
  const reason = await askReason(`Read the refused input ${id} (patient data)`);
  if (reason === null) return;
  try {
    const e = await api('GET', `/api/v1/errors/${encodeURIComponent(id)}?reason=${encodeURIComponent(reason)}`);
    $('error-input-title').textContent = `Input ${e.id} from ${e.source}: ${e.reason}`;
    $('error-payload').textContent = e.payload;
    $('error-input').hidden = false;
  } catch (err) {
    if (err.status !== 401) say(err.message, true);
  }
}

// ---- audit log

async function audit() {
  const subject = (new FormData($('audit-filter')).get('subject') || '').trim();
  const q = new URLSearchParams({limit: '500'});
  if (subject) q.set('subject', subject);
  const list = await api('GET', '/api/v1/audit?' + q.toString());
  fill($('audit-list').tBodies[0], list.map((a) => row([a.id, a.at, a.actor, a.action, a.subject, a.detail])));
}

// ---- wiring

function start() {
  $('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    login($('token').value.trim());
  });
  $('logout').addEventListener('click', () => logout(''));
  for (const b of document.querySelectorAll('#nav button')) {
    b.addEventListener('click', () => go(b.dataset.view));
  }
  $('delivery-filter').addEventListener('submit', (ev) => {
    ev.preventDefault();
    go('deliveries');
  });
  $('audit-filter').addEventListener('submit', (ev) => {
    ev.preventDefault();
    go('audit');
  });
  $('retry').addEventListener('click', () => act('retry', $('retry').dataset.id));
  $('override').addEventListener('click', () => act('override', $('override').dataset.id));
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) login(saved);
  else show('login');
}

start();
