//! Counters for `GET /metrics`, in the Prometheus text exposition format (version 0.0.4).
//!
//! Each core writes only its own [`CoreMetrics`] (relaxed atomics, no lock, cache-line aligned
//! so cores never share a line); any core may read them all to render the page. Values are
//! monotonic counters except the gauges (`open_connections`, `line_open`, `chat_connections`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// One core's counters.
#[derive(Default)]
#[repr(align(128))]
pub struct CoreMetrics {
    pub open_connections: AtomicU64,
    pub accepted_connections: AtomicU64,
    pub refused_connections: AtomicU64,
    /// Responses by status class: index 0 is 1xx … index 4 is 5xx.
    pub responses_by_class: [AtomicU64; 5],
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Socket writes by WebSocket connections, and the data frames they carried: their ratio
    /// is how many frames a fan-out merges per kernel send.
    pub ws_writes: AtomicU64,
    pub ws_frames_out: AtomicU64,
    /// Line-port connections open now, and those cut as slow consumers.
    pub line_open: AtomicU64,
    pub line_slow_consumers: AtomicU64,
    /// Chat connections (WebSocket after its session check, line port) registered with the
    /// core's rooms now: each holds an entry in the hub and its room subscriptions, so this
    /// coming back to where it was is the check that connections leave nothing behind.
    pub chat_connections: AtomicU64,
    /// WebSocket connections closed with 1008 because they did not read.
    pub ws_slow_consumers: AtomicU64,
}

impl CoreMetrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn response(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        Self::add(&self.responses_by_class[class], 1);
    }

    pub fn connection_opened(&self) {
        Self::add(&self.accepted_connections, 1);
        Self::add(&self.open_connections, 1);
    }

    pub fn connection_closed(&self) {
        self.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Renders every core's counters, labelled by core, plus a total per metric.
pub fn render(cores: &[CoreMetrics], out: &mut String) {
    type Field = fn(&CoreMetrics) -> &AtomicU64;
    let simple: [(&str, &str, &str, Field); 11] = [
        (
            "ringchat_open_connections",
            "gauge",
            "Connections open now.",
            |m| &m.open_connections,
        ),
        (
            "ringchat_accepted_connections_total",
            "counter",
            "Connections accepted.",
            |m| &m.accepted_connections,
        ),
        (
            "ringchat_refused_connections_total",
            "counter",
            "Connections refused at the per-core limit.",
            |m| &m.refused_connections,
        ),
        (
            "ringchat_received_bytes_total",
            "counter",
            "Bytes read from clients.",
            |m| &m.bytes_in,
        ),
        (
            "ringchat_sent_bytes_total",
            "counter",
            "Bytes written to clients.",
            |m| &m.bytes_out,
        ),
        (
            "ringchat_websocket_writes_total",
            "counter",
            "Socket writes by WebSocket connections (each may carry several frames).",
            |m| &m.ws_writes,
        ),
        (
            "ringchat_websocket_frames_sent_total",
            "counter",
            "WebSocket data frames sent.",
            |m| &m.ws_frames_out,
        ),
        (
            "ringchat_line_open_connections",
            "gauge",
            "Line-port (telnet/netcat) connections open now.",
            |m| &m.line_open,
        ),
        (
            "ringchat_line_slow_consumers_total",
            "counter",
            "Line-port connections cut because they did not read.",
            |m| &m.line_slow_consumers,
        ),
        (
            "ringchat_chat_connections",
            "gauge",
            "Chat connections (WebSocket and line port) registered in the rooms now.",
            |m| &m.chat_connections,
        ),
        (
            "ringchat_websocket_slow_consumers_total",
            "counter",
            "WebSocket connections closed with 1008 because they did not read.",
            |m| &m.ws_slow_consumers,
        ),
    ];
    for (name, kind, help, field) in simple {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        let mut total = 0;
        for (core, m) in cores.iter().enumerate() {
            let v = field(m).load(Ordering::Relaxed);
            total += v;
            let _ = writeln!(out, "{name}{{core=\"{core}\"}} {v}");
        }
        let _ = writeln!(out, "{name}{{core=\"all\"}} {total}");
    }
    let name = "ringchat_http_responses_total";
    let _ = writeln!(
        out,
        "# HELP {name} HTTP responses by status class.\n# TYPE {name} counter"
    );
    for class in 0..5 {
        let mut total = 0;
        for (core, m) in cores.iter().enumerate() {
            let v = m.responses_by_class[class].load(Ordering::Relaxed);
            total += v;
            let _ = writeln!(
                out,
                "{name}{{core=\"{core}\",class=\"{}xx\"}} {v}",
                class + 1
            );
        }
        let _ = writeln!(
            out,
            "{name}{{core=\"all\",class=\"{}xx\"}} {total}",
            class + 1
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_per_core_and_total() {
        let cores = [CoreMetrics::default(), CoreMetrics::default()];
        cores[0].connection_opened();
        cores[1].connection_opened();
        cores[1].connection_opened();
        cores[1].connection_closed();
        cores[0].response(200);
        cores[1].response(404);
        cores[1].response(503);
        let mut out = String::new();
        render(&cores, &mut out);
        assert!(out.contains("ringchat_accepted_connections_total{core=\"0\"} 1\n"));
        assert!(out.contains("ringchat_accepted_connections_total{core=\"all\"} 3\n"));
        assert!(out.contains("ringchat_open_connections{core=\"1\"} 1\n"));
        assert!(out.contains("ringchat_http_responses_total{core=\"all\",class=\"2xx\"} 1\n"));
        assert!(out.contains("ringchat_http_responses_total{core=\"1\",class=\"4xx\"} 1\n"));
        assert!(out.contains("ringchat_http_responses_total{core=\"all\",class=\"5xx\"} 1\n"));
        assert!(out.contains("# TYPE ringchat_open_connections gauge\n"));
        assert!(out.contains("# TYPE ringchat_chat_connections gauge\n"));
        assert!(out.contains("ringchat_websocket_slow_consumers_total{core=\"all\"} 0\n"));
    }
}
