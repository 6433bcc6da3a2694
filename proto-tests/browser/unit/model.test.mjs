// Unit tests of static/js/chat/model.js under Node: merging by id (no duplicates, id order),
// unread counts, pending sends, history paging and the catch-up after a reconnect.

import assert from 'node:assert/strict';
import test from 'node:test';

import {
  CATCHUP_PAGES_MAX,
  ChatModel,
  HISTORY_ERROR,
  compareIds,
  unreadLabel,
} from '../../../static/js/chat/model.js';

const ALICE = { id: 1, username: 'alice' };
const BOB = { id: 2, username: 'bob' };

/** Message `n` of a room: id `1000+n-0`, so ids sort as n does. */
function msg(n, user = BOB, content = `m${n}`) {
  return { id: `${1000 + n}-0`, content, user, timestamp: 1000 + n };
}

/** Messages a..b (inclusive), newest first, as hello and roomHistory send them. */
function newestFirst(a, b, user = BOB) {
  const out = [];
  for (let n = b; n >= a; n--) out.push(msg(n, user));
  return out;
}

function hello(rooms, me = ALICE) {
  return { me, rooms };
}

function mapStore() {
  const m = new Map();
  return { get: (k) => m.get(k), set: (k, v) => m.set(k, v), m };
}

test('ids compare numerically, not as text', () => {
  assert.ok(compareIds('9-0', '10-0') < 0);
  assert.ok(compareIds('10-9', '10-10') < 0);
  assert.ok(compareIds('1700000000000-1', '1700000000000-0') > 0);
  assert.equal(compareIds('5-5', '5-5'), 0);
});

test('hello, live messages and duplicates', () => {
  const model = new ChatModel();
  model.applyHello(hello([{ id: 'r', name: 'R', hasMoreMessages: false, messages: newestFirst(1, 3) }]));
  const room = model.room('r');
  assert.deepEqual(room.messages.map((m) => m.content), ['m1', 'm2', 'm3']);
  const r = model.applyServerMessages({ roomId: 'r', messages: [msg(4), msg(3)] });
  assert.deepEqual(r.fresh.map((m) => m.content), ['m4']);
  model.applyServerMessages({ roomId: 'r', messages: [msg(4)] });
  assert.equal(room.messages.length, 4);
  assert.equal(model.applyServerMessages({ roomId: 'nope', messages: [msg(5)] }), null);
  // Garbage ids are ignored rather than shown.
  model.applyServerMessages({ roomId: 'r', messages: [{ id: 'x', content: 'bad', user: BOB, timestamp: 1 }, null] });
  assert.equal(room.messages.length, 4);
});

test('unread counts: other rooms only, not own messages, persisted last-read', () => {
  const store = mapStore();
  let model = new ChatModel(store);
  const rooms = () => [
    { id: 'a', name: 'A', hasMoreMessages: false, messages: newestFirst(1, 2) },
    { id: 'b', name: 'B', hasMoreMessages: false, messages: [] },
  ];
  model.applyHello(hello(rooms()));
  assert.equal(model.current, 'a');
  model.markRead('a');
  assert.equal(store.m.get('a'), '1002-0');
  model.applyServerMessages({ roomId: 'b', messages: [msg(3)] });
  model.applyServerMessages({ roomId: 'b', messages: [msg(4, ALICE)] });
  assert.equal(model.room('b').unread, 1);
  model.applyServerMessages({ roomId: 'a', messages: [msg(5)] });
  assert.equal(model.room('a').unread, 0, 'the open room, looked at');
  model.applyServerMessages({ roomId: 'a', messages: [msg(6)] }, 0, false);
  assert.equal(model.room('a').unread, 1, 'the open room in a hidden tab');
  model.markRead('a');
  model.select('b');
  model.markRead('b');
  assert.equal(model.room('b').unread, 0);
  // A reload: rooms read before count only what is newer than the stored id.
  model = new ChatModel(store);
  const later = rooms();
  later[0].messages = [msg(8), msg(7), msg(6), msg(5), ...newestFirst(1, 2)];
  model.applyHello(hello(later));
  assert.equal(model.room('a').unread, 2);
  assert.equal(unreadLabel(150), '99+');
});

test('pending sends are confirmed by the broadcast, failed by errors, retried', () => {
  const model = new ChatModel();
  model.applyHello(hello([{ id: 'r', name: 'R', hasMoreMessages: false, messages: [msg(1, ALICE, 'hi')] }]));
  const p1 = model.addPending('r', 'hi', 10);
  const p2 = model.addPending('r', 'second', 11);
  const room = model.room('r');
  assert.equal(room.pending.length, 2);
  // An older message of mine with the same text does not confirm the new send.
  model.applyServerMessages({ roomId: 'r', messages: [msg(1, ALICE, 'hi')] });
  assert.equal(room.pending.length, 2);
  const r = model.applyServerMessages({ roomId: 'r', messages: [msg(2, ALICE, 'hi')] });
  assert.deepEqual(r.confirmed.map((p) => p.localId), [p1.localId]);
  assert.deepEqual(model.applyError({ id: 'STORE_UNAVAILABLE', message: 'down' }), { roomId: 'r' });
  assert.equal(room.pending[0].state, 'failed');
  assert.equal(model.applyError({ id: 'BAD_MESSAGE_ID', message: '' }), null, 'not about a send');
  model.retryPending('r', p2.localId, 20);
  assert.equal(room.pending[0].state, 'sending');
  assert.deepEqual(model.expirePending(20 + 30001), ['r']);
  model.discardPending('r', p2.localId);
  assert.equal(room.pending.length, 0);
});

test('a send lost with the connection is failed by the next hello unless it arrived', () => {
  const model = new ChatModel();
  const h = (messages) => hello([{ id: 'r', name: 'R', hasMoreMessages: false, messages }]);
  model.applyHello(h([msg(1)]));
  model.addPending('r', 'arrived', 1);
  model.addPending('r', 'lost', 2);
  model.connectionLost();
  model.applyHello(h([msg(2, ALICE, 'arrived'), msg(1)]));
  const room = model.room('r');
  assert.deepEqual(room.pending.map((p) => [p.content, p.state]), [['lost', 'failed']]);
});

test('paging older history, one request at a time', () => {
  const model = new ChatModel();
  model.applyHello(hello([{ id: 'r', name: 'R', hasMoreMessages: true, messages: newestFirst(151, 250) }]));
  const req = model.requestOlder('r');
  assert.deepEqual(req, { roomId: 'r', before: '1151-0' });
  assert.equal(model.requestOlder('r'), null, 'one in flight');
  model.applyRoomHistory({ roomId: 'r', messages: newestFirst(51, 150), hasMoreMessages: true });
  model.requestOlder('r');
  model.applyRoomHistory({ roomId: 'r', messages: newestFirst(1, 50), hasMoreMessages: false });
  const room = model.room('r');
  assert.equal(room.messages.length, 250);
  assert.equal(room.hasMore, false);
  assert.equal(model.requestOlder('r'), null);
  assert.deepEqual(room.messages.slice(0, 2).map((m) => m.id), ['1001-0', '1002-0']);
});

test('catch-up after a reconnect fills the hole between shown and hello', () => {
  const model = new ChatModel();
  const h = (a, b, more) => hello([{ id: 'r', name: 'R', hasMoreMessages: more, messages: newestFirst(a, b) }]);
  model.applyHello(h(1, 10, false));
  model.select('r');
  // 150 messages were posted while away: hello has 61..160, the hole is 11..60.
  const { requests } = model.applyHello(h(61, 160, true));
  assert.deepEqual(requests, [{ roomId: 'r', before: '1061-0' }]);
  const room = model.room('r');
  assert.ok(room.loadingOlder);
  const next = model.applyRoomHistory({ roomId: 'r', messages: newestFirst(1, 60), hasMoreMessages: false });
  assert.deepEqual(next.requests, []);
  assert.equal(room.hole, null);
  assert.equal(room.messages.length, 160);
  assert.deepEqual(
    room.messages.map((m) => m.id),
    Array.from({ length: 160 }, (_, i) => `${1001 + i}-0`),
  );
  // No hole: hello overlaps what was shown.
  assert.deepEqual(model.applyHello(h(100, 160, true)).requests, []);
});

test('catch-up gives up after CATCHUP_PAGES_MAX pages and drops what is no longer contiguous', () => {
  const model = new ChatModel();
  const h = (a, b, more) => hello([{ id: 'r', name: 'R', hasMoreMessages: more, messages: newestFirst(a, b) }]);
  model.applyHello(h(1, 10, false));
  const top = 11 + 100 * (CATCHUP_PAGES_MAX + 2);
  let { requests } = model.applyHello(h(top - 99, top, true));
  let pages = 0;
  while (requests.length) {
    const before = Number(requests[0].before.split('-')[0]) - 1000;
    ({ requests } = model.applyRoomHistory({
      roomId: 'r',
      messages: newestFirst(before - 100, before - 1),
      hasMoreMessages: true,
    }));
    pages += 1;
  }
  assert.equal(pages, CATCHUP_PAGES_MAX);
  const room = model.room('r');
  assert.equal(room.hole, null);
  assert.equal(room.hasMore, true);
  assert.ok(room.messages.every((m) => compareIds(m.id, '1010-0') > 0), 'the old messages were dropped');
  for (let i = 1; i < room.messages.length; i++) {
    const [a, b] = [room.messages[i - 1].id, room.messages[i].id].map((id) => Number(id.split('-')[0]));
    assert.equal(b, a + 1, 'no hole in what is shown');
  }
});

test('a room never opened: its history counts as read, what comes after a reconnect does not', () => {
  const model = new ChatModel(mapStore());
  const h = (messages) => hello([
    { id: 'a', name: 'A', hasMoreMessages: false, messages: [] },
    { id: 'b', name: 'B', hasMoreMessages: false, messages },
    { id: 'c', name: 'C', hasMoreMessages: false, messages: [] },
  ]);
  model.applyHello(h(newestFirst(1, 5)));
  assert.equal(model.room('b').unread, 0);
  model.connectionLost();
  const again = h(newestFirst(1, 7));
  again.rooms[2].messages = [msg(8)];
  model.applyHello(again);
  assert.equal(model.room('b').unread, 2);
  assert.equal(model.room('c').unread, 1, 'an empty room that got a message while away');
});

test('a hello without a room drops it; the current room falls back to the first', () => {
  const model = new ChatModel();
  model.applyHello(hello([
    { id: 'a', name: 'A', hasMoreMessages: false, messages: [] },
    { id: 'b', name: 'B', hasMoreMessages: false, messages: [] },
  ]));
  model.select('b');
  model.applyHello(hello([{ id: 'a', name: 'A', hasMoreMessages: false, messages: [] }]));
  assert.deepEqual(model.order, ['a']);
  assert.equal(model.current, 'a');
});

test('a failed history request is released and asked again', () => {
  const model = new ChatModel();
  const h = (a, b, more) => hello([{ id: 'r', name: 'R', hasMoreMessages: more, messages: newestFirst(a, b) }]);
  model.applyHello(h(1, 10, false));
  const { requests } = model.applyHello(h(61, 160, true));
  assert.equal(requests.length, 1);
  const failed = model.applyError({ id: HISTORY_ERROR, message: 'history is unavailable; try again' });
  assert.deepEqual(failed, { historyFailed: ['r'] });
  assert.equal(model.room('r').loadingOlder, false);
  assert.deepEqual(model.retryHistory('r'), { roomId: 'r', before: '1061-0' }, 'the hole is asked for again');
  assert.equal(model.retryHistory('r'), null, 'one request in flight');
  // A history error fails no send.
  model.applyHello(h(61, 160, false));
  model.addPending('r', 'x', 1);
  model.applyError({ id: HISTORY_ERROR, message: '' });
  assert.equal(model.room('r').pending[0].state, 'sending');
});

test('a send marked failed by a hello is confirmed when the catch-up brings it', () => {
  const model = new ChatModel();
  const h = (messages, more) => hello([{ id: 'r', name: 'R', hasMoreMessages: more, messages }]);
  model.applyHello(h([msg(1)], false));
  model.addPending('r', 'arrived late', 1);
  // Reconnect: 150 messages since, the send among the older ones (not in the hello).
  const { requests } = model.applyHello(h(newestFirst(61, 160), true));
  const room = model.room('r');
  assert.equal(room.pending[0].state, 'failed');
  const page = newestFirst(2, 60).map((m) => (m.id === '1030-0' ? msg(30, ALICE, 'arrived late') : m));
  model.applyRoomHistory({ roomId: requests[0].roomId, messages: page, hasMoreMessages: true });
  assert.equal(room.pending.length, 0, 'confirmed, not left as a failed ghost');
});

test('a send that never reached the socket fails by itself, and long rooms are trimmed', () => {
  const model = new ChatModel();
  model.applyHello(hello([{ id: 'r', name: 'R', hasMoreMessages: false, messages: newestFirst(1, 5) }]));
  const a = model.addPending('r', 'a', 1);
  const b = model.addPending('r', 'b', 2);
  model.failPending('r', b.localId, 'not connected');
  const room = model.room('r');
  assert.deepEqual(room.pending.map((p) => [p.localId === a.localId, p.state]), [[true, 'sending'], [false, 'failed']]);
  assert.equal(room.trimOldest(3), 2);
  assert.deepEqual(room.messages.map((m) => m.content), ['m3', 'm4', 'm5']);
  assert.equal(room.hasMore, true);
  assert.ok(!room.ids.has('1001-0'));
  assert.equal(room.trimOldest(3), 0);
});
