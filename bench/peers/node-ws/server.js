// A chat-room server on Node.js and the `ws` package: the benchmark peer that stands for "what
// most chat servers are built on". It speaks the minimal room protocol of bench/peers/README.md:
// `GET /healthz` answers "ok", `/ws?rooms=<room>,<room>,...` upgrades to a WebSocket that is a
// member of each listed room, and a text message `<room>\n<payload>` from a member of `<room>` is
// sent, whole, to everyone in that room, the sender included, in the order this process received
// them.
//
// Written the way ws's README does it: one process, an http server whose 'upgrade' event hands
// matching requests to a `noServer` WebSocketServer, rooms as Map<room, Set<ws>> (a socket is in
// the set of each of its rooms), and a broadcast that calls `ws.send` for each member. The optional `bufferutil` addon (recommended by ws's
// README) does the unmasking. No auth, persistence, history, TLS or compression.
'use strict';

const http = require('node:http');
const { WebSocketServer, WebSocket } = require('ws');

const PORT = Number(process.argv[2] || process.env.PORT || 9001);
// The largest message a client may send; a larger one closes the connection with 1009.
const WS_MESSAGE_BYTES_MAX = 64 * 1024;
// A connection's room list names 1 to this many rooms (duplicates count, and are joined once).
const ROOMS_PER_CONNECTION_MAX = 64;
const ROOM_NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const NEWLINE = 0x0a;

/** @type {Map<string, Set<WebSocket>>} every room that has at least one member */
const rooms = new Map();

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && pathOf(req.url) === '/healthz') {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end('ok');
  } else {
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('not found');
  }
});

const wss = new WebSocketServer({
  noServer: true,
  maxPayload: WS_MESSAGE_BYTES_MAX,
  // Already ws's default on the server side; stated because compression would change the
  // comparison (every peer sends uncompressed frames).
  perMessageDeflate: false,
});

server.on('upgrade', (req, socket, head) => {
  const names = pathOf(req.url) === '/ws' ? parseRooms(queryOf(req.url)) : null;
  if (!names) {
    socket.end('HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n' +
      'Content-Length: 9\r\nConnection: close\r\n\r\nnot found');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => join(ws, names));
});

function join(ws, names) {
  /** @type {Map<string, Set<WebSocket>>} this socket's rooms, each with its members */
  const joined = new Map();
  for (const room of names) {
    let members = rooms.get(room);
    if (!members) {
      members = new Set();
      rooms.set(room, members);
    }
    members.add(ws);
    joined.set(room, members);
  }

  ws.on('message', (data, isBinary) => {
    if (isBinary) return; // binary frames are ignored
    // `<room>\n<payload>`, to a room this socket is in; anything else is dropped. Room names
    // are ASCII, so decoding the prefix as latin1 cannot make a non-ASCII one match.
    const newline = data.indexOf(NEWLINE);
    if (newline === -1) return;
    const members = joined.get(data.toString('latin1', 0, newline));
    if (!members) return;
    // `data` is the received Buffer; sending it with binary: false makes it a text frame again
    // without decoding it to a string (ws has already checked that it is UTF-8).
    for (const member of members) {
      if (member.readyState === WebSocket.OPEN) member.send(data, { binary: false });
    }
  });
  ws.on('close', () => {
    for (const [room, members] of joined) {
      members.delete(ws);
      if (members.size === 0 && rooms.get(room) === members) rooms.delete(room);
    }
  });
  // A client error (bad frame, oversized message) closes that socket; nothing to log.
  ws.on('error', () => {});
}

// `rooms=<room>,<room>,...` → the distinct room names, or null if the list is invalid. The query
// is taken literally: room names never need percent-encoding, and any other parameter makes it
// invalid.
function parseRooms(query) {
  if (query === null || !query.startsWith('rooms=')) return null;
  const names = query.slice('rooms='.length).split(',');
  if (names.length > ROOMS_PER_CONNECTION_MAX) return null;
  for (const name of names) {
    if (!ROOM_NAME.test(name) || name === '.' || name === '..') return null;
  }
  return [...new Set(names)];
}

function pathOf(url) {
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}

function queryOf(url) {
  const query = url.indexOf('?');
  return query === -1 ? null : url.slice(query + 1);
}

server.listen(PORT, '127.0.0.1', () => {
  console.error(`peer-node-ws (ws ${require('ws/package.json').version}) listening on 127.0.0.1:${PORT}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
