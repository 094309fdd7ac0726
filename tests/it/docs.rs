//! The docs against the binary: the field table of `herd list --json` in
//! docs/CONFIG.md lists exactly the fields a running herd prints (issue
//! #16: the README's field list had drifted; ten printed fields were in no
//! doc). Both directions, so a field added to `InstanceInfo` without a row
//! in the table fails here, and so does a row for a field herd no longer
//! prints.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;
use crate::reuseport::start_hello_mode;

/// The heading of the section whose first table is the field list.
const HEADING: &str = "## `herd list --json`";

/// The fields docs/CONFIG.md lists, by when they are printed.
#[derive(Debug)]
struct Documented {
    /// `always`: the key is in every object.
    always: BTreeSet<String>,
    /// `when set`: the key is there only when its option or condition is.
    when_set: BTreeSet<String>,
}

impl Documented {
    fn all(&self) -> BTreeSet<String> {
        self.always.union(&self.when_set).cloned().collect()
    }
}

/// Reads the field table: the first markdown table after [`HEADING`]; each
/// row's first cell is a field name in backticks, its second `always` or
/// `when set`. Anything else in those two cells is a broken table, not a
/// row to skip.
fn documented() -> Documented {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/CONFIG.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines = text
        .lines()
        .skip_while(|l| l.trim_end() != HEADING)
        .skip(1)
        .skip_while(|l| !l.starts_with('|'));
    let header = lines
        .next()
        .unwrap_or_else(|| panic!("{}: no table after {HEADING:?}", path.display()));
    assert!(header.starts_with("| field | printed |"), "{header}");
    let mut doc = Documented {
        always: BTreeSet::new(),
        when_set: BTreeSet::new(),
    };
    for row in lines.skip(1).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let name = cells[1]
            .strip_prefix('`')
            .and_then(|c| c.strip_suffix('`'))
            .unwrap_or_else(|| panic!("field not in backticks: {row}"));
        let set = match cells[2] {
            "always" => &mut doc.always,
            "when set" => &mut doc.when_set,
            other => panic!("printed is `always` or `when set`, not {other:?}: {row}"),
        };
        assert!(set.insert(name.to_string()), "listed twice: {name}");
    }
    assert!(
        doc.always.is_disjoint(&doc.when_set),
        "a field is both always and when set: {doc:?}"
    );
    assert!(doc.always.len() > 20, "the table was not read: {doc:?}");
    doc
}

fn keys(instance: &Value) -> BTreeSet<String> {
    instance
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {instance}"))
        .keys()
        .cloned()
        .collect()
}

/// `printed` has every field of `want` and none outside `allowed`.
#[track_caller]
fn check(
    what: &str,
    printed: &BTreeSet<String>,
    want: &BTreeSet<String>,
    allowed: &BTreeSet<String>,
) {
    let undocumented: Vec<_> = printed.difference(allowed).collect();
    let missing: Vec<_> = want.difference(printed).collect();
    assert!(
        undocumented.is_empty() && missing.is_empty(),
        "{what}: `herd list --json` and docs/CONFIG.md (\"{HEADING}\") disagree.\n\
         printed, but not in the table (or, for the plain app, only as `when set`): {undocumented:?}\n\
         in the table, but not printed: {missing:?}"
    );
}

#[test]
fn list_json_prints_exactly_the_fields_the_docs_list() {
    let doc = documented();
    let h = TestHome::new();

    // A plain cluster app, no optional setting: every `always` field and
    // none of the `when set` ones.
    let port = free_port();
    start_hello_mode(&h, port, "fdpass", &["-i", "1"]);

    // An app with every optional setting, from an ecosystem file (JSON:
    // no node needed): each `when set` field must show up.
    let dir = h.root.join("every");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::copy(app("scripts/print.sh"), dir.join("print.sh")).unwrap();
    let full = Path::new("/dev/full").exists();
    if !full {
        herd::testing::skip(
            "devfull",
            "docs: no /dev/full, so `log_error` is not checked as printed",
        );
    }
    let eco = serde_json::json!({"apps": [{
        "name": "every",
        "script": "print.sh",
        "args": ["lines", "3"],
        // A full disk gives `log_error`; the combined log still works.
        "out_file": if full { "/dev/full" } else { "out.log" },
        "log_file": "all.log",
        "log_date_format": "YYYY-MM-DD",
        "log_max_size": "10M",
        // A missing path gives `watch_error`.
        "watch": ["src", "not-there"],
        "ignore_watch": ["tmp"],
        "watch_delay": 200,
        "cron_restart": "0 0 1 1 *",
        "instance_var": "INSTANCE_ID",
        "increment_var": "WORKER_SEQ",
    }]});
    let file = dir.join("ecosystem.json");
    std::fs::write(&file, eco.to_string()).unwrap();
    h.run(&["start", file.to_str().unwrap()]).ok();

    let l = h.wait_for(
        "both apps up, every optional field set",
        Duration::from_secs(15),
        |l| {
            let every = l.iter().find(|i| i["name"] == "every");
            l.len() == 2
                && l.iter().all(|i| i["status"] == "online")
                && every.is_some_and(|i| {
                    i["watching"] == true
                        && i["cron_next_ms"].is_u64()
                        && i["watch_error"].is_string()
                        && (!full || i["log_error"].is_string())
                })
        },
    );

    let all = doc.all();
    let hello = l.iter().find(|i| i["name"] == "hello").unwrap();
    let printed = keys(hello);
    check("plain app", &printed, &doc.always, &doc.always);

    let every = l.iter().find(|i| i["name"] == "every").unwrap();
    let mut want = all.clone();
    if !full {
        want.remove("log_error");
    }
    check("app with every option", &keys(every), &want, &all);

    // `herd show --json` prints the same objects.
    let shown = h.run(&["show", "every", "--json"]).ok().json();
    check("herd show --json", &keys(&shown[0]), &want, &all);
}
