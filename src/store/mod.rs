//! Persistence behind one interface: Redis + MySQL for production, SQLite embedded by default.
//!
//! Empty until the storage issue lands; the HTTP foundation keeps no state that needs storing.
