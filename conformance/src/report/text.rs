//! Plain-text forms of results: one line per case, the details under it, and the lines that
//! close a run. Colour is the binary's business.

use super::{CaseResult, Summary, Verdict};

impl CaseResult {
    /// `PASS  SESS-01 MUST  A changed IP opens a new session  (features/sessions.feature:14, 0.4 s)`
    pub fn line(&self) -> String {
        let ids = if self.ids.is_empty() {
            "-".to_string()
        } else {
            self.ids.join(",")
        };
        let level = self.level.map_or("-".to_string(), |l| l.to_string());
        let timing = if self.verdict == Verdict::Skip {
            String::new()
        } else {
            format!(", {:.1} s", self.elapsed.as_secs_f64())
        };
        format!(
            "{}  {ids} {level}  {}  ({}{timing})",
            self.verdict.label(),
            self.title,
            self.location
        )
    }

    /// What to show under the line: the failure (FAIL, INFO) or the skip reason, indented.
    pub fn details(&self) -> Option<String> {
        let text = match (self.verdict, &self.failure, &self.skip) {
            (Verdict::Skip, _, Some(reason)) => reason.to_string(),
            (Verdict::Fail | Verdict::Info, Some(f), _) => f.clone(),
            _ => return None,
        };
        Some(
            text.lines()
                .map(|l| format!("      {l}"))
                .collect::<Vec<_>>()
                .join("\n"),
        )
    }
}

impl Summary {
    /// Lines printed before the area table and the closing line.
    pub fn epilogue(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "ran {} case(s) against the {} in {:.1} s (seed {})",
            self.cases.len() - self.skipped(),
            self.target,
            self.elapsed.as_secs_f64(),
            self.seed
        )];
        lines.push(self.driven_by());
        if self.stopped_by_timeout {
            lines.push("the run was stopped by --timeout: unfinished cases are FAIL".to_string());
        }
        if self.hold_choices {
            lines.push("--hold-choices: @info cases count, held to the reference server's choices".to_string());
        }
        if self.info() > 0 {
            lines.push(format!(
                "{} case(s) INFO (@info, or @should without --strict): recorded, not counted",
                self.info()
            ));
        }
        if self.slow_left_out > 0 {
            lines.push(format!(
                "{} @slow case(s) not run (--slow includes them)",
                self.slow_left_out
            ));
        }
        lines.extend(self.warnings.iter().map(|w| format!("warning: {w}")));
        if !self.stray_backend_calls.is_empty() {
            lines.push(format!(
                "the backend received {} request(s) for no live case:",
                self.stray_backend_calls.len()
            ));
            lines.extend(self.stray_backend_calls.iter().map(|c| format!("  {c}")));
        }
        let failed: Vec<_> = self.cases.iter().filter(|r| r.verdict == Verdict::Fail).collect();
        if !failed.is_empty() {
            lines.push("failed:".to_string());
            lines.extend(failed.iter().map(|r| format!("  {}  [{}]", r.line(), r.key)));
            lines.push(format!(
                "re-run them: --rerun-failed REPORT.json (with --json), or --only KEY; --seed {} replays generated inputs",
                self.seed
            ));
        }
        lines
    }

    /// The summary by requirement area, uncoloured: `(area, title, pass, fail, info, skip)` rows
    /// formatted as aligned text.
    pub fn area_lines(&self) -> Vec<String> {
        self.areas()
            .iter()
            .map(|a| {
                format!(
                    "{:<5} {:>3} pass {:>3} fail {:>3} info {:>3} skip  {}",
                    a.area, a.pass, a.fail, a.info, a.skip, a.title
                )
            })
            .collect()
    }
}
