//! The apps' own Prometheus text (`app_metrics`: e.g. prom-client's
//! `nodejs_*` and `process_*` from every instance of a Node app) merged
//! into herd's, each sample labelled with its `app` and `instance`, so one
//! scrape covers every instance and the whole text stays valid: one HELP
//! and TYPE per family, a family's samples together, no sample twice.
//!
//! Apps' text is untrusted: a line that is not a well-formed sample or
//! comment is dropped, as is a family whose TYPE disagrees with one seen
//! before (herd's own come first). An app's own `app`/`instance` labels
//! become `exported_app`/`exported_instance`, as Prometheus does.

use std::collections::BTreeSet;

/// One family being merged.
#[derive(Default)]
struct Family {
    name: String,
    help: Option<String>,
    kind: Option<String>,
    samples: Vec<String>,
    keys: BTreeSet<String>,
}

#[derive(Default)]
struct Merged {
    families: Vec<Family>,
}

impl Merged {
    fn family(&mut self, name: &str) -> usize {
        match self.families.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                self.families.push(Family {
                    name: name.to_string(),
                    ..Default::default()
                });
                self.families.len() - 1
            }
        }
    }
}

fn valid_name(s: &str, colon: bool) -> bool {
    let mut cs = s.chars();
    let ok = |c: char, first: bool| {
        c == '_' || (colon && c == ':') || c.is_ascii_alphabetic() || (!first && c.is_ascii_digit())
    };
    cs.next().is_some_and(|c| ok(c, true)) && cs.all(|c| ok(c, false))
}

/// `{k="v",…}` at the start of `s`: the (name, raw quoted value) pairs and
/// the rest of the line; `None` when malformed.
fn labels(s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut out = Vec::new();
    let mut rest = s.strip_prefix('{')?;
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix('}') {
            return Some((out, r));
        }
        let eq = rest.find('=')?;
        let name = rest[..eq].trim();
        if !valid_name(name, false) {
            return None;
        }
        let v = rest[eq + 1..].trim_start().strip_prefix('"')?;
        let mut end = None;
        let mut escaped = false;
        for (i, c) in v.char_indices() {
            match (escaped, c) {
                (true, '\\' | '"' | 'n') => escaped = false,
                (true, _) => return None,
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = Some(i);
                    break;
                }
                (false, '\n') => return None,
                _ => {}
            }
        }
        let end = end?;
        out.push((name.to_string(), v[..end].to_string()));
        rest = v[end + 1..].trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.starts_with('}') {
            return None;
        }
    }
}

/// The value (and optional timestamp) after a sample's labels.
fn valid_value(rest: &str) -> bool {
    let mut f = rest.split_whitespace();
    let v = f
        .next()
        .is_some_and(|v| matches!(v, "NaN" | "+Inf" | "-Inf" | "Inf") || v.parse::<f64>().is_ok());
    let ts = f.next().is_none_or(|t| t.parse::<i64>().is_ok());
    v && ts && f.next().is_none()
}

/// Adds one text; `relabel`: the (app, instance) labels its samples get.
fn add(m: &mut Merged, text: &str, relabel: Option<(&str, u32)>) {
    let mut current: Option<usize> = None;
    // Families this text declared with a TYPE that disagreed: skipped.
    let mut rejected: BTreeSet<String> = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix('#') {
            let mut p = c.trim_start().splitn(3, ' ');
            let (kw, name, rest) = (p.next(), p.next(), p.next().unwrap_or("").trim());
            let Some(name) = name.filter(|n| valid_name(n, true)) else {
                continue;
            };
            match kw {
                Some("HELP") => {
                    let i = m.family(name);
                    current = Some(i);
                    let f = &mut m.families[i];
                    if f.help.is_none() {
                        f.help = Some(rest.to_string());
                    }
                }
                Some("TYPE") => {
                    if !matches!(
                        rest,
                        "counter" | "gauge" | "histogram" | "summary" | "untyped"
                    ) {
                        continue;
                    }
                    let i = m.family(name);
                    let f = &mut m.families[i];
                    match &f.kind {
                        Some(k) if k != rest => {
                            rejected.insert(name.to_string());
                            current = None;
                        }
                        _ => {
                            f.kind = Some(rest.to_string());
                            current = Some(i);
                        }
                    }
                }
                _ => {}
            }
            continue;
        }
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..end];
        if !valid_name(name, true) {
            continue;
        }
        let (mut ls, rest) = if line[end..].starts_with('{') {
            match labels(&line[end..]) {
                Some(x) => x,
                None => continue,
            }
        } else {
            (Vec::new(), &line[end..])
        };
        if !valid_value(rest) {
            continue;
        }
        // The family: the current one when the name is its own or one of
        // its histogram/summary series, else a family of its own.
        let fam = current
            .filter(|&i| {
                let f = &m.families[i].name;
                name == f
                    || [
                        format!("{f}_bucket"),
                        format!("{f}_sum"),
                        format!("{f}_count"),
                    ]
                    .iter()
                    .any(|s| s == name)
            })
            .unwrap_or_else(|| m.family(name));
        if rejected.contains(&m.families[fam].name) {
            continue;
        }
        if let Some((app, instance)) = relabel {
            for (k, _) in ls.iter_mut() {
                if k == "app" || k == "instance" {
                    *k = format!("exported_{k}");
                }
            }
            ls.insert(0, ("instance".into(), instance.to_string()));
            ls.insert(0, ("app".into(), escape(app)));
        }
        let mut sample = name.to_string();
        if !ls.is_empty() {
            let body: Vec<String> = ls.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            sample.push('{');
            sample.push_str(&body.join(","));
            sample.push('}');
        }
        let key = sample.clone();
        sample.push(' ');
        sample.push_str(rest.trim());
        let f = &mut m.families[fam];
        if f.keys.insert(key) {
            f.samples.push(sample);
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// herd's own text, then each app instance's (app, instance index, text),
/// merged as the module doc says.
pub fn merge(herd: &str, apps: &[(String, u32, String)]) -> String {
    let mut m = Merged::default();
    add(&mut m, herd, None);
    for (app, instance, text) in apps {
        add(&mut m, text, Some((app, *instance)));
    }
    let mut out =
        String::with_capacity(herd.len() + apps.iter().map(|a| a.2.len() + 256).sum::<usize>());
    for f in m.families.iter().filter(|f| !f.samples.is_empty()) {
        if let Some(h) = &f.help {
            out.push_str(&format!("# HELP {} {h}\n", f.name));
        }
        if let Some(k) = &f.kind {
            out.push_str(&format!("# TYPE {} {k}\n", f.name));
        }
        for s in &f.samples {
            out.push_str(s);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HERD: &str = "# HELP process_cpu_seconds_total daemon cpu\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 0.5\n";

    fn app(cpu: f64) -> String {
        format!(
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n\
             # TYPE process_cpu_seconds_total counter\n\
             process_cpu_seconds_total {cpu}\n\
             \n\
             # HELP http_request_duration_seconds latency\n\
             # TYPE http_request_duration_seconds histogram\n\
             http_request_duration_seconds_bucket{{le=\"0.1\",route=\"/\"}} 3\n\
             http_request_duration_seconds_bucket{{le=\"+Inf\",route=\"/\"}} 4\n\
             http_request_duration_seconds_sum{{route=\"/\"}} 0.5\n\
             http_request_duration_seconds_count{{route=\"/\"}} 4\n\
             # HELP app_jobs jobs\n# TYPE app_jobs gauge\napp_jobs{{instance=\"theirs\"}} 7\n"
        )
    }

    #[test]
    fn instances_merge_into_one_family_each_with_their_labels() {
        let out = merge(
            HERD,
            &[("api".into(), 0, app(1.5)), ("api".into(), 1, app(2.5))],
        );
        assert_eq!(
            out.matches("# TYPE process_cpu_seconds_total").count(),
            1,
            "{out}"
        );
        let cpu: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("process_cpu_seconds_total"))
            .collect();
        assert_eq!(
            cpu,
            [
                "process_cpu_seconds_total 0.5",
                "process_cpu_seconds_total{app=\"api\",instance=\"0\"} 1.5",
                "process_cpu_seconds_total{app=\"api\",instance=\"1\"} 2.5",
            ],
            "herd's help first: {out}"
        );
        assert!(out.contains("# HELP process_cpu_seconds_total daemon cpu"));
        assert!(out.contains(
            "http_request_duration_seconds_bucket{app=\"api\",instance=\"1\",le=\"+Inf\",route=\"/\"} 4"
        ));
        assert!(out.contains("app_jobs{app=\"api\",instance=\"0\",exported_instance=\"theirs\"} 7"));
        // Each family's samples follow its HELP/TYPE, together.
        let bucket_lines: Vec<usize> = out
            .lines()
            .enumerate()
            .filter(|(_, l)| l.starts_with("http_request_duration_seconds"))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(bucket_lines.last().unwrap() - bucket_lines[0], 7, "{out}");
    }

    #[test]
    fn garbage_and_conflicting_types_are_dropped() {
        let bad = "# TYPE process_cpu_seconds_total gauge\nprocess_cpu_seconds_total 9\n\
                   not a metric line\nx{a=\"unterminated} 1\ny{a=\"1\"} notanumber\n\
                   1bad 2\nok_total 3\nok_total 3\n";
        let out = merge(HERD, &[("w".into(), 0, bad.into())]);
        assert!(
            !out.contains(" 9"),
            "a family of another TYPE is dropped: {out}"
        );
        assert!(
            !out.contains("unterminated") && !out.contains("notanumber") && !out.contains("1bad")
        );
        assert_eq!(
            out.matches("ok_total{app=\"w\",instance=\"0\"} 3").count(),
            1,
            "{out}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let out = merge("", &[("a\"b".into(), 0, "m 1\n".into())]);
        assert_eq!(out.trim(), "m{app=\"a\\\"b\",instance=\"0\"} 1");
    }
}
