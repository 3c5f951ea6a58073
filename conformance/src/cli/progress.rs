//! Live progress: a bar on a terminal (indicatif), plain lines otherwise (stdout not a terminal,
//! or `CI` set), so logs stay readable.

use std::io::IsTerminal as _;
use std::time::Duration;

use console::style;
use indicatif::{ProgressBar, ProgressStyle};
use usher_conformance::{CaseResult, Observer, RunStart, Verdict};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// A bar on a terminal, lines otherwise.
    Auto,
    Bar,
    Lines,
}

impl Mode {
    fn bar(self) -> bool {
        match self {
            Mode::Bar => true,
            Mode::Lines => false,
            Mode::Auto => {
                let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
                std::io::stdout().is_terminal() && !ci
            }
        }
    }
}

pub fn colored_label(v: Verdict) -> String {
    let label = v.label();
    match v {
        Verdict::Pass => style(label).green().to_string(),
        Verdict::Fail => style(label).red().bold().to_string(),
        Verdict::Info => style(label).yellow().to_string(),
        Verdict::Skip => style(label).dim().to_string(),
    }
}

/// The case line with a coloured verdict, and its details.
pub fn render(result: &CaseResult) -> String {
    let line = result.line();
    let rest = line.strip_prefix(result.verdict.label()).unwrap_or(&line);
    let mut out = format!("{}{rest}", colored_label(result.verdict));
    if result.verdict != Verdict::Pass
        && let Some(details) = result.details()
    {
        out.push('\n');
        out.push_str(&details);
    }
    out
}

pub struct Progress {
    mode: Mode,
    bar: Option<ProgressBar>,
    counts: [usize; 4],
}

impl Progress {
    pub fn new(mode: Mode) -> Progress {
        Progress {
            mode,
            bar: None,
            counts: [0; 4],
        }
    }

    fn say(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => println!("{text}"),
        }
    }

    /// Removes the bar before the summary is printed.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Observer for Progress {
    fn started(&mut self, start: &RunStart) {
        println!(
            "usher check: {} case(s) to run against the {} ({} skipped); seed {}",
            start.to_run, start.target, start.skipped, start.seed
        );
        println!("target capabilities: {}", start.capabilities);
        for w in &start.warnings {
            println!("{} {w}", style("warning:").yellow());
        }
        if self.mode.bar() {
            let bar = ProgressBar::new((start.to_run + start.skipped) as u64);
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            self.bar = Some(bar);
        }
    }

    fn finished(&mut self, result: &CaseResult) {
        let i = match result.verdict {
            Verdict::Pass => 0,
            Verdict::Fail => 1,
            Verdict::Info => 2,
            Verdict::Skip => 3,
        };
        self.counts[i] += 1;
        self.say(&render(result));
        if let Some(bar) = &self.bar {
            bar.inc(1);
            bar.set_message(format!(
                "{} pass, {} fail, {} info, {} skip",
                self.counts[0], self.counts[1], self.counts[2], self.counts[3]
            ));
        }
    }
}

/// A clone-able handle so the binary keeps access after handing the observer to the run.
pub struct Shared(pub std::rc::Rc<std::cell::RefCell<Progress>>);

impl Observer for Shared {
    fn started(&mut self, start: &RunStart) {
        self.0.borrow_mut().started(start);
    }

    fn finished(&mut self, result: &CaseResult) {
        self.0.borrow_mut().finished(result);
    }
}
