//! `usher cases`: the catalogue as a list, as JSON, or as the requirement matrix of
//! docs/conformance.md.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use usher_conformance::catalogue::{Case, Catalogue, matrix, peers};
use usher_conformance::select::{Pattern, Selection};

use super::SelectArgs;

#[derive(Args, Debug)]
pub struct CasesArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// One JSON array of cases instead of lines.
    #[arg(long, conflicts_with = "matrix")]
    pub json: bool,
    /// Rewrite the generated requirement matrix in the documentation (every case, whatever the
    /// selection).
    #[arg(long)]
    pub matrix: bool,
    /// Rewrite the generated peer matrix in the documentation, from the shipped profiles'
    /// verdict snapshots and failure explanations (conformance/targets/).
    #[arg(long, conflicts_with_all = ["json", "matrix"])]
    pub peers: bool,
    /// With --matrix: only check that the document is up to date (exit 1 when it is not).
    #[arg(long, requires = "matrix")]
    pub check: bool,
    /// The document holding the matrix.
    #[arg(long, value_name = "FILE", default_value_os_t = default_doc())]
    pub doc: PathBuf,
}

fn default_doc() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or_else(
        || PathBuf::from("docs/conformance.md"),
        |p| p.join("docs/conformance.md"),
    )
}

pub fn run(args: &CasesArgs) -> ExitCode {
    let catalogue = match Catalogue::load(&args.select.features) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("usher cases: {e}");
            return ExitCode::from(2);
        }
    };
    if args.matrix {
        return write_matrix(args, &catalogue);
    }
    if args.peers {
        return write_peers(args, &catalogue);
    }
    let tags = match args.select.tags.as_deref().map(str::parse).transpose() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("usher cases: bad tag expression: {e}");
            return ExitCode::from(2);
        }
    };
    // A listing shows @slow cases too unless the selection says otherwise.
    let selection = Selection {
        tags,
        only: args.select.only.iter().map(|p| Pattern(p.clone())).collect(),
        slow: true,
        keys: None,
    };
    let cases: Vec<&Case> = catalogue.cases.iter().filter(|c| selection.selects(c)).collect();
    if args.json {
        match serde_json::to_string_pretty(&cases) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("usher cases: {e}");
                return ExitCode::from(2);
            }
        }
        return ExitCode::SUCCESS;
    }
    for case in &cases {
        let level = case.level.map_or("?".to_string(), |l| l.to_string());
        let mut extra = Vec::new();
        if case.slow {
            extra.push("slow".to_string());
        }
        if case.serial {
            extra.push("serial".to_string());
        }
        if !case.needs.is_empty() {
            extra.push(format!(
                "needs {}",
                case.needs.iter().cloned().collect::<Vec<_>>().join(",")
            ));
        }
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!("  [{}]", extra.join("; "))
        };
        println!(
            "{:<24} {:<6} {:<22} {}  ({}){extra}",
            case.key,
            level,
            case.ids.join(","),
            case.title,
            case.location
        );
        for p in &case.problems {
            println!("    problem: {p}");
        }
    }
    for e in &catalogue.errors {
        println!("{}: does not parse: {}", e.file, e.message);
    }
    let ids: BTreeSet<&String> = cases.iter().flat_map(|c| c.ids.iter()).collect();
    let count = |l: usher_conformance::Level| cases.iter().filter(|c| c.level == Some(l)).count();
    println!(
        "{} case(s): {} must, {} should, {} info; {} slow (not run without --slow); {} requirement id(s)",
        cases.len(),
        count(usher_conformance::Level::Must),
        count(usher_conformance::Level::Should),
        count(usher_conformance::Level::Info),
        cases.iter().filter(|c| c.slow).count(),
        ids.len()
    );
    if catalogue.errors.is_empty() && catalogue.cases.iter().all(|c| c.problems.is_empty()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn write_matrix(args: &CasesArgs, catalogue: &Catalogue) -> ExitCode {
    let doc = match std::fs::read_to_string(&args.doc) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("usher cases: cannot read {}: {e} (give --doc FILE)", args.doc.display());
            return ExitCode::from(2);
        }
    };
    let section = matrix::markdown(catalogue);
    let updated = match matrix::replace_section(&doc, &section) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("usher cases: {}: {e}", args.doc.display());
            return ExitCode::from(2);
        }
    };
    if updated == doc {
        println!("{} is up to date ({} cases)", args.doc.display(), catalogue.cases.len());
        return ExitCode::SUCCESS;
    }
    if args.check {
        eprintln!(
            "{} is stale: its requirement matrix does not match the features; run `{}`",
            args.doc.display(),
            matrix::REGENERATE
        );
        return ExitCode::FAILURE;
    }
    if let Err(e) = std::fs::write(&args.doc, updated) {
        eprintln!("usher cases: cannot write {}: {e}", args.doc.display());
        return ExitCode::from(2);
    }
    println!(
        "updated the requirement matrix in {} ({} cases)",
        args.doc.display(),
        catalogue.cases.len()
    );
    ExitCode::SUCCESS
}

fn write_peers(args: &CasesArgs, catalogue: &Catalogue) -> ExitCode {
    let fail = |message: String| {
        eprintln!("usher cases: {message}");
        ExitCode::from(2)
    };
    let doc = match std::fs::read_to_string(&args.doc) {
        Ok(d) => d,
        Err(e) => return fail(format!("cannot read {}: {e} (give --doc FILE)", args.doc.display())),
    };
    let loaded = match peers::load(Path::new(env!("CARGO_MANIFEST_DIR"))) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let section = peers::markdown(catalogue, &loaded);
    let Some(updated) = peers::replace_section(&doc, &section) else {
        return fail(format!("{} has no line `{}`", args.doc.display(), peers::BEGIN));
    };
    if let Err(e) = std::fs::write(&args.doc, updated) {
        return fail(format!("cannot write {}: {e}", args.doc.display()));
    }
    for peer in &loaded {
        for key in peers::unexplained(peer) {
            eprintln!(
                "usher cases: warning: {} fails {key} without a line in its failures.txt",
                peer.title
            );
        }
    }
    println!("updated the peer matrix in {}", args.doc.display());
    ExitCode::SUCCESS
}
