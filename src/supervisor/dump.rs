//! The saved process list, `$HERD_HOME/dump.json` (`herd save`, `herd
//! resurrect`, `herd cleardump`, autosave): its format and version, and
//! reading and writing it safely. What goes in it and how it is restored
//! is the registry's (`registry/dump.rs`).
//!
//! JSON, not TOML: an app is stored as its [`AppSpec`], whose serde form is
//! the one the `start` request already carries, so it round-trips exactly
//! (TOML has no null, which `Option` fields need, and no non-string keys).
//!
//! Rules: a write is atomic and durable ([`crate::home::write_durable`]);
//! the dump it replaces is kept as `dump.json.bak` (only a readable one, so
//! a corrupt file never pushes out a good backup); a dump with no apps never
//! replaces one with apps unless forced; a file from a newer herd is not
//! overwritten unless forced; an unreadable, corrupt or newer `dump.json`
//! on reading falls back to `dump.json.bak`, and says so.

use std::path::Path;
use std::rc::Rc;

use serde::{Deserialize, Serialize};

use crate::config::AppSpec;
use crate::error::Error;
use crate::home::Home;
use crate::supervisor::registry::{Resurrected, Supervisor};

/// The format this herd writes and the newest it reads (`herd_dump`).
pub const DUMP_VERSION: u64 = 1;

/// The whole file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Dump {
    /// The format version ([`DUMP_VERSION`]).
    pub herd_dump: u64,
    /// When it was written (UTC, ISO 8601).
    #[serde(default)]
    pub saved_at: String,
    /// The herd that wrote it.
    #[serde(default)]
    pub herd_version: String,
    /// Autosave was on: resurrect turns it on again.
    #[serde(default)]
    pub autosave: bool,
    /// The apps, in the order they were started (lowest id first).
    pub apps: Vec<SavedApp>,
}

/// One app: its spec as started, how many instances it had, and which of
/// them were stopped.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SavedApp {
    /// Everything it was started with: script, args, cwd, interpreter, env
    /// (`--env` and the inherited one), every option.
    pub spec: AppSpec,
    /// Instances at save time (after any `herd scale`).
    pub instances: u32,
    /// The instances that were stopped, by position (0-based, in instance
    /// order): resurrect creates them stopped.
    #[serde(default)]
    pub stopped: Vec<u32>,
}

impl Dump {
    /// A dump of `apps` written now by this herd.
    pub fn new(apps: Vec<SavedApp>, autosave: bool) -> Dump {
        Dump {
            herd_dump: DUMP_VERSION,
            saved_at: crate::logs::date::iso_utc(std::time::SystemTime::now()),
            herd_version: crate::protocol::HERD_VERSION.into(),
            autosave,
            apps,
        }
    }

    /// Same apps and settings (the time and writer aside).
    pub fn same_content(&self, other: &Dump) -> bool {
        self.apps == other.apps && self.autosave == other.autosave
    }

    /// Instances in all apps.
    pub fn instance_count(&self) -> u64 {
        self.apps.iter().map(|a| u64::from(a.instances)).sum()
    }
}

/// Why a dump file cannot be used.
#[derive(Debug, Clone, PartialEq)]
pub enum Unusable {
    /// It could not be read.
    Unreadable(String),
    /// Not JSON, or not a herd dump.
    Corrupt(String),
    /// Written by a newer herd, in this format version.
    Newer(u64),
}

impl Unusable {
    /// One line naming `file`.
    pub fn describe(&self, file: &str) -> String {
        match self {
            Unusable::Unreadable(e) => format!("cannot read {file}: {e}"),
            Unusable::Corrupt(e) => format!("{file} is corrupt: {e}"),
            Unusable::Newer(v) => format!(
                "{file} is version {v}; this herd reads up to {DUMP_VERSION} — upgrade herd or `herd cleardump`"
            ),
        }
    }
}

/// Parses a dump file's bytes, checking the version before the content.
pub fn parse(bytes: &[u8]) -> Result<Dump, Unusable> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| Unusable::Corrupt(format!("not JSON ({e})")))?;
    let Some(version) = v.get("herd_dump") else {
        return Err(Unusable::Corrupt("no `herd_dump` version field".into()));
    };
    let Some(version) = version.as_u64() else {
        return Err(Unusable::Corrupt(format!(
            "`herd_dump` is {version}, expected a version number"
        )));
    };
    if version > DUMP_VERSION {
        return Err(Unusable::Newer(version));
    }
    if version == 0 {
        return Err(Unusable::Corrupt("`herd_dump` is 0".into()));
    }
    serde_json::from_value(v).map_err(|e| Unusable::Corrupt(e.to_string()))
}

/// Reads one file: `None` if it does not exist.
fn read(path: &Path) -> Option<Result<Dump, Unusable>> {
    match std::fs::read(path) {
        Ok(b) => Some(parse(&b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => Some(Err(Unusable::Unreadable(e.to_string()))),
    }
}

fn name(p: &Path) -> String {
    p.display().to_string()
}

/// What [`load`] found.
#[derive(Debug)]
pub struct Loaded {
    /// The dump to restore.
    pub dump: Dump,
    /// Lines for the user (a fallback to the backup).
    pub notes: Vec<String>,
}

/// Reads the dump to resurrect: `dump.json`, or `dump.json.bak` when
/// `dump.json` is unusable (with a note saying why). `Ok(None)`: nothing
/// was ever saved (or it was cleared); the backup is not used then.
pub fn load(home: &Home) -> Result<Option<Loaded>, Error> {
    let (file, bak) = (home.dump_file(), home.dump_bak());
    let why = match read(&file) {
        None => return Ok(None),
        Some(Ok(dump)) => {
            return Ok(Some(Loaded {
                dump,
                notes: Vec::new(),
            }))
        }
        Some(Err(why)) => why.describe(&name(&file)),
    };
    match read(&bak) {
        Some(Ok(dump)) => {
            let note = format!(
                "{why}; restoring the previous save, {} (saved {})",
                name(&bak),
                dump.saved_at
            );
            log::info!("{note}");
            Ok(Some(Loaded {
                dump,
                notes: vec![note],
            }))
        }
        found => {
            let bak_why = match found {
                None => format!("no {} to fall back to", name(&bak)),
                Some(Err(e)) => e.describe(&name(&bak)),
                Some(Ok(_)) => unreachable!("handled above"),
            };
            Err(Error::Remote {
                message: format!("{why}; {bak_why}"),
                hint: Some(
                    "fix or remove the file (`herd cleardump`), then start the apps and `herd save`"
                        .into(),
                ),
            })
        }
    }
}

/// Whether the dump may hold apps: it does, or it cannot be read (what it
/// holds is unknown, so it is not to be replaced unasked).
pub fn holds_apps(home: &Home) -> bool {
    match read(&home.dump_file()) {
        None => false,
        Some(Ok(d)) => !d.apps.is_empty(),
        Some(Err(_)) => true,
    }
}

/// `herd resurrect` in-process (for a foreground daemon that resurrects
/// at start): [`Supervisor::resurrect`].
pub async fn resurrect(sup: &Rc<Supervisor>) -> Result<Resurrected, Error> {
    sup.resurrect().await
}

/// What [`store`] did.
#[derive(Debug, PartialEq)]
pub enum Stored {
    /// Written; the previous dump (if any) is the backup.
    Written,
    /// The file already held exactly this.
    Unchanged,
}

/// Writes `dump` as `dump.json`, keeping the one it replaces as the backup.
/// Unless `force`: refuses to replace a dump with apps by one without, or a
/// newer herd's dump. Lines worth telling go to `notes`.
pub fn store(
    home: &Home,
    dump: &Dump,
    force: bool,
    notes: &mut Vec<String>,
) -> Result<Stored, Error> {
    let (file, bak) = (home.dump_file(), home.dump_bak());
    let current = read(&file);
    if let Some(Err(Unusable::Newer(v))) = &current {
        if !force {
            return Err(Error::Remote {
                message: format!(
                    "{} was written by a newer herd (format {v}; this herd writes {DUMP_VERSION}): not replaced",
                    name(&file)
                ),
                hint: Some("`herd save --force` replaces it".into()),
            });
        }
    }
    let held = match &current {
        Some(Ok(d)) => d.apps.len(),
        // An unreadable current file: judge by the backup, which is then
        // what resurrect would use.
        Some(Err(_)) => match read(&bak) {
            Some(Ok(d)) => d.apps.len(),
            _ => 0,
        },
        None => 0,
    };
    if dump.apps.is_empty() && held > 0 && !force {
        return Err(Error::Remote {
            message: format!(
                "not saving an empty process list over {}, which holds {held} app(s)",
                name(&file)
            ),
            hint: Some(
                "`herd save --force` saves it anyway; `herd cleardump` removes the dump".into(),
            ),
        });
    }
    let backup = match &current {
        Some(Ok(d)) if d.same_content(dump) => return Ok(Stored::Unchanged),
        Some(Ok(_)) => Some(bak.as_path()),
        Some(Err(e)) => {
            notes.push(format!(
                "{}; replaced, {} left as it was",
                e.describe(&name(&file)),
                name(&bak)
            ));
            None
        }
        None => None,
    };
    let mut text = serde_json::to_vec_pretty(dump)
        .map_err(|e| Error::Protocol(format!("cannot encode the dump: {e}")))?;
    text.push(b'\n');
    crate::home::write_durable(&file, &text, backup)
        .map_err(|e| Error::io(format!("cannot write {}", name(&file)), e))?;
    Ok(Stored::Written)
}

/// `herd cleardump`: moves `dump.json` to `dump.json.bak` (so a mistaken
/// clear can be undone by renaming it back); resurrect then finds nothing.
/// Returns whether there was a dump.
pub fn clear(home: &Home) -> Result<bool, Error> {
    let (file, bak) = (home.dump_file(), home.dump_bak());
    if !file.exists() {
        return Ok(false);
    }
    std::fs::rename(&file, &bak)
        .map_err(|e| Error::io(format!("cannot move {} aside", name(&file)), e))?;
    if let Some(dir) = file.parent() {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    struct TempHome(Home);
    impl TempHome {
        fn new(tag: &str) -> TempHome {
            let root =
                std::env::temp_dir().join(format!("herd-dump-unit-{}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(&root).unwrap();
            TempHome(Home::at(root))
        }
    }
    impl Drop for TempHome {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.0.root());
        }
    }

    fn app(name: &str) -> SavedApp {
        let mut spec = AppSpec::new(name.into(), PathBuf::from("/bin/true"), PathBuf::from("/"));
        spec.env.insert("GREETING".into(), "hi".into());
        SavedApp {
            spec,
            instances: 2,
            stopped: vec![1],
        }
    }

    fn save(h: &Home, apps: Vec<SavedApp>, force: bool) -> Result<Stored, Error> {
        store(h, &Dump::new(apps, false), force, &mut Vec::new())
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let t = TempHome::new("round");
        assert!(load(&t.0).unwrap().is_none(), "nothing saved yet");
        assert_eq!(
            save(&t.0, vec![app("a"), app("b")], false).unwrap(),
            Stored::Written
        );
        let back = load(&t.0).unwrap().unwrap();
        assert!(back.notes.is_empty());
        assert_eq!(back.dump.apps, vec![app("a"), app("b")]);
        assert_eq!(back.dump.herd_dump, DUMP_VERSION);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(t.0.dump_file())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the dump holds environments");
        // The same content again: no write, so the backup stays the older one.
        assert_eq!(
            save(&t.0, vec![app("a"), app("b")], false).unwrap(),
            Stored::Unchanged
        );
        assert!(!t.0.dump_bak().exists());
        save(&t.0, vec![app("c")], false).unwrap();
        let bak = parse(&std::fs::read(t.0.dump_bak()).unwrap()).unwrap();
        assert_eq!(bak.apps.len(), 2, "the previous dump is the backup");
    }

    #[test]
    fn empty_never_replaces_full_unless_forced() {
        let t = TempHome::new("empty");
        save(&t.0, vec![app("a")], false).unwrap();
        let before = std::fs::read(t.0.dump_file()).unwrap();
        let e = save(&t.0, vec![], false).unwrap_err();
        assert!(e.to_string().contains("holds 1 app(s)"), "{e}");
        assert!(e.hint().unwrap().contains("--force"));
        assert_eq!(std::fs::read(t.0.dump_file()).unwrap(), before, "unchanged");
        save(&t.0, vec![], true).unwrap();
        assert!(load(&t.0).unwrap().unwrap().dump.apps.is_empty());
        // Empty over empty (or over nothing) needs no force.
        save(&t.0, vec![], false).unwrap();
    }

    #[test]
    fn corrupt_dump_falls_back_to_backup() {
        let t = TempHome::new("corrupt");
        save(&t.0, vec![app("a")], false).unwrap();
        save(&t.0, vec![app("a"), app("b")], false).unwrap();
        std::fs::write(t.0.dump_file(), b"{\"herd_dump\": 1, \"apps\": [tru").unwrap();
        let l = load(&t.0).unwrap().unwrap();
        assert_eq!(l.dump.apps, vec![app("a")], "the backup's apps");
        assert!(
            l.notes[0].contains("is corrupt") && l.notes[0].contains(".bak"),
            "{:?}",
            l.notes
        );
        // Saving over the corrupt file keeps the good backup.
        let mut notes = Vec::new();
        store(&t.0, &Dump::new(vec![app("c")], false), false, &mut notes).unwrap();
        assert!(notes[0].contains("corrupt"), "{notes:?}");
        let bak = parse(&std::fs::read(t.0.dump_bak()).unwrap()).unwrap();
        assert_eq!(bak.apps, vec![app("a")]);
        // Corrupt with no usable backup: one clear error naming both.
        std::fs::write(t.0.dump_file(), b"not json").unwrap();
        std::fs::write(t.0.dump_bak(), b"").unwrap();
        let e = load(&t.0).unwrap_err().to_string();
        assert!(
            e.contains("dump.json is corrupt") && e.contains("dump.json.bak is corrupt"),
            "{e}"
        );
        // An empty save does not replace a corrupt file whose backup has apps.
        save(&t.0, vec![app("a")], true).unwrap();
        save(&t.0, vec![app("b")], true).unwrap();
        std::fs::write(t.0.dump_file(), b"garbage").unwrap();
        assert!(save(&t.0, vec![], false).is_err());
        assert!(holds_apps(&t.0), "an unreadable dump may hold apps");
    }

    #[test]
    fn newer_versions_are_refused_clearly() {
        let t = TempHome::new("future");
        let future = br#"{"herd_dump": 7, "apps": [{"whatever": true}]}"#;
        assert_eq!(parse(future), Err(Unusable::Newer(7)));
        std::fs::write(t.0.dump_file(), future).unwrap();
        let e = load(&t.0).unwrap_err().to_string();
        assert!(
            e.contains("dump.json is version 7; this herd reads up to 1 — upgrade herd or `herd cleardump`"),
            "{e}"
        );
        let e = save(&t.0, vec![app("a")], false).unwrap_err().to_string();
        assert!(e.contains("newer herd"), "{e}");
        assert_eq!(std::fs::read(t.0.dump_file()).unwrap(), future);
        save(&t.0, vec![app("a")], true).unwrap();
        assert!(
            !t.0.dump_bak().exists(),
            "a dump we cannot read is not the backup"
        );
        for bad in [
            &br#"{"apps": []}"#[..],
            br#"{"herd_dump": "1", "apps": []}"#,
            b"[]",
        ] {
            assert!(matches!(parse(bad), Err(Unusable::Corrupt(_))), "{bad:?}");
        }
    }

    #[test]
    fn cleardump_moves_the_dump_aside() {
        let t = TempHome::new("clear");
        assert!(!clear(&t.0).unwrap());
        save(&t.0, vec![app("a")], false).unwrap();
        assert!(clear(&t.0).unwrap());
        assert!(!t.0.dump_file().exists());
        assert!(
            load(&t.0).unwrap().is_none(),
            "the backup is not resurrected"
        );
        assert!(t.0.dump_bak().exists());
    }
}
