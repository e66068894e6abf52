//! A Merkle tree over signed statements, so that one signature can vouch for many of them and
//! each statement still travels alone with a short proof.
//!
//! Why: a holder answers a batch of write receipts in one call, and every node verifies every
//! receipt in the log. One Ed25519 signature over the batch's root is verified once per node
//! (then it is a cache hit), where one signature per receipt cost a verification per write on
//! every node. The tree's shape is RFC 9162's (a left subtree of the largest power of two
//! below the size), with its domain separation: leaves hash with a 0x00 prefix and inner nodes
//! with 0x01, so no leaf can pass for an inner node or the other way round. A root does not
//! fix how many statements it covers: whoever signs one signs the count with it.

use sha2::{Digest, Sha256};

/// Most statements one root may cover (far above any batch a node sends; bounds the proof a
/// verifier will walk).
pub const MAX_LEAVES: u32 = 1 << 16;

fn leaf_hash(statement: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(statement);
    h.finalize().into()
}

fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two strictly below `n` (n >= 2): where the tree splits.
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// The root over `leaves`; pushes onto each leaf's proof its siblings, bottom-up.
fn build(leaves: &[[u8; 32]], proofs: &mut [Vec<[u8; 32]>]) -> [u8; 32] {
    if leaves.len() == 1 {
        return leaves[0];
    }
    let k = split(leaves.len());
    let (left_proofs, right_proofs) = proofs.split_at_mut(k);
    let left = build(&leaves[..k], left_proofs);
    let right = build(&leaves[k..], right_proofs);
    left_proofs.iter_mut().for_each(|p| p.push(right));
    right_proofs.iter_mut().for_each(|p| p.push(left));
    node_hash(&left, &right)
}

/// The root over `statements` (at least one), and each statement's proof, in order.
pub fn tree(statements: &[&[u8]]) -> ([u8; 32], Vec<Vec<[u8; 32]>>) {
    assert!(!statements.is_empty(), "a Merkle tree needs a statement");
    let leaves: Vec<[u8; 32]> = statements.iter().map(|s| leaf_hash(s)).collect();
    let mut proofs = vec![Vec::new(); leaves.len()];
    let root = build(&leaves, &mut proofs);
    (root, proofs)
}

/// The root that `statement` at `index` of `count`, with `proof`, leads to; `None` when the
/// proof does not have exactly the length that place in a tree of that size needs.
pub fn root_from_proof(
    statement: &[u8],
    index: u32,
    count: u32,
    proof: &[[u8; 32]],
) -> Option<[u8; 32]> {
    if count == 0 || count > MAX_LEAVES || index >= count {
        return None;
    }
    let root = climb(leaf_hash(statement), index as usize, count as usize, proof)?;
    Some(root)
}

/// Recomputes the root top-down: the last sibling in `proof` is the top one.
fn climb(leaf: [u8; 32], index: usize, n: usize, proof: &[[u8; 32]]) -> Option<[u8; 32]> {
    if n == 1 {
        return proof.is_empty().then_some(leaf);
    }
    let (sibling, below) = proof.split_last()?;
    let k = split(n);
    Some(if index < k {
        node_hash(&climb(leaf, index, k, below)?, sibling)
    } else {
        node_hash(sibling, &climb(leaf, index - k, n - k, below)?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn statements(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("statement {i}").into_bytes())
            .collect()
    }

    proptest! {
        #[test]
        fn every_statement_leads_to_the_root_from_its_own_place_only(n in 1usize..40) {
            let s = statements(n);
            let refs: Vec<&[u8]> = s.iter().map(|v| v.as_slice()).collect();
            let (root, proofs) = tree(&refs);
            for (i, proof) in proofs.iter().enumerate() {
                prop_assert_eq!(root_from_proof(&s[i], i as u32, n as u32, proof), Some(root));
                // Another statement or another place does not reach this root. (The root alone
                // does not fix the size: a signer signs the count with it.)
                prop_assert_ne!(root_from_proof(b"other", i as u32, n as u32, proof), Some(root));
                for j in 0..n {
                    if j != i {
                        prop_assert_ne!(
                            root_from_proof(&s[i], j as u32, n as u32, proof),
                            Some(root)
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_proof_of_the_wrong_length_or_a_place_outside_the_tree_is_refused() {
        let s = statements(5);
        let refs: Vec<&[u8]> = s.iter().map(|v| v.as_slice()).collect();
        let (_, proofs) = tree(&refs);
        let mut long = proofs[2].clone();
        long.push([0; 32]);
        assert_eq!(root_from_proof(&s[2], 2, 5, &long), None);
        assert_eq!(root_from_proof(&s[2], 2, 5, &proofs[2][1..]), None);
        assert_eq!(root_from_proof(&s[2], 5, 5, &proofs[2]), None);
        assert_eq!(root_from_proof(&s[2], 0, 0, &[]), None);
        assert_eq!(root_from_proof(&s[2], 0, MAX_LEAVES + 1, &[]), None);
    }

    #[test]
    fn a_leaf_cannot_pass_for_an_inner_node() {
        // Two leaves' hashes concatenated, offered as one statement at the top of a tree of
        // one: the prefixes keep it from matching the two-leaf root.
        let s = statements(2);
        let refs: Vec<&[u8]> = s.iter().map(|v| v.as_slice()).collect();
        let (root, _) = tree(&refs);
        let forged = [leaf_hash(&s[0]), leaf_hash(&s[1])].concat();
        assert_ne!(root_from_proof(&forged, 0, 1, &[]), Some(root));
        assert_eq!(root, node_hash(&leaf_hash(&s[0]), &leaf_hash(&s[1])));
    }

    #[test]
    fn one_statement_is_its_own_leaf() {
        let (root, proofs) = tree(&[b"only".as_slice()]);
        assert_eq!(root, leaf_hash(b"only"));
        assert_eq!(proofs, vec![Vec::<[u8; 32]>::new()]);
    }
}
