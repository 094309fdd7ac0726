//! `herd monit`: PM2's dashboard, with what PM2's lacks — each worker's
//! share of its app's connections, Jain's index, request latency
//! percentiles — beside the process list and the selected instance's log.
//!
//! It asks the daemon once a second (`List` and `Metrics`, about a
//! millisecond each) and redraws only then or on a key, so an open monit
//! costs little (figures in docs/BENCHMARKS.md). The terminal is restored
//! on every way out: `q`, Esc, Ctrl-C, an error, a panic (ratatui's hook).

mod model;
mod view;

use std::io::IsTerminal;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Args;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

use crate::client;
use crate::error::{Error, Result};
use crate::protocol::{Request, Response, Target};
use model::Model;

/// How often the figures are fetched (and the screen redrawn without a key).
const REFRESH: Duration = Duration::from_secs(1);

/// Options of `herd monit`.
#[derive(Debug, Args)]
pub struct MonitArgs {}

fn fetch_list() -> Result<Vec<crate::protocol::InstanceInfo>> {
    match client::call(&Request::List)? {
        Response::Instances { instances } => Ok(instances),
        other => Err(client::unexpected(&other)),
    }
}

fn refresh(m: &mut Model) -> Result<()> {
    let list = fetch_list()?;
    let snap = super::metrics::fetch(None, false)?;
    m.refresh(list, snap);
    load_logs(m);
    Ok(())
}

fn load_logs(m: &mut Model) {
    m.logs = match m.selected_instance() {
        Some(i) => {
            let mut lines: Vec<(bool, String)> = model::tail(&i.out_log, model::LOG_LINES)
                .into_iter()
                .map(|l| (false, l))
                .collect();
            if i.err_log != i.out_log {
                lines.extend(
                    model::tail(&i.err_log, model::LOG_LINES)
                        .into_iter()
                        .map(|l| (true, l)),
                );
            }
            lines
        }
        None => Vec::new(),
    };
}

/// Restart (`r`) or reload (`l`) in a thread of its own, so the screen
/// stays live; the outcome comes back as the status line.
fn act(m: &Model, reload: bool, done: &mpsc::Sender<String>) -> Option<String> {
    let i = m.selected_instance()?;
    let (req, what) = if reload {
        (
            Request::Reload {
                targets: vec![Target::Name(i.name.clone())],
                env: None,
                parallel: None,
                patch: Default::default(),
            },
            format!("reload of {}", i.name),
        )
    } else {
        (
            Request::Restart {
                targets: vec![Target::Id(i.id)],
                env: None,
                patch: Default::default(),
            },
            format!("restart of {} [{}]", i.name, i.id),
        )
    };
    let done = done.clone();
    let started = what.clone();
    std::thread::spawn(move || {
        let said = match client::call(&req) {
            Ok(Response::Error { message, .. }) => format!("{what} failed: {message}"),
            Ok(_) => format!("{what} done"),
            Err(e) => format!("{what} failed: {e}"),
        };
        let _ = done.send(said);
    });
    Some(format!("{started}…"))
}

/// Runs `herd monit`.
pub fn monit(_: MonitArgs) -> Result<()> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(Error::InvalidArg {
            what: "herd monit".into(),
            value: "(not a terminal)".into(),
            expected: "a terminal; for scripts use `herd metrics` or `herd list --json`".into(),
        });
    }
    let mut m = Model::default();
    // Reach the daemon before taking the terminal over.
    refresh(&mut m)?;
    let mut term = ratatui::try_init().map_err(|e| Error::io("setting up the terminal", e))?;
    let result = run(&mut term, &mut m);
    ratatui::restore();
    result
}

fn run(term: &mut ratatui::DefaultTerminal, m: &mut Model) -> Result<()> {
    let io = |e| Error::io("drawing the terminal", e);
    let (done_tx, done_rx) = mpsc::channel();
    let mut next = Instant::now() + REFRESH;
    let mut dirty = true;
    loop {
        if dirty {
            term.draw(|f| view::draw(f, m)).map_err(io)?;
            dirty = false;
        }
        let wait = next.saturating_duration_since(Instant::now());
        if event::poll(wait).map_err(io)? {
            match event::read().map_err(io)? {
                Event::Key(k) if k.kind == KeyEventKind::Press => {
                    let page = term.size().map_or(10, |s| (s.height / 3).max(1)) as isize;
                    match k.code {
                        KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                        KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                            return Ok(())
                        }
                        KeyCode::Up | KeyCode::Char('k') => {
                            m.select(-1);
                            load_logs(m);
                        }
                        KeyCode::Down | KeyCode::Char('j') => {
                            m.select(1);
                            load_logs(m);
                        }
                        KeyCode::PageUp => m.scroll_logs(page),
                        KeyCode::PageDown => m.scroll_logs(-page),
                        KeyCode::Char('r') => m.message = act(m, false, &done_tx),
                        KeyCode::Char('l') => m.message = act(m, true, &done_tx),
                        _ => {}
                    }
                    dirty = true;
                }
                Event::Resize(..) => dirty = true,
                _ => {}
            }
        }
        while let Ok(said) = done_rx.try_recv() {
            m.message = Some(said);
            dirty = true;
        }
        if Instant::now() >= next {
            if let Err(e) = refresh(m) {
                m.message = Some(format!("cannot reach the daemon: {e}"));
            }
            next = Instant::now() + REFRESH;
            dirty = true;
        }
    }
}
