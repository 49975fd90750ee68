//! The shape of every crate of the workspace, read from its sources: no import cycle between
//! modules, and no source file outside the tests longer than [`MAX_LINES`] lines.
//!
//! The crates are the workspace members' `src/lib.rs`, `src/main.rs` and `src/bin/*`; each
//! crate's modules are found by following its `mod` declarations (`#[path]` included). A module's
//! dependencies are the `crate::…`, `super::…` and `self::…` paths in its code (comments, strings
//! and everything under `#[cfg(test)]` left out). The graph is drawn between siblings: a path
//! from `crate::a::x` to `crate::b::y` is an edge `a → b` among the children of the crate root,
//! one from `crate::s::c` to `crate::s::d` an edge `c → d` among the children of `s`; a module
//! reaching its own ancestors or descendants (`use super::*`, a `mod.rs` re-exporting its
//! children) draws no edge. Every strongly connected group of siblings is reported with one
//! cycle through it and the line that makes each step.
//!
//! A file is a test file when it is named `tests.rs` or `*_tests.rs`, lies under a `tests/`
//! directory, or is only reached through a `mod` under `#[cfg(test)]`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Longest source file outside the tests, in lines.
const MAX_LINES: usize = 700;

/// Findings in the gateway (`src/`) and the test-support crate that exist while they are being
/// split (issue 12, part 2). Each entry is being removed by the change that splits the file or
/// breaks the cycle: an entry that no longer matches a finding fails the test, so this list only
/// shrinks. Nothing may be added.
const ALLOWED: &[&str] = &[];

fn main_findings() -> Vec<Finding> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = Workspace::read(root, &|path| std::fs::read_to_string(path).ok());
    assert!(workspace.crates.len() >= 3, "found only these crates: {:?}", workspace.crate_labels());
    workspace.findings()
}

#[test]
fn no_module_cycles_and_no_long_files() {
    let findings = main_findings();
    let found: BTreeSet<&str> = findings.iter().map(|f| f.key.as_str()).collect();
    let allowed: BTreeSet<&str> = ALLOWED.iter().copied().collect();
    let mut report = String::new();
    for finding in findings.iter().filter(|f| !allowed.contains(f.key.as_str())) {
        let _ = writeln!(report, "{}\n{}", finding.key, finding.detail);
    }
    for stale in allowed.difference(&found) {
        let _ = writeln!(report, "ALLOWED lists {stale:?}, which is fixed now: remove it from the list\n");
    }
    assert!(report.is_empty(), "module structure:\n\n{report}");
}

#[test]
fn the_allow_list_covers_the_gateway_and_the_test_support_only() {
    for entry in ALLOWED {
        let path = entry.split_whitespace().nth(1).unwrap_or_default();
        assert!(
            path.starts_with("src/") || path.starts_with("test-support/"),
            "{entry:?}: the library and the actors are clean; they get no allowance"
        );
    }
}

// --- what is reported ------------------------------------------------------------------------

/// One problem: `key` names it stably (what [`ALLOWED`] lists), `detail` explains it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Finding {
    key: String,
    detail: String,
}

// --- the workspace ---------------------------------------------------------------------------

struct Workspace {
    crates: Vec<Crate>,
}

/// One crate: its modules by path (`[]` is the crate root).
struct Crate {
    /// The root file, relative to the workspace (`telemetry/src/lib.rs`).
    label: String,
    modules: BTreeMap<Vec<String>, Module>,
}

#[derive(Default)]
struct Module {
    /// The file the module's code is in, relative to the workspace (an inline module: its file).
    file: String,
    /// Whether it is compiled only for tests.
    test_only: bool,
    /// Whether it is a file of its own (not an inline `mod x { … }`).
    own_file: bool,
    /// Lines of its file.
    lines: usize,
    /// Absolute paths it names, with the line.
    references: Vec<(Vec<String>, usize)>,
}

type Reader<'a> = &'a dyn Fn(&Path) -> Option<String>;

impl Workspace {
    /// Reads the members of the workspace at `root` and every crate they hold.
    fn read(root: &Path, read: Reader<'_>) -> Self {
        let manifest = read(&root.join("Cargo.toml")).expect("the workspace Cargo.toml");
        let manifest: toml::Table = manifest.parse().expect("Cargo.toml parses");
        let members: Vec<String> = manifest
            .get("workspace")
            .and_then(|w| w.get("members"))
            .and_then(|m| m.as_array())
            .map(|m| m.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_else(|| vec![".".to_owned()]);
        let mut crates = Vec::new();
        for member in members {
            let src = if member == "." { PathBuf::from("src") } else { Path::new(&member).join("src") };
            let mut roots = vec![src.join("lib.rs"), src.join("main.rs")];
            if let Ok(entries) = std::fs::read_dir(root.join(&src).join("bin")) {
                let mut bins: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
                bins.sort();
                for bin in bins {
                    let relative = bin.strip_prefix(root).unwrap_or(&bin).to_owned();
                    roots.push(if bin.is_dir() { relative.join("main.rs") } else { relative });
                }
            }
            for file in roots {
                if read(&root.join(&file)).is_some() {
                    crates.push(Crate::read(root, &file, read));
                }
            }
        }
        Self { crates }
    }

    fn crate_labels(&self) -> Vec<&str> {
        self.crates.iter().map(|c| c.label.as_str()).collect()
    }

    fn findings(&self) -> Vec<Finding> {
        let mut findings = Vec::new();
        for krate in &self.crates {
            findings.extend(krate.cycles());
            findings.extend(krate.long_files());
        }
        findings
    }
}

fn display(path: &Path) -> String {
    path.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

impl Crate {
    fn read(root: &Path, file: &Path, read: Reader<'_>) -> Self {
        let mut krate = Crate { label: display(file), modules: BTreeMap::new() };
        krate.add_file(root, file, Vec::new(), false, true, read);
        krate
    }

    /// Adds the module in `file` at `path`, and the modules it declares.
    fn add_file(
        &mut self,
        root: &Path,
        file: &Path,
        path: Vec<String>,
        test_only: bool,
        is_root: bool,
        read: Reader<'_>,
    ) {
        let Some(text) = read(&root.join(file)) else { return };
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let under_tests = file.components().any(|c| c.as_os_str() == "tests");
        let test_file = name == "tests.rs" || name.ends_with("_tests.rs") || under_tests;
        let test_only = test_only || test_file;
        // Children of `a/b.rs` live in `a/b/`; of `a/mod.rs`, `lib.rs` and `main.rs` in `a/`.
        let dir = file.parent().map(Path::to_owned).unwrap_or_default();
        let child_dir = if is_root || name == "mod.rs" { dir.clone() } else { dir.join(name.trim_end_matches(".rs")) };
        let parsed = parse(&text);
        let file_label = display(file);
        self.modules.insert(
            path.clone(),
            Module {
                file: file_label.clone(),
                test_only,
                own_file: true,
                lines: text.lines().count(),
                references: Vec::new(),
            },
        );
        for declared in parsed.modules {
            let mut module_path = path.clone();
            module_path.extend(declared.path.iter().cloned());
            let test = test_only || declared.test_only;
            if declared.inline {
                let module = self.modules.entry(module_path).or_default();
                module.file = file_label.clone();
                module.test_only = test;
                continue;
            }
            let parent_dir = declared.path[..declared.path.len() - 1].iter().fold(child_dir.clone(), |d, s| d.join(s));
            let child = declared.path.last().cloned().unwrap_or_default();
            let candidates = match &declared.path_attr {
                Some(explicit) => vec![normalize(&dir.join(explicit))],
                None => vec![parent_dir.join(format!("{child}.rs")), parent_dir.join(&child).join("mod.rs")],
            };
            if let Some(found) = candidates.into_iter().find(|c| read(&root.join(c)).is_some()) {
                self.add_file(root, &found, module_path, test, false, read);
            }
        }
        for reference in parsed.references {
            let mut scope = path.clone();
            scope.extend(reference.scope.iter().cloned());
            let Some(target) = absolute(&scope, &reference.segments) else { continue };
            if let Some(module) = self.modules.get_mut(&scope) {
                module.references.push((target, reference.line));
            }
        }
    }

    /// The deepest module `target` names (the rest is an item inside it).
    fn resolve(&self, target: &[String]) -> Vec<String> {
        let mut module = Vec::new();
        for segment in target {
            module.push(segment.clone());
            if self.modules.get(&module).is_none_or(|m| m.test_only) {
                module.pop();
                break;
            }
        }
        module
    }

    /// Sibling edges: parent → (from, to) → where the first reference is.
    fn edges(&self) -> BTreeMap<Vec<String>, BTreeMap<(String, String), String>> {
        let mut edges: BTreeMap<Vec<String>, BTreeMap<(String, String), String>> = BTreeMap::new();
        for (source, module) in self.modules.iter().filter(|(_, m)| !m.test_only) {
            for (target, line) in &module.references {
                let target = self.resolve(target);
                let common = source.iter().zip(&target).take_while(|(a, b)| a == b).count();
                if common == source.len() || common == target.len() {
                    continue; // an ancestor or a descendant
                }
                let parent = source[..common].to_vec();
                let key = (source[common].clone(), target[common].clone());
                edges
                    .entry(parent)
                    .or_default()
                    .entry(key)
                    .or_insert_with(|| format!("{}:{line} names crate::{}", module.file, target.join("::")));
            }
        }
        edges
    }

    fn cycles(&self) -> Vec<Finding> {
        let mut findings = Vec::new();
        for (parent, edges) in self.edges() {
            let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
            for (from, to) in edges.keys() {
                graph.entry(from).or_default().insert(to);
                graph.entry(to).or_default();
            }
            for group in strongly_connected(&graph) {
                let members: Vec<&str> = group.iter().copied().collect();
                let prefix: String = parent.iter().map(|s| format!("{s}::")).collect();
                let key = format!("cycle {} crate::{prefix}{{{}}}", self.label, members.join(", "));
                let cycle = shortest_cycle(&graph, &group);
                let mut detail = format!("  the modules {} of {} import each other:\n", members.join(", "), self.label);
                for step in cycle.windows(2) {
                    let (from, to) = (step[0], step[1]);
                    let at = &edges[&(from.to_owned(), to.to_owned())];
                    let _ = writeln!(detail, "    crate::{prefix}{from} -> crate::{prefix}{to}   ({at})");
                }
                findings.push(Finding { key, detail });
            }
        }
        findings
    }

    fn long_files(&self) -> Vec<Finding> {
        let mut findings: Vec<Finding> = self
            .modules
            .values()
            .filter(|m| m.own_file && !m.test_only && m.lines > MAX_LINES)
            .map(|m| Finding {
                key: format!("long {}", m.file),
                detail: format!(
                    "  {} has {} lines (at most {MAX_LINES} outside tests): split it where its responsibilities are\n",
                    m.file, m.lines
                ),
            })
            .collect();
        findings.dedup();
        findings
    }
}

/// `base` joined with `..` and `.` resolved.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The absolute module path of `segments` (`crate`/`super`/`self` first) seen from `scope`.
fn absolute(scope: &[String], segments: &[String]) -> Option<Vec<String>> {
    let mut out: Vec<String> = match segments.first()?.as_str() {
        "crate" => Vec::new(),
        "self" | "super" => scope.to_vec(),
        _ => return None,
    };
    let mut rest = segments.iter().skip(1).peekable();
    if segments[0] == "super" {
        out.pop()?;
        while rest.peek().is_some_and(|s| *s == "super") {
            rest.next();
            out.pop()?;
        }
    }
    out.extend(rest.filter(|s| *s != "*" && *s != "self").cloned());
    Some(out)
}

// --- graphs ----------------------------------------------------------------------------------

/// Groups of two or more nodes that reach each other (Tarjan), each sorted, in order.
fn strongly_connected<'a>(graph: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> Vec<BTreeSet<&'a str>> {
    struct State<'a> {
        index: HashMap<&'a str, usize>,
        low: HashMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        groups: Vec<BTreeSet<&'a str>>,
    }
    fn visit<'a>(node: &'a str, graph: &BTreeMap<&'a str, BTreeSet<&'a str>>, s: &mut State<'a>) {
        let n = s.index.len();
        s.index.insert(node, n);
        s.low.insert(node, n);
        s.stack.push(node);
        s.on_stack.insert(node);
        for &next in &graph[node] {
            if !s.index.contains_key(next) {
                visit(next, graph, s);
                let low = s.low[node].min(s.low[next]);
                s.low.insert(node, low);
            } else if s.on_stack.contains(next) {
                let low = s.low[node].min(s.index[next]);
                s.low.insert(node, low);
            }
        }
        if s.low[node] == s.index[node] {
            let mut group = BTreeSet::new();
            while let Some(top) = s.stack.pop() {
                s.on_stack.remove(top);
                group.insert(top);
                if top == node {
                    break;
                }
            }
            if group.len() > 1 {
                s.groups.push(group);
            }
        }
    }
    let mut state = State {
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        groups: Vec::new(),
    };
    for &node in graph.keys() {
        if !state.index.contains_key(node) {
            visit(node, graph, &mut state);
        }
    }
    state.groups.sort();
    state.groups
}

/// A shortest cycle through the first member of `group`, inside it: `[a, …, a]`.
fn shortest_cycle<'a>(graph: &BTreeMap<&'a str, BTreeSet<&'a str>>, group: &BTreeSet<&'a str>) -> Vec<&'a str> {
    let start = *group.iter().next().expect("a group has members");
    let mut came_from: HashMap<&str, &str> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for &next in graph[node].iter().filter(|n| group.contains(*n)) {
            if next == start {
                let mut path = vec![start, node];
                let mut at = node;
                while at != start {
                    at = came_from[at];
                    path.push(at);
                }
                path.reverse();
                return path;
            }
            if !came_from.contains_key(next) {
                came_from.insert(next, node);
                queue.push_back(next);
            }
        }
    }
    vec![start, start]
}

// --- reading Rust source ---------------------------------------------------------------------

/// A `mod` declaration: its path below the file's module (more than one segment inside inline
/// modules), whether it is a file, and whether it is only compiled for tests.
#[derive(Debug, PartialEq)]
struct DeclaredModule {
    path: Vec<String>,
    inline: bool,
    test_only: bool,
    path_attr: Option<String>,
}

/// A `crate::`/`super::`/`self::` path, in the inline module `scope` of its file.
#[derive(Debug, PartialEq)]
struct Reference {
    scope: Vec<String>,
    segments: Vec<String>,
    line: usize,
}

#[derive(Debug, Default)]
struct Parsed {
    modules: Vec<DeclaredModule>,
    references: Vec<Reference>,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    /// A string literal's text (only `#[path = "…"]` reads one).
    Str(String),
    PathSep,
    Punct(char),
}

/// Tokens with their lines; comments dropped, literals reduced to [`Token::Str`] or nothing.
fn tokenize(text: &str) -> Vec<(Token, usize)> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let (mut i, mut line) = (0, 1);
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if chars[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if c == '"' || ((c == 'r' || c == 'b' || c == 'c') && is_string_start(&chars, i)) {
            let start_line = line;
            let mut j = i;
            while chars[j] != '"' && chars[j] != '#' {
                j += 1;
            }
            let raw = chars[i..j].contains(&'r');
            let mut hashes = 0;
            while chars[j] == '#' {
                hashes += 1;
                j += 1;
            }
            j += 1; // the opening quote
            let mut value = String::new();
            while let Some(&ch) = chars.get(j) {
                if ch == '\n' {
                    line += 1;
                }
                if !raw && ch == '\\' {
                    value.push(ch);
                    value.push(at(j + 1));
                    if at(j + 1) == '\n' {
                        line += 1;
                    }
                    j += 2;
                    continue;
                }
                if ch == '"' && (0..hashes).all(|k| at(j + 1 + k) == '#') {
                    j += 1 + hashes;
                    break;
                }
                value.push(ch);
                j += 1;
            }
            tokens.push((Token::Str(value), start_line));
            i = j;
        } else if c == '\'' {
            // A char literal ('a', '\n', '\u{1F600}') or a lifetime ('a).
            if at(i + 1) == '\\' {
                let mut j = i + 3;
                while j < chars.len() && chars[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                i += 1;
            }
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push((Token::Ident(chars[start..i].iter().collect()), line));
        } else if c == ':' && at(i + 1) == ':' {
            tokens.push((Token::PathSep, line));
            i += 2;
        } else {
            tokens.push((Token::Punct(c), line));
            i += 1;
        }
    }
    tokens
}

/// Whether a string literal with a prefix (`r"`, `r#"`, `b"`, `br"`, `c"`, …) starts at `i`.
fn is_string_start(chars: &[char], i: usize) -> bool {
    if i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_') {
        return false;
    }
    let mut j = i;
    while j < chars.len() && j < i + 2 && matches!(chars[j], 'r' | 'b' | 'c') {
        j += 1;
    }
    let raw = chars[i..j].contains(&'r');
    if raw {
        while j < chars.len() && chars[j] == '#' {
            j += 1;
        }
    }
    chars.get(j) == Some(&'"')
}

/// Whether the attribute (its tokens between `#[` and `]`) compiles the item for tests only.
fn is_test_cfg(attribute: &[Token]) -> bool {
    let text: String = attribute
        .iter()
        .map(|t| match t {
            Token::Ident(s) => s.clone(),
            Token::Str(s) => format!("{s:?}"),
            Token::PathSep => "::".to_owned(),
            Token::Punct(c) => c.to_string(),
        })
        .collect();
    text == "cfg(test)" || (text.starts_with("cfg(all(") && attribute.contains(&Token::Ident("test".to_owned())))
}

/// The `#[path = "…"]` of an attribute.
fn path_attribute(attribute: &[Token]) -> Option<String> {
    match attribute {
        [Token::Ident(path), Token::Punct('='), Token::Str(value)] if path == "path" => Some(value.clone()),
        _ => None,
    }
}

/// The module declarations and the paths of one file.
fn parse(text: &str) -> Parsed {
    let tokens = tokenize(text);
    let mut parsed = Parsed::default();
    // Inline modules open at this brace depth: (name, depth, test only).
    let mut scopes: Vec<(String, usize, bool)> = Vec::new();
    let mut depth = 0usize;
    let mut attributes: Vec<Vec<Token>> = Vec::new();
    let ident = |i: usize| match tokens.get(i) {
        Some((Token::Ident(s), _)) => Some(s.as_str()),
        _ => None,
    };
    let in_test = |scopes: &[(String, usize, bool)]| scopes.last().is_some_and(|s| s.2);
    let mut i = 0;
    while i < tokens.len() {
        let (token, line) = &tokens[i];
        match token {
            Token::Punct('#') if matches!(tokens.get(i + 1), Some((Token::Punct('['), _))) => {
                let end = matching(&tokens, i + 1);
                attributes.push(tokens[i + 2..end].iter().map(|(t, _)| t.clone()).collect());
                i = end + 1;
                continue;
            }
            Token::Punct('#') if matches!(tokens.get(i + 1), Some((Token::Punct('!'), _))) => {
                // An inner attribute: `#![…]`.
                let end = matching(&tokens, i + 2);
                i = end + 1;
                continue;
            }
            Token::Ident(word) if word == "pub" || word == "unsafe" => {
                // Visibility (`pub(crate)`, `pub(in crate::x)`) keeps the attributes for the item.
                if matches!(tokens.get(i + 1), Some((Token::Punct('('), _))) {
                    i = matching(&tokens, i + 1);
                }
                i += 1;
                continue;
            }
            Token::Ident(word) if word == "mod" => {
                let test = in_test(&scopes) || attributes.iter().any(|a| is_test_cfg(a));
                let path_attr = attributes.iter().find_map(|a| path_attribute(a));
                attributes.clear();
                let Some(name) = ident(i + 1).map(str::to_owned) else {
                    i += 1;
                    continue;
                };
                let mut path: Vec<String> = scopes.iter().map(|s| s.0.clone()).collect();
                path.push(name.clone());
                match tokens.get(i + 2) {
                    Some((Token::Punct('{'), _)) => {
                        parsed.modules.push(DeclaredModule { path, inline: true, test_only: test, path_attr });
                        depth += 1;
                        scopes.push((name, depth, test));
                        i += 3;
                    }
                    _ => {
                        parsed.modules.push(DeclaredModule { path, inline: false, test_only: test, path_attr });
                        i += 2;
                    }
                }
                continue;
            }
            _ => {}
        }
        let test_item = attributes.iter().any(|a| is_test_cfg(a));
        attributes.clear();
        if test_item {
            i = end_of_item(&tokens, i);
            continue;
        }
        match token {
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => {
                if scopes.last().is_some_and(|s| s.1 == depth) {
                    scopes.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Token::Ident(word)
                if matches!(word.as_str(), "crate" | "super" | "self")
                    && matches!(tokens.get(i + 1), Some((Token::PathSep, _)))
                    && !matches!(tokens.get(i.wrapping_sub(1)), Some((Token::PathSep, _))) =>
            {
                let (paths, end) = use_tree(&tokens, i);
                if !in_test(&scopes) {
                    let scope: Vec<String> = scopes.iter().map(|s| s.0.clone()).collect();
                    for segments in paths {
                        parsed.references.push(Reference { scope: scope.clone(), segments, line: *line });
                    }
                }
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    parsed
}

/// The index of the bracket closing the one at `open`.
fn matching(tokens: &[(Token, usize)], open: usize) -> usize {
    let mut depth = 0i32;
    for (k, (token, _)) in tokens.iter().enumerate().skip(open) {
        match token {
            Token::Punct('(' | '[' | '{') => depth += 1,
            Token::Punct(')' | ']' | '}') => {
                depth -= 1;
                if depth == 0 {
                    return k;
                }
            }
            _ => {}
        }
    }
    tokens.len().saturating_sub(1)
}

/// The index after the item (or field, or statement) starting at `start`: after its `;` or
/// `,`, after its body's closing brace, or at the brace that closes the enclosing block.
fn end_of_item(tokens: &[(Token, usize)], start: usize) -> usize {
    const ITEMS: &[&str] = &[
        "fn",
        "impl",
        "struct",
        "enum",
        "union",
        "trait",
        "use",
        "const",
        "static",
        "type",
        "async",
        "extern",
        "macro_rules",
    ];
    // An item's generics (`<A, B>`) hold commas; a field or an expression ends at one.
    let item = matches!(&tokens[start].0, Token::Ident(word) if ITEMS.contains(&word.as_str()));
    let mut k = start;
    while k < tokens.len() {
        match &tokens[k].0 {
            Token::Punct(';') => return k + 1,
            Token::Punct(',') if !item => return k + 1,
            Token::Punct('(' | '[') => k = matching(tokens, k) + 1,
            Token::Punct('{') => return matching(tokens, k) + 1,
            Token::Punct('}' | ')' | ']') => return k,
            _ => k += 1,
        }
    }
    k
}

/// The paths of the use tree (or plain path) starting at `start`, and the index after it:
/// `crate::a::{b, c::{d, e}}` gives `crate::a::b`, `crate::a::c::d`, `crate::a::c::e`.
fn use_tree(tokens: &[(Token, usize)], start: usize) -> (Vec<Vec<String>>, usize) {
    let mut prefix = Vec::new();
    let mut k = start;
    loop {
        match tokens.get(k).map(|t| &t.0) {
            Some(Token::Ident(s)) => {
                prefix.push(s.clone());
                k += 1;
            }
            Some(Token::Punct('*')) => {
                k += 1;
                return (vec![prefix], k);
            }
            _ => return (vec![prefix], k),
        }
        match tokens.get(k).map(|t| &t.0) {
            Some(Token::PathSep) => k += 1,
            _ => return (vec![prefix], k),
        }
        if let Some(Token::Punct('{')) = tokens.get(k).map(|t| &t.0) {
            let close = matching(tokens, k);
            let mut paths = Vec::new();
            let mut j = k + 1;
            while j < close {
                let (subpaths, end) = use_tree(tokens, j);
                for sub in subpaths {
                    let mut full = prefix.clone();
                    full.extend(sub);
                    paths.push(full);
                }
                // Skip `as name` and the comma.
                j = end.max(j + 1);
                while j < close && tokens[j].0 != Token::Punct(',') {
                    j += 1;
                }
                j += 1;
            }
            return (paths, close + 1);
        }
    }
}

// --- the checker checked ---------------------------------------------------------------------

mod checks {
    use super::*;

    fn workspace(files: &[(&str, &str)]) -> Workspace {
        let files: HashMap<PathBuf, String> =
            files.iter().map(|(path, text)| (PathBuf::from("/ws").join(path), (*text).to_owned())).collect();
        Workspace::read(Path::new("/ws"), &|path| files.get(path).cloned())
    }

    const MANIFEST: (&str, &str) = ("Cargo.toml", "[workspace]\nmembers = [\"lib\"]\n");

    fn keys(workspace: &Workspace) -> Vec<String> {
        workspace.findings().into_iter().map(|f| f.key).collect()
    }

    #[test]
    fn paths_in_use_trees_are_expanded() {
        let parsed = parse("use crate::{a::X, b::{self, c::Y as Z}};\nfn f() { super::super::d::g(); }\n");
        let paths: Vec<String> = parsed.references.iter().map(|r| r.segments.join("::")).collect();
        assert_eq!(paths, ["crate::a::X", "crate::b::self", "crate::b::c::Y", "super::super::d::g"]);
        assert_eq!(parsed.references[3].line, 2);
    }

    #[test]
    fn comments_strings_and_test_code_are_not_references() {
        let text = r##"
            // use crate::a;
            /* crate::b::X /* nested */ crate::c */
            const S: &str = "crate::d::X";
            const R: &str = r#"crate::e::" X"#;
            const C: char = '"';
            fn f<'a>(x: &'a str) -> &'a str { x }
            #[cfg(test)]
            use crate::f::X;
            #[cfg(test)]
            mod tests { use crate::g::X; }
            #[cfg(test)]
            fn helper() { crate::h::run(); }
            fn real() { crate::i::run(); }
        "##;
        let parsed = parse(text);
        let paths: Vec<String> = parsed.references.iter().map(|r| r.segments.join("::")).collect();
        assert_eq!(paths, ["crate::i::run"]);
        assert_eq!(parsed.modules.len(), 1);
        assert!(parsed.modules[0].test_only && parsed.modules[0].inline);
    }

    #[test]
    fn a_cycle_is_named_with_the_lines_that_make_it() {
        let ws = workspace(&[
            MANIFEST,
            ("lib/src/lib.rs", "mod a;\nmod b;\nmod c;\n"),
            ("lib/src/a.rs", "use crate::b::X;\n"),
            ("lib/src/b.rs", "pub struct X;\nfn f() { super::c::g(); }\n"),
            ("lib/src/c.rs", "pub fn g() {}\nuse crate::a;\n"),
        ]);
        let findings = ws.findings();
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].key, "cycle lib/src/lib.rs crate::{a, b, c}");
        assert!(
            findings[0].detail.contains("crate::a -> crate::b   (lib/src/a.rs:1 names crate::b)"),
            "{}",
            findings[0].detail
        );
        assert!(findings[0].detail.contains("crate::b -> crate::c   (lib/src/b.rs:2"), "{}", findings[0].detail);
        assert!(findings[0].detail.contains("crate::c -> crate::a   (lib/src/c.rs:2"), "{}", findings[0].detail);
    }

    #[test]
    fn nested_siblings_are_checked_and_parents_and_children_are_not_cycles() {
        let ws = workspace(&[
            MANIFEST,
            ("lib/src/lib.rs", "pub mod store;\nuse store::Store;\n"),
            ("lib/src/store/mod.rs", "mod conn;\nmod instr;\npub use conn::Conn;\npub struct Store;\n"),
            ("lib/src/store/conn.rs", "use super::instr::I;\nuse super::Store;\nuse crate::store::*;\n"),
            ("lib/src/store/instr.rs", "use crate::store::conn::Conn;\n"),
        ]);
        assert_eq!(keys(&ws), ["cycle lib/src/lib.rs crate::store::{conn, instr}"]);
    }

    #[test]
    fn long_files_count_unless_they_are_tests() {
        let long = "fn f() {}\n".repeat(MAX_LINES + 1);
        let ws = workspace(&[
            MANIFEST,
            (
                "lib/src/lib.rs",
                "mod big;\nmod fine;\n#[cfg(test)]\nmod model;\n#[cfg(test)]\n#[path = \"x/helpers.rs\"]\nmod helpers;\nmod unit_tests;\n",
            ),
            ("lib/src/big.rs", &long),
            ("lib/src/fine.rs", &"fn f() {}\n".repeat(MAX_LINES)),
            ("lib/src/model.rs", &long),
            ("lib/src/x/helpers.rs", &long),
            ("lib/src/unit_tests.rs", &long),
        ]);
        assert_eq!(keys(&ws), ["long lib/src/big.rs"]);
    }

    #[test]
    fn inline_modules_resolve_super_from_where_they_are() {
        let ws = workspace(&[
            MANIFEST,
            ("lib/src/lib.rs", "mod a;\nmod b;\n"),
            ("lib/src/a.rs", "mod inner { use super::super::b::X; }\npub struct Y;\n"),
            ("lib/src/b.rs", "pub struct X;\nmod inner { fn f() { super::super::a::Y; } }\n"),
        ]);
        assert_eq!(keys(&ws), ["cycle lib/src/lib.rs crate::{a, b}"]);
    }
}
