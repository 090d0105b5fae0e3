// The settings blocks, in the article's order. Each block reads the draft and the options
// (both sides' dictionaries from GET /connection/options) and writes back into the draft;
// nothing a side owns is written into the page.

import {h, uid, options as opts} from './dom.js';
import {t, has} from './i18n.js';
import {
  MATCH_KEYS, NEW_POLICIES, EXISTING_POLICIES, MISSING_POLICIES, ORDER_SYNC, setEntry, rowKey, descendants,
} from './settings.js';

// ------------------------------------------------------------------ building blocks

export function section(id, title, ...children) {
  const hid = `${id}-title`;
  return h('section', {id, class: 'block', 'aria-labelledby': hid}, h('h2', {id: hid}, title), ...children);
}

export function field(label, control, hint, extraClass) {
  const id = control.id || uid('f');
  control.id = id;
  let hintEl = null;
  if (hint) {
    hintEl = h('p', {class: 'hint', id: `${id}-hint`}, hint);
    control.setAttribute('aria-describedby', hintEl.id);
  }
  return h('div', {class: `field ${extraClass || ''}`}, h('label', {for: id}, label), control, hintEl);
}

export function toggle(id, label, checked, onchange, hint) {
  const input = h('input', {type: 'checkbox', role: 'switch', id, class: 'switch', checked, onchange: (e) => onchange(e.target.checked)});
  let hintEl = null;
  if (hint) {
    hintEl = h('p', {class: 'hint', id: `${id}-hint`}, hint);
    input.setAttribute('aria-describedby', hintEl.id);
  }
  return h('div', {class: 'field toggle'}, input, h('label', {for: id}, label), hintEl);
}

export function select(id, items, current, onchange, unknown) {
  return h('select', {id, onchange: (e) => onchange(e.target.value)},
    opts(items, current === null || current === undefined ? '' : current, unknown || ((v) => String(v))));
}

const unknownCrm = (v) => t('orders.unknown', {id: v});
const unknownShop = (v) => t('orders.unknown_shop', {id: v});
const intOrNull = (v) => (v === '' ? null : Number(v));

function mapTable(caption, headers, rows, key, ctx) {
  const table = h('table', {class: 'map', tabindex: '-1'},
    h('caption', {class: 'sr-only'}, caption),
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', {scope: 'col'}, x)))),
    h('tbody', {}, rows));
  if (key) ctx.controls.set(key, table);
  return table;
}

function mapRow(label, control) {
  return h('tr', {}, h('th', {scope: 'row'}, label), h('td', {}, control));
}

// ------------------------------------------------------------------ key + activation

export function keyBlock(ctx) {
  const input = h('input', {
    id: 'api-key', type: 'password', autocomplete: 'off', spellcheck: 'false', name: 'api_key',
    'aria-describedby': 'api-key-hint',
  });
  ctx.controls.set('api_key', input);
  const conn = ctx.conn;
  // A form, so Enter connects; it is never submitted anywhere (the CSP allows no form target).
  const form = h('form', {class: 'field', onsubmit: (e) => {
    e.preventDefault();
    ctx.connect(input.value);
  }},
  h('label', {for: 'api-key'}, t('key.label')),
  h('div', {class: 'inline'}, input,
    h('button', {type: 'submit', id: 'connect', class: 'primary'}, t('key.connect'))),
  h('p', {class: 'hint', id: 'api-key-hint'},
    conn ? `${t('key.connected', {mask: conn.key_mask})} ${t('key.replace_hint')}` : t('key.hint')));
  return section('block-key', t('key.title'), form,
    h('p', {id: 'key-msg', class: 'msg', role: 'status', hidden: true}));
}

export function activeBlock(ctx) {
  const on = ctx.conn.active;
  return section('block-active', t('active.title'),
    toggle('active', t('active.label'), on, (v) => ctx.setActive(v), on ? t('active.on') : t('active.off')));
}

// ------------------------------------------------------------------ sync + categories

export function syncBlock(ctx) {
  const d = ctx.draft;
  const sp = toggle('sync-products', t('sync.products'), d.sync_products, (v) => {
    d.sync_products = v;
  }, t('sync.products_hint'));
  ctx.controls.set('sync_products', sp.querySelector('input'));
  const sc = toggle('sync-categories', t('sync.categories'), d.sync_categories, (v) => {
    d.sync_categories = v;
  });
  ctx.controls.set('sync_categories', sc.querySelector('input'));
  let rs = null;
  // Issue 13's switch, shown once the API's settings carry it.
  if (typeof d.realtime_stock === 'boolean') {
    rs = toggle('realtime-stock', t('sync.realtime_stock'), d.realtime_stock, (v) => {
      d.realtime_stock = v;
    }, t('sync.realtime_stock_hint'));
    ctx.controls.set('realtime_stock', rs.querySelector('input'));
  }
  return section('block-sync', t('sync.title'), sp, sc, rs);
}

export function categoriesBlock(ctx) {
  const d = ctx.draft;
  const tree = ctx.options.keycrm.category_tree || [];
  const nodes = [];
  const walk = (list, depth, parents) => {
    for (const n of list) {
      nodes.push({n, depth, parents});
      walk(n.children || [], depth + 1, [...parents, n.id]);
    }
  };
  walk(tree, 0, []);
  const summary = h('p', {id: 'cats-summary', class: 'hint', role: 'status'});
  const items = [];
  const refresh = () => {
    const chosen = new Set(d.category_filter);
    for (const it of items) {
      const viaParent = it.parents.some((p) => chosen.has(p));
      it.box.checked = chosen.has(it.id) || viaParent;
      it.box.disabled = viaParent;
      it.note.hidden = !viaParent;
    }
    summary.textContent = chosen.size ? t('cats.selected', {n: chosen.size}) : t('cats.all');
  };
  const list = h('ul', {class: 'tree', id: 'cats-tree', 'aria-label': t('cats.label')});
  for (const {n, depth, parents} of nodes) {
    const id = `cat-${n.id}`;
    const box = h('input', {type: 'checkbox', id, value: String(n.id), onchange: (e) => {
      const below = descendants(n);
      d.category_filter = d.category_filter.filter((c) => c !== n.id && !below.includes(c));
      if (e.target.checked) d.category_filter.push(n.id);
      refresh();
    }});
    const note = h('span', {class: 'hint'}, ` ${t('cats.included')}`);
    const li = h('li', {class: `depth-${Math.min(depth, 6)}`, 'data-name': n.name.toLowerCase()},
      box, h('label', {for: id}, n.name), note);
    items.push({id: n.id, parents, box, note, li, name: n.name.toLowerCase()});
    list.appendChild(li);
  }
  const empty = h('p', {class: 'hint', hidden: true}, t('cats.none_found'));
  const search = h('input', {type: 'search', id: 'cats-search', autocomplete: 'off', oninput: (e) => {
    const q = e.target.value.trim().toLowerCase();
    const show = new Set();
    for (const it of items) {
      if (!q || it.name.includes(q)) {
        show.add(it.id);
        for (const p of it.parents) show.add(p);
      }
    }
    let any = false;
    for (const it of items) {
      it.li.hidden = !show.has(it.id);
      any = any || show.has(it.id);
    }
    empty.hidden = any;
  }});
  ctx.controls.set('category_filter', list);
  const clearBtn = h('button', {type: 'button', id: 'cats-clear', onclick: () => {
    d.category_filter = [];
    refresh();
  }}, t('cats.clear'));
  refresh();
  return section('block-categories', t('cats.title'),
    h('p', {class: 'label', id: 'cats-label'}, t('cats.label')),
    h('p', {class: 'hint'}, t('cats.hint')),
    nodes.length
      ? [field(t('cats.search'), search), list, empty, h('div', {class: 'inline'}, summary, clearBtn)]
      : h('p', {class: 'hint'}, t('cats.empty')));
}

// ------------------------------------------------------------------ policies

export function extraBlock(ctx) {
  const d = ctx.draft;
  const sel = (id, name, values, prefix) => {
    const s = select(id, values.map((v) => ({value: v, label: t(`${prefix}.${v}`)})), d[name], (v) => {
      d[name] = v;
    });
    ctx.controls.set(name, s);
    return s;
  };
  const guard = h('input', {type: 'number', id: 'vanish-guard', min: '0', max: '100', step: '1',
    value: String(Math.round((d.vanish_guard ?? 0.3) * 100)),
    onchange: (e) => {
      const v = Number(e.target.value);
      d.vanish_guard = Number.isFinite(v) ? v / 100 : d.vanish_guard;
    }});
  ctx.controls.set('vanish_guard', guard);
  return section('block-extra', t('extra.title'),
    field(t('extra.match_key'), sel('match-key', 'match_key', MATCH_KEYS, 'match')),
    field(t('extra.new_products'), sel('new-products', 'new_products', NEW_POLICIES, 'new')),
    field(t('extra.existing_products'), sel('existing-products', 'existing_products', EXISTING_POLICIES, 'existing')),
    field(t('extra.missing_products'), sel('missing-products', 'missing_products', MISSING_POLICIES, 'missing')),
    field(t('extra.vanish_guard'), guard, t('extra.vanish_guard_hint'), 'narrow'));
}

// ------------------------------------------------------------------ orders

function shopStatusItems(ctx) {
  return [{value: '', label: t('orders.not_mapped')},
    ...ctx.options.shop.order_statuses.map((s) => ({value: s.id, label: s.name}))];
}

function crmStatusGroups(ctx) {
  const k = ctx.options.keycrm;
  const groups = (k.order_status_groups || []).map((g) => ({
    group: has(`group.${g.id}`) ? t(`group.${g.id}`) : g.name,
    items: k.order_statuses.filter((s) => s.group_id === g.id).map((s) => ({value: s.id, label: s.name})),
  })).filter((g) => g.items.length);
  const known = new Set((k.order_status_groups || []).map((g) => g.id));
  const rest = k.order_statuses.filter((s) => !known.has(s.group_id));
  return [...groups, ...rest.map((s) => ({value: s.id, label: s.name}))];
}

function orderStatusMapping(ctx) {
  const d = ctx.draft;
  const from = d.order_statuses.from_keycrm;
  const to = d.order_statuses.to_keycrm;
  const fromRows = [];
  for (const g of crmStatusGroups(ctx)) {
    const list = g.group ? g.items : [g];
    if (g.group) fromRows.push(h('tr', {class: 'group'}, h('th', {colspan: '2', scope: 'rowgroup'}, g.group)));
    for (const s of list) {
      const cur = from.find((e) => e.keycrm_status_id === s.value);
      const key = rowKey.orderFrom({keycrm_status_id: s.value});
      const c = select(`of-${s.value}`, shopStatusItems(ctx), cur ? cur.shop_status : '', (v) => {
        setEntry(from, (e) => e.keycrm_status_id === s.value, v ? {keycrm_status_id: s.value, shop_status: v} : null);
      }, unknownShop);
      c.setAttribute('aria-label', `${t('orders.shop_status')}: ${s.label}`);
      ctx.controls.set(key, c);
      fromRows.push(mapRow(s.label, c));
    }
  }
  const initial = ctx.options.shop.initial_order_status;
  const toRows = ctx.options.shop.order_statuses.map((s) => {
    const cur = to.find((e) => e.shop_status === s.id);
    const c = select(`ot-${s.id}`, [{value: '', label: t('orders.not_mapped')}, ...crmStatusGroups(ctx)],
      cur ? cur.keycrm_status_id : '', (v) => {
        setEntry(to, (e) => e.shop_status === s.id, v ? {shop_status: s.id, keycrm_status_id: Number(v)} : null);
      }, unknownCrm);
    c.setAttribute('aria-label', `${t('orders.keycrm_status')}: ${s.name}`);
    ctx.controls.set(rowKey.orderTo({shop_status: s.id}), c);
    return mapRow(s.id === initial ? [s.name, h('span', {class: 'hint note'}, t('orders.initial_status'))] : s.name, c);
  });
  return [
    h('h4', {}, t('orders.from_keycrm')), h('p', {class: 'hint'}, t('orders.from_keycrm_hint')),
    mapTable(t('orders.from_keycrm'), [t('orders.keycrm_status'), t('orders.shop_status')], fromRows, 'order_statuses.from_keycrm', ctx),
    h('h4', {}, t('orders.to_keycrm')), h('p', {class: 'hint'}, t('orders.to_keycrm_hint')),
    mapTable(t('orders.to_keycrm'), [t('orders.shop_status'), t('orders.keycrm_status')], toRows, 'order_statuses.to_keycrm', ctx),
  ];
}

function cardStatusMapping(ctx) {
  const d = ctx.draft;
  const pipelines = ctx.options.keycrm.pipelines || [];
  const from = d.card_statuses.from_keycrm;
  const to = d.card_statuses.to_keycrm;
  if (!pipelines.length) return [h('p', {class: 'hint'}, t('orders.no_pipelines'))];
  const out = [h('h4', {}, t('orders.from_keycrm')), h('p', {class: 'hint'}, t('orders.from_keycrm_hint'))];
  const perPipeline = [];
  for (const p of pipelines) {
    const rows = p.statuses.map((s) => {
      const same = (e) => e.pipeline_id === p.pipeline.id && e.status_id === s.id;
      const cur = from.find(same);
      const c = select(`cf-${p.pipeline.id}-${s.id}`, shopStatusItems(ctx), cur ? cur.shop_status : '', (v) => {
        setEntry(from, same, v ? {pipeline_id: p.pipeline.id, status_id: s.id, shop_status: v} : null);
      }, unknownShop);
      c.setAttribute('aria-label', `${t('orders.shop_status')}: ${p.pipeline.name} / ${s.title}`);
      ctx.controls.set(rowKey.cardFrom({pipeline_id: p.pipeline.id, status_id: s.id}), c);
      return mapRow(s.title, c);
    });
    const title = t('orders.pipeline', {name: p.pipeline.name});
    perPipeline.push(h('h5', {}, title),
      mapTable(title, [t('orders.pipeline_status'), t('orders.shop_status')], rows, null, ctx));
  }
  const fromBox = h('div', {class: 'pipelines', tabindex: '-1'}, perPipeline);
  ctx.controls.set('card_statuses.from_keycrm', fromBox);
  out.push(fromBox);
  const targets = [{value: '', label: t('orders.not_mapped')},
    ...pipelines.map((p) => ({group: p.pipeline.name,
      items: p.statuses.map((s) => ({value: `${p.pipeline.id}:${s.id}`, label: s.title}))}))];
  const toRows = ctx.options.shop.order_statuses.map((s) => {
    const cur = to.find((e) => e.shop_status === s.id);
    const c = select(`ct-${s.id}`, targets, cur ? `${cur.pipeline_id}:${cur.status_id}` : '', (v) => {
      const [pid, sid] = v.split(':').map(Number);
      setEntry(to, (e) => e.shop_status === s.id, v ? {shop_status: s.id, pipeline_id: pid, status_id: sid} : null);
    }, (v) => t('orders.unknown', {id: v}));
    c.setAttribute('aria-label', `${t('orders.pipeline_status')}: ${s.name}`);
    ctx.controls.set(rowKey.cardTo({shop_status: s.id}), c);
    return mapRow(s.id === ctx.options.shop.initial_order_status
      ? [s.name, h('span', {class: 'hint note'}, t('orders.initial_status'))] : s.name, c);
  });
  out.push(h('h4', {}, t('orders.to_keycrm')), h('p', {class: 'hint'}, t('orders.to_keycrm_hint')),
    mapTable(t('orders.to_keycrm'), [t('orders.shop_status'), t('orders.pipeline_status')], toRows, 'card_statuses.to_keycrm', ctx));
  const dp = select('default-pipeline', [{value: '', label: t('orders.choose')},
    ...pipelines.map((p) => ({value: p.pipeline.id, label: p.pipeline.name}))], d.default_pipeline_id, (v) => {
    d.default_pipeline_id = intOrNull(v);
  }, unknownCrm);
  ctx.controls.set('default_pipeline_id', dp);
  out.push(field(t('orders.default_pipeline'), dp, t('orders.default_pipeline_hint')));
  return out;
}

function addonMapping(ctx) {
  const d = ctx.draft;
  const cards = d.order_sync === 'pipelines';
  const fieldsList = (cards ? ctx.options.keycrm.lead_fields : ctx.options.keycrm.order_fields) || [];
  const addons = ctx.options.shop.order_addons || [];
  const items = [{value: '', label: t('orders.not_mapped')}, ...fieldsList.map((f) => ({value: f.uuid, label: f.name}))];
  const rows = addons.map((a) => {
    const cur = d.addon_fields.find((e) => e.addon_id === a.id);
    const c = select(`ad-${a.id}`, items, cur ? cur.field_uuid : '', (v) => {
      setEntry(d.addon_fields, (e) => e.addon_id === a.id, v ? {addon_id: a.id, field_uuid: v} : null);
    }, unknownCrm);
    c.setAttribute('aria-label', `${t('orders.custom_field')}: ${a.name}`);
    ctx.controls.set(rowKey.addon({addon_id: a.id}), c);
    return mapRow(a.name, c);
  });
  return [h('h3', {}, t('orders.addons')),
    h('p', {class: 'hint'}, t('orders.addons_hint')),
    cards ? h('p', {class: 'hint'}, t('orders.addons_hint_cards')) : null,
    addons.length
      ? mapTable(t('orders.addons'), [t('orders.addon'), t('orders.custom_field')], rows, 'addon_fields', ctx)
      : h('p', {class: 'hint'}, t('orders.no_addons'))];
}

export function ordersBlock(ctx) {
  const d = ctx.draft;
  const k = ctx.options.keycrm;
  const typeItems = ORDER_SYNC.map((v) => ({value: v, label: t(`orders.type.${v}`)}));
  const type = select('order-sync', typeItems, d.order_sync, (v) => {
    d.order_sync = v;
    ctx.rerender('order-sync');
  });
  if (!k.pipelines_enabled) {
    const opt = type.querySelector('option[value="pipelines"]');
    if (opt && d.order_sync !== 'pipelines') opt.disabled = true;
  }
  ctx.controls.set('order_sync', type);
  const source = select('source', [{value: '', label: t('orders.choose')},
    ...k.sources.map((s) => ({value: s.id, label: s.name}))], d.source_id, (v) => {
    d.source_id = intOrNull(v);
  }, unknownCrm);
  ctx.controls.set('source_id', source);
  const parts = [field(t('orders.type'), type, k.pipelines_enabled ? null : t('orders.pipelines_off'))];
  if (d.order_sync !== 'none') {
    parts.push(field(t('orders.source'), source, t('orders.source_hint')));
    const mapping = d.order_sync === 'pipelines' ? cardStatusMapping(ctx) : orderStatusMapping(ctx);
    const box = h('div', {id: 'status-mapping', tabindex: '-1'}, h('h3', {}, t('orders.statuses')), mapping);
    ctx.controls.set(d.order_sync === 'pipelines' ? 'card_statuses' : 'order_statuses', box);
    parts.push(box, addonMapping(ctx));
  }
  return section('block-orders', t('orders.title'), parts);
}

// ------------------------------------------------------------------ payment + delivery

function methodMap(ctx, {id, title, map, heading, shopItems, crmItems, entryKey, crmField, keyOf, shopHead, crmHead, hint}) {
  const d = ctx.draft;
  const list = d[map];
  const items = [{value: '', label: t('orders.not_mapped')}, ...crmItems.map((m) => ({value: m.id, label: m.name}))];
  const rows = shopItems.map((m) => {
    const cur = list.find((e) => e[entryKey] === m.id);
    const c = select(`${id}-${m.id}`, items, cur ? cur[crmField] : '', (v) => {
      setEntry(list, (e) => e[entryKey] === m.id, v ? {[entryKey]: m.id, [crmField]: Number(v)} : null);
    }, unknownCrm);
    c.setAttribute('aria-label', `${crmHead}: ${m.name}`);
    ctx.controls.set(keyOf({shop_method: m.id}), c);
    return mapRow(m.name, c);
  });
  return section(`block-${id}`, title, h('h3', {}, heading), hint ? h('p', {class: 'hint'}, hint) : null,
    shopItems.length ? mapTable(heading, [shopHead, crmHead], rows, map, ctx) : h('p', {class: 'hint'}, t('map.none')));
}

export function paymentBlock(ctx) {
  return methodMap(ctx, {
    id: 'payment', title: t('payment.title'), map: 'payment_map', heading: t('payment.map'),
    shopItems: ctx.options.shop.payment_methods, crmItems: ctx.options.keycrm.payment_methods,
    entryKey: 'shop_method', crmField: 'keycrm_method_id', keyOf: rowKey.payment,
    shopHead: t('payment.shop'), crmHead: t('payment.keycrm'),
  });
}

export function deliveryBlock(ctx) {
  return methodMap(ctx, {
    id: 'delivery', title: t('delivery.title'), map: 'delivery_map', heading: t('delivery.map'),
    shopItems: ctx.options.shop.delivery_methods, crmItems: ctx.options.keycrm.delivery_services,
    entryKey: 'shop_method', crmField: 'keycrm_service_id', keyOf: rowKey.delivery,
    shopHead: t('delivery.shop'), crmHead: t('delivery.keycrm'), hint: t('delivery.hint'),
  });
}

// ------------------------------------------------------------------ webhooks

function sourceName(ctx) {
  const id = ctx.conn.settings.source_id;
  const s = ctx.options && ctx.options.keycrm.sources.find((x) => x.id === id);
  return s ? s.name : t('hook.your_source');
}

function hookItem(ctx, kind, hook) {
  const id = `hook-${kind}`;
  const url = hook.url || '';
  const input = h('input', {type: 'text', id, readOnly: true, value: url || hook.url_masked || '', class: 'url', spellcheck: 'false'});
  const copied = h('span', {class: 'msg', role: 'status', id: `${id}-copied`});
  const copy = h('button', {type: 'button', id: `${id}-copy`, disabled: !url, onclick: () => ctx.copy(url, input, copied)}, t('hook.copy'));
  const stock = kind === 'stock';
  const steps = stock
    ? [t('hook.step_stock1'), t('hook.step_stock2'), t('hook.step_stock3'), t('hook.step_stock4')]
    : [t('hook.step1'), t(kind === 'cards' ? 'hook.step2_cards' : 'hook.step2_orders'),
      t('hook.step3', {source: sourceName(ctx)}), t('hook.step4')];
  return h('div', {class: 'hook', 'data-kind': kind},
    h('label', {for: id}, t(`hook.${kind}`)),
    h('div', {class: 'inline'}, input, copy, copied),
    url ? null : h('p', {class: 'hint warn'}, t('hook.hidden')),
    h('details', {class: 'how'}, h('summary', {}, t(stock ? 'hook.how_stock' : 'hook.how')), h('ol', {}, steps.map((s) => h('li', {}, s)))),
    h('button', {type: 'button', class: 'link', id: `${id}-rotate`, onclick: () => ctx.rotate(kind)}, t('hook.rotate')));
}

export function webhookBlock(ctx) {
  const w = ctx.conn.webhooks || {};
  const items = [];
  for (const kind of ['orders', 'cards', 'stock']) {
    if (w[kind]) items.push(hookItem(ctx, kind, w[kind]));
  }
  if (ctx.draft.order_sync === 'pipelines' && !w.cards) items.push(h('p', {class: 'hint'}, t('hook.cards_after_save')));
  return section('block-webhook', t('hook.title'), items);
}
