//! Reading a room's history for a client: pages of messages from the store, with their
//! authors' names (one store query for the users of several pages), as the WebSocket's
//! `hello` and `roomHistory` and the line port's `/join` and `/history` show them.
//!
//! A line-port guest's message has no account: it is shown under its stored guest name with the
//! guest mark and user id 0 (`crate::chat::line::guest_user`); an author whose account no
//! longer exists shows as "".

use std::collections::HashMap;

use crate::chat::events::ShownMessage;
use crate::chat::line::guest_user;
use crate::store::{GUEST_USER_ID, MessageId, Store, StoreError, StoredMessage, User, UserId};

/// A page of a room's history, newest first: the newest `count` messages, or those older than
/// `before`; and whether older ones exist (asked of the store only when the page is full, so
/// it is true exactly when there is more).
pub async fn page(
    store: &Store,
    room: &str,
    before: Option<MessageId>,
    count: usize,
) -> Result<(Vec<StoredMessage>, bool), StoreError> {
    let page = match before {
        None => store.newest_messages(room, count).await?,
        Some(id) => store.messages_before(room, id, count).await?,
    };
    let has_more = match page.last() {
        Some(oldest) if page.len() == count => {
            !store.messages_before(room, oldest.id, 1).await?.is_empty()
        }
        _ => false,
    };
    Ok((page, has_more))
}

/// The authors of some messages, by account id and by guest name.
pub struct Authors {
    users: HashMap<UserId, User>,
    guests: HashMap<String, User>,
}

impl Authors {
    /// Looks up the accounts that wrote `messages` (one store query).
    pub async fn of<'a>(
        store: &Store,
        messages: impl Iterator<Item = &'a StoredMessage>,
    ) -> Result<Authors, StoreError> {
        let mut ids = Vec::new();
        let mut guests = HashMap::new();
        for m in messages {
            match &m.guest {
                Some(name) => {
                    guests
                        .entry(name.clone())
                        .or_insert_with(|| guest_user(name));
                }
                None if m.user_id == GUEST_USER_ID => {}
                None => ids.push(m.user_id),
            }
        }
        ids.sort_unstable();
        ids.dedup();
        let found = if ids.is_empty() {
            Vec::new()
        } else {
            store.users_by_ids(&ids).await?
        };
        let mut users: HashMap<UserId, User> = found.into_iter().map(|u| (u.id, u)).collect();
        for id in ids.into_iter().chain([GUEST_USER_ID]) {
            users.entry(id).or_insert_with(|| User {
                id,
                username: String::new(),
            });
        }
        Ok(Authors { users, guests })
    }

    /// `page`'s messages with their authors, in the page's order.
    pub fn shown<'a>(&'a self, page: &'a [StoredMessage]) -> Vec<ShownMessage<'a>> {
        page.iter()
            .map(|m| ShownMessage {
                id: m.id,
                content: &m.content,
                user: match &m.guest {
                    Some(name) => &self.guests[name],
                    None => &self.users[&m.user_id],
                },
                timestamp_ms: m.timestamp_ms,
            })
            .collect()
    }
}
