//! Evaluating a JavaScript ecosystem file with `node`, as PM2 does: the
//! file is `require`d (or `import()`ed when it is an ES module) with its own
//! directory as the working directory, and what it exports comes back as
//! JSON. PM2's `.json` files are JavaScript object literals (comments,
//! unquoted keys, single quotes); a `.json` file that is not strict JSON is
//! evaluated the same way PM2 does it, `vm.runInThisContext("(" + text + ")")`.
//!
//! node runs in its own process group, at most [`TIMEOUT`], and the whole
//! group is killed when it is done, so nothing a config file starts outlives
//! the load.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

/// How long a config file may take to evaluate.
pub(super) const TIMEOUT: Duration = Duration::from_secs(10);
/// The most output read back from node.
const MAX_OUTPUT: u64 = 16 << 20;
/// Precedes the loader's answer on stdout, so what the config file itself
/// prints (`console.log`) is not mistaken for it.
const MARK: &str = "\u{0}herd-config\u{0}";

/// The loader, run as `node -e LOADER <file> <how>`.
const LOADER: &str = r#"
const MARK = '\u0000herd-config\u0000';
const [file, how] = process.argv.slice(1);
const answer = (o) => { process.stdout.write(MARK + JSON.stringify(o) + '\n'); process.exit(0); };
const esm = () => import(require('url').pathToFileURL(file).href);
(async () => {
  let mod;
  if (how === 'literal') {
    const text = require('fs').readFileSync(file, 'utf8');
    mod = require('vm').runInThisContext('(' + text + ')', { filename: file, timeout: 5000 });
  } else if (how === 'esm') {
    mod = await esm();
  } else {
    try { mod = require(file); }
    catch (e) { if (e && e.code === 'ERR_REQUIRE_ESM') mod = await esm(); else throw e; }
  }
  if (mod && (mod[Symbol.toStringTag] === 'Module' || mod.__esModule)) {
    mod = mod.default !== undefined ? mod.default : Object.assign({}, mod);
  }
  answer({ ok: true, config: mod === undefined ? null : mod });
})().catch((e) => {
  const err = e instanceof Error;
  answer({ ok: false, name: err ? e.name : typeof e, message: err ? String(e.message) : String(e),
           stack: err ? String(e.stack || '') : '' });
});
"#;

/// How the loader reads the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum How {
    /// `require`, falling back to `import()` for ES modules.
    Require,
    /// `import()` (`.mjs`).
    Import,
    /// A JavaScript object literal (PM2's reading of `.json`).
    Literal,
}

/// Why a file could not be evaluated.
#[derive(Debug)]
pub(super) enum Failure {
    /// No `node` to run.
    NoNode,
    /// The file threw (or did not parse): node's error name and message,
    /// and the line in the config file where it happened, if known.
    Threw { what: String, line: Option<u32> },
    /// node did not answer: timed out, exited early, or printed garbage.
    Broken(String),
}

#[derive(Deserialize)]
struct Answer {
    ok: bool,
    #[serde(default)]
    config: Value,
    #[serde(default)]
    name: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    stack: String,
}

/// Evaluates `file` (absolute) and returns what it exports.
pub(super) fn evaluate(file: &Path, how: How) -> Result<Value, Failure> {
    let dir = file.parent().unwrap_or(Path::new("/"));
    let how_arg = match how {
        How::Require => "require",
        How::Import => "esm",
        How::Literal => "literal",
    };
    let mut child = {
        use std::os::unix::process::CommandExt;
        Command::new("node")
            .arg("-e")
            .arg(LOADER)
            .arg(file)
            .arg(how_arg)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
    }
    .map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Failure::NoNode,
        _ => Failure::Broken(format!("cannot run node: {e}")),
    })?;
    let pid = child.id() as i32;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.by_ref().take(MAX_OUTPUT).read_to_end(&mut buf);
                let _ = std::io::copy(&mut p, &mut std::io::sink());
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as _));

    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = crate::sys::process::kill_group(pid, libc::SIGKILL);
                let _ = child.wait();
                break None;
            }
        }
    };
    // Whatever the file started in node's group goes too (and with it the
    // last holders of the pipes the drain threads read).
    let _ = crate::sys::process::kill_group(pid, libc::SIGKILL);
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();

    let Some(status) = status else {
        return Err(Failure::Broken(format!(
            "node did not finish evaluating it within {} s",
            TIMEOUT.as_secs()
        )));
    };
    let out = String::from_utf8_lossy(&out);
    let Some(at) = out.rfind(MARK) else {
        let stderr = String::from_utf8_lossy(&err);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
        return Err(Failure::Broken(match last {
            Some(l) => format!("node exited ({status}) without an answer: {}", l.trim()),
            None => format!(
                "node exited ({status}) without an answer (did the file call process.exit?)"
            ),
        }));
    };
    let answer: Answer = serde_json::from_str(out[at + MARK.len()..].trim())
        .map_err(|e| Failure::Broken(format!("unreadable answer from node: {e}")))?;
    if answer.ok {
        return Ok(answer.config);
    }
    Err(Failure::Threw {
        what: if answer.name.is_empty() {
            answer.message
        } else {
            format!("{}: {}", answer.name, answer.message)
        },
        line: line_in(&answer.stack, file),
    })
}

/// The line of `file` that a stack trace (or a SyntaxError's header,
/// `/path/file.js:3`) points at first.
fn line_in(stack: &str, file: &Path) -> Option<u32> {
    let path = file.to_string_lossy();
    let url = format!("file://{path}");
    [url.as_str(), path.as_ref()].iter().find_map(|needle| {
        stack.match_indices(needle).find_map(|(i, _)| {
            let rest = stack[i + needle.len()..].strip_prefix(':')?;
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_lines() {
        let f = Path::new("/x/eco.config.js");
        let thrown = "Error: boom\n    at Object.<anonymous> (/x/eco.config.js:4:9)\n    at Module._compile (node:internal)";
        assert_eq!(line_in(thrown, f), Some(4));
        let syntax = "/x/eco.config.js:7\n  apps: [\n  ^^^^\n\nSyntaxError: Unexpected identifier";
        assert_eq!(line_in(syntax, f), Some(7));
        let esm = "file:///x/eco.config.js:2\nexport default {\n^^^^^^";
        assert_eq!(line_in(esm, f), Some(2));
        assert_eq!(line_in("Error: x\n    at /y/other.js:3:1", f), None);
    }
}
