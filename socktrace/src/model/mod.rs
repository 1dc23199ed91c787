//! The words every layer speaks: TCP states, socket tuples and network
//! namespaces, owners, address prefixes, ephemeral port ranges.
pub mod cidr;
pub mod owner;
pub mod port_range;
pub mod tcp_state;
pub mod tuple;
