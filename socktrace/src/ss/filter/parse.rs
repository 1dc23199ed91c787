//! Tokenizer and recursive-descent parser for the `ss` filter words.
//!
//! ```text
//! filter  := (("state" | "exclude" | "excl") NAME)* [or]
//! or      := and ("or" and)*
//! and     := unary (["and"] unary)*
//! unary   := "not" unary | "(" or ")" | ("dst" | "src") [OP] HOST
//!          | ("dport" | "sport") [OP] PORT
//! ```
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    ops::Range,
};

use super::{Expr, FilterError, HostCond, PortOp, Side, SsQuery, StateSet};
use crate::{model::cidr::Cidr, model::tcp_state::TcpState};

/// The state names `state` and `exclude` take, for error messages.
const STATE_NAMES: &str = "established, syn-sent, syn-recv, fin-wait-1, fin-wait-2, time-wait, \
     closed, close-wait, last-ack, listening, closing, all, connected, synchronized, bucket, big";

/// How deeply `(` and `not` may nest. ss's own (bison) parser stops at
/// 10000; far beyond what anyone writes, 100 keeps the parser's recursion
/// (and the tree's) a small fraction of any thread's stack.
pub const MAX_NESTING: usize = 100;

/// The filter words of ss that socktrace does not implement.
const UNSUPPORTED: &[&str] = &["dev", "fwmark", "mark", "cgroup", "autobound"];

/// Parses the words after `ss`'s options (as the shell split them) into the
/// selected states, starting from `default_states`, and an expression.
/// `services` resolves port names such as `https`.
pub fn parse(
    words: &[String],
    default_states: StateSet,
    services: &dyn Fn(&str) -> Option<u16>,
) -> Result<SsQuery, FilterError> {
    let text = words.join(" ");
    let mut parser = Parser {
        text: &text,
        tokens: tokenize(&text),
        pos: 0,
        depth: 0,
        services,
    };
    let states = parser.states(default_states)?;
    if parser.peek().is_none() {
        return Ok(SsQuery { states, expr: None });
    }
    let expr = parser.or(None)?;
    match parser.peek() {
        None => Ok(SsQuery {
            states,
            expr: Some(expr),
        }),
        Some(close) => Err(parser.error(close, "`)` without a matching `(`".to_owned())),
    }
}

/// A token: a slice of the joined words.
#[derive(Clone, Copy)]
struct Token<'a> {
    text: &'a str,
    start: usize,
}

impl<'a> Token<'a> {
    fn span(self) -> Range<usize> {
        self.start..self.start + self.text.len()
    }

    /// The token made of `part`, a slice of this token's text.
    fn part(self, part: &'a str) -> Token<'a> {
        Token {
            text: part,
            start: self.start + (part.as_ptr() as usize - self.text.as_ptr() as usize),
        }
    }
}

/// Splits at whitespace; `(` and `)` are tokens of their own wherever they are.
fn tokenize(text: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        let paren = c == '(' || c == ')';
        if !(paren || c.is_whitespace()) {
            start.get_or_insert(i);
            continue;
        }
        if let Some(start) = start.take() {
            tokens.push(Token {
                text: &text[start..i],
                start,
            });
        }
        if paren {
            tokens.push(Token {
                text: &text[i..=i],
                start: i,
            });
        }
    }
    if let Some(start) = start {
        tokens.push(Token {
            text: &text[start..],
            start,
        });
    }
    tokens
}

/// What a token means in the expression; keywords are case-sensitive, as in ss.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Word {
    Open,
    Close,
    Not,
    And,
    Or,
    Dst,
    Src,
    Dport,
    Sport,
    Op(Op),
    Other,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Compare(PortOp),
}

fn word(text: &str) -> Word {
    match text {
        "(" => Word::Open,
        ")" => Word::Close,
        "!" | "not" => Word::Not,
        "&" | "&&" | "and" => Word::And,
        "|" | "||" | "or" => Word::Or,
        "dst" => Word::Dst,
        "src" => Word::Src,
        "dport" => Word::Dport,
        "sport" => Word::Sport,
        "=" | "==" | "eq" => Word::Op(Op::Eq),
        "!=" | "ne" | "neq" => Word::Op(Op::Ne),
        "<" | "lt" => Word::Op(Op::Compare(PortOp::Lt)),
        "<=" | "le" | "leq" => Word::Op(Op::Compare(PortOp::Le)),
        ">" | "gt" => Word::Op(Op::Compare(PortOp::Gt)),
        ">=" | "ge" | "geq" => Word::Op(Op::Compare(PortOp::Ge)),
        _ => Word::Other,
    }
}

/// The states a `state`/`exclude` name stands for (ss.c `scan_state`).
fn state_set(name: &str) -> Option<StateSet> {
    use TcpState::*;
    let connected = StateSet::ALL.without(StateSet::of(&[Close, Listen]));
    let states = match name.to_ascii_lowercase().as_str() {
        "all" => StateSet::ALL,
        "connected" => connected,
        "synchronized" => connected.without(StateSet::of(&[SynSent])),
        "bucket" => StateSet::of(&[SynRecv, TimeWait]),
        "big" => StateSet::ALL.without(StateSet::of(&[SynRecv, TimeWait])),
        "established" => StateSet::of(&[Established]),
        "syn-sent" => StateSet::of(&[SynSent]),
        "syn-recv" | "syn-rcv" => StateSet::of(&[SynRecv]),
        "fin-wait-1" => StateSet::of(&[FinWait1]),
        "fin-wait-2" => StateSet::of(&[FinWait2]),
        "time-wait" => StateSet::of(&[TimeWait]),
        "closed" | "close" | "unconnected" => StateSet::of(&[Close]),
        "close-wait" => StateSet::of(&[CloseWait]),
        "last-ack" => StateSet::of(&[LastAck]),
        "listening" | "listen" => StateSet::of(&[Listen]),
        "closing" => StateSet::of(&[Closing]),
        _ => return None,
    };
    Some(states)
}

/// The " after `dport =`" of messages: the tokens before a missing one.
fn after(tokens: &[Option<Token>]) -> String {
    let words: Vec<&str> = tokens.iter().flatten().map(|t| t.text).collect();
    if words.is_empty() {
        String::new()
    } else {
        format!(" after `{}`", words.join(" "))
    }
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Token<'a>>,
    pos: usize,
    /// The `(` and `not` open around the token being read.
    depth: usize,
    services: &'a dyn Fn(&str) -> Option<u16>,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<Token<'a>> {
        self.tokens.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<Token<'a>> {
        let token = self.peek()?;
        self.pos += 1;
        Some(token)
    }

    /// Consumes the next token if it is `wanted`.
    fn take(&mut self, wanted: Word) -> Option<Token<'a>> {
        let token = self.peek().filter(|t| word(t.text) == wanted)?;
        self.pos += 1;
        Some(token)
    }

    fn error(&self, token: Token, message: String) -> FilterError {
        self.error_at(token.span(), message)
    }

    fn error_at(&self, span: Range<usize>, message: String) -> FilterError {
        FilterError {
            message,
            span,
            text: self.text.to_owned(),
        }
    }

    /// "expected WHAT after `dport =`", pointing at the next token, or just
    /// past the end when there is none.
    fn expected(&self, what: &str, before: &[Option<Token>]) -> FilterError {
        let message = format!("expected {what}{}", after(before));
        match self.peek() {
            Some(found) => self.error(found, format!("{message}, found `{}`", found.text)),
            None => self.error_at(self.text.len()..self.text.len(), message),
        }
    }

    /// The leading `state NAME` and `exclude NAME` words. The first `state`
    /// replaces the default and later ones add; the first `exclude` starts
    /// from every state.
    fn states(&mut self, default: StateSet) -> Result<StateSet, FilterError> {
        let mut states: Option<StateSet> = None;
        while let Some(keyword) = self
            .peek()
            .filter(|t| matches!(t.text, "state" | "exclude" | "excl"))
        {
            self.pos += 1;
            let Some(name) = self.next() else {
                return Err(self.expected("a state name", &[Some(keyword)]));
            };
            let named = state_set(name.text).ok_or_else(|| {
                self.error(
                    name,
                    format!(
                        "unknown state `{}`: expected one of {STATE_NAMES}",
                        name.text
                    ),
                )
            })?;
            states = Some(if keyword.text == "state" {
                states.map_or(named, |states| states.union(named))
            } else {
                states.unwrap_or(StateSet::ALL).without(named)
            });
        }
        Ok(states.unwrap_or(default))
    }

    /// `and` terms joined by `or`; `before` is the token that opened it.
    fn or(&mut self, before: Option<Token<'a>>) -> Result<Expr, FilterError> {
        let mut terms = vec![self.and(before)?];
        while let Some(or) = self.take(Word::Or) {
            terms.push(self.and(Some(or))?);
        }
        Ok(one_or(terms, Expr::Or))
    }

    /// Conditions joined by `and` or side by side.
    fn and(&mut self, before: Option<Token<'a>>) -> Result<Expr, FilterError> {
        let mut terms = vec![self.unary(before)?];
        while let Some(next) = self.peek() {
            if matches!(word(next.text), Word::Or | Word::Close) {
                break;
            }
            let and = self.take(Word::And);
            terms.push(self.unary(and)?);
        }
        Ok(one_or(terms, Expr::And))
    }

    /// Runs `inner` one level deeper, inside `opener` (a `(` or `not`),
    /// unless that is deeper than [`MAX_NESTING`].
    fn nested(
        &mut self,
        opener: Token<'a>,
        inner: impl FnOnce(&mut Self) -> Result<Expr, FilterError>,
    ) -> Result<Expr, FilterError> {
        if self.depth == MAX_NESTING {
            return Err(self.error(
                opener,
                format!("the filter nests `(` and `not` more than {MAX_NESTING} deep"),
            ));
        }
        self.depth += 1;
        let expr = inner(self);
        self.depth -= 1;
        expr
    }

    fn unary(&mut self, before: Option<Token<'a>>) -> Result<Expr, FilterError> {
        let Some(token) = self.peek() else {
            return Err(self.expected("a condition", &[before]));
        };
        let side = match word(token.text) {
            Word::Dst | Word::Dport => Side::Remote,
            Word::Src | Word::Sport => Side::Local,
            Word::Other => return Err(self.unknown(token)),
            Word::Not => {
                self.pos += 1;
                return self.nested(token, |parser| {
                    Ok(Expr::Not(Box::new(parser.unary(Some(token))?)))
                });
            }
            Word::Open => {
                self.pos += 1;
                return self.nested(token, |parser| parser.group(token));
            }
            Word::Close | Word::And | Word::Or | Word::Op(_) => {
                return Err(self.expected("a condition", &[before]));
            }
        };
        self.pos += 1;
        if matches!(word(token.text), Word::Dst | Word::Src) {
            self.host(token, side)
        } else {
            self.port(token, side)
        }
    }

    /// After `(`: an expression and its `)`.
    fn group(&mut self, open: Token<'a>) -> Result<Expr, FilterError> {
        if let Some(close) = self.take(Word::Close) {
            return Err(self.error_at(
                open.start..close.span().end,
                "empty parentheses: expected a condition between `(` and `)`".to_owned(),
            ));
        }
        let inner = self.or(Some(open))?;
        match self.take(Word::Close) {
            Some(_) => Ok(inner),
            None => Err(self.error(open, "`(` without a matching `)`".to_owned())),
        }
    }

    fn unknown(&self, token: Token) -> FilterError {
        let message = match token.text {
            text if UNSUPPORTED.contains(&text) => {
                format!("socktrace does not support the ss filter `{text}`")
            }
            text @ ("state" | "exclude" | "excl") => {
                format!("`{text}` must come before the address and port conditions")
            }
            text => {
                format!("unknown filter word `{text}`: expected dst, src, dport, sport, not or `(`")
            }
        };
        self.error(token, message)
    }

    /// The operator after `dst`/`src`/`dport`/`sport`, if there is one.
    fn operator(&mut self) -> Option<(Token<'a>, Op)> {
        let token = self.peek()?;
        let Word::Op(op) = word(token.text) else {
            return None;
        };
        self.pos += 1;
        Some((token, op))
    }

    /// The operand after `keyword [op]`: a word that is not a keyword.
    fn operand(
        &mut self,
        what: &str,
        keyword: Token<'a>,
        op: Option<Token<'a>>,
    ) -> Result<Token<'a>, FilterError> {
        match self.peek() {
            Some(token) if word(token.text) == Word::Other => {
                self.pos += 1;
                Ok(token)
            }
            _ => Err(self.expected(what, &[Some(keyword), op])),
        }
    }

    /// `dst`/`src` `[= | !=] HOST`.
    fn host(&mut self, keyword: Token<'a>, side: Side) -> Result<Expr, FilterError> {
        let op = self.operator();
        if let Some((token, Op::Compare(_))) = op {
            return Err(self.error(
                token,
                format!(
                    "`{}` cannot compare addresses: `{}` takes `=` or `!=`",
                    token.text, keyword.text
                ),
            ));
        }
        let operand = self.operand("an address", keyword, op.map(|(token, _)| token))?;
        let host = Expr::Host(side, self.host_cond(operand)?);
        Ok(match op {
            Some((_, Op::Ne)) => Expr::Not(Box::new(host)),
            _ => host,
        })
    }

    /// `dport`/`sport` `[OP] PORT`.
    fn port(&mut self, keyword: Token<'a>, side: Side) -> Result<Expr, FilterError> {
        let op = self.operator();
        let operand = self.operand("a port", keyword, op.map(|(token, _)| token))?;
        let number = operand.text.strip_prefix(':').unwrap_or(operand.text);
        let port = self.port_number(operand.part(number))?;
        let host = Expr::Host(side, HostCond { prefix: None, port });
        match (op, port) {
            (None | Some((_, Op::Eq)), _) => Ok(host),
            (Some((_, Op::Ne)), _) => Ok(Expr::Not(Box::new(host))),
            (Some((_, Op::Compare(compare))), Some(port)) => Ok(Expr::Port(side, compare, port)),
            (Some((token, Op::Compare(_))), None) => Err(self.error(
                operand,
                format!("`{}` needs a port number, not `*`", token.text),
            )),
        }
    }

    /// A port number, a service name, or `*` (any port, `None`).
    fn port_number(&self, port: Token) -> Result<Option<u16>, FilterError> {
        if port.text == "*" {
            return Ok(None);
        }
        if port.text.is_empty() {
            return Err(self.error(port, "missing port after `:`".to_owned()));
        }
        if port.text.bytes().all(|b| b.is_ascii_digit()) {
            return port.text.parse().map(Some).map_err(|_| {
                self.error(
                    port,
                    format!("port `{}` is not a number from 0 to 65535", port.text),
                )
            });
        }
        (self.services)(port.text).map(Some).ok_or_else(|| {
            self.error(
                port,
                format!(
                    "`{}` is neither a port number nor a known service",
                    port.text
                ),
            )
        })
    }

    /// A HOST: `*`, `*:PORT`, `:PORT`, `ADDR[/LEN][:PORT]`,
    /// `[ADDR[/LEN]][/LEN][:PORT]`, or a bare IPv6 address or prefix.
    fn host_cond(&self, host: Token<'a>) -> Result<HostCond, FilterError> {
        let text = host.text;
        let (address, port) = if let Some(rest) = text.strip_prefix('*') {
            if !(rest.is_empty() || rest.starts_with(':')) {
                return Err(self.error(host, format!("expected `*` or `*:PORT`, found `{text}`")));
            }
            (None, rest.strip_prefix(':'))
        } else if let Some(inner) = text.strip_prefix('[') {
            let Some((inside, rest)) = inner.split_once(']') else {
                return Err(self.error(host, format!("`[` without a matching `]` in `{text}`")));
            };
            let (address, mut length) = split_length(inside);
            let (outside, port) = match rest.split_once(':') {
                Some((outside, port)) => (outside, Some(port)),
                None => (rest, None),
            };
            if !outside.is_empty() {
                match (outside.strip_prefix('/'), length) {
                    (Some(outside), None) => length = Some(outside),
                    _ => {
                        return Err(self.error(
                            host.part(outside),
                            format!("unexpected `{outside}` after `]`"),
                        ));
                    }
                }
            }
            (Some((address, length)), port)
        } else if is_ipv6_prefix(text) {
            (Some(split_length(text)), None)
        } else {
            // ss: the port follows the last `:`, after the `/` if there is one.
            let search_from = text.find('/').unwrap_or(0);
            match text[search_from..].rfind(':') {
                Some(colon) => {
                    let colon = search_from + colon;
                    (Some(split_length(&text[..colon])), Some(&text[colon + 1..]))
                }
                None => (Some(split_length(text)), None),
            }
        };
        let prefix = match address {
            Some(("", None)) | None => None,
            Some((address, length)) => Some(self.prefix(host, address, length)?),
        };
        let port = match port {
            Some(port) => self.port_number(host.part(port))?,
            None => None,
        };
        Ok(HostCond { prefix, port })
    }

    /// `ADDR[/LEN]` inside `host`; IPv4 addresses may be partial like
    /// ss's (`193.233.7` is 193.233.7.0).
    fn prefix(
        &self,
        host: Token<'a>,
        address: &'a str,
        length: Option<&'a str>,
    ) -> Result<Cidr, FilterError> {
        if address.is_empty() {
            return Err(self.error(
                host.part(address),
                format!("missing address before `/{}`", length.unwrap_or_default()),
            ));
        }
        let parsed = if address.contains(':') {
            address.parse().ok().map(IpAddr::V6)
        } else {
            partial_ipv4(address).map(IpAddr::V4)
        };
        let Some(address_value) = parsed else {
            return Err(self.error(
                host.part(address),
                format!(
                    "`{address}` is not an IPv4 or IPv6 address (socktrace does not resolve host names)"
                ),
            ));
        };
        let max = if address_value.is_ipv4() { 32 } else { 128 };
        let len = match length {
            None => max,
            Some(length) => length
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| length.parse::<u8>().ok())
                .flatten()
                .filter(|&len| len <= max)
                .ok_or_else(|| {
                    self.error(
                        host.part(length),
                        format!("prefix length `{length}` is not a number from 0 to {max}"),
                    )
                })?,
        };
        Ok(match address_value {
            IpAddr::V4(v4) => Cidr::containing(IpAddr::V4(v4), len),
            IpAddr::V6(v6) => ipv6_prefix(v6, len),
        })
    }
}

/// The one term, or the terms joined by `join` (`Expr::And`, `Expr::Or`).
fn one_or(mut terms: Vec<Expr>, join: fn(Vec<Expr>) -> Expr) -> Expr {
    if terms.len() == 1 {
        terms.swap_remove(0)
    } else {
        join(terms)
    }
}

/// `ADDR/LEN` into its address and length.
fn split_length(text: &str) -> (&str, Option<&str>) {
    match text.split_once('/') {
        Some((address, length)) => (address, Some(length)),
        None => (text, None),
    }
}

/// Whether the whole word is an IPv6 address or `ADDR/LEN` (then it has no port).
fn is_ipv6_prefix(text: &str) -> bool {
    let (address, length) = split_length(text);
    address.parse::<Ipv6Addr>().is_ok()
        && length.is_none_or(|length| length.parse::<u8>().is_ok_and(|len| len <= 128))
}

/// An IPv4 address of one to four decimal parts, the missing ones zero.
fn partial_ipv4(text: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    for (i, part) in text.split('.').enumerate() {
        if i == octets.len() || part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        octets[i] = part.parse().ok()?;
    }
    Some(Ipv4Addr::from(octets))
}

/// An IPv6 prefix; IPv4-mapped ones of length 96 or more become the IPv4
/// prefix they stand for, which [`Cidr`] matches against both families.
fn ipv6_prefix(address: Ipv6Addr, len: u8) -> Cidr {
    match address.to_ipv4_mapped() {
        Some(v4) if len >= 96 => Cidr::containing(IpAddr::V4(v4), len - 96),
        _ => {
            // Mask first: `Cidr::containing` would take a mapped address for IPv4.
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            Cidr::containing(IpAddr::V6(Ipv6Addr::from(u128::from(address) & mask)), len)
        }
    }
}
