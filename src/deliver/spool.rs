//! The disk spool (`PROCSHIP_SPOOL_DIR`): every batch is appended here,
//! framed and checksummed, before the shipper sees it, and it stays until the
//! backend acknowledged it. Outages, restarts, SIGKILL and (with
//! `PROCSHIP_SPOOL_SYNC=batch`) power loss lose nothing that was cut into a
//! batch; the disk budget is the only limit, and what it cuts is counted.
//!
//! The directory holds:
//! - `lock`: `flock`ed by the running agent, holding its pid (one agent per spool);
//! - `ack`: the acknowledged position (segment, offset) and the last batch
//!   sequence, in two checksummed slots written alternately, so a torn
//!   write leaves the other slot good;
//! - `<id>.seg` (16 hex digits): segments, records appended in order.
//!
//! A record is `"PSr2" | len u32 | crc32c u32 | meta | body`, little endian,
//! where `len` counts meta and body and the crc covers them; meta is
//! `seq u64 | oldest i64 | points u32 | format u8 | compression u8 | 0u16 |
//! run u64 | born u64` (the run that cut the batch and when, on the boot
//! clock: `MAX_BATCH_AGE` ages this run's batches by it). Records of the
//! first version (`"PSr1"`, meta without run and born) are still read.
//! The body is exactly what is POSTed, so a batch sent again after a restart
//! is byte-identical (same sequence, same timestamps) and backends
//! de-duplicate it. A damaged record (torn tail after a crash, flipped bits)
//! fails its checksum; reading resumes at the next valid record, found by
//! its magic and checksum, and the damage is logged and counted.
//!
//! A segment is deleted once every batch in it was acknowledged (the one
//! being written too, once it holds 64 KiB and all of it was delivered: a
//! healthy host keeps little on disk); the
//! acknowledged offset inside the current segment is written after each
//! acknowledgement, so a restart resends at most what was in flight: one
//! batch, or the batches joined into one request while a backlog drains
//! (after a power cut, also those acknowledged since the last sync).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use crate::config::{ConfigError, Values, Var, parse_bytes, parse_positive_duration};
use crate::encode::{Born, Compression, Encoded, Format};
use crate::stats::{DropReason, Stats};

pub const VARS: &[Var] = &[
    Var::new(
        "SPOOL_DIR",
        "",
        "disk spool: every batch is written here before it is sent and kept until a 2xx; empty: memory queue only. The directory must exist and be owned by the agent's user (the systemd unit uses /var/lib/procship); README, Delivery guarantees",
    ),
    Var::new(
        "SPOOL_MAX_BYTES",
        "256MiB",
        "disk spool bound; when full the oldest segment is dropped (reason spool_full)",
    ),
    Var::new(
        "SPOOL_SYNC",
        "batch",
        "when spool writes are fsynced: batch (every write) | off (left to the kernel) | a duration such as 5s",
    ),
];

/// The smallest `PROCSHIP_SPOOL_MAX_BYTES`.
pub const MIN_SPOOL_BYTES: usize = 128 << 10;

/// When spool writes (appends and acknowledgements) reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// fdatasync after every write: a crash or power loss loses nothing written.
    Batch,
    /// fdatasync when this long has passed since the last one (and at exit).
    Every(Duration),
    /// Never: the kernel writes back (a process crash loses nothing, a power loss may).
    Off,
}

/// The spool, when `PROCSHIP_SPOOL_DIR` is set.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub sync: SyncMode,
}

impl Options {
    /// `None` when no spool is set; its directory is checked here, so an
    /// unusable one is a configuration error naming `PROCSHIP_SPOOL_DIR`.
    pub fn parse(v: &mut Values) -> Result<Option<Options>, ConfigError> {
        let dir = v.opt("SPOOL_DIR", |s| {
            let dir = PathBuf::from(s);
            if !dir.is_absolute() {
                return Err("the absolute path of a directory the agent owns".into());
            }
            check_dir(&dir)?;
            Ok(dir)
        })?;
        let max_bytes = v.get("SPOOL_MAX_BYTES", |s| {
            parse_bytes(s)
                .filter(|n| *n >= MIN_SPOOL_BYTES)
                .map(|n| n as u64)
                .ok_or_else(|| {
                    "a size of at least 128KiB, such as 256MiB, 2GiB or 1048576 (bytes)".to_string()
                })
        })?;
        let sync = v.get("SPOOL_SYNC", |s| match s {
            "batch" => Ok(SyncMode::Batch),
            "off" => Ok(SyncMode::Off),
            d => parse_positive_duration(d)
                .map(SyncMode::Every)
                .map_err(|_| "batch, off, or a duration such as 1s or 500ms".to_string()),
        })?;
        Ok(dir.map(|dir| Options {
            dir,
            max_bytes,
            sync,
        }))
    }
}

/// The record magic written; `MAGIC_V1` records (a shorter meta) are read too.
const MAGIC: [u8; 4] = *b"PSr2";
const MAGIC_V1: [u8; 4] = *b"PSr1";
/// magic, len, crc.
const HEADER: usize = 12;
const META: usize = 40;
const META_V1: usize = 24;

/// The meta length of a record that starts with `magic`; `None`: not a record.
fn meta_len(magic: &[u8]) -> Option<usize> {
    if magic == MAGIC {
        Some(META)
    } else if magic == MAGIC_V1 {
        Some(META_V1)
    } else {
        None
    }
}
const ACK_MAGIC: [u8; 4] = *b"PSa1";
/// One ack slot: magic, generation, segment, offset, last seq, crc (padded).
const ACK_SLOT: usize = 64;
/// Free space the spool's filesystem must have at start.
const MIN_FREE: u64 = 1 << 20;
/// A segment wholly acknowledged is given up once it holds this much, so a
/// healthy host keeps little on disk (not up to a whole segment of
/// delivered batches).
const RECLAIM_BYTES: u64 = 64 << 10;
/// How much is read at a time while looking for the next record after damage.
const SCAN_CHUNK: usize = 64 * 1024;

/// Where a record ends: acknowledging it persists this position.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub seg: u64,
    pub off: u64,
}

/// The fixed part of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Meta {
    seq: u64,
    oldest: i64,
    points: u32,
    format: Format,
    compression: Compression,
    born: Born,
    /// Where the body starts in the record (after the meta of its version).
    len: usize,
}

fn format_code(f: Format) -> u8 {
    match f {
        Format::Json => 1,
        Format::Influx => 2,
        Format::Prometheus => 3,
        Format::Otlp => 4,
    }
}

fn compression_code(c: Compression) -> u8 {
    match c {
        Compression::None => 0,
        Compression::Gzip => 1,
        Compression::Snappy => 2,
    }
}

impl Meta {
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.oldest.to_le_bytes());
        out.extend_from_slice(&self.points.to_le_bytes());
        out.push(format_code(self.format));
        out.push(compression_code(self.compression));
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.born.run.to_le_bytes());
        out.extend_from_slice(&self.born.at_ns.to_le_bytes());
    }

    /// The meta of `len` bytes (`META` or `META_V1`) at the start of `b`;
    /// `None` for a format or compression this version does not know.
    fn read(b: &[u8], len: usize) -> Option<Meta> {
        let b = b.get(..len)?;
        let u64_at = |i: usize| {
            u64::from_le_bytes([
                b[i],
                b[i + 1],
                b[i + 2],
                b[i + 3],
                b[i + 4],
                b[i + 5],
                b[i + 6],
                b[i + 7],
            ])
        };
        Some(Meta {
            seq: u64_at(0),
            oldest: u64_at(8) as i64,
            points: u32::from_le_bytes([b[16], b[17], b[18], b[19]]),
            format: Format::ALL.into_iter().find(|f| format_code(*f) == b[20])?,
            compression: Compression::ALL
                .into_iter()
                .find(|c| compression_code(*c) == b[21])?,
            born: if len >= META {
                Born {
                    run: u64_at(24),
                    at_ns: u64_at(32),
                }
            } else {
                Born::default()
            },
            len,
        })
    }
}

/// Appends one framed record for `e` to `out`.
fn frame(e: &Encoded, out: &mut Vec<u8>) {
    let len = META + e.body.len();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    let crc_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let start = out.len();
    Meta {
        seq: e.seq,
        oldest: e.oldest,
        points: u32::try_from(e.points).unwrap_or(u32::MAX),
        format: e.format,
        compression: e.compression,
        born: e.born,
        len: META,
    }
    .write(out);
    out.extend_from_slice(&e.body);
    let crc = crc32c::crc32c(&out[start..]);
    out[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
}

/// The record at `off` if it is whole and its checksum holds; its meta and
/// body are left in `buf`.
fn record_at(
    file: &File,
    off: u64,
    end: u64,
    buf: &mut Vec<u8>,
) -> io::Result<Option<(Meta, u64)>> {
    if end.saturating_sub(off) < (HEADER + META_V1) as u64 {
        return Ok(None);
    }
    let mut h = [0u8; HEADER];
    file.read_exact_at(&mut h, off)?;
    let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as u64;
    let crc = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    let next = off + HEADER as u64 + len;
    let Some(meta) = meta_len(&h[..4]) else {
        return Ok(None);
    };
    if len < meta as u64 || next > end {
        return Ok(None);
    }
    buf.clear();
    buf.resize(len as usize, 0);
    file.read_exact_at(buf, off + HEADER as u64)?;
    if crc32c::crc32c(buf) != crc {
        return Ok(None);
    }
    Ok(Meta::read(buf, meta).map(|m| (m, next)))
}

/// The offset of the next occurrence of the record magic at or after `from`.
fn find_magic(file: &File, from: u64, end: u64) -> io::Result<Option<u64>> {
    let mut chunk = vec![0u8; SCAN_CHUNK];
    let mut at = from;
    while at < end {
        let n = (end - at).min(SCAN_CHUNK as u64) as usize;
        file.read_exact_at(&mut chunk[..n], at)?;
        if let Some(i) = chunk[..n]
            .windows(MAGIC.len())
            .position(|w| meta_len(w).is_some())
        {
            return Ok(Some(at + i as u64));
        }
        if n < MAGIC.len() || at + (n as u64) >= end {
            break;
        }
        // Overlap so a magic split across chunks is found.
        at += (n - (MAGIC.len() - 1)) as u64;
    }
    Ok(None)
}

/// The sequence in a torn record's header, if the header made it to disk
/// (a crash cut the body). Bounded so garbage cannot jump the numbering.
fn peek_seq(file: &File, off: u64) -> Option<u64> {
    let mut h = [0u8; HEADER + 8];
    file.read_exact_at(&mut h, off).ok()?;
    meta_len(&h[..4])?;
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&h[HEADER..]);
    Some(u64::from_le_bytes(seq)).filter(|s| *s < 1 << 48)
}

/// The batch of the record `r`, whose bytes are in `buf`.
fn encoded(r: &Located, buf: &[u8]) -> Encoded {
    Encoded {
        seq: r.meta.seq,
        points: u64::from(r.meta.points),
        oldest: r.meta.oldest,
        format: r.meta.format,
        compression: r.meta.compression,
        born: r.meta.born,
        body: buf
            .get(r.meta.len..)
            .map(<[u8]>::to_vec)
            .unwrap_or_default(),
    }
}

/// What reading from an offset found: the next valid record (if any before
/// `end`) and the damaged byte range skipped to reach it.
struct Found {
    record: Option<Located>,
    skipped: Option<Damage>,
}

/// A valid record: its meta, and where it begins and ends.
struct Located {
    meta: Meta,
    from: u64,
    next: u64,
}

/// A damaged byte range, `from..to`.
#[derive(Clone, Copy)]
struct Damage {
    from: u64,
    to: u64,
}

fn read_from(file: &File, mut off: u64, end: u64, buf: &mut Vec<u8>) -> io::Result<Found> {
    let mut damage: Option<u64> = None;
    while off < end {
        if let Some((meta, next)) = record_at(file, off, end, buf)? {
            return Ok(Found {
                record: Some(Located {
                    meta,
                    from: off,
                    next,
                }),
                skipped: damage.map(|from| Damage { from, to: off }),
            });
        }
        damage.get_or_insert(off);
        off = find_magic(file, off + 1, end)?.unwrap_or(end);
    }
    Ok(Found {
        record: None,
        skipped: damage.map(|from| Damage { from, to: end }),
    })
}

/// Checks a spool directory before the agent uses it: it must exist, be
/// a directory owned by the user the agent runs as, be writable, and its
/// filesystem must have room. The message says what to fix.
pub fn check_dir(dir: &Path) -> Result<(), String> {
    let md = std::fs::metadata(dir).map_err(|e| {
        format!(
            "cannot use it: {e}; create it (the systemd unit's StateDirectory= does) and make it owned by the agent's user"
        )
    })?;
    if !md.is_dir() {
        return Err("it is not a directory".into());
    }
    let me = nix::unistd::geteuid().as_raw();
    if md.uid() != me {
        return Err(format!(
            "it is owned by uid {}, but the agent runs as uid {me}; chown it to the agent's user",
            md.uid()
        ));
    }
    if md.mode() & 0o200 == 0 {
        return Err("it is not writable by its owner; chmod u+rwx it".into());
    }
    let vfs =
        nix::sys::statvfs::statvfs(dir).map_err(|e| format!("cannot stat its filesystem: {e}"))?;
    if vfs.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY) {
        return Err("its filesystem is mounted read-only".into());
    }
    // Both are c_ulong-sized on some targets and u64 on others.
    #[allow(clippy::useless_conversion)]
    let free = u64::from(vfs.blocks_available()).saturating_mul(u64::from(vfs.fragment_size()));
    if free < MIN_FREE {
        return Err(format!(
            "its filesystem has only {free} bytes free (at least {MIN_FREE} needed)"
        ));
    }
    Ok(())
}

/// One segment file, as far as the spool needs to know it.
#[derive(Debug)]
struct Segment {
    id: u64,
    /// Bytes on disk (counted against the budget).
    size: u64,
    /// Where valid data ends: the reader stops here.
    end: u64,
    /// Where unacknowledged data begins (after a restart, the persisted ack).
    start: u64,
    /// Records and points not yet handed to the shipper.
    unread_records: u64,
    unread_points: u64,
    /// Bytes of the unread records (framing included).
    unread_bytes: u64,
    /// Offsets where damage was already reported (at start), not to report twice.
    known_damage: Vec<u64>,
}

/// A record the shipper holds: counted as pending until acknowledged.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    pos: Pos,
    points: u64,
    bytes: u64,
}

/// What the spool holds for delivery: batches, points and bytes waiting
/// (the batch in flight included), and `disk_bytes`, its use of the disk
/// budget (acknowledged records stay on disk until their segment goes).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub batches: u64,
    pub points: u64,
    pub bytes: u64,
    pub disk_bytes: u64,
}

/// What a start found in the spool: logged, and the basis of the account.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    pub batches: u64,
    pub points: u64,
    pub damaged_ranges: u64,
    pub damaged_bytes: u64,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    sync: SyncMode,
    stats: Arc<Stats>,
    _lock: Flock<File>,
    ack_file: File,
    ack_gen: u64,
    /// The highest batch sequence written or acknowledged.
    last_seq: u64,
    segs: VecDeque<Segment>,
    /// The id the next segment gets: above every id ever used here, so an
    /// old acknowledgement can never point into a new segment.
    next_id: u64,
    /// The segment being appended to; `None` after a roll or a write error.
    writer: Option<(u64, File)>,
    read: Pos,
    reader: Option<(u64, File)>,
    /// What the shipper holds, oldest first (several when it joins a
    /// backlog into one request).
    in_flight: VecDeque<InFlight>,
    last_sync: Instant,
    unsynced: bool,
    /// True while the budget is cutting (logged once per episode).
    full: bool,
    buf: Vec<u8>,
}

fn seg_name(id: u64) -> String {
    format!("{id:016x}.seg")
}

fn parse_seg_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".seg")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// The persisted acknowledgement.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Ack {
    generation: u64,
    pos: Pos,
    last_seq: u64,
}

impl Ack {
    fn encode(&self) -> [u8; ACK_SLOT] {
        let mut b = [0u8; ACK_SLOT];
        b[..4].copy_from_slice(&ACK_MAGIC);
        b[4..12].copy_from_slice(&self.generation.to_le_bytes());
        b[12..20].copy_from_slice(&self.pos.seg.to_le_bytes());
        b[20..28].copy_from_slice(&self.pos.off.to_le_bytes());
        b[28..36].copy_from_slice(&self.last_seq.to_le_bytes());
        let crc = crc32c::crc32c(&b[..36]);
        b[36..40].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Ack> {
        if b.len() < 40 || b[..4] != ACK_MAGIC {
            return None;
        }
        let crc = u32::from_le_bytes([b[36], b[37], b[38], b[39]]);
        if crc32c::crc32c(&b[..36]) != crc {
            return None;
        }
        let at = |i: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(x)
        };
        Some(Ack {
            generation: at(4),
            pos: Pos {
                seg: at(12),
                off: at(20),
            },
            last_seq: at(28),
        })
    }

    /// The newer valid slot of the two, if any.
    fn newest(file: &[u8]) -> Option<Ack> {
        [0, ACK_SLOT]
            .iter()
            .filter_map(|&o| file.get(o..o + ACK_SLOT).and_then(Ack::decode))
            .max_by_key(|a| a.generation)
    }
}

/// An I/O error that names what was being done and to which file.
fn io_context(what: &str, path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// Opens (or creates) the acknowledgement file and reads the newest good slot.
fn open_ack(dir: &Path) -> Result<(File, Ack), String> {
    let ack_path = dir.join("ack");
    let mut ack_file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&ack_path)
        .map_err(|e| format!("spool: cannot open {}: {e}", ack_path.display()))?;
    let mut raw = Vec::new();
    ack_file
        .read_to_end(&mut raw)
        .map_err(|e| format!("spool: cannot read {}: {e}", ack_path.display()))?;
    let ack = Ack::newest(&raw).unwrap_or_default();
    if ack == Ack::default() && !raw.is_empty() {
        tracing::warn!(
            path = %ack_path.display(),
            "spool: the acknowledgement file is damaged; every spooled batch will be sent again (backends de-duplicate them)"
        );
    }
    Ok((ack_file, ack))
}

/// The ids of the segment files in `dir`, in order.
fn segment_ids(dir: &Path) -> Result<Vec<u64>, String> {
    let list_err = |e: io::Error| format!("spool: cannot list {}: {e}", dir.display());
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(list_err)? {
        if let Some(id) = entry
            .map_err(list_err)?
            .file_name()
            .to_str()
            .and_then(parse_seg_name)
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

impl Spool {
    /// Takes the directory's lock, reads the acknowledged position and
    /// scans every segment after it, reporting damage. An error here is
    /// a configuration problem (the agent exits 78): the message says what.
    pub fn open(cfg: &Options, stats: Arc<Stats>) -> Result<(Spool, Recovery), String> {
        let dir = cfg.dir.clone();
        check_dir(&dir).map_err(|e| format!("spool directory {}: {e}", dir.display()))?;
        let lock = take_lock(&dir)?;
        let (ack_file, ack) = open_ack(&dir)?;
        let ids = segment_ids(&dir)?;
        let mut spool = Spool {
            max_bytes: cfg.max_bytes,
            segment_bytes: (cfg.max_bytes / 8).clamp(16 << 10, 16 << 20),
            sync: cfg.sync,
            stats,
            _lock: lock,
            ack_file,
            ack_gen: ack.generation,
            last_seq: ack.last_seq,
            segs: VecDeque::new(),
            next_id: ids.last().copied().unwrap_or(0).max(ack.pos.seg) + 1,
            writer: None,
            read: Pos { seg: 0, off: 0 },
            reader: None,
            in_flight: VecDeque::new(),
            last_sync: Instant::now(),
            unsynced: false,
            full: false,
            buf: Vec::new(),
            dir,
        };
        let mut rec = Recovery::default();
        for id in ids {
            if id < ack.pos.seg {
                // Fully acknowledged; left over from a crash between the ack and the unlink.
                spool.unlink(id);
                continue;
            }
            let start = if id == ack.pos.seg { ack.pos.off } else { 0 };
            let seg = spool.scan(id, start, &mut rec)?;
            rec.batches += seg.unread_records;
            rec.points += seg.unread_points;
            if seg.unread_records == 0 {
                spool.unlink(id);
            } else {
                spool.segs.push_back(seg);
            }
        }
        spool.buf = Vec::new();
        if let Some(first) = spool.segs.front() {
            spool.read = Pos {
                seg: first.id,
                off: first.start,
            };
        }
        Stats::add(&spool.stats.spool_recovered, rec.points);
        Stats::add(&spool.stats.spool_damaged_ranges, rec.damaged_ranges);
        Ok((spool, rec))
    }

    /// Counts the records of segment `id` from `start` on (at open),
    /// reporting damage into `rec`.
    fn scan(&mut self, id: u64, start: u64, rec: &mut Recovery) -> Result<Segment, String> {
        let path = self.dir.join(seg_name(id));
        let file =
            File::open(&path).map_err(|e| format!("spool: cannot open {}: {e}", path.display()))?;
        let size = file
            .metadata()
            .map_err(|e| format!("spool: cannot stat {}: {e}", path.display()))?
            .len();
        let start = start.min(size);
        let mut seg = Segment {
            id,
            size,
            end: size,
            start,
            unread_records: 0,
            unread_points: 0,
            unread_bytes: 0,
            known_damage: Vec::new(),
        };
        let mut off = start;
        loop {
            let found = read_from(&file, off, size, &mut self.buf)
                .map_err(|e| format!("spool: cannot read {}: {e}", path.display()))?;
            if let Some(d) = found.skipped {
                let torn = d.to == size;
                tracing::error!(
                    segment = %path.display(),
                    offset = d.from,
                    bytes = d.to - d.from,
                    "spool: skipped damaged data ({}); the records around it are kept",
                    if torn { "a torn tail: the agent stopped during a write" } else { "corruption: bad checksum or framing" }
                );
                seg.known_damage.push(d.from);
                rec.damaged_ranges += 1;
                rec.damaged_bytes += d.to - d.from;
                if torn && let Some(seq) = peek_seq(&file, d.from) {
                    // Never number a new batch like the torn one.
                    self.last_seq = self.last_seq.max(seq);
                }
            }
            let Some(r) = found.record else {
                return Ok(seg);
            };
            seg.unread_records += 1;
            seg.unread_points += u64::from(r.meta.points);
            seg.unread_bytes += r.next - r.from;
            self.last_seq = self.last_seq.max(r.meta.seq);
            off = r.next;
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The sequence the next batch should carry: batch numbers go on across restarts.
    pub fn next_seq(&self) -> u64 {
        self.last_seq + 1
    }

    /// What is not yet acknowledged, the batch in flight included.
    pub fn pending(&self) -> Pending {
        let mut p = Pending::default();
        for f in &self.in_flight {
            p.batches += 1;
            p.points += f.points;
            p.bytes += f.bytes;
        }
        for seg in &self.segs {
            p.batches += seg.unread_records;
            p.points += seg.unread_points;
            p.bytes += seg.unread_bytes;
            p.disk_bytes += seg.size;
        }
        p
    }

    fn total_bytes(&self) -> u64 {
        self.segs.iter().map(|s| s.size).sum()
    }

    fn unlink(&self, id: u64) {
        let path = self.dir.join(seg_name(id));
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(segment = %path.display(), "spool: cannot delete a segment: {e}");
        }
    }

    fn sync_due(&self) -> bool {
        match self.sync {
            SyncMode::Batch => true,
            SyncMode::Every(d) => self.last_sync.elapsed() >= d,
            SyncMode::Off => false,
        }
    }

    /// fdatasync the segment being written when the policy says so (or
    /// `force`, at exit). The ack file is synced only at exit: an
    /// acknowledgement lost to a power cut makes the next run send again
    /// batches the backend already has (duplicates it overwrites), never
    /// lose one, and it halves the syncs per batch.
    fn maybe_sync(&mut self, force: bool) -> io::Result<()> {
        if self.unsynced && (force || self.sync_due()) {
            if let Some((_, f)) = &self.writer {
                f.sync_data()?;
            }
            self.unsynced = false;
            self.last_sync = Instant::now();
        }
        if force {
            self.ack_file.sync_data()?;
        }
        Ok(())
    }

    /// Makes room for `need` more bytes by deleting the oldest segments;
    /// their unsent points are dropped with reason `spool_full`.
    fn make_room(&mut self, need: u64) {
        let mut cut = (0u64, 0u64);
        while self.total_bytes() + need > self.max_bytes {
            let Some(oldest) = self.segs.front() else {
                break;
            };
            if self.writer.as_ref().is_some_and(|(id, _)| *id == oldest.id) {
                if oldest.size == 0 {
                    break;
                }
                self.writer = None;
            }
            let Some(seg) = self.segs.pop_front() else {
                break;
            };
            self.unlink(seg.id);
            self.stats
                .drop_points(DropReason::SpoolFull, seg.unread_points);
            cut.0 += seg.unread_records;
            cut.1 += seg.unread_points;
            if self.reader.as_ref().is_some_and(|(id, _)| *id == seg.id) {
                self.reader = None;
            }
        }
        if cut != (0, 0) && !self.full {
            tracing::error!(
                batches = cut.0,
                points = cut.1,
                max_bytes = self.max_bytes,
                "spool full: dropping the oldest segment (raise PROCSHIP_SPOOL_MAX_BYTES to hold a longer outage)"
            );
            self.full = true;
        } else if cut == (0, 0) && self.full && self.total_bytes() + need <= self.max_bytes / 2 {
            self.full = false;
        }
    }

    /// Opens a new segment after the newest one.
    fn roll(&mut self) -> io::Result<()> {
        let id = self.next_id;
        let path = self.dir.join(seg_name(id));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io_context("cannot create", &path, e))?;
        if self.sync != SyncMode::Off {
            // The new name must survive a power loss along with the data.
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_context("cannot sync", &self.dir, e))?;
        }
        self.segs.push_back(Segment {
            id,
            size: 0,
            end: 0,
            start: 0,
            unread_records: 0,
            unread_points: 0,
            unread_bytes: 0,
            known_damage: Vec::new(),
        });
        self.writer = Some((id, file));
        self.next_id = id + 1;
        Ok(())
    }

    /// Appends one batch (and syncs it, per policy). On an error nothing is
    /// counted as spooled: the caller keeps the batch in memory.
    pub fn append(&mut self, e: &Encoded) -> io::Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        frame(e, &mut buf);
        let result = self.append_framed(&buf, e);
        if buf.capacity() > 64 * 1024 {
            buf = Vec::new();
        }
        self.buf = buf;
        result
    }

    fn append_framed(&mut self, rec: &[u8], e: &Encoded) -> io::Result<()> {
        let need = rec.len() as u64;
        self.make_room(need);
        let roll = match (&self.writer, self.segs.back()) {
            (Some((id, _)), Some(last)) => {
                *id != last.id || (last.size > 0 && last.size + need > self.segment_bytes)
            }
            _ => true,
        };
        if roll {
            if self.sync != SyncMode::Off {
                // What the closing segment holds must not wait for a later sync.
                self.maybe_sync(true)?;
            }
            self.writer = None;
            self.roll()?;
            self.collect_garbage();
        }
        let (Some((id, file)), Some(seg)) = (&self.writer, self.segs.back_mut()) else {
            return Err(io::Error::other("spool: no segment to write to"));
        };
        let path = self.dir.join(seg_name(*id));
        if let Err(err) = file.write_all_at(rec, seg.size) {
            // Leave no partial record behind; if even that fails, the
            // next start skips the torn bytes by their checksum.
            let _ = file.set_len(seg.size);
            self.writer = None;
            return Err(io_context("cannot write", &path, err));
        }
        seg.size += need;
        seg.end = seg.size;
        seg.unread_records += 1;
        seg.unread_points += e.points;
        seg.unread_bytes += need;
        self.last_seq = self.last_seq.max(e.seq);
        self.unsynced = true;
        if let Err(err) = self.maybe_sync(false) {
            self.writer = None;
            return Err(io_context("cannot sync", &path, err));
        }
        Ok(())
    }

    /// Deletes leading segments whose every record was acknowledged.
    fn collect_garbage(&mut self) {
        while let Some(s) = self.segs.front() {
            let writing = self.writer.as_ref().is_some_and(|(id, _)| *id == s.id);
            let in_flight = self.in_flight.iter().any(|f| f.pos.seg == s.id);
            let passed = self.read.seg > s.id || (self.read.seg == s.id && self.read.off >= s.end);
            if writing || in_flight || s.unread_records > 0 || !passed {
                break;
            }
            let id = s.id;
            self.segs.pop_front();
            if self.reader.as_ref().is_some_and(|(r, _)| *r == id) {
                self.reader = None;
            }
            self.unlink(id);
        }
    }

    /// The oldest unread record, handed to the shipper; it stays pending
    /// until `ack`. Damage met on the way is skipped and reported; a
    /// segment that cannot be read at all is given up (`spool_damaged`).
    pub fn read_next(&mut self) -> Option<(Encoded, Pos)> {
        self.read_next_if(|_, _| true)
    }

    /// Like `read_next`, but hands the record out only when `wanted(batch,
    /// record bytes)` says so; otherwise it stays first, unread.
    pub fn read_next_if(
        &mut self,
        wanted: impl Fn(&Encoded, u64) -> bool,
    ) -> Option<(Encoded, Pos)> {
        loop {
            let idx = self.segs.iter().position(|s| s.id >= self.read.seg)?;
            let (id, start, end) = {
                let s = &self.segs[idx];
                (s.id, s.start, s.end)
            };
            if id != self.read.seg {
                self.read = Pos {
                    seg: id,
                    off: start,
                };
            }
            if self.read.off >= end {
                if self.writer.as_ref().is_some_and(|(w, _)| *w == id) {
                    return None;
                }
                self.leave_segment(idx, "records in it were damaged");
                continue;
            }
            let mut buf = std::mem::take(&mut self.buf);
            let found = match self.read_at_cursor(idx, &mut buf) {
                Ok(f) => f,
                Err(why) => {
                    self.buf = buf;
                    self.leave_segment(idx, &why);
                    continue;
                }
            };
            if let Some(d) = found.skipped {
                self.report_damage(idx, d);
            }
            let Some(r) = found.record else {
                self.buf = buf;
                self.read.off = end;
                continue;
            };
            let encoded = encoded(&r, &buf);
            if !wanted(&encoded, r.next - r.from) {
                self.read.off = r.from;
                self.buf = buf;
                return None;
            }
            let taken = self.take(idx, &r, encoded);
            if buf.capacity() > 64 * 1024 {
                buf = Vec::new();
            }
            self.buf = buf;
            return Some(taken);
        }
    }

    /// Reads the next valid record of segment `idx` at the read position
    /// into `buf`, opening the segment if the reader is elsewhere.
    fn read_at_cursor(&mut self, idx: usize, buf: &mut Vec<u8>) -> Result<Found, String> {
        let (id, end) = (self.segs[idx].id, self.segs[idx].end);
        if self.reader.as_ref().is_none_or(|(r, _)| *r != id) {
            let f = File::open(self.dir.join(seg_name(id)))
                .map_err(|e| format!("cannot open it: {e}"))?;
            self.reader = Some((id, f));
        }
        let Some((_, file)) = &self.reader else {
            return Err("cannot open it".into());
        };
        read_from(file, self.read.off, end, buf).map_err(|e| format!("cannot read it: {e}"))
    }

    /// Damage met while reading, reported once per range.
    fn report_damage(&mut self, idx: usize, d: Damage) {
        let seg = &mut self.segs[idx];
        if seg.known_damage.contains(&d.from) {
            return;
        }
        seg.known_damage.push(d.from);
        Stats::add(&self.stats.spool_damaged_ranges, 1);
        tracing::error!(
            segment = %self.dir.join(seg_name(seg.id)).display(),
            offset = d.from,
            bytes = d.to - d.from,
            "spool: skipped damaged data (bad checksum or framing); the records around it are kept"
        );
    }

    /// Hands the record `r` (its bytes in `buf`) to the shipper: in flight
    /// until acknowledged.
    fn take(&mut self, idx: usize, r: &Located, encoded: Encoded) -> (Encoded, Pos) {
        let seg = &mut self.segs[idx];
        let points = encoded.points;
        let bytes = r.next - r.from;
        seg.unread_records = seg.unread_records.saturating_sub(1);
        seg.unread_points = seg.unread_points.saturating_sub(points);
        seg.unread_bytes = seg.unread_bytes.saturating_sub(bytes);
        let pos = Pos {
            seg: seg.id,
            off: r.next,
        };
        self.read.off = r.next;
        self.in_flight.push_back(InFlight { pos, points, bytes });
        tracing::trace!(
            segment = pos.seg,
            offset = r.from,
            seq = r.meta.seq,
            "spool: read"
        );
        (encoded, pos)
    }

    /// The reader moves past segment `idx`; points it still counted as
    /// unread could not be read and are dropped as `spool_damaged`.
    fn leave_segment(&mut self, idx: usize, why: &str) {
        let Some(seg) = self.segs.get_mut(idx) else {
            return;
        };
        if seg.unread_records > 0 {
            tracing::error!(
                segment = %self.dir.join(seg_name(seg.id)).display(),
                batches = seg.unread_records,
                points = seg.unread_points,
                "spool: batches in this segment cannot be delivered ({why}); dropped"
            );
            self.stats
                .drop_points(DropReason::SpoolDamaged, seg.unread_points);
            seg.unread_records = 0;
            seg.unread_points = 0;
            seg.unread_bytes = 0;
        }
        let writing = self.writer.as_ref().is_some_and(|(w, _)| *w == seg.id);
        if writing {
            // Nothing more can be read from it: write the next batches elsewhere.
            self.writer = None;
        }
        self.read = Pos {
            seg: seg.id + 1,
            off: 0,
        };
        self.collect_garbage();
    }

    /// The shipper is done with the record ending at `pos`, and every one
    /// before it (delivered, or dropped for good): persist the position and
    /// delete what is finished.
    pub fn ack(&mut self, pos: Pos) -> io::Result<()> {
        while self.in_flight.front().is_some_and(|f| f.pos <= pos) {
            self.in_flight.pop_front();
        }
        if let Some(seg) = self.segs.iter_mut().find(|s| s.id == pos.seg) {
            seg.start = seg.start.max(pos.off);
        }
        self.ack_gen += 1;
        let slot = Ack {
            generation: self.ack_gen,
            pos,
            last_seq: self.last_seq,
        }
        .encode();
        let at = (self.ack_gen % 2) * ACK_SLOT as u64;
        let path = self.dir.join("ack");
        self.ack_file
            .write_all_at(&slot, at)
            .map_err(|e| io_context("cannot write", &path, e))?;
        self.reclaim_writer();
        self.collect_garbage();
        Ok(())
    }

    /// When everything written was delivered and the segment being written
    /// holds `RECLAIM_BYTES` or more, the next append starts a new segment
    /// and this one goes with the garbage.
    fn reclaim_writer(&mut self) {
        let Some((id, _)) = &self.writer else { return };
        let Some(seg) = self.segs.iter().find(|s| s.id == *id) else {
            return;
        };
        let delivered = seg.unread_records == 0
            && self.in_flight.is_empty()
            && self.read.seg == seg.id
            && self.read.off >= seg.end;
        if delivered && seg.size >= RECLAIM_BYTES {
            self.writer = None;
        }
    }

    /// Flushes everything to disk, acknowledgements included (at exit).
    pub fn sync(&mut self) -> io::Result<()> {
        self.maybe_sync(true)
    }
}

/// Takes the spool's lock file, or says which process holds it.
fn take_lock(dir: &Path) -> Result<Flock<File>, String> {
    let path = dir.join("lock");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(&path)
        .map_err(|e| format!("spool: cannot open {}: {e}", path.display()))?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((mut file, errno)) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            return Err(if errno == nix::errno::Errno::EWOULDBLOCK {
                format!(
                    "spool directory {} is in use by another procship (pid {}); give each agent its own PROCSHIP_SPOOL_DIR",
                    dir.display(),
                    if pid.is_empty() { "unknown" } else { pid }
                )
            } else {
                format!("spool: cannot lock {}: {errno}", path.display())
            });
        }
    };
    let pid = format!("{}\n", std::process::id());
    lock.set_len(0)
        .and_then(|_| lock.write_all_at(pid.as_bytes(), 0))
        .and_then(|_| lock.flush())
        .map_err(|e| format!("spool: cannot write {}: {e}", path.display()))?;
    Ok(lock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::testutil::tempdir;

    fn cfg(dir: &Path, max_bytes: u64) -> Options {
        Options {
            dir: dir.to_path_buf(),
            max_bytes,
            sync: SyncMode::Batch,
        }
    }

    fn batch(seq: u64, len: usize) -> Encoded {
        Encoded {
            seq,
            points: 10,
            oldest: seq as i64 * 1000,
            format: Format::Influx,
            compression: Compression::None,
            born: Born {
                run: 7,
                at_ns: seq * 10,
            },
            body: (0..len).map(|i| (i % 251) as u8).collect(),
        }
    }

    fn open(dir: &Path, max: u64) -> (Spool, Recovery, Arc<Stats>) {
        let stats = Arc::new(Stats::default());
        let (s, r) = Spool::open(&cfg(dir, max), stats.clone()).unwrap();
        (s, r, stats)
    }

    fn drain(s: &mut Spool) -> Vec<u64> {
        let mut seqs = Vec::new();
        while let Some((e, pos)) = s.read_next() {
            seqs.push(e.seq);
            s.ack(pos).unwrap();
        }
        seqs
    }

    fn segments(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_delivered_segment_is_given_up_early_so_a_healthy_host_keeps_little() {
        let dir = tempdir();
        let (mut s, _, _) = open(&dir, 256 << 20);
        assert_eq!(s.segment_bytes, 16 << 20);
        for seq in 1..=200 {
            s.append(&batch(seq, 1300)).unwrap();
            assert_eq!(drain(&mut s), [seq]);
            assert!(
                s.pending().disk_bytes < RECLAIM_BYTES + 2000,
                "{} bytes on disk after batch {seq}",
                s.pending().disk_bytes
            );
        }
        assert!(segments(&dir).len() <= 1);
        drop(s);
        let (mut s, rec, _) = open(&dir, 256 << 20);
        assert_eq!(rec.batches, 0, "nothing is sent twice after a restart");
        assert_eq!(s.next_seq(), 201, "the sequence goes on");
        assert!(drain(&mut s).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pending_counts_what_waits_apart_from_the_disk_it_uses() {
        let dir = tempdir();
        let (mut s, _, _) = open(&dir, 1 << 20);
        let record = (HEADER + META + 100) as u64;
        s.append(&batch(1, 100)).unwrap();
        s.append(&batch(2, 100)).unwrap();
        assert_eq!(s.pending().bytes, 2 * record);
        let (_, pos) = s.read_next().unwrap();
        assert_eq!(
            s.pending().bytes,
            2 * record,
            "the batch in flight still waits"
        );
        s.ack(pos).unwrap();
        let p = s.pending();
        assert_eq!((p.batches, p.bytes), (1, record));
        assert!(
            p.disk_bytes >= 2 * record,
            "acknowledged bytes stay on disk: {p:?}"
        );
        drop(s);
        let (s, _, _) = open(&dir, 1 << 20);
        assert_eq!(s.pending().bytes, record, "the same after a restart");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn frames_round_trip_and_checksums_catch_flips() {
        let e = batch(7, 100);
        let mut rec = Vec::new();
        frame(&e, &mut rec);
        let dir = tempdir();
        let path = dir.join("x");
        std::fs::write(&path, &rec).unwrap();
        let f = File::open(&path).unwrap();
        let mut buf = Vec::new();
        let (meta, next) = record_at(&f, 0, rec.len() as u64, &mut buf)
            .unwrap()
            .unwrap();
        assert_eq!((meta.seq, meta.points, meta.oldest), (7, 10, 7000));
        assert_eq!(meta.born, e.born);
        assert_eq!(next, rec.len() as u64);
        assert_eq!(&buf[META..], &e.body[..]);
        for i in 0..rec.len() {
            let mut bad = rec.clone();
            bad[i] ^= 0x20;
            std::fs::write(&path, &bad).unwrap();
            let f = File::open(&path).unwrap();
            assert!(
                record_at(&f, 0, bad.len() as u64, &mut buf)
                    .unwrap()
                    .is_none(),
                "a flip at byte {i} went unnoticed"
            );
        }
    }

    /// A record as the first spool version wrote it: `PSr1`, a 24-byte meta.
    fn frame_v1(e: &Encoded) -> Vec<u8> {
        let mut v2 = Vec::new();
        frame(e, &mut v2);
        let mut body = v2[HEADER..HEADER + META_V1].to_vec();
        body.extend_from_slice(&e.body);
        let mut rec = MAGIC_V1.to_vec();
        rec.extend_from_slice(&(body.len() as u32).to_le_bytes());
        rec.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        rec.extend_from_slice(&body);
        rec
    }

    #[test]
    fn records_of_the_first_version_are_read_without_a_birth() {
        let dir = tempdir();
        let (s, _, _) = open(&dir, 1 << 20);
        drop(s);
        let mut seg = frame_v1(&batch(3, 50));
        seg.extend(frame_v1(&batch(4, 60)));
        std::fs::write(dir.join(seg_name(1)), &seg).unwrap();
        let (mut s, r, _) = open(&dir, 1 << 20);
        assert_eq!((r.batches, r.damaged_ranges), (2, 0));
        s.append(&batch(5, 70)).unwrap();
        let mut got = Vec::new();
        while let Some((e, pos)) = s.read_next() {
            got.push((e.seq, e.body.len(), e.born));
            s.ack(pos).unwrap();
        }
        let born5 = batch(5, 70).born;
        assert_eq!(
            got,
            [
                (3, 50, Born::default()),
                (4, 60, Born::default()),
                (5, 70, born5)
            ]
        );
    }

    #[test]
    fn several_in_flight_are_pending_until_the_last_is_acknowledged() {
        let dir = tempdir();
        let (mut s, _, _) = open(&dir, 1 << 20);
        for seq in 1..=5 {
            s.append(&batch(seq, 300)).unwrap();
        }
        let first = s.read_next().unwrap();
        let taken: Vec<_> = std::iter::from_fn(|| s.read_next_if(|e, _| e.seq <= 3)).collect();
        assert_eq!(taken.iter().map(|(e, _)| e.seq).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(s.pending().batches, 5, "three in flight, two unread");
        assert!(s.read_next_if(|e, _| e.seq <= 3).is_none(), "4 stays first");
        s.ack(taken[1].1).unwrap();
        assert!(first.1 < taken[1].1);
        assert_eq!(s.pending().batches, 2);
        drop(s);
        let (mut s, r, _) = open(&dir, 1 << 20);
        assert_eq!(r.batches, 2, "the acknowledgement covers 1..=3");
        assert_eq!(drain(&mut s), [4, 5]);
    }

    #[test]
    fn appended_batches_come_back_in_order_and_survive_reopen() {
        let dir = tempdir();
        let (mut s, r, _) = open(&dir, 1 << 20);
        assert_eq!(r, Recovery::default());
        assert_eq!(s.next_seq(), 1);
        for seq in 1..=5 {
            s.append(&batch(seq, 300)).unwrap();
        }
        let (e, pos) = s.read_next().unwrap();
        assert_eq!(e.seq, 1);
        s.ack(pos).unwrap();
        let (e, _) = s.read_next().unwrap();
        assert_eq!(e.seq, 2, "handed out, never acknowledged");
        drop(s);
        let (mut s, r, stats) = open(&dir, 1 << 20);
        assert_eq!((r.batches, r.points), (4, 40), "2..=5 are pending");
        assert_eq!(Stats::get(&stats.spool_recovered), 40);
        assert_eq!(s.next_seq(), 6, "sequence goes on");
        assert_eq!(drain(&mut s), [2, 3, 4, 5]);
        assert_eq!(s.pending().batches, 0);
    }

    #[test]
    fn acknowledged_segments_are_deleted() {
        let dir = tempdir();
        let (mut s, _, _) = open(&dir, 128 << 10); // 16 KiB segments
        for seq in 1..=40 {
            s.append(&batch(seq, 1000)).unwrap();
        }
        assert!(segments(&dir).len() >= 3);
        assert_eq!(drain(&mut s).len(), 40);
        assert!(segments(&dir).len() <= 1, "{:?}", segments(&dir));
        drop(s);
        let (mut s, r, _) = open(&dir, 128 << 10);
        assert_eq!(r.batches, 0);
        assert!(s.read_next().is_none());
        assert_eq!(s.next_seq(), 41);
    }

    #[test]
    fn full_budget_drops_oldest_segment_and_counts() {
        let dir = tempdir();
        let (mut s, _, stats) = open(&dir, 128 << 10);
        for seq in 1..=300 {
            s.append(&batch(seq, 1000)).unwrap();
        }
        let dropped = stats.dropped(DropReason::SpoolFull);
        assert!(dropped > 0);
        let on_disk: u64 = segments(&dir)
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum();
        assert!(on_disk <= 128 << 10, "{on_disk}");
        let seqs = drain(&mut s);
        assert_eq!(*seqs.last().unwrap(), 300, "the newest are kept");
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "no hole in what is kept"
        );
        assert_eq!(
            dropped + 10 * seqs.len() as u64,
            3000,
            "every point accounted for"
        );
    }

    #[test]
    fn torn_tail_and_flipped_byte_lose_only_the_damaged_records() {
        let dir = tempdir();
        let (mut s, _, _) = open(&dir, 1 << 20);
        for seq in 1..=6 {
            s.append(&batch(seq, 500)).unwrap();
        }
        drop(s);
        let seg = segments(&dir).pop().unwrap();
        let mut bytes = std::fs::read(&seg).unwrap();
        let rec = bytes.len() / 6;
        bytes[rec + 100] ^= 1; // record 2's body
        bytes[3 * rec + 5] ^= 0xff; // record 4's length
        bytes.truncate(bytes.len() - 10); // record 6 torn
        std::fs::write(&seg, &bytes).unwrap();
        let (mut s, r, stats) = open(&dir, 1 << 20);
        assert_eq!((r.batches, r.damaged_ranges), (3, 3), "{r:?}");
        assert_eq!(Stats::get(&stats.spool_damaged_ranges), 3);
        assert_eq!(s.next_seq(), 7, "the torn record's number is not reused");
        assert_eq!(drain(&mut s), [1, 3, 5]);
        assert_eq!(Stats::get(&stats.spool_damaged_ranges), 3, "reported once");
    }

    #[test]
    fn damaged_ack_file_resends_everything() {
        let dir = tempdir();
        let (mut s, _, _) = open(&dir, 1 << 20);
        for seq in 1..=3 {
            s.append(&batch(seq, 100)).unwrap();
        }
        let (_, pos) = s.read_next().unwrap();
        s.ack(pos).unwrap();
        drop(s);
        std::fs::write(dir.join("ack"), b"garbage").unwrap();
        let (mut s, r, _) = open(&dir, 1 << 20);
        assert_eq!(r.batches, 3);
        assert_eq!(drain(&mut s), [1, 2, 3]);
    }

    #[test]
    fn ack_slots_survive_a_torn_slot() {
        let a = Ack {
            generation: 5,
            pos: Pos { seg: 2, off: 90 },
            last_seq: 12,
        };
        let b = Ack { generation: 6, ..a };
        let mut file = Vec::new();
        file.extend_from_slice(&b.encode());
        file.extend_from_slice(&a.encode());
        assert_eq!(Ack::newest(&file), Some(b));
        file[10] ^= 1;
        assert_eq!(Ack::newest(&file), Some(a));
        assert_eq!(Ack::newest(&[]), None);
    }

    #[test]
    fn second_opener_is_refused_with_the_owner_pid() {
        let dir = tempdir();
        let (_s, _, _) = open(&dir, 1 << 20);
        let err = Spool::open(&cfg(&dir, 1 << 20), Arc::new(Stats::default()))
            .err()
            .unwrap();
        assert!(err.contains("in use by another procship"), "{err}");
        assert!(err.contains(&std::process::id().to_string()), "{err}");
    }

    #[test]
    fn bad_directories_are_refused() {
        let dir = tempdir();
        assert!(
            check_dir(&dir.join("missing"))
                .unwrap_err()
                .contains("create it")
        );
        std::fs::write(dir.join("file"), b"").unwrap();
        assert!(
            check_dir(&dir.join("file"))
                .unwrap_err()
                .contains("not a directory")
        );
        if nix::unistd::geteuid().is_root() {
            // Root owns what it creates: give a directory away to nobody.
            let other = dir.join("other");
            std::fs::create_dir(&other).unwrap();
            nix::unistd::chown(&other, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
            assert!(
                check_dir(&other)
                    .unwrap_err()
                    .contains("owned by uid 65534")
            );
        } else {
            assert!(
                check_dir(Path::new("/"))
                    .unwrap_err()
                    .contains("owned by uid 0")
            );
        }
        assert_eq!(check_dir(&dir), Ok(()));
    }
}
