//! [`RespConnection`]: the engine for one pipelined Redis connection, from the handshake to a
//! failure.
//!
//! The runtime drives it with four calls: [`RespConnection::queue`] a command under a token of
//! the caller's choosing, [`RespConnection::poll_transmit`] everything queued into one write
//! buffer (so the commands of one loop turn leave in one write), [`RespConnection::handle_input`]
//! the bytes it read (whole replies only; it says how many bytes), and
//! [`RespConnection::poll_reply`] the answers, each with its command's token, in the order the
//! commands were queued. RESP3 push frames are never taken for answers: they go to
//! [`RespConnection::poll_push`].
//!
//! The handshake runs first, one command at a time, while the caller's commands wait:
//!
//! 1. `HELLO 3` (with `AUTH <user> <password>` when credentials are given; the user defaults to
//!    `default`). A map reply means RESP3. An error saying the command is unknown (Redis
//!    before 6: `ERR unknown command 'HELLO'`) or the protocol is (`NOPROTO`) means RESP2:
//! 2. `AUTH [<user>] <password>` when credentials are given (the user only when it is not
//!    `default`, since Redis before 6 takes a password alone);
//! 3. `SELECT <db>` when the database is not 0.
//!
//! Any other error reply ends the connection with [`RespError::Refused`].
//!
//! It does not read sockets or clocks: timeouts, reconnection and backoff belong to the caller,
//! which closes the connection on any error from `handle_input`. After a failure every command
//! not yet answered is reported by `poll_reply` with the error, in order, so no caller waits
//! forever.

use std::collections::VecDeque;

use super::decode::{Decoded, Framed, decode_reply, frame};
use super::encode::{encode_auth, encode_hello, encode_select};
use super::{
    RESP_PIPELINE_BYTES_MAX, RESP_PIPELINE_COMMANDS_MAX, RESP_PUSH_FRAMES_MAX, RespError, Value,
};

/// A Redis login. Its `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The ACL user; `None` is Redis's `default` user.
    pub user: Option<Vec<u8>>,
    pub password: Vec<u8>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user.as_deref().map(String::from_utf8_lossy))
            .field("password", &"<hidden>")
            .finish()
    }
}

/// What the handshake sends, from the `redis://[user:pass@]host:port[/db]` URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub credentials: Option<Credentials>,
    /// The database to `SELECT`; 0 needs no command.
    pub db: u32,
}

/// The protocol the server agreed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Resp2,
    Resp3,
}

/// The handshake command being sent or answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeStep {
    Hello,
    /// RESP2 fallback only: `HELLO 3` carries the login otherwise.
    Auth,
    Select,
}

/// Where the connection is, for the caller's bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Logging in; the caller's commands wait in the queue.
    Handshaking { step: HandshakeStep },
    /// Commands leave as they are queued.
    Ready,
    /// An error ended the connection; see [`RespConnection::error`].
    Failed,
}

#[derive(Debug, Clone)]
enum State {
    Handshaking { step: HandshakeStep },
    Ready,
    Failed(RespError),
}

/// Who waits for the next reply, in the order commands were handed out.
#[derive(Debug, Clone)]
enum Waiter<T> {
    Handshake,
    Command(T),
}

/// One pipelined connection's protocol engine; `T` is the caller's token for a command.
#[derive(Debug, Clone)]
pub struct RespConnection<T> {
    state: State,
    options: Options,
    protocol: Option<Protocol>,
    server_version: Option<Vec<u8>>,
    /// The handshake command not yet handed out.
    handshake_out: Vec<u8>,
    /// Commands queued and not yet handed out, and their tokens in the same order.
    queued: Vec<u8>,
    queued_tokens: VecDeque<T>,
    /// Handed out and not yet answered, oldest first.
    in_flight: VecDeque<Waiter<T>>,
    /// The `Command` entries of `in_flight`.
    commands_in_flight: usize,
    replies: VecDeque<(T, Result<Value, RespError>)>,
    pushes: VecDeque<Value>,
    pushes_dropped: u64,
    /// `handle_input` can decide nothing, neither a reply nor an error, before its input holds
    /// this many bytes (the input starts where the previous call stopped consuming). It spares
    /// re-framing a large reply at every read.
    needed: usize,
}

impl<T> RespConnection<T> {
    /// A connection whose first transmit is the `HELLO 3` handshake.
    pub fn new(options: Options) -> RespConnection<T> {
        let mut handshake_out = Vec::new();
        let login = options.credentials.as_ref().map(|credentials| {
            let user = credentials.user.as_deref().unwrap_or(b"default");
            (user, credentials.password.as_slice())
        });
        encode_hello(login, &mut handshake_out);
        RespConnection {
            state: State::Handshaking {
                step: HandshakeStep::Hello,
            },
            options,
            protocol: None,
            server_version: None,
            handshake_out,
            queued: Vec::new(),
            queued_tokens: VecDeque::new(),
            in_flight: VecDeque::new(),
            commands_in_flight: 0,
            replies: VecDeque::new(),
            pushes: VecDeque::new(),
            pushes_dropped: 0,
            needed: 0,
        }
    }

    pub fn phase(&self) -> Phase {
        match self.state {
            State::Handshaking { step } => Phase::Handshaking { step },
            State::Ready => Phase::Ready,
            State::Failed(_) => Phase::Failed,
        }
    }

    /// The error that ended the connection.
    pub fn error(&self) -> Option<&RespError> {
        match &self.state {
            State::Failed(error) => Some(error),
            _ => None,
        }
    }

    /// RESP3 or RESP2, once the server has answered `HELLO`.
    pub fn protocol(&self) -> Option<Protocol> {
        self.protocol
    }

    /// The `version` field of the server's `HELLO` reply (RESP3 only).
    pub fn server_version(&self) -> Option<&[u8]> {
        self.server_version.as_deref()
    }

    /// Commands queued and not yet answered.
    pub fn commands_pending(&self) -> usize {
        self.queued_tokens.len() + self.commands_in_flight
    }

    /// Queues one command (exactly one RESP array, as `encode_command` and the `encode_*`
    /// functions write it); its answer comes back from [`RespConnection::poll_reply`] with
    /// `token`. Before the handshake is done the command waits; after it, the next
    /// `poll_transmit` hands it out.
    pub fn queue(&mut self, token: T, command: &[u8]) -> Result<(), RespError> {
        if let State::Failed(_) = self.state {
            return Err(RespError::Closed);
        }
        if self.commands_pending() >= RESP_PIPELINE_COMMANDS_MAX
            || self.queued.len() + command.len() > RESP_PIPELINE_BYTES_MAX
        {
            return Err(RespError::PipelineFull);
        }
        // A command that is not exactly one frame would shift every later reply onto the wrong
        // token; framing it costs about as much as encoding it did.
        let one_frame = matches!(
            frame(command),
            Ok(Framed::Complete { consumed }) if consumed == command.len()
        );
        if command.first() != Some(&b'*') || !one_frame {
            return Err(RespError::BadCommand);
        }
        self.queued.extend_from_slice(command);
        self.queued_tokens.push_back(token);
        Ok(())
    }

    /// Appends everything ready to be written to `out` and returns how many bytes: the next
    /// handshake command, or once ready, every queued command in one piece.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> usize {
        let before = out.len();
        if !self.handshake_out.is_empty() {
            out.append(&mut self.handshake_out);
            self.in_flight.push_back(Waiter::Handshake);
        }
        if matches!(self.state, State::Ready) && !self.queued_tokens.is_empty() {
            if out.is_empty() {
                // The caller's buffer is empty: hand over ours whole, no copy.
                std::mem::swap(out, &mut self.queued);
            } else {
                out.append(&mut self.queued);
            }
            self.commands_in_flight += self.queued_tokens.len();
            self.in_flight
                .extend(self.queued_tokens.drain(..).map(Waiter::Command));
        }
        out.len() - before
    }

    /// Decodes the whole replies at the front of `input` and returns how many bytes they took.
    /// Call again with the bytes not consumed followed by newly read ones. Every error is fatal
    /// and repeated on later calls; the caller closes the connection.
    pub fn handle_input(&mut self, input: &[u8]) -> Result<usize, RespError> {
        if let State::Failed(error) = &self.state {
            return Err(error.clone());
        }
        if input.len() < self.needed {
            return Ok(0);
        }
        let mut consumed = 0;
        while consumed < input.len() {
            match decode_reply(&input[consumed..]) {
                Err(error) => return Err(self.fail(error)),
                Ok(Decoded::Partial { needed }) => {
                    self.needed = needed;
                    return Ok(consumed);
                }
                Ok(Decoded::Complete {
                    value,
                    consumed: used,
                }) => {
                    consumed += used;
                    self.handle_value(value)?;
                }
            }
        }
        self.needed = 0;
        Ok(consumed)
    }

    /// The next answer, with its command's token, in the order the commands were queued. An
    /// error reply is `Err(RespError::Server(text))`; after a failure, every command not yet
    /// answered comes back with the failure's error.
    pub fn poll_reply(&mut self) -> Option<(T, Result<Value, RespError>)> {
        self.replies.pop_front()
    }

    /// The next RESP3 push frame the server sent on its own.
    pub fn poll_push(&mut self) -> Option<Value> {
        self.pushes.pop_front()
    }

    /// Push frames dropped because [`RESP_PUSH_FRAMES_MAX`] were waiting.
    pub fn pushes_dropped(&self) -> u64 {
        self.pushes_dropped
    }

    fn handle_value(&mut self, value: Value) -> Result<(), RespError> {
        // "Push data may be interleaved with any protocol data, but always at the top level
        // ... if a command is called, the next reply (that is not a push reply) received will
        // be the one relative of this command."
        if let Value::Push(_) = value {
            if self.pushes.len() < RESP_PUSH_FRAMES_MAX {
                self.pushes.push_back(value);
            } else {
                self.pushes_dropped += 1;
            }
            return Ok(());
        }
        match self.in_flight.pop_front() {
            None => Err(self.fail(RespError::UnexpectedReply)),
            Some(Waiter::Command(token)) => {
                self.commands_in_flight -= 1;
                let result = match value {
                    Value::Error(text) => Err(RespError::Server(text)),
                    value => Ok(value),
                };
                self.replies.push_back((token, result));
                Ok(())
            }
            Some(Waiter::Handshake) => self.handle_handshake_reply(value),
        }
    }

    fn handle_handshake_reply(&mut self, value: Value) -> Result<(), RespError> {
        let State::Handshaking { step } = self.state else {
            return Err(self.fail(RespError::UnexpectedReply));
        };
        match (step, value) {
            (HandshakeStep::Hello, Value::Map(fields)) => {
                self.protocol = Some(Protocol::Resp3);
                self.server_version = fields.into_iter().find_map(|(key, value)| {
                    let is_version = key.as_bytes() == Some(b"version");
                    is_version.then(|| value.as_bytes().map(<[u8]>::to_vec))?
                });
                self.after_login();
            }
            (HandshakeStep::Hello, Value::Error(text)) if knows_no_hello(&text) => {
                self.protocol = Some(Protocol::Resp2);
                match &self.options.credentials {
                    Some(credentials) => {
                        let user = credentials
                            .user
                            .as_deref()
                            .filter(|user| *user != b"default");
                        encode_auth(user, &credentials.password, &mut self.handshake_out);
                        self.state = State::Handshaking {
                            step: HandshakeStep::Auth,
                        };
                    }
                    None => self.after_login(),
                }
            }
            (HandshakeStep::Auth, value) if is_ok(&value) => self.after_login(),
            (HandshakeStep::Select, value) if is_ok(&value) => self.state = State::Ready,
            (_, Value::Error(text)) => return Err(self.fail(RespError::Refused(text))),
            _ => return Err(self.fail(RespError::UnexpectedReply)),
        }
        Ok(())
    }

    fn after_login(&mut self) {
        if self.options.db == 0 {
            self.state = State::Ready;
            return;
        }
        encode_select(self.options.db, &mut self.handshake_out);
        self.state = State::Handshaking {
            step: HandshakeStep::Select,
        };
    }

    /// Ends the connection: every command not yet answered is answered with `error`.
    fn fail(&mut self, error: RespError) -> RespError {
        for waiter in self.in_flight.drain(..) {
            if let Waiter::Command(token) = waiter {
                self.replies.push_back((token, Err(error.clone())));
            }
        }
        for token in self.queued_tokens.drain(..) {
            self.replies.push_back((token, Err(error.clone())));
        }
        self.queued = Vec::new();
        self.handshake_out = Vec::new();
        self.commands_in_flight = 0;
        self.state = State::Failed(error.clone());
        error
    }
}

/// Redis before 6 answers `HELLO` with `-ERR unknown command 'HELLO'` (the quoting differs
/// between versions); a server without RESP3 would answer `-NOPROTO`.
fn knows_no_hello(text: &[u8]) -> bool {
    text.starts_with(b"ERR unknown command") || text.starts_with(b"NOPROTO")
}

fn is_ok(value: &Value) -> bool {
    matches!(value, Value::SimpleString(text) if text == b"OK")
}
