// The shop token: how the page gets it, keeps it and renews it (docs/settings-page.md).
//
// - The platform opens the page with the token in the URL fragment (`#token=…`). Browsers
//   never send a fragment to a server, so it reaches no server log and no Referer. The page
//   takes it and removes it from the address bar at once; from then on it lives only in this
//   module's memory.
// - When the token is about to expire (or the API says it has), the page asks the window that
//   embeds or opened it for a fresh one with postMessage, and accepts an answer only from one
//   of the configured platform origins (the `keycrm-page-origins` meta the server renders
//   from PAGE_ALLOWED_ORIGINS), only from that window, and only for this page's shop.
//
// Messages (all carry `version: 1`):
//   page → platform  {type: 'keycrm-settings:ready', shop_id}
//   page → platform  {type: 'keycrm-settings:token-request', shop_id}
//   platform → page  {type: 'keycrm-settings:token', token}
//   page → platform  {type: 'keycrm-settings:session-expired', shop_id}
//   page → platform  {type: 'keycrm-settings:resize', height}

const PREFIX = 'keycrm-settings:';
const RENEW_BEFORE_S = 60;
const ANSWER_WAIT_MS = 10000;

const allowedOrigins = (document.querySelector('meta[name="keycrm-page-origins"]')?.content || '')
  .split(/\s+/)
  .filter(Boolean);

let token = null;
let waiting = [];

/** `/v1/shops/{shop}/connection/page` → the shop id. */
export const shopId = (() => {
  const m = location.pathname.match(/\/v1\/shops\/([^/]+)\/connection\/page\/?$/);
  return m ? decodeURIComponent(m[1]) : '';
})();

/** The JSON API next to the page. */
export const apiBase = location.pathname.replace(/\/page\/?$/, '');

function claims(tok) {
  try {
    const part = tok.split('.')[0].replace(/-/g, '+').replace(/_/g, '/');
    const json = atob(part + '='.repeat((4 - (part.length % 4)) % 4));
    const c = JSON.parse(new TextDecoder().decode(Uint8Array.from(json, (ch) => ch.charCodeAt(0))));
    return typeof c === 'object' && c ? c : null;
  } catch (_) {
    return null;
  }
}

/** A token we can use: for this shop, not expired. */
function acceptable(tok) {
  if (typeof tok !== 'string' || tok.length > 2048) return false;
  const c = claims(tok);
  return Boolean(c && c.shop_id === shopId && typeof c.exp === 'number' && c.exp * 1000 > Date.now());
}

function expiresSoon(tok) {
  const c = claims(tok);
  return !c || c.exp * 1000 - Date.now() < RENEW_BEFORE_S * 1000;
}

/** The window that embeds (iframe) or opened (new tab) the page, if any. */
function platformWindow() {
  if (window.parent && window.parent !== window) return window.parent;
  if (window.opener && !window.opener.closed) return window.opener;
  return null;
}

/** Where a message to the platform may go: its origin when the browser tells us which one it
 *  is (and it is allowed), otherwise every allowed origin (the browser delivers to the one that
 *  matches). */
function targetOrigins() {
  const ancestors = window.location.ancestorOrigins;
  if (window.parent !== window && ancestors && ancestors.length > 0) {
    return allowedOrigins.includes(ancestors[0]) ? [ancestors[0]] : [];
  }
  return allowedOrigins;
}

export function tell(type, extra) {
  const win = platformWindow();
  if (!win) return;
  for (const origin of targetOrigins()) {
    win.postMessage({type: PREFIX + type, version: 1, shop_id: shopId, ...(extra || {})}, origin);
  }
}

window.addEventListener('message', (e) => {
  if (!allowedOrigins.includes(e.origin) || e.source !== platformWindow()) return;
  const d = e.data;
  if (!d || typeof d !== 'object' || d.type !== PREFIX + 'token') return;
  if (!acceptable(d.token)) return;
  token = d.token;
  const w = waiting;
  waiting = [];
  for (const resolve of w) resolve(token);
});

/** The token in the fragment, if any; the fragment is cleared from the address bar. */
function fromFragment() {
  const hash = location.hash.startsWith('#') ? location.hash.slice(1) : '';
  if (!hash) return null;
  const tok = new URLSearchParams(hash).get('token');
  history.replaceState(history.state, '', location.pathname + location.search);
  return tok;
}

/** Takes the token from the fragment and clears the fragment from the address bar. Returns
 *  whether the page was opened with a token at all. */
export function start() {
  const tok = fromFragment();
  if (acceptable(tok)) token = tok;
  // The platform may hand a new token by setting the fragment again (no reload happens).
  window.addEventListener('hashchange', () => {
    const fresh = fromFragment();
    if (acceptable(fresh)) token = fresh;
  });
  tell('ready');
  return Boolean(tok) || platformWindow() !== null;
}

/** Asks the platform for a fresh token; null when there is no platform or no answer. */
export function renew() {
  if (!platformWindow() || allowedOrigins.length === 0) return Promise.resolve(null);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      waiting = waiting.filter((r) => r !== done);
      resolve(null);
    }, ANSWER_WAIT_MS);
    const done = (tok) => {
      clearTimeout(timer);
      resolve(tok);
    };
    waiting.push(done);
    tell('token-request');
  });
}

/** A token good for the next request: the one we hold, or a renewed one when it is about to
 *  expire; null if neither. */
export async function current() {
  if (token && !expiresSoon(token)) return token;
  const fresh = await renew();
  if (fresh) return fresh;
  return token && acceptable(token) ? token : null;
}

/** The API refused the token: drop it and try to get another. */
export async function refused() {
  token = null;
  return renew();
}

/** Lets the platform size its frame to the page. */
export function reportHeight() {
  if (!platformWindow() || typeof ResizeObserver === 'undefined') return;
  let last = 0;
  new ResizeObserver(() => {
    const height = Math.ceil(document.documentElement.scrollHeight);
    if (height !== last) {
      last = height;
      tell('resize', {height});
    }
  }).observe(document.body);
}
