//! The command line: clap definitions here, one file per verb family, and
//! [`output`] for tables. The CLI is thin: build a request, send it, print.

pub mod alias;
pub mod bench;
pub use crate::client;
pub mod config;
pub mod daemon;
pub mod dump;
pub mod import;
pub mod lifecycle;
pub mod list;
pub mod logs;
pub mod metrics;
pub mod monit;
pub mod output;
pub mod process;
pub mod run;
pub mod start;
pub mod startup;

use clap::{Parser, Subcommand};

use crate::error::Result;

/// herd: PM2-style process manager and cluster launcher for many-core Linux.
#[derive(Debug, Parser)]
#[command(name = "herd", version, about, propagate_version = true)]
pub struct Cli {
    /// The verb.
    #[command(subcommand)]
    pub command: Command,
}

/// Every verb. Aliases follow PM2 (`ls`, `status`, `describe`, `del`).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start an app: `herd start app.js -i max --name api`.
    Start(Box<start::StartArgs>),
    /// List every instance.
    #[command(visible_aliases = ["ls", "l", "status", "ps"])]
    List(list::ListArgs),
    /// Print the process list in PM2's `pm2 jlist` JSON shape.
    Jlist,
    /// Every detail of an app or instance.
    #[command(visible_aliases = ["describe", "desc", "info"])]
    Show(list::ShowArgs),
    /// Stop instances (SIGINT, then SIGKILL after the kill timeout).
    Stop(lifecycle::TargetArgs),
    /// Stop and start instances again.
    Restart(lifecycle::RestartArgs),
    /// Rolling zero-downtime reload (fdpass apps: the replacement serves
    /// before the old process leaves; other modes are restarted).
    #[command(visible_alias = "gracefulReload")]
    Reload(lifecycle::ReloadArgs),
    /// Stop instances and remove them from the list.
    #[command(visible_alias = "del")]
    Delete(lifecycle::TargetArgs),
    /// Live figures as Prometheus text (`--json`: as JSON): connections,
    /// fairness, hand-off and request latency, CPU, memory, restarts.
    Metrics(metrics::MetricsArgs),
    /// Live dashboard: processes, CPU, memory, restarts, each worker's
    /// share of the load, Jain's index, latency percentiles, the selected
    /// instance's log (`q` quits).
    #[command(visible_alias = "dash")]
    Monit(monit::MonitArgs),
    /// Is the daemon alive? Starts it if not, like `pm2 ping`.
    Ping(daemon::PingArgs),
    /// Zero the restart counters of instances.
    Reset(lifecycle::TargetArgs),
    /// Change the number of instances: `herd scale api 4`, `+2`, `-1`.
    Scale(lifecycle::ScaleArgs),
    /// Print the last lines of app logs, then follow them:
    /// `herd logs api --lines 100`.
    Logs(logs::LogsArgs),
    /// Empty log files while apps keep writing (no target: all of them).
    Flush(logs::FlushArgs),
    /// Reopen every log file (after an external logrotate moved them).
    #[command(name = "reloadLogs", visible_alias = "reload-logs")]
    ReloadLogs,
    /// Save the process list to $HERD_HOME/dump.json, for `herd resurrect`
    /// (`--autosave`: keep it current after every change).
    #[command(visible_alias = "dump")]
    Save(dump::SaveArgs),
    /// Start the saved apps as they were (stopped ones stay stopped; apps
    /// already running are left alone).
    Resurrect(dump::ResurrectArgs),
    /// Remove the saved process list (kept as dump.json.bak).
    Cleardump,
    /// Stop every app, then the daemon.
    Kill,
    /// Send a signal to every running instance of a target:
    /// `herd sendSignal SIGUSR2 api`.
    #[command(name = "sendSignal", visible_alias = "send-signal")]
    SendSignal(process::SignalArgs),
    /// Print the pid of each running instance (of an app).
    Pid(process::PidArgs),
    /// Print the ids of an app's instances (`[ 0, 1 ]`).
    Id(process::IdArgs),
    /// Print the environment herd sets for an instance.
    Env(process::EnvArgs),
    /// Print the process list as PM2's `prettylist` does (needs node).
    Prettylist,
    /// Start the apps of a file (or a script); restart the ones that run,
    /// with the file's settings.
    #[command(name = "startOrRestart")]
    StartOrRestart(Box<start::StartArgs>),
    /// Start the apps of a file; reload (zero-downtime) the ones that run,
    /// with the file's settings.
    #[command(name = "startOrReload", visible_alias = "startOrGracefulReload")]
    StartOrReload(Box<start::StartArgs>),
    /// Check an ecosystem file: `herd config check ecosystem.config.js --env production`.
    Config(config::ConfigArgs),
    /// Run the daemon in the foreground.
    Daemon(daemon::DaemonArgs),
    /// Print (or with `--install` write and enable) a systemd unit that
    /// runs `herd run --resurrect` at boot: `herd startup systemd --install`.
    Startup(startup::StartupArgs),
    /// Disable and remove the unit `herd startup --install` wrote.
    Unstartup(startup::StartupArgs),
    /// Link `pm2` to herd, so scripts that call `pm2 …` run herd
    /// (`--dir`, `--force`, `--remove`).
    #[command(name = "install-alias")]
    InstallAlias(alias::AliasArgs),
    /// Start every app of a PM2 dump (`pm2 save`'s ~/.pm2/dump.pm2) under
    /// herd, and say what could not be mapped.
    #[command(name = "import-pm2")]
    ImportPm2(import::ImportArgs),
    /// Run apps in the foreground, for containers and systemd (pm2-runtime):
    /// `herd run ecosystem.config.js --env production`. Output goes to
    /// stdout/stderr; SIGTERM stops every app gracefully; exits 0 after a
    /// clean stop, 1 when an app cannot start or keeps crashing.
    #[command(
        mut_arg("script", |a| a.required(false).required_unless_present("resurrect")),
        mut_arg("json", |a| a.help("App output as JSON lines (one record per line) instead of `id|name | ` prefixes"))
    )]
    Run(Box<run::RunArgs>),
    /// Benchmark: start the built-in hello worker on every core, load it,
    /// print throughput, latency and fairness.
    Bench(Box<bench::BenchArgs>),
    /// The built-in Rust hello worker (used by `herd bench`).
    #[command(hide = true)]
    Hello,
}

/// The caller's current directory, as every verb that resolves paths
/// needs it.
pub(crate) fn current_dir() -> Result<std::path::PathBuf> {
    std::env::current_dir().map_err(|e| crate::error::Error::io("reading the current directory", e))
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Start(a) => start::run(*a),
        Command::List(a) => list::list(a),
        Command::Jlist => list::jlist(),
        Command::Show(a) => list::show(a),
        Command::Stop(a) => lifecycle::run(lifecycle::Verb::Stop, a),
        Command::Restart(a) => lifecycle::restart(a),
        Command::Reload(a) => lifecycle::reload(a),
        Command::Delete(a) => lifecycle::run(lifecycle::Verb::Delete, a),
        Command::Ping(a) => daemon::ping(a),
        Command::Metrics(a) => metrics::metrics(a),
        Command::Monit(a) => monit::monit(a),
        Command::Scale(a) => lifecycle::scale(a),
        Command::Reset(a) => lifecycle::run(lifecycle::Verb::Reset, a),
        Command::Logs(a) => logs::logs(a),
        Command::Flush(a) => logs::flush(a),
        Command::ReloadLogs => logs::reload_logs(),
        Command::Save(a) => dump::save(a),
        Command::Resurrect(a) => dump::resurrect(a),
        Command::Cleardump => dump::cleardump(),
        Command::Kill => daemon::kill(),
        Command::SendSignal(a) => process::send_signal(a),
        Command::Pid(a) => process::pid(a),
        Command::Id(a) => process::id(a),
        Command::Env(a) => process::env(a),
        Command::Prettylist => process::prettylist(),
        Command::StartOrRestart(a) => lifecycle::start_or(*a, crate::protocol::OnExisting::Update),
        Command::StartOrReload(a) => lifecycle::start_or(*a, crate::protocol::OnExisting::Reload),
        Command::Config(a) => config::run(a),
        Command::Daemon(a) => daemon::run(a),
        Command::Run(a) => run::run(*a),
        Command::Startup(a) => startup::startup(a),
        Command::Unstartup(a) => startup::unstartup(a),
        Command::InstallAlias(a) => alias::install(a),
        Command::ImportPm2(a) => import::run(a),
        Command::Bench(a) => bench::run(*a),
        Command::Hello => crate::bench::hello_main(),
    }
}
