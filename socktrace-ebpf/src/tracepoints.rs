//! The classic tracepoints socktrace reads, field by field, exactly as
//! `/sys/kernel/tracing/events/<category>/<name>/format` lays them out on
//! Linux 6.x. The BPF program reads only these offsets; the agent checks each
//! running kernel's format files against [`LAYOUTS`] before it loads, so a
//! kernel that moved a field is refused with its name instead of decoded
//! wrongly.

/// A tracepoint and the `(field name, offset, size)` of every field read.
pub struct Layout {
    pub category: &'static str,
    pub name: &'static str,
    pub fields: &'static [(&'static str, usize, usize)],
    /// Fields read only when the running kernel has them (checked where
    /// present; the agent tells the program which are).
    pub optional: &'static [(&'static str, usize, usize)],
}

/// The endpoint fields that the `tcp:*` tracepoints declare back to back:
/// ports and family, then IPv4 and IPv6 addresses (IPv4-mapped for IPv4 on
/// an IPv6 socket).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Endpoints {
    pub sport: u16,
    pub dport: u16,
    pub family: u16,
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
    pub saddr_v6: [u8; 16],
    pub daddr_v6: [u8; 16],
}

const _: () = assert!(core::mem::size_of::<Endpoints>() == 46);

/// The fields of [`Endpoints`] when the block starts at `at`.
const fn endpoint_fields(at: usize) -> [(&'static str, usize, usize); 7] {
    [
        ("sport", at, 2),
        ("dport", at + 2, 2),
        ("family", at + 4, 2),
        ("saddr", at + 6, 4),
        ("daddr", at + 10, 4),
        ("saddr_v6", at + 14, 16),
        ("daddr_v6", at + 30, 16),
    ]
}

/// Concatenates a tracepoint's own fields with its endpoint block.
const fn with_endpoints<const N: usize, const M: usize>(
    own: [(&'static str, usize, usize); N],
    at: usize,
) -> [(&'static str, usize, usize); M] {
    let endpoints = endpoint_fields(at);
    let mut all = [("", 0, 0); M];
    let mut i = 0;
    while i < N {
        all[i] = own[i];
        i += 1;
    }
    while i < M {
        all[i] = endpoints[i - N];
        i += 1;
    }
    all
}

/// `tcp:tcp_retransmit_skb`: `skaddr` at 16, `state` at 24, endpoints at 28;
/// since Linux 6.17 `err` at 76, non-zero when the retransmit failed (the
/// tracepoint then fires although nothing was sent).
pub const RETRANSMIT_SKB_SKADDR: usize = 16;
pub const RETRANSMIT_SKB_STATE: usize = 24;
pub const RETRANSMIT_SKB_ENDPOINTS: usize = 28;
pub const RETRANSMIT_SKB_ERR: usize = 76;

pub const RETRANSMIT_SKB: Layout = Layout {
    category: "tcp",
    name: "tcp_retransmit_skb",
    fields: &with_endpoints::<2, 9>(
        [
            ("skaddr", RETRANSMIT_SKB_SKADDR, 8),
            ("state", RETRANSMIT_SKB_STATE, 4),
        ],
        RETRANSMIT_SKB_ENDPOINTS,
    ),
    optional: &[("err", RETRANSMIT_SKB_ERR, 4)],
};

/// `tcp:tcp_retransmit_synack`: listener `skaddr` at 8, request `req` at
/// 16, endpoints at 24.
pub const RETRANSMIT_SYNACK_SKADDR: usize = 8;
pub const RETRANSMIT_SYNACK_REQ: usize = 16;
pub const RETRANSMIT_SYNACK_ENDPOINTS: usize = 24;

pub const RETRANSMIT_SYNACK: Layout = Layout {
    category: "tcp",
    name: "tcp_retransmit_synack",
    fields: &with_endpoints::<2, 9>(
        [
            ("skaddr", RETRANSMIT_SYNACK_SKADDR, 8),
            ("req", RETRANSMIT_SYNACK_REQ, 8),
        ],
        RETRANSMIT_SYNACK_ENDPOINTS,
    ),
    optional: &[],
};

/// `tcp:tcp_receive_reset`: `skaddr` at 8, endpoints at 16.
pub const RECEIVE_RESET_SKADDR: usize = 8;
pub const RECEIVE_RESET_ENDPOINTS: usize = 16;

pub const RECEIVE_RESET: Layout = Layout {
    category: "tcp",
    name: "tcp_receive_reset",
    fields: &with_endpoints::<1, 8>(
        [("skaddr", RECEIVE_RESET_SKADDR, 8)],
        RECEIVE_RESET_ENDPOINTS,
    ),
    optional: &[],
};

/// Every classic tracepoint the BPF programs attach to, with what they read
/// (`sock:inet_sock_set_state` is attached as a BTF tracepoint).
pub const LAYOUTS: [&Layout; 3] = [&RETRANSMIT_SKB, &RETRANSMIT_SYNACK, &RECEIVE_RESET];
