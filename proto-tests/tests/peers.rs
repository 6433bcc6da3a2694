//! The peer harness itself: each real server starts, answers, survives kill -9 with its data,
//! and is set up like the reference deployment.

use ringchat_proto_tests::{MariaDb, Redis};

#[test]
fn redis_starts_keeps_appendonly_data_across_kill9() {
    let mut redis = Redis::start();
    assert_eq!(redis.raw("PING"), b"+PONG\r\n");
    assert!(redis.raw("XADD room * payload x").starts_with(b"$"));
    redis.kill9();
    redis.restart();
    assert_eq!(
        redis.raw("XLEN room"),
        b":1\r\n",
        "appendonly kept the entry"
    );
}

#[test]
fn mariadb_starts_with_the_reference_user_and_database() {
    let db = MariaDb::start();
    let version = db.root_sql("SELECT VERSION()");
    assert!(version.contains("MariaDB"), "{version}");
    let grants = db.root_sql(&format!("SHOW GRANTS FOR '{}'@'%'", MariaDb::USER));
    assert!(grants.contains(MariaDb::DATABASE), "{grants}");
    assert!(db.url().starts_with("mysql://servertech_user:"));
}
