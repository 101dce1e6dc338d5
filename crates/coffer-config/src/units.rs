//! Sizes, rates and ages as people read them, in one style everywhere coffer prints them
//! (CLI, run warnings, alert texts, restore steps): binary units, as restic and `df -h` use,
//! with three significant digits (`812 KiB`, `72.5 MiB`, `1.46 GiB`, `72.5 MiB/s`), and
//! durations in their two largest units (`3h43m`, `2d4h`, `45s`).

/// Parses a size such as `500`, `200K`, `16M`, `1.5G`, `2TiB` or `1P` (binary multiples;
/// `B`, `iB` and lower case accepted). Zero is a size; callers that need more say so.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, unit) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&t[..i], t[i..].trim().to_ascii_uppercase()),
        None => (t, String::new()),
    };
    let mult: u64 = match unit.trim_end_matches("IB").trim_end_matches('B') {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        "P" => 1 << 50,
        _ => {
            return Err(format!(
                "invalid size {s:?}: unknown unit (use K, M, G, T or P)"
            ))
        }
    };
    match num.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 && n * (mult as f64) < u64::MAX as f64 => {
            Ok((n * mult as f64) as u64)
        }
        _ => Err(format!(
            "invalid size {s:?}: use a number with K, M, G, T or P"
        )),
    }
}

/// Decodes `%XX` escapes (URL user names, passwords, database names). An escape that is not
/// two hex digits, or bytes that are not UTF-8, are an error, not a guess.
pub fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    for (i, _) in s.match_indices('%') {
        if !b
            .get(i + 1..i + 3)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
        {
            return Err("invalid %-escape (use %XX with two hex digits)".into());
        }
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| "%-escapes do not decode to UTF-8".into())
}

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
    #[test]
    fn sizes_parse_one_way() {
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("2KiB"), Ok(2048));
        assert_eq!(parse_size("1p"), Ok(1 << 50));
        assert_eq!(parse_size("0"), Ok(0));
        for bad in ["5X", "", "-1G", "1e30T", "G"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn percent_decoding_refuses_what_it_cannot_decode() {
        assert_eq!(percent_decode("p%40ss%3A").as_deref(), Ok("p@ss:"));
        assert_eq!(percent_decode("%E5%8C%97").as_deref(), Ok("北"));
        // Once a panic: an escape cut by a multi-byte character.
        assert!(percent_decode("%a北").is_err());
        assert!(percent_decode("%").is_err());
        assert!(percent_decode("%ff").is_err());
    }

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
