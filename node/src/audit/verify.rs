//! Offline verification of an audit log's hash chain.
//!
//! Attribution rule: the error names the *first line that fails its own
//! check*. A line fails if it is not newline-terminated, is not a JSON audit
//! record with a well-formed `prev`, or its `prev` differs from the SHA-256 of
//! the line before it (64 zeros for line 1). Changing the content of line `n`
//! (anything but its `prev`) therefore surfaces at line `n + 1`, and the
//! reason names line `n` as the prime suspect; a chain hash cannot tell that
//! apart from lines having been removed or inserted between `n` and `n + 1`,
//! or from line `n + 1`'s own `prev` having been edited, so the reason lists
//! those too. Changing line `n`'s `prev` is reported at line `n` itself.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use super::{hash_line, AuditRecord, ZERO_HASH};

/// Why and where a log failed verification. `line` is 1-based; 0 means the
/// file could not be opened at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct VerifyError {
    pub line: usize,
    pub reason: String,
}

/// Checks one line (without its newline) for form: a JSON object that is an
/// audit record with a `prev` of 64 lowercase hex digits. Returns that `prev`.
pub(super) fn parse_line(line: &[u8]) -> Result<String, String> {
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| format!("bad JSON: {e}"))?;
    let serde_json::Value::Object(mut fields) = value else {
        return Err("bad JSON: not an object".to_owned());
    };
    let prev = match fields.remove("prev") {
        None => return Err("missing prev".to_owned()),
        Some(serde_json::Value::String(prev)) => prev,
        Some(_) => return Err("prev is not a string".to_owned()),
    };
    if prev.len() != 64 || !prev.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(format!(
            "malformed prev {prev:?} (expected 64 lowercase hex digits)"
        ));
    }
    serde_json::from_value::<AuditRecord>(serde_json::Value::Object(fields))
        .map_err(|e| format!("not an audit record: {e}"))?;
    Ok(prev)
}

/// Verifies the hash chain of the whole file at `path`, streaming it line by
/// line. Returns the number of lines, or the first broken line and why (see
/// the module docs for how a broken link is attributed).
///
/// A valid result proves that no line but the last was altered, removed or
/// reordered; it cannot prove that lines were not cut off the end (compare
/// the last line's hash with a separately kept head for that).
pub fn verify_file(path: &Path) -> Result<usize, VerifyError> {
    let file = File::open(path).map_err(|e| VerifyError {
        line: 0,
        reason: format!("cannot open {}: {e}", path.display()),
    })?;
    let mut reader = BufReader::new(file);
    let mut expected = hex::encode(ZERO_HASH);
    let mut line = Vec::new();
    let mut count = 0;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| VerifyError {
                line: count + 1,
                reason: format!("read error: {e}"),
            })?;
        if read == 0 {
            return Ok(count);
        }
        count += 1;
        let fail = |reason: String| VerifyError {
            line: count,
            reason,
        };
        if line.pop() != Some(b'\n') {
            return Err(fail(
                "the line has no trailing newline (truncated write?)".to_owned(),
            ));
        }
        let prev = parse_line(&line).map_err(fail)?;
        if prev != expected {
            return Err(fail(if count == 1 {
                format!(
                    "prev {prev} is not the zero hash expected on the first line \
                     (lines removed from the start, or this line's prev altered)"
                )
            } else {
                let before = count - 1;
                format!(
                    "prev {prev} does not match the hash of line {before} ({expected}): \
                     line {before} was altered, lines were removed or inserted after it, \
                     or this line's prev was altered"
                )
            }));
        }
        expected = hex::encode(hash_line(&line));
    }
}

#[cfg(test)]
mod tests {
    use super::super::{AuditLog, AuditRecord};
    use super::verify_file;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct TempFile(PathBuf);

    impl TempFile {
        fn with_chain(name: &str, count: usize) -> TempFile {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "tessera-verify-{}-{}-{name}.log",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_file(&path);
            let log = AuditLog::open(&path).unwrap();
            for n in 1..=count {
                log.append(&AuditRecord {
                    time: "2024-05-01T12:00:00Z".into(),
                    request_id: format!("req-{n}"),
                    identity: "alice".into(),
                    operation: "read".into(),
                    path: format!("prod/db/{n}"),
                    outcome: "ok".into(),
                    remote_addr: "10.0.0.1:1234".into(),
                    error: None,
                    detail: None,
                })
                .unwrap();
            }
            TempFile(path)
        }

        fn path(&self) -> &Path {
            &self.0
        }

        fn lines(&self) -> Vec<String> {
            std::fs::read_to_string(&self.0)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }

        fn rewrite(&self, lines: &[String]) {
            let mut text = lines.join("\n");
            text.push('\n');
            std::fs::write(&self.0, text).unwrap();
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn intact_chain_and_empty_file_verify() {
        let log = TempFile::with_chain("intact", 5);
        assert_eq!(verify_file(log.path()), Ok(5));
        let empty = TempFile::with_chain("empty", 0);
        assert_eq!(verify_file(empty.path()), Ok(0));
    }

    #[test]
    fn one_changed_byte_in_line_3_is_reported_at_line_4_naming_line_3() {
        let log = TempFile::with_chain("byte", 5);
        let mut lines = log.lines();
        assert!(lines[2].contains("\"identity\":\"alice\""));
        lines[2] = lines[2].replacen("alice", "alicf", 1);
        log.rewrite(&lines);

        let err = verify_file(log.path()).unwrap_err();
        assert_eq!(err.line, 4, "{err}");
        assert!(
            err.reason.contains("does not match the hash of line 3")
                && err.reason.contains("line 3 was altered"),
            "{err}"
        );
    }

    #[test]
    fn changed_prev_is_reported_at_that_line() {
        let log = TempFile::with_chain("prev", 5);
        let mut lines = log.lines();
        // Flip one hex digit inside line 3's prev (it starts at byte 9).
        let mut bytes = lines[2].clone().into_bytes();
        bytes[9] = if bytes[9] == b'a' { b'b' } else { b'a' };
        lines[2] = String::from_utf8(bytes).unwrap();
        log.rewrite(&lines);

        let err = verify_file(log.path()).unwrap_err();
        assert_eq!(err.line, 3, "{err}");
        assert!(err.reason.contains("hash of line 2"), "{err}");
    }

    #[test]
    fn deleted_line_is_reported_where_the_gap_is() {
        let log = TempFile::with_chain("delete", 5);
        let mut lines = log.lines();
        lines.remove(2);
        log.rewrite(&lines);
        let err = verify_file(log.path()).unwrap_err();
        assert_eq!(err.line, 3, "{err}");
        assert!(err.reason.contains("removed"), "{err}");
    }

    #[test]
    fn deleted_first_line_is_reported_at_line_1() {
        let log = TempFile::with_chain("delete-first", 3);
        let lines = log.lines();
        log.rewrite(&lines[1..]);
        let err = verify_file(log.path()).unwrap_err();
        assert_eq!(err.line, 1, "{err}");
        assert!(err.reason.contains("zero hash"), "{err}");
    }

    #[test]
    fn swapped_lines_are_detected() {
        let log = TempFile::with_chain("swap", 4);
        let mut lines = log.lines();
        lines.swap(1, 2);
        log.rewrite(&lines);
        assert_eq!(verify_file(log.path()).unwrap_err().line, 2);
    }

    #[test]
    fn bad_json_line_is_reported_at_that_line() {
        let log = TempFile::with_chain("json", 5);
        let mut lines = log.lines();
        lines[3].pop(); // drop the closing brace
        log.rewrite(&lines);
        let err = verify_file(log.path()).unwrap_err();
        assert_eq!(err.line, 4, "{err}");
        assert!(err.reason.starts_with("bad JSON"), "{err}");
        assert!(err.to_string().starts_with("line 4: bad JSON"), "{err}");
    }

    #[test]
    fn missing_or_malformed_prev_is_reported() {
        let log = TempFile::with_chain("missing", 3);
        let mut lines = log.lines();
        let mut value: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
        value.as_object_mut().unwrap().remove("prev");
        lines[1] = value.to_string();
        log.rewrite(&lines);
        let err = verify_file(log.path()).unwrap_err();
        assert_eq!((err.line, err.reason.as_str()), (2, "missing prev"));

        let mut value: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        value["prev"] = serde_json::Value::from("00");
        lines[0] = value.to_string();
        log.rewrite(&lines);
        let err = verify_file(log.path()).unwrap_err();
        assert_eq!(err.line, 1);
        assert!(err.reason.starts_with("malformed prev"), "{err}");
    }

    #[test]
    fn non_record_lines_are_rejected() {
        let log = TempFile::with_chain("non-record", 2);
        let mut lines = log.lines();
        lines.push(String::new());
        log.rewrite(&lines);
        let err = verify_file(log.path()).unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.reason.starts_with("bad JSON"), "{err}");

        lines.pop();
        lines.push(format!("{{\"prev\":\"{}\"}}", "0".repeat(64)));
        log.rewrite(&lines);
        let err = verify_file(log.path()).unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.reason.starts_with("not an audit record"), "{err}");
    }

    #[test]
    fn unreadable_file_is_line_0() {
        let err = verify_file(Path::new("/nonexistent/tessera/audit.log")).unwrap_err();
        assert_eq!(err.line, 0);
        assert!(
            err.reason.contains("/nonexistent/tessera/audit.log"),
            "{err}"
        );
    }
}
