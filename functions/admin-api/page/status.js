// What the connection is doing: the state line, counters, the last run of each kind, orders
// that failed (with a re-push button), skipped orders, recent runs; and the "check and sync"
// block (a dry-run preview of the settings on the page, sync now).

import {h} from './dom.js';
import {t, has, when} from './i18n.js';
import {section} from './blocks.js';

function countLabel(k) {
  return has(`count.${k}`) ? t(`count.${k}`) : k.replace(/_/g, ' ');
}

function stateLabel(s) {
  return has(`run.${s}`) ? t(`run.${s}`) : s;
}

/** Counts and a few samples of a run report. */
export function runReport(run, title) {
  const counts = Object.entries(run.counts || {}).filter(([, n]) => n > 0);
  const samples = run.samples || {};
  const head = h('p', {class: 'run-head'},
    h('strong', {}, title), ' · ', t(`run.${run.kind || 'full'}`), ' · ',
    h('span', {class: `state state-${run.state}`}, stateLabel(run.state)),
    run.keycrm_requests ? ` · ${t('status.requests', {n: run.keycrm_requests})}` : '');
  const rows = counts.map(([k, n]) => {
    const list = (samples[k] || []).map((it) => it.name + (it.detail ? ` — ${it.detail}` : '')).join('; ');
    return h('tr', {}, h('th', {scope: 'row'}, countLabel(k)), h('td', {class: 'num'}, String(n)),
      h('td', {class: 'samples'}, list));
  });
  return h('div', {class: 'run', 'data-state': run.state},
    head,
    run.message ? h('p', {class: 'hint'}, run.message) : null,
    rows.length ? h('table', {class: 'counts'}, h('tbody', {}, rows))
      : (['completed', 'refused', 'failed'].includes(run.state) ? h('p', {class: 'hint'}, t('check.nothing')) : null));
}

export function checkBlock(ctx) {
  const result = h('div', {id: 'run-result', 'aria-live': 'polite'});
  ctx.controls.set('run-result', result);
  const s = ctx.conn.settings;
  return section('block-check', t('check.title'),
    h('p', {class: 'hint', id: 'preview-hint'}, t('check.preview_hint')),
    h('div', {class: 'actions'},
      h('button', {type: 'button', id: 'preview', 'aria-describedby': 'preview-hint', onclick: () => ctx.preview()}, t('check.preview')),
      h('button', {type: 'button', id: 'sync-full', disabled: !(s.sync_products || s.sync_categories),
        onclick: () => ctx.syncNow('full')}, t('check.sync_full')),
      h('button', {type: 'button', id: 'sync-prices', disabled: !s.sync_products,
        onclick: () => ctx.syncNow('prices')}, t('check.sync_prices'))),
    result);
}

function statusLine(conn) {
  const s = conn.settings;
  return [
    t(conn.active ? 'status.line_active' : 'status.line_inactive'),
    conn.active ? t(s.sync_products || s.sync_categories ? 'status.catalog_on' : 'status.catalog_off') : '',
    conn.active ? t(`status.orders.${s.order_sync || 'none'}`) : '',
  ].filter(Boolean).join(' ');
}

function lastSync(kind, label, summary) {
  if (!summary) return h('li', {}, `${label}: ${t('status.never')}`);
  const counts = Object.entries(summary.counts || {}).filter(([, n]) => n > 0)
    .map(([k, n]) => `${countLabel(k)} ${n}`).join(', ');
  return h('li', {'data-kind': kind},
    `${label}: ${when(summary.finished_at)} · ${t(summary.complete ? 'status.complete' : 'status.incomplete')}`,
    counts ? ` · ${counts}` : '',
    summary.keycrm_requests ? ` · ${t('status.requests', {n: summary.keycrm_requests})}` : '',
    summary.message ? h('span', {class: 'hint'}, ` — ${summary.message}`) : null);
}

export function statusBlock(ctx) {
  const conn = ctx.conn;
  const st = conn.status || {};
  const counters = st.counters || {};
  const skipped = counters.orders_skipped || 0;
  const dl = h('dl', {class: 'counters'},
    h('dt', {}, t('status.pushed')), h('dd', {id: 'count-pushed'}, String(st.orders_pushed || 0)),
    h('dt', {}, t('status.failed')), h('dd', {id: 'count-failed'}, String(st.orders_failed || 0)),
    h('dt', {}, t('status.skipped')), h('dd', {id: 'count-skipped'}, String(skipped)),
    h('dt', {}, t('status.applied')), h('dd', {id: 'count-applied'}, String(st.webhooks_applied || 0)));
  const last = st.last_sync || {};
  const failures = (st.failures || []).map((f) => {
    const fieldErrs = Object.entries(f.field_errors || {}).map(([k, v]) => `${k}: ${[].concat(v).join('; ')}`);
    return h('li', {class: 'failure', 'data-order': f.shop_order_id},
      h('div', {}, h('strong', {}, t('status.order', {id: f.shop_order_id})), ` · ${when(f.at)}`),
      h('p', {class: 'reason'}, f.reason),
      fieldErrs.length ? h('ul', {class: 'hint'}, fieldErrs.map((x) => h('li', {}, x))) : null,
      h('button', {type: 'button', class: 'repush', 'data-order': f.shop_order_id,
        onclick: () => ctx.repush(f.shop_order_id)}, t('status.repush')));
  });
  const since = h('input', {type: 'date', id: 'push-skipped-since'});
  const runs = (ctx.runs || []).map((r) => h('li', {},
    `${when(r.started_at)} · ${t(`run.${r.kind || 'full'}`)}${r.dry_run ? ` (${t('status.dry_run')})` : ''} · `,
    h('span', {class: `state state-${r.state}`}, stateLabel(r.state)),
    Object.keys(r.counts || {}).length
      ? ` · ${Object.entries(r.counts).filter(([, n]) => n > 0).map(([k, n]) => `${countLabel(k)} ${n}`).join(', ')}`
      : ''));
  const running = st.running_sync;
  return section('block-status', t('status.title'),
    h('p', {id: 'status-line'}, statusLine(conn)),
    running ? h('p', {id: 'running-sync', class: 'warn'}, t('status.running', {
      kind: t(`run.${running.kind || 'full'}`), state: stateLabel(running.state)})) : null,
    dl,
    h('ul', {class: 'last-sync'},
      lastSync('full', t('status.last_full'), last.full),
      lastSync('prices', t('status.last_prices'), last.prices)),
    st.last_error ? h('p', {class: 'warn', id: 'last-error'},
      `${t('status.last_error')} (${when(st.last_error.at)}): ${st.last_error.message}`) : null,
    h('h3', {}, t('status.failures')),
    failures.length ? h('ul', {class: 'failures', id: 'failures'}, failures)
      : h('p', {class: 'hint', id: 'failures'}, t('status.no_failures')),
    h('h3', {}, t('status.push_skipped')),
    h('p', {class: 'hint', id: 'push-skipped-hint'}, t('status.push_skipped_hint')),
    h('div', {class: 'inline'},
      h('label', {for: 'push-skipped-since'}, t('status.since')), since,
      h('button', {type: 'button', id: 'push-skipped', 'aria-describedby': 'push-skipped-hint',
        onclick: () => ctx.pushSkipped(since.value)}, t('status.push_skipped'))),
    h('h3', {}, t('status.runs')),
    runs.length ? h('ul', {class: 'runs', id: 'runs'}, runs) : h('p', {class: 'hint', id: 'runs'}, t('status.no_runs')),
    h('div', {class: 'actions'},
      h('button', {type: 'button', id: 'status-refresh', onclick: () => ctx.refreshStatus()}, t('status.refresh'))),
    h('p', {id: 'status-msg', class: 'msg', role: 'status', hidden: true}));
}
