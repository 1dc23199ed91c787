//! Any bytes as one kernel record: decoded or rejected, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use socktrace::kernel::event::Event;

fuzz_target!(|bytes: &[u8]| {
    let _ = Event::try_from(bytes);
});
