//! Accounts: the pure pieces that the REST endpoints `POST /api/create-account` and
//! `POST /api/login` are built on (shared/spec/compat.md, "HTTP" and "MySQL data model").
//!
//! - [`validate`]: parsing and validating the two request bodies in the reference's order, with
//!   the reference's `BAD_REQUEST` messages ([`Invalid::message`]), and its email grammar.
//! - [`password`]: PHC password hashes: new ones in argon2id ([`hash_argon2id`]), verification
//!   of argon2id and of the reference's scrypt hashes ([`verify`], which also says when a
//!   stored hash should be upgraded), and [`dummy_verify`] for unknown emails.
//! - [`ratelimit`]: token buckets per client address and per email, with bounded memory.
//!
//! The REST layer's flow, for orientation: validate the body here; on create-account, hash the
//! password; on login, look the user up in the store and [`verify`] (or [`dummy_verify`] when
//! the email is unknown), storing a fresh hash when `needs_upgrade`. Hashing and verifying are
//! CPU-heavy and run on [`crate::rt::Workers`], never on a core's event loop.
//!
//! Not here: I/O of any kind, users and sessions themselves (they live in [`crate::store`]),
//! session tokens and cookies, HTTP responses (`crate::server::api` builds those).

pub mod password;
pub mod ratelimit;
pub mod validate;

pub use self::password::{PasswordError, Verified, dummy_verify, hash_argon2id, verify};
pub use self::validate::{
    CreateAccount, Invalid, Login, is_valid_email, parse_create_account, parse_login,
};
