//! Start-up with each storage configuration: the embedded store is created in `--data-dir`
//! and locked to one process; a network backend that does not answer within `--store-wait`
//! stops the server with the reason (and never the password).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::Server;

fn ringchat(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ringchat"))
        .args(["--listen", "127.0.0.1:0", "--threads", "1"])
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run ringchat")
}

#[test]
fn embedded_store_is_created_and_locked_to_one_process() {
    let server = Server::start("epoll", &[]);
    let db = server.data_dir.path().join("ringchat.sqlite3");
    assert!(db.exists(), "{} missing", db.display());
    let data_dir = server.data_dir.path().to_str().unwrap();
    let started = Instant::now();
    let second = ringchat(&["--data-dir", data_dir, "--io", "epoll"]);
    assert!(
        !second.status.success(),
        "a second process opened the same store"
    );
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("storage"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn unreachable_mysql_stops_start_up_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    // Port 1 on loopback: connection refused at once.
    let started = Instant::now();
    let out = ringchat(&[
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--mysql",
        "mysql://servertech_user:s3cr3t-pw@127.0.0.1:1/servertech_chat",
        "--store-wait",
        "500ms",
    ]);
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("storage did not answer"), "{stderr}");
    assert!(stderr.contains("MySQL unavailable"), "{stderr}");
    assert!(
        !stderr.contains("s3cr3t-pw"),
        "the password was printed: {stderr}"
    );
    assert!(
        took >= Duration::from_millis(500),
        "gave up before --store-wait: {took:?}"
    );
    assert!(took < Duration::from_secs(8), "took {took:?}");
}

#[test]
fn unreachable_redis_stops_start_up_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let out = ringchat(&[
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--redis",
        "redis://:hunter2-pw@127.0.0.1:1",
        "--store-wait",
        "300ms",
        "--redis-timeout",
        "200ms",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("storage did not answer"), "{stderr}");
    assert!(stderr.contains("Redis unavailable"), "{stderr}");
    assert!(
        !stderr.contains("hunter2-pw"),
        "the password was printed: {stderr}"
    );
}

#[test]
fn bad_store_urls_are_refused_before_anything_starts() {
    for (flag, url) in [
        ("--mysql", "mysql://no-database@127.0.0.1:3306"),
        ("--redis", "http://127.0.0.1:6379"),
        ("--redis", "redis://127.0.0.1:notaport"),
    ] {
        let out = ringchat(&[flag, url]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {url}: {stderr}");
        assert!(stderr.contains(flag), "{flag} {url}: {stderr}");
    }
}
