// The chat page: wires the model (state), the connection (WebSocket) and the view (DOM), and
// owns what only the page knows: scrolling, the composer, the drawer, the URL hash, titles.

import * as api from '../api.js';
import { charLength } from '../validate.js';
import { Connection } from './connection.js';
import { ChatModel, MESSAGES_KEPT_MAX, unreadLabel } from './model.js';
import { ERRORS_SHOWN_MAX, messageItems, reconcile, roomItems } from './view.js';

/** Distance from the bottom, in pixels, within which the list counts as "at the bottom". */
const BOTTOM_SLACK_PX = 48;
/** Older history is requested when the list is scrolled to within this of its top. */
const LOAD_OLDER_WITHIN_PX = 400;
/** The counter appears when the text is within this fraction of the limit. */
const COUNTER_FROM_FRACTION = 0.9;
/** How often pending sends are checked for their confirmation timeout. */
const PENDING_CHECK_MS = 5000;
/** The composer grows with its text up to this height, then scrolls. */
const COMPOSER_MAX_PX = 200;
/** A failed history request is asked again after this long. */
const HISTORY_RETRY_MS = 2000;

const $ = (id) => document.getElementById(id);
const ui = {
  status: $('status'),
  statusText: document.querySelector('#status .status-text'),
  retryNow: $('retry-now'),
  rooms: $('rooms'),
  me: $('me'),
  meAvatar: $('me-avatar'),
  logout: $('logout'),
  title: $('room-title'),
  list: $('messages'),
  items: $('message-items'),
  loading: $('history-loading'),
  start: $('history-start'),
  pill: $('new-messages'),
  composer: $('composer'),
  input: $('composer-input'),
  counter: $('composer-counter'),
  send: $('send'),
  toggle: $('rooms-toggle'),
  toggleUnread: $('rooms-toggle-unread'),
  scrim: $('scrim'),
};

const [who, limits] = await Promise.all([api.me(), api.limits()]);
if (!who.ok) {
  if (who.status === 401) location.replace('/login');
  else showStatus('offline', `${who.error.message || 'The server is not answering.'} Reload to try again.`);
  throw new Error('no session');
}
const userId = who.data.id;
ui.me.textContent = who.data.username;
ui.meAvatar.textContent = [...who.data.username][0]?.toUpperCase() || '?';

const readStore = {
  get: (roomId) => safeStorage(() => localStorage.getItem(`ringchat:read:${userId}:${roomId}`)),
  set: (roomId, id) => safeStorage(() => localStorage.setItem(`ringchat:read:${userId}:${roomId}`, id)),
};
const model = new ChatModel(readStore);
const itemCache = new Map();
const roomCache = new Map();
/** Error rows per room: `[{key, id, message}]`. */
const errors = new Map();
let errorSeq = 0;
/** Per room: how far from the bottom the list was left (null: at the bottom), and the draft. */
const scrollMemory = new Map();
const drafts = new Map();
let unseenBelow = 0;
let online = false;
let retryTimer = null;

function safeStorage(f) {
  try {
    return f();
  } catch {
    return null; // storage disabled: unread counts start from zero on each load
  }
}

// --- connection ---------------------------------------------------------------------------

const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/ws`;
const connection = new Connection(wsUrl, {
  onState(state, info) {
    online = state === 'online';
    clearInterval(retryTimer);
    if (state !== 'online') model.connectionLost();
    if (state === 'online') {
      showStatus('online', 'Connected');
    } else if (state === 'connecting') {
      showStatus('connecting', info.attempt ? 'Reconnecting…' : 'Connecting…');
    } else {
      const tick = () => {
        const s = Math.max(0, Math.ceil((info.retryAt - Date.now()) / 1000));
        showStatus('offline', `Offline: ${info.reason}. Retrying in ${s} s…`, true);
      };
      tick();
      retryTimer = setInterval(tick, 1000);
    }
    updateComposer();
  },
  onEvent(type, payload) {
    if (type === 'hello') onHello(payload);
    else if (type === 'serverMessages') onServerMessages(payload);
    else if (type === 'roomHistory') onRoomHistory(payload);
    else if (type === 'error') onErrorEvent(payload);
  },
  async onClosedBeforeHello() {
    const r = await api.me();
    if (r.status === 401) {
      location.replace('/login');
      return false;
    }
    return true;
  },
});

function showStatus(state, text, canRetry = false) {
  ui.status.dataset.state = state;
  ui.statusText.textContent = text;
  ui.retryNow.hidden = !canRetry;
}

ui.retryNow.addEventListener('click', () => connection.reconnectNow());

function requestHistory(requests) {
  for (const r of requests) {
    connection.send('requestRoomHistory', { roomId: r.roomId, firstMessageId: r.before });
  }
}

function onHello(payload) {
  const first = model.helloCount === 0;
  const atBottom = isAtBottom();
  const { requests } = model.applyHello(payload, Date.now());
  const fromHash = roomFromHash();
  if (first && fromHash && model.room(fromHash)) model.select(fromHash);
  requestHistory(requests);
  renderRooms();
  renderRoom(first || atBottom ? 'bottom' : 'keep');
  markReadIfSeen();
  maybeLoadOlder();
}

/** Whether the user sees the newest messages of the open room right now. */
function seeingNewest() {
  return document.visibilityState === 'visible' && isAtBottom();
}

function onServerMessages(payload) {
  const atBottom = isAtBottom();
  const r = model.applyServerMessages(payload, Date.now(), seeingNewest());
  if (!r) return;
  if (r.roomId === model.current) {
    const mineSent = r.confirmed.length > 0;
    if (!atBottom && !mineSent) unseenBelow += r.fresh.filter((m) => !model.isMine(m)).length;
    // At the bottom, a long-lived room keeps only its newest messages on screen.
    if (atBottom || mineSent) model.room(r.roomId).trimOldest(MESSAGES_KEPT_MAX);
    renderRoom(atBottom || mineSent ? 'bottom' : 'keep');
    markReadIfSeen();
  } else {
    model.room(r.roomId).trimOldest(MESSAGES_KEPT_MAX);
  }
  renderRooms();
}

function onRoomHistory(payload) {
  const r = model.applyRoomHistory(payload);
  if (!r) return;
  requestHistory(r.requests);
  if (r.roomId === model.current) {
    renderRoom(r.purpose === 'older' ? 'prepend' : isAtBottom() ? 'bottom' : 'keep');
    maybeLoadOlder();
  }
  renderRooms();
}

function onErrorEvent(payload) {
  const failed = model.applyError(payload);
  if (failed && failed.historyFailed) {
    setTimeout(() => {
      if (!online) return; // the next hello starts over
      requestHistory(failed.historyFailed.map((id) => model.retryHistory(id)).filter(Boolean));
      renderRoom('keep');
    }, HISTORY_RETRY_MS);
  } else if (failed) {
    if (failed.roomId === model.current) renderRoom('keep');
    return;
  }
  const list = errors.get(model.current) || [];
  list.push({ key: `err-${++errorSeq}`, id: String(payload.id || 'ERROR'), message: String(payload.message || '') });
  while (list.length > ERRORS_SHOWN_MAX) list.shift();
  errors.set(model.current, list);
  renderRoom(isAtBottom() ? 'bottom' : 'keep');
}

setInterval(() => {
  const changed = model.expirePending(Date.now());
  if (changed.includes(model.current)) renderRoom('keep');
}, PENDING_CHECK_MS);

// --- rendering ----------------------------------------------------------------------------

const handlers = {
  retry(localId) {
    if (!online) return;
    const p = model.retryPending(model.current, localId, Date.now());
    if (p) connection.send('clientMessages', { roomId: model.current, messages: [{ content: p.content }] });
    renderRoom('bottom');
  },
  discard(localId) {
    model.discardPending(model.current, localId);
    renderRoom('keep');
  },
  dismissError(key) {
    const list = (errors.get(model.current) || []).filter((e) => e.key !== key);
    errors.set(model.current, list);
    renderRoom('keep');
  },
};

function renderRooms() {
  reconcile(ui.rooms, roomCache, roomItems(model, selectRoom));
  let total = 0;
  for (const id of model.order) total += model.room(id).unread;
  document.title = total ? `(${unreadLabel(total)}) ringchat` : 'ringchat';
  ui.toggleUnread.hidden = total === 0;
  ui.toggleUnread.textContent = unreadLabel(total);
}

/**
 * Redraws the open room. `scroll`: 'bottom' sticks to the newest message; 'keep' (and
 * 'prepend', older messages added above) keeps the row at the top of the view exactly where
 * it was, whatever was added above or below it.
 */
function renderRoom(scroll) {
  const room = model.room(model.current);
  if (!room) return;
  ui.title.textContent = room.name;
  const anchor = scroll === 'bottom' ? null : topRow();
  const before = { height: ui.list.scrollHeight, top: ui.list.scrollTop };
  reconcile(ui.items, itemCache, messageItems(model, room, errors.get(room.id) || [], handlers));
  ui.loading.hidden = !room.loadingOlder;
  ui.start.hidden = room.hasMore || room.hole !== null || room.loadingOlder;
  if (scroll === 'bottom') {
    ui.list.scrollTop = ui.list.scrollHeight;
    unseenBelow = 0;
  } else if (anchor && anchor.el.isConnected) {
    ui.list.scrollTop = anchor.el.offsetTop - anchor.offset;
  } else if (scroll === 'prepend') {
    ui.list.scrollTop = before.top + (ui.list.scrollHeight - before.height);
  }
  updatePill();
}

/**
 * The first message at least partly in view, and how far its top is from the view's top. (Not
 * a day separator: older messages of the same day are inserted below a day's separator, which
 * moves up with them.)
 */
function topRow() {
  const top = ui.list.scrollTop;
  for (const el of ui.items.children) {
    if (el.classList.contains('msg') && el.offsetTop + el.offsetHeight > top) {
      return { el, offset: el.offsetTop - top };
    }
  }
  return null;
}

function distanceFromBottom() {
  return Math.max(0, ui.list.scrollHeight - ui.list.clientHeight - ui.list.scrollTop);
}

function isAtBottom() {
  return distanceFromBottom() < BOTTOM_SLACK_PX;
}

function updatePill() {
  if (isAtBottom()) unseenBelow = 0;
  ui.pill.hidden = unseenBelow === 0;
  ui.pill.textContent = unseenBelow === 1 ? '1 new message' : `${unseenBelow} new messages`;
}

function markReadIfSeen() {
  if (seeingNewest() && model.current) {
    model.markRead(model.current);
    renderRooms();
  }
}

function maybeLoadOlder() {
  const room = model.room(model.current);
  if (!room || !online) return;
  const fits = ui.list.scrollHeight <= ui.list.clientHeight + LOAD_OLDER_WITHIN_PX;
  if (ui.list.scrollTop < LOAD_OLDER_WITHIN_PX || fits) {
    const request = model.requestOlder(room.id);
    if (request) {
      requestHistory([request]);
      ui.loading.hidden = false;
      ui.start.hidden = true;
    }
  }
}

let scrollQueued = false;
ui.list.addEventListener(
  'scroll',
  () => {
    if (scrollQueued) return;
    scrollQueued = true;
    requestAnimationFrame(() => {
      scrollQueued = false;
      updatePill();
      markReadIfSeen();
      maybeLoadOlder();
    });
  },
  { passive: true },
);

ui.pill.addEventListener('click', () => {
  ui.list.scrollTo({ top: ui.list.scrollHeight, behavior: 'smooth' });
  unseenBelow = 0;
  updatePill();
});

document.addEventListener('visibilitychange', markReadIfSeen);

// --- rooms, drawer and URL ----------------------------------------------------------------

function roomFromHash() {
  const m = /^#room=(.+)$/.exec(location.hash);
  try {
    return m ? decodeURIComponent(m[1]) : null;
  } catch {
    return null; // a malformed hash (say `%E0`) is no room
  }
}

function selectRoom(id) {
  if (id !== model.current) {
    scrollMemory.set(model.current, isAtBottom() ? null : distanceFromBottom());
    drafts.set(model.current, ui.input.value);
    model.select(id);
    history.replaceState(null, '', `#room=${encodeURIComponent(id)}`);
    ui.input.value = drafts.get(id) || '';
    unseenBelow = 0;
    const remembered = scrollMemory.get(id);
    renderRoom(remembered == null ? 'bottom' : 'keep');
    if (remembered != null) ui.list.scrollTop = ui.list.scrollHeight - ui.list.clientHeight - remembered;
    markReadIfSeen();
    maybeLoadOlder();
    updateComposer();
  }
  renderRooms();
  setDrawer(false);
  if (matchMedia('(min-width: 48rem)').matches || document.activeElement === document.body) ui.input.focus();
}

addEventListener('hashchange', () => {
  const id = roomFromHash();
  if (id && model.room(id)) selectRoom(id);
});

function setDrawer(open) {
  document.body.classList.toggle('rooms-open', open);
  ui.toggle.setAttribute('aria-expanded', String(open));
  ui.scrim.hidden = !open;
  if (open) ui.rooms.querySelector('button[aria-current="true"], button.room')?.focus();
}

ui.toggle.addEventListener('click', () => setDrawer(!document.body.classList.contains('rooms-open')));
ui.scrim.addEventListener('click', () => setDrawer(false));
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && document.body.classList.contains('rooms-open')) {
    setDrawer(false);
    ui.toggle.focus();
  }
});

// Arrow keys move between rooms in the list.
ui.rooms.addEventListener('keydown', (e) => {
  if (e.key !== 'ArrowDown' && e.key !== 'ArrowUp') return;
  const buttons = [...ui.rooms.querySelectorAll('button.room')];
  const i = buttons.indexOf(document.activeElement);
  if (i < 0) return;
  e.preventDefault();
  buttons[(i + (e.key === 'ArrowDown' ? 1 : buttons.length - 1)) % buttons.length].focus();
});

// --- composer -----------------------------------------------------------------------------

function updateComposer() {
  const text = ui.input.value;
  const n = charLength(text);
  const max = limits.messageCharsMax;
  const near = n >= Math.floor(max * COUNTER_FROM_FRACTION);
  ui.counter.hidden = !near;
  ui.counter.textContent = near ? String(max - n) : '';
  ui.counter.classList.toggle('over', n > max);
  ui.counter.title = `${n} of ${max} characters`;
  ui.input.disabled = !online;
  ui.input.placeholder = online ? `Message ${model.room(model.current)?.name ?? ''}` : 'Offline: waiting for the connection…';
  ui.send.disabled = !online || text.trim() === '' || n > max;
  ui.input.style.height = 'auto';
  ui.input.style.height = `${Math.min(ui.input.scrollHeight, COMPOSER_MAX_PX)}px`;
}

function sendComposer() {
  const content = ui.input.value;
  if (!online || content.trim() === '' || charLength(content) > limits.messageCharsMax) return;
  const roomId = model.current;
  const entry = model.addPending(roomId, content, Date.now());
  if (!connection.send('clientMessages', { roomId, messages: [{ content }] })) {
    model.failPending(roomId, entry.localId, 'not connected');
  }
  ui.input.value = '';
  drafts.set(roomId, '');
  updateComposer();
  renderRoom('bottom');
  renderRooms();
}

ui.input.addEventListener('input', updateComposer);
ui.input.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
    e.preventDefault();
    sendComposer();
  }
});
ui.composer.addEventListener('submit', (e) => {
  e.preventDefault();
  sendComposer();
  ui.input.focus();
});

// --- logout -------------------------------------------------------------------------------

ui.logout.addEventListener('click', async () => {
  ui.logout.disabled = true;
  connection.stop();
  await api.logout();
  location.replace('/login');
});

updateComposer();
connection.start();
