//! One connection's outbound queue of encoded frames, bounded in bytes, drained by coalesced
//! writes.
//!
//! Frames arrive as [`Bytes`]: a `serverMessages` frame is encoded once and every recipient's
//! outbox holds a clone of the same bytes (a reference count, never a copy). Once per loop turn
//! the connection's driver takes everything pending with [`Outbox::take_batch`] and writes it
//! with one vectored write; when the write completes it reports [`Outbox::completed`].
//!
//! **Slow consumers are cut off, never waited for.** The budget counts every byte queued and
//! not yet written: the frames waiting here *and* the frames handed to a write that has not
//! completed. A frame that would take the total past the budget is refused with
//! [`SlowConsumer`]; the driver then calls [`Outbox::close_with`] with a close frame carrying
//! [`SLOW_CONSUMER_CLOSE_CODE`] and [`SLOW_CONSUMER_REASON`], which drops what was still
//! waiting. So a reader that falls more than the budget behind is disconnected, and what one
//! connection keeps alive is bounded by its budget (plus the close frame), however long it
//! stalls; nobody else waits for it.
//!
//! Not here: the socket and the write itself (src/rt, src/server), WebSocket framing
//! (src/proto/ws), who receives a broadcast (`subscribers`).

use std::collections::VecDeque;
use std::fmt;

use bytes::Bytes;

/// The close code for a connection cut off as a slow consumer (RFC 6455 §7.4.1: 1008, "policy
/// violation").
pub const SLOW_CONSUMER_CLOSE_CODE: u16 = 1008;
/// The close reason sent with [`SLOW_CONSUMER_CLOSE_CODE`].
pub const SLOW_CONSUMER_REASON: &str = "slow consumer";
/// A slow consumer's connection ends at most this long after it passed its budget (plus the
/// deadline sweeper's period), whether or not its last frame or line could still be written: a
/// write stuck on a full socket is not waited out to the send timeout.
pub const SLOW_CONSUMER_CLOSE_WITHIN_MS: u64 = 500;
/// Default budget of one outbox, in bytes: queued plus being written. At the default 100 messages
/// of history and a few hundred bytes a message, this holds several hellos' worth of traffic,
/// so only a reader that has really stopped reaches it.
pub const OUTBOX_BYTES_MAX_DEFAULT: usize = 1 << 20;
/// Frames one [`Outbox::take_batch`] hands out at most: Linux's `IOV_MAX`, so one batch fits
/// one `writev`.
pub const OUTBOX_BATCH_FRAMES_MAX: usize = 1024;
/// A sensible `max_bytes` for [`Outbox::take_batch`]: large enough to coalesce a loop turn's
/// frames, small enough that one write does not hold a large part of the budget.
pub const OUTBOX_WRITE_BYTES_MAX: usize = 256 * 1024;

/// The frame did not fit the outbox's budget: the reader is too far behind. Close the
/// connection with [`SLOW_CONSUMER_CLOSE_CODE`] and [`SLOW_CONSUMER_REASON`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlowConsumer;

impl fmt::Display for SlowConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(SLOW_CONSUMER_REASON)
    }
}

impl std::error::Error for SlowConsumer {}

/// A connection's frames waiting to be written, in order.
#[derive(Debug)]
pub struct Outbox {
    queue: VecDeque<Bytes>,
    /// Bytes in `queue`.
    queued_bytes: usize,
    /// Bytes handed out by `take_batch` whose write has not completed.
    in_flight_bytes: usize,
    bytes_max: usize,
    /// A close frame was queued: nothing may follow it (RFC 6455 §5.5.1).
    closing: bool,
}

impl Outbox {
    /// An empty outbox that holds at most `bytes_max` bytes queued or being written.
    pub fn new(bytes_max: usize) -> Outbox {
        Outbox {
            queue: VecDeque::new(),
            queued_bytes: 0,
            in_flight_bytes: 0,
            bytes_max,
            closing: false,
        }
    }

    /// Queues `frame` after the frames already queued. Refused with [`SlowConsumer`] when it
    /// would take the bytes queued or being written past the budget; the outbox is then
    /// unchanged, and the caller closes the connection ([`Outbox::close_with`]). An empty frame
    /// is ignored. Once a close frame is queued, frames are dropped (nothing may follow a
    /// close), and `Ok` is returned: the connection is going away anyway.
    pub fn push(&mut self, frame: Bytes) -> Result<(), SlowConsumer> {
        if self.closing || frame.is_empty() {
            return Ok(());
        }
        if self.pending_bytes() + frame.len() > self.bytes_max {
            return Err(SlowConsumer);
        }
        self.queued_bytes += frame.len();
        self.queue.push_back(frame);
        Ok(())
    }

    /// Drops the frames not yet handed to a write, queues `close` (a close frame, a few bytes,
    /// admitted past the budget so a slow consumer still learns why it was cut off), and from
    /// then on drops every frame pushed. Frames already being written complete as usual.
    /// Calling it again does nothing: only the first close frame is sent.
    pub fn close_with(&mut self, close: Bytes) {
        if self.closing {
            return;
        }
        self.closing = true;
        self.queue.clear();
        self.queued_bytes = close.len();
        self.queue.push_back(close);
    }

    /// Takes the frames at the front, in order, for one vectored write: as many as fit in
    /// `max_bytes` (at least one, however large, so a big frame is never stuck) and at most
    /// [`OUTBOX_BATCH_FRAMES_MAX`]. Empty when nothing is queued. Their bytes go on counting
    /// against the budget until [`Outbox::completed`] reports them written.
    pub fn take_batch(&mut self, max_bytes: usize) -> Vec<Bytes> {
        let mut batch = Vec::new();
        let mut batch_bytes = 0;
        while let Some(front) = self.queue.front() {
            let fits = batch_bytes + front.len() <= max_bytes;
            if batch.len() == OUTBOX_BATCH_FRAMES_MAX || (!batch.is_empty() && !fits) {
                break;
            }
            let frame = self.queue.pop_front().expect("the front was just seen");
            batch_bytes += frame.len();
            batch.push(frame);
        }
        self.queued_bytes -= batch_bytes;
        self.in_flight_bytes += batch_bytes;
        batch
    }

    /// Reports `bytes` of the taken frames written to the socket; they stop counting against
    /// the budget. A failed write needs no report: the connection ends with it.
    pub fn completed(&mut self, bytes: usize) {
        assert!(
            bytes <= self.in_flight_bytes,
            "completed {bytes} bytes, but only {} were handed out",
            self.in_flight_bytes
        );
        self.in_flight_bytes -= bytes;
    }

    /// Whether no frame waits to be taken (a write may still be in flight).
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Bytes waiting to be taken.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Bytes taken whose write has not completed.
    pub fn in_flight_bytes(&self) -> usize {
        self.in_flight_bytes
    }

    /// Bytes counting against the budget: waiting plus being written.
    pub fn pending_bytes(&self) -> usize {
        self.queued_bytes + self.in_flight_bytes
    }

    /// Whether a close frame was queued.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// The budget in bytes.
    pub fn bytes_max(&self) -> usize {
        self.bytes_max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize, fill: u8) -> Bytes {
        Bytes::from(vec![fill; len])
    }

    #[test]
    fn the_budget_admits_exactly_its_size_and_not_one_byte_more() {
        let mut out = Outbox::new(10);
        assert_eq!(out.push(frame(4, 1)), Ok(()));
        assert_eq!(out.push(frame(6, 2)), Ok(()));
        assert_eq!(out.pending_bytes(), 10);
        assert_eq!(out.push(frame(1, 3)), Err(SlowConsumer));
        // A refused frame leaves the outbox as it was.
        assert_eq!(out.queued_bytes(), 10);
        assert_eq!(out.take_batch(usize::MAX), [frame(4, 1), frame(6, 2)]);

        let mut out = Outbox::new(10);
        assert_eq!(out.push(frame(11, 1)), Err(SlowConsumer));
        assert!(out.is_empty());
        assert_eq!(out.push(frame(10, 1)), Ok(()));
    }

    #[test]
    fn bytes_being_written_count_until_completed() {
        let mut out = Outbox::new(10);
        out.push(frame(8, 1)).unwrap();
        assert_eq!(out.take_batch(usize::MAX).len(), 1);
        assert!(out.is_empty());
        assert_eq!((out.queued_bytes(), out.in_flight_bytes()), (0, 8));
        assert_eq!(out.push(frame(3, 2)), Err(SlowConsumer));
        assert_eq!(out.push(frame(2, 2)), Ok(()));
        out.completed(5);
        assert_eq!(out.pending_bytes(), 5);
        out.completed(3);
        assert_eq!(out.push(frame(8, 3)), Ok(()));
        assert_eq!(out.pending_bytes(), 10);
    }

    #[test]
    #[should_panic(expected = "only 0 were handed out")]
    fn completing_more_than_was_taken_is_a_bug() {
        Outbox::new(10).completed(1);
    }

    #[test]
    fn batches_keep_the_order_and_respect_the_write_size() {
        let mut out = Outbox::new(100);
        for (i, len) in [3, 4, 5, 20, 1].into_iter().enumerate() {
            out.push(frame(len, i as u8)).unwrap();
        }
        // 3 + 4 fit in 8; 5 would not.
        assert_eq!(out.take_batch(8), [frame(3, 0), frame(4, 1)]);
        // A frame larger than the write size still goes, alone.
        assert_eq!(out.take_batch(8), [frame(5, 2)]);
        assert_eq!(out.take_batch(8), [frame(20, 3)]);
        assert_eq!(out.take_batch(8), [frame(1, 4)]);
        assert_eq!(out.take_batch(8), Vec::<Bytes>::new());
        assert_eq!(out.in_flight_bytes(), 33);
        // Exactly at the write size is taken whole.
        out.push(frame(4, 5)).unwrap();
        out.push(frame(4, 6)).unwrap();
        assert_eq!(out.take_batch(8).len(), 2);
    }

    #[test]
    fn a_batch_holds_at_most_iov_max_frames() {
        let mut out = Outbox::new(10_000);
        for _ in 0..OUTBOX_BATCH_FRAMES_MAX + 5 {
            out.push(frame(1, 0)).unwrap();
        }
        assert_eq!(out.take_batch(usize::MAX).len(), OUTBOX_BATCH_FRAMES_MAX);
        assert_eq!(out.take_batch(usize::MAX).len(), 5);
    }

    #[test]
    fn frames_are_shared_not_copied() {
        let shared = frame(16, 7);
        let mut a = Outbox::new(100);
        let mut b = Outbox::new(100);
        a.push(shared.clone()).unwrap();
        b.push(shared.clone()).unwrap();
        assert_eq!(a.take_batch(100)[0].as_ptr(), shared.as_ptr());
        assert_eq!(b.take_batch(100)[0].as_ptr(), shared.as_ptr());
    }

    #[test]
    fn empty_frames_are_ignored() {
        let mut out = Outbox::new(0);
        assert_eq!(out.push(Bytes::new()), Ok(()));
        assert!(out.is_empty());
    }

    #[test]
    fn a_close_replaces_what_waits_and_ends_the_queue() {
        let mut out = Outbox::new(10);
        out.push(frame(6, 1)).unwrap();
        assert_eq!(out.take_batch(100).len(), 1);
        out.push(frame(4, 2)).unwrap();
        assert_eq!(out.push(frame(1, 3)), Err(SlowConsumer));
        out.close_with(frame(15, 9));
        assert!(out.is_closing());
        // The close frame is admitted past the budget; the waiting frame is gone.
        assert_eq!((out.queued_bytes(), out.in_flight_bytes()), (15, 6));
        assert_eq!(out.push(frame(1, 4)), Ok(()));
        out.close_with(frame(2, 8));
        assert_eq!(out.take_batch(100), [frame(15, 9)]);
        assert!(out.is_empty());
        out.completed(21);
        assert_eq!(out.pending_bytes(), 0);
    }
}
