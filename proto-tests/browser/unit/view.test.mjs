// Unit tests of the DOM-free parts of static/js/chat/view.js and static/js/format.js under
// Node: day separators, grouping of consecutive messages, the room list's previews and badges.
// (The elements themselves are built only in a browser; chat.e2e.mjs covers them.)

import assert from 'node:assert/strict';
import test from 'node:test';

import { ChatModel } from '../../../static/js/chat/model.js';
import { GROUP_GAP_MS, messageItems, roomItems } from '../../../static/js/chat/view.js';
import { dayKey, formatDay } from '../../../static/js/format.js';

const ALICE = { id: 1, username: 'alice' };
const BOB = { id: 2, username: 'bob' };

function at(y, mo, d, h, mi) {
  return new Date(y, mo - 1, d, h, mi).getTime();
}

test('day labels', () => {
  const now = at(2026, 12, 1, 12, 0);
  assert.equal(formatDay(at(2026, 12, 1, 0, 1), now), 'Today');
  assert.equal(formatDay(at(2026, 11, 30, 23, 59), now), 'Yesterday');
  assert.match(formatDay(at(2026, 11, 2, 9, 0), now), /November/);
  assert.match(formatDay(at(2025, 11, 2, 9, 0), now), /2025/);
  assert.notEqual(dayKey(at(2026, 12, 1, 0, 0)), dayKey(at(2026, 11, 30, 23, 59)));
});

test('day separators and groups', () => {
  const model = new ChatModel();
  const t0 = at(2026, 11, 30, 23, 50);
  const m = (n, user, t) => ({ id: `${t}-${n}`, content: `c${n}`, user, timestamp: t });
  const messages = [
    m(0, BOB, t0),
    m(1, BOB, t0 + 60_000), // same author, a minute later: grouped
    m(2, BOB, t0 + 11 * 60_000), // next day (00:01): new day, new group
    m(3, BOB, t0 + 11 * 60_000 + GROUP_GAP_MS + 1), // same author after the gap: new group
    m(4, ALICE, t0 + 30 * 60_000), // another author: new group
    m(5, ALICE, t0 + 31 * 60_000),
  ];
  model.applyHello({
    me: ALICE,
    rooms: [{ id: 'r', name: 'R', hasMoreMessages: false, messages: [...messages].reverse() }],
  });
  const items = messageItems(model, model.room('r'), [{ key: 'err-1', id: 'X', message: '' }], {}, t0);
  const shape = items.map((i) => (i.key.startsWith('day-') ? 'day' : i.key.startsWith('m-') ? i.sig : i.key));
  // sig: group start, mine
  assert.deepEqual(shape, ['day', '10', '00', 'day', '10', '10', '11', '01', 'err-1']);
});

test('room list: previews, own messages, unread', () => {
  const model = new ChatModel();
  model.applyHello({
    me: ALICE,
    rooms: [
      { id: 'a', name: 'A', hasMoreMessages: false, messages: [{ id: '1-0', content: 'hi\n  there', user: ALICE, timestamp: 1 }] },
      { id: 'b', name: 'B', hasMoreMessages: false, messages: [] },
    ],
  });
  model.applyServerMessages({ roomId: 'b', messages: [{ id: '2-0', content: 'x'.repeat(500), user: BOB, timestamp: 2 }] });
  const items = roomItems(model, () => {});
  assert.deepEqual(items.map((i) => i.key), ['room-a', 'room-b']);
  assert.equal(items[0].sig, 'A|0|true|You: hi\n  there');
  assert.ok(items[1].sig.startsWith('B|1|false|bob: x'));
  assert.ok(items[1].sig.length < 120, 'the preview is cut');
});
