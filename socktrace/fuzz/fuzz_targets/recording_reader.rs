//! Any bytes as a recording, read frame by frame as `socktrace replay`
//! reads one: its records decoded and the transitions applied to a socket
//! table, every other frame parsed; damage is an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use socktrace::{
    kernel::event::Event,
    recording::format::{self, Frame},
    state::table::SocketTable,
};

fuzz_target!(|bytes: &[u8]| {
    let Ok(frames) = format::frames(bytes) else {
        return;
    };
    let mut table = SocketTable::new();
    for frame in frames {
        match frame {
            Ok(Frame::Record(record)) => {
                if let Ok(Event::State(event)) = Event::try_from(record) {
                    table.apply(&event);
                }
            }
            Ok(Frame::Host(_)) => {}
            Err(_) => return,
        }
    }
});
