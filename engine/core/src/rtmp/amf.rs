//! AMF0 bodies the engine builds itself: `onMetaData` (once per stream, from what the
//! publisher declared) and `onStatus` commands that rml_rtmp has no call for.

use std::collections::HashMap;

use bytes::Bytes;
use rml_amf0::Amf0Value;
use rml_rtmp::sessions::StreamMetadata;

/// The AMF0 body of an `onMetaData` data message (also an FLV script tag body).
pub fn metadata_body(m: &StreamMetadata) -> Bytes {
    let mut p: HashMap<String, Amf0Value> = HashMap::new();
    let mut num = |k: &str, v: Option<f64>| {
        if let Some(v) = v {
            p.insert(k.to_string(), Amf0Value::Number(v));
        }
    };
    num("width", m.video_width.map(f64::from));
    num("height", m.video_height.map(f64::from));
    num("videocodecid", m.video_codec_id.map(f64::from));
    num("videodatarate", m.video_bitrate_kbps.map(f64::from));
    num("framerate", m.video_frame_rate.map(f64::from));
    num("audiocodecid", m.audio_codec_id.map(f64::from));
    num("audiodatarate", m.audio_bitrate_kbps.map(f64::from));
    num("audiosamplerate", m.audio_sample_rate.map(f64::from));
    num("audiochannels", m.audio_channels.map(f64::from));
    if let Some(stereo) = m.audio_is_stereo {
        p.insert("stereo".into(), Amf0Value::Boolean(stereo));
    }
    if let Some(enc) = &m.encoder {
        p.insert("encoder".into(), Amf0Value::Utf8String(enc.clone()));
    }
    encode(vec![
        Amf0Value::Utf8String("onMetaData".into()),
        Amf0Value::Object(p),
    ])
}

/// The metadata in an `onMetaData` body (optionally behind `@setDataFrame`), for re-publishing.
pub fn metadata_from_body(body: &[u8]) -> Option<StreamMetadata> {
    let values = rml_amf0::deserialize(&mut &body[..]).ok()?;
    let props = values.into_iter().find_map(|v| match v {
        Amf0Value::Object(p) => Some(p),
        _ => None,
    })?;
    let num = |k: &str| match props.get(k) {
        Some(Amf0Value::Number(n)) => Some(*n),
        _ => None,
    };
    let mut m = StreamMetadata::new();
    m.video_width = num("width").map(|v| v as u32);
    m.video_height = num("height").map(|v| v as u32);
    m.video_codec_id = num("videocodecid").map(|v| v as u32);
    m.video_bitrate_kbps = num("videodatarate").map(|v| v as u32);
    m.video_frame_rate = num("framerate").map(|v| v as f32);
    m.audio_codec_id = num("audiocodecid").map(|v| v as u32);
    m.audio_bitrate_kbps = num("audiodatarate").map(|v| v as u32);
    m.audio_sample_rate = num("audiosamplerate").map(|v| v as u32);
    m.audio_channels = num("audiochannels").map(|v| v as u32);
    m.audio_is_stereo = match props.get("stereo") {
        Some(Amf0Value::Boolean(b)) => Some(*b),
        _ => None,
    };
    m.encoder = match props.get("encoder") {
        Some(Amf0Value::Utf8String(s)) => Some(s.clone()),
        _ => None,
    };
    Some(m)
}

/// The AMF0 body of `onStatus(null, {level, code, description})`.
pub fn status_body(level: &str, code: &str, description: &str) -> Bytes {
    let mut info = HashMap::new();
    info.insert("level".to_string(), Amf0Value::Utf8String(level.into()));
    info.insert("code".to_string(), Amf0Value::Utf8String(code.into()));
    info.insert(
        "description".to_string(),
        Amf0Value::Utf8String(description.into()),
    );
    encode(vec![
        Amf0Value::Utf8String("onStatus".into()),
        Amf0Value::Number(0.0),
        Amf0Value::Null,
        Amf0Value::Object(info),
    ])
}

fn encode(values: Vec<Amf0Value>) -> Bytes {
    // Serialising strings, numbers, booleans and objects cannot fail: rml_amf0 only errors on
    // strings longer than 65 535 bytes, and every string here is short.
    Bytes::from(rml_amf0::serialize(&values).expect("short AMF0 values always serialise"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips() {
        let mut m = StreamMetadata::new();
        m.video_width = Some(320);
        m.audio_sample_rate = Some(44100);
        m.encoder = Some("Lavf".into());
        let body = metadata_body(&m);
        let vals = rml_amf0::deserialize(&mut &body[..]).unwrap();
        assert_eq!(vals[0], Amf0Value::Utf8String("onMetaData".into()));
        let props = vals[1].clone().get_object_properties().unwrap();
        assert_eq!(props["width"], Amf0Value::Number(320.0));
        assert_eq!(props["audiosamplerate"], Amf0Value::Number(44100.0));
        assert_eq!(props.len(), 3);
        let back = metadata_from_body(&body).unwrap();
        assert_eq!(back.video_width, Some(320));
        assert_eq!(back.audio_sample_rate, Some(44100));
        assert_eq!(back.encoder.as_deref(), Some("Lavf"));
        assert_eq!(back.video_height, None);
        assert!(metadata_from_body(b"\x05").is_none());
    }

    #[test]
    fn status_has_code() {
        let body = status_body("status", "NetStream.Play.UnpublishNotify", "gone");
        let vals = rml_amf0::deserialize(&mut &body[..]).unwrap();
        assert_eq!(vals[0], Amf0Value::Utf8String("onStatus".into()));
        let info = vals[3].clone().get_object_properties().unwrap();
        assert_eq!(
            info["code"],
            Amf0Value::Utf8String("NetStream.Play.UnpublishNotify".into())
        );
    }
}
