//! Recordings (`--record FILE`): a whole run kept so that `socktrace replay`
//! can run any view over it again, elsewhere and without root. The file is
//! the kernel's records as the ring handed them over, and between them
//! what else the views were given: the sockets that existed at start, each
//! listing, container labels, and when the loop settled, gave up on a
//! namespace and ended ([`frame`]), in [`format`]'s framing; [`recorder`]
//! writes one, [`playback`] plays one back.
pub mod format;
pub mod frame;
pub mod playback;
pub mod recorder;
