//! AMF0: a bounded reader for what peers send (commands, `onMetaData`, status objects) and an
//! ordered writer for the bodies the engine builds (`connect`, `_result`, `onStatus`,
//! `onMetaData`).
//!
//! The reader is ours, not rml_amf0's `deserialize`: that one recurses without a depth limit
//! (a 40 KB message of nested objects overflows a shard's stack), reads strings short without
//! an error, and allocates one value per byte of input with no bound. Values still come out
//! as rml_amf0's [`Amf0Value`], so callers match on a familiar type. The writer keeps object
//! properties in the order given, so the bytes the engine sends are the same on every run.
//!
//! Must not: recurse deeper than [`MAX_AMF_DEPTH`], produce more than [`MAX_AMF_VALUES`]
//! values per body, or panic on any input.

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};
pub use rml_amf0::Amf0Value;

/// Deepest nesting of objects and arrays the reader accepts (`onMetaData` uses 2, commands 1).
pub const MAX_AMF_DEPTH: usize = 32;
/// Most values (at any depth) one body may hold: each costs ~56 bytes of memory, so a body of
/// one-byte `null`s would otherwise grow 56-fold when read.
pub const MAX_AMF_VALUES: usize = 65_536;
/// Longest string (short, long or XML) the reader accepts, bytes.
pub const MAX_AMF_STRING_BYTES: usize = 65_535;

/// Why an AMF0 body could not be read. The peer that sent it is closed.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum AmfError {
    /// The body ends inside a value.
    #[error("AMF0 truncated at byte {0}")]
    Truncated(usize),
    /// A type marker this reader does not know (or AMF3 inside AMF0).
    #[error("unsupported AMF0 marker {marker:#04x} at byte {offset}")]
    UnsupportedMarker { marker: u8, offset: usize },
    /// Objects or arrays nested deeper than [`MAX_AMF_DEPTH`].
    #[error("AMF0 nested deeper than {MAX_AMF_DEPTH}")]
    TooDeep,
    /// More than [`MAX_AMF_VALUES`] values.
    #[error("more than {MAX_AMF_VALUES} AMF0 values")]
    TooManyValues,
    /// A string longer than [`MAX_AMF_STRING_BYTES`].
    #[error("AMF0 string of {0} bytes (limit {MAX_AMF_STRING_BYTES})")]
    StringTooLong(usize),
    /// An object property with an empty name that is not the end marker.
    #[error("AMF0 object property without a name at byte {0}")]
    EmptyPropertyName(usize),
}

const NUMBER: u8 = 0x00;
const BOOLEAN: u8 = 0x01;
const STRING: u8 = 0x02;
const OBJECT: u8 = 0x03;
const NULL: u8 = 0x05;
const UNDEFINED: u8 = 0x06;
const REFERENCE: u8 = 0x07;
const ECMA_ARRAY: u8 = 0x08;
const OBJECT_END: u8 = 0x09;
const STRICT_ARRAY: u8 = 0x0a;
const DATE: u8 = 0x0b;
const LONG_STRING: u8 = 0x0c;
const UNSUPPORTED: u8 = 0x0d;
const XML_DOCUMENT: u8 = 0x0f;
const TYPED_OBJECT: u8 = 0x10;

/// Reads every value in `body`. A top-level object-end marker ends the list (some encoders
/// pad with one), as does the end of the body.
pub fn decode(body: &[u8]) -> Result<Vec<Amf0Value>, AmfError> {
    let mut r = Reader {
        buf: body,
        pos: 0,
        values: 0,
    };
    let mut out = Vec::new();
    while r.pos < body.len() {
        if body[r.pos] == OBJECT_END {
            break;
        }
        out.push(r.value(0)?);
    }
    Ok(out)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    values: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], AmfError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(AmfError::Truncated(self.buf.len()))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, AmfError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, AmfError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, AmfError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f64(&mut self) -> Result<f64, AmfError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_be_bytes(a))
    }

    fn string_of(&mut self, len: usize) -> Result<String, AmfError> {
        if len > MAX_AMF_STRING_BYTES {
            return Err(AmfError::StringTooLong(len));
        }
        // Peers do send Latin-1 in metadata titles; a replacement character beats a refusal.
        Ok(String::from_utf8_lossy(self.take(len)?).into_owned())
    }

    fn value(&mut self, depth: usize) -> Result<Amf0Value, AmfError> {
        self.values += 1;
        if self.values > MAX_AMF_VALUES {
            return Err(AmfError::TooManyValues);
        }
        let at = self.pos;
        Ok(match self.u8()? {
            NUMBER => Amf0Value::Number(self.f64()?),
            BOOLEAN => Amf0Value::Boolean(self.u8()? != 0),
            STRING => {
                let len = usize::from(self.u16()?);
                Amf0Value::Utf8String(self.string_of(len)?)
            }
            OBJECT => Amf0Value::Object(self.properties(depth + 1)?),
            NULL => Amf0Value::Null,
            UNDEFINED | UNSUPPORTED => Amf0Value::Undefined,
            // A reference to an earlier object: the engine never needs the target.
            REFERENCE => {
                self.u16()?;
                Amf0Value::Undefined
            }
            ECMA_ARRAY => {
                // The count is advisory; encoders disagree on it, the end marker decides.
                self.u32()?;
                Amf0Value::Object(self.properties(depth + 1)?)
            }
            STRICT_ARRAY => {
                if depth + 1 > MAX_AMF_DEPTH {
                    return Err(AmfError::TooDeep);
                }
                let count = self.u32()? as usize;
                // Every value takes at least one byte: a count past the body is a lie.
                if count > self.buf.len() - self.pos {
                    return Err(AmfError::Truncated(self.buf.len()));
                }
                let mut items = Vec::with_capacity(count.min(1024));
                for _ in 0..count {
                    items.push(self.value(depth + 1)?);
                }
                Amf0Value::StrictArray(items)
            }
            DATE => {
                let ms = self.f64()?;
                self.u16()?; // time zone, reserved
                Amf0Value::Number(ms)
            }
            LONG_STRING | XML_DOCUMENT => {
                let len = self.u32()? as usize;
                Amf0Value::Utf8String(self.string_of(len)?)
            }
            TYPED_OBJECT => {
                let len = usize::from(self.u16()?);
                self.take(len)?; // class name
                Amf0Value::Object(self.properties(depth + 1)?)
            }
            marker => return Err(AmfError::UnsupportedMarker { marker, offset: at }),
        })
    }

    /// Name/value pairs up to the end marker. A body that ends where a name would start is
    /// taken as the end too (encoders drop the marker of a trailing ECMA array).
    fn properties(&mut self, depth: usize) -> Result<HashMap<String, Amf0Value>, AmfError> {
        if depth > MAX_AMF_DEPTH {
            return Err(AmfError::TooDeep);
        }
        let mut props = HashMap::new();
        loop {
            if self.pos == self.buf.len() {
                return Ok(props);
            }
            let at = self.pos;
            let len = usize::from(self.u16()?);
            if len == 0 {
                return match self.u8() {
                    Ok(OBJECT_END) | Err(_) => Ok(props),
                    Ok(_) => Err(AmfError::EmptyPropertyName(at)),
                };
            }
            let name = self.string_of(len)?;
            let value = self.value(depth)?;
            props.insert(name, value);
        }
    }
}

/// The string at `values[i]`, if it is one.
pub fn str_at(values: &[Amf0Value], i: usize) -> Option<&str> {
    match values.get(i) {
        Some(Amf0Value::Utf8String(s)) => Some(s),
        _ => None,
    }
}

/// The number at `values[i]`, if it is one.
pub fn number_at(values: &[Amf0Value], i: usize) -> Option<f64> {
    match values.get(i) {
        Some(Amf0Value::Number(n)) => Some(*n),
        _ => None,
    }
}

/// A string property of an object value.
pub fn prop_str<'a>(object: &'a Amf0Value, key: &str) -> Option<&'a str> {
    match object {
        Amf0Value::Object(p) => match p.get(key) {
            Some(Amf0Value::Utf8String(s)) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

/// Writes AMF0 values in order. Strings longer than 65 535 bytes are cut at a character
/// boundary below the limit: the engine only writes names, codes and URLs it knows.
#[derive(Debug, Default)]
pub struct Writer {
    out: BytesMut,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn number(&mut self, n: f64) -> &mut Self {
        self.out.put_u8(NUMBER);
        self.out.put_f64(n);
        self
    }

    pub fn boolean(&mut self, b: bool) -> &mut Self {
        self.out.put_u8(BOOLEAN);
        self.out.put_u8(u8::from(b));
        self
    }

    pub fn string(&mut self, s: &str) -> &mut Self {
        self.out.put_u8(STRING);
        self.raw_string(s);
        self
    }

    pub fn null(&mut self) -> &mut Self {
        self.out.put_u8(NULL);
        self
    }

    /// Starts an object; follow with `key` + a value per property, then [`Self::end_object`].
    pub fn begin_object(&mut self) -> &mut Self {
        self.out.put_u8(OBJECT);
        self
    }

    /// A property name inside an object.
    pub fn key(&mut self, k: &str) -> &mut Self {
        self.raw_string(k);
        self
    }

    pub fn end_object(&mut self) -> &mut Self {
        self.out.put_u16(0);
        self.out.put_u8(OBJECT_END);
        self
    }

    /// Raw, already-encoded AMF0 bytes.
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.out.put_slice(bytes);
        self
    }

    pub fn finish(&mut self) -> Bytes {
        self.out.split().freeze()
    }

    fn raw_string(&mut self, s: &str) {
        let mut end = s.len().min(usize::from(u16::MAX));
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.out.put_u16(end as u16);
        self.out.put_slice(&s.as_bytes()[..end]);
    }
}

/// `onMetaData` properties the engine passes on, in the order it writes them. Others (file
/// durations and sizes, seek tables, encoder-private keys) mean nothing in a live stream.
const METADATA_NUMBERS: [&str; 9] = [
    "width",
    "height",
    "videocodecid",
    "videodatarate",
    "framerate",
    "audiocodecid",
    "audiodatarate",
    "audiosamplerate",
    "audiochannels",
];

/// The AMF0 body of an `onMetaData` data message (also an FLV script tag body), built from
/// the properties a publisher declared.
pub fn metadata_body(props: &HashMap<String, Amf0Value>) -> Bytes {
    let mut w = Writer::new();
    w.string("onMetaData").begin_object();
    for k in METADATA_NUMBERS {
        // Codec ids may be FourCCs (enhanced RTMP); the reader gives numbers or strings.
        match props.get(k) {
            Some(Amf0Value::Number(n)) => {
                w.key(k).number(*n);
            }
            Some(Amf0Value::Utf8String(s)) => {
                w.key(k).string(s);
            }
            _ => {}
        }
    }
    if let Some(Amf0Value::Boolean(b)) = props.get("stereo") {
        w.key("stereo").boolean(*b);
    }
    if let Some(Amf0Value::Utf8String(s)) = props.get("encoder") {
        w.key("encoder").string(s);
    }
    w.end_object();
    w.finish()
}

/// The metadata object of a data message: `[@setDataFrame,] onMetaData, {…}` (an ECMA array
/// or an object). `None` for any other data message.
pub fn metadata_object(values: &[Amf0Value]) -> Option<&HashMap<String, Amf0Value>> {
    let rest = match str_at(values, 0) {
        Some("@setDataFrame") => &values[1..],
        _ => values,
    };
    if str_at(rest, 0) != Some("onMetaData") {
        return None;
    }
    match rest.get(1) {
        Some(Amf0Value::Object(p)) => Some(p),
        _ => None,
    }
}

/// Whether an `onMetaData` body announces video (`videocodecid`, or a picture size), so a
/// stream is known to carry video before its first video message arrives.
pub fn metadata_declares_video(body: &[u8]) -> bool {
    let Ok(values) = decode(body) else {
        return false;
    };
    metadata_object(&values).is_some_and(|p| {
        ["videocodecid", "width", "height"].iter().any(|k| {
            matches!(
                p.get(*k),
                Some(Amf0Value::Number(_) | Amf0Value::Utf8String(_))
            )
        })
    })
}

/// A number an `onMetaData` body gives for `key` (`audiocodecid`, `audiosamplerate`, …).
pub fn metadata_number(body: &[u8], key: &str) -> Option<f64> {
    let values = decode(body).ok()?;
    match metadata_object(&values)?.get(key)? {
        Amf0Value::Number(n) => Some(*n),
        _ => None,
    }
}

/// The AMF0 body of `onStatus(0, null, {level, code, description})`.
pub fn status_body(level: &str, code: &str, description: &str) -> Bytes {
    let mut w = Writer::new();
    w.string("onStatus").number(0.0).null().begin_object();
    w.key("level").string(level);
    w.key("code").string(code);
    w.key("description").string(description);
    w.end_object();
    w.finish()
}

/// Enhanced RTMP v2's reconnect request: `onStatus` on the NetConnection, level `status`, code
/// [`RECONNECT_REQUEST`], and `tcUrl` when the client should reconnect elsewhere (without it,
/// to the URL it used).
pub fn reconnect_request_body(tc_url: Option<&str>, description: &str) -> Bytes {
    let mut w = Writer::new();
    w.string("onStatus").number(0.0).null().begin_object();
    w.key("level").string("status");
    w.key("code").string(RECONNECT_REQUEST);
    w.key("description").string(description);
    if let Some(url) = tc_url {
        w.key("tcUrl").string(url);
    }
    w.end_object();
    w.finish()
}

/// The status code of Enhanced RTMP v2's reconnect request.
pub const RECONNECT_REQUEST: &str = "NetConnection.Connect.ReconnectRequest";

/// `capsEx` bit (Enhanced RTMP v2): the client honours a reconnect request.
pub const CAPS_EX_RECONNECT: u8 = 0x01;

/// SRS's RTMP "302": `onStatus(NetConnection.Connect.Rejected)` with `ex: {code: 302,
/// redirect: tcUrl, redirect2: full URL}`.
pub fn redirect_body(tc_url: &str, url: &str) -> Bytes {
    let mut w = Writer::new();
    w.string("onStatus").number(0.0).null().begin_object();
    w.key("level").string("error");
    w.key("code").string("NetConnection.Connect.Rejected");
    w.key("description").string("RTMP 302 Redirect");
    w.key("ex").begin_object();
    w.key("code").number(302.0);
    w.key("redirect").string(tc_url);
    w.key("redirect2").string(url);
    w.end_object();
    w.end_object();
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(pairs: &[(&str, Amf0Value)]) -> Amf0Value {
        Amf0Value::Object(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn reads_what_rml_amf0_writes() {
        let values = vec![
            Amf0Value::Utf8String("connect".into()),
            Amf0Value::Number(1.0),
            obj(&[
                ("app", Amf0Value::Utf8String("live".into())),
                ("fpad", Amf0Value::Boolean(false)),
                (
                    "nested",
                    obj(&[("a", Amf0Value::StrictArray(vec![Amf0Value::Null]))]),
                ),
            ]),
            Amf0Value::Undefined,
        ];
        let bytes = rml_amf0::serialize(&values).unwrap();
        assert_eq!(decode(&bytes).unwrap(), values);
        // Every truncation is an error or a shorter list, never a panic.
        for at in 0..bytes.len() {
            let _ = decode(&bytes[..at]);
        }
    }

    #[test]
    fn writer_output_reads_back_in_order() {
        let body = status_body("status", "NetStream.Play.Start", "go");
        let v = decode(&body).unwrap();
        assert_eq!(str_at(&v, 0), Some("onStatus"));
        assert_eq!(number_at(&v, 1), Some(0.0));
        assert_eq!(v[2], Amf0Value::Null);
        assert_eq!(prop_str(&v[3], "code"), Some("NetStream.Play.Start"));
        // Properties in the order written: level, code, description.
        let level_at = body.windows(5).position(|w| w == b"level").unwrap();
        let code_at = body.windows(4).position(|w| w == b"code").unwrap();
        assert!(level_at < code_at);
        // The same bytes every time.
        assert_eq!(body, status_body("status", "NetStream.Play.Start", "go"));
    }

    #[test]
    fn ecma_array_date_long_string_and_typed_object() {
        let mut b = vec![ECMA_ARRAY, 0, 0, 0, 9]; // a wrong count: the end marker decides
        b.extend_from_slice(&[0, 1, b'd', DATE]);
        b.extend_from_slice(&1.5f64.to_be_bytes());
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&[0, 1, b's', LONG_STRING, 0, 0, 0, 2, b'h', b'i']);
        b.extend_from_slice(&[0, 1, b't', TYPED_OBJECT, 0, 1, b'C', 0, 0, OBJECT_END]);
        b.extend_from_slice(&[0, 0, OBJECT_END]);
        let v = decode(&b).unwrap();
        let Amf0Value::Object(p) = &v[0] else {
            panic!("{v:?}")
        };
        assert_eq!(p["d"], Amf0Value::Number(1.5));
        assert_eq!(p["s"], Amf0Value::Utf8String("hi".into()));
        assert_eq!(p["t"], Amf0Value::Object(HashMap::new()));
    }

    #[test]
    fn trailing_ecma_array_without_end_marker_is_accepted() {
        let mut b = vec![STRING, 0, 10];
        b.extend_from_slice(b"onMetaData");
        b.extend_from_slice(&[ECMA_ARRAY, 0, 0, 0, 1, 0, 5]);
        b.extend_from_slice(b"width");
        b.push(NUMBER);
        b.extend_from_slice(&640f64.to_be_bytes());
        let v = decode(&b).unwrap();
        let m = metadata_object(&v).unwrap();
        assert_eq!(m["width"], Amf0Value::Number(640.0));
    }

    #[test]
    fn deep_nesting_is_refused_without_recursing_far() {
        // 10 000 nested objects: `{a: {a: {a: …`. rml_amf0 recursed once per level.
        let mut b = Vec::new();
        for _ in 0..10_000 {
            b.extend_from_slice(&[OBJECT, 0, 1, b'a']);
        }
        b.push(NULL);
        assert_eq!(decode(&b), Err(AmfError::TooDeep));
        let mut arrays = Vec::new();
        for _ in 0..10_000 {
            arrays.extend_from_slice(&[STRICT_ARRAY, 0, 0, 0, 1]);
        }
        arrays.push(NULL);
        assert_eq!(decode(&arrays), Err(AmfError::TooDeep));
    }

    #[test]
    fn value_count_and_lengths_are_bounded() {
        assert_eq!(decode(&vec![NULL; 70_000]), Err(AmfError::TooManyValues));
        assert_eq!(
            decode(&[LONG_STRING, 0, 1, 0, 0]),
            Err(AmfError::StringTooLong(65_536))
        );
        // A strict array announcing 4 billion items in 5 bytes.
        assert_eq!(
            decode(&[STRICT_ARRAY, 0xff, 0xff, 0xff, 0xff]),
            Err(AmfError::Truncated(5))
        );
        assert_eq!(
            decode(&[0x11, 0]),
            Err(AmfError::UnsupportedMarker {
                marker: 0x11,
                offset: 0
            })
        );
        assert_eq!(
            decode(&[OBJECT, 0, 0, NULL]),
            Err(AmfError::EmptyPropertyName(1))
        );
    }

    #[test]
    fn metadata_keeps_live_fields_in_a_fixed_order() {
        let props: HashMap<String, Amf0Value> = [
            ("duration", Amf0Value::Number(60.0)),
            ("height", Amf0Value::Number(360.0)),
            ("width", Amf0Value::Number(640.0)),
            ("videocodecid", Amf0Value::Utf8String("hvc1".into())),
            ("stereo", Amf0Value::Boolean(true)),
            ("encoder", Amf0Value::Utf8String("Lavf".into())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let body = metadata_body(&props);
        let v = decode(&body).unwrap();
        let m = metadata_object(&v).unwrap();
        assert_eq!(m.len(), 5, "{m:?}");
        assert!(!m.contains_key("duration"));
        assert_eq!(m["videocodecid"], Amf0Value::Utf8String("hvc1".into()));
        let w = body.windows(5).position(|x| x == b"width").unwrap();
        let h = body.windows(6).position(|x| x == b"height").unwrap();
        assert!(w < h);
        // @setDataFrame in front is looked through.
        let mut with_prefix = Writer::new();
        with_prefix.string("@setDataFrame").raw(&body);
        let v = decode(&with_prefix.finish()).unwrap();
        assert_eq!(metadata_object(&v).unwrap().len(), 5);
        assert!(metadata_object(&[Amf0Value::Utf8String("@setDataFrame".into())]).is_none());
    }
}
