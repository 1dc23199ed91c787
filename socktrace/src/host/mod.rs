//! What the host tells besides the ring: sock_diag listings, network
//! namespaces, socket owners from /proc, container labels, netstat counters.
pub mod container;
pub mod listing;
pub mod namespaces;
pub mod netns;
pub mod netstat;
pub mod proc_owners;
pub mod self_usage;
pub mod sock_diag;
