//! Sizes, rates and ages as people read them, in one style everywhere coffer prints them
//! (CLI, run warnings, alert texts, restore steps): binary units, as restic and `df -h` use,
//! with three significant digits (`812 KiB`, `72.5 MiB`, `1.46 GiB`, `72.5 MiB/s`), and
//! durations in their two largest units (`3h43m`, `2d4h`, `45s`).

/// A byte count: `17 B`, `812 KiB`, `72.5 MiB`, `1.46 GiB`.
pub fn bytes(n: u64) -> String {
    const U: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        return format!("{n} B");
    }
    // Three significant digits; 1023.6 KiB would print as "1024 KiB", which is fine.
    let digits = if v < 10.0 {
        2
    } else if v < 100.0 {
        1
    } else {
        0
    };
    format!("{v:.digits$} {}", U[i])
}

/// A rate from bytes over seconds: `72.5 MiB/s`.
pub fn rate(bytes_done: u64, seconds: f64) -> String {
    let per = bytes_done as f64 / seconds.max(0.001);
    format!("{}/s", bytes(per.min(u64::MAX as f64) as u64))
}

/// A duration in its two largest units: `45s`, `5m`, `3h43m`, `2d4h`, `3w1d`.
pub fn short_duration(secs: u64) -> String {
    const UNITS: [(&str, u64); 5] = [
        ("w", 604_800),
        ("d", 86_400),
        ("h", 3_600),
        ("m", 60),
        ("s", 1),
    ];
    let Some(first) = UNITS.iter().position(|(_, n)| secs >= *n) else {
        return "0s".into();
    };
    let (u1, n1) = UNITS[first];
    let mut out = format!("{}{u1}", secs / n1);
    if let Some((u2, n2)) = UNITS.get(first + 1) {
        let rest = secs % n1 / n2;
        if rest > 0 {
            out.push_str(&format!("{rest}{u2}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_significant_digits() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.00 KiB");
        assert_eq!(bytes(812 * 1024), "812 KiB");
        assert_eq!(bytes(76_021_760), "72.5 MiB");
        assert_eq!(bytes(1_567_000_000), "1.46 GiB");
        assert_eq!(rate(76_021_760, 1.0), "72.5 MiB/s");
    }

    #[test]
    fn durations() {
        assert_eq!(short_duration(45), "45s");
        assert_eq!(short_duration(300), "5m");
        assert_eq!(short_duration(3 * 3600 + 43 * 60 + 12), "3h43m");
        assert_eq!(short_duration(2 * 86400 + 4 * 3600), "2d4h");
    }
}
