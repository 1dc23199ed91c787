//! Field offsets from the running kernel's BTF (`/sys/kernel/btf/vmlinux`).
//!
//! aya-ebpf has no CO-RE relocations, so a BPF program that reads a kernel
//! struct gets the field's offset from the agent, as a read-only global set
//! before load. This is the small part of the BTF format needed for that:
//! find a struct by name and walk a path of member names (looking through
//! anonymous structs and unions and through typedefs and qualifiers).
use std::borrow::Cow;

/// Where the kernel exposes its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;
const TYPE_HEADER_LEN: usize = 12;

const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;
const KIND_MAX: u32 = 19;

/// Why an offset could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("cannot read {path} (this kernel was built without CONFIG_DEBUG_INFO_BTF?)")]
    Unreadable {
        path: String,
        source: std::io::Error,
    },
    #[error("malformed BTF: {0}")]
    Malformed(String),
    #[error("this kernel's BTF has no struct {0}")]
    NoStruct(String),
    #[error("this kernel's struct {owner} has no member {member}")]
    NoMember { owner: String, member: String },
    #[error("member {0} is a bitfield or not byte aligned")]
    Unaligned(String),
    #[error("this kernel's struct sock_common does not keep {second} right after {first}")]
    NotAdjacent { first: String, second: String },
}

/// The running kernel's BTF, as bytes.
pub fn read_vmlinux() -> Result<Vec<u8>, BtfError> {
    std::fs::read(VMLINUX_BTF).map_err(|source| BtfError::Unreadable {
        path: VMLINUX_BTF.to_owned(),
        source,
    })
}

/// A parsed BTF blob: the type section indexed by type id.
pub struct KernelBtf {
    data: Vec<u8>,
    types_start: usize,
    strings_start: usize,
    strings_len: usize,
    /// Byte offset of each type's header, by type id (id 0 is `void`).
    type_offsets: Vec<usize>,
}

/// One struct or union member.
struct Member {
    name_off: u32,
    type_id: u32,
    bit_offset: u32,
}

impl KernelBtf {
    /// Parses a little- or native-endian BTF blob (the kernel's own byte
    /// order, which is the agent's).
    pub fn parse(data: Vec<u8>) -> Result<Self, BtfError> {
        let malformed = |what: &str| BtfError::Malformed(what.to_owned());
        if data.len() < HEADER_LEN || read_u16(&data, 0) != Some(MAGIC) {
            return Err(malformed("bad magic (not native-endian BTF)"));
        }
        let word = |at| read_u32(&data, at).ok_or_else(|| malformed("short header"));
        let header_len = word(4)? as usize;
        let (type_off, type_len) = (word(8)? as usize, word(12)? as usize);
        let (str_off, str_len) = (word(16)? as usize, word(20)? as usize);
        let types_start = header_len + type_off;
        let types_end = types_start + type_len;
        let strings_start = header_len + str_off;
        if types_end > data.len() || strings_start + str_len > data.len() {
            return Err(malformed("sections run past the end"));
        }
        let mut type_offsets = vec![0];
        let mut at = types_start;
        while at < types_end {
            type_offsets.push(at);
            at += type_record_len(&data, at).ok_or_else(|| malformed("truncated type"))?;
        }
        if at != types_end {
            return Err(malformed("type section overruns its length"));
        }
        Ok(KernelBtf {
            data,
            types_start,
            strings_start,
            strings_len: str_len,
            type_offsets,
        })
    }

    /// Byte offset of `path` (member names, outermost first) inside the
    /// struct named `owner`.
    pub fn member_offset(&self, owner: &str, path: &[&str]) -> Result<u32, BtfError> {
        let mut type_id = self
            .struct_id(owner)
            .ok_or_else(|| BtfError::NoStruct(owner.to_owned()))?;
        let mut bits = 0u32;
        let mut walked = owner.to_owned();
        for name in path {
            let (member_bits, member_type) =
                self.find_member(type_id, name)
                    .ok_or_else(|| BtfError::NoMember {
                        owner: walked.clone(),
                        member: (*name).to_owned(),
                    })?;
            bits += member_bits;
            type_id = self.strip_modifiers(member_type);
            walked = format!("{walked}.{name}");
        }
        if !bits.is_multiple_of(8) {
            return Err(BtfError::Unaligned(walked));
        }
        Ok(bits / 8)
    }

    /// Whether the kernel has a function named `name`.
    pub fn has_function(&self, name: &str) -> bool {
        self.named(KIND_FUNC, name).is_some()
    }

    fn struct_id(&self, name: &str) -> Option<u32> {
        self.named(KIND_STRUCT, name)
    }

    fn named(&self, wanted: u32, name: &str) -> Option<u32> {
        (1..self.type_offsets.len() as u32).find(|&id| {
            let (kind, _, _) = self.info(id);
            kind == wanted && self.name(id).as_deref() == Some(name)
        })
    }

    /// Bit offset and type of member `name` of struct/union `type_id`,
    /// looking inside anonymous members.
    fn find_member(&self, type_id: u32, name: &str) -> Option<(u32, u32)> {
        for member in self.members(type_id) {
            if member.name_off == 0 {
                let inner = self.strip_modifiers(member.type_id);
                if let Some((bits, found)) = self.find_member(inner, name) {
                    return Some((member.bit_offset + bits, found));
                }
            } else if self.string(member.name_off).as_deref() == Some(name) {
                return Some((member.bit_offset, member.type_id));
            }
        }
        None
    }

    fn members(&self, type_id: u32) -> Vec<Member> {
        let (kind, vlen, kind_flag) = self.info(type_id);
        if kind != KIND_STRUCT && kind != KIND_UNION {
            return Vec::new();
        }
        let first = self.type_offsets[type_id as usize] + TYPE_HEADER_LEN;
        (0..vlen as usize)
            .filter_map(|i| {
                let at = first + i * 12;
                let offset = read_u32(&self.data, at + 8)?;
                Some(Member {
                    name_off: read_u32(&self.data, at)?,
                    type_id: read_u32(&self.data, at + 4)?,
                    // With kind_flag the top 8 bits are a bitfield size.
                    bit_offset: if kind_flag {
                        offset & 0x00ff_ffff
                    } else {
                        offset
                    },
                })
            })
            .collect()
    }

    /// Follows typedefs and qualifiers to the type they name.
    fn strip_modifiers(&self, mut type_id: u32) -> u32 {
        for _ in 0..32 {
            let (kind, _, _) = self.info(type_id);
            if !matches!(
                kind,
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG
            ) {
                break;
            }
            type_id = self.type_ref(type_id);
        }
        type_id
    }

    /// `(kind, vlen, kind_flag)` of a type; `void` and unknown ids are kind 0.
    fn info(&self, type_id: u32) -> (u32, u32, bool) {
        let Some(&at) = self
            .type_offsets
            .get(type_id as usize)
            .filter(|_| type_id != 0)
        else {
            return (0, 0, false);
        };
        let info = read_u32(&self.data, at + 4).unwrap_or(0);
        ((info >> 24) & 0x1f, info & 0xffff, info >> 31 == 1)
    }

    fn type_ref(&self, type_id: u32) -> u32 {
        let at = self.type_offsets[type_id as usize];
        read_u32(&self.data, at + 8).unwrap_or(0)
    }

    fn name(&self, type_id: u32) -> Option<Cow<'_, str>> {
        let at = self.type_offsets[type_id as usize];
        self.string(read_u32(&self.data, at)?)
    }

    fn string(&self, offset: u32) -> Option<Cow<'_, str>> {
        let offset = offset as usize;
        if offset >= self.strings_len {
            return None;
        }
        let bytes = &self.data[self.strings_start + offset..self.strings_start + self.strings_len];
        let end = bytes.iter().position(|&b| b == 0)?;
        Some(String::from_utf8_lossy(&bytes[..end]))
    }
}

impl std::fmt::Debug for KernelBtf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelBtf")
            .field("types", &(self.type_offsets.len() - 1))
            .field("types_start", &self.types_start)
            .finish()
    }
}

/// Length of the type record at `at`: its 12-byte header plus what its kind
/// appends. `None` for an unknown kind or a truncated record.
fn type_record_len(data: &[u8], at: usize) -> Option<usize> {
    let info = read_u32(data, at + 4)?;
    let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
    let extra = match kind {
        KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
        KIND_ARRAY => 12,
        KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
        KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
        1..=KIND_MAX => 0,
        _ => return None,
    };
    let len = TYPE_HEADER_LEN + extra;
    (at + len <= data.len()).then_some(len)
}

fn read_u16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(data.get(at..at + 2)?.try_into().ok()?))
}

fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests;
