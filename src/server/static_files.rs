//! Static files (the web client) from one root directory, served from memory.
//!
//! Each core keeps its own cache (no lock shared between cores). A file up to
//! [`STATIC_CACHE_FILE_BYTES_MAX`] is read on its first request and kept, with its response
//! headers pre-encoded, so a hit costs no disk I/O and no formatting. **When the cache is
//! refreshed:** a cached entry is checked against the file's size and modification time at most
//! once every [`STATIC_REVALIDATE_MS`] per core (one `stat`), and re-read when either changed;
//! a deleted file is evicted at that check. Larger files, or any file once the core's cache
//! holds [`STATIC_CACHE_BYTES_MAX`], are read from disk on each request.
//!
//! Path rules follow the BoostServerTech client (see shared/spec/compat.md): `/` serves
//! `index.html`, a last segment without an extension gets `.html`. Nothing outside the root is
//! ever served: `..` segments (percent-encoded or not), NUL and backslashes are 400; symlinks
//! that lead outside the root and hidden files (`.name`, except `.well-known`) are 404.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::response::{Body, Response};
use crate::proto::http1::RequestHead;

/// Largest file kept in memory.
pub const STATIC_CACHE_FILE_BYTES_MAX: u64 = 1024 * 1024;
/// Memory one core's static cache may hold.
pub const STATIC_CACHE_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// How long a cached entry is trusted before its file is checked again.
pub const STATIC_REVALIDATE_MS: u64 = 1000;
/// Largest file served at all (bigger ones are 404: this is a chat client, not a file host).
pub const STATIC_FILE_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// A request path mapped to a file path relative to the root, or why it cannot be.
pub fn resolve_path(target: &str) -> Result<String, &'static str> {
    // absolute-form (RFC 9112 §3.2.2): drop the scheme and authority.
    let path = crate::proto::http1::origin_form(target);
    let path = path.split(['?', '#']).next().unwrap_or("");
    if !path.starts_with('/') {
        return Err("request target must be an absolute path");
    }
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(path).collect();
    if decoded.contains(&0) {
        return Err("NUL in path");
    }
    if decoded.contains(&b'\\') {
        return Err("backslash in path");
    }
    let decoded = String::from_utf8(decoded).map_err(|_| "path is not UTF-8")?;
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Err("path escapes the root"),
            s => segments.push(s),
        }
    }
    let last_is_dir = decoded.ends_with('/') || segments.is_empty();
    let mut rel = segments.join("/");
    if last_is_dir {
        if !rel.is_empty() {
            rel.push('/');
        }
        rel.push_str("index.html");
    } else if !segments.last().is_some_and(|s| s.contains('.')) {
        rel.push_str(".html");
    }
    Ok(rel)
}

/// The Content-Type for a file name, by extension.
pub fn mime_type(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "xml" => "application/xml; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "wasm" => "application/wasm",
        "webmanifest" => "application/manifest+json",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

fn cache_control(rel: &str) -> &'static str {
    if rel.starts_with("_next/static/") {
        // Content-hashed build output: the name changes whenever the bytes do.
        "public, max-age=31536000, immutable"
    } else if rel.ends_with(".html") {
        // Pages are revalidated every time; the ETag makes that a 304.
        "no-cache"
    } else {
        "public, max-age=300"
    }
}

/// FNV-1a, 64 bits: a stable content hash for strong ETags (stable across restarts and
/// instances, unlike std's randomly seeded hasher).
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

struct Entry {
    /// Pre-encoded Content-Type, ETag, Last-Modified and Cache-Control lines.
    headers: Bytes,
    etag: String,
    modified: SystemTime,
    len: u64,
    /// The bytes, for cached entries; `None` for files read per request.
    body: Option<Bytes>,
    checked_at: Cell<Instant>,
}

impl Entry {
    fn load(
        path: &Path,
        rel: &str,
        meta: &fs::Metadata,
        cache: bool,
        now: Instant,
    ) -> std::io::Result<Entry> {
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let len = meta.len();
        let (body, etag) = if cache {
            let bytes = fs::read(path)?;
            let etag = format!("\"{:016x}-{:x}\"", fnv1a64(&bytes), bytes.len());
            (Some(Bytes::from(bytes)), etag)
        } else {
            let nanos = modified
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            (None, format!("W/\"{nanos:x}-{len:x}\""))
        };
        let len = body.as_ref().map_or(len, |b| b.len() as u64);
        let headers = format!(
            "Content-Type: {}\r\nETag: {}\r\nLast-Modified: {}\r\nCache-Control: {}\r\nX-Content-Type-Options: nosniff\r\n",
            mime_type(rel),
            etag,
            httpdate::fmt_http_date(modified),
            cache_control(rel),
        );
        Ok(Entry {
            headers: Bytes::from(headers),
            etag,
            modified,
            len,
            body,
            checked_at: Cell::new(now),
        })
    }

    fn same_file(&self, meta: &fs::Metadata) -> bool {
        meta.len() == self.len && meta.modified().ok() == Some(self.modified)
    }
}

/// One core's view of the static root.
pub struct StaticFiles {
    root: Option<PathBuf>,
    cache: RefCell<HashMap<String, Rc<Entry>>>,
    cached_bytes: Cell<u64>,
}

impl StaticFiles {
    /// `root` is canonicalized once; a missing root serves 404 for everything.
    pub fn new(root: &Path) -> StaticFiles {
        StaticFiles {
            root: fs::canonicalize(root).ok(),
            cache: RefCell::new(HashMap::new()),
            cached_bytes: Cell::new(0),
        }
    }

    pub fn root_exists(&self) -> bool {
        self.root.is_some()
    }

    /// Answers a GET or HEAD for a static file.
    pub fn respond(&self, head: &RequestHead<'_>, now: Instant) -> Response {
        let is_head = head.method == "HEAD";
        if head.method != "GET" && !is_head {
            return method_not_allowed();
        }
        let rel = match resolve_path(head.target) {
            Ok(rel) => rel,
            Err(why) => return Response::json_error(400, "BAD_REQUEST", why),
        };
        let Some((entry, path)) = self.lookup(&rel, now) else {
            return Response::json_error(404, "NOT_FOUND", "no such file");
        };
        if not_modified(head, &entry) {
            let mut r = Response::new(304, entry.headers.clone(), Body::Empty);
            r.omit_body = true;
            return r;
        }
        if is_head {
            // The same headers as GET, Content-Length included, and no body.
            let mut r = Response::new(200, entry.headers.clone(), Body::Empty);
            r.content_length = Some(entry.len);
            r.omit_body = true;
            return r;
        }
        let body = match &entry.body {
            Some(b) => Body::Shared(b.clone()),
            None => match read_limited(&path, entry.len) {
                Ok(bytes) => Body::Owned(bytes),
                Err(_) => return Response::json_error(404, "NOT_FOUND", "no such file"),
            },
        };
        Response::new(200, entry.headers.clone(), body)
    }

    fn lookup(&self, rel: &str, now: Instant) -> Option<(Rc<Entry>, PathBuf)> {
        let root = self.root.as_ref()?;
        if rel
            .split('/')
            .any(|s| s.starts_with('.') && s != ".well-known")
        {
            return None;
        }
        let path = root.join(rel);
        let cached = self.cache.borrow().get(rel).cloned();
        if let Some(entry) = &cached
            && now.duration_since(entry.checked_at.get())
                < Duration::from_millis(STATIC_REVALIDATE_MS)
        {
            return Some((entry.clone(), path));
        }
        let meta = fs::metadata(&path).ok();
        if let (Some(entry), Some(meta)) = (&cached, &meta)
            && entry.same_file(meta)
        {
            entry.checked_at.set(now);
            return Some((entry.clone(), path));
        }
        if let Some(old) = cached {
            self.cache.borrow_mut().remove(rel);
            self.cached_bytes
                .set(self.cached_bytes.get() - old.body.as_ref().map_or(0, |b| b.len() as u64));
        }
        let meta = meta?;
        // Symlinks are followed only while they stay inside the root.
        let real = fs::canonicalize(&path).ok()?;
        if !real.starts_with(root) || !meta.is_file() || meta.len() > STATIC_FILE_BYTES_MAX {
            return None;
        }
        let cache = meta.len() <= STATIC_CACHE_FILE_BYTES_MAX
            && self.cached_bytes.get() + meta.len() <= STATIC_CACHE_BYTES_MAX;
        let entry = Rc::new(Entry::load(&real, rel, &meta, cache, now).ok()?);
        if let Some(body) = &entry.body {
            self.cached_bytes
                .set(self.cached_bytes.get() + body.len() as u64);
            self.cache
                .borrow_mut()
                .insert(rel.to_string(), entry.clone());
        }
        Some((entry, real))
    }
}

fn read_limited(path: &Path, len: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(len as usize);
    fs::File::open(path)?.take(len).read_to_end(&mut bytes)?;
    Ok(bytes)
}

pub fn method_not_allowed() -> Response {
    let mut r = Response::json_error(
        405,
        "METHOD_NOT_ALLOWED",
        "only GET and HEAD are allowed here",
    );
    r.headers = Bytes::from_static(b"Content-Type: application/json\r\nAllow: GET, HEAD\r\n");
    r
}

/// RFC 9110 §13.1.2: If-None-Match (weak comparison, any of a list, or `*`) decides when
/// present; otherwise §13.1.3 If-Modified-Since at one-second resolution.
fn not_modified(head: &RequestHead<'_>, entry: &Entry) -> bool {
    if let Some(inm) = head.header("if-none-match") {
        let Ok(inm) = std::str::from_utf8(inm) else {
            return false;
        };
        let ours = entry.etag.trim_start_matches("W/");
        return inm
            .split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || tag.trim_start_matches("W/") == ours);
    }
    if let Some(ims) = head.header("if-modified-since")
        && let Ok(ims) = std::str::from_utf8(ims)
        && let Ok(since) = httpdate::parse_http_date(ims)
    {
        let modified = entry
            .modified
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let since = since
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        return modified <= since;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_paths_like_the_reference_client_expects() {
        let table: &[(&str, Result<&str, ()>)] = &[
            ("/", Ok("index.html")),
            ("/index.html", Ok("index.html")),
            ("/chat", Ok("chat.html")),
            ("/login?next=/chat", Ok("login.html")),
            ("/docs/", Ok("docs/index.html")),
            ("//a//b.css", Ok("a/b.css")),
            ("/./a.js", Ok("a.js")),
            ("/caf%C3%A9.txt", Ok("café.txt")),
            ("/_next/static/x.js#frag", Ok("_next/static/x.js")),
            ("http://example.com/chat", Ok("chat.html")),
            ("/../etc/passwd", Err(())),
            ("/a/../../etc/passwd", Err(())),
            ("/%2e%2e/etc/passwd", Err(())),
            ("/%2E%2E%2Fetc%2Fpasswd", Err(())),
            ("/..%2f..%2fetc/passwd", Err(())),
            ("/a%00.html", Err(())),
            ("/a%5c..%5cb", Err(())),
            ("/%ff.html", Err(())),
            ("*", Err(())),
            ("index.html", Err(())),
        ];
        for (target, want) in table {
            let got = resolve_path(target);
            match want {
                Ok(w) => assert_eq!(got.as_deref(), Ok(*w), "{target}"),
                Err(()) => assert!(got.is_err(), "{target} should be refused, got {got:?}"),
            }
        }
    }

    #[test]
    fn mime_types_cover_the_web_client() {
        assert_eq!(mime_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(mime_type("a.JS"), "text/javascript; charset=utf-8");
        assert_eq!(mime_type("a.woff2"), "font/woff2");
        assert_eq!(mime_type("a.wasm"), "application/wasm");
        assert_eq!(mime_type("a.map"), "application/json");
        assert_eq!(mime_type("README"), "application/octet-stream");
    }

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
