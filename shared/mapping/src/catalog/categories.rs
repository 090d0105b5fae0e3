//! KeyCRM categories: writing order, the category filter's scope, and category writes.

use super::hashes::category_hash;
use super::links::CategoryLink;
use crate::shop::CategoryUpsert;
use keycrm_model::models::Category;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Categories in writing order: each level's parents are all in earlier levels. Categories on a
/// parent cycle are returned apart (they cannot be ordered and are reported).
pub fn category_levels(cats: &[Category]) -> (Vec<Vec<Category>>, Vec<i64>) {
    let by_id: HashMap<i64, &Category> = cats.iter().map(|c| (c.id, c)).collect();
    let mut depth: HashMap<i64, Option<usize>> = HashMap::new();
    for c in cats {
        let mut path: Vec<i64> = Vec::new();
        let mut cur = c.id;
        let base = loop {
            if let Some(d) = depth.get(&cur) {
                break *d;
            }
            if path.contains(&cur) {
                // A cycle: every category on the path is unorderable.
                break None;
            }
            path.push(cur);
            match by_id.get(&cur).and_then(|x| x.parent_id) {
                Some(parent) if by_id.contains_key(&parent) && parent != cur => cur = parent,
                Some(parent) if parent == cur => break None,
                // A root, or a parent KeyCRM did not list: written as a root.
                _ => {
                    let last = path.pop().unwrap_or(cur);
                    depth.insert(last, Some(0));
                    break Some(0);
                }
            }
        };
        let mut d = base;
        while let Some(id) = path.pop() {
            d = d.map(|x| x + 1);
            depth.insert(id, d);
        }
    }
    let mut levels: Vec<Vec<Category>> = Vec::new();
    let mut broken = Vec::new();
    for c in cats {
        match depth.get(&c.id).copied().flatten() {
            Some(d) => {
                if levels.len() <= d {
                    levels.resize(d + 1, Vec::new());
                }
                levels[d].push(c.clone());
            }
            None => broken.push(c.id),
        }
    }
    broken.sort_unstable();
    broken.dedup();
    (levels, broken)
}

/// The categories `roots` and all their descendants.
pub fn descendants(cats: &[Category], roots: &[i64]) -> BTreeSet<i64> {
    let mut children: HashMap<i64, Vec<i64>> = HashMap::new();
    for c in cats {
        if let Some(p) = c.parent_id {
            children.entry(p).or_default().push(c.id);
        }
    }
    let mut out = BTreeSet::new();
    let mut stack: Vec<i64> = roots.to_vec();
    while let Some(id) = stack.pop() {
        if out.insert(id) {
            stack.extend(children.get(&id).into_iter().flatten().copied());
        }
    }
    out
}

/// `set` plus every ancestor of its members (so a filtered tree keeps its path to the root).
pub fn with_ancestors(cats: &[Category], set: &BTreeSet<i64>) -> BTreeSet<i64> {
    let parent: HashMap<i64, Option<i64>> = cats.iter().map(|c| (c.id, c.parent_id)).collect();
    let mut out = set.clone();
    for id in set {
        let mut cur = parent.get(id).copied().flatten();
        while let Some(p) = cur {
            if !out.insert(p) {
                break;
            }
            cur = parent.get(&p).copied().flatten();
        }
    }
    out
}

/// The write for one category, or `None` when the shop already has it as it is.
pub fn category_upsert(
    c: &Category,
    parent_shop_id: Option<&str>,
    link: Option<&CategoryLink>,
) -> Option<CategoryUpsert> {
    let name = c.name.trim();
    let hash = category_hash(name, parent_shop_id);
    if link.is_some_and(|l| l.hash == hash) {
        return None;
    }
    Some(CategoryUpsert {
        id: link.map(|l| l.shop_id.clone()),
        external_ref: c.id.to_string(),
        name: if name.is_empty() {
            format!("KeyCRM category {}", c.id)
        } else {
            name.to_string()
        },
        parent_id: parent_shop_id.map(str::to_string),
    })
}

/// Which KeyCRM category ids a product filter lets through (`None`: no filter).
pub fn category_scope(cats: &[Category], filter: &[i64]) -> Option<BTreeSet<i64>> {
    (!filter.is_empty()).then(|| descendants(cats, filter))
}

/// The shop category for a KeyCRM category, from the category links.
pub fn shop_category(
    links: &BTreeMap<i64, CategoryLink>,
    keycrm_category: Option<i64>,
) -> Option<&str> {
    keycrm_category
        .and_then(|c| links.get(&c))
        .map(|l| l.shop_id.as_str())
}
