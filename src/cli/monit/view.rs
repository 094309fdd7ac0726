//! How `herd monit` draws its [`Model`]: the process list on the left,
//! the selected app's fairness, latency and per-worker share bars on the
//! right, the selected instance's log below, a key line at the bottom.
//! Fits 80×24; every pane shrinks before anything overlaps.

use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, TableState};
use ratatui::Frame;

use super::model::Model;
use crate::cli::output::{human_bytes, human_seconds};
use crate::protocol::metrics::Summary;
use crate::protocol::Status;

/// The keys, as the bottom line says them.
pub const KEYS: &str = " q quit  ↑↓ select  r restart  l reload app  PgUp/PgDn log";

fn status_color(s: Status) -> Color {
    match s {
        Status::Online => Color::Green,
        Status::Launching | Status::WaitingRestart | Status::Stopping => Color::Yellow,
        Status::Stopped | Status::Errored => Color::Red,
    }
}

/// Draws the whole screen.
pub fn draw(f: &mut Frame<'_>, m: &Model) {
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Percentage(55),
            Constraint::Min(3),
            Constraint::Length(1),
        ])
        .split(f.area());
    let top = Layout::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Percentage(50), Constraint::Percentage(50)])
        .split(rows[0]);
    processes(f, m, top[0]);
    app_panel(f, m, top[1]);
    logs(f, m, rows[1]);
    let line = match &m.message {
        Some(msg) => format!("{KEYS}   {msg}"),
        None => KEYS.to_string(),
    };
    f.render_widget(
        Paragraph::new(line).style(Style::default().add_modifier(Modifier::REVERSED)),
        rows[2],
    );
}

fn processes(f: &mut Frame<'_>, m: &Model, area: Rect) {
    let rows: Vec<Row> = m
        .list
        .iter()
        .map(|i| {
            Row::new(vec![
                Cell::from(i.id.to_string()),
                Cell::from(i.name.clone()),
                Cell::from(i.status.pm2_name()).style(Style::default().fg(status_color(i.status))),
                Cell::from(format!("{:.0}%", i.cpu_percent)),
                Cell::from(human_bytes(i.memory_bytes)),
                Cell::from(i.restarts.to_string()),
            ])
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(3),
            Constraint::Min(6),
            Constraint::Length(8),
            Constraint::Length(5),
            Constraint::Length(8),
            Constraint::Length(3),
        ],
    )
    .header(
        Row::new(vec!["id", "name", "status", "cpu", "mem", "↺"])
            .style(Style::default().add_modifier(Modifier::BOLD)),
    )
    .block(Block::default().borders(Borders::ALL).title(" processes "))
    .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    let mut state = TableState::default();
    if !m.list.is_empty() {
        state.select(Some(m.selected));
    }
    f.render_stateful_widget(table, area, &mut state);
}

/// `29µs`, `1.7ms`: [`human_seconds`] without its space, for a narrow pane.
fn compact(s: f64) -> String {
    human_seconds(s).replace(' ', "")
}

fn latency(label: &str, s: &Option<Summary>) -> Line<'static> {
    match s {
        Some(s) if s.count > 0 => Line::from(format!(
            "{label} p50 {} p99 {} p999 {}",
            compact(s.p50),
            compact(s.p99),
            compact(s.p999)
        )),
        _ => Line::from(format!("{label} -")),
    }
}

fn app_panel(f: &mut Frame<'_>, m: &Model, area: Rect) {
    let block = Block::default().borders(Borders::ALL);
    let Some(app) = m.selected_app() else {
        f.render_widget(
            Paragraph::new("no app: start one with `herd start app.js -i max`")
                .block(block.title(" app ")),
            area,
        );
        return;
    };
    let mut lines = Vec::new();
    match &app.window {
        Some(w) => lines.push(Line::from(format!(
            "Jain {:.4} max/mean {:.2} {:.0} {}/s",
            w.jain,
            w.max_over_mean,
            w.per_second,
            if w.of == "connections" { "conn" } else { "req" }
        ))),
        None => lines.push(Line::from("Jain - (measuring)")),
    }
    lines.push(latency("req", &app.requests));
    if app.accepted.is_some() {
        lines.push(latency("hand-off", &app.handoff));
    }
    // Share bars: each worker's part of the app's recent work.
    let width = area.width.saturating_sub(20).max(4) as usize;
    for (id, index, share, count) in m.shares() {
        let filled = (share * width as f64).round() as usize;
        let selected = m.selected_instance().is_some_and(|i| i.id == id);
        let style = if selected {
            Style::default().fg(Color::Cyan)
        } else {
            Style::default()
        };
        lines.push(Line::from(vec![
            Span::raw(format!("{index:>2} ")),
            Span::styled("█".repeat(filled), style),
            Span::raw("░".repeat(width - filled.min(width))),
            Span::raw(format!(" {:>5.1}% {count}", share * 100.0)),
        ]));
    }
    let title = format!(" {} ({}) ", app.name, app.distribution);
    f.render_widget(Paragraph::new(lines).block(block.title(title)), area);
}

fn logs(f: &mut Frame<'_>, m: &Model, area: Rect) {
    let title = match m.selected_instance() {
        Some(i) => format!(" log of {} [{}] ", i.name, i.id),
        None => " log ".into(),
    };
    let height = area.height.saturating_sub(2) as usize;
    let end = m.logs.len().saturating_sub(m.scroll);
    let start = end.saturating_sub(height);
    let lines: Vec<Line> = m.logs[start..end]
        .iter()
        .map(|(err, l)| {
            if *err {
                Line::styled(l.clone(), Style::default().fg(Color::Red))
            } else {
                Line::raw(l.clone())
            }
        })
        .collect();
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(title)),
        area,
    );
}
