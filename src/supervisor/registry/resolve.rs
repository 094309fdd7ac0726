//! Naming what a command acts on: `all`, ids and app names to ids.

use super::{refuse, Supervisor};
use crate::error::Error;
use crate::protocol::Target;

impl Supervisor {
    /// Resolves `all`, ids and names to ids (deduplicated, in order).
    pub fn resolve(&self, targets: &[Target]) -> Result<Vec<u32>, Error> {
        self.resolve_lenient(targets, false).map(|(ids, _)| ids)
    }

    /// Like [`Self::resolve`]; with `missing_ok`, names not in the list are
    /// returned apart instead of failing (ids must still exist).
    pub fn resolve_lenient(
        &self,
        targets: &[Target],
        missing_ok: bool,
    ) -> Result<(Vec<u32>, Vec<String>), Error> {
        let mut missing = Vec::new();
        if targets.is_empty() {
            return Err(refuse("no target given", "name an app, an id, or `all`"));
        }
        let table = self.table.borrow();
        let mut ids = Vec::new();
        for t in targets {
            let found: Vec<u32> = match t {
                Target::All if table.instances.is_empty() => {
                    return Err(refuse(
                        "no process to act on (Process or Namespace all not found)",
                        "`herd list` is empty: start one with `herd start app.js`",
                    ));
                }
                Target::All => table.instances.keys().copied().collect(),
                Target::Id(id) => {
                    if !table.instances.contains_key(id) {
                        return Err(refuse(
                            format!("no instance with id {id}"),
                            "see `herd list` for ids",
                        ));
                    }
                    vec![*id]
                }
                Target::Name(name) => {
                    let v: Vec<u32> = table
                        .instances
                        .values()
                        .filter(|i| i.app.name == *name)
                        .map(|i| i.id)
                        .collect();
                    if v.is_empty() && missing_ok {
                        missing.push(name.clone());
                    } else if v.is_empty() {
                        return Err(refuse(
                            format!(
                                "no app named `{name}` (Process or Namespace {name} not found)"
                            ),
                            "see `herd list` for names",
                        ));
                    }
                    v
                }
            };
            for id in found {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        Ok((ids, missing))
    }
}
