// The admin API as the page uses it: same origin, the shop token in the Authorization header
// (never in a URL), the page's language in Accept-Language, JSON both ways.

import * as session from './session.js';
import {getLang} from './i18n.js';

export class ApiError extends Error {
  constructor(status, body, retryAfter) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || (status === 0 ? 'network' : 'unknown');
    this.fields = Array.isArray(e.fields) ? e.fields : [];
    this.retryAfter = retryAfter;
  }
}

export class SessionExpired extends Error {}

async function send(method, path, body, tok) {
  const headers = {Authorization: `Bearer ${tok}`, 'Accept-Language': getLang(), Accept: 'application/json'};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  return fetch(session.apiBase + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store',
    credentials: 'omit',
    referrerPolicy: 'no-referrer',
  });
}

/** Calls the API; resolves with the JSON body (null for 204), rejects with ApiError or
 *  SessionExpired. An expired token is renewed once through the platform. */
export async function call(method, path, body) {
  let tok = await session.current();
  if (!tok) throw new SessionExpired();
  let res;
  try {
    res = await send(method, path, body, tok);
    if (res.status === 401) {
      tok = await session.refused();
      if (!tok) throw new SessionExpired();
      res = await send(method, path, body, tok);
      if (res.status === 401) throw new SessionExpired();
    }
  } catch (e) {
    if (e instanceof SessionExpired) throw e;
    throw new ApiError(0, null, null);
  }
  const text = await res.text();
  let json = null;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch (_) {
      json = null;
    }
  }
  if (!res.ok) {
    const ra = Number(res.headers.get('Retry-After'));
    throw new ApiError(res.status, json, Number.isFinite(ra) && ra > 0 ? ra : null);
  }
  return json;
}

export const get = (path) => call('GET', path);
export const put = (path, body) => call('PUT', path, body);
export const post = (path, body) => call('POST', path, body);
export const patch = (path, body) => call('PATCH', path, body);
export const del = (path) => call('DELETE', path);
