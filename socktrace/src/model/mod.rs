//! The words every layer speaks: TCP states, socket tuples and network
//! namespaces, owners, address prefixes.
pub mod cidr;
pub mod owner;
pub mod tcp_state;
pub mod tuple;
