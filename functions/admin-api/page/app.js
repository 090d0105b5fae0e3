// The "Integrations → KeyCRM" page: connect, activate, configure every block of the article,
// copy the webhook URLs, save; then the "Connected" card with Edit and Delete, the status of
// the connection, previews and syncs. Talks only to the admin API next to it.

import {h, clear} from './dom.js';
import {t, setLang, getLang, LANGS} from './i18n.js';
import * as api from './api.js';
import * as session from './session.js';
import {draftFrom, payload, elementFor} from './settings.js';
import {
  section, keyBlock, activeBlock, syncBlock, categoriesBlock, extraBlock, ordersBlock, paymentBlock,
  deliveryBlock, webhookBlock,
} from './blocks.js';
import {checkBlock, statusBlock, runReport} from './status.js';

const S = {
  view: 'loading', // loading | session | connect | edit | connected
  conn: null,
  options: null,
  optionsError: null,
  draft: null,
  runs: [],
  banner: null, // {kind: 'error'|'ok'|'warn', text, fields?: [..], action?: {label, run}}
  busy: false,
  hadToken: false,
};
const controls = new Map();
const root = document.getElementById('app');
const TERMINAL = new Set(['completed', 'failed', 'refused', 'skipped']);

// ------------------------------------------------------------------ rendering

function header() {
  const sel = h('select', {id: 'lang', onchange: (e) => {
    setLang(e.target.value);
    render();
  }}, LANGS.map(([code, name]) => h('option', {value: code, selected: code === getLang()}, name)));
  return h('header', {class: 'top'},
    h('div', {}, h('h1', {}, t('app.title')), h('p', {class: 'sub'}, t('app.subtitle'))),
    h('div', {class: 'lang'}, h('label', {for: 'lang'}, t('app.language')), sel));
}

function banner() {
  const b = S.banner;
  if (!b) return null;
  return h('div', {id: 'banner', class: `banner ${b.kind}`, role: b.kind === 'error' ? 'alert' : 'status', tabindex: '-1'},
    h('p', {}, b.text),
    b.fields && b.fields.length
      ? [h('p', {}, t('err.fields')), h('ul', {}, b.fields.map((f) => h('li', {}, f.field ? `${f.field}: ${f.message}` : f.message)))]
      : null,
    b.action ? h('button', {type: 'button', id: 'banner-action', onclick: b.action.run}, b.action.label) : null,
    h('button', {type: 'button', class: 'link', id: 'banner-close', onclick: () => {
      S.banner = null;
      render();
    }}, t('close')));
}

function ctx() {
  return {
    conn: S.conn, options: S.options, draft: S.draft, runs: S.runs, controls,
    connect, setActive, rerender: () => render(), copy, rotate, preview, syncNow, repush, pushSkipped, refreshStatus,
  };
}

function connectedCard() {
  const c = S.conn;
  return section('block-connected', t('connected.title'),
    h('div', {class: 'card'},
      h('div', {class: 'card-head'}, h('strong', {}, t('connected.name')),
        h('span', {class: `badge ${c.active ? 'on' : 'off'}`, id: 'connected-state'}, t(c.active ? 'connected.active' : 'connected.inactive'))),
      h('p', {}, t('connected.key', {mask: c.key_mask})),
      h('p', {class: 'hint'}, t('connected.since', {date: new Date(c.created_at).toLocaleDateString(getLang() === 'uk' ? 'uk-UA' : 'en-GB')})),
      h('div', {class: 'actions'},
        h('button', {type: 'button', id: 'edit', class: 'primary', onclick: edit}, t('connected.edit')),
        h('button', {type: 'button', id: 'delete', class: 'danger', onclick: remove}, t('connected.delete')))));
}

function body() {
  controls.clear();
  switch (S.view) {
    case 'loading':
      return h('p', {class: 'loading', role: 'status'}, t('app.loading'));
    case 'session':
      return h('p', {class: 'banner warn', id: 'session-msg'}, t(S.hadToken ? 'session.expired' : 'session.missing'));
    case 'connect':
      return [keyBlock(ctx())];
    case 'connected':
      return [connectedCard(), statusBlock(ctx())];
    default:
      break;
  }
  const c = ctx();
  const parts = [keyBlock(c), activeBlock(c)];
  if (!S.conn.active) {
    parts.push(h('p', {class: 'hint', id: 'activate-first'}, t('active.activate_first')));
  } else if (!S.options) {
    parts.push(S.optionsError
      ? h('div', {class: 'banner error', id: 'options-error'}, h('p', {}, S.optionsError),
        h('button', {type: 'button', id: 'options-retry', onclick: () => loadOptions(true)}, t('app.retry')))
      : h('p', {class: 'loading', role: 'status', id: 'options-loading'}, t('app.loading')));
  } else {
    parts.push(syncBlock(c), categoriesBlock(c), extraBlock(c), ordersBlock(c), paymentBlock(c), deliveryBlock(c),
      webhookBlock(c),
      h('div', {class: 'savebar'}, h('button', {type: 'button', id: 'save', class: 'primary big', onclick: save}, t('save'))),
      checkBlock(c));
  }
  parts.push(statusBlock(c));
  return parts;
}

function render() {
  const focused = document.activeElement && document.activeElement.id;
  clear(root);
  root.setAttribute('aria-busy', S.busy ? 'true' : 'false');
  root.append(header());
  const b = banner();
  if (b) root.append(b);
  for (const part of [body()].flat()) if (part) root.append(part);
  if (focused) {
    const el = document.getElementById(focused);
    if (el) el.focus({preventScroll: true});
  }
}

function replaceSection(id, node) {
  const old = document.getElementById(id);
  if (old) old.replaceWith(node);
}

function setBanner(b, focus) {
  S.banner = b;
  render();
  if (focus) {
    const el = document.getElementById('banner');
    if (el) {
      el.focus();
      el.scrollIntoView({block: 'nearest'});
    }
  }
}

// ------------------------------------------------------------------ errors

function messageFor(e) {
  switch (e.code) {
    case 'keycrm_busy': return t('err.busy', {n: e.retryAfter || 30});
    case 'keycrm_unreachable': return t('err.unreachable');
    case 'keycrm_key_rejected': return e.status === 422 ? t('key.rejected') : t('err.stored_key_rejected');
    case 'shop_unavailable': return t('err.shop');
    case 'storage_unavailable': case 'queue_unavailable': case 'internal': return t('err.service');
    case 'network': return t('err.network');
    case 'connection_inactive': return t('err.inactive');
    case 'sync_disabled': return t('err.sync_disabled');
    case 'version_conflict': return t('save.conflict');
    default: return e.message || t('err.generic');
  }
}

function handle(e, where) {
  if (e instanceof api.SessionExpired) {
    S.view = 'session';
    session.tell('session-expired');
    render();
    return;
  }
  if (!(e instanceof api.ApiError)) {
    console.error(e);
    setBanner({kind: 'error', text: t('err.generic')}, true);
    return;
  }
  if (e.code === 'not_connected') {
    S.conn = null;
    S.view = 'connect';
    render();
    return;
  }
  if (e.code === 'version_conflict') {
    setBanner({kind: 'warn', text: t('save.conflict'), action: {label: t('save.reload'), run: reload}}, true);
    return;
  }
  if (where && where.msg) {
    showMsg(where.msg, messageFor(e), 'error');
    return;
  }
  setBanner({kind: 'error', text: messageFor(e), fields: e.code === 'invalid_settings' ? [] : e.fields}, true);
}

function showMsg(id, text, kind) {
  const el = document.getElementById(id);
  if (!el) return;
  el.hidden = false;
  el.className = `msg ${kind || ''}`;
  el.textContent = text;
}

function clearFieldErrors() {
  for (const el of document.querySelectorAll('.field-error')) el.remove();
  for (const el of document.querySelectorAll('[aria-invalid="true"]')) el.removeAttribute('aria-invalid');
}

/** Puts each API field error next to the control it names; returns those that name none. */
function showFieldErrors(fieldErrors, fields) {
  clearFieldErrors();
  const orphans = [];
  let first = null;
  fieldErrors.forEach((fe, i) => {
    const el = elementFor(fields, fe.field);
    if (!el) {
      orphans.push(fe);
      return;
    }
    const id = `field-error-${i}`;
    const p = h('p', {class: 'field-error', id, 'data-field': fe.field}, fe.message);
    el.insertAdjacentElement('afterend', p);
    el.setAttribute('aria-invalid', 'true');
    el.setAttribute('aria-describedby', [el.getAttribute('aria-describedby'), id].filter(Boolean).join(' '));
    first = first || el;
  });
  if (first) {
    first.scrollIntoView({block: 'center'});
    first.focus({preventScroll: true});
  }
  return orphans;
}

async function busy(fn) {
  if (S.busy) return;
  S.busy = true;
  root.setAttribute('aria-busy', 'true');
  document.body.classList.add('busy');
  try {
    await fn();
  } finally {
    S.busy = false;
    root.setAttribute('aria-busy', 'false');
    document.body.classList.remove('busy');
  }
}

// ------------------------------------------------------------------ actions

async function loadOptions(refresh) {
  S.optionsError = null;
  if (refresh) {
    S.options = null;
    render();
  }
  try {
    S.options = await api.get('/options');
  } catch (e) {
    if (e instanceof api.SessionExpired) return handle(e);
    S.optionsError = e instanceof api.ApiError ? messageFor(e) : t('err.generic');
  }
  if (S.view === 'edit') render();
}

async function refreshRuns() {
  try {
    const r = await api.get('/runs?limit=5');
    S.runs = r.runs || [];
  } catch (_) {
    // The list is a convenience; the status line still shows the last runs.
  }
}

/** The banner an answer's extras call for: a notice from the API, a sync it started. */
function answerBanner(answer, fallback) {
  const parts = [answer.notice, answer.sync_started ? t('sync.started') : null].filter(Boolean);
  if (!parts.length) return fallback;
  return {kind: answer.account_switched ? 'warn' : 'ok', text: [fallback && fallback.text, ...parts].filter(Boolean).join(' ')};
}

function connect(raw, switchAccount) {
  const key = String(raw || '').trim();
  if (!key) {
    showMsg('key-msg', t('key.empty'), 'error');
    document.getElementById('api-key')?.focus();
    return;
  }
  return busy(async () => {
    try {
      const body = switchAccount ? {api_key: key, switch_account: true} : {api_key: key};
      const conn = await api.put('', body);
      S.conn = conn;
      S.draft = draftFrom(conn.settings);
      S.view = 'edit';
      S.banner = answerBanner(conn, {kind: 'ok', text: t('key.done')});
      S.options = null;
      render();
      await Promise.all([loadOptions(true), refreshRuns()]);
    } catch (e) {
      if (e instanceof api.ApiError && e.code === 'account_mismatch' && !switchAccount) {
        // Another KeyCRM account: only on the merchant's word, and with what it costs said.
        S.busy = false;
        const ok = await confirmDialog(t('switch.title'), e.message, t('switch.confirm'), true);
        if (ok) await connect(key, true);
        return;
      }
      if (e instanceof api.ApiError && ['keycrm_key_rejected', 'keycrm_unreachable', 'keycrm_busy', 'invalid_request'].includes(e.code)) {
        const text = e.code === 'keycrm_key_rejected' ? t('key.rejected')
          : e.code === 'keycrm_unreachable' ? t('key.unreachable')
            : e.code === 'keycrm_busy' ? t('err.busy', {n: e.retryAfter || 30})
              : (e.fields[0] && e.fields[0].message) || e.message;
        showMsg('key-msg', text, 'error');
        const input = document.getElementById('api-key');
        if (input) {
          input.setAttribute('aria-invalid', 'true');
          input.setAttribute('aria-describedby', 'api-key-hint key-msg');
          input.focus();
        }
        return;
      }
      handle(e);
    }
  });
}

function setActive(on) {
  return busy(async () => {
    try {
      S.conn = await api.patch('', {active: on});
      S.banner = answerBanner(S.conn, null);
      render();
      if (on && !S.options) await loadOptions(false);
    } catch (e) {
      handle(e);
      render();
    }
  });
}

function edit() {
  S.view = 'edit';
  S.draft = draftFrom(S.conn.settings);
  S.banner = null;
  render();
  loadOptions(false);
}

async function reload() {
  S.banner = null;
  try {
    S.conn = await api.get('');
    S.draft = draftFrom(S.conn.settings);
    render();
    if (S.view === 'edit') await loadOptions(true);
  } catch (e) {
    handle(e);
  }
}

function save() {
  return busy(async () => {
    const {body: settings} = payload(S.draft, controls);
    clearFieldErrors();
    try {
      const conn = await api.put('/settings', {version: S.conn.version, settings});
      S.conn = conn;
      S.draft = draftFrom(conn.settings);
      S.view = 'connected';
      S.banner = answerBanner(conn, {kind: 'ok', text: t('save.done')});
      await refreshRuns();
      render();
    } catch (e) {
      if (e instanceof api.ApiError && e.code === 'invalid_settings') {
        S.banner = {kind: 'error', text: t('save.invalid'), fields: []};
        render();
        const {fields: fresh} = payload(S.draft, controls);
        const orphans = showFieldErrors(e.fields, fresh);
        if (orphans.length) {
          S.banner.fields = orphans;
          const b = document.getElementById('banner');
          if (b) b.replaceWith(banner());
        }
        return;
      }
      handle(e);
    }
  });
}

function confirmDialog(title, text, confirmLabel, danger) {
  return new Promise((resolve) => {
    const dlg = h('dialog', {id: 'confirm', 'aria-labelledby': 'confirm-title', 'aria-describedby': 'confirm-body'},
      h('h2', {id: 'confirm-title'}, title),
      h('p', {id: 'confirm-body'}, text),
      h('div', {class: 'actions'},
        h('button', {type: 'button', id: 'confirm-cancel', onclick: () => dlg.close('cancel')}, t('delete.cancel')),
        h('button', {type: 'button', id: 'confirm-ok', class: danger ? 'danger' : 'primary', onclick: () => dlg.close('ok')}, confirmLabel)));
    dlg.addEventListener('close', () => {
      dlg.remove();
      resolve(dlg.returnValue === 'ok');
    });
    document.body.append(dlg);
    dlg.showModal();
    document.getElementById('confirm-cancel').focus();
  });
}

async function remove() {
  const ok = await confirmDialog(t('delete.title'), t('delete.body'), t('delete.confirm'), true);
  if (!ok) {
    document.getElementById('delete')?.focus();
    return;
  }
  await busy(async () => {
    try {
      await api.del('');
      S.conn = null;
      S.options = null;
      S.draft = null;
      S.runs = [];
      S.view = 'connect';
      setBanner({kind: 'ok', text: t('delete.done')}, true);
    } catch (e) {
      handle(e);
    }
  });
}

async function copy(url, input, msg) {
  let ok = false;
  try {
    await navigator.clipboard.writeText(url);
    ok = true;
  } catch (_) {
    // Older browsers, or a frame without clipboard-write: the selection route.
    input.select();
    try {
      ok = document.execCommand('copy');
    } catch (_e) {
      ok = false;
    }
  }
  msg.className = ok ? 'msg ok' : 'msg error';
  msg.textContent = ok ? t('hook.copied') : t('hook.copy_failed');
}

async function rotate(kind) {
  const ok = await confirmDialog(t('hook.rotate'), t('hook.rotate_confirm'), t('hook.rotate'), false);
  if (!ok) return;
  await busy(async () => {
    try {
      S.conn = await api.post('/webhook-tokens/rotate', {kind});
      render();
      document.getElementById(`hook-${kind}`)?.focus();
    } catch (e) {
      handle(e);
    }
  });
}

async function follow(runId, title) {
  const box = document.getElementById('run-result');
  const show = (run) => {
    const el = document.getElementById('run-result') || box;
    if (el) {
      clear(el);
      el.append(runReport(run, title));
    }
  };
  const until = Date.now() + 180000;
  for (;;) {
    let run;
    try {
      run = await api.get(`/runs/${encodeURIComponent(runId)}`);
    } catch (e) {
      handle(e);
      return null;
    }
    show(run);
    if (TERMINAL.has(run.state) || Date.now() > until) return run;
    await new Promise((r) => setTimeout(r, 700));
  }
}

function startRun(body, title) {
  return busy(async () => {
    const box = document.getElementById('run-result');
    if (box) {
      clear(box);
      box.append(h('p', {class: 'loading', role: 'status'}, t('check.queued')));
    }
    try {
      const accepted = await api.post('/sync', body);
      await follow(accepted.run_id, title);
      await refreshStatus();
    } catch (e) {
      if (box && e instanceof api.ApiError) {
        clear(box);
        box.append(h('p', {class: 'msg error'}, messageFor(e)));
        if (e.fields && e.fields.length) {
          box.append(h('ul', {}, e.fields.map((f) => h('li', {}, `${f.field}: ${f.message}`))));
        }
        return;
      }
      handle(e);
    }
  });
}

function preview() {
  const {body: settings} = payload(S.draft, controls);
  return startRun({kind: 'full', dry_run: true, settings}, t('check.preview_result'));
}

function syncNow(kind) {
  return startRun({kind}, t('check.run_result'));
}

async function repush(orderId) {
  await busy(async () => {
    try {
      await api.post(`/orders/${encodeURIComponent(orderId)}/repush`);
      showMsg('status-msg', t('status.repush_done', {id: orderId}), 'ok');
      setTimeout(refreshStatus, 1500);
    } catch (e) {
      if (e instanceof api.ApiError) {
        showMsg('status-msg', messageFor(e), 'error');
        return;
      }
      handle(e);
    }
  });
}

async function pushSkipped(since) {
  await busy(async () => {
    try {
      const r = await api.post('/orders/push-skipped', since ? {since: `${since}T00:00:00Z`} : {});
      const n = r && typeof r.queued === 'number' ? r.queued : 0;
      showMsg('status-msg', (r && r.message) || t('status.push_skipped_done', {n}), 'ok');
      setTimeout(refreshStatus, 1500);
    } catch (e) {
      if (e instanceof api.ApiError) {
        showMsg('status-msg', messageFor(e), 'error');
        return;
      }
      handle(e);
    }
  });
}

async function refreshStatus() {
  if (!S.conn) return;
  try {
    const [status] = await Promise.all([api.get('/status'), refreshRuns()]);
    S.conn = {...S.conn, status};
    const msg = document.getElementById('status-msg');
    const keep = msg && !msg.hidden ? [msg.textContent, msg.className] : null;
    replaceSection('block-status', statusBlock(ctx()));
    if (keep) showMsg('status-msg', keep[0], keep[1].replace('msg', '').trim());
  } catch (e) {
    handle(e);
  }
}

// ------------------------------------------------------------------ start

async function boot() {
  S.hadToken = session.start();
  session.reportHeight();
  render();
  try {
    const conn = await api.get('');
    S.conn = conn;
    S.draft = draftFrom(conn.settings);
    S.view = 'connected';
    await refreshRuns();
  } catch (e) {
    if (e instanceof api.SessionExpired) {
      S.view = 'session';
    } else if (e instanceof api.ApiError && e.code === 'not_connected') {
      S.view = 'connect';
    } else {
      S.view = 'connect';
      handle(e);
      return;
    }
  }
  render();
}

boot();
