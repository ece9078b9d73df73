//! What an HLS viewer needs from a TS segment, read as the bytes stream in and without keeping
//! them: that every 188-byte packet starts in sync, how many packets there are, and the SEI
//! probe of the first video frame. Only the start of that frame's PES payload is held (at most
//! [`PROBE_WINDOW`] bytes), so a segment costs one pass over its bytes, not a copy and a parse.
//! Sans-IO.

use crate::sei::{self, Probe};

use super::packets::{PacketCarry, PACKET};
/// The probe is among the first NAL units of a frame (after AUD, SPS and PPS); this much of the
/// first video PES is searched, no more.
pub const PROBE_WINDOW: usize = 8 * 1024;

/// A TS segment being read.
#[derive(Debug)]
pub struct TsScan {
    carry: PacketCarry,
    packets: u64,
    video_pid: Option<u16>,
    /// The first video PES's payload so far, while the probe is searched for.
    pes: Vec<u8>,
    searching: bool,
    probe: Option<Probe>,
}

impl Default for TsScan {
    fn default() -> Self {
        Self {
            carry: PacketCarry::default(),
            packets: 0,
            video_pid: None,
            pes: Vec::new(),
            searching: true,
            probe: None,
        }
    }
}

impl TsScan {
    /// Reads the next bytes of the segment, in pieces of any size.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), &'static str> {
        let mut carry = std::mem::take(&mut self.carry);
        let result = carry.feed(data, |p| self.packet(p));
        self.carry = carry;
        result
    }

    /// Whether the search for the first frame's probe is over (found, or that frame ended or
    /// passed [`PROBE_WINDOW`] without one): what a light check needs has been read.
    pub fn settled(&self) -> bool {
        !self.searching
    }

    /// The packets read so far and the probe, for a segment read only up to here (a light
    /// check: the rest was discarded unread).
    pub fn finish_prefix(&self) -> (u64, Option<Probe>) {
        (self.packets, self.probe)
    }

    /// The end of the segment: its packet count and probe (if the first video frame had one).
    pub fn finish(&self) -> Result<(u64, Option<Probe>), &'static str> {
        if self.carry.pending() != 0 {
            return Err("segment is not a whole number of TS packets");
        }
        Ok((self.packets, self.probe))
    }

    fn packet(&mut self, p: &[u8]) -> Result<(), &'static str> {
        if p[0] != 0x47 {
            return Err("TS packet out of sync");
        }
        self.packets += 1;
        if !self.searching {
            return Ok(());
        }
        let pusi = p[1] & 0x40 != 0;
        let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
        let control = (p[3] >> 4) & 3;
        let mut at = 4;
        if control & 2 != 0 {
            at += 1 + usize::from(p[4]);
        }
        if control & 1 == 0 || at >= PACKET {
            return Ok(());
        }
        let payload = &p[at..];
        match self.video_pid {
            None => {
                let video_pes = pusi
                    && payload.len() >= 9
                    && payload[..3] == [0, 0, 1]
                    && payload[3] & 0xf0 == 0xe0;
                if video_pes {
                    self.video_pid = Some(pid);
                    let header = 9 + usize::from(payload[8]);
                    self.pes
                        .extend_from_slice(payload.get(header..).unwrap_or_default());
                    self.search();
                }
            }
            // The next PES on the video PID: the first frame ended without a probe.
            Some(video) if video == pid && pusi => self.stop(),
            Some(video) if video == pid => {
                self.pes.extend_from_slice(payload);
                self.search();
            }
            Some(_) => {}
        }
        Ok(())
    }

    fn search(&mut self) {
        self.probe = sei::find_in_annexb(&self.pes);
        if self.probe.is_some() || self.pes.len() >= PROBE_WINDOW {
            self.stop();
        }
    }

    fn stop(&mut self) {
        self.searching = false;
        self.pes = Vec::new();
    }
}

/// The probe of a whole TS segment's first video frame.
pub fn segment_probe(ts: &[u8]) -> Option<Probe> {
    let mut scan = TsScan::default();
    scan.feed(ts).ok()?;
    scan.finish().ok()?.1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TS packet on `pid` carrying `payload` (padded with an adaptation field).
    fn packet(pid: u16, pusi: bool, payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() <= 182);
        let mut p = vec![
            0x47,
            (u8::from(pusi) << 6) | (pid >> 8) as u8,
            pid as u8,
            0x30,
        ];
        let stuffing = 184 - payload.len();
        p.push((stuffing - 1) as u8);
        if stuffing > 1 {
            p.push(0);
            p.resize(p.len() + stuffing - 2, 0xff);
        }
        p.extend_from_slice(payload);
        assert_eq!(p.len(), PACKET);
        p
    }

    fn segment(probe: Probe) -> Vec<u8> {
        // Annex B: AUD, the probe's SEI, then a slice split over two packets.
        let mut es = vec![0, 0, 0, 1, 0x09, 0xf0];
        es.extend_from_slice(&[0, 0, 0, 1]);
        es.extend_from_slice(&sei::probe_nal(probe));
        es.extend_from_slice(&[0, 0, 0, 1, 0x65]);
        es.resize(es.len() + 200, 0x88);
        let mut pes = vec![0, 0, 1, 0xe0, 0, 0, 0x80, 0x80, 5, 0x21, 0, 1, 0, 1];
        let split = 182 - pes.len();
        pes.extend_from_slice(&es[..split]);
        let mut ts = packet(0, true, &[0; 20]); // a PAT-like packet first
        ts.extend(packet(0x101, true, &[0, 0, 1, 0xc0, 0, 0, 0x80, 0x80, 0])); // audio
        ts.extend(packet(0x100, true, &pes));
        for piece in es[split..].chunks(182) {
            ts.extend(packet(0x100, false, piece));
        }
        ts
    }

    #[test]
    fn finds_the_probe_in_pieces_of_any_size() {
        let probe = Probe {
            send_time_us: 1_700_000_000_123_456,
            seq: 42,
        };
        let ts = segment(probe);
        assert_eq!(segment_probe(&ts), Some(probe));
        for piece in [1, 7, 187, 188, 189, 500] {
            let mut scan = TsScan::default();
            for chunk in ts.chunks(piece) {
                scan.feed(chunk).unwrap();
            }
            assert_eq!(
                scan.finish().unwrap(),
                ((ts.len() / PACKET) as u64, Some(probe)),
                "pieces of {piece}"
            );
        }
    }

    #[test]
    fn lost_sync_and_a_torn_packet_are_errors() {
        let probe = Probe {
            send_time_us: 1,
            seq: 1,
        };
        let mut ts = segment(probe);
        ts[188 * 2] = 0x46;
        assert!(TsScan::default().feed(&ts).is_err());
        let ts = segment(probe);
        let mut scan = TsScan::default();
        scan.feed(&ts[..ts.len() - 1]).unwrap();
        assert!(scan.finish().is_err());
    }

    #[test]
    fn a_frame_without_a_probe_gives_none() {
        let es = [0u8, 0, 0, 1, 0x65, 0x88, 0x88];
        let mut pes = vec![0, 0, 1, 0xe0, 0, 0, 0x80, 0, 0];
        pes.extend_from_slice(&es);
        let mut ts = packet(0x100, true, &pes);
        ts.extend(packet(0x100, true, &pes));
        let mut scan = TsScan::default();
        scan.feed(&ts).unwrap();
        assert_eq!(scan.finish().unwrap(), (2, None));
    }
}
