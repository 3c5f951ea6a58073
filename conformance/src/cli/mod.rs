//! The `usher` commands' options and their printing (the library formats; this prints).

pub mod backend_check;
pub mod cases;
pub mod check;
pub mod progress;

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// Options that choose cases, shared by `check` and `cases`.
#[derive(Args, Debug, Clone)]
pub struct SelectArgs {
    /// Folder of .feature files.
    #[arg(long, value_name = "DIR", default_value_os_t = usher_conformance::default_features_dir())]
    pub features: PathBuf,
    /// Cucumber tag expression over the cases' tags, e.g. "@must and not @serial".
    #[arg(long, value_name = "EXPR")]
    pub tags: Option<String>,
    /// Only cases matching a pattern: a requirement id or glob (SESS-02, LIM-*), a case key, a
    /// title glob ("*admin token*"), or a feature file. Repeat it or separate with commas.
    #[arg(long, value_name = "PATTERN", value_delimiter = ',')]
    pub only: Vec<String>,
    /// Include @slow cases (they take minutes).
    #[arg(long)]
    pub slow: bool,
}

/// `90`, `90s`, `500ms`, `15m`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or((t, ""), |i| (&t[..i], &t[i..]));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (examples: 90, 90s, 15m, 1h)"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("unknown unit `{other}` in `{text}` (ms, s, m, h)")),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("`{text}` must be more than zero"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A seed in decimal or `0x` hex.
pub fn parse_seed(text: &str) -> Result<u64, String> {
    let t = text.trim();
    match t.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => t.parse(),
    }
    .map_err(|_| format!("`{text}` is not a seed (a decimal or 0x-hex 64-bit number)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("x").is_err());
        assert_eq!(parse_seed("0x10"), Ok(16));
        assert_eq!(parse_seed("42"), Ok(42));
    }
}
