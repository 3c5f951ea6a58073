//! The JUnit XML report (`--junit FILE`): one `<testsuite>` per feature file, one `<testcase>` per
//! case. FAIL is `<failure>`, SKIP is `<skipped>` with its reason; INFO passes with its note in
//! `<system-out>` (it never fails a build).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{CaseResult, Summary, Verdict};

/// Escapes text for XML content and attributes; drops characters XML 1.0 cannot carry.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

fn secs(d: std::time::Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

fn testcase_name(r: &CaseResult) -> String {
    let ids = if r.ids.is_empty() {
        String::new()
    } else {
        format!("[{}] ", r.ids.join(","))
    };
    format!("{ids}{}", r.title)
}

pub fn render(summary: &Summary) -> String {
    let mut suites: BTreeMap<String, Vec<&CaseResult>> = BTreeMap::new();
    for r in &summary.cases {
        let file = r.location.rsplit_once(':').map_or(r.location.as_str(), |(f, _)| f);
        suites.entry(file.to_string()).or_default().push(r);
    }
    let mut out = String::new();
    let _ = writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        out,
        r#"<testsuites name="usher check" tests="{}" failures="{}" skipped="{}" errors="0" time="{}">"#,
        summary.cases.len(),
        summary.failed(),
        summary.skipped(),
        secs(summary.elapsed)
    );
    for (file, cases) in &suites {
        let count = |v: Verdict| cases.iter().filter(|r| r.verdict == v).count();
        let time: std::time::Duration = cases.iter().map(|r| r.elapsed).sum();
        let _ = writeln!(
            out,
            r#"  <testsuite name="{}" tests="{}" failures="{}" skipped="{}" errors="0" time="{}">"#,
            escape(file),
            cases.len(),
            count(Verdict::Fail),
            count(Verdict::Skip),
            secs(time)
        );
        let _ = writeln!(out, "    <properties>");
        let _ = writeln!(
            out,
            r#"      <property name="target" value="{}"/>"#,
            escape(&summary.target)
        );
        let _ = writeln!(out, r#"      <property name="seed" value="{}"/>"#, summary.seed);
        let _ = writeln!(
            out,
            r#"      <property name="driven_by" value="{}"/>"#,
            escape(&summary.driven_by())
        );
        let _ = writeln!(out, "    </properties>");
        for r in cases {
            let _ = write!(
                out,
                r#"    <testcase name="{}" classname="{}" file="{}" time="{}""#,
                escape(&testcase_name(r)),
                escape(&format!("{} [{}]", r.feature, r.key)),
                escape(file),
                secs(r.elapsed)
            );
            match r.verdict {
                Verdict::Pass => {
                    let _ = writeln!(out, "/>");
                }
                Verdict::Fail => {
                    let message = r.failure.as_deref().unwrap_or("failed");
                    let first = message.lines().next().unwrap_or_default();
                    let _ = writeln!(out, ">");
                    let _ = writeln!(
                        out,
                        r#"      <failure message="{}" type="{}">{}</failure>"#,
                        escape(first),
                        r.level.map_or("catalogue".to_string(), |l| l.tag().to_string()),
                        escape(message)
                    );
                    let _ = writeln!(out, "    </testcase>");
                }
                Verdict::Skip => {
                    let reason = r.skip.as_ref().map(ToString::to_string).unwrap_or_default();
                    let _ = writeln!(out, ">");
                    let _ = writeln!(out, r#"      <skipped message="{}"/>"#, escape(&reason));
                    let _ = writeln!(out, "    </testcase>");
                }
                Verdict::Info => {
                    let note = r.failure.as_deref().unwrap_or_default();
                    let _ = writeln!(out, ">");
                    let _ = writeln!(
                        out,
                        "      <system-out>INFO (recorded, not counted): {}</system-out>",
                        escape(note)
                    );
                    let _ = writeln!(out, "    </testcase>");
                }
            }
        }
        let _ = writeln!(out, "  </testsuite>");
    }
    let _ = writeln!(out, "</testsuites>");
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_markup_and_control_characters() {
        assert_eq!(escape("a<b>&\"'\u{1}\n"), "a&lt;b&gt;&amp;&quot;&apos;\n");
    }
}
