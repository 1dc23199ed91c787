//! One file per group of kernel hooks: the state programs on
//! `inet_sock_set_state`, and the handshake programs on the `tcp:*`
//! tracepoints.
pub mod handshake;
pub mod state;
