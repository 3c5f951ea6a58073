//! The one kind of SQL the session history answers from outside (the MySQL listener):
//!
//! ```text
//! select  = "SELECT" columns "FROM" ["usher" "."] "sessions"
//!           ["WHERE" cond {"AND" cond}] ["ORDER" "BY" column ["ASC" | "DESC"]]
//!           ["LIMIT" N ["OFFSET" M] | "LIMIT" M "," N] [";"]
//! columns = "*" | column {"," column}
//! cond    = column ("=" | "!=" | "<>" | "<" | "<=" | ">" | ">=") literal
//!         | column "IS" ["NOT"] "NULL"
//! literal = 'text' | "text" | [-]digits | NULL
//! ```
//!
//! Keywords are case-insensitive, identifiers may be back-quoted. The parse is a [`Select`]
//! over the [`Column`] whitelist; [`Select::to_sql`] prints SQLite text made only of fixed
//! words, whitelisted column names and `?N` placeholders, with every literal bound as a
//! parameter. User text never reaches SQLite as SQL.

use std::fmt;

use super::MAX_ROWS;

/// Words that cannot name a column or table unless back-quoted.
const RESERVED: [&str; 14] = [
    "select", "from", "where", "and", "or", "not", "order", "by", "limit", "offset", "is", "null", "group", "as",
];

/// Most columns or conditions one query may name.
const MAX_ITEMS: usize = 64;

/// A column of the `sessions` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Column {
    SessionId,
    Type,
    Name,
    Ip,
    Proto,
    Token,
    UserId,
    OpenedAt,
    ClosedAt,
    Bytes,
    CloseReason,
    Dvr,
    /// The backend asked for ads that were not inserted (0 or 1).
    AdInjectIgnored,
}

/// How a column's values are typed for a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Text,
    Integer,
}

impl Column {
    /// Every column, in table order (what `*` selects).
    pub const ALL: [Column; 13] = [
        Column::SessionId,
        Column::Type,
        Column::Name,
        Column::Ip,
        Column::Proto,
        Column::Token,
        Column::UserId,
        Column::OpenedAt,
        Column::ClosedAt,
        Column::Bytes,
        Column::CloseReason,
        Column::Dvr,
        Column::AdInjectIgnored,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Column::SessionId => "session_id",
            Column::Type => "type",
            Column::Name => "name",
            Column::Ip => "ip",
            Column::Proto => "proto",
            Column::Token => "token",
            Column::UserId => "user_id",
            Column::OpenedAt => "opened_at",
            Column::ClosedAt => "closed_at",
            Column::Bytes => "bytes",
            Column::CloseReason => "close_reason",
            Column::Dvr => "dvr",
            Column::AdInjectIgnored => "ad_inject_ignored",
        }
    }

    pub fn from_name(name: &str) -> Option<Column> {
        Column::ALL.into_iter().find(|c| c.name().eq_ignore_ascii_case(name))
    }

    pub fn ty(self) -> ColumnType {
        match self {
            Column::OpenedAt | Column::ClosedAt | Column::Bytes | Column::Dvr | Column::AdInjectIgnored => {
                ColumnType::Integer
            }
            _ => ColumnType::Text,
        }
    }

    pub fn nullable(self) -> bool {
        self == Column::UserId
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Comparison {
    fn sql(self) -> &'static str {
        match self {
            Comparison::Eq => "=",
            Comparison::Ne => "!=",
            Comparison::Lt => "<",
            Comparison::Le => "<=",
            Comparison::Gt => ">",
            Comparison::Ge => ">=",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Literal {
    Text(String),
    Integer(i64),
    Null,
}

/// `column op literal`; with [`Literal::Null`] only `=` (IS NULL) and `!=` (IS NOT NULL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub column: Column,
    pub op: Comparison,
    pub value: Literal,
}

/// A parsed SELECT on `sessions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Select {
    pub columns: Vec<Column>,
    pub conditions: Vec<Condition>,
    /// Column and descending.
    pub order: Option<(Column, bool)>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
}

/// Why a statement is not a [`Select`] this store answers; sorted like the MySQL error codes
/// a client gets for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectError {
    /// Not valid in this grammar; `near` is the text from where it went wrong.
    Syntax { message: String, near: String },
    /// A table other than `sessions`.
    UnknownTable(String),
    /// A column outside the whitelist.
    UnknownColumn(String),
    /// Valid SQL this store does not do (joins, functions, other statements).
    Unsupported(String),
}

impl fmt::Display for SelectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SelectError::Syntax { message, near } => {
                write!(f, "{message} near '{}'", shorten(near))
            }
            SelectError::UnknownTable(t) => {
                write!(
                    f,
                    "Table 'usher.{}' doesn't exist (the only table is `sessions`)",
                    shorten(t)
                )
            }
            SelectError::UnknownColumn(c) => write!(
                f,
                "Unknown column '{}' in 'field list' (columns: {})",
                shorten(c),
                Column::ALL.map(Column::name).join(", ")
            ),
            SelectError::Unsupported(what) => write!(f, "not supported by the session history: {what}"),
        }
    }
}

fn shorten(text: &str) -> String {
    const MAX: usize = 60;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}…")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// A bare word or a back-quoted identifier (`quoted` then).
    Word {
        text: String,
        quoted: bool,
    },
    Str(String),
    Int(String),
    Punct(&'static str),
}

/// Tokens with the byte offset each starts at.
fn lex(sql: &str) -> Result<Vec<(Tok, usize)>, SelectError> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let near = |at: usize| sql.get(at..).unwrap_or("").to_string();
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' || c == b'@' || c == b'$' {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b'@' | b'$')) {
                i += 1;
            }
            out.push((
                Tok::Word {
                    text: sql[start..i].to_string(),
                    quoted: false,
                },
                start,
            ));
            continue;
        }
        if c.is_ascii_digit() {
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if i < bytes.len() && (bytes[i].is_ascii_alphabetic() || bytes[i] == b'_' || bytes[i] == b'.') {
                return Err(SelectError::Syntax {
                    message: "bad number".into(),
                    near: near(start),
                });
            }
            out.push((Tok::Int(sql[start..i].to_string()), start));
            continue;
        }
        match c {
            b'`' => {
                let mut text = String::new();
                i += 1;
                loop {
                    let Some(ch) = sql[i..].chars().next() else {
                        return Err(SelectError::Syntax {
                            message: "unterminated `identifier`".into(),
                            near: near(start),
                        });
                    };
                    i += ch.len_utf8();
                    if ch == '`' {
                        if sql[i..].starts_with('`') {
                            text.push('`');
                            i += 1;
                            continue;
                        }
                        break;
                    }
                    text.push(ch);
                }
                out.push((Tok::Word { text, quoted: true }, start));
            }
            b'\'' | b'"' => {
                let quote = c as char;
                let mut text = String::new();
                i += 1;
                loop {
                    let Some(ch) = sql[i..].chars().next() else {
                        return Err(SelectError::Syntax {
                            message: "unterminated string".into(),
                            near: near(start),
                        });
                    };
                    i += ch.len_utf8();
                    if ch == '\\' {
                        let Some(esc) = sql[i..].chars().next() else { continue };
                        i += esc.len_utf8();
                        text.push(match esc {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            '0' => '\0',
                            other => other,
                        });
                        continue;
                    }
                    if ch == quote {
                        if sql[i..].starts_with(quote) {
                            text.push(quote);
                            i += 1;
                            continue;
                        }
                        break;
                    }
                    text.push(ch);
                }
                out.push((Tok::Str(text), start));
            }
            _ => {
                const PUNCT: [&str; 14] = ["<=", ">=", "<>", "!=", "=", "<", ">", ",", "*", ";", "(", ")", ".", "-"];
                let Some(p) = PUNCT.iter().find(|p| sql[i..].starts_with(**p)) else {
                    return Err(SelectError::Syntax {
                        message: "unexpected character".into(),
                        near: near(start),
                    });
                };
                i += p.len();
                out.push((Tok::Punct(p), start));
            }
        }
    }
    Ok(out)
}

struct Parser<'a> {
    sql: &'a str,
    toks: Vec<(Tok, usize)>,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }

    fn near(&self) -> String {
        self.toks
            .get(self.pos)
            .and_then(|(_, at)| self.sql.get(*at..))
            .unwrap_or("")
            .to_string()
    }

    fn syntax(&self, message: impl Into<String>) -> SelectError {
        SelectError::Syntax {
            message: message.into(),
            near: self.near(),
        }
    }

    fn is_keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word { text, quoted: false }) if text.eq_ignore_ascii_case(kw))
    }

    fn keyword(&mut self, kw: &str) -> bool {
        let found = self.is_keyword(kw);
        if found {
            self.pos += 1;
        }
        found
    }

    fn expect_keyword(&mut self, kw: &str) -> Result<(), SelectError> {
        if self.keyword(kw) {
            Ok(())
        } else {
            Err(self.syntax(format!("expected {}", kw.to_ascii_uppercase())))
        }
    }

    fn punct(&mut self, p: &str) -> bool {
        let found = matches!(self.peek(), Some(Tok::Punct(q)) if *q == p);
        if found {
            self.pos += 1;
        }
        found
    }

    fn identifier(&mut self, what: &str) -> Result<String, SelectError> {
        match self.peek() {
            Some(Tok::Word { text, quoted: false }) if RESERVED.iter().any(|r| text.eq_ignore_ascii_case(r)) => {
                Err(self.syntax(format!("expected {what}")))
            }
            Some(Tok::Word { text, .. }) => {
                let text = text.clone();
                self.pos += 1;
                Ok(text)
            }
            _ => Err(self.syntax(format!("expected {what}"))),
        }
    }

    fn column(&mut self) -> Result<Column, SelectError> {
        let name = self.identifier("a column name")?;
        if self.punct("(") {
            return Err(SelectError::Unsupported(format!(
                "functions ({name}(…)); name columns only"
            )));
        }
        // `sessions.user_id`: a qualified name of the one table.
        let name = if self.punct(".") {
            if !name.eq_ignore_ascii_case("sessions") {
                return Err(SelectError::UnknownTable(name));
            }
            self.identifier("a column name")?
        } else {
            name
        };
        Column::from_name(&name).ok_or(SelectError::UnknownColumn(name))
    }

    fn integer(&mut self, what: &str) -> Result<u64, SelectError> {
        match self.peek() {
            Some(Tok::Int(n)) => {
                let n = n
                    .parse::<u64>()
                    .map_err(|_| self.syntax(format!("{what} is too large")))?;
                self.pos += 1;
                Ok(n)
            }
            _ => Err(self.syntax(format!("expected {what} (a whole number)"))),
        }
    }

    fn literal(&mut self) -> Result<Literal, SelectError> {
        let negative = self.punct("-");
        let lit = match self.peek() {
            Some(Tok::Str(s)) if !negative => Literal::Text(s.clone()),
            Some(Tok::Int(n)) => {
                let text = if negative { format!("-{n}") } else { n.clone() };
                Literal::Integer(text.parse().map_err(|_| self.syntax("number out of range"))?)
            }
            Some(Tok::Word { text, quoted: false }) if !negative && text.eq_ignore_ascii_case("null") => Literal::Null,
            _ => return Err(self.syntax("expected a value ('text' or a number)")),
        };
        self.pos += 1;
        Ok(lit)
    }

    fn condition(&mut self) -> Result<Condition, SelectError> {
        let column = self.column()?;
        if self.keyword("is") {
            let op = if self.keyword("not") {
                Comparison::Ne
            } else {
                Comparison::Eq
            };
            self.expect_keyword("null")?;
            return Ok(Condition {
                column,
                op,
                value: Literal::Null,
            });
        }
        let op = match self.peek() {
            Some(Tok::Punct("=")) => Comparison::Eq,
            Some(Tok::Punct("!=" | "<>")) => Comparison::Ne,
            Some(Tok::Punct("<")) => Comparison::Lt,
            Some(Tok::Punct("<=")) => Comparison::Le,
            Some(Tok::Punct(">")) => Comparison::Gt,
            Some(Tok::Punct(">=")) => Comparison::Ge,
            Some(Tok::Word { text, quoted: false })
                if ["like", "in", "between", "regexp", "rlike"]
                    .iter()
                    .any(|w| text.eq_ignore_ascii_case(w)) =>
            {
                return Err(SelectError::Unsupported(format!(
                    "the {} operator; use =, !=, <, <=, >, >= or IS [NOT] NULL",
                    text.to_ascii_uppercase()
                )));
            }
            _ => return Err(self.syntax("expected a comparison (=, !=, <, <=, >, >=, IS)")),
        };
        self.pos += 1;
        let value = self.literal()?;
        if value == Literal::Null {
            return Err(SelectError::Unsupported(
                "comparing with NULL (it is never true); use IS NULL or IS NOT NULL".into(),
            ));
        }
        Ok(Condition { column, op, value })
    }

    fn select(&mut self) -> Result<Select, SelectError> {
        self.expect_keyword("select")?;
        if self.keyword("distinct") {
            return Err(SelectError::Unsupported("SELECT DISTINCT".into()));
        }
        let mut columns = Vec::new();
        if self.punct("*") {
            columns.extend(Column::ALL);
        } else {
            loop {
                columns.push(self.column()?);
                if columns.len() > MAX_ITEMS {
                    return Err(SelectError::Unsupported(format!("more than {MAX_ITEMS} columns")));
                }
                if !self.punct(",") {
                    break;
                }
            }
        }
        if self.is_keyword("as") {
            return Err(SelectError::Unsupported("column aliases (AS)".into()));
        }
        self.expect_keyword("from")?;
        let table = self.identifier("a table name")?;
        let table = if self.punct(".") {
            if !table.eq_ignore_ascii_case("usher") {
                return Err(SelectError::UnknownTable(format!("{table}.…")));
            }
            self.identifier("a table name")?
        } else {
            table
        };
        if !table.eq_ignore_ascii_case("sessions") {
            return Err(SelectError::UnknownTable(table));
        }
        if self.punct(",") || self.is_keyword("join") || self.is_keyword("inner") || self.is_keyword("left") {
            return Err(SelectError::Unsupported("joins; query the one table `sessions`".into()));
        }
        let mut conditions = Vec::new();
        if self.keyword("where") {
            loop {
                conditions.push(self.condition()?);
                if conditions.len() > MAX_ITEMS {
                    return Err(SelectError::Unsupported(format!("more than {MAX_ITEMS} conditions")));
                }
                if self.is_keyword("or") {
                    return Err(SelectError::Unsupported("OR; conditions join with AND only".into()));
                }
                if !self.keyword("and") {
                    break;
                }
            }
        }
        if self.is_keyword("group") || self.is_keyword("having") {
            return Err(SelectError::Unsupported("GROUP BY / HAVING".into()));
        }
        let mut order = None;
        if self.keyword("order") {
            self.expect_keyword("by")?;
            let column = self.column()?;
            let desc = if self.keyword("desc") {
                true
            } else {
                self.keyword("asc");
                false
            };
            if self.punct(",") {
                return Err(SelectError::Unsupported("ordering by more than one column".into()));
            }
            order = Some((column, desc));
        }
        let (mut limit, mut offset) = (None, None);
        if self.keyword("limit") {
            let first = self.integer("a row count")?;
            if self.punct(",") {
                offset = Some(first);
                limit = Some(self.integer("a row count")?);
            } else {
                limit = Some(first);
                if self.keyword("offset") {
                    offset = Some(self.integer("an offset")?);
                }
            }
        }
        self.punct(";");
        if self.pos < self.toks.len() {
            return Err(self.syntax("unexpected text after the statement"));
        }
        Ok(Select {
            columns,
            conditions,
            order,
            limit,
            offset,
        })
    }
}

impl Select {
    /// Parses one statement; never panics, whatever `sql` is.
    pub fn parse(sql: &str) -> Result<Select, SelectError> {
        let toks = lex(sql)?;
        if toks.is_empty() {
            return Err(SelectError::Syntax {
                message: "empty query".into(),
                near: String::new(),
            });
        }
        Parser { sql, toks, pos: 0 }.select()
    }

    /// SQLite text and its parameters. The text holds only fixed words, the whitelisted column
    /// names (double-quoted) and `?N` placeholders; the row count is capped at
    /// [`MAX_ROWS`](super::MAX_ROWS).
    pub fn to_sql(&self) -> (String, Vec<Literal>) {
        let mut args = Vec::new();
        let quoted = |c: Column| format!("\"{}\"", c.name());
        let mut sql = format!(
            "SELECT {} FROM sessions",
            self.columns.iter().map(|c| quoted(*c)).collect::<Vec<_>>().join(", ")
        );
        for (i, cond) in self.conditions.iter().enumerate() {
            sql.push_str(if i == 0 { " WHERE " } else { " AND " });
            sql.push_str(&quoted(cond.column));
            match (&cond.value, cond.op) {
                (Literal::Null, Comparison::Ne) => sql.push_str(" IS NOT NULL"),
                (Literal::Null, _) => sql.push_str(" IS NULL"),
                (value, op) => {
                    args.push(value.clone());
                    sql.push_str(&format!(" {} ?{}", op.sql(), args.len()));
                }
            }
        }
        if let Some((column, desc)) = self.order {
            sql.push_str(&format!(
                " ORDER BY {}{}",
                quoted(column),
                if desc { " DESC" } else { " ASC" }
            ));
        }
        let limit = self.limit.unwrap_or(MAX_ROWS).min(MAX_ROWS);
        args.push(Literal::Integer(limit as i64));
        sql.push_str(&format!(" LIMIT ?{}", args.len()));
        if let Some(offset) = self.offset {
            args.push(Literal::Integer(i64::try_from(offset).unwrap_or(i64::MAX)));
            sql.push_str(&format!(" OFFSET ?{}", args.len()));
        }
        (sql, args)
    }
}
