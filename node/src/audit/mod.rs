//! Hash-chained, fsynced audit log: one JSON line per API request.
//!
//! Each line starts with `"prev"`, the lowercase hex SHA-256 of the previous
//! line's exact bytes (without its newline); the first line's `prev` is 64
//! zeros. Editing, reordering or removing any line except the last breaks the
//! chain at the following line, so an intruder who gains write access to the
//! file cannot quietly rewrite history (see [`verify_file`]). A line is
//! written with a single `write_all` and made durable with `sync_data` before
//! [`AuditLog::append`] returns, so a request is never answered without its
//! audit record on disk.
//!
//! Limitation: removing whole lines from the *end* of the file, or rewriting
//! the last line, leaves a valid shorter chain. Detecting that needs an anchor
//! kept elsewhere, such as the head hash from [`AuditLog::head`].

mod auditor;
mod operation;
mod verify;

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use self::auditor::Auditor;
pub use self::operation::Operation;
pub use self::verify::{verify_file, VerifyError};

/// The `prev` of the first line.
const ZERO_HASH: [u8; 32] = [0; 32];

/// SHA-256 of one line's bytes, excluding the trailing newline.
fn hash_line(line: &[u8]) -> [u8; 32] {
    Sha256::digest(line).into()
}

/// One audited API request.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AuditRecord {
    /// RFC 3339 UTC timestamp; [`AuditLog::append`] fills it in when empty,
    /// under the log's lock, so timestamps follow file order.
    pub time: String,
    pub request_id: String,
    pub identity: String,
    pub operation: String,
    pub path: String,
    pub outcome: String,
    pub remote_addr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Extra public facts about the request (e.g. the node a bad share came from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The serialized form of a line: `prev` first, then the record's fields.
#[derive(Serialize)]
struct LineOut<'a> {
    prev: &'a str,
    #[serde(flatten)]
    record: &'a AuditRecord,
}

/// Failures of the audit log. Every variant names the file, so an operator
/// can tell which node's log is in trouble from the message alone.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// An I/O operation (`what`) failed.
    #[error("audit log {}: {what} failed: {source}", .path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// The existing file cannot be continued, e.g. its last line was cut
    /// short by a crash or tampered with. Continuing would hide the damage
    /// behind new, validly chained lines, so the node must refuse to start
    /// until an operator has looked at it.
    #[error("audit log {} is corrupt: {reason}", .path.display())]
    Corrupt { path: PathBuf, reason: String },
    /// Another open handle (usually another process) holds the file's lock.
    /// Two writers would both extend the same head and fork the chain.
    #[error("audit log {} is locked by another writer", .path.display())]
    Locked { path: PathBuf },
    /// An earlier append failed after bytes may have reached the file and
    /// the partial line could not be removed. Further appends are refused
    /// (fail closed) until the log is reopened, which re-reads the real head.
    #[error("audit log {} is unusable after an earlier failed write; reopen it", .path.display())]
    Broken { path: PathBuf },
    /// The record could not be serialized.
    #[error("audit log {}: cannot encode record: {source}", .path.display())]
    Encode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The current time could not be formatted.
    #[error("audit log {}: cannot format timestamp: {source}", .path.display())]
    Clock {
        path: PathBuf,
        #[source]
        source: time::error::Format,
    },
    /// A thread panicked while holding the log's lock, so its state is not
    /// trusted any more.
    #[error("audit log {}: internal lock poisoned by a panic", .path.display())]
    Poisoned { path: PathBuf },
}

struct State {
    file: File,
    /// Hash of the last complete line, i.e. the `prev` of the next one.
    head: [u8; 32],
    /// Whether `file` is a regular file (so its length can be restored).
    regular: bool,
    /// Set when a failed append may have left a partial line behind, or a sync failed.
    broken: bool,
    /// Writes so far, each of one or more lines (the sequence number of the last one).
    written: u64,
}

/// Group commit: one `fsync` makes every line written before it durable, so concurrent
/// requests share syncs instead of queueing one fsync each.
struct SyncState {
    /// A second handle on the same file, so syncing does not hold the write lock.
    file: File,
    /// Every line up to this sequence number is durable.
    synced: u64,
}

/// An open audit log. Appends from many threads are serialized by a mutex;
/// on a regular file an exclusive advisory lock keeps other processes (or a
/// second `AuditLog` on the same file) from writing concurrently.
pub struct AuditLog {
    path: PathBuf,
    state: Mutex<State>,
    sync: Mutex<SyncState>,
}

impl AuditLog {
    /// Opens (creating with mode 0600, since records name identities and
    /// paths) the log at `path` in append mode and finds the chain head.
    ///
    /// For a non-empty regular file the head is the hash of its last line,
    /// which must end with a newline and be a well-formed record line;
    /// otherwise [`AuditError::Corrupt`] is returned rather than silently
    /// starting a new chain on top of damage. An empty file, or a path that
    /// is not a regular file (a device such as `/dev/full`, a pipe), starts
    /// from the zero hash without reading.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        let io_err = |what: &'static str| {
            let path = path.to_path_buf();
            move |source| AuditError::Io { path, what, source }
        };
        let mut options = OpenOptions::new();
        options.read(true).append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(io_err("open"))?;
        // Inspect the opened handle, not the path, so the answer is about the
        // file we will really write to.
        let metadata = file.metadata().map_err(io_err("stat"))?;
        let regular = metadata.is_file();
        let head = if regular {
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(AuditError::Locked {
                        path: path.to_path_buf(),
                    });
                }
                Err(std::fs::TryLockError::Error(source)) => {
                    return Err(io_err("lock")(source));
                }
            }
            // Re-read the length under the lock: another writer may have
            // appended between open and lock.
            let len = file.metadata().map_err(io_err("stat"))?.len();
            if len == 0 {
                ZERO_HASH
            } else {
                let line = read_last_line(&mut file, len).map_err(io_err("read last line"))?;
                let line = line.map_err(|reason| AuditError::Corrupt {
                    path: path.to_path_buf(),
                    reason,
                })?;
                self::verify::parse_line(&line).map_err(|reason| AuditError::Corrupt {
                    path: path.to_path_buf(),
                    reason: format!("last line: {reason}"),
                })?;
                hash_line(&line)
            }
        } else {
            ZERO_HASH
        };
        let sync_file = file.try_clone().map_err(|source| AuditError::Io {
            path: path.to_path_buf(),
            what: "open",
            source,
        })?;
        Ok(AuditLog {
            path: path.to_path_buf(),
            state: Mutex::new(State {
                file,
                head,
                regular,
                broken: false,
                written: 0,
            }),
            sync: Mutex::new(SyncState {
                file: sync_file,
                synced: 0,
            }),
        })
    }

    /// Appends one record and blocks until it is durable (see [`AuditLog::append_all`]).
    pub fn append(&self, record: &AuditRecord) -> Result<(), AuditError> {
        self.append_all(std::slice::from_ref(record))
    }

    /// Appends records, in order, and blocks until all of them are durable.
    ///
    /// Writes each as `{"prev":"<hex>", ...record fields...}` plus `\n`, chained, with a
    /// single `write_all` for the lot, then `sync_data()`. The in-memory chain head advances
    /// only when both succeed; on any failure `Err` is returned and the head is unchanged. If
    /// the write or sync failed on a regular file, the file is truncated back to its previous
    /// length so that the next line does not follow a partial (or unsynced, and so unreliable)
    /// one; if that is not possible, the log refuses further appends ([`AuditError::Broken`]).
    /// The caller must treat `Err` as "do not serve any of these requests".
    pub fn append_all(&self, records: &[AuditRecord]) -> Result<(), AuditError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut state = self.state.lock().map_err(|_| AuditError::Poisoned {
            path: self.path.clone(),
        })?;
        if state.broken {
            return Err(AuditError::Broken {
                path: self.path.clone(),
            });
        }

        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|source| AuditError::Clock {
                path: self.path.clone(),
                source,
            })?;
        let mut head = state.head;
        let mut lines = Vec::with_capacity(records.len() * 320);
        for record in records {
            let stamped;
            let record = if record.time.is_empty() {
                stamped = AuditRecord {
                    time: now.clone(),
                    ..record.clone()
                };
                &stamped
            } else {
                record
            };
            let prev = hex::encode(head);
            // serde_json escapes control characters, so the output is one line
            // whatever the record contains.
            let line = serde_json::to_vec(&LineOut {
                prev: &prev,
                record,
            })
            .map_err(|source| AuditError::Encode {
                path: self.path.clone(),
                source,
            })?;
            head = hash_line(&line);
            lines.extend_from_slice(&line);
            lines.push(b'\n');
        }

        let io_err = |what: &'static str, source| AuditError::Io {
            path: self.path.clone(),
            what,
            source,
        };
        let length_before = if state.regular {
            Some(state.file.metadata().map_err(|e| io_err("stat", e))?.len())
        } else {
            None
        };

        let written = state.file.write_all(&lines).map_err(|e| io_err("write", e));
        match written {
            Ok(()) => {
                state.head = head;
                state.written += 1;
                let seq = state.written;
                drop(state);
                self.sync_through(seq)
            }
            Err(err) => {
                let rolled_back = length_before.is_some_and(|len| {
                    state.file.set_len(len).is_ok() && state.file.sync_data().is_ok()
                });
                if !rolled_back {
                    state.broken = true;
                }
                Err(err)
            }
        }
    }

    /// Returns once line `seq` is durable: either an fsync that started after it was written
    /// already covered it, or this call syncs (covering every line written so far). A failed
    /// sync breaks the log: nothing after it can be trusted to be on disk.
    fn sync_through(&self, seq: u64) -> Result<(), AuditError> {
        let mut sync = self.sync.lock().map_err(|_| AuditError::Poisoned {
            path: self.path.clone(),
        })?;
        if sync.synced >= seq {
            return Ok(());
        }
        let target = {
            let state = self.state.lock().map_err(|_| AuditError::Poisoned {
                path: self.path.clone(),
            })?;
            if state.broken {
                return Err(AuditError::Broken {
                    path: self.path.clone(),
                });
            }
            state.written
        };
        match sync.file.sync_data() {
            Ok(()) => {
                sync.synced = target;
                Ok(())
            }
            Err(source) => {
                if let Ok(mut state) = self.state.lock() {
                    state.broken = true;
                }
                Err(AuditError::Io {
                    path: self.path.clone(),
                    what: "sync",
                    source,
                })
            }
        }
    }

    /// The current chain head: the hex hash of the last line written (64
    /// zeros for an empty log). Recording it outside the node (or in a later
    /// line's context) is what makes truncation of the log's tail detectable.
    pub fn head(&self) -> Result<String, AuditError> {
        let state = self.state.lock().map_err(|_| AuditError::Poisoned {
            path: self.path.clone(),
        })?;
        Ok(hex::encode(state.head))
    }

    /// The path the log was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads the last line of a file of `len > 0` bytes, without its newline,
/// scanning backwards in chunks so that a large log is not read whole.
/// The inner `Err` explains why the tail is not a complete line.
fn read_last_line(file: &mut File, len: u64) -> io::Result<Result<Vec<u8>, String>> {
    const CHUNK: u64 = 8192;
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] != b'\n' {
        return Ok(Err(
            "the last line has no trailing newline (truncated write?)".to_owned(),
        ));
    }
    let end = len - 1;
    let mut start = 0;
    let mut pos = end;
    let mut buf = vec![0u8; CHUNK as usize];
    while pos > 0 {
        let n = CHUNK.min(pos);
        pos -= n;
        let chunk = &mut buf[..n as usize];
        file.seek(SeekFrom::Start(pos))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            start = pos + i as u64 + 1;
            break;
        }
    }
    let line_len = usize::try_from(end - start)
        .map_err(|_| io::Error::other("last line does not fit in memory"))?;
    let mut line = vec![0u8; line_len];
    file.seek(SeekFrom::Start(start))?;
    file.read_exact(&mut line)?;
    Ok(Ok(line))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "tessera-audit-{}-{}-{name}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn file(&self) -> PathBuf {
            self.0.join("audit.log")
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn record(n: usize) -> AuditRecord {
        AuditRecord {
            time: String::new(),
            request_id: format!("req-{n}"),
            identity: format!("user-{n}"),
            operation: "read".into(),
            path: format!("prod/db/{n}"),
            outcome: "ok".into(),
            remote_addr: "127.0.0.1:5000".into(),
            error: None,
            detail: None,
        }
    }

    fn write_chain(path: &Path, count: usize) {
        let log = AuditLog::open(path).unwrap();
        for n in 1..=count {
            log.append(&record(n)).unwrap();
        }
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn write_lines(path: &Path, lines: &[String]) {
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn chain_of_appends_verifies() {
        let dir = TempDir::new("chain");
        let path = dir.file();
        write_chain(&path, 5);
        assert_eq!(verify_file(&path).unwrap(), 5);

        let lines = lines(&path);
        assert!(lines[0].starts_with(&format!("{{\"prev\":\"{}\",", "0".repeat(64))));
        for pair in lines.windows(2) {
            let expected = hex::encode(hash_line(pair[0].as_bytes()));
            assert!(pair[1].starts_with(&format!("{{\"prev\":\"{expected}\",\"time\":")));
        }
    }

    #[test]
    fn appends_of_several_lines_continue_one_chain() {
        let dir = TempDir::new("batch");
        let path = dir.file();
        let log = AuditLog::open(&path).unwrap();
        log.append(&record(1)).unwrap();
        log.append_all(&[record(2), record(3), record(4)]).unwrap();
        log.append_all(&[]).unwrap();
        log.append(&record(5)).unwrap();
        drop(log);
        assert_eq!(verify_file(&path).unwrap(), 5);
        let lines = lines(&path);
        for (n, l) in lines.iter().enumerate() {
            assert!(
                l.contains(&record(n + 1).request_id),
                "line {n} out of order: {l}"
            );
        }
    }

    #[test]
    fn line_layout_and_timestamps() {
        let dir = TempDir::new("layout");
        let path = dir.file();
        let log = AuditLog::open(&path).unwrap();
        let mut given = record(1);
        given.time = "2024-05-01T12:00:00Z".into();
        given.error = Some("permission denied".into());
        log.append(&given).unwrap();
        log.append(&record(2)).unwrap();

        let lines = lines(&path);
        assert_eq!(
            lines[0],
            format!(
                "{{\"prev\":\"{}\",\"time\":\"2024-05-01T12:00:00Z\",\"request_id\":\"req-1\",\
                 \"identity\":\"user-1\",\"operation\":\"read\",\"path\":\"prod/db/1\",\
                 \"outcome\":\"ok\",\"remote_addr\":\"127.0.0.1:5000\",\
                 \"error\":\"permission denied\"}}",
                "0".repeat(64)
            )
        );
        // The empty time was filled in with an RFC 3339 UTC timestamp, and a
        // missing error is left out.
        let second: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
        let time = second["time"].as_str().unwrap();
        assert!(time.len() >= 20 && time.ends_with('Z'), "{time}");
        assert_eq!(&time[4..5], "-");
        assert_eq!(&time[10..11], "T");
        assert!(second.get("error").is_none());
        let back: AuditRecord = serde_json::from_value(second).unwrap();
        assert_eq!(back.request_id, "req-2");
        assert_eq!(
            log.head().unwrap(),
            hex::encode(hash_line(lines[1].as_bytes()))
        );
    }

    #[test]
    fn hostile_field_contents_stay_on_one_line() {
        let dir = TempDir::new("hostile");
        let path = dir.file();
        let log = AuditLog::open(&path).unwrap();
        let mut rec = record(1);
        rec.path = "a\n{\"prev\":\"0000\"}\r\n\u{0}\u{2028}".into();
        log.append(&rec).unwrap();
        log.append(&record(2)).unwrap();
        assert_eq!(verify_file(&path).unwrap(), 2);
        let first: serde_json::Value = serde_json::from_str(&lines(&path)[0]).unwrap();
        assert_eq!(first["path"], rec.path.as_str());
    }

    #[test]
    fn reopening_continues_the_chain() {
        let dir = TempDir::new("reopen");
        let path = dir.file();
        let head = {
            let log = AuditLog::open(&path).unwrap();
            assert_eq!(log.head().unwrap(), "0".repeat(64));
            log.append(&record(1)).unwrap();
            log.append(&record(2)).unwrap();
            log.head().unwrap()
        };
        let log = AuditLog::open(&path).unwrap();
        assert_eq!(log.head().unwrap(), head);
        log.append(&record(3)).unwrap();
        log.append(&record(4)).unwrap();
        drop(log);
        assert_eq!(verify_file(&path).unwrap(), 4);
        write_chain(&path, 3);
        assert_eq!(verify_file(&path).unwrap(), 7);
    }

    #[test]
    fn reopening_finds_the_last_line_across_chunk_boundaries() {
        let dir = TempDir::new("long");
        let path = dir.file();
        let log = AuditLog::open(&path).unwrap();
        for n in 0..3 {
            let mut rec = record(n);
            rec.error = Some("x".repeat(9000 + n * 4000));
            log.append(&rec).unwrap();
        }
        let head = log.head().unwrap();
        drop(log);
        let log = AuditLog::open(&path).unwrap();
        assert_eq!(log.head().unwrap(), head);
        log.append(&record(9)).unwrap();
        drop(log);
        assert_eq!(verify_file(&path).unwrap(), 4);
    }

    #[test]
    fn open_refuses_a_truncated_last_line() {
        let dir = TempDir::new("truncated");
        let path = dir.file();
        write_chain(&path, 3);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 10);
        std::fs::write(&path, &bytes).unwrap();

        let err = AuditLog::open(&path).err().expect("open must fail");
        assert!(matches!(err, AuditError::Corrupt { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains("no trailing newline"), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");

        let err = verify_file(&path).unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.reason.contains("no trailing newline"), "{err}");
    }

    #[test]
    fn open_refuses_a_garbage_last_line() {
        let dir = TempDir::new("garbage-tail");
        let path = dir.file();
        write_chain(&path, 2);
        let mut lines = lines(&path);
        lines.push("not json".into());
        write_lines(&path, &lines);
        let err = AuditLog::open(&path).err().expect("open must fail");
        assert!(err.to_string().contains("last line: bad JSON"), "{err}");
    }

    #[test]
    fn open_on_an_empty_existing_file_starts_a_new_chain() {
        let dir = TempDir::new("empty");
        let path = dir.file();
        std::fs::write(&path, b"").unwrap();
        let log = AuditLog::open(&path).unwrap();
        assert_eq!(log.head().unwrap(), "0".repeat(64));
        assert_eq!(verify_file(&path).unwrap(), 0);
    }

    #[test]
    fn second_writer_on_the_same_file_is_refused() {
        let dir = TempDir::new("locked");
        let path = dir.file();
        let first = AuditLog::open(&path).unwrap();
        let err = AuditLog::open(&path).err().expect("second open must fail");
        assert!(matches!(err, AuditError::Locked { .. }), "{err}");
        drop(first);
        assert!(AuditLog::open(&path).is_ok());
    }

    #[test]
    fn concurrent_appends_form_one_chain() {
        let dir = TempDir::new("threads");
        let path = dir.file();
        let log = Arc::new(AuditLog::open(&path).unwrap());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    for n in 0..25 {
                        log.append(&record(t * 100 + n)).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(verify_file(&path).unwrap(), 100);
    }

    #[test]
    fn open_error_names_the_path() {
        let dir = TempDir::new("missing-dir");
        let path = dir.0.join("no/such/dir/audit.log");
        let err = AuditLog::open(&path).err().expect("open must fail");
        let message = err.to_string();
        assert!(message.contains("no/such/dir/audit.log"), "{message}");
        assert!(message.contains("open failed"), "{message}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn appending_to_dev_full_fails_and_keeps_the_head() {
        let log = AuditLog::open(Path::new("/dev/full")).unwrap();
        assert_eq!(log.head().unwrap(), "0".repeat(64));
        let err = log.append(&record(1)).unwrap_err();
        assert!(err.to_string().contains("/dev/full"), "{err}");
        assert_eq!(log.head().unwrap(), "0".repeat(64));
        // A device cannot be rolled back, so the log now fails closed.
        let err = log.append(&record(2)).unwrap_err();
        assert!(matches!(err, AuditError::Broken { .. }), "{err}");
        assert_eq!(log.head().unwrap(), "0".repeat(64));
    }

    #[test]
    fn audit_log_is_shareable_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<AuditLog>();
    }
}
