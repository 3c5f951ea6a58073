//! What a query asks for: one of the statements a stock client sends on its own, a SELECT on
//! the history, or an error to report.

use super::packet::ColumnDef;
use super::{DATABASE, SERVER_VERSION, code};
use crate::history::{Column, ColumnType, Select, SelectError};

/// Longest query text looked at.
const MAX_QUERY: usize = 64 * 1024;

#[derive(Debug)]
pub(super) enum Outcome {
    Ok,
    Use(String),
    Rows {
        columns: Vec<ColumnDef>,
        rows: Vec<Vec<Option<String>>>,
    },
    Select(Select),
    Error {
        code: (u16, &'static str),
        message: String,
    },
}

fn error(code: (u16, &'static str), message: impl Into<String>) -> Outcome {
    Outcome::Error {
        code,
        message: message.into(),
    }
}

fn single(name: &str, value: Option<String>) -> Outcome {
    Outcome::Rows {
        columns: vec![ColumnDef::text(name)],
        rows: vec![vec![value]],
    }
}

/// A result-set column for a history column.
pub(super) fn column_def(c: Column) -> ColumnDef {
    ColumnDef {
        schema: DATABASE,
        table: "sessions",
        name: c.name().to_string(),
        numeric: c.ty() == ColumnType::Integer,
        nullable: c.nullable(),
    }
}

/// The words of `sql` in lower case, for matching the fixed statements.
fn words(sql: &str) -> Vec<String> {
    sql.split_whitespace().map(str::to_ascii_lowercase).collect()
}

/// A system variable the stock clients ask for.
fn variable(name: &str) -> Option<Option<String>> {
    let name = name
        .trim_start_matches("@@")
        .trim_start_matches("session.")
        .trim_start_matches("global.");
    Some(match name {
        "version_comment" => Some("Usher session history (MySQL protocol, read-only)".to_string()),
        "version" => Some(SERVER_VERSION.to_string()),
        "max_allowed_packet" => Some(super::packet::MAX_PAYLOAD.to_string()),
        "character_set_client" | "character_set_connection" | "character_set_results" => Some("utf8".into()),
        "collation_connection" => Some("utf8_general_ci".into()),
        "autocommit" => Some("1".into()),
        "sql_mode" => Some(String::new()),
        "tx_isolation" | "transaction_isolation" => Some("REPEATABLE-READ".into()),
        "lower_case_table_names" => Some("0".into()),
        "time_zone" | "system_time_zone" => Some("UTC".into()),
        "wait_timeout" | "interactive_timeout" => Some("600".into()),
        _ => return None,
    })
}

pub(super) fn classify(sql: &str, database: Option<&str>) -> Outcome {
    if sql.len() > MAX_QUERY {
        return error(code::PARSE, format!("query longer than {MAX_QUERY} bytes"));
    }
    let trimmed = sql.trim().trim_end_matches(';').trim();
    let w = words(trimmed);
    let w: Vec<&str> = w.iter().map(String::as_str).collect();
    match w.as_slice() {
        [] => error(code::PARSE, "Query was empty"),
        ["set", ..] => Outcome::Ok,
        ["begin"] | ["commit"] | ["rollback"] | ["start", "transaction"] => Outcome::Ok,
        ["use", name] => Outcome::Use(name.trim_matches('`').to_string()),
        ["show", "databases"] | ["show", "schemas"] => Outcome::Rows {
            columns: vec![ColumnDef::text("Database")],
            rows: vec![vec![Some(DATABASE.to_string())]],
        },
        ["show", "tables"] | ["show", "full", "tables"] => Outcome::Rows {
            columns: vec![ColumnDef::text(format!("Tables_in_{DATABASE}"))],
            rows: vec![vec![Some("sessions".to_string())]],
        },
        ["show", "warnings"] | ["show", "errors"] => Outcome::Rows {
            columns: ["Level", "Code", "Message"].map(ColumnDef::text).to_vec(),
            rows: Vec::new(),
        },
        ["describe" | "desc" | "explain", table] | ["show", "columns" | "fields", "from", table] => describe(table),
        ["select", "database()"] | ["select", "schema()"] => single("DATABASE()", database.map(str::to_string)),
        ["select", "version()"] => single("version()", Some(SERVER_VERSION.to_string())),
        ["select", "user()"] | ["select", "current_user()"] => single("user()", Some("operator".to_string())),
        ["select", var] | ["select", var, "limit", _] if var.starts_with("@@") => {
            let name = trimmed.split_whitespace().nth(1).unwrap_or(var);
            match variable(var) {
                Some(value) => single(name, value),
                None => error(
                    code::UNKNOWN_VARIABLE,
                    format!("Unknown system variable '{}'", var.trim_start_matches("@@")),
                ),
            }
        }
        ["select", n] if n.bytes().all(|b| b.is_ascii_digit()) => single(n, Some((*n).to_string())),
        [first, ..]
            if [
                "insert", "update", "delete", "replace", "create", "drop", "alter", "truncate", "grant", "load",
            ]
            .contains(first) =>
        {
            error(
                code::READ_ONLY,
                "The session history is read-only: only SELECT … FROM sessions is answered",
            )
        }
        ["select", ..] => match Select::parse(trimmed) {
            Ok(select) => Outcome::Select(select),
            Err(e) => select_error(&e),
        },
        _ => error(
            code::NOT_SUPPORTED,
            format!(
                "This server answers only SELECT … FROM sessions (and SHOW TABLES, DESCRIBE sessions); not '{}'",
                shorten(trimmed)
            ),
        ),
    }
}

fn shorten(text: &str) -> String {
    let cut: String = text.chars().take(60).collect();
    if cut.len() < text.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

fn select_error(e: &SelectError) -> Outcome {
    let c = match e {
        SelectError::Syntax { .. } => code::PARSE,
        SelectError::UnknownTable(_) => code::NO_SUCH_TABLE,
        SelectError::UnknownColumn(_) => code::BAD_FIELD,
        SelectError::Unsupported(_) => code::NOT_SUPPORTED,
    };
    let message = match e {
        SelectError::Syntax { .. } => format!("You have an error in your SQL syntax: {e}"),
        other => other.to_string(),
    };
    error(c, message)
}

fn describe(table: &str) -> Outcome {
    let table = table.trim_matches('`');
    let table = table.strip_prefix("usher.").unwrap_or(table);
    if table != "sessions" {
        return error(code::NO_SUCH_TABLE, format!("Table '{DATABASE}.{table}' doesn't exist"));
    }
    let rows = Column::ALL
        .iter()
        .map(|c| {
            let ty = match c.ty() {
                ColumnType::Integer => "bigint(20)",
                ColumnType::Text => "varchar(255)",
            };
            vec![
                Some(c.name().to_string()),
                Some(ty.to_string()),
                Some(if c.nullable() { "YES" } else { "NO" }.to_string()),
                Some(String::new()),
                None,
                Some(String::new()),
            ]
        })
        .collect();
    Outcome::Rows {
        columns: ["Field", "Type", "Null", "Key", "Default", "Extra"]
            .map(ColumnDef::text)
            .to_vec(),
        rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(o: &Outcome) -> Option<u16> {
        match o {
            Outcome::Error { code, .. } => Some(code.0),
            _ => None,
        }
    }

    #[test]
    fn stock_client_statements() {
        assert!(matches!(
            classify("select @@version_comment limit 1", None),
            Outcome::Rows { .. }
        ));
        assert!(matches!(
            classify("SELECT DATABASE()", Some("usher")),
            Outcome::Rows { .. }
        ));
        assert!(matches!(classify("SET NAMES utf8mb4", None), Outcome::Ok));
        assert!(matches!(classify("show databases;", None), Outcome::Rows { .. }));
        assert!(matches!(classify("SHOW TABLES", None), Outcome::Rows { .. }));
        assert!(matches!(classify("describe sessions", None), Outcome::Rows { .. }));
        assert!(matches!(classify("use usher", None), Outcome::Use(_)));
    }

    #[test]
    fn errors_carry_mysql_codes() {
        assert_eq!(code_of(&classify("select nope from sessions", None)), Some(1054));
        assert_eq!(code_of(&classify("select * from users", None)), Some(1146));
        assert_eq!(code_of(&classify("select * from sessions where", None)), Some(1064));
        assert_eq!(code_of(&classify("select count(*) from sessions", None)), Some(1235));
        assert_eq!(code_of(&classify("delete from sessions", None)), Some(1290));
        assert_eq!(code_of(&classify("explode", None)), Some(1235));
        assert_eq!(code_of(&classify("select @@nope", None)), Some(1193));
        assert_eq!(code_of(&classify("   ", None)), Some(1064));
    }
}
