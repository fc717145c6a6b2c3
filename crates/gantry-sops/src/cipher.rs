//! The value cipher: `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]`, AES-256-GCM with a 32-byte IV, as sops writes it.

use aes_gcm::aead::array::Array;
use aes_gcm::aead::consts::U32;
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, Tag};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

/// AES-256-GCM with sops' 32-byte nonce.
type Cipher = AesGcm<Aes256, U32>;

/// What an encrypted value claims to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Str,
    Int,
    Float,
    Bool,
    Bytes,
    Comment,
}

impl Kind {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "str" => Self::Str,
            "int" => Self::Int,
            "float" => Self::Float,
            "bool" => Self::Bool,
            "bytes" => Self::Bytes,
            "comment" => Self::Comment,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Str => "str",
            Self::Int => "int",
            Self::Float => "float",
            Self::Bool => "bool",
            Self::Bytes => "bytes",
            Self::Comment => "comment",
        }
    }
}

/// The parts of an `ENC[...]` string.
#[derive(Debug)]
pub(crate) struct Sealed {
    data: Vec<u8>,
    iv: [u8; 32],
    tag: [u8; 16],
    pub(crate) kind: Kind,
}

/// Whether a string is an encrypted value (sops' own test: the `ENC[AES256_GCM,` prefix).
pub(crate) fn is_sealed(text: &str) -> bool {
    text.starts_with("ENC[AES256_GCM,") && text.ends_with(']')
}

/// Parses `ENC[AES256_GCM,data:<b64>,iv:<b64>,tag:<b64>,type:<t>]`; the error says which part is wrong.
pub(crate) fn parse(text: &str) -> Result<Sealed, String> {
    parse_canonical(text).map_or_else(|| parse_any_order(text), Ok)
}

/// The order sops writes, `data`, `iv`, `tag`, `type`, read without allocating more than the data; `None` for
/// anything else (which [`parse_any_order`] reads, or explains).
fn parse_canonical(text: &str) -> Option<Sealed> {
    let inner = text.strip_prefix("ENC[AES256_GCM,data:")?.strip_suffix(']')?;
    // Base64 has no commas: each part ends at the next one (a `char` search is a memchr; a `&str` one is not).
    let next = |rest: &'_ str, name: &str| -> Option<(usize, usize)> {
        let comma = rest.find(',')?;
        rest[comma + 1..].starts_with(name).then_some((comma, comma + 1 + name.len()))
    };
    let (end, from) = next(inner, "iv:")?;
    let (data, rest) = (&inner[..end], &inner[from..]);
    let (end, from) = next(rest, "tag:")?;
    let (iv_b64, rest) = (&rest[..end], &rest[from..]);
    let (end, from) = next(rest, "type:")?;
    let (tag_b64, kind) = (&rest[..end], &rest[from..]);
    let mut iv = [0u8; 32];
    let mut tag = [0u8; 16];
    // 32 and 16 bytes are 44 and 24 characters of padded base64; anything else is for the careful path to explain.
    if iv_b64.len() != 44 || tag_b64.len() != 24 {
        return None;
    }
    if STANDARD.decode_slice(iv_b64, &mut iv).ok()? != 32 || STANDARD.decode_slice(tag_b64, &mut tag).ok()? != 16 {
        return None;
    }
    Some(Sealed { data: STANDARD.decode(data).ok()?, iv, tag, kind: Kind::parse(kind)? })
}

fn parse_any_order(text: &str) -> Result<Sealed, String> {
    let inner = text
        .strip_prefix("ENC[AES256_GCM,")
        .and_then(|t| t.strip_suffix(']'))
        .ok_or_else(|| "not of the form ENC[AES256_GCM,...]".to_owned())?;
    let (mut data, mut iv, mut tag, mut kind) = (None, None, None, None);
    for part in inner.split(',') {
        let (name, value) = part.split_once(':').ok_or_else(|| format!("a part without a name: `{part}`"))?;
        let decode = |what: &str| STANDARD.decode(value).map_err(|_| format!("{what} is not base64"));
        match name {
            "data" => data = Some(decode("data")?),
            "iv" => iv = Some(decode("iv")?),
            "tag" => tag = Some(decode("tag")?),
            "type" => kind = Some(Kind::parse(value).ok_or_else(|| format!("unknown type `{value}`"))?),
            other => return Err(format!("unknown part `{other}`")),
        }
    }
    let iv: [u8; 32] =
        iv.ok_or("no iv")?.try_into().map_err(|v: Vec<u8>| format!("an iv of {} bytes, not 32", v.len()))?;
    let tag: [u8; 16] =
        tag.ok_or("no tag")?.try_into().map_err(|v: Vec<u8>| format!("a tag of {} bytes, not 16", v.len()))?;
    Ok(Sealed { data: data.ok_or("no data")?, iv, tag, kind: kind.ok_or("no type")? })
}

/// A data key ready to open values (its AES key schedule computed once per document).
pub(crate) struct Opener(Cipher);

impl Opener {
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        Self(Cipher::new(&Array::from(*key)))
    }

    /// Decrypts a sealed value with its additional data (the key path); `None` if it does not authenticate (wrong
    /// key, tampered ciphertext, or a value moved to another path).
    pub(crate) fn open(&self, sealed: &Sealed, aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let copy = Sealed { data: sealed.data.clone(), iv: sealed.iv, tag: sealed.tag, kind: sealed.kind };
        self.open_owned(copy, aad)
    }

    /// As [`open`](Opener::open), decrypting in the value's own buffer.
    pub(crate) fn open_owned(&self, sealed: Sealed, aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let mut buffer = Zeroizing::new(sealed.data);
        let tag = Tag::from(sealed.tag);
        self.0.decrypt_inout_detached(&Array::from(sealed.iv), aad, buffer.as_mut_slice().into(), &tag).ok()?;
        Some(buffer)
    }
}

/// Decrypts one sealed value with the data key (see [`Opener::open`]).
pub(crate) fn open(sealed: &Sealed, key: &[u8; 32], aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    Opener::new(key).open(sealed, aad)
}

/// Encrypts `plain` as a value of `kind` with a fresh 32-byte IV from `iv`.
pub(crate) fn seal(plain: &[u8], kind: Kind, key: &[u8; 32], aad: &[u8], iv: [u8; 32]) -> String {
    let cipher = Cipher::new(&Array::from(*key));
    let mut buffer = plain.to_vec();
    let tag = cipher
        .encrypt_inout_detached(&Array::from(iv), aad, buffer.as_mut_slice().into())
        .expect("AES-GCM encrypts any length sops uses");
    format!(
        "ENC[AES256_GCM,data:{},iv:{},tag:{},type:{}]",
        STANDARD.encode(&buffer),
        STANDARD.encode(iv),
        STANDARD.encode(tag),
        kind.name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_round_trip_and_bind_their_path() {
        let key = [7u8; 32];
        let text = seal(b"s3cr3t", Kind::Str, &key, b"db:password:", [9u8; 32]);
        assert!(is_sealed(&text));
        let sealed = parse(&text).unwrap();
        assert_eq!(sealed.kind, Kind::Str);
        assert_eq!(open(&sealed, &key, b"db:password:").unwrap().as_slice(), b"s3cr3t");
        assert!(open(&sealed, &key, b"db:user:").is_none(), "moved to another key");
        assert!(open(&sealed, &[8u8; 32], b"db:password:").is_none(), "another data key");
    }

    #[test]
    fn what_sops_writes_is_read_by_the_canonical_path_and_anything_else_by_the_careful_one() {
        let text = seal(b"s3cr3t", Kind::Int, &[7u8; 32], b"a:", [9u8; 32]);
        let canonical = parse_canonical(&text).expect("sops' own order");
        assert_eq!(
            (canonical.iv, canonical.tag, canonical.kind),
            (parse_any_order(&text).unwrap().iv, parse_any_order(&text).unwrap().tag, Kind::Int)
        );
        // Another order: same value, read by the careful path.
        let inner = text.strip_prefix("ENC[AES256_GCM,").unwrap().strip_suffix(']').unwrap();
        let mut parts: Vec<&str> = inner.split(',').collect();
        parts.reverse();
        let shuffled = format!("ENC[AES256_GCM,{}]", parts.join(","));
        assert!(parse_canonical(&shuffled).is_none());
        assert_eq!(parse(&shuffled).unwrap().data, canonical.data);
        assert!(parse_canonical("ENC[AES256_GCM,data:AA==,iv:AA==,tag:AA==,type:str]").is_none());
    }

    #[test]
    fn malformed_values_say_what_is_wrong() {
        assert_eq!(parse("ENC[AES256_GCM,data:AA==]").unwrap_err(), "no iv");
        assert!(parse("ENC[AES256_GCM,data:AA==,iv:AA==,tag:AA==,type:str]").unwrap_err().contains("iv of 1 bytes"));
        assert!(parse("ENC[AES256_GCM,data:!!,iv:AA==,tag:AA==,type:str]").unwrap_err().contains("data is not base64"));
        assert!(parse("ENC[AES256_GCM,data:AA==,iv:AA==,tag:AA==,type:blob]").unwrap_err().contains("unknown type"));
    }
}
