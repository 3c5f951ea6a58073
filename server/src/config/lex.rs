//! Lexer of the Flussonic-style configuration file: the text as tokens, each with the line and
//! column (1-based, in characters) where it starts, for the parser's error messages.
//!
//! A token is a run of characters other than whitespace, `;`, `{`, `}` and `#`; double-quoted
//! parts (with `\"` and `\\` escapes) may hold any character and join the run they touch, so
//! `extra="a b"` is one token `extra=a b`. Quoting never changes meaning: `"true"` is `true`.
//! `#` starts a comment that runs to the end of the line; a leading byte-order mark is skipped.

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tok {
    Word(String),
    Semi,
    Open,
    Close,
    Eof,
}

#[derive(Debug, Clone)]
pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) line: usize,
    pub(super) column: usize,
}

pub(super) struct LexError {
    pub(super) line: usize,
    pub(super) column: usize,
    pub(super) message: String,
}

pub(super) fn is_special(c: char) -> bool {
    c.is_whitespace() || matches!(c, ';' | '{' | '}' | '#')
}

pub(super) fn lex(text: &str) -> Result<Vec<Token>, LexError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    let (mut line, mut column) = (1usize, 1usize);
    // Advances past one character, keeping line and column right.
    let step = |c: char, line: &mut usize, column: &mut usize| {
        if c == '\n' {
            *line += 1;
            *column = 1;
        } else {
            *column += 1;
        }
    };
    while let Some(&c) = chars.peek() {
        let (start_line, start_column) = (line, column);
        let single = match c {
            ';' => Some(Tok::Semi),
            '{' => Some(Tok::Open),
            '}' => Some(Tok::Close),
            _ => None,
        };
        if let Some(tok) = single {
            chars.next();
            step(c, &mut line, &mut column);
            tokens.push(Token {
                tok,
                line: start_line,
                column: start_column,
            });
            continue;
        }
        if c == '#' {
            while let Some(&c) = chars.peek() {
                if c == '\n' {
                    break;
                }
                chars.next();
                step(c, &mut line, &mut column);
            }
            continue;
        }
        if c.is_whitespace() {
            chars.next();
            step(c, &mut line, &mut column);
            continue;
        }
        // A word: bare runs and quoted parts joined together.
        let mut word = String::new();
        while let Some(&c) = chars.peek() {
            if c == '"' {
                let (q_line, q_column) = (line, column);
                chars.next();
                step(c, &mut line, &mut column);
                loop {
                    let Some(c) = chars.next() else {
                        return Err(LexError {
                            line: q_line,
                            column: q_column,
                            message: "unterminated string: expected a closing '\"' before the \
                                      end of the file"
                                .into(),
                        });
                    };
                    let (c_line, c_column) = (line, column);
                    step(c, &mut line, &mut column);
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some(e @ ('"' | '\\')) => {
                                step(e, &mut line, &mut column);
                                word.push(e);
                            }
                            Some(other) => {
                                return Err(LexError {
                                    line: c_line,
                                    column: c_column,
                                    message: format!(
                                        "unknown escape '\\{}' in a string (only \\\" and \\\\ \
                                         are allowed)",
                                        other.escape_debug()
                                    ),
                                });
                            }
                            None => {
                                return Err(LexError {
                                    line: q_line,
                                    column: q_column,
                                    message: "unterminated string: expected a closing '\"' \
                                              before the end of the file"
                                        .into(),
                                });
                            }
                        },
                        other => word.push(other),
                    }
                }
            } else if is_special(c) {
                break;
            } else {
                chars.next();
                step(c, &mut line, &mut column);
                word.push(c);
            }
        }
        tokens.push(Token {
            tok: Tok::Word(word),
            line: start_line,
            column: start_column,
        });
    }
    tokens.push(Token {
        tok: Tok::Eof,
        line,
        column,
    });
    Ok(tokens)
}

/// The words of `text` with their positions, for tests here and of the printer's quoting.
#[cfg(test)]
pub(super) fn words(text: &str) -> Vec<(String, usize, usize)> {
    let Ok(tokens) = lex(text) else { panic!("lex failed") };
    tokens
        .into_iter()
        .filter_map(|t| match t.tok {
            Tok::Word(w) => Some((w, t.line, t.column)),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_lexer_joins_quoted_parts_and_tracks_positions() {
        assert_eq!(
            words("a \"b c\"d # comment \"x\n  e=\"f\\\"g\\\\\";"),
            [("a".into(), 1, 1), ("b cd".into(), 1, 3), ("e=f\"g\\".into(), 2, 3)]
        );
    }

    #[test]
    fn config_lexer_counts_lines_inside_strings() {
        assert_eq!(words("\"a\nb\" c"), [("a\nb".into(), 1, 1), ("c".into(), 2, 4)]);
    }
}
