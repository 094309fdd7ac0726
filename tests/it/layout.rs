//! The shape of the source tree (#16): the modules' arrows are the ones
//! docs/ARCHITECTURE.md's module table lists, they form no circle, and no
//! source file outgrows one concept.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file under src/ belongs to (`accept`, `sys`, …).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// `crate::x` paths in code (not in comments), before a file's unit tests.
fn arrows_of(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    let mut out = BTreeSet::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// module → the modules its code names.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        // Test code may reach anywhere.
        if name == "tests.rs" || name == "scenarios.rs" || name == "main.rs" {
            continue;
        }
        let m = module_of(&src, &f);
        let arrows = arrows_of(&std::fs::read_to_string(&f).unwrap());
        let entry = g.entry(m.clone()).or_default();
        entry.extend(arrows.into_iter().filter(|a| *a != m));
    }
    g
}

/// The module table of docs/ARCHITECTURE.md: module → the crate modules
/// its last column allows.
fn documented(modules: &BTreeSet<String>) -> BTreeMap<String, BTreeSet<String>> {
    let doc = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    let table = doc
        .split("\n## Modules\n")
        .nth(1)
        .expect("docs/ARCHITECTURE.md has a `## Modules` section");
    let mut out = BTreeMap::new();
    for row in table.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.trim_matches('|').split(" | ").collect();
        let name = cells[0].trim().trim_matches('`');
        let name = name
            .trim_end_matches('/')
            .trim_end_matches(".rs")
            .to_string();
        let uses = cells.last().unwrap();
        let allowed = uses
            .split(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .filter(|w| modules.contains(*w))
            .map(str::to_string)
            .collect();
        out.insert(name, allowed);
    }
    out
}

#[test]
fn modules_have_only_documented_arrows_and_no_circle() {
    let g = graph();
    let modules: BTreeSet<String> = g.keys().cloned().collect();
    let doc = documented(&modules);
    let mut undocumented = Vec::new();
    for (m, arrows) in &g {
        let allowed = doc
            .get(m)
            .unwrap_or_else(|| panic!("src/{m} is not in docs/ARCHITECTURE.md's module table"));
        for a in arrows.iter().filter(|a| modules.contains(*a)) {
            if !allowed.contains(a) {
                undocumented.push(format!("{m} -> {a}"));
            }
        }
    }
    assert!(
        undocumented.is_empty(),
        "arrows in the code that docs/ARCHITECTURE.md's module table does not list: {undocumented:?}"
    );
    // No circle: peel off modules that depend on nothing left.
    let mut left: BTreeMap<&String, BTreeSet<&String>> = g
        .iter()
        .map(|(m, a)| (m, a.iter().filter(|x| modules.contains(*x)).collect()))
        .collect();
    while !left.is_empty() {
        let leaves: Vec<&String> = left
            .iter()
            .filter(|(_, a)| a.iter().all(|x| !left.contains_key(*x)))
            .map(|(m, _)| *m)
            .collect();
        assert!(
            !leaves.is_empty(),
            "the modules' arrows form a circle among {:?}",
            left.keys().collect::<Vec<_>>()
        );
        for m in leaves {
            left.remove(m);
        }
    }
}

#[test]
fn no_source_file_is_over_700_lines() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let big: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > 700).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(big.is_empty(), "split these by concept: {big:?}");
}

#[test]
fn the_arrow_reader_sees_code_not_comments() {
    let text = "//! see crate::daemon\nuse crate::sys::fd;\nlet x = crate::config::parse();\n#[cfg(test)]\nmod tests {\n    use crate::bench;\n}\n";
    let got: Vec<String> = arrows_of(text).into_iter().collect();
    assert_eq!(got, ["config", "sys"]);
}

/// The wire types depend on serde alone (pueue's `pueue_lib::message`):
/// a client can be built from `protocol/` without the daemon's internals.
#[test]
fn the_protocol_names_no_other_crate_module() {
    let g = graph();
    let modules: BTreeSet<String> = g.keys().cloned().collect();
    let used: Vec<&String> = g["protocol"]
        .iter()
        .filter(|m| modules.contains(*m))
        .collect();
    assert!(used.is_empty(), "src/protocol uses {used:?}");
}
