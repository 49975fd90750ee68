//! The built-in `calculator` tool: evaluates arithmetic expressions with a tokenizer and a
//! recursive-descent parser that compiles to postfix code, then runs that code on a value stack.
//! Nothing is ever evaluated as code; the input is bounded in length and nesting, so no input can
//! exhaust the stack, and every failure is a [`CalcError`] that says what went wrong and where.
//!
//! Grammar, loosest binding first:
//!
//! ```text
//! expression := term (("+" | "-") term)*
//! term       := unary (("*" | "/") unary)*
//! unary      := ("-" | "+") unary | power
//! power      := primary ("^" unary)?          right-associative, tighter than unary minus
//! primary    := number | constant | function "(" expression ("," expression)* ")" | "(" expression ")"
//! ```
//!
//! `×`, `÷` and `−` (U+2212) are accepted for `*`, `/` and `-`. Functions: `sqrt`, `abs`, `min`,
//! `max`; constants: `pi`, `e` (names are case-insensitive).

use serde_json::json;

/// Longest expression accepted, in characters.
pub const MAX_EXPRESSION_CHARS: usize = 4096;

/// Deepest nesting of parentheses, function calls, signs and exponents accepted.
pub const MAX_DEPTH: usize = 256;

/// Description of the built-in `calculator` tool, as listed to MCP clients.
pub const DESCRIPTION: &str = "Evaluates an arithmetic expression and returns the number. Supports + - * / \
    (also × ÷ −), ^ for powers (right-associative, binds tighter than a leading minus: -2^2 = -4), \
    parentheses, decimals and exponents (1.5e3), the functions sqrt(x), abs(x), min(a, b, ...) and \
    max(a, b, ...), and the constants pi and e. Example: (2 + 3) * 4^2 / sqrt(16)";

/// Why an expression could not be evaluated. Positions are 1-based character columns.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CalcError {
    /// A division (or a power of zero with a negative exponent) by zero.
    #[error("division by zero at column {position}")]
    DivisionByZero {
        /// Column of the operator.
        position: usize,
    },
    /// The expression does not follow the grammar.
    #[error("syntax error at column {position}: {message}")]
    Syntax {
        /// Column where the problem was found.
        position: usize,
        /// What was expected or found.
        message: String,
    },
    /// A call to a function the calculator does not know.
    #[error("unknown function `{name}` at column {position}; known functions: sqrt, abs, min, max")]
    UnknownFunction {
        /// The name as written.
        name: String,
        /// Column of the name.
        position: usize,
    },
    /// A function called with the wrong number of arguments.
    #[error("`{function}` takes {expected}, got {got} (column {position})")]
    Arity {
        /// The function.
        function: &'static str,
        /// How many arguments it takes, in words.
        expected: &'static str,
        /// How many it was given.
        got: usize,
        /// Column of the function name.
        position: usize,
    },
    /// An operation outside its mathematical domain, such as the square root of a negative number.
    #[error("{message} at column {position}")]
    Domain {
        /// Column of the operator or function.
        position: usize,
        /// The operation and why it is undefined.
        message: String,
    },
    /// A number or an intermediate result too large to represent (overflow to infinity).
    #[error("result is not a finite number (overflow) at column {position}")]
    NotFinite {
        /// Column of the number or operator that overflowed.
        position: usize,
    },
    /// The expression is longer than [`MAX_EXPRESSION_CHARS`].
    #[error("expression longer than {limit} characters")]
    TooLong {
        /// The limit.
        limit: usize,
    },
    /// The expression nests deeper than [`MAX_DEPTH`].
    #[error("expression nests deeper than {limit} levels at column {position}")]
    TooDeep {
        /// Column where the limit was reached.
        position: usize,
        /// The limit.
        limit: usize,
    },
}

impl CalcError {
    /// What failed and where, in the calculator's own words only: `syntax error at column 7`,
    /// `unknown function at column 1`. Unlike the `Display` text it never quotes the expression
    /// (a name, a number, a character), so it may go where arguments must not (the audit log).
    pub fn summary(&self) -> String {
        match self {
            CalcError::DivisionByZero { position } => format!("division by zero at column {position}"),
            CalcError::Syntax { position, .. } => format!("syntax error at column {position}"),
            CalcError::UnknownFunction { position, .. } => format!("unknown function at column {position}"),
            CalcError::Arity { function, expected, got, position } => {
                format!("`{function}` takes {expected}, got {got} (column {position})")
            }
            CalcError::Domain { position, .. } => format!("undefined operation at column {position}"),
            CalcError::NotFinite { position } => format!("result is not a finite number at column {position}"),
            CalcError::TooLong { limit } => format!("expression longer than {limit} characters"),
            CalcError::TooDeep { position, limit } => {
                format!("expression nests deeper than {limit} levels at column {position}")
            }
        }
    }
}

/// Evaluates `expression` and returns its value (never NaN or infinite; `-0` is returned as `0`).
///
/// ```
/// use metamcp_gateway::tools::calculator::evaluate;
/// assert_eq!(evaluate("(2 + 3) * 4^2 / sqrt(16)"), Ok(20.0));
/// assert_eq!(evaluate("-2^2"), Ok(-4.0));
/// ```
pub fn evaluate(expression: &str) -> Result<f64, CalcError> {
    if expression.chars().take(MAX_EXPRESSION_CHARS + 1).count() > MAX_EXPRESSION_CHARS {
        return Err(CalcError::TooLong { limit: MAX_EXPRESSION_CHARS });
    }
    let tokens = tokenize(expression)?;
    let code = Parser::new(&tokens).parse()?;
    let value = run(&code)?;
    Ok(if value == 0.0 { 0.0 } else { value })
}

/// JSON Schema of the calculator's arguments: an object with a required string `expression`.
pub fn input_schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            "expression": {
                "type": "string",
                "description": "Arithmetic expression, e.g. \"(2 + 3) * 4^2 / sqrt(16)\" or \"max(1.5, -2) * pi\"",
                "minLength": 1,
                "maxLength": MAX_EXPRESSION_CHARS,
            }
        },
        "required": ["expression"],
        "additionalProperties": false,
    })
}

#[derive(Debug, Clone, PartialEq)]
enum TokenKind {
    Number(f64),
    Name(String),
    Plus,
    Minus,
    Star,
    Slash,
    Caret,
    LParen,
    RParen,
    Comma,
    End,
}

#[derive(Debug, Clone, PartialEq)]
struct Token {
    kind: TokenKind,
    /// 1-based column of the token's first character.
    position: usize,
}

fn describe(kind: &TokenKind) -> String {
    match kind {
        TokenKind::Number(n) => format!("number {n}"),
        TokenKind::Name(name) => format!("`{name}`"),
        TokenKind::Plus => "`+`".to_owned(),
        TokenKind::Minus => "`-`".to_owned(),
        TokenKind::Star => "`*`".to_owned(),
        TokenKind::Slash => "`/`".to_owned(),
        TokenKind::Caret => "`^`".to_owned(),
        TokenKind::LParen => "`(`".to_owned(),
        TokenKind::RParen => "`)`".to_owned(),
        TokenKind::Comma => "`,`".to_owned(),
        TokenKind::End => "the end of the expression".to_owned(),
    }
}

fn syntax(position: usize, message: impl Into<String>) -> CalcError {
    CalcError::Syntax { position, message: message.into() }
}

fn tokenize(expression: &str) -> Result<Vec<Token>, CalcError> {
    let chars: Vec<char> = expression.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let position = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let kind = match c {
            '+' => TokenKind::Plus,
            '-' | '\u{2212}' => TokenKind::Minus,
            '*' | '×' => TokenKind::Star,
            '/' | '÷' => TokenKind::Slash,
            '^' => TokenKind::Caret,
            '(' => TokenKind::LParen,
            ')' => TokenKind::RParen,
            ',' => TokenKind::Comma,
            '0'..='9' | '.' => {
                let (number, end) = lex_number(&chars, i)?;
                tokens.push(Token { kind: TokenKind::Number(number), position });
                i = end;
                continue;
            }
            c if c.is_alphabetic() || c == '_' => {
                let end =
                    (i..chars.len()).find(|&j| !(chars[j].is_alphanumeric() || chars[j] == '_')).unwrap_or(chars.len());
                tokens.push(Token { kind: TokenKind::Name(chars[i..end].iter().collect()), position });
                i = end;
                continue;
            }
            other => return Err(syntax(position, format!("unexpected character {other:?}"))),
        };
        tokens.push(Token { kind, position });
        i += 1;
    }
    tokens.push(Token { kind: TokenKind::End, position: chars.len() + 1 });
    Ok(tokens)
}

/// Lexes the number starting at `start`: digits, an optional fraction, an optional exponent.
fn lex_number(chars: &[char], start: usize) -> Result<(f64, usize), CalcError> {
    let digits_from = |mut j: usize| {
        while j < chars.len() && chars[j].is_ascii_digit() {
            j += 1;
        }
        j
    };
    let mut end = digits_from(start);
    let mut mantissa_digits = end - start;
    if end < chars.len() && chars[end] == '.' {
        let fraction_end = digits_from(end + 1);
        mantissa_digits += fraction_end - end - 1;
        end = fraction_end;
    }
    if mantissa_digits == 0 {
        return Err(syntax(start + 1, "expected digits around `.`"));
    }
    if end < chars.len() && matches!(chars[end], 'e' | 'E') {
        let mut j = end + 1;
        if j < chars.len() && matches!(chars[j], '+' | '-') {
            j += 1;
        }
        let exponent_end = digits_from(j);
        if exponent_end == j {
            return Err(syntax(end + 1, "expected digits in the exponent"));
        }
        end = exponent_end;
    }
    let text: String = chars[start..end].iter().collect();
    let number: f64 = text.parse().map_err(|_| syntax(start + 1, format!("malformed number {text:?}")))?;
    if !number.is_finite() {
        return Err(CalcError::NotFinite { position: start + 1 });
    }
    Ok((number, end))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Function {
    Sqrt,
    Abs,
    Min,
    Max,
}

impl Function {
    fn lookup(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "sqrt" => Some(Self::Sqrt),
            "abs" => Some(Self::Abs),
            "min" => Some(Self::Min),
            "max" => Some(Self::Max),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Sqrt => "sqrt",
            Self::Abs => "abs",
            Self::Min => "min",
            Self::Max => "max",
        }
    }

    fn check_arity(self, got: usize, position: usize) -> Result<(), CalcError> {
        let (ok, expected) = match self {
            Self::Sqrt | Self::Abs => (got == 1, "exactly 1 argument"),
            Self::Min | Self::Max => (got >= 1, "at least 1 argument"),
        };
        if ok {
            Ok(())
        } else {
            Err(CalcError::Arity { function: self.name(), expected, got, position })
        }
    }
}

/// One instruction of the postfix code; `position` is where an error is reported.
#[derive(Debug, Clone, PartialEq)]
enum Op {
    Push(f64),
    Neg,
    Add { position: usize },
    Sub { position: usize },
    Mul { position: usize },
    Div { position: usize },
    Pow { position: usize },
    Call { function: Function, args: usize, position: usize },
}

struct Parser<'t> {
    tokens: &'t [Token],
    next: usize,
    depth: usize,
    code: Vec<Op>,
}

impl<'t> Parser<'t> {
    fn new(tokens: &'t [Token]) -> Self {
        Self { tokens, next: 0, depth: 0, code: Vec::new() }
    }

    fn parse(mut self) -> Result<Vec<Op>, CalcError> {
        if self.peek().kind == TokenKind::End {
            return Err(syntax(self.peek().position, "the expression is empty"));
        }
        self.expression()?;
        let token = self.peek();
        match token.kind {
            TokenKind::End => Ok(self.code),
            TokenKind::RParen => Err(syntax(token.position, "unmatched `)`")),
            ref kind => Err(syntax(token.position, format!("expected an operator, found {}", describe(kind)))),
        }
    }

    fn peek(&self) -> &'t Token {
        // The token list always ends with `End`, and `advance` never moves past it.
        let tokens: &'t [Token] = self.tokens;
        &tokens[self.next.min(tokens.len() - 1)]
    }

    fn advance(&mut self) -> &'t Token {
        let token = self.peek();
        if token.kind != TokenKind::End {
            self.next += 1;
        }
        token
    }

    /// Enters one nesting level; the caller leaves it with `self.depth -= 1`.
    fn enter(&mut self, position: usize) -> Result<(), CalcError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(CalcError::TooDeep { position, limit: MAX_DEPTH });
        }
        Ok(())
    }

    fn expression(&mut self) -> Result<(), CalcError> {
        self.term()?;
        loop {
            let token = self.peek();
            let position = token.position;
            let op = match token.kind {
                TokenKind::Plus => Op::Add { position },
                TokenKind::Minus => Op::Sub { position },
                _ => return Ok(()),
            };
            self.advance();
            self.term()?;
            self.code.push(op);
        }
    }

    fn term(&mut self) -> Result<(), CalcError> {
        self.unary()?;
        loop {
            let token = self.peek();
            let position = token.position;
            let op = match token.kind {
                TokenKind::Star => Op::Mul { position },
                TokenKind::Slash => Op::Div { position },
                _ => return Ok(()),
            };
            self.advance();
            self.unary()?;
            self.code.push(op);
        }
    }

    fn unary(&mut self) -> Result<(), CalcError> {
        let token = self.peek();
        match token.kind {
            TokenKind::Minus | TokenKind::Plus => {
                self.advance();
                self.enter(token.position)?;
                self.unary()?;
                self.depth -= 1;
                if token.kind == TokenKind::Minus {
                    self.code.push(Op::Neg);
                }
                Ok(())
            }
            _ => self.power(),
        }
    }

    fn power(&mut self) -> Result<(), CalcError> {
        self.primary()?;
        let token = self.peek();
        if token.kind == TokenKind::Caret {
            self.advance();
            self.enter(token.position)?;
            // The exponent may carry its own sign (`2^-1`) and chains to the right (`2^3^2`).
            self.unary()?;
            self.depth -= 1;
            self.code.push(Op::Pow { position: token.position });
        }
        Ok(())
    }

    fn primary(&mut self) -> Result<(), CalcError> {
        let token = self.advance();
        match &token.kind {
            TokenKind::Number(n) => {
                self.code.push(Op::Push(*n));
                Ok(())
            }
            TokenKind::LParen => {
                self.enter(token.position)?;
                self.expression()?;
                self.depth -= 1;
                self.expect_close(token.position)
            }
            TokenKind::Name(name) => {
                if self.peek().kind == TokenKind::LParen {
                    let open = self.advance();
                    let function = Function::lookup(name)
                        .ok_or_else(|| CalcError::UnknownFunction { name: name.clone(), position: token.position })?;
                    self.enter(open.position)?;
                    let args = self.arguments()?;
                    self.depth -= 1;
                    self.expect_close(open.position)?;
                    function.check_arity(args, token.position)?;
                    self.code.push(Op::Call { function, args, position: token.position });
                    return Ok(());
                }
                let value = match name.to_ascii_lowercase().as_str() {
                    "pi" => std::f64::consts::PI,
                    "e" => std::f64::consts::E,
                    _ => {
                        return Err(syntax(
                            token.position,
                            format!("unknown name `{name}`; the constants are pi and e, functions need parentheses"),
                        ))
                    }
                };
                self.code.push(Op::Push(value));
                Ok(())
            }
            TokenKind::End => Err(syntax(token.position, "unexpected end of the expression, expected a number")),
            other => Err(syntax(token.position, format!("expected a number, found {}", describe(other)))),
        }
    }

    /// Comma-separated arguments after `(`, up to (not including) `)`; returns how many.
    fn arguments(&mut self) -> Result<usize, CalcError> {
        if self.peek().kind == TokenKind::RParen {
            return Ok(0);
        }
        let mut count = 0;
        loop {
            self.expression()?;
            count += 1;
            if self.peek().kind != TokenKind::Comma {
                return Ok(count);
            }
            self.advance();
        }
    }

    fn expect_close(&mut self, open: usize) -> Result<(), CalcError> {
        let token = self.advance();
        match token.kind {
            TokenKind::RParen => Ok(()),
            TokenKind::End => Err(syntax(token.position, format!("missing `)` for the `(` at column {open}"))),
            ref kind => Err(syntax(token.position, format!("expected `)` or an operator, found {}", describe(kind)))),
        }
    }
}

/// Runs postfix code on a value stack: no recursion, so a long chain such as `1+1+…+1` is safe.
fn run(code: &[Op]) -> Result<f64, CalcError> {
    let mut stack: Vec<f64> = Vec::with_capacity(16);
    // The parser emits well-formed code; a short stack would be a bug, reported, not a panic.
    let internal = || syntax(0, "internal error: malformed code");
    for op in code {
        let (value, position) = match *op {
            Op::Push(n) => {
                stack.push(n);
                continue;
            }
            Op::Neg => {
                let x = stack.pop().ok_or_else(internal)?;
                stack.push(-x);
                continue;
            }
            Op::Call { function, args, position } => {
                let from = stack.len().checked_sub(args).ok_or_else(internal)?;
                let value = call(function, &stack[from..], position)?;
                stack.truncate(from);
                (value, position)
            }
            Op::Add { position }
            | Op::Sub { position }
            | Op::Mul { position }
            | Op::Div { position }
            | Op::Pow { position } => {
                let b = stack.pop().ok_or_else(internal)?;
                let a = stack.pop().ok_or_else(internal)?;
                (binary(op, a, b, position)?, position)
            }
        };
        if value.is_nan() {
            return Err(CalcError::Domain { position, message: "undefined result".to_owned() });
        }
        if value.is_infinite() {
            return Err(CalcError::NotFinite { position });
        }
        stack.push(value);
    }
    match stack.as_slice() {
        [value] => Ok(*value),
        _ => Err(internal()),
    }
}

fn binary(op: &Op, a: f64, b: f64, position: usize) -> Result<f64, CalcError> {
    Ok(match op {
        Op::Add { .. } => a + b,
        Op::Sub { .. } => a - b,
        Op::Mul { .. } => a * b,
        Op::Div { .. } => {
            if b == 0.0 {
                return Err(CalcError::DivisionByZero { position });
            }
            a / b
        }
        Op::Pow { .. } => {
            if a == 0.0 && b < 0.0 {
                return Err(CalcError::DivisionByZero { position });
            }
            if a < 0.0 && b.fract() != 0.0 {
                return Err(CalcError::Domain {
                    position,
                    message: format!("a negative base ({a}) to a fractional power ({b}) is not a real number"),
                });
            }
            a.powf(b)
        }
        Op::Push(_) | Op::Neg | Op::Call { .. } => {
            return Err(syntax(position, "internal error: not a binary operator"))
        }
    })
}

fn call(function: Function, args: &[f64], position: usize) -> Result<f64, CalcError> {
    function.check_arity(args.len(), position)?;
    Ok(match function {
        Function::Sqrt => {
            let x = args[0];
            if x < 0.0 {
                return Err(CalcError::Domain { position, message: format!("square root of a negative number ({x})") });
            }
            x.sqrt()
        }
        Function::Abs => args[0].abs(),
        Function::Min => args.iter().copied().fold(f64::INFINITY, f64::min),
        Function::Max => args.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    })
}

#[cfg(test)]
#[path = "calculator_tests.rs"]
mod tests;
