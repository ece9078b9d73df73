//! A stream's AAC audio as Opus for WebRTC viewers: decoded (symphonia's AAC-LC decoder, pure
//! Rust), resampled to 48 kHz (rubato), cut into frames of 20, 40 or 60 ms
//! ([`FrameMs`]) and encoded by the caller's Opus encoder ([`OpusEncode`]: the engine's is
//! libopus).
//!
//! Owns: the stream's decoder (from its AudioSpecificConfig), the resampler, the samples
//! waiting for a whole frame (at most [`MAX_PENDING_MS`]), and the RTP timestamps of the
//! packets on Opus's 48 kHz clock, continuous while the source is and restarted at a jump.
//!
//! Must not: encode (the caller's encoder does), see a frame twice or out of order (a frame at
//! or before the last one is ignored: every session of the stream shares this one transcoder),
//! or trust the AAC bytes: the decoder's errors skip the frame, and the engine runs this
//! inside its panic containment.

use rubato::{FftFixedIn, Resampler};
use symphonia_codec_aac::AacDecoder;
use symphonia_core::audio::{AudioBufferRef, SampleBuffer};
use symphonia_core::codecs::{CodecParameters, Decoder, DecoderOptions, CODEC_TYPE_AAC};
use symphonia_core::formats::Packet;

/// Opus's clock and the only rate we encode at.
pub const OPUS_RATE: u64 = 48_000;
/// How long one Opus packet plays: the frame sizes Opus has that WebRTC clients decode.
/// Longer frames mean fewer packets per viewer (audio at 20 ms is 50 packets a second, as
/// many as a 600 kbit/s video's), and as much more delay before a frame can be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameMs {
    Ms20,
    Ms40,
    Ms60,
}

impl FrameMs {
    pub fn from_ms(ms: u32) -> Option<FrameMs> {
        match ms {
            20 => Some(FrameMs::Ms20),
            40 => Some(FrameMs::Ms40),
            60 => Some(FrameMs::Ms60),
            _ => None,
        }
    }

    pub fn ms(self) -> u32 {
        match self {
            FrameMs::Ms20 => 20,
            FrameMs::Ms40 => 40,
            FrameMs::Ms60 => 60,
        }
    }

    /// Samples per channel in one frame at 48 kHz.
    pub fn samples(self) -> usize {
        self.ms() as usize * 48
    }

    /// Whether `samples` per channel is one of these frames.
    pub fn is_frame(samples: usize) -> bool {
        [FrameMs::Ms20, FrameMs::Ms40, FrameMs::Ms60]
            .iter()
            .any(|f| f.samples() == samples)
    }
}
/// Channels we encode (WebRTC's Opus is `opus/48000/2`; a mono source is sent on both).
pub const CHANNELS: usize = 2;
/// Samples waiting for a whole frame are dropped past this (a source that sends faster than
/// real time cannot grow memory here).
pub const MAX_PENDING_MS: u64 = 1_000;
/// AAC's samples per frame per channel.
const AAC_FRAME: usize = 1024;
/// A timestamp more than this away from where the samples so far lead restarts the timeline.
const JUMP_MS: u64 = 200;

/// Encodes one frame (20, 40 or 60 ms: [`FrameMs`]) of interleaved stereo `f32` at 48 kHz
/// into `out`; the bytes it wrote.
pub trait OpusEncode {
    fn encode(&mut self, pcm: &[f32], out: &mut [u8]) -> Result<usize, String>;
}

/// Why an audio body gave no packets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AudioError {
    #[error("not AAC")]
    NotAac,
    #[error("no AAC sequence header yet")]
    NoConfig,
    #[error("AAC this decoder cannot decode: {0}")]
    Unsupported(String),
    #[error("AAC frame did not decode: {0}")]
    Decode(String),
    #[error("Opus encoder: {0}")]
    Encode(String),
}

/// One Opus packet and its RTP timestamp (48 kHz, before a session's random offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusPacket {
    pub rtp_time: u64,
    pub payload: Vec<u8>,
}

/// A stream's AAC→Opus transcoder.
pub struct Transcoder<E> {
    encoder: E,
    /// Samples per channel in each packet.
    frame: usize,
    /// The decoder and the source's channel count.
    decoder: Option<(AacDecoder, usize)>,
    resampler: Option<FftFixedIn<f32>>,
    /// Interleaved stereo at 48 kHz, waiting for a whole frame.
    pending: Vec<f32>,
    /// RTP time of `pending[0]`.
    next_rtp: Option<u64>,
    last_ts: Option<u64>,
}

impl<E: OpusEncode> Transcoder<E> {
    pub fn new(encoder: E, frame: FrameMs) -> Self {
        Transcoder {
            encoder,
            frame: frame.samples(),
            decoder: None,
            resampler: None,
            pending: Vec::new(),
            next_rtp: None,
            last_ts: None,
        }
    }

    /// One FLV audio body at `timestamp_ms`: the Opus packets it completes, into `out`.
    pub fn push(
        &mut self,
        timestamp_ms: u64,
        body: &[u8],
        out: &mut Vec<OpusPacket>,
    ) -> Result<(), AudioError> {
        if body.len() < 2 || body[0] >> 4 != 10 {
            return Err(AudioError::NotAac);
        }
        let (kind, data) = (body[1], &body[2..]);
        if kind == 0 {
            return self.configure(data);
        }
        if self.last_ts.is_some_and(|t| timestamp_ms <= t) {
            return Ok(());
        }
        self.last_ts = Some(timestamp_ms);
        let Some((decoder, channels)) = self.decoder.as_mut() else {
            return Err(AudioError::NoConfig);
        };
        let channels = *channels;
        let packet = Packet::new_from_slice(0, 0, AAC_FRAME as u64, data);
        let decoded = decoder
            .decode(&packet)
            .map_err(|e| AudioError::Decode(e.to_string()))?;
        let planar = planar_stereo(decoded, channels);
        let resampled = match self.resampler.as_mut() {
            Some(r) if planar[0].len() == r.input_frames_next() => r
                .process(&planar, None)
                .map_err(|e| AudioError::Decode(e.to_string()))?,
            Some(_) => return Err(AudioError::Decode("a frame of an odd length".into())),
            None => planar,
        };
        // Where this frame's samples belong on the 48 kHz clock; a jump restarts there.
        let at = timestamp_ms * OPUS_RATE / 1_000;
        let expected = self
            .next_rtp
            .map(|n| n + (self.pending.len() / CHANNELS) as u64);
        let jump = JUMP_MS * OPUS_RATE / 1_000;
        if expected.is_none_or(|e| e.abs_diff(at) > jump) {
            self.pending.clear();
            self.next_rtp = Some(at);
        }
        for (l, r) in resampled[0].iter().zip(&resampled[1]) {
            self.pending.push(*l);
            self.pending.push(*r);
        }
        let max = (MAX_PENDING_MS * OPUS_RATE / 1_000) as usize * CHANNELS;
        if self.pending.len() > max {
            let cut = self.pending.len() - max;
            let cut = cut - cut % CHANNELS;
            self.pending.drain(..cut);
            self.next_rtp = self.next_rtp.map(|n| n + (cut / CHANNELS) as u64);
        }
        // Opus's largest packet (three 20 ms frames of 1,275 bytes and their header).
        let mut buf = [0u8; 3_832];
        let frame = self.frame;
        while self.pending.len() >= frame * CHANNELS {
            let n = self
                .encoder
                .encode(&self.pending[..frame * CHANNELS], &mut buf)
                .map_err(AudioError::Encode)?;
            let rtp_time = self.next_rtp.unwrap_or(0);
            out.push(OpusPacket {
                rtp_time,
                payload: buf[..n].to_vec(),
            });
            self.pending.drain(..frame * CHANNELS);
            self.next_rtp = Some(rtp_time + frame as u64);
        }
        Ok(())
    }

    /// An AudioSpecificConfig: a new decoder (and resampler), from the next frame on.
    fn configure(&mut self, asc: &[u8]) -> Result<(), AudioError> {
        let (rate, channels) = parse_asc(asc).ok_or_else(|| {
            AudioError::Unsupported("an AudioSpecificConfig this decoder cannot read".into())
        })?;
        let mut params = CodecParameters::new();
        params
            .for_codec(CODEC_TYPE_AAC)
            .with_sample_rate(rate)
            .with_extra_data(asc.to_vec().into_boxed_slice());
        let decoder = AacDecoder::try_new(&params, &DecoderOptions::default())
            .map_err(|e| AudioError::Unsupported(e.to_string()))?;
        self.resampler = if u64::from(rate) == OPUS_RATE {
            None
        } else {
            Some(
                FftFixedIn::new(rate as usize, OPUS_RATE as usize, AAC_FRAME, 1, CHANNELS)
                    .map_err(|e| AudioError::Unsupported(e.to_string()))?,
            )
        };
        self.decoder = Some((decoder, channels));
        self.pending.clear();
        self.next_rtp = None;
        Ok(())
    }
}

/// The sample rate and channel count of an AAC-LC AudioSpecificConfig (no explicit
/// frequency, no SBR/PS extension), or `None`.
pub fn parse_asc(asc: &[u8]) -> Option<(u32, usize)> {
    const RATES: [u32; 13] = [
        96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025,
        8_000, 7_350,
    ];
    let [a, b, ..] = *asc else {
        return None;
    };
    let object = a >> 3;
    let index = usize::from(((a & 0x07) << 1) | (b >> 7));
    let channels = usize::from((b >> 3) & 0x0f);
    if object != 2 || !(1..=2).contains(&channels) {
        return None;
    }
    Some((*RATES.get(index)?, channels))
}

/// A decoded frame as two planes (left, right): mono on both.
fn planar_stereo(decoded: AudioBufferRef<'_>, channels: usize) -> Vec<Vec<f32>> {
    let spec = *decoded.spec();
    let frames = decoded.frames();
    let mut interleaved = SampleBuffer::<f32>::new(frames as u64, spec);
    interleaved.copy_interleaved_ref(decoded);
    let samples = interleaved.samples();
    let ch = spec.channels.count().max(1);
    let mut left = Vec::with_capacity(frames);
    let mut right = Vec::with_capacity(frames);
    for f in samples.chunks_exact(ch) {
        left.push(f[0]);
        right.push(if channels >= 2 && ch >= 2 { f[1] } else { f[0] });
    }
    vec![left, right]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flv::FlvReader;

    /// Records the energy of each frame it is given; its "packet" is the frame's index.
    #[derive(Default)]
    struct Meter(Vec<f32>);

    impl OpusEncode for &mut Meter {
        fn encode(&mut self, pcm: &[f32], out: &mut [u8]) -> Result<usize, String> {
            assert!(FrameMs::is_frame(pcm.len() / CHANNELS), "{}", pcm.len());
            self.0.push(pcm.iter().map(|s| s * s).sum::<f32>());
            out[0] = self.0.len() as u8;
            Ok(1)
        }
    }

    fn fixture_audio() -> Vec<(u64, Vec<u8>)> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/bframes.flv"
        );
        let mut r = FlvReader::new();
        r.handle_input(&std::fs::read(path).unwrap());
        let mut out = Vec::new();
        while let Some(t) = r.poll_tag().unwrap() {
            if t.type_id == 8 {
                out.push((u64::from(t.timestamp), t.body.to_vec()));
            }
        }
        out
    }

    #[test]
    fn the_fixtures_aac_becomes_20_and_60_ms_frames_on_a_continuous_48_khz_clock() {
        for frame in [FrameMs::Ms20, FrameMs::Ms60] {
            frames_on_a_continuous_clock(frame);
        }
    }

    fn frames_on_a_continuous_clock(frame: FrameMs) {
        let tags = fixture_audio();
        let mut meter = Meter::default();
        let mut t = Transcoder::new(&mut meter, frame);
        let mut packets = Vec::new();
        for (ts, body) in &tags {
            t.push(*ts, body, &mut packets).unwrap();
        }
        let last_ts = tags.last().unwrap().0;
        // 44.1 kHz in, 48 kHz out: every sample fed, less the resampler's delay and the last
        // partial frame, comes out in frames of the size asked for.
        let expected = (last_ts * 48) as usize / frame.samples();
        assert!(
            packets.len() + 4 >= expected && packets.len() <= expected + 2,
            "{} packets for {last_ts} ms",
            packets.len()
        );
        for w in packets.windows(2) {
            assert_eq!(w[1].rtp_time - w[0].rtp_time, frame.samples() as u64);
        }
        drop(t);
        // The fixture's audio is not silence.
        let loud = meter.0.iter().filter(|e| **e > 1e-3).count();
        assert!(
            loud * 2 > meter.0.len(),
            "{loud} of {} frames have sound",
            meter.0.len()
        );
    }

    #[test]
    fn repeats_jumps_and_garbage_are_handled() {
        let tags = fixture_audio();
        let mut meter = Meter::default();
        let mut t = Transcoder::new(&mut meter, FrameMs::Ms20);
        let mut packets = Vec::new();
        assert_eq!(
            t.push(0, &tags[1].1, &mut packets),
            Err(AudioError::NoConfig)
        );
        assert_eq!(
            t.push(0, &[0x2f, 1, 2], &mut packets),
            Err(AudioError::NotAac)
        );
        for (ts, body) in &tags[..20] {
            t.push(*ts, body, &mut packets).unwrap();
        }
        let before = packets.len();
        // The same frames again (a joining viewer's burst): ignored.
        for (ts, body) in &tags[1..20] {
            t.push(*ts, body, &mut packets).unwrap();
        }
        assert_eq!(packets.len(), before);
        // A jump of ten seconds restarts the clock there.
        for (ts, body) in &tags[20..40] {
            t.push(ts + 10_000, body, &mut packets).unwrap();
        }
        let restarted = &packets[before..];
        assert!(!restarted.is_empty());
        assert!(restarted[0].rtp_time >= (tags[20].0 + 10_000) * 48);
        // A frame of garbage is an error, and the next good one decodes.
        let mut bad = tags[40].1.clone();
        bad[2..].fill(0xff);
        let _ = t.push(tags[40].0 + 10_000, &bad, &mut packets);
        t.push(tags[41].0 + 10_000, &tags[41].1, &mut packets)
            .unwrap();
        assert_eq!(parse_asc(&[0x12, 0x10]), Some((44_100, 2)));
        assert_eq!(parse_asc(&[0x2b, 0x92]), None, "HE-AAC");
    }
}
