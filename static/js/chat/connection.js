// The chat WebSocket (/api/ws): connects, hands every event to the page, and reconnects with
// exponential backoff and jitter when the connection drops, whatever the reason: a server
// restart (close 1001), a network change, a slow-consumer close (1008 after hello).
//
// A close before hello is the server refusing the session (1008, shared/spec/compat.md): the
// page is told, so it can check `/api/me` and go to the login page; if the session is fine
// after all, it simply reconnects. The browser's `online` event and the page becoming visible
// retry at once instead of waiting out the backoff.

/** First retry delay; doubles per failed attempt up to RECONNECT_MAX_MS. */
export const RECONNECT_MIN_MS = 500;
export const RECONNECT_MAX_MS = 15000;
/** A connection that opens but brings no hello in this long is given up and retried. */
export const HELLO_TIMEOUT_MS = 10000;
/** Policy violation: the server's close code for a refused session (and a slow consumer). */
export const CLOSE_POLICY = 1008;

/** The delay before attempt `n` (0-based): exponential, with ±25% jitter. */
export function backoffDelay(n, random = Math.random) {
  const base = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** Math.min(n, 16));
  return Math.round(base * (0.75 + random() * 0.5));
}

export class Connection {
  /**
   * `handlers`: `onState(state, {retryAt, attempt, reason})` with state 'connecting' |
   * 'online' | 'offline'; `onEvent(type, payload)`; `onClosedBeforeHello(code)`, which
   * returns a promise of whether to keep trying.
   */
  constructor(url, handlers) {
    this.url = url;
    this.handlers = handlers;
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.helloTimer = null;
    this.helloSeen = false;
    this.stopped = false;
    addEventListener('online', () => this.reconnectNow());
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible') this.reconnectNow();
    });
  }

  start() {
    this.stopped = false;
    this.open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.helloTimer);
    if (this.ws) this.ws.close(1000, 'bye');
  }

  /** Skips the rest of the backoff (only while waiting to retry). */
  reconnectNow() {
    if (this.stopped || this.ws) return;
    clearTimeout(this.timer);
    this.open();
  }

  get online() {
    return this.ws !== null && this.helloSeen && this.ws.readyState === WebSocket.OPEN;
  }

  /** Sends one event; false when not connected (nothing is queued while offline). */
  send(type, payload) {
    if (!this.online) return false;
    this.ws.send(JSON.stringify({ type, payload }));
    return true;
  }

  open() {
    if (this.ws) {
      // Never two sockets: the older one's events are ignored from here on anyway.
      const old = this.ws;
      this.ws = null;
      old.close(1000, 'replaced');
    }
    this.handlers.onState('connecting', { attempt: this.attempt });
    this.helloSeen = false;
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (e) {
      this.retry(`cannot open: ${e.message}`);
      return;
    }
    this.ws = ws;
    this.helloTimer = setTimeout(() => {
      if (!this.helloSeen && this.ws === ws) ws.close(4000, 'no hello');
    }, HELLO_TIMEOUT_MS);
    ws.addEventListener('message', (event) => {
      if (this.ws !== ws) return;
      let parsed;
      try {
        parsed = JSON.parse(event.data);
      } catch {
        console.warn('ringchat: a server event that is not JSON was ignored');
        return;
      }
      if (!parsed || typeof parsed.type !== 'string') return;
      if (parsed.type === 'hello') {
        this.helloSeen = true;
        this.attempt = 0;
        clearTimeout(this.helloTimer);
        // Online first: what the page does with the hello (history requests) needs to send.
        this.handlers.onState('online', {});
        this.handlers.onEvent('hello', parsed.payload || {});
        return;
      }
      this.handlers.onEvent(parsed.type, parsed.payload || {});
    });
    ws.addEventListener('close', async (event) => {
      if (this.ws !== ws) return;
      clearTimeout(this.helloTimer);
      this.ws = null;
      const hadHello = this.helloSeen;
      this.helloSeen = false;
      if (this.stopped) return;
      if (!hadHello && event.code === CLOSE_POLICY) {
        const keepTrying = await this.handlers.onClosedBeforeHello(event.code);
        if (!keepTrying) {
          this.stopped = true;
          return;
        }
        // An `online` event or the tab becoming visible may have reconnected meanwhile.
        if (this.stopped || this.ws) return;
      }
      const reason = event.code === 1001 ? 'the server restarted' : event.reason || 'the connection was lost';
      this.retry(reason, hadHello);
    });
  }

  retry(reason, hadHello = false) {
    if (this.stopped) return;
    // A connection that was up retries at once the first time: most drops are restarts.
    const delay = hadHello ? Math.round(RECONNECT_MIN_MS * Math.random()) : backoffDelay(this.attempt);
    this.attempt += 1;
    const retryAt = Date.now() + delay;
    this.handlers.onState('offline', { retryAt, attempt: this.attempt, reason });
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.open(), delay);
  }
}
