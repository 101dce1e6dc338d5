//! A drill's report as files: `<id>.json` for scripts and `<id>.html`, one self-contained page
//! (no scripts, no external styles or fonts) that a manager can open from a mail or a share:
//! the verdict first, then the targets, the steps, the checks and the snapshots restored.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use coffer_config::units::short_duration;

use crate::drill::DrillReport;

/// Writes both files into `dir` (created if missing); returns their paths (HTML, JSON).
pub fn write(dir: &Path, report: &DrillReport) -> Result<(PathBuf, PathBuf), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let json = dir.join(format!("{}.json", report.id));
    let html = dir.join(format!("{}.html", report.id));
    let body = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
    write_atomic(&json, body.as_bytes())?;
    write_atomic(&html, render(report).as_bytes())?;
    Ok((html, json))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("{}: {e}", path.display())
        })
}

/// Text made safe for HTML.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn badge(ok: bool, yes: &str, no: &str) -> String {
    format!(
        "<span class=\"{}\">{}</span>",
        if ok { "ok" } else { "bad" },
        if ok { yes } else { no }
    )
}

fn seconds(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.1} s")
    } else {
        short_duration(s.round() as u64)
    }
}

/// The HTML page.
pub fn render(r: &DrillReport) -> String {
    let mut h = String::new();
    let title = format!(
        "Drill {}: {}",
        r.scenario,
        if r.passed { "PASSED" } else { "FAILED" }
    );
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>\
         body{{font-family:system-ui,sans-serif;margin:2em auto;max-width:60em;color:#222;padding:0 1em}}\
         h1{{font-size:1.5em}} table{{border-collapse:collapse;width:100%;margin:1em 0}}\
         th,td{{border-bottom:1px solid #ddd;padding:.4em;text-align:left;vertical-align:top}}\
         th{{background:#f4f4f4}} .ok{{color:#1a7f37;font-weight:600}} .bad{{color:#c62828;font-weight:600}}\
         .skip{{color:#777}} .verdict{{font-size:1.2em;padding:.8em;border-radius:.3em;margin:1em 0}}\
         .pass{{background:#e6f4ea}} .fail{{background:#fdecea}} code{{font-size:.9em}}\
         </style></head><body>\n",
        esc(&title)
    );
    let _ = write!(
        h,
        "<h1>Restore drill: {}</h1>\n<p>{}</p>\n<div class=\"verdict {}\">{}</div>\n",
        esc(&r.scenario),
        esc(&r.description),
        if r.passed { "pass" } else { "fail" },
        if r.passed {
            "Passed: everything was restored, every check passed and both targets were met."
                .to_string()
        } else {
            format!(
                "Failed: {}",
                r.failures
                    .iter()
                    .map(|f| esc(f))
                    .collect::<Vec<_>>()
                    .join("<br>")
            )
        }
    );
    let _ = write!(
        h,
        "<table><tr><th>Drill</th><td><code>{}</code> on {} at {}</td></tr>\
         <tr><th>Recovery time (RTO)</th><td>{} (target {}) {}</td></tr>",
        esc(&r.id),
        esc(&r.host),
        r.started.format("%Y-%m-%d %H:%M:%S UTC"),
        seconds(r.rto_seconds),
        short_duration(r.rto_target_seconds),
        badge(r.rto_met, "met", "missed")
    );
    if let (Some(a), Some(t), Some(met)) = (r.rpo_seconds, r.rpo_target_seconds, r.rpo_met) {
        let _ = write!(
            h,
            "<tr><th>Data lost (RPO)</th><td>the newest backup was {} old (target {}) {}</td></tr>",
            short_duration(a),
            short_duration(t),
            badge(met, "met", "missed")
        );
    }
    h.push_str("</table>\n<h2>Steps</h2>\n<table><tr><th>#</th><th>Step</th><th>Result</th><th>Time</th><th>Details</th></tr>\n");
    for (i, s) in r.steps.iter().enumerate() {
        let class = match s.status.as_str() {
            "SUCCESS" => "ok",
            "SKIPPED" => "skip",
            _ => "bad",
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"{class}\">{}</td><td>{}</td><td>{}</td></tr>",
            i + 1,
            esc(&s.step),
            esc(&s.status),
            seconds(s.seconds),
            esc(&s.message)
        );
    }
    h.push_str("</table>\n<h2>Checks of the restored data</h2>\n");
    if r.checks.is_empty() {
        h.push_str("<p>No data was checked.</p>\n");
    } else {
        h.push_str("<table><tr><th>Step</th><th>Check</th><th>Result</th><th>Time</th><th>Details</th></tr>\n");
        for c in &r.checks {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                c.step,
                esc(&c.check),
                badge(c.passed, "passed", "FAILED"),
                seconds(c.seconds),
                esc(&c.detail)
            );
        }
        h.push_str("</table>\n");
    }
    if !r.snapshots.is_empty() {
        h.push_str("<h2>Backups restored</h2>\n<table><tr><th>Snapshot</th><th>Repository</th><th>Taken</th><th>Age</th></tr>\n");
        for s in &r.snapshots {
            let _ = writeln!(
                h,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&s.short_id),
                esc(&s.repository),
                s.time.format("%Y-%m-%d %H:%M:%S UTC"),
                short_duration(s.age_seconds)
            );
        }
        h.push_str("</table>\n");
    }
    if !r.cleanup.is_empty() {
        let _ = write!(
            h,
            "<h2>Clean-up</h2>\n<ul>{}</ul>\n",
            r.cleanup
                .iter()
                .map(|c| format!("<li>{}</li>", esc(c)))
                .collect::<String>()
        );
    }
    h.push_str("<p class=\"skip\">Written by coffer dr drill. Scratch instances only: no live server was touched.</p>\n</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_it_shows() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }
}
