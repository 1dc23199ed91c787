//! The agent protocol's framing: one JSON message per line, at most so many
//! bytes, as a tokio-util codec over `bytes` buffers.
use std::marker::PhantomData;

use bytes::{BufMut as _, BytesMut};
use serde::{Serialize, de::DeserializeOwned};
use tokio_util::codec::{Decoder, Encoder};

use crate::agent::protocol::ProtocolError;

/// Messages of type `T`, one JSON line each, of at most `limit` bytes with
/// the newline (a last line may end without one).
pub struct JsonLines<T> {
    limit: usize,
    message: PhantomData<fn() -> T>,
}

impl<T> JsonLines<T> {
    pub fn new(limit: usize) -> Self {
        JsonLines {
            limit,
            message: PhantomData,
        }
    }
}

impl<T: DeserializeOwned> Decoder for JsonLines<T> {
    type Item = T;
    type Error = ProtocolError;

    fn decode(&mut self, buffer: &mut BytesMut) -> Result<Option<T>, ProtocolError> {
        match buffer.iter().position(|&byte| byte == b'\n') {
            Some(newline) if newline < self.limit => {
                let line = buffer.split_to(newline + 1);
                Ok(Some(serde_json::from_slice(&line)?))
            }
            Some(_) => Err(ProtocolError::TooLong),
            None if buffer.len() > self.limit => Err(ProtocolError::TooLong),
            None => Ok(None),
        }
    }

    fn decode_eof(&mut self, buffer: &mut BytesMut) -> Result<Option<T>, ProtocolError> {
        if let Some(message) = self.decode(buffer)? {
            return Ok(Some(message));
        }
        if buffer.is_empty() {
            return Ok(None);
        }
        let line = buffer.split();
        Ok(Some(serde_json::from_slice(&line)?))
    }
}

impl<T: Serialize> Encoder<&T> for JsonLines<T> {
    type Error = ProtocolError;

    fn encode(&mut self, message: &T, buffer: &mut BytesMut) -> Result<(), ProtocolError> {
        serde_json::to_writer(buffer.writer(), message)?;
        buffer.put_u8(b'\n');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_cut_at_their_newline_and_bounded() {
        let mut codec = JsonLines::<u32>::new(4);
        let mut buffer = BytesMut::from(&b"12\n7"[..]);
        assert_eq!(codec.decode(&mut buffer).unwrap(), Some(12));
        assert_eq!(codec.decode(&mut buffer).unwrap(), None, "7 may go on");
        assert_eq!(codec.decode_eof(&mut buffer).unwrap(), Some(7));
        assert_eq!(codec.decode_eof(&mut buffer).unwrap(), None);
        let mut long = BytesMut::from(&b"1234\n"[..]);
        assert!(matches!(
            codec.decode(&mut long),
            Err(ProtocolError::TooLong)
        ));
        let mut endless = BytesMut::from(&b"12345"[..]);
        assert!(matches!(
            codec.decode(&mut endless),
            Err(ProtocolError::TooLong)
        ));
    }

    #[test]
    fn a_message_encodes_as_one_line() {
        let mut buffer = BytesMut::new();
        JsonLines::<Vec<u8>>::new(64)
            .encode(&vec![1, 2], &mut buffer)
            .unwrap();
        assert_eq!(&buffer[..], b"[1,2]\n");
    }
}
