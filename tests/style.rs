//! Style rules from shared/STYLE.md that a machine can check: `src/proto` stays sans-I/O and
//! free of `unsafe`, `unsafe` appears only under `src/rt` and each block says why it is sound,
//! and every source file opens with a `//!` doc comment.

use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Code lines only: comments are allowed to name what the code must not use.
fn code_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim_start)
        .filter(|l| !l.starts_with("//"))
}

#[test]
fn proto_is_sans_io() {
    let forbidden = [
        "crate::rt",
        "crate::server",
        "crate::store",
        "tokio",
        "tokio_uring",
        "std::net",
        "std::fs",
        "std::thread",
        "std::time::Instant",
        "std::time::SystemTime",
        "Instant::now",
        "SystemTime::now",
        "unsafe",
    ];
    let files = rust_files(&src().join("proto"));
    assert!(!files.is_empty());
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        for line in code_lines(&text) {
            for word in forbidden {
                assert!(
                    !line.contains(word),
                    "{} uses `{word}`: {line}",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn unsafe_lives_in_rt_with_a_safety_comment() {
    for file in rust_files(&src()) {
        let text = fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") || !code.contains("unsafe ") && !code.contains("unsafe{") {
                continue;
            }
            assert!(
                file.starts_with(src().join("rt")),
                "unsafe outside src/rt: {}:{}",
                file.display(),
                i + 1
            );
            let window = &lines[i.saturating_sub(4)..=i];
            assert!(
                window.iter().any(|l| l.contains("SAFETY:")),
                "unsafe without a `// SAFETY:` comment just above: {}:{}",
                file.display(),
                i + 1
            );
        }
    }
}

#[test]
fn every_file_has_module_docs() {
    let roots = [src(), Path::new(env!("CARGO_MANIFEST_DIR")).join("tests")];
    for root in roots {
        for file in rust_files(&root) {
            let text = fs::read_to_string(&file).unwrap();
            assert!(
                text.starts_with("//!"),
                "{} must start with a `//!` doc comment",
                file.display()
            );
        }
    }
}
