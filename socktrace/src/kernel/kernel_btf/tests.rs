use super::*;

/// Builds a BTF blob type by type, the way the kernel lays it out.
#[derive(Default)]
struct Builder {
    types: Vec<u8>,
    strings: Vec<u8>,
    next_id: u32,
}

impl Builder {
    fn new() -> Self {
        Builder {
            strings: vec![0],
            next_id: 1,
            ..Default::default()
        }
    }

    fn string(&mut self, name: &str) -> u32 {
        if name.is_empty() {
            return 0;
        }
        let offset = self.strings.len() as u32;
        self.strings.extend_from_slice(name.as_bytes());
        self.strings.push(0);
        offset
    }

    fn header(
        &mut self,
        name: &str,
        kind: u32,
        vlen: u32,
        kind_flag: bool,
        size_or_type: u32,
    ) -> u32 {
        let name_off = self.string(name);
        let info = (kind << 24) | vlen | (u32::from(kind_flag) << 31);
        for word in [name_off, info, size_or_type] {
            self.types.extend_from_slice(&word.to_ne_bytes());
        }
        self.next_id += 1;
        self.next_id - 1
    }

    fn int(&mut self, name: &str, size: u32) -> u32 {
        let id = self.header(name, KIND_INT, 0, false, size);
        self.types.extend_from_slice(&(size * 8).to_ne_bytes());
        id
    }

    fn typedef(&mut self, name: &str, target: u32) -> u32 {
        self.header(name, KIND_TYPEDEF, 0, false, target)
    }

    fn composite(
        &mut self,
        kind: u32,
        name: &str,
        size: u32,
        kind_flag: bool,
        members: &[(&str, u32, u32)],
    ) -> u32 {
        let id = self.header(name, kind, members.len() as u32, kind_flag, size);
        for &(member, type_id, offset) in members {
            let name_off = self.string(member);
            for word in [name_off, type_id, offset] {
                self.types.extend_from_slice(&word.to_ne_bytes());
            }
        }
        id
    }

    fn enumeration(&mut self, name: &str, values: &[(&str, i32)]) -> u32 {
        let id = self.header(name, KIND_ENUM, values.len() as u32, false, 4);
        for &(value_name, value) in values {
            let name_off = self.string(value_name);
            self.types.extend_from_slice(&name_off.to_ne_bytes());
            self.types.extend_from_slice(&value.to_ne_bytes());
        }
        id
    }

    fn build(self) -> Vec<u8> {
        let mut blob = Vec::new();
        blob.extend_from_slice(&MAGIC.to_ne_bytes());
        blob.extend_from_slice(&[1, 0]);
        for word in [
            HEADER_LEN as u32,
            0,
            self.types.len() as u32,
            self.types.len() as u32,
            self.strings.len() as u32,
        ] {
            blob.extend_from_slice(&word.to_ne_bytes());
        }
        blob.extend_from_slice(&self.types);
        blob.extend_from_slice(&self.strings);
        blob
    }
}

/// A miniature of the kernel's request socket: a nested struct, an enum
/// before it (variable-length records), an anonymous union, a typedef.
fn request_sock_btf() -> KernelBtf {
    let mut b = Builder::new();
    let u64_t = b.int("u64", 8);
    let u32_t = b.int("u32", 4);
    b.enumeration(
        "tcp_synack_type",
        &[("TCP_SYNACK_NORMAL", 0), ("TCP_SYNACK_FASTOPEN", 1)],
    );
    let stamp = b.typedef("stamp_t", u64_t);
    let inner = b.composite(
        KIND_STRUCT,
        "inet_request_sock",
        256,
        false,
        &[("ir_num", u32_t, 0), ("ir_cookie", u64_t, 64)],
    );
    let anon = b.composite(
        KIND_UNION,
        "",
        8,
        false,
        &[("txhash", u32_t, 0), ("hashed", u64_t, 0)],
    );
    b.composite(
        KIND_STRUCT,
        "tcp_request_sock",
        312,
        true,
        &[
            ("req", inner, 0),
            ("snt_synack", stamp, 2112),
            ("", anon, 2176),
            // A 2-bit bitfield at bit 2244 (kind_flag: size in the top byte).
            ("syn_ect_snt", u32_t, (2 << 24) | 2244),
        ],
    );
    KernelBtf::parse(b.build()).unwrap()
}

#[test]
fn finds_a_direct_member_through_its_typedef() {
    assert_eq!(
        request_sock_btf()
            .member_offset("tcp_request_sock", &["snt_synack"])
            .unwrap(),
        264
    );
}

#[test]
fn walks_into_a_nested_struct() {
    let btf = request_sock_btf();
    assert_eq!(
        btf.member_offset("tcp_request_sock", &["req", "ir_cookie"])
            .unwrap(),
        8
    );
}

#[test]
fn looks_inside_anonymous_unions() {
    assert_eq!(
        request_sock_btf()
            .member_offset("tcp_request_sock", &["hashed"])
            .unwrap(),
        272
    );
}

#[test]
fn missing_names_and_bitfields_are_errors() {
    let btf = request_sock_btf();
    let error = btf
        .member_offset("tcp_request_sock", &["req", "nope"])
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "this kernel's struct tcp_request_sock.req has no member nope"
    );
    assert!(matches!(
        btf.member_offset("no_such_sock", &["x"]),
        Err(BtfError::NoStruct(_))
    ));
    assert!(matches!(
        btf.member_offset("tcp_request_sock", &["syn_ect_snt"]),
        Err(BtfError::Unaligned(_))
    ));
}

#[test]
fn truncated_and_foreign_blobs_are_rejected() {
    let mut blob = Builder::new();
    blob.int("int", 4);
    let mut bytes = blob.build();
    assert!(KernelBtf::parse(bytes[..30].to_vec()).is_err());
    bytes[0] ^= 0xff;
    assert!(matches!(
        KernelBtf::parse(bytes),
        Err(BtfError::Malformed(_))
    ));
}

/// The running kernel's own BTF, when there is one to read (it is
/// world-readable): the offset the agent hands to the SYN-ACK program.
#[test]
fn resolves_snt_synack_in_the_running_kernel() {
    let Ok(btf) = read_vmlinux().and_then(KernelBtf::parse) else {
        eprintln!("skipped: no {VMLINUX_BTF}");
        return;
    };
    let offset = btf
        .member_offset("tcp_request_sock", &["snt_synack"])
        .unwrap();
    assert!(offset > 0 && offset % 8 == 0, "{offset}");
}

/// How the agent tells a KASAN kernel (whose task stacks are twice the
/// size): by its function, not by a struct of the same name.
#[test]
fn finds_functions_by_name_and_kind() {
    let mut b = Builder::new();
    let proto = b.header("", KIND_FUNC_PROTO, 0, false, 0);
    b.header("kasan_report", KIND_FUNC, 1, false, proto);
    b.composite(KIND_STRUCT, "tcp_sock", 8, false, &[]);
    let btf = KernelBtf::parse(b.build()).unwrap();
    assert!(btf.has_function("kasan_report"));
    assert!(!btf.has_function("tcp_sock"));
    assert!(!btf.has_function("kasan"));
}
