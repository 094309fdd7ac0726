//! Charts for `herd bench --report`: plain SVG written by hand (bars, a
//! log-scale line chart), no plotting library and no fonts needed on the
//! machine that draws them; a browser or any SVG viewer renders them.

use std::fmt::Write;

const W: f64 = 760.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn head(h: f64, title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{h}\" viewBox=\"0 0 {W} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
        W / 2.0,
        esc(title)
    )
}

/// `value` with a thousands separator or 3 significant digits.
fn num(v: f64) -> String {
    if v >= 1000.0 {
        let s = format!("{:.0}", v);
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// A horizontal bar per row: (label, value), scaled to the largest.
pub fn bars(title: &str, unit: &str, rows: &[(String, f64)]) -> String {
    let bar = 22.0;
    let left = 250.0;
    let h = 50.0 + rows.len() as f64 * (bar + 6.0) + 20.0;
    let max = rows.iter().map(|r| r.1).fold(0.0, f64::max).max(1e-12);
    let mut s = head(h, title);
    for (i, (label, v)) in rows.iter().enumerate() {
        let y = 40.0 + i as f64 * (bar + 6.0);
        let w = (W - left - 110.0) * v / max;
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
             <rect x=\"{left}\" y=\"{y}\" width=\"{w:.1}\" height=\"{bar}\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{}\">{} {}</text>",
            left - 6.0,
            y + 15.0,
            esc(label),
            COLORS[i % COLORS.len()],
            left + w + 4.0,
            y + 15.0,
            num(*v),
            esc(unit)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Lines of (x, y) points, x on a log scale (latency in µs), y the
/// percentile on HdrHistogram's "nines" scale (0, 90, 99, 99.9, 99.99 equally
/// spaced, so the tail is visible): a latency CDF, one line per series.
pub fn cdf(title: &str, series: &[(String, Vec<(f64, f64)>)]) -> String {
    let (left, top, right, bottom) = (60.0, 40.0, 200.0, 50.0);
    let h = 420.0;
    let (pw, ph) = (W - left - right, h - top - bottom);
    let xs = series.iter().flat_map(|s| s.1.iter().map(|p| p.0.max(1.0)));
    let (lo, hi) = xs.fold((f64::MAX, 1.0f64), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let (lo, hi) = (
        lo.min(hi).log10().floor(),
        hi.log10().ceil().max(lo.log10().floor() + 1.0),
    );
    let x_of = |x: f64| left + (x.max(1.0).log10() - lo) / (hi - lo) * pw;
    // Nines: -log10(1 - p), up to 5 (99.999 % and 100 % sit at the top).
    let nines = |p: f64| (-(1.0 - (p / 100.0).min(0.99999)).log10()).clamp(0.0, 5.0);
    let y_of = |y: f64| top + ph - nines(y) / 5.0 * ph;
    let mut s = head(h, title);
    // Axes, decades and percent ticks.
    let _ = writeln!(
        s,
        "<rect x=\"{left}\" y=\"{top}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#999\"/>"
    );
    let mut d = lo;
    while d <= hi {
        let x = x_of(10f64.powf(d));
        let label = match 10f64.powf(d) {
            v if v >= 1e6 => format!("{} s", v / 1e6),
            v if v >= 1e3 => format!("{} ms", v / 1e3),
            v => format!("{v} µs"),
        };
        let _ = writeln!(
            s,
            "<line x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#eee\"/><text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
            top + ph,
            top + ph + 16.0
        );
        d += 1.0;
    }
    for p in [0.0, 90.0, 99.0, 99.9, 99.99] {
        let y = y_of(p);
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#eee\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{p}%</text>",
            left + pw,
            left - 4.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">latency (log scale)</text>",
        left + pw / 2.0,
        h - 10.0
    );
    for (i, (name, pts)) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let path: Vec<String> = pts
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", x_of(*x), y_of(*y)))
            .collect();
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        );
        legend(&mut s, (left + pw + 12.0, top), i, name);
    }
    s.push_str("</svg>\n");
    s
}

/// Per-worker counts, one group of bars per target: how evenly each
/// spread the load.
pub fn groups(title: &str, groups: &[(String, Vec<f64>)]) -> String {
    let row = 26.0;
    let left = 250.0;
    let h = 50.0 + groups.len() as f64 * (row + 8.0) + 20.0;
    let mut s = head(h, title);
    for (i, (label, counts)) in groups.iter().enumerate() {
        let y = 40.0 + i as f64 * (row + 8.0);
        let total: f64 = counts.iter().sum::<f64>().max(1e-12);
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            left - 6.0,
            y + 17.0,
            esc(label)
        );
        // One stacked bar: each worker's share of the target's requests.
        let mut x = left;
        for (k, c) in counts.iter().enumerate() {
            let w = (W - left - 20.0) * c / total;
            let _ = writeln!(
                s,
                "<rect x=\"{x:.1}\" y=\"{y}\" width=\"{w:.1}\" height=\"{row}\" fill=\"{}\" stroke=\"white\"><title>worker {k}: {c}</title></rect>",
                COLORS[k % COLORS.len()]
            );
            if w > 40.0 {
                let _ = writeln!(
                    s,
                    "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\" fill=\"white\">{:.1}%</text>",
                    x + w / 2.0,
                    y + 17.0,
                    c / total * 100.0
                );
            }
            x += w;
        }
    }
    s.push_str("</svg>\n");
    s
}

/// Series `i`'s legend entry (its colour and `name`) in the column at `(x, top)`.
fn legend(s: &mut String, (x, top): (f64, f64), i: usize, name: &str) {
    let _ = writeln!(
        s,
        "<rect x=\"{x}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{}\" y=\"{}\" font-size=\"11\">{}</text>",
        top + i as f64 * 18.0,
        COLORS[i % COLORS.len()],
        x + 16.0,
        top + i as f64 * 18.0 + 11.0,
        esc(name)
    );
}

/// A round step (1, 2 or 5 × a power of ten) that cuts `span` into about
/// five.
fn nice_step(span: f64) -> f64 {
    let raw = (span / 5.0).max(1e-9);
    let p = 10f64.powf(raw.log10().floor());
    let m = raw / p;
    p * if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    }
}

/// An axis tick: whole numbers without decimals, others to one or none.
fn tick(v: f64) -> String {
    if v >= 1000.0 {
        num(v)
    } else if (v - v.round()).abs() < 1e-9 || v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// One axis of [`lines`]: its label and whether it is a log scale.
pub struct Axis<'a> {
    pub label: &'a str,
    pub log: bool,
}

/// A line chart of (x, y) series with a marker at each point: the sweep's
/// p99 against the rate, the scaling curves' cost against the workers or
/// connections. Log axes go by decades; linear ones start at 0.
pub fn lines(title: &str, x: Axis, y: Axis, series: &[(String, Vec<(f64, f64)>)]) -> String {
    let (left, top, right, bottom) = (70.0, 40.0, 250.0, 50.0);
    let h = 420.0;
    let (pw, ph) = (W - left - right, h - top - bottom);
    let range = |vals: &mut dyn Iterator<Item = f64>, log: bool| -> (f64, f64) {
        let (lo, hi) = vals.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let (lo, hi) = if lo > hi { (1.0, 10.0) } else { (lo, hi) };
        if log {
            let lo = lo.max(1e-3).log10().floor();
            (lo, hi.max(1e-3).log10().ceil().max(lo + 1.0))
        } else {
            let step = nice_step(if hi > 0.0 { hi * 1.05 } else { 1.0 });
            (0.0, (hi * 1.05 / step).ceil().max(1.0) * step)
        }
    };
    let (x0, x1) = range(
        &mut series.iter().flat_map(|s| s.1.iter().map(|p| p.0)),
        x.log,
    );
    let (y0, y1) = range(
        &mut series.iter().flat_map(|s| s.1.iter().map(|p| p.1)),
        y.log,
    );
    let scale = |v: f64, log: bool, (a, b): (f64, f64)| {
        let v = if log { v.max(1e-3).log10() } else { v };
        ((v - a) / (b - a)).clamp(0.0, 1.0)
    };
    let x_of = |v: f64| left + scale(v, x.log, (x0, x1)) * pw;
    let y_of = |v: f64| top + ph - scale(v, y.log, (y0, y1)) * ph;
    // Round steps on a linear axis, a tick a decade on a log one.
    let ticks = |log: bool, (a, b): (f64, f64)| -> Vec<f64> {
        if log {
            (a as i32..=b as i32).map(|d| 10f64.powi(d)).collect()
        } else {
            let step = nice_step(b - a);
            (0..)
                .map(|k| a + step * f64::from(k))
                .take_while(|&t| t <= b + step * 1e-9)
                .collect()
        }
    };
    let mut s = head(h, title);
    let _ = writeln!(
        s,
        "<rect x=\"{left}\" y=\"{top}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#999\"/>"
    );
    for t in ticks(x.log, (x0, x1)) {
        let px = x_of(t);
        let _ = writeln!(
            s,
            "<line x1=\"{px:.1}\" y1=\"{top}\" x2=\"{px:.1}\" y2=\"{}\" stroke=\"#eee\"/><text x=\"{px:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            top + ph,
            top + ph + 16.0,
            tick(t)
        );
    }
    for t in ticks(y.log, (y0, y1)) {
        let py = y_of(t);
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" y1=\"{py:.1}\" x2=\"{}\" y2=\"{py:.1}\" stroke=\"#eee\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            left + pw,
            left - 4.0,
            py + 4.0,
            tick(t)
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\
         <text x=\"14\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {})\">{}</text>",
        left + pw / 2.0,
        h - 10.0,
        esc(x.label),
        top + ph / 2.0,
        top + ph / 2.0,
        esc(y.label)
    );
    for (i, (name, pts)) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let path: Vec<String> = pts
            .iter()
            .map(|&(px, py)| format!("{:.1},{:.1}", x_of(px), y_of(py)))
            .collect();
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        );
        for &(px, py) in pts {
            let _ = writeln!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{c}\"><title>{}: {}, {}</title></circle>",
                x_of(px),
                y_of(py),
                esc(name),
                num(px),
                num(py)
            );
        }
        legend(&mut s, (left + pw + 12.0, top), i, name);
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg_with_their_labels_escaped() {
        let b = bars(
            "req/s",
            "req/s",
            &[("herd <fdpass>".into(), 1234.0), ("pm2".into(), 617.0)],
        );
        assert!(b.starts_with("<svg") && b.trim_end().ends_with("</svg>"));
        assert!(b.contains("herd &lt;fdpass&gt;") && b.contains("1,234"));
        let c = cdf(
            "latency",
            &[(
                "a".into(),
                vec![(50.0, 0.0), (200.0, 50.0), (5000.0, 100.0)],
            )],
        );
        assert!(c.contains("<polyline") && c.contains("ms"));
        let g = groups("workers", &[("herd".into(), vec![50.0, 50.0])]);
        assert_eq!(g.matches("<rect x=").count(), 2);
        assert!(g.contains("50.0%"));
        assert_eq!(num(1234567.0), "1,234,567");
        let l = lines(
            "cost",
            Axis {
                label: "workers",
                log: true,
            },
            Axis {
                label: "µs <per> conn",
                log: false,
            },
            &[("fdpass".into(), vec![(2.0, 10.0), (256.0, 12.0)])],
        );
        assert!(l.contains("<polyline") && l.contains("µs &lt;per&gt; conn"));
        assert_eq!(l.matches("<circle").count(), 2);
        assert_eq!(
            (nice_step(7523.0), nice_step(1.0), nice_step(43.4)),
            (2000.0, 0.2, 10.0)
        );
        assert_eq!(
            (tick(8.679), tick(26.0), tick(0.5)),
            ("8.7".into(), "26".into(), "0.5".into())
        );
        // Decades 1, 10, 100, 1000 on the log axis.
        assert!(
            l.contains(">1,000</text>") && l.contains(">100</text>"),
            "{l}"
        );
    }
}
