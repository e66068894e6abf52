//! Lexer and recursive-descent parser for the strict HCL subset that policies
//! are written in.
//!
//! Grammar (whitespace and comments may appear between any two tokens):
//!
//! ```text
//! policy     = { block }                       (blocks on separate lines)
//! block      = "path" STRING "{" { attribute | breakglass } "}"
//! attribute  = "capabilities" "=" list
//! breakglass = "break_glass" "{" { "max_ttl" "=" STRING | "uses" "=" INT | factor } "}"
//! factor     = "factor" STRING "{" { "approvers" "=" list | "approvals" "=" INT } "}"
//! list       = "[" [ STRING { "," STRING } [ "," ] ] "]"
//! comment    = "#" ... end of line | "//" ... end of line | "/*" ... "*/"
//! STRING     = '"' { any character but '"', '\', newline, control; or \" or \\ } '"'
//! ```
//!
//! `approvals`, `approvers` and `max_ttl` written straight in a `path` block
//! (Vault's control-group spelling) are refused with a pointer to the
//! `break_glass` block, rather than accepted and ignored: an operator would
//! believe the path guarded when a plain `read` opens it.
//!
//! Each attribute may appear at most once per block, `capabilities` is
//! mandatory, and two attributes (or two blocks) may not share a line, as in
//! HCL; inside a `factor` block they may (`{ approvers = [...] approvals = 2 }`
//! reads as one statement). `break_glass` is checked as a whole when it
//! closes (`super::break_glass`): at least one factor, approvals of at least
//! one, approvers named `group:` or `identity:`, a `max_ttl` of at most 24 h. The parser is deliberately unforgiving: every construct it does not
//! know is an error with a line and column, because a policy that is
//! half-understood is a policy that grants something its author did not mean.

use std::collections::BTreeSet;

use super::break_glass::{self, Approver, BreakGlass, Factor};
use super::{Capability, PathRule, Policy, PolicyError};

/// Names of the attributes a `path` block accepts, for error messages.
const ATTRIBUTE_NAMES: &str = "capabilities, break_glass";

/// Vault's control-group attributes: here they belong inside `break_glass`.
const BREAK_GLASS_ATTRIBUTES: [&str; 3] = ["approvals", "approvers", "max_ttl"];

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Str(String),
    /// Decimal digits, converted (and range-checked) by the parser.
    Int(String),
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Equals,
    Comma,
    Eof,
}

impl Tok {
    /// How the token is named in "found ..." parts of error messages.
    fn describe(&self) -> String {
        match self {
            Tok::Ident(name) => format!("identifier {name:?}"),
            Tok::Str(value) => format!("string {value:?}"),
            Tok::Int(digits) => format!("number {digits}"),
            Tok::LBrace => "\"{\"".to_owned(),
            Tok::RBrace => "\"}\"".to_owned(),
            Tok::LBracket => "\"[\"".to_owned(),
            Tok::RBracket => "\"]\"".to_owned(),
            Tok::Equals => "\"=\"".to_owned(),
            Tok::Comma => "\",\"".to_owned(),
            Tok::Eof => "end of input".to_owned(),
        }
    }
}

/// A token with the position of its first character.
#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    line: usize,
    column: usize,
}

fn error(line: usize, column: usize, message: impl Into<String>) -> PolicyError {
    PolicyError {
        line,
        column,
        message: message.into(),
    }
}

/// "expected X, found Y" at the position of the offending token.
fn unexpected(expected: &str, found: &Token) -> PolicyError {
    error(
        found.line,
        found.column,
        format!("expected {expected}, found {}", found.tok.describe()),
    )
}

/// Splits the source into tokens, tracking 1-based line and column (columns
/// count characters, not bytes, so positions match what an editor shows).
struct Lexer {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    column: usize,
}

impl Lexer {
    fn new(src: &str) -> Self {
        Lexer {
            chars: src.chars().collect(),
            pos: 0,
            line: 1,
            column: 1,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_second(&self) -> Option<char> {
        self.chars.get(self.pos + 1).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    /// Skips whitespace and the three comment forms.
    fn skip_trivia(&mut self) -> Result<(), PolicyError> {
        loop {
            match (self.peek(), self.peek_second()) {
                (Some(c), _) if c.is_whitespace() => {
                    self.bump();
                }
                (Some('#'), _) | (Some('/'), Some('/')) => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.bump();
                    }
                }
                (Some('/'), Some('*')) => {
                    let (line, column) = (self.line, self.column);
                    self.bump();
                    self.bump();
                    loop {
                        match (self.peek(), self.peek_second()) {
                            (None, _) => {
                                return Err(error(
                                    line,
                                    column,
                                    "unterminated block comment \
                                     (expected \"*/\" before end of input)",
                                ));
                            }
                            (Some('*'), Some('/')) => {
                                self.bump();
                                self.bump();
                                break;
                            }
                            _ => {
                                self.bump();
                            }
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn next_token(&mut self) -> Result<Token, PolicyError> {
        self.skip_trivia()?;
        let (line, column) = (self.line, self.column);
        let Some(c) = self.peek() else {
            return Ok(Token {
                tok: Tok::Eof,
                line,
                column,
            });
        };
        let tok = match c {
            '{' | '}' | '[' | ']' | '=' | ',' => {
                self.bump();
                match c {
                    '{' => Tok::LBrace,
                    '}' => Tok::RBrace,
                    '[' => Tok::LBracket,
                    ']' => Tok::RBracket,
                    '=' => Tok::Equals,
                    _ => Tok::Comma,
                }
            }
            '"' => Tok::Str(self.string(line, column)?),
            c if c.is_ascii_digit()
                || (c == '-' && self.peek_second().is_some_and(|d| d.is_ascii_digit())) =>
            {
                let mut digits = String::new();
                if c == '-' {
                    digits.push(c);
                    self.bump();
                }
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    digits.push(d);
                    self.bump();
                }
                Tok::Int(digits)
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut name = String::new();
                while let Some(d) = self
                    .peek()
                    .filter(|d| d.is_ascii_alphanumeric() || *d == '_' || *d == '-')
                {
                    name.push(d);
                    self.bump();
                }
                Tok::Ident(name)
            }
            other => {
                return Err(error(
                    line,
                    column,
                    format!("unexpected character {other:?}"),
                ));
            }
        };
        Ok(Token { tok, line, column })
    }

    /// Reads a quoted string whose opening quote is at `line`/`column`.
    /// Strings may not span lines; the only escapes are `\"` and `\\`, so a
    /// pattern always means exactly what it looks like.
    fn string(&mut self, line: usize, column: usize) -> Result<String, PolicyError> {
        self.bump();
        let mut value = String::new();
        loop {
            let (at_line, at_column) = (self.line, self.column);
            match self.peek() {
                None | Some('\n') => {
                    return Err(error(
                        line,
                        column,
                        "unterminated string (expected a closing '\"' on the same line)",
                    ));
                }
                Some('"') => {
                    self.bump();
                    return Ok(value);
                }
                Some('\\') => {
                    self.bump();
                    match self.peek() {
                        Some(escaped @ ('"' | '\\')) => {
                            self.bump();
                            value.push(escaped);
                        }
                        _ => {
                            return Err(error(
                                at_line,
                                at_column,
                                "unsupported escape sequence (expected \\\" or \\\\)",
                            ));
                        }
                    }
                }
                Some(c) if c.is_control() => {
                    return Err(error(
                        at_line,
                        at_column,
                        format!("control character {c:?} in string (expected printable text)"),
                    ));
                }
                Some(c) => {
                    self.bump();
                    value.push(c);
                }
            }
        }
    }
}

/// The attributes of a `path` block; the discriminant indexes `seen` below.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attr {
    Capabilities = 0,
}

impl Attr {
    fn from_name(name: &str) -> Option<Attr> {
        match name {
            "capabilities" => Some(Attr::Capabilities),
            _ => None,
        }
    }
}

struct Parser {
    lexer: Lexer,
    /// Line of the most recently consumed token, used to require newlines
    /// between attributes and between blocks.
    last_line: usize,
}

/// Parses a whole policy source. Called by [`super::Policy::parse`].
pub(super) fn parse_policy(src: &str) -> Result<Policy, PolicyError> {
    let mut parser = Parser {
        lexer: Lexer::new(src),
        last_line: 1,
    };
    let mut rules = Vec::new();
    let mut previous_block_end: Option<usize> = None;
    loop {
        let token = parser.next()?;
        match &token.tok {
            Tok::Eof => return Ok(Policy { rules }),
            Tok::Ident(word) if word == "path" => {
                if previous_block_end == Some(token.line) {
                    return Err(error(
                        token.line,
                        token.column,
                        "expected a newline between the \"}\" of the previous block and \"path\"",
                    ));
                }
                rules.push(parser.path_block(&token)?);
                previous_block_end = Some(parser.last_line);
            }
            _ => return Err(unexpected("a \"path\" block or end of input", &token)),
        }
    }
}

impl Parser {
    fn next(&mut self) -> Result<Token, PolicyError> {
        let token = self.lexer.next_token()?;
        self.last_line = token.line;
        Ok(token)
    }

    /// Parses the rest of a block whose `path` keyword is `keyword`.
    fn path_block(&mut self, keyword: &Token) -> Result<PathRule, PolicyError> {
        let token = self.next()?;
        let pattern = match &token.tok {
            Tok::Str(pattern) if pattern.is_empty() => {
                return Err(error(
                    token.line,
                    token.column,
                    "empty path pattern (expected a non-empty string such as \"secret/*\")",
                ));
            }
            Tok::Str(pattern) => pattern.clone(),
            _ => return Err(unexpected("a quoted path pattern after \"path\"", &token)),
        };
        let open = self.next()?;
        if open.tok != Tok::LBrace {
            return Err(unexpected("\"{\" to open the path block", &open));
        }

        let mut rule = PathRule {
            pattern,
            capabilities: BTreeSet::new(),
            break_glass: None,
        };
        let mut break_glass_at: Option<(usize, usize)> = None;
        let mut seen: [Option<(usize, usize)>; 1] = [None; 1];
        let mut last_value_line: Option<usize> = None;
        loop {
            let token = self.next()?;
            let name = match &token.tok {
                Tok::RBrace => break,
                Tok::Ident(name) => name.clone(),
                Tok::Eof => {
                    return Err(error(
                        token.line,
                        token.column,
                        format!(
                            "expected \"}}\" to close the path block opened at line {}, column {}, \
                             found end of input",
                            open.line, open.column
                        ),
                    ));
                }
                _ => return Err(unexpected("an attribute name or \"}\"", &token)),
            };
            if last_value_line == Some(token.line) {
                return Err(error(
                    token.line,
                    token.column,
                    format!(
                        "expected a newline or \"}}\" after the previous attribute, found {}",
                        token.tok.describe()
                    ),
                ));
            }
            if name == "break_glass" {
                if let Some((line, column)) = break_glass_at {
                    return Err(error(
                        token.line,
                        token.column,
                        format!(
                            "duplicate break_glass block (first opened at line {line}, column {column})"
                        ),
                    ));
                }
                break_glass_at = Some((token.line, token.column));
                rule.break_glass = Some(self.break_glass_block(&token)?);
                last_value_line = Some(self.last_line);
                continue;
            }
            let Some(attr) = Attr::from_name(&name) else {
                let message = if BREAK_GLASS_ATTRIBUTES.contains(&name.as_str()) {
                    format!(
                        "{name:?} belongs in a break_glass block (`break_glass {{ max_ttl = \"1h\" \
                         factor \"NAME\" {{ approvers = [...] approvals = N }} }}`), not straight \
                         in a path block"
                    )
                } else if name == "path" {
                    // Most likely the previous block lacks its closing brace.
                    format!(
                        "expected \"}}\" to close the path block opened at line {}, column {}, \
                         found the next \"path\" block",
                        open.line, open.column
                    )
                } else {
                    format!("unknown attribute {name:?} (expected one of {ATTRIBUTE_NAMES})")
                };
                return Err(error(token.line, token.column, message));
            };
            if let Some((line, column)) = seen[attr as usize] {
                return Err(error(
                    token.line,
                    token.column,
                    format!(
                        "duplicate attribute {name:?} (first set at line {line}, column {column})"
                    ),
                ));
            }
            seen[attr as usize] = Some((token.line, token.column));

            let equals = self.next()?;
            if equals.tok != Tok::Equals {
                return Err(unexpected(&format!("\"=\" after {name:?}"), &equals));
            }
            match attr {
                Attr::Capabilities => rule.capabilities = self.capability_list()?,
            }
            last_value_line = Some(self.last_line);
        }

        if seen[Attr::Capabilities as usize].is_none() {
            return Err(error(
                keyword.line,
                keyword.column,
                format!(
                    "path {:?} has no capabilities \
                     (expected a `capabilities = [...]` attribute in its block)",
                    rule.pattern
                ),
            ));
        }
        Ok(rule)
    }

    /// `[ "read", "list" ]`, trailing comma allowed, may span lines.
    fn capability_list(&mut self) -> Result<BTreeSet<Capability>, PolicyError> {
        let mut capabilities = BTreeSet::new();
        for (name, token) in self.string_list("capabilities list", "capability name")? {
            let cap = name
                .parse::<Capability>()
                .map_err(|e| error(token.line, token.column, e.to_string()))?;
            capabilities.insert(cap);
        }
        Ok(capabilities)
    }

    /// A bracketed list of strings (the `list` of the grammar), each with its token.
    fn string_list(&mut self, list: &str, item: &str) -> Result<Vec<(String, Token)>, PolicyError> {
        let open = self.next()?;
        if open.tok != Tok::LBracket {
            return Err(unexpected(&format!("\"[\" to start the {list}"), &open));
        }
        let mut items = Vec::new();
        loop {
            let token = self.next()?;
            match &token.tok {
                Tok::RBracket => return Ok(items),
                Tok::Str(name) => items.push((name.clone(), token.clone())),
                Tok::Eof => {
                    return Err(error(
                        token.line,
                        token.column,
                        format!(
                            "expected \"]\" to close the {list} opened at line {}, \
                             column {}, found end of input",
                            open.line, open.column
                        ),
                    ));
                }
                _ => return Err(unexpected(&format!("a quoted {item} or \"]\""), &token)),
            }
            let separator = self.next()?;
            match separator.tok {
                Tok::Comma => {}
                Tok::RBracket => return Ok(items),
                _ => {
                    return Err(unexpected(
                        &format!("\",\" or \"]\" in the {list}"),
                        &separator,
                    ));
                }
            }
        }
    }

    /// `= N` for a count of at least 1 named `name`.
    fn count(&mut self, name: &str) -> Result<u32, PolicyError> {
        let equals = self.next()?;
        if equals.tok != Tok::Equals {
            return Err(unexpected(&format!("\"=\" after {name:?}"), &equals));
        }
        let token = self.next()?;
        let Tok::Int(digits) = &token.tok else {
            return Err(unexpected(&format!("a whole number for {name:?}"), &token));
        };
        match digits.parse::<i64>() {
            Ok(n) if n >= 1 => u32::try_from(n).map_err(|_| {
                error(
                    token.line,
                    token.column,
                    format!("{name} = {digits} is too large"),
                )
            }),
            _ if digits.starts_with('-') || digits.trim_start_matches('0').is_empty() => {
                Err(error(
                    token.line,
                    token.column,
                    format!("{name} = {digits}: it must be at least 1"),
                ))
            }
            _ => Err(error(
                token.line,
                token.column,
                format!("{name} = {digits} is too large"),
            )),
        }
    }

    /// `{` after a block keyword; returns its token.
    fn open_brace(&mut self, block: &str) -> Result<Token, PolicyError> {
        let open = self.next()?;
        if open.tok != Tok::LBrace {
            return Err(unexpected(&format!("\"{{\" to open the {block}"), &open));
        }
        Ok(open)
    }

    /// The next name inside a block opened by `open`, or `None` at its `}`.
    fn block_item(&mut self, block: &str, open: &Token) -> Result<Option<Token>, PolicyError> {
        let token = self.next()?;
        match &token.tok {
            Tok::RBrace => Ok(None),
            Tok::Ident(_) => Ok(Some(token)),
            Tok::Eof => Err(error(
                token.line,
                token.column,
                format!(
                    "expected \"}}\" to close the {block} opened at line {}, column {}, \
                     found end of input",
                    open.line, open.column
                ),
            )),
            _ => Err(unexpected("a name or \"}\"", &token)),
        }
    }

    /// The rest of `break_glass { ... }` after its keyword.
    fn break_glass_block(&mut self, keyword: &Token) -> Result<BreakGlass, PolicyError> {
        let open = self.open_brace("break_glass block")?;
        let mut max_ttl: Option<u64> = None;
        let mut uses: Option<u32> = None;
        let mut factors: Vec<Factor> = Vec::new();
        let mut last_line: Option<usize> = None;
        while let Some(token) = self.block_item("break_glass block", &open)? {
            let Tok::Ident(name) = &token.tok else {
                unreachable!("block_item returns names")
            };
            if last_line == Some(token.line) {
                return Err(error(
                    token.line,
                    token.column,
                    format!("expected a newline or \"}}\" before {name:?}"),
                ));
            }
            let duplicate = |what: &str| {
                error(
                    token.line,
                    token.column,
                    format!("duplicate {what:?} in the break_glass block"),
                )
            };
            match name.as_str() {
                "max_ttl" => {
                    if max_ttl.is_some() {
                        return Err(duplicate("max_ttl"));
                    }
                    let equals = self.next()?;
                    if equals.tok != Tok::Equals {
                        return Err(unexpected("\"=\" after \"max_ttl\"", &equals));
                    }
                    let value = self.next()?;
                    let Tok::Str(text) = &value.tok else {
                        return Err(unexpected("a quoted duration such as \"1h\"", &value));
                    };
                    let secs = break_glass::parse_duration(text)
                        .map_err(|e| error(value.line, value.column, e))?;
                    if secs == 0 || secs > break_glass::MAX_GRANT_SECS {
                        return Err(error(
                            value.line,
                            value.column,
                            format!(
                                "max_ttl = {text:?}: a grant lasts more than nothing and at most 24h"
                            ),
                        ));
                    }
                    max_ttl = Some(secs);
                }
                "uses" => {
                    if uses.is_some() {
                        return Err(duplicate("uses"));
                    }
                    uses = Some(self.count("uses")?);
                }
                "factor" => {
                    let factor = self.factor_block(&token)?;
                    if factors.iter().any(|f| f.name == factor.name) {
                        return Err(error(
                            token.line,
                            token.column,
                            format!(
                                "duplicate factor {:?} in the break_glass block",
                                factor.name
                            ),
                        ));
                    }
                    factors.push(factor);
                }
                other => {
                    return Err(error(
                        token.line,
                        token.column,
                        format!(
                            "unknown name {other:?} in a break_glass block \
                             (expected one of max_ttl, uses, factor)"
                        ),
                    ))
                }
            }
            last_line = Some(self.last_line);
        }
        let Some(max_ttl_secs) = max_ttl else {
            return Err(error(
                keyword.line,
                keyword.column,
                "the break_glass block has no max_ttl (expected `max_ttl = \"1h\"`: the longest \
                 a grant lasts, at most 24h)",
            ));
        };
        if factors.is_empty() {
            return Err(error(
                keyword.line,
                keyword.column,
                "the break_glass block has no factor (expected at least one \
                 `factor \"NAME\" { approvers = [...] approvals = N }`)",
            ));
        }
        Ok(BreakGlass {
            max_ttl_secs,
            uses: uses.unwrap_or(break_glass::DEFAULT_USES),
            factors,
        })
    }

    /// The rest of `factor "NAME" { ... }` after its keyword. Its two attributes may share a
    /// line (the one-line form reads as one statement).
    fn factor_block(&mut self, keyword: &Token) -> Result<Factor, PolicyError> {
        let name_token = self.next()?;
        let name = match &name_token.tok {
            Tok::Str(n) if !n.is_empty() => n.clone(),
            _ => {
                return Err(unexpected(
                    "a quoted factor name after \"factor\"",
                    &name_token,
                ))
            }
        };
        let open = self.open_brace("factor block")?;
        let mut approvers: Option<Vec<Approver>> = None;
        let mut approvals: Option<u32> = None;
        while let Some(token) = self.block_item("factor block", &open)? {
            let Tok::Ident(attr) = &token.tok else {
                unreachable!("block_item returns names")
            };
            let duplicate = || {
                error(
                    token.line,
                    token.column,
                    format!("duplicate {attr:?} in factor {name:?}"),
                )
            };
            match attr.as_str() {
                "approvers" => {
                    if approvers.is_some() {
                        return Err(duplicate());
                    }
                    let equals = self.next()?;
                    if equals.tok != Tok::Equals {
                        return Err(unexpected("\"=\" after \"approvers\"", &equals));
                    }
                    let mut list = Vec::new();
                    for (text, at) in self.string_list("approvers list", "approver")? {
                        let approver =
                            Approver::parse(&text).map_err(|e| error(at.line, at.column, e))?;
                        if !list.contains(&approver) {
                            list.push(approver);
                        }
                    }
                    if list.is_empty() {
                        return Err(error(
                            token.line,
                            token.column,
                            format!("factor {name:?} has an empty approvers list"),
                        ));
                    }
                    approvers = Some(list);
                }
                "approvals" => {
                    if approvals.is_some() {
                        return Err(duplicate());
                    }
                    approvals = Some(self.count("approvals")?);
                }
                other => {
                    return Err(error(
                        token.line,
                        token.column,
                        format!(
                            "unknown attribute {other:?} in factor {name:?} \
                             (expected approvers, approvals)"
                        ),
                    ))
                }
            }
        }
        let Some(approvers) = approvers else {
            return Err(error(
                keyword.line,
                keyword.column,
                format!(
                    "factor {name:?} has no approvers (expected `approvers = [\"group:NAME\"]`)"
                ),
            ));
        };
        let Some(approvals) = approvals else {
            return Err(error(
                keyword.line,
                keyword.column,
                format!("factor {name:?} has no approvals (expected `approvals = N`, at least 1)"),
            ));
        };
        Ok(Factor {
            name,
            approvers,
            approvals,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Capability, PathRule, Policy, PolicyError};
    use std::collections::BTreeSet;

    const EXPECTED_CAPS: &str =
        "(expected one of create, read, update, delete, list, sign, approve, admin, deny)";

    fn parse_ok(src: &str) -> Policy {
        match Policy::parse(src) {
            Ok(policy) => policy,
            Err(err) => panic!("should parse, got: {err}"),
        }
    }

    fn parse_err(src: &str) -> PolicyError {
        match Policy::parse(src) {
            Ok(policy) => panic!("should fail, parsed: {policy:?}"),
            Err(err) => err,
        }
    }

    /// Asserts the position and that the message contains `needle`.
    fn assert_err(src: &str, line: usize, column: usize, needle: &str) {
        let err = parse_err(src);
        assert_eq!(
            (err.line, err.column),
            (line, column),
            "wrong position for: {err}"
        );
        assert!(
            err.message.contains(needle),
            "message {:?} lacks {needle:?}",
            err.message
        );
    }

    fn caps(list: &[Capability]) -> BTreeSet<Capability> {
        list.iter().copied().collect()
    }

    #[test]
    fn parses_the_documented_example() {
        let src = r#"# comment, also // comment and /* block */
path "prod/db/*" {
  capabilities = ["read", "list"]
}
path "prod/+/config" { capabilities = ["deny"] }
"#;
        let policy = parse_ok(src);
        assert_eq!(
            policy.rules,
            vec![
                PathRule {
                    pattern: "prod/db/*".into(),
                    capabilities: caps(&[Capability::Read, Capability::List]),
                    break_glass: None,
                },
                PathRule {
                    pattern: "prod/+/config".into(),
                    capabilities: caps(&[Capability::Deny]),
                    break_glass: None,
                },
            ]
        );
    }

    #[test]
    fn parses_comments_and_layouts() {
        let src = "// line comment\n\
                   /* block\n   comment */ path \"pki/issue/*\" { # trailing\n\
                   \tcapabilities = [\n    \"sign\", // why\n    \"approve\", /* inline */\n  ]\n\
                   }\n\
                   path \"all/*\" { capabilities = [\"create\", \"read\", \"update\", \"delete\", \"list\", \"sign\", \"approve\", \"admin\"] }\n";
        let policy = parse_ok(src);
        assert_eq!(policy.rules.len(), 2);
        let rule = &policy.rules[0];
        assert_eq!(rule.pattern, "pki/issue/*");
        assert_eq!(
            rule.capabilities,
            caps(&[Capability::Sign, Capability::Approve])
        );
        assert_eq!(policy.rules[1].capabilities.len(), 8);
    }

    #[test]
    fn empty_and_comment_only_sources_have_no_rules() {
        for src in [
            "",
            "\n\n",
            "   \t\r\n",
            "# only a comment",
            "// one\n# two\n/* three\n four */\n",
        ] {
            assert_eq!(parse_ok(src), Policy::default(), "{src:?}");
        }
    }

    #[test]
    fn crlf_escapes_duplicates_and_empty_lists() {
        let policy = parse_ok(
            "path \"a\\\"b\\\\c\" {\r\n  capabilities = [\"read\", \"read\"]\r\n}\r\n\
             path \"a\\\"b\\\\c\" {\r\n  capabilities = []\r\n}\r\n",
        );
        assert_eq!(policy.rules.len(), 2);
        assert_eq!(policy.rules[0].pattern, "a\"b\\c");
        assert_eq!(policy.rules[0].capabilities, caps(&[Capability::Read]));
        assert!(policy.rules[1].capabilities.is_empty());
    }

    #[test]
    fn unknown_capability() {
        let err = parse_err("path \"a\" {\n  capabilities = [\"read\", \"raed\"]\n}\n");
        assert_eq!(
            err.to_string(),
            format!("line 2, column 27: unknown capability \"raed\" {EXPECTED_CAPS}")
        );
        // Case matters, and columns count characters rather than bytes.
        assert_err(
            "path \"é/x\" { capabilities = [\"Read\"] }",
            1,
            30,
            "unknown capability \"Read\"",
        );
    }

    #[test]
    fn unknown_attribute() {
        let err = parse_err("path \"a\" {\n  capabilities = [\"read\"]\n  policy = \"read\"\n}\n");
        assert_eq!(
            err.to_string(),
            "line 3, column 3: unknown attribute \"policy\" (expected one of capabilities, break_glass)"
        );
    }

    #[test]
    fn missing_capabilities() {
        let err = parse_err("# header\n\npath \"a/*\" {\n}\n");
        assert_eq!(
            err.to_string(),
            "line 3, column 1: path \"a/*\" has no capabilities (expected a \
             `capabilities = [...]` attribute in its block)"
        );
        assert_err("path \"a\" {}", 1, 1, "has no capabilities");
    }

    #[test]
    fn unterminated_string() {
        let err = parse_err("path \"a\" {\n  capabilities = [\"read]\n}\n");
        assert_eq!(
            err.to_string(),
            "line 2, column 19: unterminated string (expected a closing '\"' on the same line)"
        );
        assert_err("path \"prod/db", 1, 6, "unterminated string");
        assert_err("  path \"a\\\"", 1, 8, "unterminated string");
    }

    #[test]
    fn missing_opening_brace() {
        let err = parse_err("path \"a\"\n  capabilities = [\"read\"]\n}\n");
        assert_eq!(
            err.to_string(),
            "line 2, column 3: expected \"{\" to open the path block, found identifier \"capabilities\""
        );
    }

    #[test]
    fn missing_closing_brace_at_end_of_input() {
        let err = parse_err("path \"a\" {\n  capabilities = [\"read\"]\n");
        assert_eq!(
            err.to_string(),
            "line 3, column 1: expected \"}\" to close the path block opened at line 1, \
             column 10, found end of input"
        );
    }

    #[test]
    fn missing_closing_brace_before_next_block() {
        assert_err(
            "path \"a\" {\n  capabilities = [\"read\"]\npath \"b\" {\n  capabilities = [\"list\"]\n}\n",
            3,
            1,
            "expected \"}\" to close the path block opened at line 1, column 10, found the next \"path\" block",
        );
    }

    #[test]
    fn duplicate_attribute() {
        let err = parse_err(
            "path \"a\" {\n  capabilities = [\"read\"]\n  capabilities = [\"list\"]\n}\n",
        );
        assert_eq!(
            err.to_string(),
            "line 3, column 3: duplicate attribute \"capabilities\" (first set at line 2, column 3)"
        );
        assert_err(
            "path \"a\" {\n capabilities = []\n\n   capabilities = [\"read\"]\n}",
            4,
            4,
            "duplicate attribute \"capabilities\" (first set at line 2, column 2)",
        );
    }

    #[test]
    fn trailing_garbage() {
        let err = parse_err("path \"a\" {\n  capabilities = [\"read\"]\n}\n}\n");
        assert_eq!(
            err.to_string(),
            "line 4, column 1: expected a \"path\" block or end of input, found \"}\""
        );
        assert_err(
            "path \"a\" { capabilities = [] }\n  garbage",
            2,
            3,
            "expected a \"path\" block or end of input, found identifier \"garbage\"",
        );
        assert_err("# c\n 42", 2, 2, "found number 42");
        assert_err("paths \"a\" {}", 1, 1, "found identifier \"paths\"");
    }

    #[test]
    fn empty_path_string() {
        let err = parse_err("path \"\" {\n  capabilities = [\"read\"]\n}\n");
        assert_eq!(
            err.to_string(),
            "line 1, column 6: empty path pattern (expected a non-empty string such as \"secret/*\")"
        );
    }

    #[test]
    fn path_needs_a_quoted_pattern() {
        assert_err(
            "path prod {",
            1,
            6,
            "expected a quoted path pattern after \"path\", found identifier \"prod\"",
        );
        assert_err("path", 1, 5, "found end of input");
    }

    #[test]
    fn newlines_separate_attributes_and_blocks() {
        assert_err(
            "path \"a\" { capabilities = [\"read\"] capabilities = [] }",
            1,
            36,
            "expected a newline or \"}\" after the previous attribute, found identifier \"capabilities\"",
        );
        assert_err(
            "path \"a\" { capabilities = [] } path \"b\" { capabilities = [] }",
            1,
            32,
            "expected a newline between",
        );
    }

    #[test]
    fn malformed_lists() {
        assert_err(
            "path \"a\" {\n  capabilities = \"read\"\n}",
            2,
            18,
            "expected \"[\" to start the capabilities list, found string \"read\"",
        );
        assert_err(
            "path \"a\" {\n  capabilities = [\"read\" \"list\"]\n}",
            2,
            26,
            "expected \",\" or \"]\" in the capabilities list, found string \"list\"",
        );
        assert_err(
            "path \"a\" {\n  capabilities = [read]\n}",
            2,
            19,
            "expected a quoted capability name or \"]\", found identifier \"read\"",
        );
        assert_err(
            "path \"a\" {\n  capabilities = [\"read\",",
            2,
            26,
            "expected \"]\" to close the capabilities list opened at line 2, column 18",
        );
        assert_err(
            "path \"a\" {\n  capabilities [\"read\"]\n}",
            2,
            16,
            "expected \"=\" after \"capabilities\", found \"[\"",
        );
    }

    #[test]
    fn control_group_attributes_point_to_break_glass() {
        // Vault's spelling, straight in the path block: refused with the place, never ignored.
        for (attr, value) in [
            ("approvals", "2"),
            ("approvers", "\"sre\""),
            ("max_ttl", "\"1h\""),
        ] {
            let src = format!(
                "path \"prod/*\" {{\n  capabilities = [\"read\"]\n  {attr} = {value}\n}}\n"
            );
            let err = parse_err(&src);
            assert_eq!((err.line, err.column), (3, 3), "{err}");
            assert!(
                err.message
                    .starts_with(&format!("\"{attr}\" belongs in a break_glass block")),
                "{err}"
            );
        }
    }

    const GATE: &str = r#"path "prod/db/*" {
  capabilities = ["read"]
  break_glass {
    max_ttl = "1h"          # longest grant
    uses    = 3
    factor "sre"      { approvers = ["group:sre-leads"] approvals = 2 }
    factor "security" {
      approvers = ["group:security", "identity:ciso", "group:security"]
      approvals = 1
    }
  }
}
"#;

    #[test]
    fn parses_the_break_glass_example_and_writes_it_back() {
        use super::super::break_glass::{Approver, BreakGlass, Factor};
        let policy = parse_ok(GATE);
        let bg = policy.rules[0].break_glass.clone().expect("a gate");
        assert_eq!(
            bg,
            BreakGlass {
                max_ttl_secs: 3600,
                uses: 3,
                factors: vec![
                    Factor {
                        name: "sre".into(),
                        approvers: vec![Approver::Group("sre-leads".into())],
                        approvals: 2,
                    },
                    Factor {
                        name: "security".into(),
                        // A repeated approver counts once.
                        approvers: vec![
                            Approver::Group("security".into()),
                            Approver::Identity("ciso".into()),
                        ],
                        approvals: 1,
                    },
                ],
            }
        );
        assert_eq!(Policy::parse(&policy.to_hcl("again")).unwrap(), policy);
        // `uses` defaults to one.
        let one = parse_ok(
            "path \"k\" {\n  capabilities = [\"sign\"]\n  break_glass {\n    max_ttl = \"30m\"\n    \
             factor \"a\" { approvers = [\"identity:x\"] approvals = 1 }\n  }\n}\n",
        );
        let bg = one.rules[0].break_glass.as_ref().unwrap();
        assert_eq!((bg.uses, bg.max_ttl_secs), (1, 1800));
    }

    /// `GATE` with `from` replaced by `to`.
    fn gate_with(from: &str, to: &str) -> String {
        assert!(GATE.contains(from), "{from}");
        GATE.replacen(from, to, 1)
    }

    #[test]
    fn a_malformed_gate_is_refused_with_its_place() {
        let cases = [
            // zero or negative approvals
            (gate_with("approvals = 2", "approvals = 0"), 6, 69, "approvals = 0: it must be at least 1"),
            (gate_with("approvals = 2", "approvals = -2"), 6, 69, "approvals = -2: it must be at least 1"),
            (gate_with("approvals = 2", "approvals = \"2\""), 6, 69, "expected a whole number for \"approvals\""),
            (gate_with("uses    = 3", "uses    = 0"), 5, 15, "uses = 0: it must be at least 1"),
            // a factor with no approvers, or an empty list
            (gate_with("approvers = [\"group:sre-leads\"] ", ""), 6, 5, "factor \"sre\" has no approvers"),
            (gate_with("[\"group:sre-leads\"]", "[]"), 6, 25, "factor \"sre\" has an empty approvers list"),
            (gate_with(" approvals = 2", ""), 6, 5, "factor \"sre\" has no approvals"),
            (gate_with("group:sre-leads", "sre-leads"), 6, 38, "names neither a group nor an identity"),
            (gate_with("group:sre-leads", "user:x"), 6, 38, "approver kind \"user\" is unknown"),
            // unknown keys, at each level
            (gate_with("uses    = 3", "use     = 3"), 5, 5, "unknown name \"use\" in a break_glass block"),
            (gate_with("approvals = 1", "approval = 1"), 9, 7, "unknown attribute \"approval\" in factor \"security\""),
            // max_ttl over a day, zero, unreadable, missing
            (gate_with("\"1h\"", "\"25h\""), 4, 15, "at most 24h"),
            (gate_with("\"1h\"", "\"0s\""), 4, 15, "at most 24h"),
            (gate_with("\"1h\"", "\"1 hour\""), 4, 15, "is not like"),
            (gate_with("    max_ttl = \"1h\"          # longest grant\n", ""), 3, 3, "has no max_ttl"),
            // no factor; duplicates
            (
                gate_with("    factor \"sre\"      { approvers = [\"group:sre-leads\"] approvals = 2 }\n", "")
                    .replacen("    factor \"security\" {\n      approvers = [\"group:security\", \"identity:ciso\", \"group:security\"]\n      approvals = 1\n    }\n", "", 1),
                3,
                3,
                "has no factor",
            ),
            (gate_with("factor \"security\"", "factor \"sre\""), 7, 5, "duplicate factor \"sre\""),
            (gate_with("uses    = 3", "uses    = 3\n    uses = 4"), 6, 5, "duplicate \"uses\""),
            (gate_with("approvals = 2", "approvals = 2 approvals = 3"), 6, 71, "duplicate \"approvals\" in factor \"sre\""),
            (
                gate_with("  }\n}\n", "  }\n  break_glass {\n  }\n}\n"),
                12,
                3,
                "duplicate break_glass block (first opened at line 3, column 3)",
            ),
            // unclosed
            (GATE.trim_end().trim_end_matches('}').trim_end().trim_end_matches('}').to_string(), 11, 3, "to close the break_glass block opened at line 3"),
        ];
        for (src, line, column, needle) in cases {
            let err = parse_err(&src);
            assert_eq!((err.line, err.column), (line, column), "{err}\n{src}");
            assert!(
                err.message.contains(needle),
                "{err} lacks {needle:?}\n{src}"
            );
        }
    }

    #[test]
    fn lexical_errors() {
        assert_err(
            "/* never closed\npath \"a\" {}",
            1,
            1,
            "unterminated block comment",
        );
        assert_err("path \"a\" { @ }", 1, 12, "unexpected character '@'");
        assert_err("path \"a\\n\" {}", 1, 8, "unsupported escape sequence");
        assert_err(
            "path \"a\tb\" {}",
            1,
            8,
            "control character '\\t' in string",
        );
        assert_err(
            "path \"a\" {\n  capabilities = [\"read\"] / x\n}",
            2,
            27,
            "unexpected character '/'",
        );
    }
}
