//! The HTML report (`--html FILE`): one self-contained page — inline CSS, no script, no external
//! asset — with the summary by area, the requirement matrix (id → cases, coloured by verdict), and
//! every case with its steps, the backend requests it caused and its failure or skip reason.
//! Failed cases are open; the rest fold (`<details>`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::junit::escape;
use super::{CaseResult, StepStatus, Summary, Verdict};
use crate::catalogue::{area_of, area_rank, area_title, id_rank};

const STYLE: &str = r#"
:root { --pass:#1a7f37; --fail:#cf222e; --info:#9a6700; --skip:#6e7781; --line:#d0d7de; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; padding: 24px; max-width: 1200px; color: #1f2328; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.meta { color: #57606a; margin: 2px 0; }
.counts { display: flex; gap: 10px; margin: 14px 0; flex-wrap: wrap; }
.count { border-radius: 6px; padding: 8px 14px; color: #fff; font-weight: 600; font-size: 16px; }
.count.pass { background: var(--pass); } .count.fail { background: var(--fail); }
.count.info { background: var(--info); } .count.skip { background: var(--skip); }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.area th { background: #eaeef2; font-size: 14px; }
.pill { display: inline-block; border-radius: 10px; padding: 1px 8px; margin: 1px 2px; color: #fff; font-size: 12px; text-decoration: none; white-space: nowrap; }
.pill.pass { background: var(--pass); } .pill.fail { background: var(--fail); }
.pill.info { background: var(--info); } .pill.skip { background: var(--skip); }
details.case { border: 1px solid var(--line); border-left: 6px solid var(--skip); border-radius: 6px; margin: 6px 0; padding: 4px 10px; }
details.case.pass { border-left-color: var(--pass); } details.case.fail { border-left-color: var(--fail); }
details.case.info { border-left-color: var(--info); }
details.case > summary { cursor: pointer; padding: 2px 0; }
.ids { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; color: #57606a; }
pre { background: #f6f8fa; border: 1px solid var(--line); border-radius: 6px; padding: 8px; overflow-x: auto; white-space: pre-wrap; word-break: break-word; font-size: 12px; }
ol.steps { margin: 4px 0; padding-left: 22px; }
ol.steps li { margin: 1px 0; }
.st-passed { color: var(--pass); } .st-failed { color: var(--fail); font-weight: 600; } .st-skipped { color: var(--skip); }
.bg { color: #57606a; font-style: italic; }
table.requests td { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; word-break: break-all; }
.warn { color: var(--info); }
.mcase { margin: 1px 0; } .mcase a:not(.pill) { color: inherit; }
#matrix td:first-child { white-space: nowrap; }
"#;

fn class(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Info => "info",
        Verdict::Skip => "skip",
    }
}

fn anchor(key: &str) -> String {
    format!("case-{}", escape(key))
}

pub fn render(summary: &Summary) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>usher check: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(&summary.target)
    );
    header(&mut out, summary);
    areas(&mut out, summary);
    matrix(&mut out, summary);
    cases(&mut out, summary);
    let _ = writeln!(out, "</body>\n</html>");
    out
}

fn header(out: &mut String, s: &Summary) {
    let _ = writeln!(out, "<h1>usher check</h1>");
    let _ = writeln!(out, "<p class=\"meta\">Target: {}</p>", escape(&s.target));
    let _ = writeln!(out, "<p class=\"meta\">Driven by: {}</p>", escape(&s.driven_by()));
    if !s.capabilities.is_empty() {
        let _ = writeln!(out, "<p class=\"meta\">Capabilities: {}</p>", escape(&s.capabilities));
    }
    let _ = writeln!(
        out,
        "<p class=\"meta\">{} case(s) in {:.1} s; seed {}; {}</p>",
        s.cases.len(),
        s.elapsed.as_secs_f64(),
        s.seed,
        match (s.strict, s.hold_choices) {
            (_, true) => "--hold-choices: @should and @info failures count",
            (true, false) => "--strict: @should failures count",
            (false, false) => "@should failures are INFO (no --strict)",
        }
    );
    let _ = writeln!(
        out,
        "<div class=\"counts\" id=\"counts\"><span class=\"count pass\">{} passed</span>\
         <span class=\"count fail\">{} failed</span><span class=\"count info\">{} info</span>\
         <span class=\"count skip\">{} skipped</span></div>",
        s.passed(),
        s.failed(),
        s.info(),
        s.skipped()
    );
    if s.stopped_by_timeout {
        let _ = writeln!(
            out,
            "<p class=\"warn\">The run was stopped by --timeout: unfinished cases are FAIL.</p>"
        );
    }
    if s.slow_left_out > 0 {
        let _ = writeln!(
            out,
            "<p class=\"meta\">{} @slow case(s) not run (--slow includes them).</p>",
            s.slow_left_out
        );
    }
    for w in &s.warnings {
        let _ = writeln!(out, "<p class=\"warn\">Warning: {}</p>", escape(w));
    }
    if !s.stray_backend_calls.is_empty() {
        let _ = writeln!(
            out,
            "<p class=\"warn\">The backend received {} request(s) for no live case:</p><pre>{}</pre>",
            s.stray_backend_calls.len(),
            escape(&s.stray_backend_calls.join("\n"))
        );
    }
}

fn areas(out: &mut String, s: &Summary) {
    let _ = writeln!(out, "<h2>Summary by area</h2>");
    let _ = writeln!(
        out,
        "<table id=\"areas\"><thead><tr><th>Area</th><th></th><th>Pass</th><th>Fail</th><th>Info</th><th>Skip</th></tr></thead><tbody>"
    );
    for a in s.areas() {
        let _ = writeln!(
            out,
            "<tr><td><b>{}</b></td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape(&a.area),
            escape(&a.title),
            a.pass,
            a.fail,
            a.info,
            a.skip
        );
    }
    let _ = writeln!(out, "</tbody></table>");
}

fn matrix(out: &mut String, s: &Summary) {
    type IdRank = (usize, String, u64, String);
    let mut by_area: BTreeMap<(usize, String), BTreeMap<IdRank, Vec<&CaseResult>>> = BTreeMap::new();
    for r in &s.cases {
        for id in &r.ids {
            by_area
                .entry(area_rank(area_of(id)))
                .or_default()
                .entry(id_rank(id))
                .or_default()
                .push(r);
        }
    }
    let _ = writeln!(out, "<h2>Requirement matrix</h2>");
    let _ = writeln!(
        out,
        "<table id=\"matrix\"><thead><tr><th>Requirement</th><th>Verdict</th><th>Cases</th></tr></thead><tbody>"
    );
    for ((_, area), ids) in &by_area {
        let _ = writeln!(
            out,
            "<tr class=\"area\"><th colspan=\"3\">{} {}</th></tr>",
            escape(area),
            escape(area_title(area))
        );
        for ((_, _, _, id), cases) in ids {
            // The requirement's verdict is its worst case's: FAIL, then INFO, PASS, SKIP.
            let worst = [Verdict::Fail, Verdict::Info, Verdict::Pass, Verdict::Skip]
                .into_iter()
                .find(|v| cases.iter().any(|c| c.verdict == *v))
                .unwrap_or(Verdict::Skip);
            let pills: Vec<String> = cases
                .iter()
                .map(|c| {
                    format!(
                        "<div class=\"mcase\"><a class=\"pill {}\" href=\"#{}\">{}</a> <a href=\"#{}\" title=\"{}\">{}</a></div>",
                        class(c.verdict),
                        anchor(&c.key),
                        c.verdict.label(),
                        anchor(&c.key),
                        escape(&c.key),
                        escape(&c.title)
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "<tr><td><b>{}</b></td><td><span class=\"pill {}\">{}</span></td><td>{}</td></tr>",
                escape(id),
                class(worst),
                worst.label(),
                pills.join("")
            );
        }
    }
    let _ = writeln!(out, "</tbody></table>");
}

fn cases(out: &mut String, s: &Summary) {
    let _ = writeln!(out, "<h2>Cases</h2>");
    let mut by_feature: BTreeMap<String, Vec<&CaseResult>> = BTreeMap::new();
    for r in &s.cases {
        let file = r.location.rsplit_once(':').map_or(r.location.as_str(), |(f, _)| f);
        by_feature.entry(format!("{file}: {}", r.feature)).or_default().push(r);
    }
    for (feature, cases) in &by_feature {
        let _ = writeln!(out, "<h3>{}</h3>", escape(feature));
        for r in cases {
            case(out, r);
        }
    }
}

fn case(out: &mut String, r: &CaseResult) {
    let open = if r.verdict == Verdict::Fail { " open" } else { "" };
    let level = r.level.map_or("-".to_string(), |l| l.to_string());
    let _ = writeln!(
        out,
        "<details class=\"case {}\" id=\"{}\"{open}><summary><span class=\"pill {}\">{}</span> \
         <span class=\"ids\">{} {level}</span> {} <span class=\"ids\">({}, {:.1} s)</span></summary>",
        class(r.verdict),
        anchor(&r.key),
        class(r.verdict),
        r.verdict.label(),
        escape(&r.ids.join(", ")),
        escape(&r.title),
        escape(&r.location),
        r.elapsed.as_secs_f64()
    );
    let needs = if r.needs.is_empty() {
        "-".to_string()
    } else {
        r.needs.join(", ")
    };
    let _ = writeln!(
        out,
        "<p class=\"meta\">key <code>{}</code>; needs {}{}</p>",
        escape(&r.key),
        escape(&needs),
        if r.slow { "; @slow" } else { "" }
    );
    if let Some(skip) = &r.skip {
        let _ = writeln!(out, "<p><b>Skipped:</b> {}</p>", escape(&skip.to_string()));
    }
    if let Some(f) = &r.failure {
        let label = if r.verdict == Verdict::Info {
            "Recorded (INFO, not counted)"
        } else {
            "Failure"
        };
        let _ = writeln!(out, "<p><b>{label}:</b></p><pre class=\"failure\">{}</pre>", escape(f));
    }
    if !r.steps.is_empty() {
        let _ = writeln!(out, "<ol class=\"steps\">");
        for step in &r.steps {
            let (cls, mark) = match step.status {
                StepStatus::Passed => ("st-passed", "&#10003;"),
                StepStatus::Failed => ("st-failed", "&#10007;"),
                StepStatus::Skipped => ("st-skipped", "&#8211;"),
            };
            let time = step.elapsed_ms.map(|ms| format!(" ({ms} ms)")).unwrap_or_default();
            let bg = if step.background {
                " <span class=\"bg\">(background)</span>"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "<li class=\"{cls}\">{mark} <b>{}</b> {}{bg}<span class=\"ids\">{time}</span></li>",
                escape(&step.keyword),
                escape(&step.text)
            );
        }
        let _ = writeln!(out, "</ol>");
    }
    if !r.backend_requests.is_empty() {
        let _ = writeln!(
            out,
            "<table class=\"requests\"><thead><tr><th>+ms</th><th>Request</th><th>Answer</th></tr></thead><tbody>"
        );
        for q in &r.backend_requests {
            let query: Vec<String> = q.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(
                out,
                "<tr><td class=\"num\">{}</td><td>{} {}?{}</td><td>{}</td></tr>",
                q.offset_ms,
                escape(&q.method),
                escape(&q.path),
                escape(&query.join("&")),
                escape(&q.answered)
            );
        }
        let _ = writeln!(out, "</tbody></table>");
    } else if r.verdict != Verdict::Skip {
        let _ = writeln!(out, "<p class=\"meta\">The backend received no request.</p>");
    }
    let _ = writeln!(out, "</details>");
}
