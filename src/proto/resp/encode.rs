//! Encoding commands: [`encode_command`] appends any command to a caller's buffer, and one thin
//! function per command ringchat sends builds its arguments (data model in
//! `shared/spec/compat.md`).
//!
//! It does not check arguments against what Redis accepts (a malformed stream id comes back as
//! an error reply), does not encode replies (the tests have their own encoder for every
//! [`super::Value`]), and does not use RESP2's inline command form.

/// Appends `args` as one command. RESP2 protocol page: "Clients send commands to a Redis server
/// as an array of bulk strings."
pub fn encode_command(args: &[&[u8]], out: &mut Vec<u8>) {
    // One reservation for the whole command: a header of at most 23 bytes per argument.
    out.reserve(16 + args.iter().map(|a| a.len() + 23).sum::<usize>());
    encode_header(b'*', args.len(), out);
    for arg in args {
        encode_bulk(&[arg], out);
    }
}

/// Like [`encode_command`], but each argument is the concatenation of its parts, so an
/// exclusive range start `(<id>` needs no temporary buffer.
fn encode_command_parts(args: &[&[&[u8]]], out: &mut Vec<u8>) {
    encode_header(b'*', args.len(), out);
    for parts in args {
        encode_bulk(parts, out);
    }
}

fn encode_header(kind: u8, count: usize, out: &mut Vec<u8>) {
    out.push(kind);
    out.extend_from_slice(itoa::Buffer::new().format(count).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// "$<length>\r\n<bytes>\r\n"
fn encode_bulk(parts: &[&[u8]], out: &mut Vec<u8>) {
    let length = parts.iter().map(|part| part.len()).sum();
    encode_header(b'$', length, out);
    for part in parts {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(b"\r\n");
}

/// `HELLO 3`, or `HELLO 3 AUTH <user> <password>`: switch to RESP3 (and log in) in one round
/// trip. Redis 6 and later.
pub fn encode_hello(auth: Option<(&[u8], &[u8])>, out: &mut Vec<u8>) {
    match auth {
        None => encode_command(&[b"HELLO", b"3"], out),
        Some((user, password)) => encode_command(&[b"HELLO", b"3", b"AUTH", user, password], out),
    }
}

/// `AUTH <password>` (every Redis version), or `AUTH <user> <password>` (Redis 6 ACL users).
pub fn encode_auth(user: Option<&[u8]>, password: &[u8], out: &mut Vec<u8>) {
    match user {
        None => encode_command(&[b"AUTH", password], out),
        Some(user) => encode_command(&[b"AUTH", user, password], out),
    }
}

/// `SELECT <db>`.
pub fn encode_select(db: u32, out: &mut Vec<u8>) {
    encode_command(&[b"SELECT", itoa::Buffer::new().format(db).as_bytes()], out);
}

/// `PING`.
pub fn encode_ping(out: &mut Vec<u8>) {
    encode_command(&[b"PING"], out);
}

/// `XADD <stream> [MAXLEN ~ <keep>] * payload <payload>`: append one message to a room's
/// stream; Redis picks the id (`<ms>-<seq>`) and replies with it. With `keep`, Redis trims the
/// oldest entries in whole stream nodes (`~`), so the stream keeps at least `keep` entries and
/// at most one node's worth (`stream-node-max-entries`, 100 by default) more.
pub fn encode_xadd(stream: &[u8], keep: Option<u64>, payload: &[u8], out: &mut Vec<u8>) {
    match keep {
        None => encode_command(&[b"XADD", stream, b"*", b"payload", payload], out),
        Some(keep) => encode_command(
            &[
                b"XADD",
                stream,
                b"MAXLEN",
                b"~",
                itoa::Buffer::new().format(keep).as_bytes(),
                b"*",
                b"payload",
                payload,
            ],
            out,
        ),
    }
}

/// `XREVRANGE <stream> + - COUNT <count>`: the newest `count` entries, newest first.
pub fn encode_xrevrange_newest(stream: &[u8], count: usize, out: &mut Vec<u8>) {
    let mut digits = itoa::Buffer::new();
    let count = digits.format(count).as_bytes();
    encode_command(&[b"XREVRANGE", stream, b"+", b"-", b"COUNT", count], out);
}

/// `XREVRANGE <stream> (<id> - COUNT <count>`: the `count` entries older than `id`, newest
/// first. The exclusive `(` needs Redis 6.2.
pub fn encode_xrevrange_before(stream: &[u8], id: &[u8], count: usize, out: &mut Vec<u8>) {
    let mut digits = itoa::Buffer::new();
    let count = digits.format(count).as_bytes();
    encode_command_parts(
        &[
            &[b"XREVRANGE"],
            &[stream],
            &[b"(", id],
            &[b"-"],
            &[b"COUNT"],
            &[count],
        ],
        out,
    );
}

/// `XRANGE <stream> (<id> + COUNT <count>`: the `count` entries newer than `id`, oldest first.
pub fn encode_xrange_after(stream: &[u8], id: &[u8], count: usize, out: &mut Vec<u8>) {
    let mut digits = itoa::Buffer::new();
    let count = digits.format(count).as_bytes();
    encode_command_parts(
        &[
            &[b"XRANGE"],
            &[stream],
            &[b"(", id],
            &[b"+"],
            &[b"COUNT"],
            &[count],
        ],
        out,
    );
}

/// `XREAD COUNT <count> [BLOCK <block_ms>] STREAMS <key> ... <id> ...`: up to `count` entries
/// of each stream newer than its id, oldest first; with `BLOCK`, the server waits up to
/// `block_ms` for one to arrive (0 would be forever) and answers null if none did. `streams`
/// pairs each key with its id (`<ms>-<seq>`).
pub fn encode_xread(
    streams: &[(&[u8], &[u8])],
    count: usize,
    block_ms: Option<u64>,
    out: &mut Vec<u8>,
) {
    let block_args = if block_ms.is_some() { 2 } else { 0 };
    out.reserve(
        64 + streams
            .iter()
            .map(|(k, i)| k.len() + i.len() + 46)
            .sum::<usize>(),
    );
    encode_header(b'*', 4 + block_args + 2 * streams.len(), out);
    encode_bulk(&[b"XREAD"], out);
    encode_bulk(&[b"COUNT"], out);
    encode_bulk(&[itoa::Buffer::new().format(count).as_bytes()], out);
    if let Some(block_ms) = block_ms {
        encode_bulk(&[b"BLOCK"], out);
        encode_bulk(&[itoa::Buffer::new().format(block_ms).as_bytes()], out);
    }
    encode_bulk(&[b"STREAMS"], out);
    for (key, _) in streams {
        encode_bulk(&[key], out);
    }
    for (_, id) in streams {
        encode_bulk(&[id], out);
    }
}

/// `SET <key> <value> NX EX <seconds>`: create a key with a time to live unless it exists
/// (reply `OK`, or null when it exists).
pub fn encode_set_nx_ex(key: &[u8], value: &[u8], seconds: u64, out: &mut Vec<u8>) {
    let mut digits = itoa::Buffer::new();
    let seconds = digits.format(seconds).as_bytes();
    encode_command(&[b"SET", key, value, b"NX", b"EX", seconds], out);
}

/// `GET <key>`.
pub fn encode_get(key: &[u8], out: &mut Vec<u8>) {
    encode_command(&[b"GET", key], out);
}

/// `DEL <key>`.
pub fn encode_del(key: &[u8], out: &mut Vec<u8>) {
    encode_command(&[b"DEL", key], out);
}
