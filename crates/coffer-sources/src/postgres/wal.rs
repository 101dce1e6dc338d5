//! PostgreSQL's WAL file names and segment headers, as far as archiving needs them.
//!
//! The archive holds four kinds of file: segments (`000000010000000A000000FF`, 24 hex digits:
//! timeline, log, segment), partial segments left by a promotion (`.partial`), backup history
//! files (`<segment>.<offset>.backup`) and timeline history files (`00000002.history`).
//! A segment's first page carries a long header with the cluster's system identifier, the
//! timeline and the segment's own address; `wal-push` and `wal-fetch` check those against the
//! file name and the cluster, so a segment from another cluster or a renamed file never enters
//! or leaves the archive.

use std::fmt;

/// What kind of archived file a name denotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalKind {
    /// A full WAL segment.
    Segment,
    /// The last, incomplete segment of a timeline a promotion ended (`.partial`).
    Partial,
    /// A backup history file (`.backup`).
    BackupHistory,
    /// A timeline history file (`.history`).
    TimelineHistory,
}

impl WalKind {
    /// The word used in manifests and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            WalKind::Segment => "segment",
            WalKind::Partial => "partial",
            WalKind::BackupHistory => "backup-history",
            WalKind::TimelineHistory => "timeline-history",
        }
    }
}

/// A parsed archive file name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalName {
    /// The name as PostgreSQL gives it.
    pub name: String,
    /// Its kind.
    pub kind: WalKind,
    /// Timeline.
    pub timeline: u32,
    /// Log number (high 32 bits of the segment's address); 0 for history files.
    pub log: u32,
    /// Segment within the log; 0 for history files.
    pub seg: u32,
}

fn hex8(s: &str) -> Option<u32> {
    if s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        u32::from_str_radix(s, 16).ok()
    } else {
        None
    }
}

impl WalName {
    /// Parses a file name (no directory); None when PostgreSQL would not archive such a name.
    pub fn parse(name: &str) -> Option<WalName> {
        let make = |kind, stem: &str| {
            let timeline = hex8(stem.get(0..8)?)?;
            let log = hex8(stem.get(8..16)?)?;
            let seg = hex8(stem.get(16..24)?)?;
            (stem.len() == 24 && timeline > 0).then(|| WalName {
                name: name.to_string(),
                kind,
                timeline,
                log,
                seg,
            })
        };
        if let Some(tli) = name.strip_suffix(".history") {
            let timeline = hex8(tli)?;
            return (timeline > 0).then(|| WalName {
                name: name.to_string(),
                kind: WalKind::TimelineHistory,
                timeline,
                log: 0,
                seg: 0,
            });
        }
        if let Some(stem) = name.strip_suffix(".partial") {
            return make(WalKind::Partial, stem);
        }
        if let Some(rest) = name.strip_suffix(".backup") {
            let (stem, offset) = rest.split_once('.')?;
            hex8(offset)?;
            return make(WalKind::BackupHistory, stem);
        }
        make(WalKind::Segment, name)
    }

    /// A sortable position (log and segment, timeline left out) used to decide which archived
    /// files a base backup needs; None for timeline history files, which are always kept.
    pub fn position(&self) -> Option<String> {
        (self.kind != WalKind::TimelineHistory).then(|| format!("{:08X}{:08X}", self.log, self.seg))
    }

    /// The byte address where the segment starts.
    pub fn start_address(&self, seg_size: u64) -> u64 {
        (u64::from(self.log) << 32) + u64::from(self.seg) * seg_size
    }
}

impl fmt::Display for WalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// Parses an LSN as PostgreSQL prints it (`16/B374D848`).
pub fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.trim().split_once('/')?;
    let hi = u64::from_str_radix(hi, 16).ok()?;
    let lo = u64::from_str_radix(lo, 16).ok()?;
    (hi <= u64::from(u32::MAX) && lo <= u64::from(u32::MAX)).then_some((hi << 32) | lo)
}

/// Prints an LSN the way PostgreSQL does.
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// The name of the segment holding `lsn` on `timeline`.
pub fn segment_name(timeline: u32, lsn: u64, seg_size: u64) -> String {
    let segno = lsn / seg_size;
    let per_log = 0x1_0000_0000 / seg_size;
    format!(
        "{timeline:08X}{:08X}{:08X}",
        segno / per_log,
        segno % per_log
    )
}

/// The fields of a segment's first (long) page header that identify it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Timeline of the first page. A segment that starts a new timeline begins with pages
    /// copied from the old one, so this may be lower than the name's timeline.
    pub timeline: u32,
    /// Address of the first page (the segment's start).
    pub page_address: u64,
    /// The cluster's system identifier.
    pub system_identifier: u64,
    /// Segment size the cluster was initialised with.
    pub seg_size: u32,
    /// WAL block size.
    pub block_size: u32,
}

// XLogLongPageHeaderData: xlp_magic u16, xlp_info u16, xlp_tli u32, xlp_pageaddr u64,
// xlp_rem_len u32 (+4 padding), xlp_sysid u64, xlp_seg_size u32, xlp_xlog_blcksz u32.
const XLP_LONG_HEADER: u16 = 0x0002;
const LONG_HEADER_LEN: usize = 40;

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Reads the long page header at the start of a segment.
pub fn parse_header(data: &[u8]) -> Result<SegmentHeader, String> {
    if data.len() < LONG_HEADER_LEN {
        return Err(format!(
            "{} bytes is too short for a WAL segment header",
            data.len()
        ));
    }
    let info = le_u16(data, 2);
    if info & XLP_LONG_HEADER == 0 {
        return Err("the first page has no long header: not the start of a WAL segment".into());
    }
    let h = SegmentHeader {
        timeline: le_u32(data, 4),
        page_address: le_u64(data, 8),
        system_identifier: le_u64(data, 24),
        seg_size: le_u32(data, 32),
        block_size: le_u32(data, 36),
    };
    if !h.seg_size.is_power_of_two() || !(1 << 20..=1 << 30).contains(&h.seg_size) {
        return Err(format!(
            "segment size {} in the header is not a valid WAL segment size",
            h.seg_size
        ));
    }
    Ok(h)
}

/// Checks that `data` is the segment its name says, and returns its header.
pub fn check_segment(name: &WalName, data: &[u8]) -> Result<SegmentHeader, String> {
    let h = parse_header(data)?;
    if data.len() as u64 != u64::from(h.seg_size) {
        return Err(format!(
            "{name} is {} bytes but its header says segments are {} bytes (truncated or not a WAL segment)",
            data.len(),
            h.seg_size
        ));
    }
    if h.timeline == 0 || h.timeline > name.timeline {
        return Err(format!(
            "{name} starts with a page of timeline {} (the name says timeline {})",
            h.timeline, name.timeline
        ));
    }
    let want = name.start_address(u64::from(h.seg_size));
    if h.page_address != want {
        return Err(format!(
            "{name} holds the segment at {} but its name means {} (renamed file?)",
            format_lsn(h.page_address),
            format_lsn(want)
        ));
    }
    Ok(h)
}

/// The system identifier in a data directory's `global/pg_control` (its first field), if the
/// directory is a cluster's.
pub fn control_system_identifier(data_dir: &std::path::Path) -> Option<u64> {
    let b = std::fs::read(data_dir.join("global/pg_control")).ok()?;
    (b.len() >= 8).then(|| le_u64(&b, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let s = WalName::parse("000000010000000A000000FF").unwrap();
        assert_eq!(
            (s.kind, s.timeline, s.log, s.seg),
            (WalKind::Segment, 1, 10, 255)
        );
        assert_eq!(s.position().unwrap(), "0000000A000000FF");
        let p = WalName::parse("000000020000000000000005.partial").unwrap();
        assert_eq!((p.kind, p.timeline, p.seg), (WalKind::Partial, 2, 5));
        let b = WalName::parse("000000010000000000000002.00000028.backup").unwrap();
        assert_eq!((b.kind, b.seg), (WalKind::BackupHistory, 2));
        let h = WalName::parse("00000002.history").unwrap();
        assert_eq!(
            (h.kind, h.timeline, h.position()),
            (WalKind::TimelineHistory, 2, None)
        );
        for bad in [
            "",
            "00000000.history",
            "0000000100000000000000",
            "000000010000000000000002.backup",
            "00000001000000000000000G",
            "000000000000000000000001",
            "RECOVERYXLOG",
        ] {
            assert!(WalName::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn lsn_and_segments() {
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
        assert_eq!(parse_lsn("x/1"), None);
        let seg = 16 << 20;
        assert_eq!(
            segment_name(1, 0x0200_0028, seg),
            "000000010000000000000002"
        );
        assert_eq!(
            segment_name(3, 0x1_FF00_0000, seg),
            "0000000300000001000000FF"
        );
        let n = WalName::parse("0000000300000001000000FF").unwrap();
        assert_eq!(n.start_address(seg), 0x1_FF00_0000);
    }

    fn segment(tli: u32, addr: u64, sysid: u64, size: usize) -> Vec<u8> {
        let mut d = vec![0u8; size];
        d[0..2].copy_from_slice(&0xD110u16.to_le_bytes());
        d[2..4].copy_from_slice(&(XLP_LONG_HEADER | 0x4).to_le_bytes());
        d[4..8].copy_from_slice(&tli.to_le_bytes());
        d[8..16].copy_from_slice(&addr.to_le_bytes());
        d[24..32].copy_from_slice(&sysid.to_le_bytes());
        d[32..36].copy_from_slice(&(size as u32).to_le_bytes());
        d[36..40].copy_from_slice(&8192u32.to_le_bytes());
        d
    }

    #[test]
    fn headers() {
        let size = 1 << 20;
        let name = WalName::parse("000000020000000000000005").unwrap();
        let good = segment(2, 5 * size as u64, 42, size);
        assert_eq!(check_segment(&name, &good).unwrap().system_identifier, 42);
        // The first segment of timeline 2 may begin with timeline 1's pages.
        assert!(check_segment(&name, &segment(1, 5 * size as u64, 42, size)).is_ok());
        let e = check_segment(&name, &segment(3, 5 * size as u64, 42, size)).unwrap_err();
        assert!(e.contains("timeline 3"), "{e}");
        let e = check_segment(&name, &segment(2, 6 * size as u64, 42, size)).unwrap_err();
        assert!(e.contains("renamed"), "{e}");
        let e = check_segment(&name, &good[..size / 2]).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
        assert!(parse_header(&[0u8; 64]).is_err());
        assert!(parse_header(&[1u8; 10]).is_err());
    }
}
