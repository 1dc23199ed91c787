//! socktrace's kernel side: stamp every TCP state transition, SYN and SYN-ACK
//! retransmit and received RST, and hand them to the agent; filtering and
//! stamping only, all reasoning about sockets happens in userspace.
//!
//! `probes/` holds the programs, one file per group of hooks; [`read`] what
//! they read (settings, kernel memory, namespaces, addresses); [`level`]
//! the interrupt level a program runs at; [`ring`] the way out. Why the
//! state programs are two BTF tracepoints reading the socket directly:
//! README, "Performance".
#![no_std]
#![no_main]

mod level;
mod probes;
mod read;
mod ring;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
