// Rendering of the chat page. Every piece of text that came from a user or the server is put
// in with `textContent` (never `innerHTML`), so a message is always shown as the text it is.
//
// The message list is reconciled by key rather than rebuilt: an element per message id (or
// pending send, day separator, error row) is created once and moved only when its place
// changes, so a new message costs one insertion, text selection survives, and the caller can
// keep the scroll position when older pages are prepended.

import { dayKey, formatDay, formatFull, formatTime } from '../format.js';
import { unreadLabel } from './model.js';

/** Consecutive messages of one author closer than this are grouped under one name. */
export const GROUP_GAP_MS = 5 * 60 * 1000;
/** Error rows kept in a room's list. */
export const ERRORS_SHOWN_MAX = 5;
/** Characters of the newest message shown in the room list. */
export const PREVIEW_CHARS_MAX = 80;

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

/** The first letter of a name, for its avatar. */
function initial(name) {
  const first = [...(name || '?').trim()][0] || '?';
  return first.toUpperCase();
}

/** A stable hue per name, so each person keeps a colour. */
export function hueOf(name) {
  let h = 0;
  for (const ch of name || '') h = (h * 31 + ch.codePointAt(0)) % 360;
  return h;
}

function avatar(name) {
  const a = el('span', 'avatar', initial(name));
  a.setAttribute('aria-hidden', 'true');
  a.style.setProperty('--hue', String(hueOf(name)));
  return a;
}

/**
 * Puts `items` (`[{key, sig, build}]`) into `container` in order, reusing the element of a key
 * whose `sig` did not change. `cache` is the container's `Map(key → {el, sig})`.
 */
export function reconcile(container, cache, items) {
  const wanted = new Set();
  let cursor = container.firstChild;
  for (const item of items) {
    wanted.add(item.key);
    let entry = cache.get(item.key);
    if (!entry || entry.sig !== item.sig) {
      const fresh = item.build();
      fresh.dataset.key = item.key;
      if (entry) {
        const hadFocus = entry.el.contains(document.activeElement);
        if (cursor === entry.el) cursor = fresh;
        entry.el.replaceWith(fresh);
        if (hadFocus && fresh.matches('button')) fresh.focus();
      }
      entry = { el: fresh, sig: item.sig };
      cache.set(item.key, entry);
    }
    if (entry.el === cursor) {
      cursor = cursor.nextSibling;
    } else {
      container.insertBefore(entry.el, cursor);
    }
  }
  while (cursor) {
    const next = cursor.nextSibling;
    cursor.remove();
    cursor = next;
  }
  for (const key of [...cache.keys()]) if (!wanted.has(key)) cache.delete(key);
}

/** The user id of every line-port guest; their names carry a leading `~`. */
const GUEST_USER_ID = 0;

function messageElement(m, { mine, groupStart }) {
  const row = el('div', `msg${mine ? ' mine' : ''}${groupStart ? ' group-start' : ''}`);
  row.dataset.id = m.id;
  row.dataset.author = m.user.username;
  if (groupStart && !mine) row.append(avatar(m.user.username));
  const bubble = el('div', 'msg-bubble');
  if (groupStart) {
    const head = el('div', 'msg-head');
    const author = el('span', 'msg-author', mine ? 'You' : m.user.username);
    if (!mine) author.style.setProperty('--hue', String(hueOf(m.user.username)));
    head.append(author);
    // A line-port guest (docs/line-chat.md): user id 0, which no account has.
    if (m.user.id === GUEST_USER_ID) head.append(el('span', 'msg-guest', 'guest'));
    bubble.append(head);
  }
  bubble.append(el('p', 'msg-text', m.content));
  const time = el('time', 'msg-time', formatTime(m.timestamp));
  time.dateTime = new Date(m.timestamp).toISOString();
  time.title = formatFull(m.timestamp);
  bubble.append(time);
  row.append(bubble);
  return row;
}

function pendingElement(p, onRetry, onDiscard) {
  const row = el('div', 'msg mine pending group-start');
  row.dataset.pending = 'true';
  if (p.state === 'failed') row.dataset.failed = 'true';
  const bubble = el('div', 'msg-bubble');
  bubble.append(el('p', 'msg-text', p.content));
  const status = el('div', 'msg-status');
  if (p.state === 'failed') {
    status.append(el('span', 'msg-failed', `Not sent: ${p.reason || 'unknown error'}.`));
    const retry = el('button', 'msg-retry link-button', 'Retry');
    retry.type = 'button';
    retry.addEventListener('click', () => onRetry(p.localId));
    const discard = el('button', 'msg-discard link-button', 'Discard');
    discard.type = 'button';
    discard.addEventListener('click', () => onDiscard(p.localId));
    status.append(retry, discard);
  } else {
    status.append(el('span', 'msg-sending', 'Sending…'));
  }
  bubble.append(status);
  row.append(bubble);
  return row;
}

function errorElement(e, onDismiss) {
  const row = el('div', 'chat-error');
  row.setAttribute('role', 'alert');
  row.append(el('span', 'chat-error-text', e.message ? `${e.message} (${e.id})` : e.id));
  const close = el('button', 'link-button', 'Dismiss');
  close.type = 'button';
  close.addEventListener('click', () => onDismiss(e.key));
  row.append(close);
  return row;
}

/** The ordered render items of a room: day separators, messages, pending sends, errors. */
export function messageItems(model, room, errors, handlers, now = Date.now()) {
  const items = [];
  let prev = null;
  let prevDay = null;
  for (const m of room.messages) {
    const day = dayKey(m.timestamp);
    if (day !== prevDay) {
      const label = formatDay(m.timestamp, now);
      items.push({
        key: `day-${day}`,
        sig: label,
        build: () => {
          const sep = el('div', 'day-separator');
          sep.setAttribute('role', 'separator');
          sep.append(el('span', '', label));
          return sep;
        },
      });
    }
    const mine = model.isMine(m);
    const groupStart =
      !prev ||
      day !== prevDay ||
      prev.user.id !== m.user.id ||
      prev.user.username !== m.user.username ||
      m.timestamp - prev.timestamp > GROUP_GAP_MS;
    items.push({
      key: `m-${m.id}`,
      sig: `${groupStart ? 1 : 0}${mine ? 1 : 0}`,
      build: () => messageElement(m, { mine, groupStart }),
    });
    prev = m;
    prevDay = day;
  }
  for (const p of room.pending) {
    items.push({
      key: p.localId,
      sig: `${p.state}|${p.reason || ''}`,
      build: () => pendingElement(p, handlers.retry, handlers.discard),
    });
  }
  for (const e of errors) {
    items.push({ key: e.key, sig: '', build: () => errorElement(e, handlers.dismissError) });
  }
  return items;
}

/** The room list: one button per room with its unread badge and newest message. */
export function roomItems(model, onSelect) {
  return model.order.map((id) => {
    const room = model.room(id);
    const newest = room.newest;
    const preview = newest
      ? `${model.isMine(newest) ? 'You' : newest.user.username}: ${[...newest.content].slice(0, PREVIEW_CHARS_MAX).join('')}`
      : 'No messages yet';
    const current = model.current === id;
    return {
      key: `room-${id}`,
      sig: `${room.name}|${room.unread}|${current}|${preview}`,
      build: () => {
        const b = el('button', 'room');
        b.type = 'button';
        b.dataset.roomId = id;
        if (current) b.setAttribute('aria-current', 'true');
        const top = el('span', 'room-top');
        top.append(el('span', 'room-name', room.name));
        const badge = el('span', 'room-unread', unreadLabel(room.unread));
        badge.hidden = room.unread === 0;
        badge.setAttribute('aria-label', `${room.unread} unread`);
        top.append(badge);
        b.append(top, el('span', 'room-preview', preview.replace(/\s+/g, ' ')));
        b.addEventListener('click', () => onSelect(id));
        return b;
      },
    };
  });
}
