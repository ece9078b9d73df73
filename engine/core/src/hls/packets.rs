//! TS packet framing for the readers of segments ([`super::tsscan`], [`super::demux`]):
//! 188-byte packets out of bytes that arrive in pieces of any size. Sans-IO.
//!
//! Must not: look inside a packet (each reader does, with its own policy on bad ones).

/// Size of a TS packet.
pub const PACKET: usize = 188;

/// Bytes of a packet split across pieces, until its last byte arrives.
#[derive(Debug)]
pub struct PacketCarry {
    buf: [u8; PACKET],
    len: usize,
}

impl Default for PacketCarry {
    fn default() -> Self {
        Self {
            buf: [0; PACKET],
            len: 0,
        }
    }
}

impl PacketCarry {
    /// Hands every packet `data` completes to `each`, in order; keeps the bytes of a packet
    /// it starts but does not finish. Stops at the first error.
    pub fn feed<E>(
        &mut self,
        mut data: &[u8],
        mut each: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.len > 0 {
            let take = (PACKET - self.len).min(data.len());
            self.buf[self.len..self.len + take].copy_from_slice(&data[..take]);
            self.len += take;
            data = &data[take..];
            if self.len < PACKET {
                return Ok(());
            }
            self.len = 0;
            let packet = self.buf;
            each(&packet)?;
        }
        let mut packets = data.chunks_exact(PACKET);
        for packet in &mut packets {
            each(packet)?;
        }
        let rest = packets.remainder();
        self.buf[..rest.len()].copy_from_slice(rest);
        self.len = rest.len();
        Ok(())
    }

    /// Bytes held of an unfinished packet.
    pub fn pending(&self) -> usize {
        self.len
    }

    /// Drops them.
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_come_whole_whatever_the_pieces() {
        let data: Vec<u8> = (0..PACKET * 3 + 10).map(|i| i as u8).collect();
        for cut in [0, 1, 187, 188, 189, 400, data.len()] {
            let mut c = PacketCarry::default();
            let mut got: Vec<Vec<u8>> = Vec::new();
            for piece in [&data[..cut], &data[cut..]] {
                c.feed(piece, |p| {
                    got.push(p.to_vec());
                    Ok::<(), ()>(())
                })
                .unwrap();
            }
            let want: Vec<Vec<u8>> = data.chunks_exact(PACKET).map(<[u8]>::to_vec).collect();
            assert_eq!(got, want, "cut at {cut}");
            assert_eq!(c.pending(), 10);
        }
    }
}
