// The chat's state, with no DOM and no socket in it (unit-tested under Node):
//
// - rooms in the server's order, each with its messages in id order, every id at most once
//   (a message can arrive through hello, serverMessages and roomHistory, and again after a
//   reconnect; merging by id is what makes delivery exactly-once on screen);
// - unread counts, from a per-room "last read" id that survives reloads (kept by the caller);
// - pending sends: shown at once, confirmed when the server's broadcast brings them back (the
//   sender sees its own message only through that broadcast), failed on an error event or a
//   lost connection, retried on request;
// - history paging: at most one roomHistory request in flight per room, because the server's
//   answer does not say which request it answers;
// - catch-up: after a reconnect, hello brings the newest 100 messages of each room. When
//   those do not reach back to the newest message already shown, the hole between is filled
//   with roomHistory pages, up to CATCHUP_PAGES_MAX of them; past that the older messages
//   are dropped from the screen (scrolling up loads them again), so what is shown never
//   has a hole in it for longer than the catch-up takes.
//
// Every method returns what the view must redraw; nothing here reads the clock but `now`
// arguments.

/** Messages the server sends per hello room and per roomHistory page. */
export const PAGE_MESSAGES = 100;
/** roomHistory pages fetched to close the hole after a reconnect before giving up on it. */
export const CATCHUP_PAGES_MAX = 20;
/** A send not confirmed in this long is marked failed (the user may retry it). */
export const SEND_CONFIRM_TIMEOUT_MS = 30000;
/** Unread counts above this show as "99+". */
export const UNREAD_SHOWN_MAX = 99;
/** Messages a room keeps in memory (and on screen) while the user is at the bottom. */
export const MESSAGES_KEPT_MAX = 1000;
/** Error events about a failed history request (ringchat's id for it). */
export const HISTORY_ERROR = 'HISTORY_UNAVAILABLE';

/** Compares two stream ids `<ms>-<seq>` numerically; negative when a < b. */
export function compareIds(a, b) {
  if (a === b) return 0;
  const [am, as = '0'] = a.split('-');
  const [bm, bs = '0'] = b.split('-');
  if (am.length !== bm.length) return am.length - bm.length;
  if (am !== bm) return am < bm ? -1 : 1;
  if (as.length !== bs.length) return as.length - bs.length;
  return as < bs ? -1 : as > bs ? 1 : 0;
}

/** Whether `s` looks like a stream id (digits, dash, digits). */
export function isMessageId(s) {
  return typeof s === 'string' && /^[0-9]{1,20}-[0-9]{1,20}$/.test(s);
}

let nextLocalId = 1;

export class Room {
  constructor(id, name) {
    this.id = id;
    this.name = name;
    /** Confirmed messages, ascending by id. */
    this.messages = [];
    this.ids = new Set();
    /** Whether the server has messages older than `messages[0]`. */
    this.hasMore = false;
    /** The roomHistory request in flight: `{before, purpose: 'older' | 'catchup'}` or null. */
    this.inFlight = null;
    /** After a reconnect: the hole `(after, before)` still to fetch, and pages left for it. */
    this.hole = null;
    /** Newest id the user has seen with this room open. */
    this.lastRead = null;
    this.unread = 0;
    /**
   * Sends not yet confirmed: `{localId, content, state: 'sending' | 'failed', sentAt, after}`,
   * `after` being the newest id shown when it was sent (only later messages can confirm it).
   */
    this.pending = [];
  }

  get newest() {
    return this.messages.length ? this.messages[this.messages.length - 1] : null;
  }

  get oldest() {
    return this.messages.length ? this.messages[0] : null;
  }

  get loadingOlder() {
    return this.inFlight !== null;
  }

  /** Inserts messages (any order), skipping known ids; returns those that were new, ascending. */
  merge(messages) {
    const fresh = [];
    for (const m of messages) {
      if (!m || !isMessageId(m.id) || this.ids.has(m.id)) continue;
      this.ids.add(m.id);
      fresh.push(m);
    }
    if (fresh.length === 0) return fresh;
    fresh.sort((a, b) => compareIds(a.id, b.id));
    const newest = this.newest;
    const appended = !newest || compareIds(fresh[0].id, newest.id) > 0;
    this.messages.push(...fresh);
    if (!appended) this.messages.sort((a, b) => compareIds(a.id, b.id));
    return fresh;
  }

  /**
   * Keeps only the newest `keep` messages (the rest can be paged in again); returns how many
   * were dropped.
   */
  trimOldest(keep) {
    const drop = this.messages.length - keep;
    if (drop <= 0 || this.hole || this.inFlight) return 0;
    for (const m of this.messages.slice(0, drop)) this.ids.delete(m.id);
    this.messages = this.messages.slice(drop);
    this.hasMore = true;
    return drop;
  }

  /** Drops every message with an id not greater than `id` (they are no longer contiguous). */
  dropThrough(id) {
    const keep = this.messages.filter((m) => compareIds(m.id, id) > 0);
    for (const m of this.messages) if (compareIds(m.id, id) <= 0) this.ids.delete(m.id);
    this.messages = keep;
    this.hasMore = true;
  }
}

export class ChatModel {
  /**
   * `readStore` keeps last-read ids across reloads: `{get(roomId), set(roomId, id)}` (the page
   * passes one backed by localStorage; tests pass a Map-backed one).
   */
  constructor(readStore = null) {
    this.me = null;
    this.rooms = new Map();
    this.order = [];
    this.current = null;
    this.readStore = readStore;
    this.helloCount = 0;
  }

  room(id) {
    return this.rooms.get(id) || null;
  }

  /**
   * Applies a hello. Returns `{rooms: [ids changed], requests: [{roomId, before}]}`; the
   * requests are the roomHistory calls catch-up needs (sent by the caller).
   */
  applyHello(payload, now = 0) {
    this.helloCount += 1;
    this.me = payload.me;
    const seen = [];
    const requests = [];
    for (const r of payload.rooms || []) {
      let room = this.rooms.get(r.id);
      const first = !room;
      if (first) {
        room = new Room(r.id, r.name);
        this.rooms.set(r.id, room);
        if (this.readStore) room.lastRead = this.readStore.get(r.id) || null;
      }
      room.name = r.name;
      if (first && room.lastRead === null && r.messages && r.messages.length) {
        // Never opened in this browser: what is already there counts as read, what arrives
        // from now on (live or with a later hello) counts as unread.
        const newest = r.messages.reduce((a, m) => (isMessageId(m.id) && compareIds(m.id, a) > 0 ? m.id : a), '0-0');
        if (newest !== '0-0') {
          room.lastRead = newest;
          if (this.readStore) this.readStore.set(r.id, newest);
        }
      }
      room.inFlight = null;
      room.hole = null;
      seen.push(r.id);
      const incoming = (r.messages || []).filter((m) => m && isMessageId(m.id));
      const previousNewest = room.newest;
      if (first || !previousNewest) {
        room.merge(incoming);
        room.hasMore = Boolean(r.hasMoreMessages);
      } else {
        const oldestIncoming = incoming.reduce(
          (o, m) => (o === null || compareIds(m.id, o.id) < 0 ? m : o),
          null,
        );
        room.merge(incoming);
        if (oldestIncoming && r.hasMoreMessages && compareIds(oldestIncoming.id, previousNewest.id) > 0) {
          // Hole between what was shown and what hello brought: fetch it page by page.
          room.hole = { after: previousNewest.id, before: oldestIncoming.id, pagesLeft: CATCHUP_PAGES_MAX };
          room.inFlight = { before: oldestIncoming.id, purpose: 'catchup' };
          requests.push({ roomId: room.id, before: oldestIncoming.id });
        }
      }
      this.reconcilePending(room, now, true);
      this.recountUnread(room);
    }
    this.order = seen.filter((id) => this.rooms.has(id));
    for (const id of [...this.rooms.keys()]) if (!seen.includes(id)) this.rooms.delete(id);
    if (!this.current || !this.rooms.has(this.current)) this.current = this.order[0] || null;
    return { rooms: seen, requests };
  }

  /**
   * Applies serverMessages. `seen`: whether the user is looking at the open room's newest
   * messages (otherwise, as in a hidden tab, they count as unread there too). Returns
   * `{roomId, fresh, confirmed}` or null for unknown rooms.
   */
  applyServerMessages(payload, now = 0, seen = true) {
    const room = this.rooms.get(payload.roomId);
    if (!room) return null;
    const fresh = room.merge(payload.messages || []);
    const confirmed = this.reconcilePending(room, now, false, fresh);
    const counts = room.id !== this.current || !seen;
    for (const m of fresh) {
      if (this.isMine(m)) continue;
      if (counts && (!room.lastRead || compareIds(m.id, room.lastRead) > 0)) room.unread += 1;
    }
    return { roomId: room.id, fresh, confirmed };
  }

  /**
   * Applies roomHistory, the answer to the room's request in flight. Returns `{roomId,
   * fresh, purpose, requests}`; `requests` holds the next catch-up page when the hole is
   * still open.
   */
  applyRoomHistory(payload) {
    const room = this.rooms.get(payload.roomId);
    if (!room) return null;
    const purpose = room.inFlight ? room.inFlight.purpose : 'older';
    room.inFlight = null;
    const messages = (payload.messages || []).filter((m) => m && isMessageId(m.id));
    const fresh = room.merge(messages);
    const requests = [];
    if (purpose === 'catchup' && room.hole) {
      const hole = room.hole;
      const oldest = messages.reduce((o, m) => (o === null || compareIds(m.id, o) < 0 ? m.id : o), null);
      hole.pagesLeft -= 1;
      if (!payload.hasMoreMessages || oldest === null || compareIds(oldest, hole.after) <= 0) {
        room.hole = null; // closed: the pages reached what was shown
      } else if (hole.pagesLeft <= 0) {
        room.dropThrough(hole.after);
        room.hole = null;
      } else {
        hole.before = oldest;
        room.inFlight = { before: oldest, purpose: 'catchup' };
        requests.push({ roomId: room.id, before: oldest });
      }
      for (const m of fresh) {
        if (!this.isMine(m) && room.id !== this.current && (!room.lastRead || compareIds(m.id, room.lastRead) > 0)) {
          room.unread += 1;
        }
      }
      // A send the hello marked failed may have arrived after all: it is in the hole.
      this.reconcilePending(room, 0, false, fresh);
    } else {
      room.hasMore = Boolean(payload.hasMoreMessages) && messages.length > 0;
    }
    return { roomId: room.id, fresh, purpose, requests };
  }

  /** The roomHistory request for older messages, or null when none is needed or possible. */
  requestOlder(roomId) {
    const room = this.rooms.get(roomId);
    if (!room || room.inFlight || !room.hasMore || !room.oldest) return null;
    room.inFlight = { before: room.oldest.id, purpose: 'older' };
    return { roomId, before: room.oldest.id };
  }

  /** The connection went away: requests in flight are lost; sends stay pending. */
  connectionLost() {
    for (const room of this.rooms.values()) {
      room.inFlight = null;
    }
  }

  /**
   * The request to retry a failed history fetch of `roomId`: the hole's next page, or the
   * older page; null when none is needed.
   */
  retryHistory(roomId) {
    const room = this.rooms.get(roomId);
    if (!room || room.inFlight) return null;
    if (room.hole) {
      room.inFlight = { before: room.hole.before, purpose: 'catchup' };
      return { roomId, before: room.hole.before };
    }
    return this.requestOlder(roomId);
  }

  /** Marks one pending send failed (a send that could not even be handed to the socket). */
  failPending(roomId, localId, reason) {
    const room = this.rooms.get(roomId);
    const p = room && room.pending.find((e) => e.localId === localId);
    if (p) {
      p.state = 'failed';
      p.reason = reason;
    }
  }

  /** Records a send; returns the pending entry. */
  addPending(roomId, content, now) {
    const room = this.rooms.get(roomId);
    const after = room.newest ? room.newest.id : null;
    const entry = { localId: `local-${nextLocalId++}`, content, state: 'sending', sentAt: now, after };
    room.pending.push(entry);
    return entry;
  }

  /** A failed pending entry is sent again: it moves to the end as sending. */
  retryPending(roomId, localId, now) {
    const room = this.rooms.get(roomId);
    const i = room ? room.pending.findIndex((p) => p.localId === localId) : -1;
    if (i < 0) return null;
    const [entry] = room.pending.splice(i, 1);
    entry.state = 'sending';
    entry.sentAt = now;
    entry.after = room.newest ? room.newest.id : null;
    room.pending.push(entry);
    return entry;
  }

  discardPending(roomId, localId) {
    const room = this.rooms.get(roomId);
    if (room) room.pending = room.pending.filter((p) => p.localId !== localId);
  }

  /**
   * An error event from the server. The send it answers is the oldest one still sending (the
   * server answers a connection's events in order); returns `{roomId}` of the send marked
   * failed, or null when the error is not about a send.
   */
  applyError(error) {
    if (error && error.id === HISTORY_ERROR) {
      // The history request in flight failed (at most one per room; the error does not say
      // which room, so every room's request is released and retried by the caller).
      const rooms = [];
      for (const room of this.rooms.values()) {
        if (room.inFlight) {
          room.inFlight = null;
          rooms.push(room.id);
        }
      }
      return { historyFailed: rooms };
    }
    const sendErrors = [
      'CONTENT_TOO_LONG', 'EMPTY_CONTENT', 'TOO_MANY_MESSAGES', 'STORE_UNAVAILABLE', 'SERVER_BUSY', 'UNKNOWN_ROOM',
    ];
    if (!error || !sendErrors.includes(error.id)) return null;
    let oldest = null;
    for (const room of this.rooms.values()) {
      for (const p of room.pending) {
        if (p.state === 'sending' && (!oldest || p.sentAt < oldest.p.sentAt)) oldest = { room, p };
      }
    }
    if (!oldest) return null;
    oldest.p.state = 'failed';
    oldest.p.reason = error.message || error.id;
    return { roomId: oldest.room.id };
  }

  /** Marks sends older than the confirmation timeout failed; returns the rooms changed. */
  expirePending(now) {
    const changed = [];
    for (const room of this.rooms.values()) {
      for (const p of room.pending) {
        if (p.state === 'sending' && now - p.sentAt > SEND_CONFIRM_TIMEOUT_MS) {
          p.state = 'failed';
          p.reason = 'not confirmed by the server';
          if (!changed.includes(room.id)) changed.push(room.id);
        }
      }
    }
    return changed;
  }

  /** The user has the room open and sees its newest messages. */
  markRead(roomId) {
    const room = this.rooms.get(roomId);
    if (!room) return;
    room.unread = 0;
    const newest = room.newest;
    if (newest && (!room.lastRead || compareIds(newest.id, room.lastRead) > 0)) {
      room.lastRead = newest.id;
      if (this.readStore) this.readStore.set(roomId, newest.id);
    }
  }

  select(roomId) {
    if (!this.rooms.has(roomId)) return false;
    this.current = roomId;
    return true;
  }

  isMine(m) {
    return Boolean(this.me && m.user && m.user.id === this.me.id);
  }

  recountUnread(room) {
    let n = 0;
    for (const m of room.messages) {
      if (this.isMine(m)) continue;
      if (!room.lastRead || compareIds(m.id, room.lastRead) > 0) n += 1;
    }
    room.unread = n;
  }

  /**
   * Confirms pending sends against the user's own messages among `fresh` (after a hello, all
   * of the room's messages): each of the user's messages newer than the send's `after` confirms
   * the oldest pending send with the same content. After a hello, sends still
   * unconfirmed are marked failed: the old connection is gone and they may never have arrived.
   */
  reconcilePending(room, now, afterHello, fresh = room.messages) {
    if (room.pending.length === 0) return [];
    const confirmed = [];
    for (const m of fresh) {
      if (!this.isMine(m)) continue;
      const i = room.pending.findIndex(
        (p) => p.content === m.content && (p.after === null || compareIds(m.id, p.after) > 0),
      );
      if (i >= 0) confirmed.push(room.pending.splice(i, 1)[0]);
    }
    if (afterHello) {
      for (const p of room.pending) {
        if (p.state === 'sending') {
          p.state = 'failed';
          p.reason = 'the connection was lost before the server confirmed it';
        }
      }
    }
    return confirmed;
  }
}

/** The unread badge's text. */
export function unreadLabel(n) {
  return n > UNREAD_SHOWN_MAX ? `${UNREAD_SHOWN_MAX}+` : String(n);
}
