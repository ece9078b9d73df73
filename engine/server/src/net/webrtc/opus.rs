//! libopus, loaded when the first WebRTC stream needs audio: the four encoder calls the
//! transcoder makes ([`edge_core::webrtc::audio::OpusEncode`]).
//!
//! Why loaded and not linked: the Rust bindings link libopus at build time, which needs its
//! development package or a CMake build of it; the engine then would not build with only a
//! Rust toolchain, as the README promises. Loaded from `libopus.so.0` (Debian's `libopus0`,
//! which ffmpeg and browsers pull in), WebRTC audio works where the library is, and where it
//! is not, sessions play video alone and the node says why once.
//!
//! Must not: be called with a frame of another size than 20, 40 or 60 ms of 48 kHz stereo,
//! or outlive the library (the handle is never closed).

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

use edge_core::webrtc::audio::{FrameMs, OpusEncode, CHANNELS, OPUS_RATE};

/// `OPUS_APPLICATION_AUDIO`: music and speech at full quality.
const APPLICATION_AUDIO: c_int = 2049;
/// `OPUS_SET_BITRATE_REQUEST`.
const SET_BITRATE: c_int = 4002;
/// Stereo bits per second: transparent for most music, a tenth of a 720p stream.
const BITRATE: c_int = 96_000;

type Create = unsafe extern "C" fn(i32, c_int, c_int, *mut c_int) -> *mut c_void;
type Ctl = unsafe extern "C" fn(*mut c_void, c_int, ...) -> c_int;
type Encode = unsafe extern "C" fn(*mut c_void, *const f32, c_int, *mut u8, i32) -> i32;
type Destroy = unsafe extern "C" fn(*mut c_void);

/// The library's entry points.
struct Lib {
    create: Create,
    ctl: Ctl,
    encode: Encode,
    destroy: Destroy,
}

/// The loaded library, or why it could not be loaded.
fn lib() -> Result<&'static Lib, &'static str> {
    static LIB: OnceLock<Result<Lib, String>> = OnceLock::new();
    LIB.get_or_init(load).as_ref().map_err(|e| e.as_str())
}

fn load() -> Result<Lib, String> {
    // SAFETY: dlopen and dlsym with NUL-terminated names; the symbols are the documented C
    // functions of libopus 1.x, whose signatures the types above restate.
    unsafe {
        let handle = libc::dlopen(c"libopus.so.0".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if handle.is_null() {
            let e = libc::dlerror();
            let why = if e.is_null() {
                "not found".to_string()
            } else {
                CStr::from_ptr(e).to_string_lossy().into_owned()
            };
            return Err(format!(
                "libopus.so.0 could not be loaded ({why}); install libopus0"
            ));
        }
        let sym = |name: &CStr| -> Result<*mut c_void, String> {
            let p = libc::dlsym(handle, name.as_ptr() as *const c_char);
            if p.is_null() {
                Err(format!("libopus.so.0 lacks {}", name.to_string_lossy()))
            } else {
                Ok(p)
            }
        };
        Ok(Lib {
            create: std::mem::transmute::<*mut c_void, Create>(sym(c"opus_encoder_create")?),
            ctl: std::mem::transmute::<*mut c_void, Ctl>(sym(c"opus_encoder_ctl")?),
            encode: std::mem::transmute::<*mut c_void, Encode>(sym(c"opus_encode_float")?),
            destroy: std::mem::transmute::<*mut c_void, Destroy>(sym(c"opus_encoder_destroy")?),
        })
    }
}

/// One libopus encoder: 48 kHz stereo, frames of 20, 40 or 60 ms.
pub struct OpusEncoder {
    lib: &'static Lib,
    state: *mut c_void,
}

impl OpusEncoder {
    /// A new encoder, or why there is none (the library is missing, or refused).
    pub fn new() -> Result<Self, String> {
        let lib = lib()?;
        let mut err: c_int = 0;
        // SAFETY: the arguments are valid for opus_encoder_create; it returns NULL on error.
        let state = unsafe {
            (lib.create)(
                OPUS_RATE as i32,
                CHANNELS as c_int,
                APPLICATION_AUDIO,
                &mut err,
            )
        };
        if state.is_null() {
            return Err(format!("opus_encoder_create failed ({err})"));
        }
        // SAFETY: a live encoder and OPUS_SET_BITRATE's one opus_int32 argument.
        unsafe { (lib.ctl)(state, SET_BITRATE, BITRATE) };
        Ok(OpusEncoder { lib, state })
    }
}

impl OpusEncode for OpusEncoder {
    fn encode(&mut self, pcm: &[f32], out: &mut [u8]) -> Result<usize, String> {
        let frame = pcm.len() / CHANNELS;
        if !pcm.len().is_multiple_of(CHANNELS) || !FrameMs::is_frame(frame) {
            return Err(format!("a frame of {} samples", pcm.len()));
        }
        let max = i32::try_from(out.len()).unwrap_or(i32::MAX);
        // SAFETY: `pcm` holds `frame` samples per channel, interleaved, and `out` `max` bytes.
        let n = unsafe {
            (self.lib.encode)(
                self.state,
                pcm.as_ptr(),
                frame as c_int,
                out.as_mut_ptr(),
                max,
            )
        };
        usize::try_from(n).map_err(|_| format!("opus_encode_float failed ({n})"))
    }
}

impl Drop for OpusEncoder {
    fn drop(&mut self) {
        // SAFETY: the encoder was created by this library and is destroyed once.
        unsafe { (self.lib.destroy)(self.state) };
    }
}
