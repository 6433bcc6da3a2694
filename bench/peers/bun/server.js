// A chat-room server on Bun: the benchmark peer that stands for the fastest widely used WebSocket
// server (Bun.serve's WebSockets are uWebSockets). It speaks the minimal room protocol of
// bench/peers/README.md: `GET /healthz` answers "ok", `/ws?rooms=<room>,<room>,...` upgrades to a
// WebSocket that is a member of each listed room, and a text message `<room>\n<payload>` from a
// member of `<room>` is published, whole, to everyone in that room, the sender included.
//
// Written the way Bun's docs do it: Bun.serve with the built-in topic pub/sub; each socket
// subscribes to its rooms' topics, and `server.publish` (unlike `ws.publish`, which skips the
// sender) delivers to every subscriber. No auth, persistence, history, TLS or compression.

const PORT = Number(process.argv[2] || process.env.PORT || 9001);
// The largest message a client may send; a larger one closes the connection (1009).
const WS_MESSAGE_BYTES_MAX = 64 * 1024;
// A connection's room list names 1 to this many rooms (duplicates count, and are joined once).
const ROOMS_PER_CONNECTION_MAX = 64;
const ROOM_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

// `?rooms=<room>,<room>,...` → the distinct room names, or null if the list is invalid. The query
// is taken literally: room names never need percent-encoding, and any other parameter makes it
// invalid.
function parseRooms(search) {
  if (!search.startsWith('?rooms=')) return null;
  const names = search.slice('?rooms='.length).split(',');
  if (names.length > ROOMS_PER_CONNECTION_MAX) return null;
  for (const name of names) {
    if (!ROOM_NAME.test(name) || name === '.' || name === '..') return null;
  }
  return [...new Set(names)];
}

const server = Bun.serve({
  hostname: '127.0.0.1',
  port: PORT,
  fetch(req, server) {
    // Bun has already resolved dot segments in req.url's path (so /ws/x/..?rooms=a is /ws here);
    // the other peers take the target as sent.
    const url = new URL(req.url);
    if (req.method === 'GET' && url.pathname === '/healthz') return new Response('ok');
    const rooms = url.pathname === '/ws' ? parseRooms(url.search) : null;
    if (!rooms) return new Response('not found', { status: 404 });
    if (server.upgrade(req, { data: { rooms } })) return undefined;
    return new Response('expected a WebSocket upgrade', { status: 400 });
  },
  websocket: {
    maxPayloadLength: WS_MESSAGE_BYTES_MAX,
    // Bun's default; stated because compression would change the comparison.
    perMessageDeflate: false,
    open(ws) {
      for (const room of ws.data.rooms) ws.subscribe(room);
    },
    message(ws, message) {
      // Text frames arrive as strings and are published as text; binary ones are ignored.
      if (typeof message !== 'string') return;
      // `<room>\n<payload>`, to a room this socket is in; anything else is dropped.
      const newline = message.indexOf('\n');
      if (newline < 1) return; // no newline, or an empty room name (isSubscribed('') throws)
      const room = message.slice(0, newline);
      if (ws.isSubscribed(room)) server.publish(room, message);
    },
    // Leaving the topics on close is automatic.
  },
});

console.error(`peer-bun (Bun ${Bun.version}) listening on 127.0.0.1:${server.port}`);

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.stop(true);
    process.exit(0);
  });
}
