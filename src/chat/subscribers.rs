//! One core's map of rooms to its local connections, with the `hello` gate: a connection gets
//! no broadcast before its `hello`, and none that its `hello` already showed.
//!
//! Each core keeps its own [`Subscribers`] (no lock, nothing shared). When a room's batch is
//! stored, its owner core encodes one `serverMessages` frame and sends it, with the batch's last
//! id, to every core; each core's [`Subscribers::broadcast`] names the local connections that
//! take it now, and every one of them gets a clone of the same [`Bytes`] (a reference count).
//!
//! **`hello` first.** The spec wants `hello` before anything else on every connection, and
//! `hello` carries each room's newest messages, read from the store after the connection joined.
//! So a connection [`Subscribers::join`]s *pending*: broadcasts for it are held, in order, while
//! the history is read. [`Subscribers::hello_sent`] then releases what the `hello` did not
//! show: a held batch whose last id is greater than the newest id the `hello` had for its room.
//! This is exact because a batch is stored all or none with consecutive ids (see `sequencer`):
//! it is either entirely in the history that was read or entirely after it, never split. A
//! batch stored before the join is in the history; one stored after it is held; one stored
//! while the history was read is in one or the other, and the id comparison says which.
//!
//! **Held frames are bounded.** A pending connection holds at most `held_bytes_max` bytes (the
//! outbox's budget): one more frame and it is cut, reported by `broadcast`, and the caller
//! closes it as a slow consumer. A store too slow to answer a `hello` cannot grow memory.
//!
//! Not here: the connections themselves and their outboxes (`outbox`), encoding (`events`),
//! the rings between cores (src/rt/mesh).

use std::collections::{HashMap, VecDeque};
use std::fmt;

use bytes::Bytes;

use crate::store::MessageId;

/// What a broadcast is to the subscribers: something cheap to clone (reference counts) whose
/// size counts against a pending connection's held budget.
pub trait Frame: Clone {
    /// Bytes it holds, for the held budget.
    fn held_bytes(&self) -> usize;
}

impl Frame for Bytes {
    fn held_bytes(&self) -> usize {
        self.len()
    }
}

/// A connection, numbered by the core that owns it; unique on that core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// `hello_sent` for a connection that is not waiting for its `hello`: it never joined, left,
/// was cut, or already had its `hello`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotPending;

impl fmt::Display for NotPending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the connection is not waiting for its hello")
    }
}

impl std::error::Error for NotPending {}

/// Who takes one broadcast on this core.
#[derive(Debug, PartialEq, Eq)]
pub struct Fanout<'a> {
    /// Connections that take the frame now (push a clone into each one's outbox).
    pub ready: &'a [ConnId],
    /// Pending connections that went past their held budget: they no longer belong to any
    /// room; close each as a slow consumer. Empty (and not allocated) nearly always.
    pub cut: Vec<ConnId>,
}

#[derive(Debug)]
struct Held<F> {
    room: usize,
    last_id: MessageId,
    frame: F,
}

#[derive(Debug)]
struct Member<F> {
    /// The rooms it joined, each with its position in that room's `ready` or `pending` list;
    /// `u32` halves this list's size (rooms and connections per core are far below 2^32;
    /// `narrow` checks).
    rooms: Vec<(u32, u32)>,
    /// `Some` while waiting for `hello`: the broadcasts held for it, oldest first.
    held: Option<VecDeque<Held<F>>>,
    held_bytes: usize,
}

#[derive(Debug, Default)]
struct RoomMembers {
    ready: Vec<ConnId>,
    pending: Vec<ConnId>,
}

/// The rooms' local connections on one core; `F` is what a broadcast carries.
#[derive(Debug)]
pub struct Subscribers<F = Bytes> {
    rooms: Vec<RoomMembers>,
    members: HashMap<ConnId, Member<F>>,
    held_bytes_max: usize,
}

impl<F: Frame> Subscribers<F> {
    /// No connections yet, for `rooms` configured rooms; a pending connection holds at most
    /// `held_bytes_max` bytes of broadcasts (use the outbox's budget).
    pub fn new(rooms: usize, held_bytes_max: usize) -> Subscribers<F> {
        Subscribers {
            rooms: (0..rooms).map(|_| RoomMembers::default()).collect(),
            members: HashMap::new(),
            held_bytes_max,
        }
    }

    /// Registers `conn` in `rooms` (duplicates ignored), waiting for its `hello`: broadcasts
    /// are held for it until [`Subscribers::hello_sent`].
    ///
    /// Panics when `conn` already joined or a room is out of range: the caller numbers
    /// connections and rooms.
    pub fn join(&mut self, conn: ConnId, rooms: &[usize]) {
        assert!(
            !self.members.contains_key(&conn),
            "connection {conn:?} joins once"
        );
        let mut member = Member {
            rooms: Vec::with_capacity(rooms.len()),
            held: Some(VecDeque::new()),
            held_bytes: 0,
        };
        for &room in rooms {
            if member.rooms.iter().any(|&(r, _)| r as usize == room) {
                continue;
            }
            let pending = &mut self.rooms[room].pending;
            pending.push(conn);
            member.rooms.push((narrow(room), narrow(pending.len() - 1)));
        }
        self.members.insert(conn, member);
    }

    /// `conn`'s `hello` is written (queued before anything else), and it showed `newest`: each
    /// room's newest message id, or `None` for a room it showed empty (a room not listed counts
    /// as `None`). The connection now takes broadcasts; returned are the held frames the
    /// `hello` did not show, oldest first, to queue right after it.
    pub fn hello_sent(
        &mut self,
        conn: ConnId,
        newest: &[(usize, Option<MessageId>)],
    ) -> Result<Vec<F>, NotPending> {
        let mut member = self.members.remove(&conn).ok_or(NotPending)?;
        let Some(held) = member.held.take() else {
            self.members.insert(conn, member);
            return Err(NotPending);
        };
        for slot in &mut member.rooms {
            let (room, pos) = (slot.0 as usize, slot.1 as usize);
            detach(&mut self.rooms, &mut self.members, room, true, pos);
            let ready = &mut self.rooms[room].ready;
            ready.push(conn);
            slot.1 = narrow(ready.len() - 1);
        }
        member.held_bytes = 0;
        self.members.insert(conn, member);
        let shown = |room: usize| {
            newest
                .iter()
                .find(|&&(r, _)| r == room)
                .and_then(|&(_, id)| id)
        };
        Ok(held
            .into_iter()
            .filter(|h| shown(h.room).is_none_or(|newest| h.last_id > newest))
            .map(|h| h.frame)
            .collect())
    }

    /// Removes `conn` from every room and drops what was held for it. Returns whether it was
    /// there (a connection cut by `broadcast` is already gone).
    pub fn leave(&mut self, conn: ConnId) -> bool {
        let Some(member) = self.members.remove(&conn) else {
            return false;
        };
        let pending = member.held.is_some();
        for (room, pos) in member.rooms {
            detach(
                &mut self.rooms,
                &mut self.members,
                room as usize,
                pending,
                pos as usize,
            );
        }
        true
    }

    /// A batch of `room`, whose newest id is `last_id`, encoded as `frame`: held for the
    /// room's pending connections, and the ready ones are returned to take it now. Pending
    /// connections whose held frames would pass the budget are removed and returned as `cut`.
    ///
    /// Broadcasts of a room must come in its id order (the owner core's order), which the ring
    /// from the owner keeps. A ready connection whose outbox refuses the frame is closed by the
    /// caller, which then calls [`Subscribers::leave`] for it (after the fan-out's borrow ends).
    pub fn broadcast(&mut self, room: usize, last_id: MessageId, frame: &F) -> Fanout<'_> {
        let mut cut = Vec::new();
        let mut i = 0;
        while let Some(&conn) = self.rooms[room].pending.get(i) {
            let member = self
                .members
                .get_mut(&conn)
                .expect("a room's pending connections are members");
            let held = member.held.as_mut().expect("a pending member holds");
            if member.held_bytes + frame.held_bytes() > self.held_bytes_max {
                cut.push(conn);
                // `leave` moves the last pending connection into slot `i`: look at it next.
                self.leave(conn);
                continue;
            }
            member.held_bytes += frame.held_bytes();
            held.push_back(Held {
                room,
                last_id,
                frame: frame.clone(),
            });
            i += 1;
        }
        Fanout {
            ready: &self.rooms[room].ready,
            cut,
        }
    }

    /// The connections of `room` that take its broadcasts now.
    pub fn recipients(&self, room: usize) -> &[ConnId] {
        &self.rooms[room].ready
    }

    /// The connections of `room` still waiting for their `hello`.
    pub fn pending(&self, room: usize) -> &[ConnId] {
        &self.rooms[room].pending
    }

    /// Whether `conn` joined and waits for its `hello`.
    pub fn is_pending(&self, conn: ConnId) -> bool {
        self.members.get(&conn).is_some_and(|m| m.held.is_some())
    }

    /// Bytes held for `conn` (0 once its `hello` is sent).
    pub fn held_bytes(&self, conn: ConnId) -> usize {
        self.members.get(&conn).map_or(0, |m| m.held_bytes)
    }

    /// Connections on this core, pending or not.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

/// Removes the connection at `pos` of `room`'s pending or ready list in O(1): the last one
/// takes its place, and that one's recorded position is updated.
fn detach<F>(
    rooms: &mut [RoomMembers],
    members: &mut HashMap<ConnId, Member<F>>,
    room: usize,
    pending: bool,
    pos: usize,
) {
    let list = if pending {
        &mut rooms[room].pending
    } else {
        &mut rooms[room].ready
    };
    list.swap_remove(pos);
    if let Some(&moved) = list.get(pos) {
        let slot = members
            .get_mut(&moved)
            .expect("a room's connections are members")
            .rooms
            .iter_mut()
            .find(|(r, _)| *r as usize == room)
            .expect("a member records each room it is in");
        slot.1 = narrow(pos);
    }
}

/// A room index or list position as stored in [`Member::rooms`].
fn narrow(n: usize) -> u32 {
    u32::try_from(n).expect("fewer than 2^32 rooms and connections per core")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn id(seq: u64) -> MessageId {
        MessageId { ms: 1, seq }
    }

    fn frame(text: &str) -> Bytes {
        Bytes::from(text.to_string())
    }

    fn sorted(conns: &[ConnId]) -> Vec<u64> {
        let mut v: Vec<u64> = conns.iter().map(|c| c.0).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn broadcasts_wait_for_hello_and_skip_what_it_showed() {
        let mut subs = Subscribers::new(2, 1000);
        subs.join(ConnId(1), &[0, 1]);
        subs.join(ConnId(2), &[0, 1]);
        assert!(subs.hello_sent(ConnId(2), &[]).unwrap().is_empty());

        // Batches stored while conn 1's history was read: 0-1..0-2 made it into its hello,
        // 0-3 did not; room 1's batch came after an empty history.
        let room0_a = frame("r0 a");
        let fanout = subs.broadcast(0, id(2), &room0_a);
        assert_eq!((fanout.ready, fanout.cut.len()), (&[ConnId(2)][..], 0));
        let fanout = subs.broadcast(1, id(7), &frame("r1"));
        assert_eq!(fanout.ready, [ConnId(2)]);
        subs.broadcast(0, id(3), &frame("r0 b"));
        assert!(subs.is_pending(ConnId(1)));
        assert_eq!(subs.held_bytes(ConnId(1)), 10);

        let released = subs
            .hello_sent(ConnId(1), &[(0, Some(id(2))), (1, None)])
            .unwrap();
        assert_eq!(released, [frame("r1"), frame("r0 b")]);
        assert!(!subs.is_pending(ConnId(1)));
        assert_eq!(subs.held_bytes(ConnId(1)), 0);
        assert_eq!(sorted(subs.recipients(0)), [1, 2]);
        assert_eq!(subs.pending(0), []);
        // From now on it takes broadcasts at once.
        assert_eq!(sorted(subs.broadcast(0, id(4), &frame("x")).ready), [1, 2]);
        assert_eq!(subs.hello_sent(ConnId(1), &[]), Err(NotPending));
        assert_eq!(subs.hello_sent(ConnId(9), &[]), Err(NotPending));
    }

    #[test]
    fn a_batch_up_to_the_newest_shown_is_dropped_whole() {
        let mut subs = Subscribers::new(1, 1000);
        subs.join(ConnId(1), &[0]);
        subs.broadcast(0, id(5), &frame("ends at 5"));
        subs.broadcast(0, id(6), &frame("ends at 6"));
        assert_eq!(
            subs.hello_sent(ConnId(1), &[(0, Some(id(5)))]).unwrap(),
            [frame("ends at 6")]
        );
    }

    #[test]
    fn held_frames_are_the_broadcast_bytes() {
        let mut subs = Subscribers::new(1, 1000);
        subs.join(ConnId(1), &[0]);
        let shared = frame("shared");
        subs.broadcast(0, id(1), &shared);
        let released = subs.hello_sent(ConnId(1), &[]).unwrap();
        assert_eq!(released[0].as_ptr(), shared.as_ptr());
    }

    #[test]
    fn leaving_while_pending_drops_the_held_frames() {
        let mut subs = Subscribers::new(2, 1000);
        subs.join(ConnId(1), &[0, 1]);
        subs.join(ConnId(2), &[0]);
        subs.broadcast(0, id(1), &frame("a"));
        assert!(subs.leave(ConnId(1)));
        assert!(!subs.leave(ConnId(1)));
        assert_eq!(subs.pending(0), [ConnId(2)]);
        assert_eq!(subs.pending(1), []);
        assert_eq!(subs.hello_sent(ConnId(1), &[]), Err(NotPending));
        assert_eq!(subs.hello_sent(ConnId(2), &[]).unwrap(), [frame("a")]);
        assert!(subs.leave(ConnId(2)));
        assert!(subs.is_empty());
        assert_eq!(subs.recipients(0), []);
    }

    #[test]
    fn rooms_are_separate() {
        let mut subs = Subscribers::<Bytes>::new(3, 1000);
        subs.join(ConnId(1), &[0, 2, 2]);
        subs.join(ConnId(2), &[1]);
        subs.hello_sent(ConnId(1), &[]).unwrap();
        subs.hello_sent(ConnId(2), &[]).unwrap();
        assert_eq!(subs.recipients(0), [ConnId(1)]);
        assert_eq!(subs.recipients(1), [ConnId(2)]);
        assert_eq!(subs.recipients(2), [ConnId(1)]);
        subs.leave(ConnId(1));
        assert_eq!(subs.recipients(2), []);
        assert_eq!(subs.recipients(1), [ConnId(2)]);
    }

    #[test]
    fn a_pending_connection_past_its_budget_is_cut() {
        let mut subs = Subscribers::new(1, 10);
        subs.join(ConnId(1), &[0]);
        subs.join(ConnId(2), &[0]);
        subs.join(ConnId(3), &[0]);
        subs.hello_sent(ConnId(3), &[]).unwrap();
        subs.broadcast(0, id(1), &frame("123456"));
        // Conn 2 had its hello in between: only conn 1 goes past 10 bytes.
        subs.hello_sent(ConnId(2), &[]).unwrap();
        // Exactly at the budget is fine.
        assert!(subs.broadcast(0, id(2), &frame("1234")).cut.is_empty());
        assert_eq!(subs.held_bytes(ConnId(1)), 10);
        let fanout = subs.broadcast(0, id(3), &frame("x"));
        assert_eq!(fanout.cut, [ConnId(1)]);
        assert_eq!(sorted(fanout.ready), [2, 3]);
        assert!(!subs.leave(ConnId(1)));
        assert_eq!(subs.pending(0), []);
    }

    #[test]
    fn several_cut_in_one_broadcast() {
        let mut subs = Subscribers::new(1, 3);
        for conn in 0..5 {
            subs.join(ConnId(conn), &[0]);
        }
        let fanout = subs.broadcast(0, id(1), &frame("four"));
        assert_eq!(sorted(&fanout.cut), [0, 1, 2, 3, 4]);
        assert!(subs.is_empty());
    }

    #[test]
    #[should_panic(expected = "joins once")]
    fn joining_twice_is_a_bug() {
        let mut subs = Subscribers::<Bytes>::new(1, 10);
        subs.join(ConnId(1), &[0]);
        subs.join(ConnId(1), &[0]);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Join(u64, Vec<usize>),
        Hello(u64),
        Leave(u64),
        Broadcast(usize, usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..12u64, prop::collection::vec(0..4usize, 0..5)).prop_map(|(c, r)| Op::Join(c, r)),
            (0..12u64).prop_map(Op::Hello),
            (0..12u64).prop_map(Op::Leave),
            (0..4usize, 1..6usize).prop_map(|(r, len)| Op::Broadcast(r, len)),
        ]
    }

    proptest! {
        /// Against a plain model: each room's ready and pending sets, and what each connection
        /// receives (at once or on release), whatever the order of joins, hellos, leaves and
        /// broadcasts.
        #[test]
        fn matches_a_model(ops in prop::collection::vec(op(), 0..200)) {
            const BUDGET: usize = 12;
            let mut subs = Subscribers::new(4, BUDGET);
            // Model: conn → (rooms, pending, held frames, held bytes).
            let mut model: HashMap<u64, (BTreeSet<usize>, bool, Vec<Bytes>, usize)> = HashMap::new();
            let mut seq = 0;
            for op in ops {
                match op {
                    Op::Join(c, rooms) => {
                        if model.contains_key(&c) { continue; }
                        subs.join(ConnId(c), &rooms);
                        model.insert(c, (rooms.into_iter().collect(), true, Vec::new(), 0));
                    }
                    Op::Hello(c) => {
                        let got = subs.hello_sent(ConnId(c), &[]);
                        match model.get_mut(&c) {
                            Some(m) if m.1 => {
                                m.1 = false;
                                m.3 = 0;
                                prop_assert_eq!(got, Ok(std::mem::take(&mut m.2)));
                            }
                            _ => prop_assert_eq!(got, Err(NotPending)),
                        }
                    }
                    Op::Leave(c) => {
                        prop_assert_eq!(subs.leave(ConnId(c)), model.remove(&c).is_some());
                    }
                    Op::Broadcast(room, len) => {
                        seq += 1;
                        let f = Bytes::from(vec![b'x'; len]);
                        let fanout = subs.broadcast(room, id(seq), &f);
                        let mut want_ready = Vec::new();
                        let mut want_cut = Vec::new();
                        for (&c, m) in model.iter_mut() {
                            if !m.0.contains(&room) { continue; }
                            if !m.1 {
                                want_ready.push(c);
                            } else if m.3 + len > BUDGET {
                                want_cut.push(c);
                            } else {
                                m.2.push(f.clone());
                                m.3 += len;
                            }
                        }
                        want_ready.sort_unstable();
                        want_cut.sort_unstable();
                        prop_assert_eq!(sorted(fanout.ready), want_ready);
                        prop_assert_eq!(sorted(&fanout.cut), want_cut.clone());
                        for c in want_cut { model.remove(&c); }
                    }
                }
                for room in 0..4 {
                    let mut ready: Vec<u64> = model.iter().filter(|(_, m)| !m.1 && m.0.contains(&room)).map(|(&c, _)| c).collect();
                    let mut pending: Vec<u64> = model.iter().filter(|(_, m)| m.1 && m.0.contains(&room)).map(|(&c, _)| c).collect();
                    ready.sort_unstable();
                    pending.sort_unstable();
                    prop_assert_eq!(sorted(subs.recipients(room)), ready);
                    prop_assert_eq!(sorted(subs.pending(room)), pending);
                }
                prop_assert_eq!(subs.len(), model.len());
            }
        }
    }
}
