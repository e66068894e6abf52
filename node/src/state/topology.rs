//! The topology guarantee (law 5): with the voters as share holders and threshold `t`,
//! - no single region holds `t` or more holders (no region can reconstruct alone), and
//! - losing the largest region leaves at least `t` holders and a Raft majority.
//!
//! Checked at init, on member changes and on config changes; only an explicit
//! `--allow-unsafe-topology` lets a cluster run without it (single-region dev setups).

use crate::error::Refusal;
use std::collections::BTreeMap;

/// Holders per region.
pub type RegionCounts = BTreeMap<String, usize>;

pub fn region_counts<'a>(regions: impl IntoIterator<Item = &'a str>) -> RegionCounts {
    let mut m = RegionCounts::new();
    for r in regions {
        *m.entry(r.to_string()).or_default() += 1;
    }
    m
}

/// What `tessera operator topology` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub holders: usize,
    pub threshold: usize,
    pub survives_region_loss: bool,
    pub no_region_alone: bool,
    pub raft_majority_survives: bool,
}

pub fn assess(counts: &RegionCounts, threshold: usize) -> Assessment {
    let n: usize = counts.values().sum();
    let largest = counts.values().copied().max().unwrap_or(0);
    Assessment {
        holders: n,
        threshold,
        survives_region_loss: n - largest >= threshold,
        no_region_alone: largest < threshold,
        raft_majority_survives: (n - largest) * 2 > n,
    }
}

/// Checks `t` against the rule; the error names the region and the rule it breaks.
pub fn check(counts: &RegionCounts, threshold: usize) -> Result<(), Refusal> {
    let n: usize = counts.values().sum();
    if threshold < 2 || threshold > n {
        return Err(Refusal::invalid(format!(
            "threshold {threshold} is impossible with {n} share holders (need 2 <= t <= {n})"
        )));
    }
    let (big_region, largest) = counts
        .iter()
        .max_by_key(|(_, c)| **c)
        .map(|(r, c)| (r.clone(), *c))
        .unwrap_or_default();
    if largest >= threshold {
        return Err(Refusal::rejected(format!(
            "region {big_region:?} holds {largest} of {n} shares, which reaches the threshold {threshold}: one region could reconstruct every secret alone (rule: every region must hold fewer than t shares)"
        )));
    }
    if n - largest < threshold {
        return Err(Refusal::rejected(format!(
            "losing region {big_region:?} ({largest} of {n} holders) would leave {} holders, fewer than the threshold {threshold} (rule: losing any one region must leave at least t holders)",
            n - largest
        )));
    }
    if (n - largest) * 2 <= n {
        return Err(Refusal::rejected(format!(
            "losing region {big_region:?} ({largest} of {n} voters) would leave no Raft majority (rule: losing any one region must leave a majority)"
        )));
    }
    Ok(())
}

/// The smallest threshold that satisfies the rule, if any does.
pub fn smallest_safe_threshold(counts: &RegionCounts) -> Option<usize> {
    let n: usize = counts.values().sum();
    (2..=n).find(|t| check(counts, *t).is_ok())
}

/// The threshold for an unsafe (explicitly allowed) topology: a majority of holders, at least 2.
pub fn fallback_threshold(n: usize) -> usize {
    (n / 2 + 1).max(2).min(n.max(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(r: &[&str]) -> RegionCounts {
        region_counts(r.iter().copied())
    }

    #[test]
    fn three_regions_of_one_take_t_2() {
        let c = counts(&["a", "b", "c"]);
        assert_eq!(smallest_safe_threshold(&c), Some(2));
        assert!(check(&c, 3)
            .unwrap_err()
            .to_string()
            .contains("losing region"));
    }

    #[test]
    fn five_nodes_over_three_regions_take_t_3() {
        let c = counts(&["a", "a", "b", "b", "c"]);
        assert_eq!(smallest_safe_threshold(&c), Some(3));
        let e = check(&c, 2).unwrap_err().to_string();
        assert!(
            e.contains("reaches the threshold") && e.contains("holds 2 of 5"),
            "{e}"
        );
        let a = assess(&c, 3);
        assert!(a.survives_region_loss && a.no_region_alone && a.raft_majority_survives);
    }

    #[test]
    fn one_region_has_no_safe_threshold() {
        let c = counts(&["a", "a", "a"]);
        assert_eq!(smallest_safe_threshold(&c), None);
        let a = assess(&c, 2);
        assert!(!a.survives_region_loss && !a.no_region_alone);
    }

    #[test]
    fn two_regions_cannot_survive_losing_the_larger() {
        assert_eq!(
            smallest_safe_threshold(&counts(&["a", "a", "b", "b"])),
            None
        );
        assert_eq!(smallest_safe_threshold(&counts(&["a", "b"])), None);
    }
}
