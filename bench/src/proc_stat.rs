//! Parsing `/proc/<pid>/stat` into the CPU time a process has used.
//!
//! BENCH.md asks every benchmark to report work per server CPU-second, read as `utime + stime`
//! before and after the measured window. This module turns one stat line into those two
//! counters (in clock ticks), and `/proc/self/auxv` into the tick rate. It does not read files;
//! `cpu-window` does.
//!
//! The process-level line (`/proc/<pid>/stat`, not `/proc/<pid>/task/<tid>/stat`) already sums
//! every thread of the process, the live ones and the ones that have exited, so one read per
//! process is the whole process. That includes io_uring's kernel workers (`iou-wrk-*`, and
//! `iou-sqp-*` with SQPOLL), which are threads of the process that owns the ring.

use std::fmt;

/// 1-based position of `utime` in proc(5)'s field list for `/proc/<pid>/stat`.
const FIELD_UTIME: usize = 14;
/// 1-based position of `stime`.
const FIELD_STIME: usize = 15;
/// 1-based position of `state`, the first field after `(comm)`.
const FIELD_STATE: usize = 3;

/// CPU time a process has used, in clock ticks (`sysconf(_SC_CLK_TCK)` per second).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTicks {
    /// Time scheduled in user mode.
    pub user: u64,
    /// Time scheduled in kernel mode.
    pub system: u64,
}

impl CpuTicks {
    pub fn total(self) -> u64 {
        self.user + self.system
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatError {
    /// No `)` closing the command name, so the fields after it cannot be located.
    NoCommandEnd,
    /// The line ends before the field with this 1-based number.
    MissingField(usize),
    /// The field with this 1-based number is not an unsigned integer.
    BadNumber(usize),
}

impl fmt::Display for StatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatError::NoCommandEnd => write!(f, "no ')' closing the command name"),
            StatError::MissingField(n) => write!(f, "line ends before field {n}"),
            StatError::BadNumber(n) => write!(f, "field {n} is not an unsigned integer"),
        }
    }
}

impl std::error::Error for StatError {}

/// Reads `utime` and `stime` (fields 14 and 15) from one `/proc/<pid>/stat` line.
///
/// Field 2, `comm`, is the executable name in parentheses and may itself contain spaces and
/// parentheses (a thread can name itself `a) b (c`), so splitting the whole line on spaces is
/// wrong. The kernel writes `comm` unescaped and nothing after it can contain `)`, so the fields
/// are located after the *last* `)` on the line.
pub fn decode_cpu_ticks(line: &str) -> Result<CpuTicks, StatError> {
    let close = line.rfind(')').ok_or(StatError::NoCommandEnd)?;
    // The fields after `(comm)`, the first of which is number FIELD_STATE.
    let mut fields = line[close + 1..].split_ascii_whitespace();
    // Skip state (3) through cmajflt (13).
    for skipped in FIELD_STATE..FIELD_UTIME {
        fields.next().ok_or(StatError::MissingField(skipped))?;
    }
    let user = decode_next_number(&mut fields, FIELD_UTIME)?;
    let system = decode_next_number(&mut fields, FIELD_STIME)?;
    Ok(CpuTicks { user, system })
}

/// Decodes the next field, which is field number `number` (for the error), as a `u64`.
fn decode_next_number<'a>(
    fields: &mut impl Iterator<Item = &'a str>,
    number: usize,
) -> Result<u64, StatError> {
    let text = fields.next().ok_or(StatError::MissingField(number))?;
    text.parse().map_err(|_| StatError::BadNumber(number))
}

/// `AT_CLKTCK` from `<elf.h>`: the auxiliary-vector entry holding the clock-tick rate.
const AT_CLKTCK: usize = 17;
/// `AT_NULL`: the entry that ends the auxiliary vector.
const AT_NULL: usize = 0;

/// Finds the clock-tick rate (`sysconf(_SC_CLK_TCK)`) in the bytes of `/proc/self/auxv`.
///
/// glibc's `sysconf(_SC_CLK_TCK)` returns exactly this auxiliary-vector entry, which the kernel
/// fills with `USER_HZ`; reading it here keeps the bench crate free of libc. The vector is an
/// array of native-endian `(type, value)` pairs of machine words, ended by `AT_NULL`. Returns
/// `None` when there is no such entry (or it is zero), and the caller decides what to assume.
pub fn decode_clock_ticks_per_second(auxv: &[u8]) -> Option<u64> {
    const WORD_BYTES: usize = std::mem::size_of::<usize>();
    let word = |bytes: &[u8]| {
        let array: [u8; WORD_BYTES] = bytes.try_into().expect("chunks_exact gives whole words");
        usize::from_ne_bytes(array)
    };
    for pair in auxv.chunks_exact(2 * WORD_BYTES) {
        let (kind, value) = pair.split_at(WORD_BYTES);
        match word(kind) {
            AT_NULL => return None,
            AT_CLKTCK => return u64::try_from(word(value)).ok().filter(|&hz| hz > 0),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auxv(pairs: &[(usize, usize)]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for (kind, value) in pairs {
            bytes.extend_from_slice(&kind.to_ne_bytes());
            bytes.extend_from_slice(&value.to_ne_bytes());
        }
        bytes
    }

    #[test]
    fn clock_ticks_from_auxv() {
        let vector = auxv(&[(6, 4096), (AT_CLKTCK, 100), (25, 0x7ffc), (AT_NULL, 0)]);
        assert_eq!(decode_clock_ticks_per_second(&vector), Some(100));
        let vector = auxv(&[(AT_CLKTCK, 250), (AT_NULL, 0)]);
        assert_eq!(decode_clock_ticks_per_second(&vector), Some(250));
    }

    #[test]
    fn clock_ticks_missing_zero_or_after_end() {
        assert_eq!(
            decode_clock_ticks_per_second(&auxv(&[(6, 4096), (AT_NULL, 0)])),
            None
        );
        assert_eq!(
            decode_clock_ticks_per_second(&auxv(&[(AT_CLKTCK, 0)])),
            None
        );
        // An entry after AT_NULL is not part of the vector.
        let vector = auxv(&[(AT_NULL, 0), (AT_CLKTCK, 100)]);
        assert_eq!(decode_clock_ticks_per_second(&vector), None);
        assert_eq!(decode_clock_ticks_per_second(&[]), None);
        // A torn trailing pair is ignored, not misread.
        let mut torn = auxv(&[(6, 4096)]);
        torn.extend_from_slice(&AT_CLKTCK.to_ne_bytes());
        assert_eq!(decode_clock_ticks_per_second(&torn), None);
    }

    #[test]
    fn clock_ticks_of_this_process() {
        let bytes = std::fs::read("/proc/self/auxv").expect("Linux has /proc/self/auxv");
        let hz = decode_clock_ticks_per_second(&bytes).expect("the kernel always sets AT_CLKTCK");
        // USER_HZ is 100 on every mainstream architecture; anything outside this range means
        // the vector was misread.
        assert!((1..=10_000).contains(&hz), "implausible tick rate {hz}");
    }

    /// A real line from `cat /proc/self/stat` on Linux 6.x, utime 7 and stime 3.
    const PLAIN: &str = "12345 (cat) R 12300 12345 12300 34816 12345 4194304 96 0 0 0 7 3 0 0 \
        20 0 1 0 987654 5799936 224 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 \
        0 0 0 0 0 0 0 0\n";

    fn line_with_comm(comm: &str, utime: u64, stime: u64) -> String {
        format!(
            "4242 ({comm}) S 1 4242 4242 0 -1 4194560 1024 0 0 0 {utime} {stime} 5 6 20 0 4 0 \
             100 200000 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0"
        )
    }

    #[test]
    fn decodes_a_plain_line() {
        assert_eq!(decode_cpu_ticks(PLAIN), Ok(CpuTicks { user: 7, system: 3 }));
        assert_eq!(decode_cpu_ticks(PLAIN).map(CpuTicks::total), Ok(10));
    }

    #[test]
    fn command_names_with_spaces_and_parentheses() {
        // Each of these would shift the fields if the line were split on spaces or cut at the
        // first ')'.
        let names = [
            "nginx: worker process",
            "a) b (c",
            ")",
            "((",
            ") S 1 2 3 4 5 6 7 8 9 10 11",
            "tokio-runtime-w",
            "",
            "iou-wrk-4242",
        ];
        for name in names {
            let line = line_with_comm(name, 123_456, 789);
            assert_eq!(
                decode_cpu_ticks(&line),
                Ok(CpuTicks {
                    user: 123_456,
                    system: 789
                }),
                "comm {name:?}"
            );
        }
    }

    #[test]
    fn large_counters() {
        let line = line_with_comm("x", u64::MAX - 1, 0);
        assert_eq!(decode_cpu_ticks(&line).map(|t| t.user), Ok(u64::MAX - 1));
    }

    #[test]
    fn rejects_a_line_without_command_end() {
        assert_eq!(
            decode_cpu_ticks("12 (cat R 1 2 3"),
            Err(StatError::NoCommandEnd)
        );
        assert_eq!(decode_cpu_ticks(""), Err(StatError::NoCommandEnd));
    }

    #[test]
    fn rejects_a_truncated_line() {
        // Ends after field 13 (cmajflt): utime is missing.
        let truncated = "1 (init) S 0 1 1 0 -1 4194560 1 2 3 4";
        assert_eq!(
            decode_cpu_ticks(truncated),
            Err(StatError::MissingField(FIELD_UTIME))
        );
        // Ends after utime: stime is missing.
        let truncated = "1 (init) S 0 1 1 0 -1 4194560 1 2 3 4 5";
        assert_eq!(
            decode_cpu_ticks(truncated),
            Err(StatError::MissingField(FIELD_STIME))
        );
        // Ends inside the skipped fields.
        assert_eq!(
            decode_cpu_ticks("1 (init) S 0"),
            Err(StatError::MissingField(5))
        );
    }

    #[test]
    fn rejects_non_numeric_counters() {
        let line = line_with_comm("x", 1, 2).replace(" 1 2 5 6 ", " 1 -2 5 6 ");
        assert_eq!(
            decode_cpu_ticks(&line),
            Err(StatError::BadNumber(FIELD_STIME))
        );
    }

    #[test]
    fn decodes_this_process() {
        // The real file, to catch a kernel whose layout differs from the fixtures.
        let line = std::fs::read_to_string("/proc/self/stat").expect("Linux has /proc/self/stat");
        decode_cpu_ticks(&line).expect("own stat line decodes");
    }
}
