//! Row counts per table, read from a `mariadb-dump` SQL stream as it goes into the repository
//! (see [`crate::row_counts`]). Each table's data is a `LOCK TABLES `t` WRITE;` ...
//! `UNLOCK TABLES;` section of `INSERT INTO `t` VALUES (...),(...);` statements; the rows are
//! the top-level tuples of those statements. Strings (with backslash escapes), quoted names,
//! comments and `DELIMITER` blocks (routines, triggers) are skipped properly, so that an
//! INSERT inside a routine body or a parenthesis inside a value is not counted. A table
//! with a data section and no INSERT had no rows; views have no data section.

use std::io::{self, Read};

use crate::row_counts::RowCounts;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Single,
    Double,
    Name,
    Line,
    Block,
}

struct Parser {
    quote: Quote,
    escaped: bool,
    prev: u8,
    /// The statement's first bytes, enough to recognise it.
    head: Vec<u8>,
    /// Its last bytes outside quotes, to find the delimiter.
    tail: Vec<u8>,
    depth: i64,
    tuples: u64,
    delimiter: Vec<u8>,
    current: Option<String>,
    counts: RowCounts,
}

const HEAD: usize = 512;

/// The backtick-quoted name at the start of `s`.
fn name(s: &[u8]) -> Option<String> {
    let s = s.strip_prefix(b"`")?;
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'`' {
            if s.get(i + 1) == Some(&b'`') {
                out.push(b'`');
                i += 2;
                continue;
            }
            return Some(String::from_utf8_lossy(&out).into_owned());
        }
        out.push(s[i]);
        i += 1;
    }
    None
}

impl Parser {
    fn new() -> Parser {
        Parser {
            quote: Quote::None,
            escaped: false,
            prev: 0,
            head: Vec::new(),
            tail: Vec::new(),
            depth: 0,
            tuples: 0,
            delimiter: b";".to_vec(),
            current: None,
            counts: RowCounts::new(),
        }
    }

    fn trimmed_head(&self) -> &[u8] {
        let start = self
            .head
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(self.head.len());
        &self.head[start..]
    }

    fn end_statement(&mut self) {
        let h = self.trimmed_head().to_vec();
        if let Some(rest) = h.strip_prefix(b"LOCK TABLES ") {
            if let Some(t) = name(rest) {
                self.counts.entry(t.clone()).or_insert(0);
                self.current = Some(t);
            }
        } else if h.starts_with(b"UNLOCK TABLES") {
            self.current = None;
        } else if let Some(rest) = h.strip_prefix(b"INSERT INTO ") {
            if let (Some(t), Some(cur)) = (name(rest), &self.current) {
                if &t == cur {
                    *self.counts.entry(t).or_insert(0) += self.tuples;
                }
            }
        }
        self.head.clear();
        self.tail.clear();
        self.depth = 0;
        self.tuples = 0;
    }

    fn push_head(&mut self, b: u8) {
        if self.head.len() < HEAD {
            self.head.push(b);
        }
    }

    fn feed(&mut self, b: u8) {
        let prev = std::mem::replace(&mut self.prev, b);
        match self.quote {
            Quote::Line => {
                if b == b'\n' {
                    self.quote = Quote::None;
                }
                return;
            }
            Quote::Block => {
                if prev == b'*' && b == b'/' {
                    self.quote = Quote::None;
                    self.prev = 0;
                }
                return;
            }
            Quote::Single | Quote::Double => {
                self.push_head(b);
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if (b == b'\'' && self.quote == Quote::Single)
                    || (b == b'"' && self.quote == Quote::Double)
                {
                    self.quote = Quote::None;
                }
                return;
            }
            Quote::Name => {
                self.push_head(b);
                if b == b'`' {
                    self.quote = Quote::None;
                }
                return;
            }
            Quote::None => {}
        }
        // `DELIMITER x` is a client command: it ends at the end of its line.
        if b == b'\n' && self.trimmed_head().starts_with(b"DELIMITER ") {
            let d = self.trimmed_head()[b"DELIMITER ".len()..]
                .trim_ascii()
                .to_vec();
            if !d.is_empty() {
                self.delimiter = d;
            }
            self.head.clear();
            self.tail.clear();
            return;
        }
        if prev == b'/' && b == b'*' {
            self.head.pop();
            self.tail.pop();
            self.quote = Quote::Block;
            return;
        }
        if b == b'-' && self.trimmed_head() == b"-" {
            self.head.clear();
            self.quote = Quote::Line;
            return;
        }
        if b == b'#' && self.trimmed_head().is_empty() {
            self.quote = Quote::Line;
            return;
        }
        self.push_head(b);
        self.tail.push(b);
        if self.tail.len() > 8 {
            self.tail.remove(0);
        }
        match b {
            b'\'' => self.quote = Quote::Single,
            b'"' => self.quote = Quote::Double,
            b'`' => self.quote = Quote::Name,
            b'(' => {
                self.depth += 1;
                if self.depth == 1 {
                    self.tuples += 1;
                }
            }
            b')' => self.depth -= 1,
            _ => {}
        }
        if self.tail.ends_with(&self.delimiter) && !self.trimmed_head().starts_with(b"DELIMITER ") {
            self.end_statement();
        }
    }
}

/// Reads a whole dump and counts the rows of each table's data.
pub fn count(r: &mut dyn Read) -> io::Result<RowCounts> {
    let mut p = Parser::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            p.feed(b);
        }
    }
    if p.quote == Quote::Single || p.quote == Quote::Double {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the dump ends inside a string",
        ));
    }
    Ok(p.counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_tuples_of_data_sections_only() {
        let dump = "-- MariaDB dump\n/*!40101 SET NAMES utf8mb4 */;\n\
            CREATE TABLE `a` (\n  `id` int(11) NOT NULL COMMENT 'x;(y)'\n);\n\
            LOCK TABLES `a` WRITE;\n\
            INSERT INTO `a` VALUES\n(1,'x(1),(2)\\'\\\\q\\n',0x0102),\n(2,NULL,NULL);\n\
            INSERT INTO `a` VALUES (3,'a;b'),(4,\"q\");\n\
            UNLOCK TABLES;\n\
            LOCK TABLES `e``x` WRITE;\nUNLOCK TABLES;\n\
            -- Temporary table structure for view `v`\n/*!50001 CREATE VIEW `v` AS SELECT 1 */;\n\
            DELIMITER ;;\nCREATE PROCEDURE `p`() BEGIN INSERT INTO `a` VALUES (9); INSERT INTO `a` VALUES (10); END ;;\nDELIMITER ;\n\
            # a comment\n";
        let c = count(&mut dump.as_bytes()).unwrap();
        assert_eq!(c.get("a"), Some(&4), "{c:?}");
        assert_eq!(c.get("e`x"), Some(&0), "{c:?}");
        assert_eq!(c.len(), 2, "{c:?}");
        assert!(count(&mut &b"INSERT INTO `a` VALUES ('x"[..]).is_err());
    }
}
