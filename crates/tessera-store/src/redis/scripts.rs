//! The Lua scripts that make each multi-key step atomic on its slot (the `.lua` files beside this one), and how
//! one is run: by hash (`EVALSHA`), and sent whole (`EVAL`) when the node does not know it yet.

use ::redis::Cmd;

/// A Lua script, run by hash (`EVALSHA`) and sent whole (`EVAL`) when the node does not know it yet (a fresh node,
/// a promoted replica).
pub(super) struct Lua {
    code: &'static str,
    hash: String,
}

impl Lua {
    fn new(code: &'static str) -> Self {
        Self { code, hash: ::redis::Script::new(code).get_hash().to_owned() }
    }

    pub(super) fn command(&self, whole: bool, keys: &[String], args: &[String]) -> Cmd {
        let mut cmd = if whole { ::redis::cmd("EVAL") } else { ::redis::cmd("EVALSHA") };
        cmd.arg(if whole { self.code } else { self.hash.as_str() }).arg(keys.len()).arg(keys).arg(args);
        cmd
    }
}

/// The scripts, loaded once per store.
pub(super) struct Scripts {
    pub(super) create: Lua,
    pub(super) add_session: Lua,
    pub(super) update: Lua,
    pub(super) refresh: Lua,
    pub(super) revoke_family: Lua,
    pub(super) not_before: Lua,
    pub(super) append: Lua,
    pub(super) commit: Lua,
    pub(super) prune_log: Lua,
    pub(super) assertion: Lua,
    pub(super) document: Lua,
    pub(super) event: Lua,
    pub(super) events_upgrade: Lua,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            create: Lua::new(include_str!("create.lua")),
            add_session: Lua::new(include_str!("add_session.lua")),
            update: Lua::new(include_str!("update.lua")),
            refresh: Lua::new(include_str!("refresh.lua")),
            revoke_family: Lua::new(include_str!("revoke_family.lua")),
            not_before: Lua::new(include_str!("not_before.lua")),
            append: Lua::new(include_str!("append.lua")),
            commit: Lua::new(include_str!("commit.lua")),
            prune_log: Lua::new(include_str!("prune_log.lua")),
            assertion: Lua::new(include_str!("assertion.lua")),
            document: Lua::new(include_str!("document.lua")),
            event: Lua::new(include_str!("event.lua")),
            events_upgrade: Lua::new(include_str!("events_upgrade.lua")),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use crate::model::Refusal;

    /// The names `refresh.lua` refuses with (`{'refused', 'name'}`), which the store reads back with
    /// [`Refusal::from_name`].
    fn refusals_answered(script: &str) -> BTreeSet<&str> {
        script.split("{'refused', '").skip(1).filter_map(|rest| rest.split('\'').next()).collect()
    }

    /// The script keeps its names as literals, in step with `decide` line for line (the differential test compares
    /// the two), rather than taking them as arguments: this pins the literals to the model's names instead.
    #[test]
    fn the_refresh_script_refuses_with_exactly_the_models_refusal_names() {
        let named: BTreeSet<&str> = Refusal::ALL.into_iter().map(Refusal::as_str).collect();
        assert_eq!(refusals_answered(include_str!("refresh.lua")), named);
    }
}
