// The settings being edited (the draft) and the body a save or a preview sends.
//
// The draft starts as a copy of the saved settings, so fields this page does not show are
// sent back unchanged (the API replaces the whole object). Every mapping row of the page
// registers its control under a key; when the body is built, each entry's API path
// (`payment_map[1].keycrm_method_id`) is tied to the control that produced it, so a field
// error from the API lands next to that control.

/** Enumerations the connector owns, in the article's order. */
export const MATCH_KEYS = ['id', 'sku', 'name', 'barcode', 'external_id', 'create_only'];
export const NEW_POLICIES = ['hide', 'publish', 'dont_create'];
export const EXISTING_POLICIES = ['dont_update', 'update'];
export const MISSING_POLICIES = ['nothing', 'hide', 'make_unavailable'];
export const ORDER_SYNC = ['none', 'orders', 'pipelines'];

function copy(v) {
  return v === undefined ? undefined : JSON.parse(JSON.stringify(v));
}

function twoWay(v) {
  const o = v && typeof v === 'object' ? v : {};
  return {
    from_keycrm: Array.isArray(o.from_keycrm) ? o.from_keycrm : [],
    to_keycrm: Array.isArray(o.to_keycrm) ? o.to_keycrm : [],
  };
}

/** A draft from saved settings. */
export function draftFrom(saved) {
  const d = copy(saved || {});
  d.category_filter = Array.isArray(d.category_filter) ? d.category_filter : [];
  d.order_statuses = twoWay(d.order_statuses);
  d.card_statuses = twoWay(d.card_statuses);
  for (const k of ['addon_fields', 'payment_map', 'delivery_map']) {
    if (!Array.isArray(d[k])) d[k] = [];
  }
  if (typeof d.vanish_guard !== 'number') d.vanish_guard = 0.3;
  for (const [k, def] of [['match_key', 'sku'], ['new_products', 'hide'], ['existing_products', 'update'],
    ['missing_products', 'nothing'], ['order_sync', 'none']]) {
    if (typeof d[k] !== 'string') d[k] = def;
  }
  return d;
}

/** Replaces the entry matched by `same` with `entry`, or removes it when `entry` is null. */
export function setEntry(list, same, entry) {
  const i = list.findIndex(same);
  if (entry === null) {
    if (i >= 0) list.splice(i, 1);
  } else if (i >= 0) {
    list[i] = entry;
  } else {
    list.push(entry);
  }
}

// Row keys: one per mapping row of the page.
export const rowKey = {
  orderFrom: (e) => `of:${e.keycrm_status_id}`,
  orderTo: (e) => `ot:${e.shop_status}`,
  cardFrom: (e) => `cf:${e.pipeline_id}:${e.status_id}`,
  cardTo: (e) => `ct:${e.shop_status}`,
  addon: (e) => `ad:${e.addon_id}`,
  payment: (e) => `pm:${e.shop_method}`,
  delivery: (e) => `dm:${e.shop_method}`,
};

/**
 * The settings to send, and the API path → element map for field errors.
 * `controls`: Map of row key / field name → element, filled by the blocks as they render.
 */
export function payload(draft, controls) {
  const body = copy(draft);
  const fields = new Map();
  const tie = (path, key) => {
    const el = controls.get(key);
    if (el) fields.set(path, el);
  };
  const lists = [
    ['order_statuses.from_keycrm', body.order_statuses.from_keycrm, rowKey.orderFrom, ['keycrm_status_id', 'shop_status']],
    ['order_statuses.to_keycrm', body.order_statuses.to_keycrm, rowKey.orderTo, ['shop_status', 'keycrm_status_id']],
    ['card_statuses.from_keycrm', body.card_statuses.from_keycrm, rowKey.cardFrom, ['pipeline_id', 'status_id', 'shop_status']],
    ['card_statuses.to_keycrm', body.card_statuses.to_keycrm, rowKey.cardTo, ['shop_status', 'pipeline_id', 'status_id']],
    ['addon_fields', body.addon_fields, rowKey.addon, ['addon_id', 'field_uuid']],
    ['payment_map', body.payment_map, rowKey.payment, ['shop_method', 'keycrm_method_id']],
    ['delivery_map', body.delivery_map, rowKey.delivery, ['shop_method', 'keycrm_service_id']],
  ];
  for (const [base, list, key, props] of lists) {
    tie(base, base);
    list.forEach((entry, i) => {
      tie(`${base}[${i}]`, key(entry));
      for (const p of props) tie(`${base}[${i}].${p}`, key(entry));
    });
  }
  for (const name of ['sync_products', 'sync_categories', 'realtime_stock', 'category_filter', 'match_key',
    'new_products', 'existing_products', 'missing_products', 'vanish_guard', 'order_sync', 'source_id',
    'default_pipeline_id', 'order_statuses', 'card_statuses']) {
    tie(name, name);
  }
  body.category_filter.forEach((_, i) => tie(`category_filter[${i}]`, 'category_filter'));
  return {body, fields};
}

/**
 * The element an API field path belongs to: the exact path, else the nearest enclosing one
 * (`payment_map[2].x` → `payment_map[2]` → `payment_map`). `settings.` prefixes (request
 * shape errors) are dropped.
 */
export function elementFor(fields, path) {
  let p = String(path || '').replace(/^settings\./, '');
  while (p) {
    if (fields.has(p)) return fields.get(p);
    const cut = Math.max(p.lastIndexOf('.'), p.lastIndexOf('['));
    if (cut <= 0) break;
    p = p.slice(0, cut);
  }
  return null;
}

/** Ids of a category and everything below it, from the nested tree. */
export function descendants(node) {
  const out = [];
  const walk = (n) => {
    for (const c of n.children || []) {
      out.push(c.id);
      walk(c);
    }
  };
  walk(node);
  return out;
}
