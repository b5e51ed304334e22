//! The write-ahead log: every accepted write is framed, checksummed and
//! appended here, and made durable before it is acknowledged.
//!
//! Layout: `DIR/00000001`, `DIR/00000002`, … ; a segment is closed when it
//! passes the configured size. A record is `len: u32 LE | crc32: u32 LE |
//! payload`, the checksum covering the payload. Payload contents belong to the
//! caller (see `storage::metrics::wal_record`).
//!
//! **Invariant:** a record whose sequence number `sync` has returned for is on
//! disk (fdatasync'd). Concurrent writers share one fsync (group commit).
//!
//! **Invariant:** replay never refuses to start: a torn or corrupt tail is
//! truncated with a warning; corruption inside an older segment skips the rest
//! of that segment and goes on with the next.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

mod reader;
pub use reader::{backlog_from, ReadBatch, WalPosition, WalReader};

/// Bytes of framing before each payload.
const HEADER_LEN: usize = 8;
/// Pending bytes are written to the file (not synced) past this size, so a
/// burst of appends without a sync does not grow memory without bound.
const WRITE_THROUGH_BYTES: usize = 1 << 20;
/// A record larger than this is corruption, not data (limits cap requests far below).
const MAX_RECORD_LEN: usize = 512 << 20;

/// Figures the WAL reports to the self-metrics.
#[derive(Default)]
pub struct WalStats {
    /// Called with each fsync's duration in seconds (set once by the self-metrics).
    pub fsync_observer: std::sync::OnceLock<Box<dyn Fn(f64) + Send + Sync>>,
    pub bytes_written: AtomicU64,
    pub records_written: AtomicU64,
    pub fsyncs: AtomicU64,
    /// Total fsync time in microseconds.
    pub fsync_micros: AtomicU64,
    pub segments_removed: AtomicU64,
}

pub struct Wal {
    dir: PathBuf,
    segment_size: u64,
    inner: Mutex<Writer>,
    /// Held by the one thread doing an fsync; others wait and then usually
    /// find their record already synced.
    sync_lock: Mutex<()>,
    synced_seq: AtomicU64,
    /// Set by the first failed write or fsync. After it nothing is accepted:
    /// bytes past the failure may be torn, and after a failed fsync the
    /// kernel may have dropped dirty pages it will not report again, so no
    /// later record could be acknowledged safely (PostgreSQL's rule).
    failed: Mutex<Option<String>>,
    /// The end of the last fsynced record: `(segment, byte length)`. Readers
    /// (forwarders) see records up to here and no further, so they only ever
    /// pass on acknowledged data.
    synced_at: Mutex<(u64, u64)>,
    /// Segments below this hold only data the store has elsewhere (blocks).
    floor: AtomicU64,
    /// The floor last written to `DIR/floor`.
    floor_saved: AtomicU64,
    /// Registered readers and the oldest segment each still needs; segments
    /// a reader needs are kept even when the store no longer does.
    cursors: Mutex<std::collections::BTreeMap<String, u64>>,
    pub stats: Arc<WalStats>,
}

struct Writer {
    file: File,
    segment: u64,
    segment_len: u64,
    /// Records appended but not yet written to the file.
    pending: Vec<u8>,
    /// Sequence number of the last appended record.
    seq: u64,
}

/// What replay found, for logging and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    pub segments: usize,
    pub records: u64,
    pub bytes: u64,
    /// Human-readable descriptions of repaired corruption.
    pub repairs: Vec<String>,
}

impl Wal {
    /// Open the WAL in `dir`, calling `apply` for every intact record of the
    /// segments numbered `first_segment` or later (older ones are deleted), then
    /// start a fresh segment for new writes.
    pub fn open(
        dir: &Path,
        segment_size: u64,
        first_segment: u64,
        apply: impl FnMut(&[u8]),
    ) -> io::Result<(Wal, ReplayReport)> {
        Wal::open_with_readers(dir, segment_size, first_segment, &[], apply)
    }

    /// [`Wal::open`] for a WAL that `readers` (by name) also read, each from
    /// its persisted cursor (see [`WalReader`]). Segments a reader still
    /// needs are kept, not replayed; cursors of readers not named any more
    /// are deleted; a new reader starts at the end.
    pub fn open_with_readers(
        dir: &Path,
        segment_size: u64,
        first_segment: u64,
        readers: &[String],
        mut apply: impl FnMut(&[u8]),
    ) -> io::Result<(Wal, ReplayReport)> {
        fs::create_dir_all(dir)?;
        // Segments kept for readers below the store's floor are not replayed.
        let first_segment = first_segment.max(read_floor(dir));
        let cursors = reader::load_cursors(dir, readers)?;
        let keep_from = cursors
            .values()
            .map(|c| c.done.segment)
            .min()
            .unwrap_or(u64::MAX)
            .min(first_segment);
        let mut report = ReplayReport::default();
        let segments = list_segments(dir)?;
        let mut last = first_segment.saturating_sub(1);
        for (index, &(number, ref path)) in segments.iter().enumerate() {
            if number < keep_from {
                fs::remove_file(path)?;
                continue;
            }
            last = last.max(number);
            if number < first_segment {
                continue;
            }
            last = last.max(number);
            let is_last = index + 1 == segments.len();
            replay_segment(path, is_last, &mut report, &mut apply)?;
            report.segments += 1;
        }
        let next = last + 1;
        let file = create_segment(dir, next)?;
        let mut holds = std::collections::BTreeMap::new();
        for name in readers {
            let segment = match cursors.get(name) {
                Some(cursor) => cursor.done.segment,
                None => {
                    let start = WalPosition {
                        segment: next,
                        offset: 0,
                    };
                    reader::save_cursor(dir, name, start)?;
                    next
                }
            };
            holds.insert(name.clone(), segment);
        }
        let wal = Wal {
            dir: dir.to_owned(),
            segment_size,
            inner: Mutex::new(Writer {
                file,
                segment: next,
                segment_len: 0,
                pending: Vec::with_capacity(WRITE_THROUGH_BYTES),
                seq: 0,
            }),
            sync_lock: Mutex::new(()),
            synced_seq: AtomicU64::new(0),
            failed: Mutex::new(None),
            synced_at: Mutex::new((next, 0)),
            floor: AtomicU64::new(first_segment),
            floor_saved: AtomicU64::new(0),
            cursors: Mutex::new(holds),
            stats: Arc::new(WalStats::default()),
        };
        Ok((wal, report))
    }

    /// Append one record (not yet durable); returns its sequence number for [`Wal::sync`].
    pub fn append(&self, payload: &[u8]) -> io::Result<u64> {
        self.check_failed()?;
        let mut writer = self.inner.lock();
        if writer.segment_len > 0
            && writer.segment_len + (payload.len() + HEADER_LEN) as u64 > self.segment_size
        {
            let rotated = self.rotate_locked(&mut writer);
            self.fail_on(rotated, "segment rotation")?;
        }
        let crc = crc32fast::hash(payload);
        writer
            .pending
            .extend_from_slice(&(payload.len() as u32).to_le_bytes());
        writer.pending.extend_from_slice(&crc.to_le_bytes());
        writer.pending.extend_from_slice(payload);
        writer.segment_len += (payload.len() + HEADER_LEN) as u64;
        writer.seq += 1;
        self.stats
            .bytes_written
            .fetch_add((payload.len() + HEADER_LEN) as u64, Ordering::Relaxed);
        self.stats.records_written.fetch_add(1, Ordering::Relaxed);
        if writer.pending.len() >= WRITE_THROUGH_BYTES {
            let written = write_pending(&mut writer);
            self.fail_on(written, "write")?;
        }
        Ok(writer.seq)
    }

    /// The error every call gets once the WAL has stopped.
    fn check_failed(&self) -> io::Result<()> {
        match &*self.failed.lock() {
            None => Ok(()),
            Some(why) => Err(io::Error::other(why.clone())),
        }
    }

    /// Stop the WAL if `result` is a failure, and pass the failure on.
    fn fail_on<T>(&self, result: io::Result<T>, what: &str) -> io::Result<T> {
        result.map_err(|err| {
            let why = format!(
                "the write-ahead log in {} stopped accepting writes after a failed {what} ({err}); nothing after it was acknowledged; fix the cause (e.g. free disk space) and restart Oxeye",
                self.dir.display()
            );
            tracing::error!("{why}");
            self.failed.lock().get_or_insert(why);
            io::Error::new(err.kind(), format!("WAL {what} failed: {err}"))
        })
    }

    /// Why the WAL stopped, if it did.
    pub fn failure(&self) -> Option<String> {
        self.failed.lock().clone()
    }

    /// Make every record up to `seq` durable. Cheap when another writer's
    /// fsync already covered it.
    pub fn sync(&self, seq: u64) -> io::Result<()> {
        if self.synced_seq.load(Ordering::Acquire) >= seq {
            return Ok(());
        }
        let _guard = self.sync_lock.lock();
        if self.synced_seq.load(Ordering::Acquire) >= seq {
            return Ok(());
        }
        self.check_failed()?;
        let (file, upto, at) = {
            let mut writer = self.inner.lock();
            let written = write_pending(&mut writer);
            self.fail_on(written, "write")?;
            let file = writer.file.try_clone();
            (
                self.fail_on(file, "file handle clone")?,
                writer.seq,
                (writer.segment, writer.segment_len),
            )
        };
        let started = Instant::now();
        let synced = crate::storage::faults::check("wal.fsync").and_then(|()| file.sync_data());
        self.fail_on(synced, "fsync")?;
        self.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        let elapsed = started.elapsed();
        self.stats
            .fsync_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        if let Some(observe) = self.stats.fsync_observer.get() {
            observe(elapsed.as_secs_f64());
        }
        self.synced_seq.fetch_max(upto, Ordering::AcqRel);
        self.advance_synced(at);
        Ok(())
    }

    fn advance_synced(&self, at: (u64, u64)) {
        let mut synced = self.synced_at.lock();
        if at > *synced {
            *synced = at;
        }
    }

    /// Where the durable records end: `(segment, byte length)`. Every
    /// segment before it is complete.
    pub fn synced_position(&self) -> WalPosition {
        let (segment, offset) = *self.synced_at.lock();
        WalPosition { segment, offset }
    }

    /// A reader of this WAL registered at open (see [`Wal::open_with_readers`]).
    pub fn reader(self: &Arc<Self>, name: &str) -> Option<WalReader> {
        let segment = *self.cursors.lock().get(name)?;
        let cursor = reader::read_cursor(&self.dir, name)
            .ok()
            .flatten()
            .unwrap_or(reader::Cursor::at(WalPosition { segment, offset: 0 }));
        Some(WalReader::new(self.clone(), name.to_owned(), cursor))
    }

    /// The directory holding the segments.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Record that reader `name` no longer needs segments below `segment`,
    /// and delete the segments nobody needs now.
    fn release(&self, name: &str, segment: u64) -> io::Result<()> {
        if let Some(held) = self.cursors.lock().get_mut(name) {
            *held = (*held).max(segment);
        }
        self.remove_unneeded()
    }

    fn remove_unneeded(&self) -> io::Result<()> {
        let floor = self.floor.load(Ordering::Acquire);
        let keep_from = self
            .cursors
            .lock()
            .values()
            .copied()
            .min()
            .unwrap_or(u64::MAX)
            .min(floor);
        if keep_from < floor && self.floor_saved.swap(floor, Ordering::AcqRel) != floor {
            // Segments below the floor stay for a reader: remember that they
            // hold nothing to replay.
            crate::storage::write_atomically(
                &self.dir.join(FLOOR_FILE),
                format!("{floor}\n").as_bytes(),
            )?;
        }
        for (number, path) in list_segments(&self.dir)? {
            if number < keep_from {
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(err),
                }
                self.stats.segments_removed.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Sync everything appended so far.
    pub fn sync_all(&self) -> io::Result<()> {
        let seq = self.inner.lock().seq;
        self.sync(seq)
    }

    /// Close the current segment and start a new one; returns the new
    /// segment's number. Records appended after this call land in it or later.
    pub fn cut(&self) -> io::Result<u64> {
        self.check_failed()?;
        let mut writer = self.inner.lock();
        let rotated = self.rotate_locked(&mut writer);
        self.fail_on(rotated, "segment rotation")?;
        Ok(writer.segment)
    }

    /// The store no longer needs segments numbered below `segment` (their
    /// data is in blocks): delete those no reader needs either.
    pub fn remove_before(&self, segment: u64) -> io::Result<()> {
        self.floor.fetch_max(segment, Ordering::AcqRel);
        self.remove_unneeded()
    }

    /// Number of the segment new records go to.
    pub fn current_segment(&self) -> u64 {
        self.inner.lock().segment
    }

    /// Bytes of all segment files on disk.
    pub fn disk_bytes(&self) -> u64 {
        list_segments(&self.dir)
            .map(|segments| {
                segments
                    .iter()
                    .filter_map(|(_, p)| fs::metadata(p).ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }

    fn rotate_locked(&self, writer: &mut Writer) -> io::Result<()> {
        write_pending(writer)?;
        crate::storage::faults::check("wal.fsync")?;
        writer.file.sync_data()?;
        let next = writer.segment + 1;
        writer.file = create_segment(&self.dir, next)?;
        writer.segment = next;
        writer.segment_len = 0;
        // Everything in the closed segment is synced.
        self.synced_seq.fetch_max(writer.seq, Ordering::AcqRel);
        self.advance_synced((next, 0));
        Ok(())
    }
}

/// Where the store's floor is remembered while readers keep older segments.
const FLOOR_FILE: &str = "floor";

fn read_floor(dir: &Path) -> u64 {
    fs::read_to_string(dir.join(FLOOR_FILE))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// Run `sync_all` on a timer (for `wal.fsync = "interval"`) until `wal` is dropped elsewhere.
pub fn spawn_interval_sync(wal: std::sync::Weak<Wal>, every: Duration) {
    std::thread::Builder::new()
        .name("wal-sync".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            let Some(wal) = wal.upgrade() else { return };
            if let Err(err) = wal.sync_all() {
                tracing::error!(error = %err, "interval wal sync failed");
            }
        })
        .expect("spawn wal-sync thread");
}

fn write_pending(writer: &mut Writer) -> io::Result<()> {
    if !writer.pending.is_empty() {
        crate::storage::faults::check("wal.write")?;
        writer.file.write_all(&writer.pending)?;
        writer.pending.clear();
    }
    Ok(())
}

pub(crate) fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:08}"))
}

fn create_segment(dir: &Path, number: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(segment_path(dir, number))?;
    File::open(dir)?.sync_all()?;
    Ok(file)
}

pub(crate) fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(number) = name.to_str().and_then(|n| n.parse::<u64>().ok()) {
            segments.push((number, entry.path()));
        }
    }
    segments.sort_unstable();
    Ok(segments)
}

fn replay_segment(
    path: &Path,
    is_last: bool,
    report: &mut ReplayReport,
    apply: &mut impl FnMut(&[u8]),
) -> io::Result<()> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let mut pos = 0usize;
    let problem = loop {
        if pos == data.len() {
            break None;
        }
        if data.len() - pos < HEADER_LEN {
            break Some("torn record header");
        }
        let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().unwrap());
        if len > MAX_RECORD_LEN {
            break Some("implausible record length");
        }
        let Some(payload) = data.get(pos + HEADER_LEN..pos + HEADER_LEN + len) else {
            break Some("torn record");
        };
        if crc32fast::hash(payload) != crc {
            break Some("checksum mismatch");
        }
        apply(payload);
        report.records += 1;
        report.bytes += (len + HEADER_LEN) as u64;
        pos += HEADER_LEN + len;
    };
    if let Some(what) = problem {
        let lost = data.len() - pos;
        let message = format!(
            "{}: {what} at offset {pos}; {lost} bytes after it {}",
            path.display(),
            if is_last { "truncated" } else { "skipped" }
        );
        tracing::warn!(segment = %path.display(), offset = pos, lost_bytes = lost, "wal repaired: {what}");
        report.repairs.push(message);
        if is_last {
            let file = OpenOptions::new().write(true).open(path)?;
            file.set_len(pos as u64)?;
            file.sync_all()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay(dir: &Path, first: u64) -> (Vec<Vec<u8>>, ReplayReport, Wal) {
        let mut records = Vec::new();
        let (wal, report) = Wal::open(dir, 1 << 20, first, |r| records.push(r.to_vec())).unwrap();
        (records, report, wal)
    }

    #[test]
    fn records_survive_reopen_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let (_, _, wal) = replay(dir.path(), 0);
        let big = vec![7u8; 300 << 10];
        for i in 0..10u8 {
            let mut payload = big.clone();
            payload[0] = i;
            let seq = wal.append(&payload).unwrap();
            wal.sync(seq).unwrap();
        }
        drop(wal);
        let (records, report, _) = replay(dir.path(), 0);
        assert_eq!(records.len(), 10);
        assert!(report.segments >= 3, "{report:?}");
        assert!(records.iter().enumerate().all(|(i, r)| r[0] == i as u8));
        assert!(report.repairs.is_empty());
    }

    #[test]
    fn torn_tail_is_truncated_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let (_, _, wal) = replay(dir.path(), 0);
        for payload in [b"one".as_slice(), b"two", b"three"] {
            wal.append(payload).unwrap();
        }
        wal.sync_all().unwrap();
        let segment = segment_path(dir.path(), wal.current_segment());
        drop(wal);
        // Flip a byte inside the last record and append garbage.
        let mut data = fs::read(&segment).unwrap();
        let last = data.len() - 1;
        data[last] ^= 0xff;
        data.extend_from_slice(&[1, 2, 3]);
        fs::write(&segment, &data).unwrap();

        let (records, report, wal) = replay(dir.path(), 0);
        assert_eq!(records, vec![b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(report.repairs.len(), 1, "{report:?}");
        assert!(report.repairs[0].contains("checksum mismatch"));
        // New writes after the repair replay cleanly.
        wal.append(b"four").unwrap();
        wal.sync_all().unwrap();
        drop(wal);
        let (records, report, _) = replay(dir.path(), 0);
        assert_eq!(records.len(), 3);
        assert!(report.repairs.is_empty());
    }

    #[test]
    fn segments_before_a_checkpoint_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (_, _, wal) = replay(dir.path(), 0);
        wal.append(b"old").unwrap();
        let next = wal.cut().unwrap();
        wal.append(b"new").unwrap();
        wal.sync_all().unwrap();
        wal.remove_before(next).unwrap();
        drop(wal);
        let (records, _, _) = replay(dir.path(), next);
        assert_eq!(records, vec![b"new".to_vec()]);
    }

    #[test]
    fn a_failed_write_or_fsync_stops_the_wal_and_nothing_after_it_is_acknowledged() {
        for point in ["wal.write", "wal.fsync"] {
            let dir = tempfile::tempdir().unwrap();
            {
                let (_, _, wal) = replay(dir.path(), 0);
                let seq = wal.append(b"before").unwrap();
                wal.sync(seq).unwrap();
                crate::storage::faults::arm(point, 0, 1, io::ErrorKind::StorageFull);
                let seq = wal.append(b"failing").unwrap();
                let err = wal.sync(seq).unwrap_err();
                assert!(err.to_string().contains("injected fault"), "{err}");
                crate::storage::faults::clear();
                // The disk works again, but the WAL does not pretend it does.
                let err = wal.append(b"after").unwrap_err();
                assert!(err.to_string().contains("restart Oxeye"), "{point}: {err}");
                assert!(wal.failure().is_some());
                assert!(wal.cut().is_err());
            }
            // Reopening replays what was acknowledged, and accepts again.
            let (records, _, wal) = replay(dir.path(), 0);
            assert_eq!(records[0], b"before");
            assert!(!records.iter().any(|r| r == b"after"));
            let seq = wal.append(b"again").unwrap();
            wal.sync(seq).unwrap();
        }
    }

    #[test]
    fn concurrent_writers_share_fsyncs() {
        // Each round, four writers append and then all wait for durability
        // at once: the first fsync covers every record appended before it,
        // so the others return without one of their own.
        let dir = tempfile::tempdir().unwrap();
        let (_, _, wal) = replay(dir.path(), 0);
        let wal = Arc::new(wal);
        let barrier = Arc::new(std::sync::Barrier::new(4));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (wal, barrier) = (wal.clone(), barrier.clone());
                std::thread::spawn(move || {
                    for i in 0..50u32 {
                        let seq = wal.append(&[t, i as u8]).unwrap();
                        barrier.wait();
                        wal.sync(seq).unwrap();
                        barrier.wait();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // 200 acknowledged appends, one fsync per round.
        assert_eq!(wal.stats.fsyncs.load(Ordering::Relaxed), 50);
        drop(wal);
        let (records, _, _) = replay(dir.path(), 0);
        assert_eq!(records.len(), 200);
    }
}
