//! fMP4 (CMAF) boxes for LL-HLS, written by hand after ISO/IEC 14496-12: the init segment
//! (`ftyp` + `moov` with `mvex`) and a fragment's `moof` and `mdat` header. The sample bytes
//! are the caller's: a fragment is this header followed by the samples in run order.
//!
//! Why by hand and not a box crate: the engine writes eleven kinds of box with fixed layouts
//! and reads none, so a writer is about two hundred lines; the crates made for ISO BMFF
//! (mp4-atom, mp4) build a tree of owned boxes first and would add an allocation per sample
//! to every fragment of every stream. Tests parse what is written back (and ffprobe reads it
//! end to end).
//!
//! Must not: parse anything a peer sends, or copy sample data.

use bytes::Bytes;

/// The timescale of the video track: 90 kHz, as in MPEG-TS.
pub const VIDEO_TIMESCALE: u32 = 90_000;
/// Track IDs are fixed: video 1, audio 2, present or not.
pub const VIDEO_TRACK_ID: u32 = 1;
pub const AUDIO_TRACK_ID: u32 = 2;

/// `sample_flags` of a sync sample (`sample_depends_on` 2: depends on no other).
pub const SYNC_SAMPLE: u32 = 0x0200_0000;
/// `sample_flags` of a non-sync sample (`sample_depends_on` 1, `sample_is_non_sync_sample`).
pub const NON_SYNC_SAMPLE: u32 = 0x0101_0000;

/// A video codec and its decoder configuration record, as the publisher's sequence header
/// carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoCodecConfig {
    /// `avc1` with its AVCDecoderConfigurationRecord (`avcC`).
    Avc(Bytes),
    /// `hvc1` with its HEVCDecoderConfigurationRecord (`hvcC`).
    Hevc(Bytes),
    /// `av01` with its AV1CodecConfigurationRecord (`av1C`).
    Av1(Bytes),
}

/// The video track of an init segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoTrack {
    pub codec: VideoCodecConfig,
    /// From `onMetaData` (0 when unknown: decoders take the size from the parameter sets).
    pub width: u16,
    pub height: u16,
}

/// The audio track of an init segment: AAC, or MPEG audio (MP3), both as `mp4a` with an
/// `esds` naming the codec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioTrack {
    /// The decoder-specific info: AAC's AudioSpecificConfig; empty for MPEG audio.
    pub asc: Bytes,
    /// The `esds` object type: 0x40 AAC, 0x6B MPEG-1 audio, 0x69 MPEG-2 audio.
    pub object_type: u8,
    /// Samples in one coded frame: 1024 for AAC; 1152, or 576 for MPEG-2 Layer III.
    pub frame_samples: u32,
    /// The track's timescale.
    pub sample_rate: u32,
    pub channels: u16,
}

impl AudioTrack {
    pub fn aac(asc: Bytes, sample_rate: u32, channels: u16) -> AudioTrack {
        AudioTrack {
            asc,
            object_type: 0x40,
            frame_samples: 1024,
            sample_rate,
            channels,
        }
    }

    /// MPEG audio (MP3, and Layers I and II), from a frame's 4-byte header; `None` for bytes
    /// that are no frame header (a reserved version, layer or sample rate).
    pub fn mpeg_from_frame(frame: &[u8]) -> Option<AudioTrack> {
        let h = frame.get(..4)?;
        if h[0] != 0xff || h[1] & 0xe0 != 0xe0 {
            return None;
        }
        // Version: 3 = MPEG-1, 2 = MPEG-2, 0 = MPEG-2.5 (1 is reserved).
        let version = (h[1] >> 3) & 0x03;
        let layer = (h[1] >> 1) & 0x03; // 3 = Layer I, 2 = II, 1 = III
        let rate_index = (h[2] >> 2) & 0x03;
        if version == 1 || layer == 0 || rate_index == 3 {
            return None;
        }
        let base = [44_100, 48_000, 32_000][usize::from(rate_index)];
        let sample_rate = match version {
            3 => base,
            2 => base / 2,
            _ => base / 4,
        };
        let frame_samples = match (layer, version) {
            (3, _) => 384,
            (1, 2 | 0) => 576,
            _ => 1152,
        };
        let channels = if h[3] >> 6 == 3 { 1 } else { 2 };
        Some(AudioTrack::mpeg(
            version == 3,
            frame_samples,
            sample_rate,
            channels,
        ))
    }

    /// MPEG audio: MPEG-1 or MPEG-2 (2.5 included), `frame_samples` to a frame.
    pub fn mpeg(mpeg1: bool, frame_samples: u32, sample_rate: u32, channels: u16) -> AudioTrack {
        AudioTrack {
            asc: Bytes::new(),
            object_type: if mpeg1 { 0x6b } else { 0x69 },
            frame_samples,
            sample_rate,
            channels,
        }
    }
}

/// One sample of a track run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// In the track's timescale.
    pub duration: u32,
    pub size: u32,
    /// [`SYNC_SAMPLE`] or [`NON_SYNC_SAMPLE`].
    pub flags: u32,
    /// PTS − DTS in the track's timescale (signed: `trun` version 1).
    pub composition_offset: i32,
}

/// One track's samples in a fragment.
#[derive(Debug, Clone, Copy)]
pub struct TrackRun<'a> {
    pub track_id: u32,
    /// The first sample's DTS in the track's timescale (`tfdt`).
    pub base_decode_time: u64,
    pub samples: &'a [Sample],
}

/// Writes a box: its size is patched in when `body` has written its content.
fn bx(out: &mut Vec<u8>, kind: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(kind);
    body(out);
    let size = u32::try_from(out.len() - start).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

/// Writes a full box (version and flags first).
fn full(
    out: &mut Vec<u8>,
    kind: &[u8; 4],
    version: u8,
    flags: u32,
    body: impl FnOnce(&mut Vec<u8>),
) {
    bx(out, kind, |o| {
        o.extend_from_slice(&((u32::from(version) << 24) | (flags & 0x00ff_ffff)).to_be_bytes());
        body(o);
    });
}

fn u16b(o: &mut Vec<u8>, v: u16) {
    o.extend_from_slice(&v.to_be_bytes());
}

fn u32b(o: &mut Vec<u8>, v: u32) {
    o.extend_from_slice(&v.to_be_bytes());
}

/// The unity matrix of `mvhd` and `tkhd`.
fn matrix(o: &mut Vec<u8>) {
    for v in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
        u32b(o, v);
    }
}

/// The init segment for these tracks (at least one).
pub fn init_segment(video: Option<&VideoTrack>, audio: Option<&AudioTrack>) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    bx(&mut out, b"ftyp", |o| {
        o.extend_from_slice(b"iso6");
        u32b(o, 0);
        o.extend_from_slice(b"iso6cmfcmp41");
    });
    bx(&mut out, b"moov", |o| {
        full(o, b"mvhd", 0, 0, |o| {
            u32b(o, 0); // creation time
            u32b(o, 0); // modification time
            u32b(o, 1000); // timescale
            u32b(o, 0); // duration: unknown (fragmented)
            u32b(o, 0x0001_0000); // rate 1.0
            u16b(o, 0x0100); // volume 1.0
            o.extend_from_slice(&[0; 10]);
            matrix(o);
            o.extend_from_slice(&[0; 24]); // pre_defined
            u32b(o, AUDIO_TRACK_ID + 1); // next track ID
        });
        if let Some(v) = video {
            video_trak(o, v);
        }
        if let Some(a) = audio {
            audio_trak(o, a);
        }
        bx(o, b"mvex", |o| {
            for id in video
                .map(|_| VIDEO_TRACK_ID)
                .into_iter()
                .chain(audio.map(|_| AUDIO_TRACK_ID))
            {
                full(o, b"trex", 0, 0, |o| {
                    u32b(o, id);
                    u32b(o, 1); // sample description index
                    u32b(o, 0); // default duration
                    u32b(o, 0); // default size
                    u32b(o, 0); // default flags
                });
            }
        });
    });
    out
}

fn tkhd(o: &mut Vec<u8>, track_id: u32, audio: bool, width: u16, height: u16) {
    // Flags: enabled, in movie.
    full(o, b"tkhd", 0, 3, |o| {
        u32b(o, 0);
        u32b(o, 0);
        u32b(o, track_id);
        u32b(o, 0); // reserved
        u32b(o, 0); // duration
        o.extend_from_slice(&[0; 8]);
        u16b(o, 0); // layer
        u16b(o, u16::from(audio)); // alternate group
        u16b(o, if audio { 0x0100 } else { 0 }); // volume
        u16b(o, 0);
        matrix(o);
        u32b(o, u32::from(width) << 16);
        u32b(o, u32::from(height) << 16);
    });
}

fn mdhd_hdlr(o: &mut Vec<u8>, timescale: u32, handler: &[u8; 4], name: &str) {
    full(o, b"mdhd", 0, 0, |o| {
        u32b(o, 0);
        u32b(o, 0);
        u32b(o, timescale);
        u32b(o, 0);
        u16b(o, 0x55c4); // language: und
        u16b(o, 0);
    });
    full(o, b"hdlr", 0, 0, |o| {
        u32b(o, 0);
        o.extend_from_slice(handler);
        o.extend_from_slice(&[0; 12]);
        o.extend_from_slice(name.as_bytes());
        o.push(0);
    });
}

/// `dinf` and the empty sample tables around a sample entry.
fn dinf_stbl(o: &mut Vec<u8>, entry: impl FnOnce(&mut Vec<u8>)) {
    bx(o, b"dinf", |o| {
        full(o, b"dref", 0, 0, |o| {
            u32b(o, 1);
            full(o, b"url ", 0, 1, |_| {});
        });
    });
    bx(o, b"stbl", |o| {
        full(o, b"stsd", 0, 0, |o| {
            u32b(o, 1);
            entry(o);
        });
        for kind in [b"stts", b"stsc", b"stco"] {
            full(o, kind, 0, 0, |o| u32b(o, 0));
        }
        full(o, b"stsz", 0, 0, |o| {
            u32b(o, 0);
            u32b(o, 0);
        });
    });
}

fn video_trak(o: &mut Vec<u8>, v: &VideoTrack) {
    let (entry, config_box, config): (&[u8; 4], &[u8; 4], &Bytes) = match &v.codec {
        VideoCodecConfig::Avc(c) => (b"avc1", b"avcC", c),
        VideoCodecConfig::Hevc(c) => (b"hvc1", b"hvcC", c),
        VideoCodecConfig::Av1(c) => (b"av01", b"av1C", c),
    };
    bx(o, b"trak", |o| {
        tkhd(o, VIDEO_TRACK_ID, false, v.width, v.height);
        bx(o, b"mdia", |o| {
            mdhd_hdlr(o, VIDEO_TIMESCALE, b"vide", "Video");
            bx(o, b"minf", |o| {
                full(o, b"vmhd", 0, 1, |o| o.extend_from_slice(&[0; 8]));
                dinf_stbl(o, |o| {
                    bx(o, entry, |o| {
                        o.extend_from_slice(&[0; 6]);
                        u16b(o, 1); // data reference index
                        o.extend_from_slice(&[0; 16]);
                        u16b(o, v.width);
                        u16b(o, v.height);
                        u32b(o, 0x0048_0000); // 72 dpi
                        u32b(o, 0x0048_0000);
                        u32b(o, 0);
                        u16b(o, 1); // frame count
                        o.extend_from_slice(&[0; 32]); // compressor name
                        u16b(o, 0x0018); // depth
                        u16b(o, 0xffff); // pre_defined −1
                        bx(o, config_box, |o| o.extend_from_slice(config));
                    });
                });
            });
        });
    });
}

fn audio_trak(o: &mut Vec<u8>, a: &AudioTrack) {
    bx(o, b"trak", |o| {
        tkhd(o, AUDIO_TRACK_ID, true, 0, 0);
        bx(o, b"mdia", |o| {
            mdhd_hdlr(o, a.sample_rate, b"soun", "Audio");
            bx(o, b"minf", |o| {
                full(o, b"smhd", 0, 0, |o| u32b(o, 0));
                dinf_stbl(o, |o| {
                    bx(o, b"mp4a", |o| {
                        o.extend_from_slice(&[0; 6]);
                        u16b(o, 1);
                        o.extend_from_slice(&[0; 8]);
                        u16b(o, a.channels);
                        u16b(o, 16); // sample size
                        u32b(o, 0);
                        // The rate field is 16.16 and tops out below 65536 Hz.
                        u32b(o, a.sample_rate.min(0xffff) << 16);
                        esds(o, a.object_type, &a.asc);
                    });
                });
            });
        });
    });
}

/// `esds`: an ES_Descriptor naming the codec (`object_type`), with the decoder-specific info
/// (AAC's AudioSpecificConfig) when there is one.
fn esds(o: &mut Vec<u8>, object_type: u8, asc: &[u8]) {
    // Descriptor lengths in one byte: an ASC is a few bytes (bounded by the caller).
    let asc = &asc[..asc.len().min(100)];
    let dsi_len = asc.len() as u8;
    let dcd_len = 13 + if asc.is_empty() { 0 } else { 2 + dsi_len };
    let es_len = 3 + 2 + dcd_len + 3;
    full(o, b"esds", 0, 0, |o| {
        o.extend_from_slice(&[0x03, es_len, 0x00, 0x02, 0x00]); // ES_ID 2, no flags
        o.extend_from_slice(&[0x04, dcd_len, object_type, 0x15]); // audio stream
        o.extend_from_slice(&[0, 0, 0]); // buffer size
        u32b(o, 0); // max bitrate
        u32b(o, 0); // average bitrate
        if !asc.is_empty() {
            o.extend_from_slice(&[0x05, dsi_len]);
            o.extend_from_slice(asc);
        }
        o.extend_from_slice(&[0x06, 0x01, 0x02]); // SLConfig: predefined MP4
    });
}

/// The `moof` of fragment `sequence` and the header of its `mdat`: the samples of every
/// run, in run order, follow it.
pub fn fragment_header(sequence: u32, runs: &[TrackRun<'_>]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(128 + 16 * runs.iter().map(|r| r.samples.len()).sum::<usize>());
    // Where each run's `data_offset` goes, patched once the moof's size is known.
    let mut offsets = Vec::with_capacity(runs.len());
    bx(&mut out, b"moof", |o| {
        full(o, b"mfhd", 0, 0, |o| u32b(o, sequence));
        for run in runs {
            bx(o, b"traf", |o| {
                // default-base-is-moof
                full(o, b"tfhd", 0, 0x02_0000, |o| u32b(o, run.track_id));
                full(o, b"tfdt", 1, 0, |o| {
                    o.extend_from_slice(&run.base_decode_time.to_be_bytes())
                });
                // data offset, duration, size, flags and composition offset per sample.
                full(o, b"trun", 1, 0x0f01, |o| {
                    u32b(o, run.samples.len() as u32);
                    offsets.push(o.len());
                    u32b(o, 0);
                    for s in run.samples {
                        u32b(o, s.duration);
                        u32b(o, s.size);
                        u32b(o, s.flags);
                        o.extend_from_slice(&s.composition_offset.to_be_bytes());
                    }
                });
            });
        }
    });
    let moof_len = out.len();
    let mut data_offset = moof_len + 8;
    for (run, at) in runs.iter().zip(offsets) {
        let offset = u32::try_from(data_offset).unwrap_or(u32::MAX);
        out[at..at + 4].copy_from_slice(&offset.to_be_bytes());
        data_offset += run.samples.iter().map(|s| s.size as usize).sum::<usize>();
    }
    let mdat_len = u32::try_from(data_offset - moof_len).unwrap_or(u32::MAX);
    u32b(&mut out, mdat_len);
    out.extend_from_slice(b"mdat");
    out
}

/// A box as read back: its type and content (tests and the fuzz target check the writer
/// with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoxRef<'a> {
    pub kind: [u8; 4],
    pub body: &'a [u8],
}

/// Splits `data` into its top-level boxes; `None` if a size does not fit.
pub fn read_boxes(mut data: &[u8]) -> Option<Vec<BoxRef<'_>>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let size = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as usize;
        let kind: [u8; 4] = data.get(4..8)?.try_into().ok()?;
        if size < 8 || size > data.len() {
            return None;
        }
        out.push(BoxRef {
            kind,
            body: &data[8..size],
        });
        data = &data[size..];
    }
    Some(out)
}

/// The first box of `kind` along `path` from `data` (each step a child of the last);
/// full boxes' version and flags stay in the body.
pub fn find_box<'a>(data: &'a [u8], path: &[&[u8; 4]]) -> Option<&'a [u8]> {
    let (first, rest) = path.split_first()?;
    let found = read_boxes(data)?.into_iter().find(|b| &b.kind == *first)?;
    if rest.is_empty() {
        Some(found.body)
    } else {
        find_box(found.body, rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avc() -> VideoTrack {
        VideoTrack {
            codec: VideoCodecConfig::Avc(Bytes::from_static(&[
                1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 1, 0x67, 1, 0, 1, 0x68,
            ])),
            width: 1280,
            height: 720,
        }
    }

    fn aac() -> AudioTrack {
        AudioTrack::aac(Bytes::from_static(&[0x12, 0x10]), 44_100, 2)
    }

    #[test]
    fn mpeg_audio_tracks_come_from_frame_headers() {
        // MPEG-1 Layer III, 44.1 kHz, joint stereo; MPEG-2 Layer III, 22.05 kHz, mono.
        let mp3 = AudioTrack::mpeg_from_frame(&[0xff, 0xfb, 0x90, 0x44]).unwrap();
        assert_eq!(
            (
                mp3.object_type,
                mp3.frame_samples,
                mp3.sample_rate,
                mp3.channels
            ),
            (0x6b, 1152, 44_100, 2)
        );
        let mp3 = AudioTrack::mpeg_from_frame(&[0xff, 0xf3, 0x80, 0xc4]).unwrap();
        assert_eq!(
            (
                mp3.object_type,
                mp3.frame_samples,
                mp3.sample_rate,
                mp3.channels
            ),
            (0x69, 576, 22_050, 1)
        );
        // A reserved version, layer or sample rate, and bytes that are no header.
        for h in [
            [0xff, 0xeb, 0x90, 0],
            [0xff, 0xf9, 0x90, 0],
            [0xff, 0xfb, 0x9c, 0],
        ] {
            assert_eq!(AudioTrack::mpeg_from_frame(&h), None, "{h:x?}");
        }
        assert_eq!(AudioTrack::mpeg_from_frame(&[0xff, 0xfb]), None);
        assert_eq!(AudioTrack::mpeg_from_frame(&[0x12, 0x10, 0, 0]), None);
        let init = init_segment(None, Some(&mp3));
        let esds = init.windows(4).position(|w| w == b"esds").unwrap();
        // The decoder config descriptor names MPEG-2 audio and carries no specific info.
        assert_eq!(&init[esds + 13..esds + 16], &[0x04, 13, 0x69]);
        assert_eq!(
            &init[esds + 28..esds + 31],
            &[0x06, 1, 2],
            "SLConfig follows"
        );
    }

    #[test]
    fn init_segment_nests_what_players_look_for() {
        let init = init_segment(Some(&avc()), Some(&aac()));
        let top: Vec<_> = read_boxes(&init).unwrap().iter().map(|b| b.kind).collect();
        assert_eq!(top, [*b"ftyp", *b"moov"]);
        let moov = find_box(&init, &[b"moov"]).unwrap();
        let traks: Vec<_> = read_boxes(moov)
            .unwrap()
            .into_iter()
            .filter(|b| &b.kind == b"trak")
            .collect();
        assert_eq!(traks.len(), 2);
        let stsd = find_box(traks[0].body, &[b"mdia", b"minf", b"stbl", b"stsd"]).unwrap();
        // version/flags, entry count, then the avc1 entry whose last child is the avcC.
        let entry = find_box(&stsd[8..], &[b"avc1"]).unwrap();
        let avcc = find_box(&entry[78..], &[b"avcC"]).unwrap();
        let VideoCodecConfig::Avc(record) = avc().codec else {
            unreachable!()
        };
        assert_eq!(avcc, &record[..]);
        let mdhd = find_box(traks[1].body, &[b"mdia", b"mdhd"]).unwrap();
        assert_eq!(u32::from_be_bytes(mdhd[12..16].try_into().unwrap()), 44_100);
        let mvex = find_box(moov, &[b"mvex"]).unwrap();
        assert_eq!(read_boxes(mvex).unwrap().len(), 2);
        let stsd = find_box(traks[1].body, &[b"mdia", b"minf", b"stbl", b"stsd"]).unwrap();
        let mp4a = find_box(&stsd[8..], &[b"mp4a"]).unwrap();
        let esds = find_box(&mp4a[28..], &[b"esds"]).unwrap();
        // The ASC is inside the DecoderSpecificInfo (tag 5, length 2).
        assert!(esds.windows(4).any(|w| w == [0x05, 2, 0x12, 0x10]));
    }

    #[test]
    fn fragment_offsets_point_at_each_runs_samples() {
        let video = [
            Sample {
                duration: 3000,
                size: 5,
                flags: SYNC_SAMPLE,
                composition_offset: 6000,
            },
            Sample {
                duration: 3000,
                size: 3,
                flags: NON_SYNC_SAMPLE,
                composition_offset: -3000,
            },
        ];
        let audio = [Sample {
            duration: 1024,
            size: 4,
            flags: SYNC_SAMPLE,
            composition_offset: 0,
        }];
        let runs = [
            TrackRun {
                track_id: VIDEO_TRACK_ID,
                base_decode_time: 90_000,
                samples: &video,
            },
            TrackRun {
                track_id: AUDIO_TRACK_ID,
                base_decode_time: 44_100,
                samples: &audio,
            },
        ];
        let mut frag = fragment_header(7, &runs);
        frag.extend_from_slice(b"VVVVVvvvAAAA");
        let boxes = read_boxes(&frag).unwrap();
        assert_eq!(
            boxes.iter().map(|b| b.kind).collect::<Vec<_>>(),
            [*b"moof", *b"mdat"]
        );
        assert_eq!(boxes[1].body, b"VVVVVvvvAAAA");
        let mfhd = find_box(&frag, &[b"moof", b"mfhd"]).unwrap();
        assert_eq!(&mfhd[4..8], &7u32.to_be_bytes());
        let moof = find_box(&frag, &[b"moof"]).unwrap();
        let trafs: Vec<_> = read_boxes(moof)
            .unwrap()
            .into_iter()
            .filter(|b| &b.kind == b"traf")
            .collect();
        let mut seen = Vec::new();
        for traf in trafs {
            let trun = find_box(traf.body, &[b"trun"]).unwrap();
            assert_eq!(trun[0], 1, "version 1: signed composition offsets");
            let count = u32::from_be_bytes(trun[4..8].try_into().unwrap()) as usize;
            let offset = u32::from_be_bytes(trun[8..12].try_into().unwrap()) as usize;
            let sizes: usize = (0..count)
                .map(|i| {
                    u32::from_be_bytes(trun[16 + 16 * i..20 + 16 * i].try_into().unwrap()) as usize
                })
                .sum();
            seen.push(&frag[offset..offset + sizes]);
            let tfdt = find_box(traf.body, &[b"tfdt"]).unwrap();
            assert!(u64::from_be_bytes(tfdt[4..12].try_into().unwrap()) > 0);
        }
        assert_eq!(seen, [&b"VVVVVvvv"[..], b"AAAA"]);
        let video_trun = find_box(read_boxes(moof).unwrap()[1].body, &[b"trun"]).unwrap();
        assert_eq!(
            i32::from_be_bytes(video_trun[40..44].try_into().unwrap()),
            -3000
        );
    }
}
