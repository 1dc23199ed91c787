//! The handshake programs, on the classic `tcp:*` tracepoints whose records
//! carry the endpoints: SYN retransmits of active opens, SYN-ACK
//! retransmits of half-open connections, and received resets.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use aya_log_ebpf::debug;
use socktrace_ebpf::{
    CONTEXT_SOFTIRQ, LOST_SLOT_CLASSIC, RECORD_RESET_RECEIVED, RECORD_SYN_RETRANSMIT,
    RECORD_SYNACK_RETRANSMIT, TCP_SYN_SENT,
    tracepoints::{
        Endpoints, RECEIVE_RESET_ENDPOINTS, RECEIVE_RESET_SKADDR, RETRANSMIT_SKB_ENDPOINTS,
        RETRANSMIT_SKB_ERR, RETRANSMIT_SKB_SKADDR, RETRANSMIT_SKB_STATE,
        RETRANSMIT_SYNACK_ENDPOINTS, RETRANSMIT_SYNACK_REQ, RETRANSMIT_SYNACK_SKADDR,
    },
};

use crate::{
    read::{KernelMemory, Untyped, addresses, netns_inode, setting},
    ring::{Fields, emit},
};

/// SYN retransmits of active opens only: data retransmits are far more
/// frequent and not socktrace's business.
#[tracepoint]
pub fn tcp_retransmit_skb(ctx: TracePointContext) -> u32 {
    // SAFETY (every `read_at` of these programs): offsets from
    // `tracepoints`, checked against the running kernel before load.
    let Ok(state) = (unsafe { ctx.read_at::<i32>(RETRANSMIT_SKB_STATE) }) else {
        debug!(&ctx, "cannot read tcp_retransmit_skb's state");
        return 0;
    };
    if state != TCP_SYN_SENT || retransmit_failed(&ctx) {
        return 0;
    }
    let (Ok(skaddr), Ok(ends)) = (unsafe {
        (
            ctx.read_at::<u64>(RETRANSMIT_SKB_SKADDR),
            ctx.read_at::<Endpoints>(RETRANSMIT_SKB_ENDPOINTS),
        )
    }) else {
        debug!(&ctx, "cannot read tcp_retransmit_skb's socket");
        return 0;
    };
    emit_endpoints(&ctx, RECORD_SYN_RETRANSMIT, skaddr, &ends, state as u8, 0);
    0
}

/// Linux 6.17+ also fires `tcp_retransmit_skb` for a retransmit that could
/// not be sent, with its error in `err`.
#[inline(always)]
fn retransmit_failed(ctx: &TracePointContext) -> bool {
    if setting(|config| &config.retransmit_has_err) == 0 {
        return false;
    }
    // SAFETY: the agent set the flag only after finding `err` at this
    // offset in the running kernel's format.
    !matches!(unsafe { ctx.read_at::<i32>(RETRANSMIT_SKB_ERR) }, Ok(0))
}

/// Every SYN-ACK retransmit: the only trace a half-open connection leaves.
#[tracepoint]
pub fn tcp_retransmit_synack(ctx: TracePointContext) -> u32 {
    let (Ok(listener), Ok(req), Ok(ends)) = (unsafe {
        (
            ctx.read_at::<u64>(RETRANSMIT_SYNACK_SKADDR),
            ctx.read_at::<u64>(RETRANSMIT_SYNACK_REQ),
            ctx.read_at::<Endpoints>(RETRANSMIT_SYNACK_ENDPOINTS),
        )
    }) else {
        debug!(&ctx, "cannot read tcp_retransmit_synack's sockets");
        return 0;
    };
    // `req` is the live request socket the tracepoint was called with.
    let first_synack_us = Untyped::read::<u64>(
        req as *const u8,
        setting(|config| &config.offsets.synack_stamp),
    )
    .unwrap_or_else(|| {
        debug!(&ctx, "cannot read the request socket's first SYN-ACK time");
        0
    });
    emit_endpoints(
        &ctx,
        RECORD_SYNACK_RETRANSMIT,
        listener,
        &ends,
        0,
        first_synack_us,
    );
    0
}

#[tracepoint]
pub fn tcp_receive_reset(ctx: TracePointContext) -> u32 {
    let (Ok(skaddr), Ok(ends)) = (unsafe {
        (
            ctx.read_at::<u64>(RECEIVE_RESET_SKADDR),
            ctx.read_at::<Endpoints>(RECEIVE_RESET_ENDPOINTS),
        )
    }) else {
        debug!(&ctx, "cannot read tcp_receive_reset's socket");
        return 0;
    };
    emit_endpoints(&ctx, RECORD_RESET_RECEIVED, skaddr, &ends, 0, 0);
    0
}

/// The record of a classic tracepoint: its endpoints, and the namespace of
/// the socket at `skaddr` (a plain number here, so read untyped).
#[inline(always)]
fn emit_endpoints(
    ctx: &TracePointContext,
    kind: u8,
    skaddr: u64,
    ends: &Endpoints,
    state: u8,
    value: u64,
) {
    let (saddr, daddr) = addresses(
        ctx,
        ends.family,
        || (ends.saddr, ends.daddr),
        || (ends.saddr_v6, ends.daddr_v6),
    );
    let netns = netns_inode::<Untyped>(skaddr as *const u8);
    if netns == 0 {
        debug!(ctx, "cannot read the socket's network namespace");
    }
    emit(
        ctx,
        kind,
        &Fields {
            skaddr,
            netns,
            family: ends.family,
            sport: ends.sport,
            dport: ends.dport,
            saddr,
            daddr,
            oldstate: state,
            newstate: state,
            value,
        },
        CONTEXT_SOFTIRQ,
        LOST_SLOT_CLASSIC,
    );
}
