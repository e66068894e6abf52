//! How the Raft log, the messages between nodes, the snapshots and the replicated state are
//! encoded: MessagePack with named fields, behind a one-byte format marker.
//!
//! A write is mostly public bytes (ciphertext, envelopes, commitments, receipts) and every node
//! encodes and decodes it several times (log append, replication, apply, state). JSON spelled
//! those bytes as base64 text and parsed every record character by character; MessagePack
//! carries them as they are, so a record is smaller and cheaper both ways. Fields stay named
//! (a map, not a tuple) because several records leave out empty optional fields.
//!
//! Records written before this encoding (JSON, from a data directory of an earlier version,
//! or sent by a peer still running one) still load: the marker `0xc1` is the one byte that is
//! never valid in MessagePack and never starts UTF-8 text, so a record starting with it is
//! MessagePack and any other is JSON. Nothing is guessed from the content.
//!
//! The other way does not hold: a node of an earlier version cannot read this format, so a
//! running cluster is not upgraded one node at a time across this change (stop, upgrade, start).

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The first byte of every MessagePack record (reserved, "never used", in the MessagePack
/// format; not a valid first byte of UTF-8 and so of JSON).
const MSGPACK: u8 = 0xc1;

/// Why a record could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot encode record: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("bad record: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    #[error("bad record (JSON): {0}")]
    Json(#[from] serde_json::Error),
}

/// Encodes one record in the current format.
pub fn encode<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(256);
    out.push(MSGPACK);
    v.serialize(&mut rmp_serde::Serializer::new(&mut out).with_struct_map())?;
    Ok(out)
}

/// Decodes one record written by [`encode`] or, before it, as JSON.
pub fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, CodecError> {
    match b.split_first() {
        Some((&MSGPACK, rest)) => Ok(rmp_serde::from_slice(rest)?),
        _ => Ok(serde_json::from_slice(b)?),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Kind {
        Put { path: String },
        Blank,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Record {
        kind: Kind,
        #[serde(with = "tessera_crypto::b64::bytes")]
        data: Vec<u8>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        #[serde(with = "tessera_crypto::b64::by_node")]
        sigs: BTreeMap<u64, Vec<u8>>,
        #[serde(with = "tessera_crypto::b64::array")]
        key: [u8; 32],
        #[serde(with = "tessera_crypto::b64::arrays")]
        points: Vec<[u8; 2]>,
        #[serde(with = "tessera_crypto::b64::pairs")]
        receipts: Vec<(u64, Vec<u8>)>,
        count: u64,
    }

    fn record(note: Option<&str>) -> Record {
        Record {
            kind: Kind::Put {
                path: "prod/app".into(),
            },
            data: vec![0, 1, 0xff, 0x7b],
            note: note.map(str::to_owned),
            sigs: BTreeMap::from([(3, vec![9; 64]), (1, Vec::new())]),
            key: [7; 32],
            points: vec![[0, 255], [7, 8]],
            receipts: vec![(2, vec![0xff; 3])],
            count: u64::MAX,
        }
    }

    #[test]
    fn records_round_trip_with_and_without_optional_fields() {
        for r in [record(None), record(Some("n"))] {
            let b = encode(&r).unwrap();
            assert_eq!(b[0], MSGPACK);
            assert_eq!(decode::<Record>(&b).unwrap(), r);
        }
        let unit = encode(&Kind::Blank).unwrap();
        assert_eq!(decode::<Kind>(&unit).unwrap(), Kind::Blank);
    }

    #[test]
    fn bytes_travel_raw_not_as_base64() {
        let mut r = record(None);
        r.data = vec![0xab; 3000];
        let b = encode(&r).unwrap();
        let json = serde_json::to_vec(&r).unwrap();
        // 3000 bytes as base64 would be 4000 characters.
        assert!(b.len() < 3300, "{} bytes", b.len());
        assert!(json.len() > 4000);
        assert!(b.windows(3000).any(|w| w == r.data.as_slice()));
    }

    #[test]
    fn records_written_as_json_by_earlier_versions_still_load() {
        let r = record(Some("old"));
        let json = serde_json::to_vec(&r).unwrap();
        assert_eq!(decode::<Record>(&json).unwrap(), r);
    }

    #[test]
    fn damaged_records_are_refused_not_misread() {
        let b = encode(&record(None)).unwrap();
        let e = decode::<Record>(&b[..b.len() - 5]).unwrap_err();
        assert!(e.to_string().starts_with("bad record:"), "{e}");
        assert!(decode::<Record>(&[MSGPACK]).is_err());
        assert!(decode::<Record>(b"").is_err());
        assert!(decode::<Record>(b"{\"kind\":").is_err());
    }
}
