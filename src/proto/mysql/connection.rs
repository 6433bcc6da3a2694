//! [`Connection`]: the engine for one client connection, from the server greeting to COM_QUIT.
//!
//! The runtime drives it with four calls: [`Connection::queue`] a command,
//! [`Connection::poll_transmit`] the bytes to write into its buffer, [`Connection::handle_input`]
//! the bytes it read (it consumes whole packets only, and says how many bytes), and
//! [`Connection::poll_event`] what happened. It frames packets, checks every sequence id, runs
//! the [`Handshake`] and then one command's [`Response`] state machine at a time.
//!
//! One command in flight at a time: the next leaves only when the response to the previous one
//! is complete. MySQL does answer pipelined commands in order, but a prepared statement's id is
//! only known from its COM_STMT_PREPARE_OK, a failed command leaves the ones behind it running
//! anyway, and the caller's pool gets its concurrency from several connections. The exception
//! is COM_STMT_CLOSE, which has no response: it leaves at once, followed by the next command.
//!
//! It does not read sockets or clocks: timeouts, reconnection and pooling belong to the caller,
//! which closes the connection on any error from `handle_input`.

use std::collections::VecDeque;

use super::command::{Kind, Queued, Response, encode_close};
use super::handshake::{Handshake, HandshakeState, HandshakeStep, Limits, Options, ServerInfo};
use super::packet::{decode_packet, encode_packet};
use super::{
    Command, Decode, MYSQL_QUEUED_COMMANDS_MAX, MysqlError, Prepared, QueryResult, ResultLimit,
    ServerError, Statement,
};

/// What the engine reports, in order. Every command but [`Command::Quit`] produces exactly one
/// of the events after `HandshakeDone`, in the order the commands were queued.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The server accepted us; queued commands start to leave.
    HandshakeDone(ServerInfo),
    /// COM_QUERY or COM_STMT_EXECUTE succeeded (OK packet or result set).
    QueryResult(QueryResult),
    /// COM_STMT_PREPARE succeeded.
    Prepared(Prepared),
    /// COM_PING succeeded.
    Pong,
    /// COM_STMT_CLOSE was handed out (the server sends no answer).
    StatementClosed(Statement),
    /// The server answered the command with an ERR packet; the connection stays usable.
    Error(ServerError),
    /// The result broke a limit; it was read to its end and dropped. The connection stays
    /// usable.
    ResultTooLarge(ResultLimit),
}

/// Where the connection is, for the caller's bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Logging in; commands queue up.
    Handshake(HandshakeState),
    /// Logged in, no command in flight.
    Idle,
    /// A command's response is being read.
    AwaitingResponse,
    /// COM_QUIT was handed out; the server closes the connection.
    Closed,
    /// An error ended the connection.
    Failed,
}

#[derive(Debug, Clone)]
enum State {
    Handshaking(Box<Handshake>),
    Ready {
        server: ServerInfo,
        in_flight: Option<Response>,
    },
    Closed,
    Failed(MysqlError),
}

/// One client connection's protocol engine. A clone continues independently from the same
/// point, with the same random seed (tests replay one prefix many ways).
#[derive(Debug, Clone)]
pub struct Connection {
    state: State,
    limits: Limits,
    /// The sequence id the next packet from the server must carry.
    next_sequence_id: u8,
    /// Bytes produced while reading (handshake replies) that `poll_transmit` hands out first.
    outbound: Vec<u8>,
    queue: VecDeque<Queued>,
    /// COM_QUIT is queued: nothing may follow it.
    quitting: bool,
    events: VecDeque<Event>,
}

impl Connection {
    /// A connection about to receive the server greeting. Fails only on options that cannot be
    /// sent (see [`Handshake::new`]).
    pub fn new(options: &Options) -> Result<Connection, MysqlError> {
        let handshake = Handshake::new(options)?;
        Ok(Connection {
            state: State::Handshaking(Box::new(handshake)),
            limits: options.limits.clamped(),
            next_sequence_id: 0,
            outbound: Vec::new(),
            queue: VecDeque::new(),
            quitting: false,
            events: VecDeque::new(),
        })
    }

    pub fn phase(&self) -> Phase {
        match &self.state {
            State::Handshaking(handshake) => Phase::Handshake(handshake.state()),
            State::Ready {
                in_flight: None, ..
            } => Phase::Idle,
            State::Ready { .. } => Phase::AwaitingResponse,
            State::Closed => Phase::Closed,
            State::Failed(_) => Phase::Failed,
        }
    }

    /// What the handshake learned, once it is done.
    pub fn server_info(&self) -> Option<&ServerInfo> {
        match &self.state {
            State::Ready { server, .. } => Some(server),
            _ => None,
        }
    }

    /// Commands queued and not yet handed out.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Queues a command; it leaves after the handshake and the commands before it. Refuses it
    /// (and changes nothing) when it cannot be sent: wrong number of values, a payload over the
    /// packet limit, a full queue, or a connection that has quit or failed.
    pub fn queue(&mut self, command: Command) -> Result<(), MysqlError> {
        if self.quitting || matches!(self.state, State::Closed | State::Failed(_)) {
            return Err(MysqlError::Closed);
        }
        if self.queue.len() >= MYSQL_QUEUED_COMMANDS_MAX {
            return Err(MysqlError::QueueFull);
        }
        let queued = command.encode()?;
        if queued.payload.len() > self.limits.packet_bytes_max {
            return Err(MysqlError::PacketTooLarge);
        }
        self.quitting = queued.kind == Kind::Quit;
        self.queue.push_back(queued);
        Ok(())
    }

    /// Appends the bytes to write now to `out`; returns how many. Commands leave one at a time,
    /// when the connection is idle.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> usize {
        let before = out.len();
        out.append(&mut self.outbound);
        while let State::Ready {
            server,
            in_flight: in_flight @ None,
        } = &mut self.state
        {
            let Some(queued) = self.queue.pop_front() else {
                break;
            };
            // "The sequence-id ... is reset to 0 when a new command begins in the Command
            // Phase."
            self.next_sequence_id = encode_packet(&queued.payload, 0, out);
            match queued.kind {
                Kind::Close { statement, notify } => {
                    // No response: the next command may follow at once.
                    if notify {
                        self.events.push_back(Event::StatementClosed(statement));
                    }
                }
                Kind::Quit => {
                    self.queue.clear();
                    self.state = State::Closed;
                }
                kind => {
                    *in_flight = Some(Response::new(kind, server.deprecate_eof(), self.limits));
                }
            }
        }
        out.len() - before
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Reads the server's bytes: every whole packet at the start of `input` is consumed and
    /// handled; an incomplete one is left (call again with it and more). Returns the bytes
    /// consumed. An error is fatal: the connection must be closed, and the engine answers every
    /// later call with the same error.
    pub fn handle_input(&mut self, input: &[u8]) -> Result<usize, MysqlError> {
        match &self.state {
            State::Failed(error) => return Err(error.clone()),
            // "COM_QUIT ... Server closes the connection or returns ERR_Packet": nothing left
            // to do with either.
            State::Closed => return Ok(input.len()),
            _ => {}
        }
        match self.handle_packets(input) {
            Ok(consumed) => Ok(consumed),
            Err(error) => {
                // Nothing more leaves a failed connection, not even a reply produced by an
                // earlier packet of this same input (found by fuzzing: a greeting and a bad
                // packet in one read left the handshake response queued).
                self.state = State::Failed(error.clone());
                self.queue.clear();
                self.outbound.clear();
                Err(error)
            }
        }
    }

    fn handle_packets(&mut self, input: &[u8]) -> Result<usize, MysqlError> {
        let mut consumed = 0;
        while consumed < input.len() {
            if matches!(
                self.state,
                State::Ready {
                    in_flight: None,
                    ..
                }
            ) {
                return Err(MysqlError::Malformed(
                    "bytes from the server while no command is in flight",
                ));
            }
            let (payload, used) =
                match decode_packet(&input[consumed..], self.limits.packet_bytes_max)? {
                    Decode::Partial => break,
                    Decode::Complete { value, consumed } => (value, consumed),
                };
            if payload.sequence_id != self.next_sequence_id {
                return Err(MysqlError::Sequence {
                    expected: self.next_sequence_id,
                    found: payload.sequence_id,
                });
            }
            self.next_sequence_id = payload.last_sequence_id.wrapping_add(1);
            consumed += used;
            self.handle_payload(&payload.payload)?;
        }
        Ok(consumed)
    }

    fn handle_payload(&mut self, payload: &[u8]) -> Result<(), MysqlError> {
        match &mut self.state {
            State::Handshaking(handshake) => match handshake.handle_payload(payload)? {
                HandshakeStep::Reply(reply) => {
                    if reply.len() > self.limits.packet_bytes_max {
                        return Err(MysqlError::PacketTooLarge);
                    }
                    self.next_sequence_id =
                        encode_packet(&reply, self.next_sequence_id, &mut self.outbound);
                }
                HandshakeStep::Wait => {}
                HandshakeStep::Done(server) => {
                    self.events.push_back(Event::HandshakeDone(server.clone()));
                    self.state = State::Ready {
                        server,
                        in_flight: None,
                    };
                }
            },
            State::Ready { in_flight, .. } => {
                let response = in_flight
                    .as_mut()
                    .expect("handle_packets refuses input with nothing in flight");
                if let Some(event) = response.handle_payload(payload)? {
                    if let Some(statement) = response.orphan_statement() {
                        self.queue.push_front(Queued {
                            kind: Kind::Close {
                                statement,
                                notify: false,
                            },
                            payload: encode_close(statement.id),
                        });
                    }
                    *in_flight = None;
                    self.events.push_back(event);
                }
            }
            // handle_input returns before reading in these states.
            State::Closed | State::Failed(_) => return Err(MysqlError::Closed),
        }
        Ok(())
    }
}
