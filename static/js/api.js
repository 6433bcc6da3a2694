// The REST calls of the web client (shared/spec/compat.md "HTTP"): sign-up, login, logout,
// who am I, and the server's limits. Every call resolves to `{ok, status, data, error,
// retryAfter}` instead of throwing on HTTP errors, so pages show the server's own answer; a
// network failure resolves to `{ok: false, status: 0, error: {id: 'NETWORK', ...}}`.

import { DEFAULT_LIMITS } from './validate.js';

/** How long a REST call may take before the page gives up on it. */
export const REQUEST_TIMEOUT_MS = 15000;

async function call(method, path, body) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
  try {
    const init = { method, credentials: 'same-origin', signal: controller.signal, headers: {} };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    const retryAfter = Number(res.headers.get('Retry-After')) || null;
    let data = null;
    if (res.status !== 204) {
      const text = await res.text();
      try {
        data = text ? JSON.parse(text) : null;
      } catch {
        data = null;
      }
    }
    if (res.ok) return { ok: true, status: res.status, data, error: null, retryAfter };
    const error = data && typeof data.id === 'string' ? data : { id: `HTTP_${res.status}`, message: '' };
    return { ok: false, status: res.status, data: null, error, retryAfter };
  } catch (e) {
    const message = e && e.name === 'AbortError' ? 'The server did not answer in time.' : 'Cannot reach the server.';
    return { ok: false, status: 0, data: null, error: { id: 'NETWORK', message }, retryAfter: null };
  } finally {
    clearTimeout(timer);
  }
}

export const login = (email, password) => call('POST', '/api/login', { email, password });

export const createAccount = (username, email, password) =>
  call('POST', '/api/create-account', { username, email, password });

export const logout = () => call('POST', '/api/logout');

/** `{ok: true, data: {id, username}}` with a valid session; status 401 without one. */
export const me = () => call('GET', '/api/me');

/** The server's limits, or the defaults when it does not publish them (an older server). */
export async function limits() {
  const r = await call('GET', '/api/limits');
  return r.ok && r.data ? { ...DEFAULT_LIMITS, ...r.data } : { ...DEFAULT_LIMITS };
}
