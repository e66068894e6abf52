//! Receipts this node signs for its own shares of the writes it gathers, signed together.
//!
//! A write's gatherer checks its own share at once, then waits a round trip for the other
//! holders' receipts. Writes under way together each leave their statement here, and the first
//! of them to need its receipt signs every statement waiting, under one signature over their
//! Merkle root: the other nodes then verify that signature once, not once per write. No write
//! waits for another: whoever asks first signs what is there, its own statement included.

use std::collections::HashMap;
use std::sync::Mutex;

use super::ShareVault;

/// Statements waiting for a signature and receipts signed but not yet taken, by ticket.
#[derive(Default)]
pub(super) struct OwnReceipts {
    inner: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    next: u64,
    waiting: Vec<(u64, Vec<u8>)>,
    signed: HashMap<u64, Vec<u8>>,
}

/// One write's place in line for its receipt. Dropped untaken (the write gave up), it takes
/// its statement or receipt out with it.
pub struct OwnTicket<'a> {
    vault: &'a ShareVault,
    id: u64,
}

impl ShareVault {
    /// Files the statement of a share this node checked (`check_for_receipt`) to be signed
    /// with those of other writes under way.
    pub fn file_own_receipt(&self, statement: Vec<u8>) -> OwnTicket<'_> {
        let mut p = self.own_receipts.inner.lock().expect("own receipts lock");
        let id = p.next;
        p.next += 1;
        p.waiting.push((id, statement));
        OwnTicket { vault: self, id }
    }
}

impl OwnTicket<'_> {
    /// The receipt: signed already with an earlier ticket's batch, or now, with every statement
    /// waiting.
    pub fn receipt(self) -> Vec<u8> {
        let own = &self.vault.own_receipts;
        let mut p = own.inner.lock().expect("own receipts lock");
        if let Some(r) = p.signed.remove(&self.id) {
            return r;
        }
        let batch = std::mem::take(&mut p.waiting);
        let statements: Vec<&[u8]> = batch.iter().map(|(_, s)| s.as_slice()).collect();
        let receipts = self.vault.sign_receipts(&statements);
        let mut mine = None;
        for ((id, _), r) in batch.iter().zip(receipts) {
            if *id == self.id {
                mine = Some(r);
            } else {
                p.signed.insert(*id, r);
            }
        }
        mine.expect("a ticket not yet taken has its statement waiting")
    }
}

impl Drop for OwnTicket<'_> {
    fn drop(&mut self) {
        let mut p = self
            .vault
            .own_receipts
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        p.waiting.retain(|(id, _)| *id != self.id);
        p.signed.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use tessera_crypto::ack::verify_receipt;

    fn statement(i: u8) -> Vec<u8> {
        vec![i; 32]
    }

    #[test]
    fn writes_under_way_together_share_one_signature_and_each_gets_its_own_receipt() {
        let dir = tempfile::tempdir().unwrap();
        let vault = super::super::tests::vault(dir.path());
        let key = vault.keys.ack.public();
        let a = vault.file_own_receipt(statement(1));
        let b = vault.file_own_receipt(statement(2));
        let gone = vault.file_own_receipt(statement(3));
        drop(gone);
        let c = vault.file_own_receipt(statement(4));
        // `b` asks first: it signs for everything waiting, `a` and `c` included.
        let rb = b.receipt();
        let ra = a.receipt();
        let rc = c.receipt();
        for (r, s) in [(&ra, 1), (&rb, 2), (&rc, 4)] {
            verify_receipt(&key, "c1", 2, &statement(s), r).unwrap();
            assert!(verify_receipt(&key, "c1", 2, &statement(3), r).is_err());
        }
        assert_eq!(ra[..64], rb[..64], "one signature for the batch");
        assert_eq!(rb[..64], rc[..64]);
        // Three statements were signed together (the abandoned one was not among them).
        assert_eq!(u32::from_be_bytes(rb[68..72].try_into().unwrap()), 3);
        // Nothing is left behind, and a write alone gets a plain signature.
        let p = vault.own_receipts.inner.lock().unwrap();
        assert!(p.waiting.is_empty() && p.signed.is_empty());
        drop(p);
        let alone = vault.file_own_receipt(statement(5)).receipt();
        assert_eq!(alone.len(), 64);
        verify_receipt(&key, "c1", 2, &statement(5), &alone).unwrap();
    }
}
