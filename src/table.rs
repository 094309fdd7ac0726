//! Aligned text tables for the terminal (`herd list`, `herd show`,
//! `herd bench`); cells may carry ANSI colours.

/// A simple aligned table with a header rule.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(visible_len(c));
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = w[i] - visible_len(c);
            s.push_str(if i == 0 { "│ " } else { " │ " });
            s.push_str(c);
            s.push_str(&" ".repeat(pad));
        }
        s.push_str(" │");
        s
    };
    let rule: String = {
        let mut s = String::from("├");
        for (i, wi) in w.iter().enumerate() {
            s.push_str(&"─".repeat(wi + 2));
            s.push(if i + 1 == w.len() { '┤' } else { '┼' });
        }
        s
    };
    let mut out = vec![line(header.iter().map(|h| h.to_string()).collect()), rule];
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.join("\n")
}

/// Length as shown on a terminal (ANSI colour codes take no room).
pub fn visible_len(s: &str) -> usize {
    let mut n = 0;
    let mut in_esc = false;
    for c in s.chars() {
        match (in_esc, c) {
            (false, '\x1b') => in_esc = true,
            (true, 'm') => in_esc = false,
            (true, _) => {}
            (false, _) => n += 1,
        }
    }
    n
}
