//! QAPI's schema syntax: JSON with single-quoted strings and `#` comments, and the doc
//! comment blocks (`##` ... `##`) that precede definitions.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// A QAPI JSON value (the schema has no numbers and no null).
#[derive(Debug, Clone)]
pub(crate) enum J {
    Str(String),
    Bool(bool),
    List(Vec<J>),
    Dict(Vec<(String, J)>),
}

impl J {
    pub(crate) fn get(&self, key: &str) -> Option<&J> {
        match self {
            J::Dict(d) => d.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    pub(crate) fn str(&self) -> Option<&str> {
        match self {
            J::Str(s) => Some(s),
            _ => None,
        }
    }
    pub(crate) fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(J::str)
    }
    pub(crate) fn get_bool(&self, key: &str) -> bool {
        matches!(self.get(key), Some(J::Bool(true)))
    }
}

/// What a definition's doc comment says that the generator keeps: the version it appeared
/// in, and the versions its members appeared in (`(since X.Y)` in a member's paragraph).
#[derive(Debug, Clone, Default)]
pub(crate) struct Doc {
    pub(crate) since: Option<String>,
    pub(crate) member_since: BTreeMap<String, String>,
}

/// One top-level expression with its doc comment and the file it comes from.
#[derive(Debug, Clone)]
pub(crate) struct Expr {
    pub(crate) value: J,
    pub(crate) doc: Doc,
    /// The file's stem: the QAPI module (`block-core`).
    pub(crate) module: String,
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    /// Lines of the comment block being read, and the last complete `##` block.
    block: Option<Vec<String>>,
    last_doc: Option<Vec<String>>,
    file: &'a Path,
}

impl Parser<'_> {
    fn err(&self, msg: &str) -> String {
        let line = self.s[..self.i].iter().filter(|&&b| b == b'\n').count() + 1;
        format!("{}:{line}: {msg}", self.file.display())
    }

    /// Skips whitespace and comments, collecting doc comment blocks.
    fn skip(&mut self) {
        while self.i < self.s.len() {
            match self.s[self.i] {
                b' ' | b'\t' | b'\r' | b'\n' => self.i += 1,
                b'#' => {
                    let start = self.i;
                    while self.i < self.s.len() && self.s[self.i] != b'\n' {
                        self.i += 1;
                    }
                    let line = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
                    let at_line_start = start == 0 || self.s[start - 1] == b'\n';
                    if !at_line_start {
                        continue;
                    }
                    if line.trim_end() == "##" {
                        match self.block.take() {
                            Some(lines) => self.last_doc = Some(lines),
                            None => self.block = Some(Vec::new()),
                        }
                    } else if let Some(b) = &mut self.block {
                        let text = line.strip_prefix('#').unwrap_or(&line);
                        b.push(text.strip_prefix(' ').unwrap_or(text).to_owned());
                    }
                }
                _ => break,
            }
        }
    }

    fn value(&mut self) -> Result<J, String> {
        self.skip();
        let Some(&c) = self.s.get(self.i) else {
            return Err(self.err("unexpected end"));
        };
        match c {
            b'{' => {
                self.i += 1;
                let mut d = Vec::new();
                loop {
                    self.skip();
                    if self.s.get(self.i) == Some(&b'}') {
                        self.i += 1;
                        return Ok(J::Dict(d));
                    }
                    let J::Str(k) = self.value()? else {
                        return Err(self.err("key must be a string"));
                    };
                    self.skip();
                    if self.s.get(self.i) != Some(&b':') {
                        return Err(self.err("expected ':'"));
                    }
                    self.i += 1;
                    let v = self.value()?;
                    d.push((k, v));
                    self.skip();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {}
                        _ => return Err(self.err("expected ',' or '}'")),
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut l = Vec::new();
                loop {
                    self.skip();
                    if self.s.get(self.i) == Some(&b']') {
                        self.i += 1;
                        return Ok(J::List(l));
                    }
                    l.push(self.value()?);
                    self.skip();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {}
                        _ => return Err(self.err("expected ',' or ']'")),
                    }
                }
            }
            b'\'' => {
                self.i += 1;
                let mut out = Vec::new();
                loop {
                    match self.s.get(self.i) {
                        None => return Err(self.err("unterminated string")),
                        Some(b'\'') => {
                            self.i += 1;
                            break;
                        }
                        Some(b'\\') => {
                            self.i += 1;
                            out.push(*self.s.get(self.i).ok_or_else(|| self.err("escape"))?);
                            self.i += 1;
                        }
                        Some(&b) => {
                            out.push(b);
                            self.i += 1;
                        }
                    }
                }
                String::from_utf8(out)
                    .map(J::Str)
                    .map_err(|_| self.err("invalid UTF-8"))
            }
            _ if self.s[self.i..].starts_with(b"true") => {
                self.i += 4;
                Ok(J::Bool(true))
            }
            _ if self.s[self.i..].starts_with(b"false") => {
                self.i += 5;
                Ok(J::Bool(false))
            }
            _ => Err(self.err("unexpected character")),
        }
    }
}

fn parse_doc(lines: &[String]) -> Doc {
    let mut doc = Doc::default();
    let mut member: Option<String> = None;
    for line in lines {
        let t = line.trim_start();
        let indented = line.len() != t.len();
        if let Some(rest) = t.strip_prefix("Since:") {
            if !indented && doc.since.is_none() {
                doc.since = Some(rest.trim().trim_end_matches('.').to_owned());
            }
            member = None;
            continue;
        }
        if !indented {
            if let Some(rest) = t.strip_prefix('@') {
                member = rest.split(':').next().map(str::to_owned);
            } else if t.is_empty() || t.ends_with(':') || t.starts_with("..") {
                member = None;
            }
        }
        if let Some(m) = &member {
            let lower = t.to_ascii_lowercase();
            // `(since 8.1)`, and also `(since: 10.0)`.
            let found = lower
                .find("(since ")
                .map(|p| p + 7)
                .or_else(|| lower.find("(since:").map(|p| p + 7));
            if let Some(pos) = found {
                let v: String = t[pos..]
                    .trim_start()
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.')
                    .collect();
                let v = v.trim_end_matches('.').to_owned();
                if !v.is_empty() {
                    doc.member_since.entry(m.clone()).or_insert(v);
                }
            }
        }
    }
    doc
}

/// Reads a schema file and every file it includes (once each), in order.
pub(crate) fn read_schema(path: &Path) -> Result<Vec<Expr>, String> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    read_file(path, &mut out, &mut seen)?;
    Ok(out)
}

fn read_file(path: &Path, out: &mut Vec<Expr>, seen: &mut HashSet<PathBuf>) -> Result<(), String> {
    let canon = path
        .canonicalize()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !seen.insert(canon) {
        return Ok(());
    }
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let module = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut p = Parser {
        s: &text,
        i: 0,
        block: None,
        last_doc: None,
        file: path,
    };
    loop {
        p.skip();
        if p.i >= p.s.len() {
            break;
        }
        let doc = p.last_doc.take();
        let value = p.value()?;
        if let Some(inc) = value.get_str("include") {
            let dir = path.parent().unwrap_or(Path::new("."));
            read_file(&dir.join(inc), out, seen)?;
            continue;
        }
        let doc = doc.map(|d| parse_doc(&d)).unwrap_or_default();
        out.push(Expr {
            value,
            doc,
            module: module.clone(),
        });
    }
    Ok(())
}
