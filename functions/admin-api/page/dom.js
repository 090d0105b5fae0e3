// Small DOM helpers. The page never builds HTML from strings (the CSP enforces Trusted Types
// with no policy, so innerHTML would throw): every node is made here and every text goes in
// as text.

/**
 * h('button', {class: 'primary', onclick: fn, disabled: true}, 'Save')
 * Attributes: `class`, `text`, `on<event>` handlers, boolean and value properties, anything
 * else as an attribute (`aria-*`, `data-*`, `for`, `role`...). Children: nodes, strings,
 * arrays, null/false (skipped).
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'checked' || k === 'disabled' || k === 'hidden' || k === 'selected' ||
             k === 'readOnly' || k === 'required' || k === 'open') el[k] = Boolean(v);
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

let seq = 0;
/** A fresh id for label/aria wiring. */
export function uid(prefix) {
  seq += 1;
  return `${prefix}-${seq}`;
}

/** <option>s from items, with the current value selected (and kept even if unknown). */
export function options(items, current, unknownLabel) {
  const out = [];
  let found = false;
  for (const it of items) {
    if (it.group) {
      const og = h('optgroup', {label: it.group});
      for (const o of it.items) {
        const sel = String(o.value) === String(current);
        found = found || sel;
        og.appendChild(h('option', {value: String(o.value), selected: sel}, o.label));
      }
      out.push(og);
    } else {
      const sel = String(it.value) === String(current);
      found = found || sel;
      out.push(h('option', {value: String(it.value), selected: sel}, it.label));
    }
  }
  if (!found && current !== '' && current !== null && current !== undefined) {
    out.push(h('option', {value: String(current), selected: true}, unknownLabel(current)));
  }
  return out;
}
