//! Agreement between results: equal job hash, exit code and set of (path, sha256).
//! CPU and memory differ between honest workers and are not compared.

pub use crate::proof::signed::{parse_signed, signature_ok, SignedParts};
pub use crate::types::Agreement;

/// Group agreements; returns the largest group's key and members (ties: first seen).
pub fn largest_group<T: Clone>(items: &[(Agreement, T)]) -> Option<(Agreement, Vec<T>)> {
    let mut groups: Vec<(Agreement, Vec<T>)> = Vec::new();
    for (a, t) in items {
        match groups.iter_mut().find(|(g, _)| g == a) {
            Some((_, v)) => v.push(t.clone()),
            None => groups.push((a.clone(), vec![t.clone()])),
        }
    }
    groups.into_iter().fold(None, |best: Option<(Agreement, Vec<T>)>, g| match best {
        Some(b) if b.1.len() >= g.1.len() => Some(b),
        _ => Some(g),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn groups_by_agreement() {
        let a = Agreement { job_hash: "a".into(), exit_code: 0, outputs: BTreeMap::new() };
        let b = Agreement { exit_code: 1, ..a.clone() };
        let (g, m) = largest_group(&[(b.clone(), 1), (a.clone(), 2), (a.clone(), 3)]).unwrap();
        assert_eq!((g, m), (a, vec![2, 3]));
    }
}
