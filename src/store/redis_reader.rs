//! Room streams read with `XREAD BLOCK` on a dedicated Redis connection: [`StreamReader`].
//!
//! Several ringchat instances sharing one Redis each deliver what the others appended: a room's
//! owner core reads the room streams, blocking until something arrives, and resumes from the
//! last id it delivered. A blocking command would hold up every command queued behind it on
//! the core's pipelined connection ([`super::redis::RedisStore`]), so the reader has a
//! connection of its own, one command at a time, owned by the caller (`&mut self`): no driver
//! task, nothing shared.
//!
//! **It speaks what the pipelined connection speaks.** The sans-I/O engine
//! [`crate::proto::resp::RespConnection`] does the same handshake from the same
//! [`RedisConfig`] (`HELLO 3` with `AUTH`, RESP2 fallback, `SELECT`), the socket is opened by the
//! same `redis::open_socket`, and failed attempts are spaced by the same
//! `redis::Backoff`. `XREAD` answers RESP2 with an array of `[key, entries]` and RESP3
//! with a map of key to entries (a key asked for twice comes twice, in both); a null when the
//! block ran out with nothing new. Each stream's entries are the `XRANGE` shape and are decoded
//! by the same code, which skips entries without a readable ringchat payload and logs them (a
//! foreign entry must not stop a room's delivery). **Resume after [`StreamRead::last_id`]**,
//! the last entry read, skipped ones included, not after the last message: otherwise entries
//! skipped at the end of a reply are read again, at once, by every later call.
//!
//! **Every call ends within a bound.** The connection is opened lazily by the first call and
//! again by the call after any failure, which first waits out the backoff (at most
//! [`super::redis::REDIS_BACKOFF_MS_MAX`]): a caller that simply calls again after an error
//! retries at the backoff's pace. Opening takes at most the configured timeout, each handshake step too, and
//! the `XREAD` must be answered within its block plus the timeout, or the call fails with
//! [`StoreError::Timeout`]. Like every Redis deadline, it is enforced by the runtime shutting
//! the socket down ([`crate::rt::Conn::set_timeout`]), never by dropping an operation in
//! flight. A connection that failed, timed out or answered something undecodable is closed,
//! and the next call opens another; an error reply (`WRONGTYPE`: a room key that is not a
//! stream) fails the call and keeps the connection.
//!
//! A caller should not drop a `read` future before it completes (no `select!` around it: use a
//! short block and check between calls). If it does, a socket read may be in flight that the
//! runtime cannot cancel; the next call shuts that connection down, waits for the runtime to
//! complete the read (within [`SWEEP_INTERVAL_MS`]) and opens a new one. Dropping the reader
//! with such a read pending half-closes the socket, so Redis ends the connection and the read
//! completes.
//!
//! Not here: consumer groups (`XREADGROUP`), acknowledgements, trimming, and any memory of what
//! was delivered: the caller keeps the ids it resumes from.

use std::time::{Duration, Instant};

use super::redis::{
    Backoff, CallError, REDIS_BUFFER_KEEP_BYTES, REDIS_READ_CHUNK_BYTES, RedisConfig, corrupt,
    decode_entry_list, open_socket, unavailable,
};
use super::{MessageId, Side, StoreError, StoredMessage};
use crate::proto::resp::{Phase, RespConnection, RespError, Value, encode_xread};
use crate::rt::{Conn, SWEEP_INTERVAL_MS};

/// Streams one [`StreamReader::read`] may name; more is refused at once. As many as a server
/// may have rooms (`chat::rooms::ROOMS_MAX`).
pub const REDIS_READ_STREAMS_MAX: usize = 1024;
/// Entries one read returns at most, all streams together: the count per stream (`XREAD
/// COUNT`, the same for every stream) is lowered to this divided by the number of streams, and
/// raised to at least 1 (Redis would read `COUNT 0` as no limit). With ringchat's default
/// message limit (4096 characters, at most about 25 KiB of escaped JSON) that many entries
/// stay under [`crate::proto::resp::RESP_REPLY_BYTES_MAX`] (32 MiB); a reply over it fails the
/// call ([`StoreError::Unavailable`] naming the limit) and closes the connection.
pub const REDIS_READ_ENTRIES_MAX: usize = 1024;
/// Longest block one read asks for; a longer one is lowered to it (the read then returns
/// nothing sooner, which a caller reading in a loop does not notice). It bounds how long a
/// dead connection goes unnoticed: block plus the Redis timeout.
pub const REDIS_READ_BLOCK_MS_MAX: u64 = 60_000;
/// How many sweeps to wait at most for the runtime to complete the read of an abandoned call
/// (see the module documentation) before closing its connection anyway.
const ABANDONED_READ_SWEEPS_MAX: u32 = 3;

/// What one read returned for one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRead {
    /// The stream's position in the `streams` given to [`StreamReader::read`].
    pub index: usize,
    /// Its new messages, oldest first; empty when every entry read was foreign (skipped).
    pub messages: Vec<StoredMessage>,
    /// The id of the last entry read, skipped ones included: the id to resume after.
    pub last_id: MessageId,
}

/// One connection, between calls.
struct Link {
    conn: Conn,
    engine: RespConnection<()>,
    input: Vec<u8>,
    output: Vec<u8>,
    /// A call is using the connection. Still set when a call starts: the previous call's future
    /// was dropped, possibly with a read in flight.
    busy: bool,
}

/// Why an exchange on a connection failed.
enum Failure {
    /// The connection cannot be used any more (I/O error, end of stream, refused handshake,
    /// undecodable reply).
    Broken(String),
    /// No reply within the deadline; the runtime shut the socket down.
    TimedOut,
    /// Redis answered the command with this error; the connection goes on.
    Reply(Vec<u8>),
}

/// One dedicated connection for `XREAD BLOCK`, never shared with the pipelined connection
/// (whose other commands a blocking read would hold up). Connects lazily; after any failure the
/// next call reconnects, after the pipelined connection's backoff. `!Send`: it lives on one
/// core, like everything holding a [`Conn`].
pub struct StreamReader {
    config: RedisConfig,
    link: Option<Link>,
    backoff: Backoff,
    /// No attempt before this, after a failure.
    retry_at: Option<Instant>,
    handshakes: u64,
}

impl StreamReader {
    /// A reader for the server of `config`; nothing is opened until the first [`read`].
    ///
    /// [`read`]: StreamReader::read
    pub fn new(config: &RedisConfig) -> StreamReader {
        StreamReader {
            config: config.clone(),
            link: None,
            backoff: Backoff::new(),
            retry_at: None,
            handshakes: 0,
        }
    }

    /// Whether a connection is open and logged in now.
    pub fn is_connected(&self) -> bool {
        self.link
            .as_ref()
            .is_some_and(|link| !link.busy && link.engine.phase() == Phase::Ready)
    }

    /// Handshakes completed so far: a reconnection shows as one more. Tests only.
    #[doc(hidden)]
    pub fn handshakes_for_test(&self) -> u64 {
        self.handshakes
    }

    /// `XREAD COUNT <count> BLOCK <block> STREAMS <key>... <id>...`: for each stream that has
    /// entries after its id (exclusive; `MessageId { ms: 0, seq: 0 }` reads from the start), its
    /// index in `streams`, at most `count` entries, oldest first, decoded with
    /// [`super::decode_payload`] (foreign ones skipped), and the id to resume after. `count` is
    /// lowered to [`REDIS_READ_ENTRIES_MAX`] divided by the number of streams and raised to 1.
    /// Results come in the order of `streams`, only for streams that had entries; an empty
    /// `Vec` means the block ran out with nothing new.
    ///
    /// `block` is rounded up to whole milliseconds and lowered to [`REDIS_READ_BLOCK_MS_MAX`];
    /// zero does not block (no `BLOCK` argument, where Redis would read `BLOCK 0` as forever).
    /// No streams at all waits for the block and returns nothing. More than
    /// [`REDIS_READ_STREAMS_MAX`] streams is [`StoreError::Unavailable`] at once.
    ///
    /// Fails with a [`StoreError`] of [`Side::Redis`]: `Unavailable` when the connection cannot
    /// be opened or fails (the next call opens another), or Redis answers an error; `Timeout`
    /// when no reply comes within the block plus the configured timeout; `Corrupt` for a reply
    /// of the wrong shape or a key that is not a stream (`WRONGTYPE`). The call may first wait
    /// out the backoff after a failure (at most [`super::redis::REDIS_BACKOFF_MS_MAX`]).
    pub async fn read(
        &mut self,
        streams: &[(&str, MessageId)],
        block: Duration,
        count: usize,
    ) -> Result<Vec<StreamRead>, StoreError> {
        if streams.len() > REDIS_READ_STREAMS_MAX {
            return Err(unavailable(format!(
                "{} streams in one read, more than REDIS_READ_STREAMS_MAX = \
                 {REDIS_READ_STREAMS_MAX}",
                streams.len()
            )));
        }
        let block_ms = block_ms(block);
        if streams.is_empty() {
            tokio::time::sleep(Duration::from_millis(block_ms.unwrap_or(0))).await;
            return Ok(Vec::new());
        }
        let count = count.min(REDIS_READ_ENTRIES_MAX / streams.len()).max(1);
        let ids: Vec<String> = streams.iter().map(|(_, id)| id.to_string()).collect();
        let args: Vec<(&[u8], &[u8])> = streams
            .iter()
            .zip(&ids)
            .map(|((key, _), id)| (key.as_bytes(), id.as_bytes()))
            .collect();
        let mut command = Vec::new();
        encode_xread(&args, count, block_ms, &mut command);
        let reply_within = Duration::from_millis(block_ms.unwrap_or(0)) + self.config.timeout;

        self.retire_abandoned().await;
        if self.link.is_none() {
            self.open().await?;
        }
        let link = self.link.as_mut().expect("opened above");
        link.engine
            .queue((), &command)
            .map_err(|error| unavailable(format!("XREAD not queued: {error}")))?;
        link.busy = true;
        let outcome = exchange(link, &self.config, reply_within, || {
            self.handshakes += 1;
            // The connection worked: the server is back.
            self.backoff.reset();
        })
        .await;
        link.busy = false;
        let reply = match outcome {
            Ok(reply) => reply,
            Err(Failure::Reply(text)) => return Err(CallError::Reply(text).into_store_error()),
            Err(Failure::TimedOut) => {
                self.fail(&format!(
                    "no reply from Redis within {reply_within:?} (block included)"
                ));
                return Err(StoreError::Timeout { side: Side::Redis });
            }
            Err(Failure::Broken(reason)) => {
                self.fail(&reason);
                return Err(unavailable(format!(
                    "the stream reader's connection to Redis failed: {reason}"
                )));
            }
        };
        decode_xread(reply, streams)
    }

    /// Opens a connection, after waiting out the backoff of a previous failure. The handshake
    /// is left to the engine: it goes out with the first command.
    async fn open(&mut self) -> Result<(), StoreError> {
        if let Some(at) = self.retry_at {
            tokio::time::sleep_until(at.into()).await;
            self.retry_at = None;
        }
        match open_socket(&self.config).await {
            Ok(conn) => {
                self.link = Some(Link {
                    conn,
                    engine: RespConnection::new(self.config.options()),
                    input: Vec::with_capacity(REDIS_READ_CHUNK_BYTES),
                    output: Vec::new(),
                    busy: false,
                });
                Ok(())
            }
            Err(reason) => {
                self.fail(&reason);
                Err(unavailable(format!(
                    "the stream reader cannot reach Redis: {reason}"
                )))
            }
        }
    }

    /// Closes the connection (if any) and schedules the next attempt.
    fn fail(&mut self, reason: &str) {
        self.link = None;
        let delay = self.backoff.next_delay();
        self.retry_at = Some(Instant::now() + delay);
        tracing::warn!(
            "Redis stream reader: {reason}; next attempt in {} ms at the earliest",
            delay.as_millis()
        );
    }

    /// Closes the connection of a call whose future was dropped mid-way: a read of it may still
    /// be in flight, which only shutting the socket down completes. The runtime does that at
    /// the deadline, at its next sweep; the connection is closed once it has.
    async fn retire_abandoned(&mut self) {
        let Some(link) = self.link.as_mut().filter(|link| link.busy) else {
            return;
        };
        link.conn.set_deadline(Some(Instant::now()));
        for _ in 0..ABANDONED_READ_SWEEPS_MAX {
            if link.conn.timed_out() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(SWEEP_INTERVAL_MS)).await;
        }
        // A reply may be on its way: the connection's state is unknown, open another.
        self.link = None;
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        if let Some(link) = self.link.as_ref().filter(|link| link.busy) {
            // A dropped call's read may be in flight: Redis answers the FIN by closing, which
            // completes it, and the descriptor is closed then.
            link.conn.shutdown_write();
        }
    }
}

/// The block in whole milliseconds (rounded up, at most [`REDIS_READ_BLOCK_MS_MAX`]); `None`
/// for zero, which is sent without `BLOCK`.
fn block_ms(block: Duration) -> Option<u64> {
    if block.is_zero() {
        return None;
    }
    let ms = block.as_nanos().div_ceil(1_000_000);
    Some(u64::try_from(ms).map_or(REDIS_READ_BLOCK_MS_MAX, |ms| {
        ms.min(REDIS_READ_BLOCK_MS_MAX)
    }))
}

/// Writes what the engine has (the handshake, then the queued command) and reads until the
/// command's reply; calls `logged_in` when the handshake completes. Each handshake step must be
/// answered within the configured timeout, the command within `reply_within` of being written.
async fn exchange(
    link: &mut Link,
    config: &RedisConfig,
    reply_within: Duration,
    mut logged_in: impl FnMut(),
) -> Result<Value, Failure> {
    let Link {
        conn,
        engine,
        input,
        output,
        ..
    } = link;
    loop {
        output.clear();
        if engine.poll_transmit(output) > 0 {
            // The queued command leaves only once the handshake is done.
            let phase = engine.phase();
            conn.set_timeout(if phase == Phase::Ready {
                reply_within
            } else {
                config.timeout
            });
            let (result, buf) = conn.write_all(std::mem::take(output)).await;
            *output = buf;
            if output.capacity() > REDIS_BUFFER_KEEP_BYTES {
                *output = Vec::new();
            }
            if let Err(e) = result {
                return Err(if conn.timed_out() {
                    Failure::TimedOut
                } else {
                    Failure::Broken(format!("write: {e}"))
                });
            }
        }
        if let Some(((), reply)) = engine.poll_reply() {
            while let Some(push) = engine.poll_push() {
                tracing::debug!(?push, "ignoring a Redis push frame");
            }
            conn.set_deadline(None);
            if input.is_empty() && input.capacity() > REDIS_BUFFER_KEEP_BYTES {
                *input = Vec::with_capacity(REDIS_READ_CHUNK_BYTES);
            }
            return match reply {
                Ok(value) => Ok(value),
                Err(RespError::Server(text)) => Err(Failure::Reply(text)),
                Err(error) => Err(Failure::Broken(error.to_string())),
            };
        }
        if input.capacity() - input.len() < REDIS_READ_CHUNK_BYTES / 2 {
            input.reserve(REDIS_READ_CHUNK_BYTES);
        }
        let (result, buf) = conn.read(std::mem::take(input)).await;
        *input = buf;
        match result {
            Ok(0) if conn.timed_out() => return Err(Failure::TimedOut),
            Ok(0) => return Err(Failure::Broken("Redis closed the connection".into())),
            Err(e) => return Err(Failure::Broken(format!("read: {e}"))),
            Ok(_) => {}
        }
        let before = engine.phase();
        match engine.handle_input(input) {
            Ok(consumed) => {
                input.drain(..consumed);
            }
            Err(error) => return Err(Failure::Broken(error.to_string())),
        }
        if before != Phase::Ready && engine.phase() == Phase::Ready {
            logged_in();
            tracing::debug!(
                protocol = ?engine.protocol(),
                "stream reader connected to Redis at {}:{}",
                config.host,
                config.port
            );
        }
    }
}

/// An `XREAD` reply: null (nothing new), RESP2's array of `[key, entries]` or RESP3's map of
/// key to entries, in the order of the keys asked for. A key asked for twice is answered
/// twice; each answer goes to the first of its places not answered yet.
fn decode_xread(
    reply: Value,
    streams: &[(&str, MessageId)],
) -> Result<Vec<StreamRead>, StoreError> {
    let pairs: Vec<(Value, Value)> = match reply {
        Value::Null => return Ok(Vec::new()),
        Value::Map(pairs) => pairs,
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item.into_array() {
                Some(parts) if parts.len() == 2 => {
                    let mut parts = parts.into_iter();
                    let key = parts.next().expect("two parts");
                    let entries = parts.next().expect("two parts");
                    Ok((key, entries))
                }
                other => Err(corrupt(format!(
                    "an XREAD stream is not [key, entries]: {other:?}"
                ))),
            })
            .collect::<Result<_, _>>()?,
        other => return Err(corrupt(format!("unexpected reply to XREAD: {other:?}"))),
    };
    let mut answered = vec![false; streams.len()];
    let mut reads = Vec::with_capacity(pairs.len());
    for (key, entries) in pairs {
        let index = key
            .as_bytes()
            .and_then(|key| {
                (0..streams.len()).find(|&i| !answered[i] && streams[i].0.as_bytes() == key)
            })
            .ok_or_else(|| corrupt(format!("XREAD answered for a stream not asked: {key:?}")))?;
        answered[index] = true;
        let (messages, last) = decode_entry_list(entries, "XREAD")?;
        let Some(last_id) = last else {
            continue;
        };
        // "entries with an ID greater than the specified one": anything else is not the reply
        // to this command.
        let after = streams[index].1;
        let mut previous = after;
        let in_order = messages.iter().all(|m| {
            let increasing = m.id > previous;
            previous = m.id;
            increasing
        }) && last_id > after
            && last_id >= previous;
        if !in_order {
            return Err(corrupt(format!(
                "XREAD answered entries for {:?} out of order or not after {after}",
                streams[index].0
            )));
        }
        reads.push(StreamRead {
            index,
            messages,
            last_id,
        });
    }
    reads.sort_by_key(|read| read.index);
    Ok(reads)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn payload(content: &str) -> String {
        format!(r#"{{"content":"{content}","timestamp":1700000000000,"user_id":7}}"#)
    }

    fn entry(id: &str, content: &str) -> Value {
        Value::Array(vec![
            bulk(id),
            Value::Array(vec![bulk("payload"), bulk(&payload(content))]),
        ])
    }

    fn id(ms: u64, seq: u64) -> MessageId {
        MessageId { ms, seq }
    }

    const ZERO: MessageId = MessageId { ms: 0, seq: 0 };

    fn summary(reads: &[StreamRead]) -> Vec<(usize, Vec<String>, MessageId)> {
        reads
            .iter()
            .map(|r| {
                let contents = r.messages.iter().map(|m| m.content.clone()).collect();
                (r.index, contents, r.last_id)
            })
            .collect()
    }

    #[test]
    fn decodes_resp2_arrays_and_resp3_maps_alike() {
        let streams = [("a", ZERO), ("empty", ZERO), ("b", id(5, 0))];
        let a = Value::Array(vec![entry("1-0", "a1"), entry("1-1", "a2")]);
        let b = Value::Array(vec![entry("6-0", "b1")]);
        let resp2 = Value::Array(vec![
            Value::Array(vec![bulk("a"), a.clone()]),
            Value::Array(vec![bulk("b"), b.clone()]),
        ]);
        // Answered in another order than asked: still reported in the order of `streams`.
        let resp3 = Value::Map(vec![(bulk("b"), b), (bulk("a"), a)]);
        let want = vec![
            (0, vec!["a1".to_string(), "a2".to_string()], id(1, 1)),
            (2, vec!["b1".to_string()], id(6, 0)),
        ];
        assert_eq!(summary(&decode_xread(resp2, &streams).unwrap()), want);
        assert_eq!(summary(&decode_xread(resp3, &streams).unwrap()), want);
        assert!(decode_xread(Value::Null, &streams).unwrap().is_empty());
    }

    #[test]
    fn a_key_asked_twice_is_answered_in_both_places() {
        let streams = [("a", ZERO), ("a", id(1, 0))];
        let reply = Value::Map(vec![
            (
                bulk("a"),
                Value::Array(vec![entry("1-0", "x"), entry("2-0", "y")]),
            ),
            (bulk("a"), Value::Array(vec![entry("2-0", "y")])),
        ]);
        let reads = decode_xread(reply, &streams).unwrap();
        assert_eq!(
            summary(&reads),
            vec![
                (0, vec!["x".to_string(), "y".to_string()], id(2, 0)),
                (1, vec!["y".to_string()], id(2, 0)),
            ]
        );
    }

    #[test]
    fn foreign_entries_are_skipped_but_advance_the_resume_id() {
        let streams = [("a", ZERO)];
        let reply = Value::Map(vec![(
            bulk("a"),
            Value::Array(vec![
                entry("1-0", "mine"),
                Value::Array(vec![
                    bulk("2-0"),
                    Value::Array(vec![bulk("text"), bulk("foreign")]),
                ]),
            ]),
        )]);
        let reads = decode_xread(reply, &streams).unwrap();
        assert_eq!(
            summary(&reads),
            vec![(0, vec!["mine".to_string()], id(2, 0))]
        );
        // Only foreign entries: the stream is still reported, so the caller moves past them.
        let reply = Value::Map(vec![(
            bulk("a"),
            Value::Array(vec![Value::Array(vec![
                bulk("3-0"),
                Value::Array(vec![bulk("payload"), bulk("not json")]),
            ])]),
        )]);
        let reads = decode_xread(reply, &streams).unwrap();
        assert_eq!(summary(&reads), vec![(0, vec![], id(3, 0))]);
    }

    #[test]
    fn malformed_replies_are_corrupt() {
        let streams = [("a", id(5, 0))];
        let corrupt_reply = |reply: Value| {
            assert!(
                matches!(
                    decode_xread(reply.clone(), &streams),
                    Err(StoreError::Corrupt {
                        side: Side::Redis,
                        ..
                    })
                ),
                "{reply:?}"
            );
        };
        corrupt_reply(Value::Integer(1));
        corrupt_reply(bulk("a"));
        corrupt_reply(Value::Array(vec![bulk("a")]));
        corrupt_reply(Value::Array(vec![Value::Array(vec![bulk("a")])]));
        // A stream not asked for, or asked once and answered twice.
        corrupt_reply(Value::Map(vec![(
            bulk("b"),
            Value::Array(vec![entry("6-0", "x")]),
        )]));
        corrupt_reply(Value::Map(vec![
            (bulk("a"), Value::Array(vec![entry("6-0", "x")])),
            (bulk("a"), Value::Array(vec![entry("7-0", "x")])),
        ]));
        corrupt_reply(Value::Map(vec![(
            Value::Integer(1),
            Value::Array(vec![entry("6-0", "x")]),
        )]));
        // Not after the id asked for, or out of order.
        corrupt_reply(Value::Map(vec![(
            bulk("a"),
            Value::Array(vec![entry("5-0", "x")]),
        )]));
        corrupt_reply(Value::Map(vec![(
            bulk("a"),
            Value::Array(vec![entry("4-0", "x")]),
        )]));
        corrupt_reply(Value::Map(vec![(
            bulk("a"),
            Value::Array(vec![entry("7-0", "x"), entry("6-0", "y")]),
        )]));
        corrupt_reply(Value::Map(vec![(
            bulk("a"),
            Value::Array(vec![entry("not-an-id", "x")]),
        )]));
        corrupt_reply(Value::Map(vec![(bulk("a"), bulk("x"))]));
    }

    #[test]
    fn block_is_whole_milliseconds_within_the_limit() {
        assert_eq!(block_ms(Duration::ZERO), None);
        assert_eq!(block_ms(Duration::from_nanos(1)), Some(1));
        assert_eq!(block_ms(Duration::from_micros(1500)), Some(2));
        assert_eq!(block_ms(Duration::from_millis(250)), Some(250));
        assert_eq!(
            block_ms(Duration::from_secs(3600)),
            Some(REDIS_READ_BLOCK_MS_MAX)
        );
        assert_eq!(block_ms(Duration::MAX), Some(REDIS_READ_BLOCK_MS_MAX));
    }
}
