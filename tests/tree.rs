//! The source tree keeps the shape ARCHITECTURE.md describes; this test fails when it
//! drifts:
//! - no two source files of a crate import each other (a `use` or a `crate::`/`super::`
//!   path that names an item of the other file);
//! - the query engine (`aggregator/src/query/`) never names the store's modules;
//! - paths under `--data-dir` are spelled only in the aggregator's layout module;
//! - no non-test source file is longer than 900 lines;
//! - nothing in the repository points at files outside it.
//!
//! It reads the files as text (std only), so it runs before anything else compiles:
//! `rustc --edition 2021 --test tests/tree.rs -o /tmp/tree && /tmp/tree`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The workspace's crates: (directory of `src/`, its root file).
const CRATES: &[&str] = &[
    "src",
    "model/src",
    "collector/src",
    "aggregator/src",
    "alerting/src",
];

/// The module that owns every path under the aggregator's `--data-dir`.
const LAYOUT: &str = "aggregator/src/store/layout.rs";

fn root() -> PathBuf {
    PathBuf::from(option_env!("CARGO_MANIFEST_DIR").unwrap_or("."))
}

/// Every `.rs` file under `dir`, relative to the repository.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(root().join(dir)) else {
        return;
    };
    for e in entries.flatten() {
        let rel = dir.join(e.file_name());
        if e.path().is_dir() {
            rust_files(&rel, out);
        } else if rel.extension().is_some_and(|x| x == "rs") {
            out.push(rel);
        }
    }
}

/// Test code: `tests.rs` files, files under a `tests/` folder, and the crates' black-box
/// tests.
fn is_test_file(p: &Path) -> bool {
    p.file_name().is_some_and(|n| n == "tests.rs")
        || p.components().any(|c| c.as_os_str() == "tests")
}

/// The text of a file without its `#[cfg(test)]` modules and comments.
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") {
            // Skip the item that follows: to its closing brace at the same indent, or one
            // line for `mod tests;`.
            let indent = line.len() - t.len();
            if let Some(next) = lines.next() {
                if next.trim_end().ends_with('{') {
                    for l in lines.by_ref() {
                        let lt = l.trim_start();
                        if lt.starts_with('}') && l.len() - lt.len() == indent {
                            break;
                        }
                    }
                }
            }
            continue;
        }
        if t.starts_with("//") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The module path of a file in a crate (`["query", "eval"]` for `query/eval.rs`).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap_or(file);
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// `use` trees expanded into whole paths: `a::{b, c::d}` -> `a::b`, `a::c::d`.
fn expand(tree: &str, prefix: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head = tree[..open].trim().trim_end_matches("::");
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let base = join(prefix, head);
        let mut depth = 0;
        let mut start = 0;
        for (i, ch) in inner.char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&inner[start..i], &base, out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand(&inner[start..], &base, out);
    } else if !tree.is_empty() {
        let path = tree.split(" as ").next().unwrap_or(tree).trim();
        out.push(join(prefix, path));
    }
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ => format!("{a}::{b}"),
    }
}

/// Every path a file's code names that starts at `crate`, `super` or `self`, or at one of
/// its own child modules (in a `use`).
fn paths(code: &str, children: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    // `use` statements (each from the start of a line, possibly over several lines).
    let lines: Vec<&str> = code.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim_start();
        let body = ["use ", "pub use ", "pub(crate) use ", "pub(super) use "]
            .iter()
            .find_map(|p| t.strip_prefix(p));
        i += 1;
        let Some(body) = body else { continue };
        let mut stmt = body.to_owned();
        while !stmt.contains(';') && i < lines.len() {
            stmt.push(' ');
            stmt.push_str(lines[i].trim());
            i += 1;
        }
        let stmt = stmt.split(';').next().unwrap_or("");
        let mut found = Vec::new();
        expand(stmt, "", &mut found);
        for p in found {
            let first = p.split("::").next().unwrap_or("");
            if matches!(first, "crate" | "super" | "self") || children.contains(first) {
                out.push(p);
            }
        }
    }
    // Paths written inline.
    for start in ["crate::", "super::"] {
        let mut at = 0;
        while let Some(i) = code[at..].find(start) {
            let s = at + i;
            let before = code[..s].chars().last();
            let end = code[s..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |e| s + e);
            if before.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':')) {
                out.push(code[s..end].trim_end_matches(':').to_owned());
            }
            at = end.max(s + 1);
        }
    }
    out
}

/// One crate's files by module path, and the file each path names.
struct Crate {
    src: PathBuf,
    files: BTreeMap<Vec<String>, PathBuf>,
}

impl Crate {
    fn load(src: &str) -> Crate {
        let src = PathBuf::from(src);
        let mut all = Vec::new();
        rust_files(&src, &mut all);
        let files = all
            .into_iter()
            .filter(|f| !(src == Path::new("src") && f.starts_with("src/bin")))
            .map(|f| (module_of(&src, &f), f))
            .collect();
        Crate { src, files }
    }

    /// The file that defines what `path` (written in module `at`) names: the deepest module
    /// on the path that is a file.
    fn resolve(&self, at: &[String], path: &str) -> Option<&PathBuf> {
        let mut segs: Vec<String> = Vec::new();
        let mut parts = path.split("::").peekable();
        match parts.peek().copied() {
            Some("crate") => {
                parts.next();
            }
            Some("super") => {
                segs = at.to_vec();
                while parts.peek() == Some(&"super") {
                    parts.next();
                    segs.pop();
                }
            }
            Some("self") => {
                parts.next();
                segs = at.to_vec();
            }
            _ => segs = at.to_vec(),
        }
        for p in parts {
            segs.push(p.to_owned());
        }
        while !segs.is_empty() {
            if let Some(f) = self.files.get(&segs) {
                return Some(f);
            }
            segs.pop();
        }
        self.files.get(&segs)
    }

    /// For each non-test file, the other files of the crate it names.
    fn imports(&self) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
        let mut out = BTreeMap::new();
        for (module, file) in &self.files {
            if is_test_file(file) {
                continue;
            }
            let text = std::fs::read_to_string(root().join(file)).unwrap_or_default();
            let children: BTreeSet<String> = self
                .files
                .keys()
                .filter(|k| k.len() == module.len() + 1 && k.starts_with(module))
                .filter_map(|k| k.last().cloned())
                .collect();
            let names: BTreeSet<PathBuf> = paths(&code(&text), &children)
                .iter()
                .filter_map(|p| self.resolve(module, p))
                .filter(|f| *f != file && !is_test_file(f))
                .cloned()
                .collect();
            out.insert(file.clone(), names);
        }
        out
    }
}

#[test]
fn no_two_files_import_each_other() {
    let mut pairs = Vec::new();
    for src in CRATES {
        let c = Crate::load(src);
        assert!(!c.files.is_empty(), "no sources under {}", c.src.display());
        let imports = c.imports();
        for (a, names) in &imports {
            for b in names {
                if a < b && imports.get(b).is_some_and(|n| n.contains(a)) {
                    pairs.push(format!("{} <-> {}", a.display(), b.display()));
                }
            }
        }
    }
    assert!(
        pairs.is_empty(),
        "files that import each other:\n{}",
        pairs.join("\n")
    );
}

#[test]
fn the_query_engine_reaches_storage_only_through_its_trait() {
    let c = Crate::load("aggregator/src");
    let mut bad = Vec::new();
    for (file, names) in c.imports() {
        if !file.starts_with("aggregator/src/query") {
            continue;
        }
        for n in names {
            if !n.starts_with("aggregator/src/query") && n != Path::new("aggregator/src/lib.rs") {
                bad.push(format!("{} uses {}", file.display(), n.display()));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn data_directory_paths_are_spelled_in_one_module() {
    let mut bad = Vec::new();
    for src in ["src", "aggregator/src"] {
        let mut files = Vec::new();
        rust_files(Path::new(src), &mut files);
        for f in files {
            if is_test_file(&f) || f == Path::new(LAYOUT) {
                continue;
            }
            let text = code(&std::fs::read_to_string(root().join(&f)).unwrap_or_default());
            for needle in ["join(\"data\")", "join(\"wal\")", "\"day=", "part-{"] {
                if text.contains(needle) {
                    bad.push(format!("{} spells {needle}", f.display()));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "paths under --data-dir belong in {LAYOUT}:\n{}",
        bad.join("\n")
    );
}

#[test]
fn no_source_file_is_past_900_lines() {
    let mut long = Vec::new();
    for dir in CRATES.iter().copied().chain(["benches"]) {
        let mut files = Vec::new();
        rust_files(Path::new(dir), &mut files);
        for f in files {
            if is_test_file(&f) {
                continue;
            }
            let n = std::fs::read_to_string(root().join(&f))
                .unwrap_or_default()
                .lines()
                .count();
            if n > 900 {
                long.push(format!("{}: {n} lines", f.display()));
            }
        }
    }
    assert!(long.is_empty(), "split these:\n{}", long.join("\n"));
}

#[test]
fn nothing_points_outside_the_repository() {
    let needle = concat!("shared", "/");
    let mut found = Vec::new();
    let mut stack = vec![root()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            let name = e.file_name();
            if p.is_dir() {
                if name != "target" && name != ".git" {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "rs" || x == "md")
                && std::fs::read_to_string(&p).is_ok_and(|t| t.contains(needle))
            {
                found.push(p.display().to_string());
            }
        }
    }
    assert!(
        found.is_empty(),
        "these point outside the repository: {found:?}"
    );
}

#[test]
fn the_checker_sees_a_mutual_import() {
    // The checker itself: a file pair that names each other is found, one that does not
    // is not.
    let children = BTreeSet::from(["eval".to_owned()]);
    let p = paths(
        "use super::{eval::{Value, self}, Labels};\nlet x = crate::store::head::Head::new();\n",
        &children,
    );
    assert!(p.contains(&"super::eval::Value".to_owned()), "{p:?}");
    assert!(p.contains(&"super::Labels".to_owned()), "{p:?}");
    assert!(
        p.contains(&"crate::store::head::Head::new".to_owned()),
        "{p:?}"
    );
    let c = Crate {
        src: PathBuf::from("x/src"),
        files: BTreeMap::from([
            (vec![], PathBuf::from("x/src/lib.rs")),
            (vec!["query".into()], PathBuf::from("x/src/query/mod.rs")),
            (
                vec!["query".into(), "eval".into()],
                PathBuf::from("x/src/query/eval.rs"),
            ),
        ]),
    };
    let at = ["query".to_owned(), "eval".to_owned()];
    assert_eq!(
        c.resolve(&at, "super::Labels"),
        Some(&PathBuf::from("x/src/query/mod.rs"))
    );
    assert_eq!(
        c.resolve(&at[..1], "eval::Value"),
        Some(&PathBuf::from("x/src/query/eval.rs"))
    );
    let cut = code("fn a() {}\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\nfn b() {}\n");
    assert_eq!(cut, "fn a() {}\nfn b() {}\n");
}
