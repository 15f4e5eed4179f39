//! Label sets derived during one query, made once and shared: a series' labels without
//! `__name__`, and the group an aggregation puts them in.
//!
//! Promise: the same input `Arc` always yields the same derived `Arc` (keyed by address,
//! the input held so its address is not reused), so later steps hash pointers instead of
//! label sets.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use super::value::Labels;

/// The hasher of the engine's label-keyed maps (they are rebuilt at every step).
pub type Hash = foldhash::fast::RandomState;

/// Label sets derived from another: (the original, held so its address stays its own;
/// the derived one).
type Derived = (Arc<Labels>, Arc<Labels>);

/// One query's derived label sets.
#[derive(Default)]
pub struct Interner {
    /// Labels without `__name__`, by the address of the labels they came from.
    unnamed: RefCell<HashMap<usize, Derived, Hash>>,
    /// Each aggregation's group of an input label set: (aggregation, labels address) ->
    /// (the labels, held; the group's labels, one `Arc` per group).
    groups: RefCell<HashMap<(usize, usize), Derived, Hash>>,
    interned: RefCell<HashMap<(usize, Labels), Arc<Labels>, Hash>>,
}

impl Interner {
    /// `labels` without `__name__`; the same `Arc` each time for the same input.
    pub fn unnamed(&self, labels: &Arc<Labels>) -> Arc<Labels> {
        if !labels.has_name() {
            return labels.clone();
        }
        let key = Arc::as_ptr(labels) as usize;
        self.unnamed
            .borrow_mut()
            .entry(key)
            .or_insert_with(|| (labels.clone(), Arc::new(labels.without_name())))
            .1
            .clone()
    }

    /// The one `Arc` of label set `g` among aggregation `node`'s groups.
    pub fn intern(&self, node: usize, g: Labels) -> Arc<Labels> {
        self.interned
            .borrow_mut()
            .entry((node, g))
            .or_insert_with_key(|(_, g)| Arc::new(g.clone()))
            .clone()
    }

    /// The labels of the group `labels` falls in for aggregation `node`; one `Arc` per
    /// group.
    pub fn group(
        &self,
        node: usize,
        labels: &Arc<Labels>,
        of: impl Fn(&Labels) -> Labels,
    ) -> Arc<Labels> {
        let key = (node, Arc::as_ptr(labels) as usize);
        if let Some((_, g)) = self.groups.borrow().get(&key) {
            return g.clone();
        }
        let g = self.intern(node, of(labels));
        self.groups
            .borrow_mut()
            .insert(key, (labels.clone(), g.clone()));
        g
    }
}
