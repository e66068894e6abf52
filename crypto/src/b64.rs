//! Public byte strings (ciphertexts, envelopes, commitments, signatures) in the records nodes
//! store and replicate: base64 text in JSON, raw bytes in a binary format.
//!
//! serde spells a plain byte array in JSON as an array of numbers: about four characters and one
//! parser step per byte. A write is mostly such bytes, and every node encodes and decodes it
//! several times (log append, replication, apply, state), so that spelling once cost a tenth of
//! the cluster's CPU under write load. Base64 is a third of that size and is decoded in one
//! pass; a binary format (not human-readable in serde's terms, such as the MessagePack the Raft
//! log now uses) takes the bytes as they are.
//!
//! Reading takes every spelling, so records written before base64 (arrays of numbers) and JSON
//! records from before the binary format still load. Use with
//! `#[serde(with = "tessera_crypto::b64::bytes")]` and its siblings; only public bytes belong
//! here (secret material never enters a serialized record).

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

/// Reads bytes spelled either way.
struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("base64 text or an array of bytes")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
        STANDARD
            .decode(v)
            .map_err(|e| E::custom(format!("bad base64: {e}")))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(out)
    }
}

/// One byte string, for use inside containers.
struct Text<'a>(&'a [u8]);

impl Serialize for Text<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // A binary format (the Raft log's MessagePack) carries the bytes as they are.
        if s.is_human_readable() {
            s.serialize_str(&STANDARD.encode(self.0))
        } else {
            s.serialize_bytes(self.0)
        }
    }
}

/// One byte string read back, for use inside containers.
struct Owned(Vec<u8>);

impl<'de> Deserialize<'de> for Owned {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(BytesVisitor).map(Owned)
    }
}

/// A fixed-size byte string read back: any other length is refused.
struct Fixed<const N: usize>([u8; N]);

impl<'de, const N: usize> Deserialize<'de> for Fixed<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = d.deserialize_any(BytesVisitor)?;
        let len = v.len();
        v.try_into()
            .map(Fixed)
            .map_err(|_| de::Error::custom(format!("{len} bytes where {N} are expected")))
    }
}

/// `Vec<u8>` (or anything that is bytes when written).
pub mod bytes {
    use super::*;

    pub fn serialize<S: Serializer>(v: &impl AsRef<[u8]>, s: S) -> Result<S::Ok, S::Error> {
        Text(v.as_ref()).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        Owned::deserialize(d).map(|o| o.0)
    }
}

/// `[u8; N]`.
pub mod array {
    use super::*;

    pub fn serialize<S: Serializer, const N: usize>(v: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        Text(v).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        Fixed::<N>::deserialize(d).map(|f| f.0)
    }
}

/// `Vec<[u8; N]>`: a list of base64 strings.
pub mod arrays {
    use super::*;

    pub fn serialize<S: Serializer, const N: usize>(
        v: &[[u8; N]],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for a in v {
            seq.serialize_element(&Text(a))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<Vec<[u8; N]>, D::Error> {
        struct List<const N: usize>(PhantomData<[u8; N]>);
        impl<'de, const N: usize> Visitor<'de> for List<N> {
            type Value = Vec<[u8; N]>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a list of {N}-byte strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
                while let Some(Fixed(a)) = seq.next_element::<Fixed<N>>()? {
                    out.push(a);
                }
                Ok(out)
            }
        }
        d.deserialize_seq(List::<N>(PhantomData))
    }
}

/// `BTreeMap<u64, Vec<u8>>` (node id to a signature, say).
pub mod by_node {
    use super::*;

    pub fn serialize<S: Serializer>(v: &BTreeMap<u64, Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(v.len()))?;
        for (k, b) in v {
            map.serialize_entry(k, &Text(b))?;
        }
        map.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<u64, Vec<u8>>, D::Error> {
        let m = BTreeMap::<u64, Owned>::deserialize(d)?;
        Ok(m.into_iter().map(|(k, o)| (k, o.0)).collect())
    }
}

/// `Vec<(u64, Vec<u8>)>`: a list of `[node, "base64"]` pairs.
pub mod pairs {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[(u64, Vec<u8>)], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for (k, b) in v {
            seq.serialize_element(&(k, Text(b)))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(u64, Vec<u8>)>, D::Error> {
        let v = Vec::<(u64, Owned)>::deserialize(d)?;
        Ok(v.into_iter().map(|(k, o)| (k, o.0)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Record {
        #[serde(with = "bytes")]
        data: Vec<u8>,
        #[serde(with = "array")]
        key: [u8; 4],
        #[serde(with = "arrays")]
        points: Vec<[u8; 2]>,
        #[serde(with = "by_node")]
        sigs: BTreeMap<u64, Vec<u8>>,
        #[serde(with = "pairs")]
        receipts: Vec<(u64, Vec<u8>)>,
    }

    fn record() -> Record {
        Record {
            data: b"hello".to_vec(),
            key: [1, 2, 3, 4],
            points: vec![[0, 255], [7, 8]],
            sigs: BTreeMap::from([(3, vec![9, 9]), (1, Vec::new())]),
            receipts: vec![(2, vec![0xff; 3])],
        }
    }

    #[test]
    fn records_are_written_as_base64_and_read_back() {
        let json = serde_json::to_string(&record()).unwrap();
        assert_eq!(
            json,
            r#"{"data":"aGVsbG8=","key":"AQIDBA==","points":["AP8=","Bwg="],"sigs":{"1":"","3":"CQk="},"receipts":[[2,"////"]]}"#
        );
        assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), record());
    }

    #[test]
    fn records_written_as_arrays_of_numbers_still_load() {
        let old = r#"{"data":[104,101,108,108,111],"key":[1,2,3,4],"points":[[0,255],[7,8]],"sigs":{"1":[],"3":[9,9]},"receipts":[[2,[255,255,255]]]}"#;
        assert_eq!(serde_json::from_str::<Record>(old).unwrap(), record());
    }

    #[test]
    fn wrong_lengths_and_bad_text_are_refused_with_the_reason() {
        let short = r#"{"data":"","key":"AQID","points":[],"sigs":{},"receipts":[]}"#;
        let e = serde_json::from_str::<Record>(short)
            .unwrap_err()
            .to_string();
        assert!(e.contains("3 bytes where 4 are expected"), "{e}");
        let bad = r#"{"data":"*","key":"AQIDBA==","points":[],"sigs":{},"receipts":[]}"#;
        let e = serde_json::from_str::<Record>(bad).unwrap_err().to_string();
        assert!(e.contains("bad base64"), "{e}");
        let big = r#"{"data":[256],"key":"AQIDBA==","points":[],"sigs":{},"receipts":[]}"#;
        assert!(serde_json::from_str::<Record>(big).is_err());
    }
}
