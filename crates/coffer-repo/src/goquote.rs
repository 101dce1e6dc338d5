//! Go's `strconv.Quote`/`Unquote` without the surrounding quotes. restic stores node names in
//! this escaped form so that names which are not UTF-8 survive JSON; we must read and write the
//! same form to stay compatible in both directions.

/// Escapes raw name bytes the way restic's `Node.MarshalJSON` does.
pub fn quote(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                push_str(&mut out, s);
                break;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                // SAFETY-free: `good` is valid UTF-8 by construction.
                push_str(&mut out, std::str::from_utf8(good).unwrap_or_default());
                let n = e.error_len().unwrap_or(bad.len());
                for b in &bad[..n] {
                    out.push_str(&format!("\\x{b:02x}"));
                }
                rest = &bad[n..];
            }
        }
    }
    out
}

fn push_str(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if is_printable(c) => out.push(c),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
}

// An approximation of Go's unicode.IsPrint: Go escapes control, format, private-use and
// space characters other than U+0020. Unquote accepts both forms, so a difference here only
// changes tree bytes, never what is restored.
fn is_printable(c: char) -> bool {
    let u = c as u32;
    if u < 0x80 {
        return (0x20..0x7f).contains(&u);
    }
    !matches!(u,
        0x80..=0xa0 | 0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x1680 | 0x180e
        | 0x2000..=0x200f | 0x2028..=0x202f | 0x205f..=0x206f | 0x3000 | 0xd800..=0xf8ff
        | 0xfeff | 0xfff9..=0xfffb | 0xfffe | 0xffff | 0xe0000..=0xe0fff | 0xf0000..)
}

/// Failure to unescape a stored name.
#[derive(Debug, thiserror::Error)]
#[error("invalid escaped name {0:?}")]
pub struct UnquoteError(pub String);

/// Reverses [`quote`], accepting everything Go's `strconv.Unquote` accepts.
pub fn unquote(s: &str) -> Result<Vec<u8>, UnquoteError> {
    if !s.contains('\\') {
        return Ok(s.as_bytes().to_vec());
    }
    let err = || UnquoteError(s.to_string());
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let hex = |from: usize, n: usize| -> Result<u32, UnquoteError> {
        let t = s.get(from..from + n).ok_or_else(err)?;
        u32::from_str_radix(t, 16).map_err(|_| err())
    };
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let c = *b.get(i + 1).ok_or_else(err)?;
        i += 2;
        match c {
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(0xc),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0xb),
            b'\\' | b'"' | b'\'' => out.push(c),
            b'x' => {
                out.push(hex(i, 2)? as u8);
                i += 2;
            }
            b'0'..=b'7' => {
                let t = s.get(i - 1..i + 2).ok_or_else(err)?;
                let v = u32::from_str_radix(t, 8).map_err(|_| err())?;
                out.push(u8::try_from(v).map_err(|_| err())?);
                i += 2;
            }
            b'u' | b'U' => {
                let n = if c == b'u' { 4 } else { 8 };
                let ch = char::from_u32(hex(i, n)?).ok_or_else(err)?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                i += n;
            }
            _ => return Err(err()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_go() {
        assert_eq!(quote(b"plain.txt"), "plain.txt");
        assert_eq!(quote("日本語 é".as_bytes()), "日本語 é");
        assert_eq!(quote(b"a\"b\\c"), "a\\\"b\\\\c");
        assert_eq!(quote(b"tab\there\n"), "tab\\there\\n");
        assert_eq!(quote(b"bad\xffname\x01"), "bad\\xffname\\x01");
        assert_eq!(quote("\u{feff}x".as_bytes()), "\\ufeffx");
    }

    #[test]
    fn round_trips() {
        for raw in [
            &b"plain"[..],
            b"\xff\xfe\x80",
            "日本\u{200b}".as_bytes(),
            b"q\"\\\x7f\x00",
            "\u{f0000}".as_bytes(),
        ] {
            assert_eq!(unquote(&quote(raw)).unwrap(), raw);
        }
        assert_eq!(unquote("\\101\\u00e9").unwrap(), "Aé".as_bytes());
        assert!(unquote("bad\\").is_err());
        assert!(unquote("\\q").is_err());
    }
}
