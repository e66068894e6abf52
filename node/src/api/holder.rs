//! The `Holders` service: calls between holders about shares. Only member nodes get in.

use tessera_crypto::seal::ShareEnvelope;
use tessera_crypto::vss::Commitments;
use tessera_proto::holders_server::Holders;
use tessera_proto::{ReceiptReply, ReceiptRequest, ReceiptsReply, ReceiptsRequest};
use tonic::{Request, Response, Status};

use super::peers::member_node;
use super::Api;
use crate::error::{wire, Refusal};

/// Most receipts one call may carry.
const MAX_RECEIPT_ITEMS: usize = 256;

impl Api {
    /// Checks one receipt item: this node opens the envelope sealed to it and checks the share
    /// against the commitments (law 3). Returns the statement its receipt will sign.
    fn check_receipt_item(&self, r: ReceiptRequest) -> Result<Vec<u8>, Refusal> {
        let bad = |m: String| Refusal::invalid(m);
        let mut points = Vec::with_capacity(r.commitments.len());
        for (i, c) in r.commitments.iter().enumerate() {
            points.push(
                <[u8; 32]>::try_from(c.as_slice()).map_err(|_| {
                    bad(format!("commitment {i} is {} bytes, expected 32", c.len()))
                })?,
            );
        }
        let env = r.envelope.ok_or_else(|| bad("no envelope".into()))?;
        let env = ShareEnvelope {
            enc: env
                .enc
                .as_slice()
                .try_into()
                .map_err(|_| bad("the encapsulated key is not 32 bytes".into()))?,
            ciphertext: env.ciphertext,
        };
        env.check(64).map_err(|e| bad(e.to_string()))?;
        self.node
            .vault
            .check_for_receipt(&r.path, r.version, &Commitments(points), &r.holders, &env)
            .map_err(|e| bad(e.to_string()))
    }
}

#[tonic::async_trait]
impl Holders for Api {
    /// Checks this node's share of each write another node is about to submit. Nothing is
    /// stored and nothing secret leaves: each answer is a signature over public facts, or why
    /// that share was refused.
    async fn receipts(
        &self,
        req: Request<ReceiptsRequest>,
    ) -> Result<Response<ReceiptsReply>, Status> {
        member_node(&self.node, &req)?;
        if self.node.vault.false_complaints {
            return Err(Refusal::unavailable("TEST BUILD: this node gives no receipts").into());
        }
        let r = req.into_inner();
        if r.items.is_empty() || r.items.len() > MAX_RECEIPT_ITEMS {
            return Err(Refusal::invalid(format!(
                "items: {} given; a receipt call takes 1 to {MAX_RECEIPT_ITEMS}",
                r.items.len()
            ))
            .into());
        }
        let checked: Vec<Result<Vec<u8>, Refusal>> = r
            .items
            .into_iter()
            .map(|item| self.check_receipt_item(item))
            .collect();
        // The items whose shares verified are signed together: one signature for the call.
        let statements: Vec<&[u8]> = checked
            .iter()
            .filter_map(|c| c.as_ref().ok().map(|s| s.as_slice()))
            .collect();
        let mut receipts = self.node.vault.sign_receipts(&statements).into_iter();
        let items = checked
            .iter()
            .map(|c| match c {
                Ok(_) => ReceiptReply {
                    receipt: self
                        .node
                        .vault
                        .for_peer(receipts.next().expect("one receipt per statement")),
                    ..Default::default()
                },
                Err(refusal) => ReceiptReply {
                    receipt: Vec::new(),
                    refusal: Some(wire::to_proto(refusal)),
                },
            })
            .collect();
        Ok(Response::new(ReceiptsReply { items }))
    }
}
