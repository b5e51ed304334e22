//! Readers of a WAL besides replay: the forwarders (`src/forward`) tail the
//! stores' WALs the way Prometheus' remote-write watcher tails its own, so
//! nothing acknowledged is lost across their restarts or a receiver outage.
//!
//! A reader has a name and a cursor (`DIR/cursors/<name>`: the position up to
//! which everything was delivered, plus an optional *intent*: where the round
//! being delivered ends). It reads only records that are fsynced
//! ([`Wal::synced_position`]), so it passes on acknowledged data only. The WAL
//! keeps every segment at or after the oldest reader cursor, even once the
//! store's blocks hold its data; a reader that falls further behind than it
//! allows skips ahead with [`WalReader::skip_backlog`].

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use super::{list_segments, segment_path, Wal, HEADER_LEN, MAX_RECORD_LEN};

/// A place in the WAL: a segment and a byte offset inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct WalPosition {
    pub segment: u64,
    pub offset: u64,
}

/// A persisted cursor: delivered up to `done`; `intent`, when set, is the
/// end of the round that was being delivered (so a restart re-reads exactly
/// that round first and sends the same requests again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Cursor {
    pub done: WalPosition,
    intent: Option<WalPosition>,
}

/// Records read in one call.
#[derive(Debug, Default)]
pub struct ReadBatch {
    pub records: Vec<Vec<u8>>,
    /// The position after the last record.
    pub end: WalPosition,
    /// Bytes that could not be read (segments deleted before the reader got
    /// to them, corrupt records): gone for this reader.
    pub lost_bytes: u64,
    /// What happened to them, for the log.
    pub problems: Vec<String>,
}

pub struct WalReader {
    wal: Arc<Wal>,
    name: String,
    position: WalPosition,
    intent: Option<WalPosition>,
}

impl Cursor {
    pub(super) fn at(done: WalPosition) -> Cursor {
        Cursor { done, intent: None }
    }
}

fn cursor_dir(dir: &Path) -> std::path::PathBuf {
    dir.join("cursors")
}

fn encode(done: WalPosition, intent: Option<WalPosition>) -> String {
    match intent {
        Some(i) => format!(
            "{} {} {} {}\n",
            done.segment, done.offset, i.segment, i.offset
        ),
        None => format!("{} {}\n", done.segment, done.offset),
    }
}

fn decode(text: &str) -> Option<(WalPosition, Option<WalPosition>)> {
    let numbers: Vec<u64> = text
        .split_whitespace()
        .map(|n| n.parse().ok())
        .collect::<Option<_>>()?;
    let at = |i: usize| WalPosition {
        segment: numbers[i],
        offset: numbers[i + 1],
    };
    match numbers.len() {
        2 => Some((at(0), None)),
        4 if at(2) >= at(0) => Some((at(0), Some(at(2)))),
        _ => None,
    }
}

pub(super) fn read_cursor(dir: &Path, name: &str) -> io::Result<Option<Cursor>> {
    match fs::read_to_string(cursor_dir(dir).join(name)) {
        Ok(text) => match decode(&text) {
            Some((done, intent)) => Ok(Some(Cursor { done, intent })),
            None => {
                tracing::warn!(
                    reader = name,
                    "unreadable WAL cursor; the reader starts at the oldest segment"
                );
                Ok(Some(Cursor {
                    done: WalPosition::default(),
                    intent: None,
                }))
            }
        },
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// The cursors of `readers`; those of readers no longer named are deleted.
pub(super) fn load_cursors(dir: &Path, readers: &[String]) -> io::Result<BTreeMap<String, Cursor>> {
    let cursors = cursor_dir(dir);
    let mut out = BTreeMap::new();
    if let Ok(entries) = fs::read_dir(&cursors) {
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                fs::remove_file(entry.path())?;
            } else if readers.contains(&name) {
                if let Some(cursor) = read_cursor(dir, &name)? {
                    out.insert(name, cursor);
                }
            } else {
                tracing::info!(
                    reader = %name,
                    "removing the WAL cursor of a reader that is no longer configured"
                );
                fs::remove_file(entry.path())?;
            }
        }
    }
    Ok(out)
}

pub(super) fn save_cursor(dir: &Path, name: &str, done: WalPosition) -> io::Result<()> {
    save_full(dir, name, done, None)
}

fn save_full(
    dir: &Path,
    name: &str,
    done: WalPosition,
    intent: Option<WalPosition>,
) -> io::Result<()> {
    let cursors = cursor_dir(dir);
    fs::create_dir_all(&cursors)?;
    crate::storage::write_atomically(&cursors.join(name), encode(done, intent).as_bytes())
}

impl WalReader {
    pub(super) fn new(wal: Arc<Wal>, name: String, cursor: Cursor) -> WalReader {
        WalReader {
            wal,
            name,
            position: cursor.done,
            intent: cursor.intent,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the next read starts.
    pub fn position(&self) -> WalPosition {
        self.position
    }

    /// Whether everything fsynced so far was read (no file is touched).
    pub fn caught_up(&self) -> bool {
        self.position >= self.wal.synced_position()
    }

    /// Go back to `position` (a round that could not be started).
    pub fn rewind(&mut self, position: WalPosition) {
        self.position = position;
    }

    /// Bytes of the WAL after the reader's position (what it has yet to deliver).
    pub fn backlog_bytes(&self) -> u64 {
        backlog_from(&self.wal.dir, self.position)
    }

    /// The directory of the WAL read.
    pub fn dir(&self) -> std::path::PathBuf {
        self.wal.dir.clone()
    }

    /// When more than `max` bytes are left to deliver, move to the start of
    /// the oldest segment that keeps the backlog within `max` (at least the
    /// newest one). Returns the bytes skipped; the caller counts and commits.
    pub fn skip_backlog(&mut self, max: u64) -> io::Result<u64> {
        let backlog = self.backlog_bytes();
        if backlog <= max {
            return Ok(0);
        }
        let segments = list_segments(&self.wal.dir)?;
        let mut kept = 0u64;
        let mut start = self.position;
        for (number, path) in segments.iter().rev() {
            if *number <= self.position.segment {
                break;
            }
            let len = fs::metadata(path).map_or(0, |m| m.len());
            if kept > 0 && kept.saturating_add(len) > max {
                break;
            }
            kept = kept.saturating_add(len);
            start = WalPosition {
                segment: *number,
                offset: 0,
            };
        }
        if start == self.position {
            return Ok(0);
        }
        self.position = start;
        self.intent = None;
        Ok(backlog.saturating_sub(kept))
    }

    /// Read fsynced records from the position on, up to about `max_bytes`
    /// (at least one record when there is one). A round interrupted by a
    /// restart is read again exactly as it was (its persisted intent).
    pub fn read(&mut self, max_bytes: usize) -> io::Result<ReadBatch> {
        let synced = self.wal.synced_position();
        let limit = match self.intent {
            Some(intent) if intent > self.position && intent <= synced => intent,
            _ => synced,
        };
        let mut batch = ReadBatch::default();
        let mut bytes = 0usize;
        while self.position < limit && bytes < max_bytes {
            let path = segment_path(&self.wal.dir, self.position.segment);
            let mut file = match File::open(&path) {
                Ok(file) => file,
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    self.jump_past_missing(limit, &mut batch)?;
                    continue;
                }
                Err(err) => return Err(err),
            };
            let end = if self.position.segment == limit.segment {
                limit.offset
            } else {
                file.metadata()?.len()
            };
            file.seek(SeekFrom::Start(self.position.offset))?;
            let mut reader = io::BufReader::with_capacity(
                1 << 16,
                file.take(end.saturating_sub(self.position.offset)),
            );
            loop {
                if self.position.offset >= end || bytes >= max_bytes {
                    break;
                }
                match read_record(&mut reader, end - self.position.offset) {
                    Ok(payload) => {
                        let len = (payload.len() + HEADER_LEN) as u64;
                        bytes += payload.len() + HEADER_LEN;
                        self.position.offset += len;
                        batch.records.push(payload);
                    }
                    Err(problem) => {
                        let lost = end - self.position.offset;
                        batch.lost_bytes += lost;
                        batch.problems.push(format!(
                            "{}: {problem} at offset {}; {lost} bytes skipped",
                            path.display(),
                            self.position.offset
                        ));
                        self.position.offset = end;
                        break;
                    }
                }
            }
            if self.position.offset >= end && self.position.segment < limit.segment {
                self.position = WalPosition {
                    segment: self.position.segment + 1,
                    offset: 0,
                };
            }
        }
        batch.end = self.position;
        Ok(batch)
    }

    /// The reader's segment is gone (deleted before it was read, e.g. by an
    /// operator, or it was never written): go on with the next one there is.
    fn jump_past_missing(&mut self, limit: WalPosition, batch: &mut ReadBatch) -> io::Result<()> {
        let next = list_segments(&self.wal.dir)?
            .into_iter()
            .map(|(n, _)| n)
            .find(|&n| n > self.position.segment)
            .filter(|&n| n <= limit.segment);
        batch.problems.push(format!(
            "WAL segment {} was gone before reader {} read it",
            self.position.segment, self.name
        ));
        self.position = match next {
            Some(segment) => WalPosition { segment, offset: 0 },
            // Nothing readable is left before the limit.
            None => limit,
        };
        Ok(())
    }

    /// Persist that the records from the position read so far up to `end`
    /// are about to be delivered: a restart re-reads exactly up to `end`.
    pub fn begin_round(&mut self, done: WalPosition, end: WalPosition) -> io::Result<()> {
        self.intent = Some(end);
        save_full(&self.wal.dir, &self.name, done, Some(end))
    }

    /// Persist that everything before `done` is delivered, and let the WAL
    /// delete the segments no one needs any more.
    pub fn commit(&mut self, done: WalPosition) -> io::Result<()> {
        self.intent = None;
        save_full(&self.wal.dir, &self.name, done, None)?;
        self.wal.release(&self.name, done.segment)
    }
}

/// Bytes of the WAL in `dir` after `position`.
pub fn backlog_from(dir: &Path, position: WalPosition) -> u64 {
    let Ok(segments) = list_segments(dir) else {
        return 0;
    };
    let mut total = 0u64;
    for (number, path) in segments {
        if number < position.segment {
            continue;
        }
        let len = fs::metadata(&path).map_or(0, |m| m.len());
        total = total.saturating_add(if number == position.segment {
            len.saturating_sub(position.offset)
        } else {
            len
        });
    }
    total
}

fn read_record(reader: &mut impl Read, available: u64) -> Result<Vec<u8>, &'static str> {
    if available < HEADER_LEN as u64 {
        return Err("torn record header");
    }
    let mut header = [0u8; HEADER_LEN];
    reader
        .read_exact(&mut header)
        .map_err(|_| "unreadable record header")?;
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    if len > MAX_RECORD_LEN || (len + HEADER_LEN) as u64 > available {
        return Err("implausible record length");
    }
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).map_err(|_| "torn record")?;
    if crc32fast::hash(&payload) != crc {
        return Err("checksum mismatch");
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_reader_sees_synced_records_only_and_resumes_from_its_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) =
            Wal::open_with_readers(dir.path(), 4096, 0, &names(&["fw"]), |_| {}).unwrap();
        let wal = Arc::new(wal);
        let mut reader = wal.reader("fw").unwrap();
        wal.append(b"one").unwrap();
        assert!(
            reader.read(1 << 20).unwrap().records.is_empty(),
            "not synced yet"
        );
        wal.sync_all().unwrap();
        let batch = reader.read(1 << 20).unwrap();
        assert_eq!(batch.records, vec![b"one".to_vec()]);
        // Many records across segments.
        for i in 0..200u32 {
            wal.append(&[i as u8; 100]).unwrap();
        }
        wal.sync_all().unwrap();
        let first = reader.read(1000).unwrap();
        assert!(!first.records.is_empty() && first.records.len() < 200);
        reader.commit(first.end).unwrap();
        let seen = first.records.len();
        drop(reader);
        // A new reader (a restart) resumes at the committed end.
        let mut reader = wal.reader("fw").unwrap();
        let rest = reader.read(1 << 20).unwrap();
        assert_eq!(seen + rest.records.len(), 200);
        assert_eq!(rest.records.last().unwrap()[0], 199);
        assert_eq!(rest.lost_bytes, 0);
    }

    #[test]
    fn segments_a_reader_needs_outlive_the_store_and_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let readers = names(&["fw"]);
        let (wal, _) = Wal::open_with_readers(dir.path(), 256, 0, &readers, |_| {}).unwrap();
        let wal = Arc::new(wal);
        for i in 0..50u8 {
            wal.append(&[i; 60]).unwrap();
        }
        wal.sync_all().unwrap();
        let cut = wal.cut().unwrap();
        wal.remove_before(cut).unwrap();
        drop(wal);
        // The store replays from `cut` only, but the reader still gets all 50.
        let mut replayed = 0;
        let (wal, _) =
            Wal::open_with_readers(dir.path(), 256, cut, &readers, |_| replayed += 1).unwrap();
        assert_eq!(replayed, 0);
        let wal = Arc::new(wal);
        let mut reader = wal.reader("fw").unwrap();
        let batch = reader.read(1 << 20).unwrap();
        assert_eq!(batch.records.len(), 50);
        reader.commit(batch.end).unwrap();
        // Released: only what the store itself still replays is left.
        assert!(list_segments(dir.path())
            .unwrap()
            .iter()
            .all(|(n, _)| *n >= cut));
        // A reader no longer configured releases everything it held.
        drop((reader, wal));
        let (_wal, _) = Wal::open_with_readers(dir.path(), 256, cut, &[], |_| {}).unwrap();
        assert!(!dir.path().join("cursors/fw").exists());
    }

    #[test]
    fn an_interrupted_round_is_read_again_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let readers = names(&["fw"]);
        let (wal, _) = Wal::open_with_readers(dir.path(), 1 << 20, 0, &readers, |_| {}).unwrap();
        let wal = Arc::new(wal);
        for i in 0..10u8 {
            wal.append(&[i; 10]).unwrap();
        }
        wal.sync_all().unwrap();
        let mut reader = wal.reader("fw").unwrap();
        let start = reader.position();
        let round = reader.read(1 << 20).unwrap();
        reader.begin_round(start, round.end).unwrap();
        // More data arrives, then the process dies before the commit.
        for i in 10..20u8 {
            wal.append(&[i; 10]).unwrap();
        }
        wal.sync_all().unwrap();
        drop(reader);
        let mut reader = wal.reader("fw").unwrap();
        let again = reader.read(1 << 20).unwrap();
        assert_eq!(again.records, round.records, "the same round, not more");
        reader.commit(again.end).unwrap();
        assert_eq!(reader.read(1 << 20).unwrap().records.len(), 10);
    }

    #[test]
    fn a_reader_over_its_backlog_skips_the_oldest_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) =
            Wal::open_with_readers(dir.path(), 1000, 0, &names(&["fw"]), |_| {}).unwrap();
        let wal = Arc::new(wal);
        for i in 0..100u8 {
            wal.append(&[i; 92]).unwrap();
        }
        wal.sync_all().unwrap();
        let mut reader = wal.reader("fw").unwrap();
        assert_eq!(reader.backlog_bytes(), 10_000);
        let skipped = reader.skip_backlog(3_000).unwrap();
        assert_eq!(skipped, 7_000);
        let rest = reader.read(1 << 20).unwrap();
        assert_eq!(rest.records.len(), 30);
        assert_eq!(rest.records[0][0], 70);
    }

    #[test]
    fn cursor_text_round_trips_and_garbage_is_refused() {
        let a = WalPosition {
            segment: 3,
            offset: 10,
        };
        let b = WalPosition {
            segment: 4,
            offset: 0,
        };
        assert_eq!(decode(&encode(a, None)), Some((a, None)));
        assert_eq!(decode(&encode(a, Some(b))), Some((a, Some(b))));
        assert_eq!(decode("1 2 0 0"), None, "an intent before its start");
        assert_eq!(decode("x"), None);
        assert_eq!(decode("18446744073709551616 0"), None);
    }
}
