//! PM2's per-process verbs: `sendSignal`, `pid`, `id`, `env`, `prettylist`.

use clap::Args;

use super::{client, list, output};
use crate::error::{Error, Result};
use crate::protocol::{Request, Response, Target};

/// Options of `herd sendSignal`.
#[derive(Debug, Args)]
pub struct SignalArgs {
    /// The signal: `SIGUSR2`, `USR2` or a number.
    pub signal: String,
    /// Id, name or `all` (every instance of a name).
    #[arg(value_name = "ID|NAME|all")]
    pub target: String,
    /// Ignored, as PM2 ignores them.
    #[arg(hide = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

/// Options of `herd pid`.
#[derive(Debug, Args)]
pub struct PidArgs {
    /// App name (none: every instance).
    pub name: Option<String>,
}

/// Options of `herd id`.
#[derive(Debug, Args)]
pub struct IdArgs {
    /// App name.
    pub name: String,
}

/// Options of `herd env`.
#[derive(Debug, Args)]
pub struct EnvArgs {
    /// Instance id.
    pub id: String,
}

/// Runs `herd sendSignal <SIGNAL> <target>`.
pub fn send_signal(a: SignalArgs) -> Result<()> {
    let sig = crate::sys::process::signal_number(&a.signal).ok_or_else(|| Error::InvalidArg {
        what: "signal".into(),
        value: a.signal.clone(),
        expected: "a signal name like SIGUSR2 (or USR2) or a number".into(),
    })?;
    match client::call(&Request::Signal {
        signal: sig,
        targets: vec![Target::parse(&a.target)],
    })? {
        Response::Done { notes, .. } => {
            for n in notes {
                println!("[herd] {n}");
            }
            Ok(())
        }
        other => Err(client::unexpected(&other)),
    }
}

/// Runs `herd pid [name]`: the pid of each running instance, one a line
/// (PM2 prints nothing for an unknown name).
pub fn pid(a: PidArgs) -> Result<()> {
    let all = list::fetch(&Request::List)?;
    let pids: Vec<String> = all
        .iter()
        .filter(|i| a.name.as_deref().is_none_or(|n| i.name == n))
        .filter_map(|i| i.pid)
        .map(|p| p.to_string())
        .collect();
    if pids.is_empty() {
        return Ok(());
    }
    output::write_stdout(&pids.join("\n"))
}

/// Runs `herd id <name>`: the ids of the app's instances, as PM2 prints
/// them (`[ 0, 1 ]`; `[]` for an unknown name).
pub fn id(a: IdArgs) -> Result<()> {
    let all = list::fetch(&Request::List)?;
    let ids: Vec<String> = all
        .iter()
        .filter(|i| i.name == a.name)
        .map(|i| i.id.to_string())
        .collect();
    output::write_stdout(&node_array(&ids))
}

/// Node's `util.inspect` of an array of numbers.
fn node_array(items: &[String]) -> String {
    if items.is_empty() {
        "[]".into()
    } else {
        format!("[ {} ]", items.join(", "))
    }
}

/// Runs `herd env <id>`: the environment herd sets for the instance,
/// `KEY: value` a line (values of secret-looking keys shown, as PM2 does:
/// this is the command for reading them).
pub fn env(a: EnvArgs) -> Result<()> {
    let id: u32 = a.id.trim().parse().map_err(|_| Error::InvalidArg {
        what: "id".into(),
        value: a.id.clone(),
        expected: "an instance id (a number; `herd list` shows them)".into(),
    })?;
    let all = list::fetch(&Request::List)?;
    let Some(inst) = all.iter().find(|i| i.id == id) else {
        return Err(Error::Remote {
            message: format!("no instance with id {id}"),
            hint: Some("`herd list` shows the ids".into()),
        });
    };
    // The app's env, with this instance's own values (instance number,
    // increment_var) over it.
    let mut env = inst.env.clone();
    let own = list::instance_vars(inst);
    for (k, _) in &own {
        env.remove(k);
    }
    let mut lines: Vec<String> = env.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    lines.extend(own.iter().map(|(k, v)| format!("{k}: {v}")));
    lines.push(format!("name: {}", inst.name));
    lines.push(format!("pm_id: {}", inst.id));
    output::write_stdout(&lines.join("\n"))
}

/// Runs `herd prettylist`: `jlist` as PM2 prints it, Node's
/// `util.inspect(list, false, null, false)` (node runs the formatting).
pub fn prettylist() -> Result<()> {
    use std::io::Write;
    let all = list::fetch(&Request::List)?;
    let v: Vec<list::Pm2Process> = all.iter().map(list::pm2_shape).collect();
    let json = serde_json::to_string(&v).map_err(|e| Error::Protocol(e.to_string()))?;
    let script = "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log(require('util').inspect(JSON.parse(s),false,null,false)))";
    let mut child = std::process::Command::new("node")
        .args(["-e", script])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| Error::Remote {
            message: format!("prettylist needs node to format the list as PM2 does: {e}"),
            hint: Some("`herd jlist` prints the same list as JSON".into()),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(json.as_bytes())
            .map_err(|e| Error::io("writing to node", e))?;
    }
    let st = child.wait().map_err(|e| Error::io("waiting for node", e))?;
    if !st.success() {
        return Err(Error::Remote {
            message: format!("node could not format the list ({st})"),
            hint: Some("`herd jlist` prints the same list as JSON".into()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn arrays_print_as_node_prints_them() {
        assert_eq!(super::node_array(&[]), "[]");
        assert_eq!(super::node_array(&["0".into(), "3".into()]), "[ 0, 3 ]");
    }
}
