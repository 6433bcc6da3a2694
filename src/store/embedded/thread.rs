//! The storage thread: takes requests off the queue in batches, runs each batch in one
//! transaction, and replies only after it committed (group commit); between batches it sweeps
//! expired sessions.
//!
//! This is the only thread that touches the database. It does not decide what to store or how
//! (that is [`super::db`]); it decides when: which requests share a transaction, when replies
//! leave, when to sweep, when to stop.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::db::Db;
use super::{
    EmbeddedOptions, GROUP_COMMIT_MESSAGES_MAX, GROUP_COMMIT_REQUESTS_MAX, Op, Reply, Request,
    SESSION_SWEEP_ROWS_MAX, ThreadResult,
};
use crate::store::StoreError;

/// A reply held back until its batch commits: called with `None` after the commit, or with the
/// commit's error, which then replaces whatever the request had found.
type Finish = Box<dyn FnOnce(Option<&StoreError>)>;

fn finish<T: 'static>(reply: Reply<T>, result: Result<T, StoreError>) -> Finish {
    Box::new(move |commit: Option<&StoreError>| {
        let answer = match commit {
            None => result,
            Some(e) => Err(e.clone()),
        };
        // The caller may have stopped waiting; the work is done either way.
        let _ = reply.send(answer);
    })
}

/// Serves `requests` until every handle is gone (after the queued work) or a close request
/// arrives; then checkpoints and closes the database.
pub(super) fn run(
    mut db: Db,
    requests: Receiver<Request>,
    options: EmbeddedOptions,
) -> ThreadResult {
    let sweep_interval = Duration::from_millis(options.session_sweep_interval_ms);
    let mut next_sweep = Instant::now() + sweep_interval;
    let mut batch: Vec<Request> = Vec::with_capacity(GROUP_COMMIT_REQUESTS_MAX);
    let mut finishes: Vec<Finish> = Vec::with_capacity(GROUP_COMMIT_REQUESTS_MAX);
    loop {
        match requests.recv_timeout(next_sweep.saturating_duration_since(Instant::now())) {
            Ok(first) => {
                let mut messages = first.messages();
                batch.push(first);
                while batch.len() < GROUP_COMMIT_REQUESTS_MAX
                    && messages < GROUP_COMMIT_MESSAGES_MAX
                {
                    let Ok(more) = requests.try_recv() else { break };
                    messages += more.messages();
                    batch.push(more);
                }
                let closing = run_batch(&mut db, &mut batch, &mut finishes);
                if closing {
                    break;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if Instant::now() >= next_sweep {
            next_sweep = match sweep(&mut db) {
                // A full sweep leaves more behind: go on at the next idle moment.
                Ok(deleted) if deleted >= SESSION_SWEEP_ROWS_MAX => Instant::now(),
                Ok(_) => Instant::now() + sweep_interval,
                Err(e) => {
                    tracing::warn!("embedded store: session sweep failed: {e}");
                    Instant::now() + sweep_interval
                }
            };
        }
    }
    // Requests still queued after a close are dropped with the receiver; their callers see
    // their reply channel close and get `Unavailable`.
    drop(requests);
    db.close()
}

/// Runs one batch in one transaction; replies after the commit. True when a close request was
/// in it.
fn run_batch(db: &mut Db, batch: &mut Vec<Request>, finishes: &mut Vec<Finish>) -> bool {
    let now_ms = now_ms();
    let mut closing = false;
    // Set when the transaction cannot go on; every request of the batch then gets this error,
    // including those that ran, since their writes were rolled back with it.
    let mut failed: Option<StoreError> = db.begin().err();
    for request in batch.drain(..) {
        match request {
            Request::Close => closing = true,
            Request::Hold { held, release } => {
                let _ = held.send(Ok(()));
                // Returns once the guard is dropped (the sender disconnects).
                let _ = release.recv();
            }
            Request::Op(op) => match &failed {
                Some(e) => op.refuse(e.clone()),
                None => {
                    finishes.push(op.run(db, now_ms));
                    if !db.in_transaction() {
                        failed = Some(super::unavailable(
                            "the transaction was rolled back after an I/O error",
                        ));
                    }
                }
            },
        }
    }
    if failed.is_none() {
        failed = db.commit().err();
    }
    if failed.is_some() {
        db.rollback();
    }
    for finish in finishes.drain(..) {
        finish(failed.as_ref());
    }
    closing
}

/// Deletes a bounded number of expired sessions in a transaction of its own.
fn sweep(db: &mut Db) -> Result<usize, StoreError> {
    db.begin()?;
    match db.sweep_sessions(now_ms(), SESSION_SWEEP_ROWS_MAX) {
        Ok(deleted) => db.commit().map(|()| deleted).inspect_err(|_| db.rollback()),
        Err(e) => {
            db.rollback();
            Err(e)
        }
    }
}

/// Wall-clock milliseconds since the epoch: sessions expire by the wall clock, like Redis keys.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Request {
    /// Messages this request appends, to bound a batch.
    fn messages(&self) -> usize {
        match self {
            Request::Op(Op::AppendMessages { messages, .. }) => messages.len(),
            _ => 0,
        }
    }
}

impl Op {
    /// Runs the request in its own savepoint; the reply waits for the commit.
    fn run(self, db: &mut Db, now_ms: u64) -> Finish {
        match self {
            Op::CreateUser { new, reply } => finish(reply, db.request(|db| db.create_user(&new))),
            Op::CredentialsByEmail { email, reply } => {
                finish(reply, db.request(|db| db.credentials_by_email(&email)))
            }
            Op::UserById { id, reply } => finish(reply, db.request(|db| db.user_by_id(id))),
            Op::UsersByIds { ids, reply } => finish(reply, db.request(|db| db.users_by_ids(&ids))),
            Op::SetPasswordHash {
                id,
                password_hash,
                reply,
            } => finish(
                reply,
                db.request(|db| db.set_password_hash(id, &password_hash)),
            ),
            Op::CreateSession {
                sid,
                user_id,
                ttl_s,
                reply,
            } => finish(
                reply,
                db.request(|db| db.create_session(&sid, user_id, ttl_s, now_ms)),
            ),
            Op::SessionUser { sid, reply } => {
                finish(reply, db.request(|db| db.session_user(&sid, now_ms)))
            }
            Op::DeleteSession { sid, reply } => {
                finish(reply, db.request(|db| db.delete_session(&sid)))
            }
            Op::AppendMessages {
                room,
                messages,
                reply,
            } => finish(reply, db.request(|db| db.append_messages(&room, &messages))),
            Op::Messages {
                room,
                page,
                count,
                reply,
            } => finish(reply, db.request(|db| db.messages(&room, page, count))),
            Op::SessionRows { reply } => finish(reply, db.request(|db| db.session_rows())),
        }
    }

    /// Answers with `error` without running.
    fn refuse(self, error: StoreError) {
        fn send<T>(reply: Reply<T>, error: StoreError) {
            let _ = reply.send(Err(error));
        }
        match self {
            Op::CreateUser { reply, .. } => send(reply, error),
            Op::CredentialsByEmail { reply, .. } => send(reply, error),
            Op::UserById { reply, .. } => send(reply, error),
            Op::UsersByIds { reply, .. } => send(reply, error),
            Op::SetPasswordHash { reply, .. } => send(reply, error),
            Op::CreateSession { reply, .. } => send(reply, error),
            Op::SessionUser { reply, .. } => send(reply, error),
            Op::DeleteSession { reply, .. } => send(reply, error),
            Op::AppendMessages { reply, .. } => send(reply, error),
            Op::Messages { reply, .. } => send(reply, error),
            Op::SessionRows { reply, .. } => send(reply, error),
        }
    }
}
