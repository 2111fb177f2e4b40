//! Metric handles of the series written on every request, resolved once and kept.
//!
//! `metrics::counter!("name", "label" => value)` builds a key of owned labels, hashes it and looks it up in the
//! recorder's registry on every call: for the series every request writes (by route and status, by client) that
//! costs more than the increment itself, and together a few percent of a refresh. A [`Resolved`] keeps each
//! series' handle under its labels: a read lock and a short search, no allocation.
//!
//! The label values must come from bounded sets the server names (matched routes, registered clients, outcome
//! names): every combination seen is kept for the life of the process, as the registry itself would keep it. For
//! the same reason the map hashes with foldhash rather than SipHash: no key is chosen by a client.

use std::collections::HashMap;
use std::sync::RwLock;

/// The handles of one name, by its further labels.
type ByLabels<L, H> = Vec<(L, H)>;

/// Handles of type `H` by a name (a route, a client id) and further labels `L` from a small fixed set.
pub(crate) struct Resolved<L, H> {
    by_name: RwLock<HashMap<Box<str>, ByLabels<L, H>, foldhash::fast::FixedState>>,
}

impl<L: Copy + PartialEq, H: Clone> Resolved<L, H> {
    pub(crate) fn new() -> Self {
        Self { by_name: RwLock::new(HashMap::with_hasher(foldhash::fast::FixedState::default())) }
    }

    /// The handle of (`name`, `labels`), made by `resolve` the first time.
    pub(crate) fn get(&self, name: &str, labels: L, resolve: impl FnOnce() -> H) -> H {
        let known = self.by_name.read().ok().and_then(|by_name| {
            by_name.get(name)?.iter().find(|(seen, _)| *seen == labels).map(|(_, handle)| handle.clone())
        });
        if let Some(handle) = known {
            return handle;
        }
        let handle = resolve();
        if let Ok(mut by_name) = self.by_name.write() {
            let entries = by_name.entry(name.into()).or_default();
            // Another request may have resolved it meanwhile: both handles name the same series.
            if !entries.iter().any(|(seen, _)| *seen == labels) {
                entries.push((labels, handle.clone()));
            }
        }
        handle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_combination_is_resolved_once() {
        let resolved = Resolved::<(u8, bool), u32>::new();
        let mut calls = 0;
        let mut get = |name: &str, labels| {
            resolved.get(name, labels, || {
                calls += 1;
                calls
            })
        };
        assert_eq!(get("a", (1, true)), 1);
        assert_eq!(get("a", (1, true)), 1, "kept");
        assert_eq!(get("a", (2, true)), 2, "other labels");
        assert_eq!(get("b", (1, true)), 3, "other name");
        assert_eq!(get("a", (2, true)), 2);
    }
}
