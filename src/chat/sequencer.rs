//! The owner core's ordering of each room's messages: posts wait in a bounded queue per room,
//! go to the store in batches, one batch in flight per room, and come back with their ids in
//! order, ready to be encoded once and fanned out.
//!
//! Every room has one owner core (`Rooms::owner`). Connections on any core send their posts to
//! it; its [`Sequencer`] queues them in arrival order ([`Sequencer::push`]), hands the driver a
//! [`Batch`] for the store ([`Sequencer::poll_batch`] or [`Sequencer::next_batch`]), and turns
//! the store's answer into what the fan-out needs ([`Sequencer::persisted`] → [`Stored`]) or
//! into the origins to tell ([`Sequencer::failed`]).
//!
//! **One batch per room is in flight at a time.** The next batch of a room is taken only after
//! the previous one was answered, so a room's ids come back in the order the batches were
//! sent, and the fan-out (which follows [`Sequencer::persisted`] calls) is in the store's id
//! order: every subscriber on every core sees a room's messages in the same order. Rooms are
//! independent: each can have its own batch in flight.
//!
//! **A batch is stored all or none.** A batch is one `Store::append_messages` call, which is
//! atomic (one `MULTI`/`EXEC` on Redis, one transaction on the embedded store), so its messages
//! get consecutive ids, or none are stored. A post is never split between batches, so a client
//! event's messages stay together. Subscribers rely on this: a batch is either entirely in a
//! `hello`'s history or entirely after it (see `subscribers`).
//!
//! **A failed batch is never retried** (at most once): its posts' origins are told, with an
//! error event. A retry could store a message twice when the failure was a lost reply; the
//! client decides whether to send again. **The posts queued behind it fail with it**, at once:
//! they waited through the failure (often a whole store timeout), and sending them next would
//! make their senders wait a second timeout for an answer that is most likely the same error
//! (a silent Redis took 2 × `--redis-timeout` to refuse them). Posts that arrive afterwards
//! start a new batch.
//! The sender's acknowledgement is the broadcast itself, so a success needs no reply.
//!
//! Not here: the store call, the rings between cores, encoding (`events`), the local delivery
//! (`subscribers`, `outbox`). No I/O and no clock: posts arrive stamped.

use std::collections::VecDeque;
use std::fmt;

use super::events::{CLIENT_MESSAGES_PER_EVENT_MAX, ShownMessage};
use super::line::guest_name;
use super::subscribers::ConnId;
use crate::store::embedded::APPEND_MESSAGES_MAX;
use crate::store::redis::REDIS_APPEND_MESSAGES_MAX;
use crate::store::{MessageId, NewMessage, User};

/// Posts one room's queue holds at most (not counting the batch in flight); one more is
/// refused with [`Overloaded`]. At a store round trip of about a millisecond and full batches,
/// this is a fraction of a second of backlog.
pub const SEQUENCER_POSTS_PER_ROOM_MAX: usize = 1024;
/// Content bytes one room's queue holds at most (not counting the batch in flight); a post that
/// would go past it is refused with [`Overloaded`]. Bounds memory when posts are long.
pub const SEQUENCER_BYTES_PER_ROOM_MAX: usize = 8 << 20;
/// Messages one batch carries at most: one store call.
pub const SEQUENCER_BATCH_MESSAGES_MAX: usize = 256;

// Every post fits in one batch, and every batch in one store call.
const _: () = assert!(CLIENT_MESSAGES_PER_EVENT_MAX <= SEQUENCER_BATCH_MESSAGES_MAX);
const _: () = assert!(SEQUENCER_BATCH_MESSAGES_MAX <= APPEND_MESSAGES_MAX);
const _: () = assert!(SEQUENCER_BATCH_MESSAGES_MAX <= REDIS_APPEND_MESSAGES_MAX);

/// Where a post came from: the core and the connection to tell if it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Origin {
    pub core: usize,
    pub conn: ConnId,
}

/// One client event's messages for one room, stamped by the server when it was received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Post {
    pub origin: Origin,
    pub user: User,
    /// One to [`CLIENT_MESSAGES_PER_EVENT_MAX`] contents, in order.
    pub contents: Vec<String>,
    pub timestamp_ms: u64,
}

impl Post {
    fn content_bytes(&self) -> usize {
        self.contents.iter().map(String::len).sum()
    }
}

/// The room's queue is full: the post was refused, and its origin gets an error event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overloaded;

impl fmt::Display for Overloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the room has too many messages waiting to be stored")
    }
}

impl std::error::Error for Overloaded {}

/// What to store in one `append_messages` call: the room and its messages, in order. The
/// sequencer keeps the posts themselves until the store answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub room: usize,
    pub messages: Vec<NewMessage>,
}

/// A batch the store gave ids for, ready for the fan-out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub room: usize,
    /// The batch's posts, in order.
    pub posts: Vec<Post>,
    /// One per content of `posts`, in the same order, strictly increasing.
    pub ids: Vec<MessageId>,
}

impl Stored {
    /// The newest id of the batch: subscribers compare it with a `hello`'s newest.
    pub fn last_id(&self) -> MessageId {
        *self
            .ids
            .last()
            .expect("a stored batch holds at least one message")
    }

    /// The messages, oldest first, as `encode_server_messages` takes them.
    pub fn shown(&self) -> Vec<ShownMessage<'_>> {
        let contents = self.posts.iter().flat_map(|post| {
            post.contents
                .iter()
                .map(move |content| (post, content.as_str()))
        });
        contents
            .zip(&self.ids)
            .map(|((post, content), &id)| ShownMessage {
                id,
                content,
                user: &post.user,
                timestamp_ms: post.timestamp_ms,
            })
            .collect()
    }
}

/// The store answered with ids that cannot be this batch's: not one per message, or not
/// strictly increasing after the room's previous batch. Something else changed the room's
/// stream (deleted it, or wrote with a clock far behind); the batch is not fanned out, since
/// subscribers rely on the order, and its origins are told as for a failure. The room's order
/// restarts from these ids, so the next batch goes through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misordered {
    pub room: usize,
    pub origins: Vec<Origin>,
    pub detail: String,
}

impl fmt::Display for Misordered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "room {}: {}", self.room, self.detail)
    }
}

impl std::error::Error for Misordered {}

#[derive(Debug, Default)]
struct RoomQueue {
    waiting: VecDeque<Post>,
    /// Content bytes of `waiting`.
    waiting_bytes: usize,
    /// The posts of the batch the store has, if any.
    in_flight: Option<Vec<Post>>,
    /// Whether the room is in `Sequencer::ready` (possibly stale: checked when popped).
    listed: bool,
    /// The newest id this room fanned out, to check the store's answers against.
    last_id: Option<MessageId>,
}

impl RoomQueue {
    fn is_ready(&self) -> bool {
        self.in_flight.is_none() && !self.waiting.is_empty()
    }
}

/// The per-room queues of the rooms one core owns.
#[derive(Debug)]
pub struct Sequencer {
    /// Indexed by room; `None` for rooms another core owns.
    rooms: Vec<Option<RoomQueue>>,
    /// Rooms that may have a batch to take, in the order they became ready.
    ready: VecDeque<usize>,
}

impl Sequencer {
    /// The sequencer of core `core` of `cores`, for `rooms` configured rooms: it owns the rooms
    /// `Rooms::owner` gives to that core.
    pub fn new(rooms: usize, core: usize, cores: usize) -> Sequencer {
        let rooms = (0..rooms)
            .map(|room| (super::rooms::Rooms::owner(room, cores) == core).then(RoomQueue::default))
            .collect();
        Sequencer {
            rooms,
            ready: VecDeque::new(),
        }
    }

    /// Whether this core orders `room`'s messages.
    pub fn owns(&self, room: usize) -> bool {
        matches!(self.rooms.get(room), Some(Some(_)))
    }

    fn room(&mut self, room: usize) -> &mut RoomQueue {
        self.rooms
            .get_mut(room)
            .and_then(Option::as_mut)
            .expect("posts reach the core that owns their room")
    }

    fn list_if_ready(&mut self, room: usize) {
        let queue = self.room(room);
        if queue.is_ready() && !queue.listed {
            queue.listed = true;
            self.ready.push_back(room);
        }
    }

    /// Queues a post behind the room's others. Refused with [`Overloaded`] when the room's
    /// queue already holds [`SEQUENCER_POSTS_PER_ROOM_MAX`] posts or the post would take it
    /// past [`SEQUENCER_BYTES_PER_ROOM_MAX`].
    ///
    /// Panics when this core does not own `room`, or the post holds no content or more than
    /// [`CLIENT_MESSAGES_PER_EVENT_MAX`]: the decoder and the routing guarantee both.
    pub fn push(&mut self, room: usize, post: Post) -> Result<(), Overloaded> {
        assert!(
            (1..=CLIENT_MESSAGES_PER_EVENT_MAX).contains(&post.contents.len()),
            "a post holds 1 to {CLIENT_MESSAGES_PER_EVENT_MAX} messages, not {}",
            post.contents.len()
        );
        let bytes = post.content_bytes();
        let queue = self.room(room);
        if queue.waiting.len() >= SEQUENCER_POSTS_PER_ROOM_MAX
            || queue.waiting_bytes + bytes > SEQUENCER_BYTES_PER_ROOM_MAX
        {
            return Err(Overloaded);
        }
        queue.waiting_bytes += bytes;
        queue.waiting.push_back(post);
        self.list_if_ready(room);
        Ok(())
    }

    /// Takes `room`'s next batch: the posts at the front of its queue, whole, up to
    /// [`SEQUENCER_BATCH_MESSAGES_MAX`] messages. `None` when the room has a batch in flight or
    /// nothing queued (or another core owns it). Until [`Sequencer::persisted`] or
    /// [`Sequencer::failed`] is called for it, the room gives no other batch.
    pub fn next_batch(&mut self, room: usize) -> Option<Batch> {
        let queue = self.rooms.get_mut(room)?.as_mut()?;
        if !queue.is_ready() {
            return None;
        }
        let mut posts = Vec::new();
        let mut count = 0;
        while let Some(post) = queue.waiting.front() {
            if count + post.contents.len() > SEQUENCER_BATCH_MESSAGES_MAX {
                break;
            }
            count += post.contents.len();
            let post = queue.waiting.pop_front().expect("the front was just seen");
            queue.waiting_bytes -= post.content_bytes();
            posts.push(post);
        }
        // The store takes its messages by value and the fan-out needs them afterwards: each
        // content is copied once, here.
        let messages = posts
            .iter()
            .flat_map(|post| {
                post.contents.iter().map(|content| NewMessage {
                    content: content.clone(),
                    user_id: post.user.id,
                    timestamp_ms: post.timestamp_ms,
                    guest: guest_name(&post.user).map(str::to_string),
                })
            })
            .collect();
        queue.in_flight = Some(posts);
        Some(Batch { room, messages })
    }

    /// The next batch of any ready room, rooms taken in the order they became ready; `None`
    /// when every room is idle or waiting for the store. Call it until `None` each loop turn.
    pub fn poll_batch(&mut self) -> Option<Batch> {
        while let Some(room) = self.ready.pop_front() {
            self.room(room).listed = false;
            if let Some(batch) = self.next_batch(room) {
                return Some(batch);
            }
        }
        None
    }

    /// Rooms with posts queued and no batch in flight, in the order they became ready.
    pub fn rooms_ready(&self) -> impl Iterator<Item = usize> + '_ {
        self.ready.iter().copied().filter(|&room| {
            self.rooms[room]
                .as_ref()
                .is_some_and(|queue| queue.is_ready())
        })
    }

    /// Whether `room` has a batch at the store.
    pub fn is_busy(&self, room: usize) -> bool {
        matches!(self.rooms.get(room), Some(Some(q)) if q.in_flight.is_some())
    }

    /// Posts waiting in `room`'s queue (not counting the batch in flight).
    pub fn waiting(&self, room: usize) -> usize {
        match self.rooms.get(room) {
            Some(Some(queue)) => queue.waiting.len(),
            _ => 0,
        }
    }

    /// The store stored `room`'s batch and gave `ids`, one per message in order. Returns the
    /// batch for the fan-out; the room may give its next batch.
    ///
    /// Panics when `room` has no batch in flight: the driver answers only batches it took.
    pub fn persisted(&mut self, room: usize, ids: Vec<MessageId>) -> Result<Stored, Misordered> {
        let queue = self.room(room);
        let posts = queue
            .in_flight
            .take()
            .expect("only a batch in flight is persisted");
        let count: usize = posts.iter().map(|p| p.contents.len()).sum();
        let increasing = ids.windows(2).all(|pair| pair[0] < pair[1]);
        let after_last = match (queue.last_id, ids.first()) {
            (Some(last), Some(&first)) => first > last,
            _ => true,
        };
        let outcome = if ids.len() != count {
            Err(format!("{} ids for {count} messages", ids.len()))
        } else if !increasing || !after_last {
            Err(format!(
                "ids {}..{} are not strictly increasing after {}",
                ids[0],
                ids[ids.len() - 1],
                queue
                    .last_id
                    .map_or("none".to_string(), |id| id.to_string())
            ))
        } else {
            Ok(())
        };
        if let Some(&newest) = ids.iter().max() {
            queue.last_id = Some(newest);
        }
        self.list_if_ready(room);
        match outcome {
            Ok(()) => Ok(Stored { room, posts, ids }),
            Err(detail) => Err(Misordered {
                room,
                origins: posts.iter().map(|p| p.origin).collect(),
                detail,
            }),
        }
    }

    /// The store failed `room`'s batch: none of it was announced, and it is not retried. The
    /// posts queued behind it are dropped too (see the module documentation). Returns the
    /// origins of all of them, in order (one per post), to send each an error event; the
    /// room's next post starts a new batch.
    ///
    /// Panics when `room` has no batch in flight: the driver answers only batches it took.
    pub fn failed(&mut self, room: usize) -> Vec<Origin> {
        let queue = self.room(room);
        let posts = queue
            .in_flight
            .take()
            .expect("only a batch in flight fails");
        let waiting = std::mem::take(&mut queue.waiting);
        queue.waiting_bytes = 0;
        posts.into_iter().chain(waiting).map(|p| p.origin).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;
    use crate::chat::events::encode_server_messages;

    fn origin(core: usize, conn: u64) -> Origin {
        Origin {
            core,
            conn: ConnId(conn),
        }
    }

    fn post(core: usize, conn: u64, contents: &[&str]) -> Post {
        Post {
            origin: origin(core, conn),
            user: User {
                id: conn as i64,
                username: format!("u{conn}"),
            },
            contents: contents.iter().map(|c| c.to_string()).collect(),
            timestamp_ms: 1000 + conn,
        }
    }

    /// Ids the way Redis gives them: consecutive within a millisecond.
    fn ids(from: u64, count: usize) -> Vec<MessageId> {
        (0..count as u64)
            .map(|seq| MessageId {
                ms: 5,
                seq: from + seq,
            })
            .collect()
    }

    fn contents(batch: &Batch) -> Vec<&str> {
        batch.messages.iter().map(|m| m.content.as_str()).collect()
    }

    #[test]
    fn a_core_owns_its_share_of_the_rooms() {
        let seq = Sequencer::new(5, 1, 2);
        let owned: Vec<usize> = (0..6).filter(|&r| seq.owns(r)).collect();
        assert_eq!(owned, [1, 3]);
        assert!(Sequencer::new(3, 0, 1).owns(2));
    }

    #[test]
    #[should_panic(expected = "owns their room")]
    fn a_post_for_another_cores_room_is_a_routing_bug() {
        let _ = Sequencer::new(2, 0, 2).push(1, post(0, 1, &["x"]));
    }

    #[test]
    fn posts_from_many_origins_go_out_in_arrival_order_one_batch_per_room() {
        let mut seq = Sequencer::new(2, 0, 1);
        seq.push(0, post(0, 1, &["a1", "a2"])).unwrap();
        seq.push(1, post(1, 2, &["b1"])).unwrap();
        seq.push(0, post(1, 3, &["a3"])).unwrap();
        assert_eq!(seq.rooms_ready().collect::<Vec<_>>(), [0, 1]);

        let a = seq.poll_batch().unwrap();
        assert_eq!((a.room, contents(&a)), (0, vec!["a1", "a2", "a3"]));
        assert_eq!(a.messages[0].user_id, 1);
        assert_eq!(a.messages[2].timestamp_ms, 1003);
        // Room 0 is busy: a new post waits for the answer.
        seq.push(0, post(0, 4, &["a4"])).unwrap();
        assert!(seq.next_batch(0).is_none());
        assert!(seq.is_busy(0));
        assert_eq!(seq.rooms_ready().collect::<Vec<_>>(), [1]);
        let b = seq.poll_batch().unwrap();
        assert_eq!((b.room, contents(&b)), (1, vec!["b1"]));
        assert!(seq.poll_batch().is_none());

        // Rooms answer independently, in any order.
        let stored_b = seq.persisted(1, ids(0, 1)).unwrap();
        assert_eq!(stored_b.room, 1);
        let stored_a = seq.persisted(0, ids(10, 3)).unwrap();
        assert_eq!(stored_a.last_id(), MessageId { ms: 5, seq: 12 });
        let shown = stored_a.shown();
        let got: Vec<(String, &str, &str)> = shown
            .iter()
            .map(|m| (m.id.to_string(), m.content, m.user.username.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("5-10".to_string(), "a1", "u1"),
                ("5-11".to_string(), "a2", "u1"),
                ("5-12".to_string(), "a3", "u3"),
            ]
        );
        let frame = String::from_utf8(encode_server_messages("a", &shown)).unwrap();
        assert!(
            frame.contains(
                r#""id":"5-12","content":"a3","user":{"id":3,"username":"u3"},"timestamp":1003"#
            ),
            "{frame}"
        );

        let next = seq.poll_batch().unwrap();
        assert_eq!((next.room, contents(&next)), (0, vec!["a4"]));
    }

    #[test]
    fn a_batch_stops_at_the_limit_without_splitting_a_post() {
        let mut seq = Sequencer::new(1, 0, 1);
        let full = vec!["m"; CLIENT_MESSAGES_PER_EVENT_MAX];
        let fitting = SEQUENCER_BATCH_MESSAGES_MAX / CLIENT_MESSAGES_PER_EVENT_MAX;
        // Posts of one message first, so the big posts do not line up with the limit.
        seq.push(0, post(0, 0, &["x"])).unwrap();
        for conn in 1..=fitting as u64 {
            seq.push(0, post(0, conn, &full)).unwrap();
        }
        let batch = seq.next_batch(0).unwrap();
        // One message plus `fitting - 1` full posts; the last full post would cross the limit.
        assert_eq!(
            batch.messages.len(),
            1 + (fitting - 1) * CLIENT_MESSAGES_PER_EVENT_MAX
        );
        assert_eq!(seq.waiting(0), 1);
        seq.persisted(0, ids(0, batch.messages.len())).unwrap();
        let rest = seq.next_batch(0).unwrap();
        assert_eq!(rest.messages.len(), CLIENT_MESSAGES_PER_EVENT_MAX);

        // Exactly at the limit: one batch takes all.
        let mut seq = Sequencer::new(1, 0, 1);
        for conn in 0..fitting as u64 {
            seq.push(0, post(0, conn, &full)).unwrap();
        }
        assert_eq!(
            seq.next_batch(0).unwrap().messages.len(),
            SEQUENCER_BATCH_MESSAGES_MAX
        );
        assert_eq!(seq.waiting(0), 0);
    }

    #[test]
    fn a_failed_batch_fails_the_posts_queued_behind_it_and_the_room_goes_on() {
        let mut seq = Sequencer::new(2, 0, 1);
        seq.push(0, post(0, 1, &["a"])).unwrap();
        seq.push(0, post(1, 2, &["b", "c"])).unwrap();
        let batch = seq.next_batch(0).unwrap();
        assert_eq!(batch.messages.len(), 3);
        seq.push(0, post(1, 3, &["d"])).unwrap();
        seq.push(0, post(0, 4, &["e"])).unwrap();
        // Another room's queue is not touched.
        seq.push(1, post(0, 5, &["x"])).unwrap();
        assert_eq!(
            seq.failed(0),
            [origin(0, 1), origin(1, 2), origin(1, 3), origin(0, 4)]
        );
        assert!(!seq.is_busy(0));
        assert_eq!(seq.waiting(0), 0);
        let other = seq.poll_batch().unwrap();
        assert_eq!((other.room, contents(&other)), (1, vec!["x"]));
        assert!(seq.poll_batch().is_none());
        // The next post starts a new batch, and the byte budget was given back.
        seq.push(0, post(1, 6, &["f"])).unwrap();
        let next = seq.poll_batch().unwrap();
        assert_eq!(contents(&next), ["f"]);
        let stored = seq.persisted(0, ids(0, 1)).unwrap();
        assert_eq!(stored.posts[0].origin, origin(1, 6));
        assert!(seq.poll_batch().is_none());
    }

    #[test]
    #[should_panic(expected = "only a batch in flight")]
    fn answering_a_batch_never_taken_is_a_bug() {
        let mut seq = Sequencer::new(1, 0, 1);
        let _ = seq.failed(0);
    }

    #[test]
    fn a_full_queue_refuses_posts() {
        let mut seq = Sequencer::new(1, 0, 1);
        for conn in 0..SEQUENCER_POSTS_PER_ROOM_MAX as u64 {
            seq.push(0, post(0, conn, &["x"])).unwrap();
        }
        assert_eq!(seq.push(0, post(0, 9, &["y"])), Err(Overloaded));
        // The batch in flight does not count: taking one makes room.
        let batch = seq.next_batch(0).unwrap();
        assert_eq!(batch.messages.len(), SEQUENCER_BATCH_MESSAGES_MAX);
        assert_eq!(seq.push(0, post(0, 9, &["y"])), Ok(()));

        // And by bytes.
        let mut seq = Sequencer::new(1, 0, 1);
        let big = "b".repeat(SEQUENCER_BYTES_PER_ROOM_MAX / 2);
        seq.push(0, post(0, 1, &[&big])).unwrap();
        seq.push(0, post(0, 2, &[&big])).unwrap();
        assert_eq!(seq.push(0, post(0, 3, &["z"])), Err(Overloaded));
        seq.next_batch(0).unwrap();
        assert_eq!(seq.push(0, post(0, 3, &["z"])), Ok(()));
    }

    #[test]
    fn ids_that_break_the_order_are_not_fanned_out() {
        let mut seq = Sequencer::new(1, 0, 1);
        let mut round = |contents: &[&str], ids: Vec<MessageId>| {
            seq.push(0, post(0, 1, contents)).unwrap();
            seq.next_batch(0).unwrap();
            seq.persisted(0, ids)
        };
        assert!(round(&["a"], ids(5, 1)).is_ok());
        let wrong_count = round(&["b", "c"], ids(6, 1)).unwrap_err();
        assert_eq!(wrong_count.origins, [origin(0, 1)]);
        assert_eq!(wrong_count.detail, "1 ids for 2 messages");
        // Not after the previous batch (6 was taken by the refused answer above).
        assert!(round(&["d"], ids(6, 1)).is_err());
        assert!(round(&["e", "f"], vec![ids(9, 1)[0], ids(8, 1)[0]]).is_err());
        // The order restarts from the last answer.
        assert!(round(&["g"], ids(10, 1)).is_ok());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push {
            room: usize,
            origin: usize,
            messages: usize,
        },
        Take,
        Answer {
            room: usize,
            ok: bool,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..3usize, 0..4usize, 1..=CLIENT_MESSAGES_PER_EVENT_MAX)
                .prop_map(|(room, origin, messages)| Op::Push { room, origin, messages }),
            2 => Just(Op::Take),
            3 => (0..3usize, prop::bool::weighted(0.8)).prop_map(|(room, ok)| Op::Answer { room, ok }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever the interleaving of posts and store answers, every room's fanned-out ids
        /// are strictly increasing, posts are fanned out in the order they were pushed, and
        /// every accepted post is fanned out once or reported failed once.
        #[test]
        fn every_post_ends_once_and_ids_go_up(ops in prop::collection::vec(op(), 0..400)) {
            let mut seq = Sequencer::new(3, 0, 1);
            let mut next_seq = 0u64;
            let mut in_flight: HashMap<usize, usize> = HashMap::new();
            let mut pushed: Vec<Vec<u64>> = vec![Vec::new(); 3];
            let mut fanned: Vec<Vec<u64>> = vec![Vec::new(); 3];
            let mut fanned_ids: Vec<Vec<MessageId>> = vec![Vec::new(); 3];
            let mut failed: Vec<u64> = Vec::new();
            let mut post_no = 0u64;

            let mut answer = |seq: &mut Sequencer, room: usize, count: usize, ok: bool,
                              fanned: &mut Vec<Vec<u64>>, fanned_ids: &mut Vec<Vec<MessageId>>,
                              failed: &mut Vec<u64>| {
                if ok {
                    let ids = ids(next_seq, count);
                    next_seq += count as u64;
                    let stored = seq.persisted(room, ids).unwrap();
                    prop_assert_eq!(stored.room, room);
                    prop_assert_eq!(stored.shown().len(), count);
                    fanned[room].extend(stored.posts.iter().map(|p| p.timestamp_ms));
                    fanned_ids[room].extend(stored.ids.iter().copied());
                } else {
                    let origins = seq.failed(room);
                    // The test encodes the post number in the connection id.
                    failed.extend(origins.iter().map(|o| o.conn.0));
                }
                Ok(())
            };

            for op in ops {
                match op {
                    Op::Push { room, origin, messages } => {
                        let mut p = post(origin, post_no, &vec!["m"; messages]);
                        p.timestamp_ms = post_no;
                        if seq.push(room, p).is_ok() {
                            pushed[room].push(post_no);
                        }
                        post_no += 1;
                    }
                    Op::Take => {
                        while let Some(batch) = seq.poll_batch() {
                            prop_assert!(!in_flight.contains_key(&batch.room));
                            prop_assert!(batch.messages.len() <= SEQUENCER_BATCH_MESSAGES_MAX);
                            in_flight.insert(batch.room, batch.messages.len());
                        }
                        prop_assert_eq!(seq.rooms_ready().count(), 0);
                    }
                    Op::Answer { room, ok } => {
                        if let Some(count) = in_flight.remove(&room) {
                            answer(&mut seq, room, count, ok, &mut fanned, &mut fanned_ids, &mut failed)?;
                        } else {
                            prop_assert!(!seq.is_busy(room));
                        }
                    }
                }
            }
            // Drain: everything still queued or in flight gets stored.
            loop {
                for (room, count) in std::mem::take(&mut in_flight) {
                    answer(&mut seq, room, count, true, &mut fanned, &mut fanned_ids, &mut failed)?;
                }
                match seq.poll_batch() {
                    Some(batch) => { in_flight.insert(batch.room, batch.messages.len()); }
                    None if in_flight.is_empty() => break,
                    None => {}
                }
            }
            for room in 0..3 {
                prop_assert!(fanned_ids[room].windows(2).all(|w| w[0] < w[1]));
                // Fanned-out posts are the pushed ones minus the failed ones, in push order.
                let expected: Vec<u64> = pushed[room]
                    .iter()
                    .copied()
                    .filter(|p| !failed.contains(p))
                    .collect();
                prop_assert_eq!(&fanned[room], &expected);
            }
            let mut ended: Vec<u64> = fanned.concat();
            ended.extend(&failed);
            ended.sort_unstable();
            let mut accepted: Vec<u64> = pushed.concat();
            accepted.sort_unstable();
            prop_assert_eq!(ended, accepted);
        }
    }
}
