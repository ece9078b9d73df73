//! SRTP for the media a WebRTC session sends: the session's keys, taken from its DTLS
//! handshake, and its RTP and RTCP packets protected with them, built here from the stream's
//! shared payloads.
//!
//! Why not str0m's send path: each packet written through str0m waited for a timeout of its
//! own (its pacer hands out one packet per `handle_timeout`, and a timeout visits the whole
//! session: ICE, DTLS, every stream's reports), was queued, copied and kept in a history per
//! session. At 800 viewers that path was most of a shard's user time (perf, BENCHMARKS). str0m
//! keeps what it is good at, ICE, DTLS and the RTCP viewers send; the packets of a frame go
//! out from here, each one header and one encryption per session.
//!
//! Owns: recording the SRTP keying material each session's DTLS exports (a DTLS provider that
//! wraps the one str0m would use, and hands the material to the session being built through a
//! thread-local slot); deriving the session keys (RFC 3711 §4.3 with the AES-CM PRF, as RFC
//! 7714 uses for its GCM profiles); protecting RTP (RFC 3711, RFC 7714) and RTCP (SRTCP with
//! its index); the RTP header and the RTCP sender report we send.
//!
//! Must not: parse what a peer sends (str0m does, and hands the session its NACKs and keyframe
//! requests), allocate per packet beyond the datagram it returns, or implement a primitive:
//! AES-GCM is ring's (as rustls's and quinn's), AES-CM, HMAC-SHA1 and the key derivation's
//! AES block are str0m's provider's (RustCrypto).

use std::cell::RefCell;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM};
use str0m::config::CryptoProvider;
use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
    SrtpProfile,
};
use str0m::crypto::{
    AeadAes128Gcm, Aes128CmSha1_80, Aes128CmSha1_80Cipher, CryptoError, Sha1HmacProvider,
    SrtpProvider,
};

/// The keying material a session's DTLS exported, its SRTP profile, and whether this side
/// was the DTLS client (which half of the material is ours to send with).
#[derive(Clone)]
pub(crate) struct Keys {
    material: Vec<u8>,
    profile: SrtpProfile,
    client: bool,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the material.
        write!(f, "Keys({:?}, client: {})", self.profile, self.client)
    }
}

/// Where a session's DTLS leaves its keys once the handshake exported them.
pub(crate) type KeySlot = Arc<Mutex<Option<Keys>>>;

thread_local! {
    /// The slot of the DTLS instance this thread made last: taken by [`take_slot`] right
    /// after the `Rtc` that made it was built.
    static MADE: RefCell<Option<KeySlot>> = const { RefCell::new(None) };
}

/// The key slot of the `Rtc` this thread has just built with [`provider`]; `None` if it made
/// no DTLS instance (never, for an `Rtc` built with the provider).
pub(crate) fn take_slot() -> Option<KeySlot> {
    MADE.with(|m| m.borrow_mut().take())
}

/// str0m's crypto provider (RustCrypto), its DTLS instances recording their keys.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    static TAP: OnceLock<Tap> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| {
        let tap: &'static Tap = TAP.get_or_init(|| Tap {
            inner: base().dtls_provider,
        });
        Arc::new(CryptoProvider {
            dtls_provider: tap,
            ..base().clone()
        })
    }))
}

/// The base provider's primitives, for the session keys.
fn base() -> &'static CryptoProvider {
    static BASE: OnceLock<CryptoProvider> = OnceLock::new();
    BASE.get_or_init(str0m::crypto::from_feature_flags)
}

#[derive(Debug)]
struct Tap {
    inner: &'static dyn DtlsProvider,
}

impl DtlsProvider for Tap {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        self.inner.generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let inner = self.inner.new_dtls(cert, now, dtls_version, mtu)?;
        let slot = KeySlot::default();
        MADE.with(|m| *m.borrow_mut() = Some(Arc::clone(&slot)));
        Ok(Box::new(Tapped { inner, slot }))
    }

    fn is_test(&self) -> bool {
        self.inner.is_test()
    }
}

#[derive(Debug)]
struct Tapped {
    inner: Box<dyn DtlsInstance>,
    slot: KeySlot,
}

impl DtlsInstance for Tapped {
    fn set_active(&mut self, active: bool) {
        self.inner.set_active(active)
    }
    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.inner.handle_packet(packet)
    }
    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        let output = self.inner.poll_output(buf);
        if let DtlsOutput::KeyingMaterial(material, profile) = &output {
            let keys = Keys {
                material: material.to_vec(),
                profile: *profile,
                client: self.inner.is_active(),
            };
            *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(keys);
        }
        output
    }
    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.inner.handle_timeout(now)
    }
    fn send_application_data(&mut self, data: &[u8]) -> Result<(), DtlsImplError> {
        self.inner.send_application_data(data)
    }
    fn is_active(&self) -> bool {
        self.inner.is_active()
    }
    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.inner.protocol_version()
    }
    fn is_closing(&self) -> bool {
        self.inner.is_closing()
    }
    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }
    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.inner.close()
    }
}

// RFC 3711 §4.3.1 key derivation labels.
const LABEL_RTP_KEY: u8 = 0;
const LABEL_RTP_AUTH: u8 = 1;
const LABEL_RTP_SALT: u8 = 2;
const LABEL_RTCP_KEY: u8 = 3;
const LABEL_RTCP_AUTH: u8 = 4;
const LABEL_RTCP_SALT: u8 = 5;

/// The AES-CM PRF of RFC 3711 §4.3.3 (key derivation rate 0): `out` filled with the
/// keystream of `master` from `salt` (left-aligned in 14 bytes) with `label` at byte 7.
fn derive(srtp: &dyn SrtpProvider, master: &[u8], salt: &[u8], label: u8, out: &mut [u8]) {
    let mut x = [0u8; 16];
    x[..salt.len()].copy_from_slice(salt);
    x[7] ^= label;
    let mut block = [0u8; 32];
    for (i, chunk) in out.chunks_mut(16).enumerate() {
        x[14..].copy_from_slice(&(i as u16).to_be_bytes());
        if master.len() == 32 {
            srtp.srtp_aes_256_ecb_round(master, &x, &mut block);
        } else {
            srtp.srtp_aes_128_ecb_round(master, &x, &mut block);
        }
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
}

/// One direction's cipher (RTP's or RTCP's) with its session salt.
enum Cipher {
    Cm {
        enc: Box<dyn Aes128CmSha1_80Cipher>,
        auth: [u8; 20],
        salt: [u8; 14],
    },
    /// AEAD_AES_128_GCM or AEAD_AES_256_GCM (RFC 7714), by ring (AES-NI and carry-less
    /// multiply in assembly), a packet sealed in place: in perf at 800-1,000 viewers,
    /// AES-GCM was 12 % of the engine's samples with RustCrypto's and 7 % with ring's.
    Gcm {
        /// Its key schedule (about 550 bytes), boxed: a session holds two.
        key: Box<LessSafeKey>,
        salt: [u8; 12],
    },
}

/// A GCM session key for ring (16 bytes: AES-128, 32: AES-256).
fn gcm_key(key: &[u8]) -> Option<LessSafeKey> {
    let algorithm = if key.len() == 32 {
        &AES_256_GCM
    } else {
        &AES_128_GCM
    };
    Some(LessSafeKey::new(UnboundKey::new(algorithm, key).ok()?))
}

/// Seals `buf[at..]` in place with `iv` and `aad`, then puts the tag after it.
fn seal(key: &LessSafeKey, iv: [u8; 12], aad: &[u8], buf: &mut Vec<u8>, at: usize) {
    let nonce = Nonce::assume_unique_for_key(iv);
    if let Ok(tag) = key.seal_in_place_separate_tag(nonce, Aad::from(aad), &mut buf[at..]) {
        buf.extend_from_slice(tag.as_ref());
    }
}

impl Cipher {
    /// The cipher for the labels' key, auth key and salt from the master key and salt.
    fn new(profile: SrtpProfile, master: &[u8], salt: &[u8], labels: [u8; 3]) -> Option<Cipher> {
        let srtp = base().srtp_provider;
        let [key_label, auth_label, salt_label] = labels;
        Some(match profile {
            SrtpProfile::AES128_CM_SHA1_80 => {
                let (mut key, mut auth, mut s) = ([0u8; 16], [0u8; 20], [0u8; 14]);
                derive(srtp, master, salt, key_label, &mut key);
                derive(srtp, master, salt, auth_label, &mut auth);
                derive(srtp, master, salt, salt_label, &mut s);
                Cipher::Cm {
                    enc: srtp.aes_128_cm_sha1_80().create_cipher(key, true),
                    auth,
                    salt: s,
                }
            }
            SrtpProfile::AEAD_AES_128_GCM | SrtpProfile::AEAD_AES_256_GCM => {
                let (mut key, mut s) = ([0u8; 32], [0u8; 12]);
                let key = &mut key[..master.len()];
                derive(srtp, master, salt, key_label, key);
                derive(srtp, master, salt, salt_label, &mut s);
                Cipher::Gcm {
                    key: Box::new(gcm_key(key)?),
                    salt: s,
                }
            }
            _ => return None,
        })
    }
}

/// Bytes the tag adds at most (GCM's 16; CM's HMAC 10), and CTR's scratch.
const TAG_ROOM: usize = 16;
/// The encrypted-flag and the SRTCP index after an RTCP packet.
const SRTCP_INDEX_LEN: usize = 4;
/// AES-CTR ciphers may write up to a block beyond the input.
const CTR_SCRATCH: usize = 15;

/// What a session sends with: SRTP for its RTP, SRTCP for its reports.
pub(crate) struct Protector {
    rtp: Cipher,
    rtcp: Cipher,
    srtcp_index: u32,
    hmac: &'static dyn Sha1HmacProvider,
}

impl Protector {
    /// The sending side's contexts from `keys` (the client's half of the material when this
    /// side was the DTLS client, the server's otherwise); `None` for a profile not known here.
    pub(crate) fn new(keys: &Keys) -> Option<Protector> {
        let (key_len, salt_len) = match keys.profile {
            SrtpProfile::AES128_CM_SHA1_80 => (16, 14),
            SrtpProfile::AEAD_AES_128_GCM => (16, 12),
            SrtpProfile::AEAD_AES_256_GCM => (32, 12),
            _ => return None,
        };
        let m = &keys.material;
        if m.len() != 2 * (key_len + salt_len) {
            return None;
        }
        // [client key, server key, client salt, server salt] (RFC 5764 §4.2).
        let (k, s) = if keys.client {
            (0, 2 * key_len)
        } else {
            (key_len, 2 * key_len + salt_len)
        };
        let (master, salt) = (&m[k..k + key_len], &m[s..s + salt_len]);
        Some(Protector {
            rtp: Cipher::new(
                keys.profile,
                master,
                salt,
                [LABEL_RTP_KEY, LABEL_RTP_AUTH, LABEL_RTP_SALT],
            )?,
            rtcp: Cipher::new(
                keys.profile,
                master,
                salt,
                [LABEL_RTCP_KEY, LABEL_RTCP_AUTH, LABEL_RTCP_SALT],
            )?,
            srtcp_index: 0,
            hmac: base().sha1_hmac_provider,
        })
    }

    /// The SRTP packet of RTP packet `seq` (its extended sequence number: the low 16 bits
    /// in the header, the roll-over count above them in the packet index): a retransmission
    /// made from the same values is the same bytes.
    pub(crate) fn rtp_packet(
        &mut self,
        marker: bool,
        pt: u8,
        seq: u64,
        time: u32,
        ssrc: u32,
        payload: &[u8],
    ) -> Vec<u8> {
        let header = rtp_header(marker, pt, seq as u16, time, ssrc);
        self.rtp(&header, payload, (seq >> 16) as u32)
    }

    /// An SRTP packet: `header` (12 bytes, no CSRC or extension) and `payload` encrypted
    /// with packet index `roc << 16 | seq` (the sequence number is the header's).
    fn rtp(&mut self, header: &[u8; 12], payload: &[u8], roc: u32) -> Vec<u8> {
        let ssrc = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
        let seq = u16::from_be_bytes([header[2], header[3]]);
        match &mut self.rtp {
            Cipher::Gcm { key, salt } => {
                let mut out = Vec::with_capacity(12 + payload.len() + TAG_ROOM);
                out.extend_from_slice(header);
                out.extend_from_slice(payload);
                let iv = AeadAes128Gcm::rtp_iv(*salt, ssrc, roc, seq);
                seal(key, iv, header, &mut out, 12);
                out
            }
            Cipher::Cm { enc, auth, salt } => {
                let mut out = vec![0u8; 12 + payload.len() + TAG_ROOM + CTR_SCRATCH];
                out[..12].copy_from_slice(header);
                let index = (u64::from(roc) << 16) | u64::from(seq);
                let iv = Aes128CmSha1_80::rtp_iv(*salt, ssrc, index);
                let _ = enc.encrypt(&iv, payload, &mut out[12..]);
                let at = 12 + payload.len();
                let tag = self.hmac.sha1_hmac(auth, &[&out[..at], &roc.to_be_bytes()]);
                out[at..at + Aes128CmSha1_80::HMAC_TAG_LEN]
                    .copy_from_slice(&tag[..Aes128CmSha1_80::HMAC_TAG_LEN]);
                out.truncate(at + Aes128CmSha1_80::HMAC_TAG_LEN);
                out
            }
        }
    }

    /// An SRTCP packet of compound RTCP `plain` (its first 8 bytes, header and sender SSRC,
    /// in the clear), encrypted, with the next SRTCP index.
    pub(crate) fn rtcp(&mut self, plain: &[u8]) -> Vec<u8> {
        let index = self.srtcp_index;
        self.srtcp_index = (index + 1) & 0x7fff_ffff;
        let e_index = (0x8000_0000 | index).to_be_bytes();
        let ssrc = u32::from_be_bytes([plain[4], plain[5], plain[6], plain[7]]);
        let mut aad = [0u8; 12];
        aad[..8].copy_from_slice(&plain[..8]);
        aad[8..].copy_from_slice(&e_index);
        match &mut self.rtcp {
            Cipher::Gcm { key, salt } => {
                let mut out = Vec::with_capacity(plain.len() + TAG_ROOM + SRTCP_INDEX_LEN);
                out.extend_from_slice(plain);
                let iv = AeadAes128Gcm::rtcp_iv(*salt, ssrc, index);
                seal(key, iv, &aad, &mut out, 8);
                out.extend_from_slice(&e_index);
                out
            }
            Cipher::Cm { enc, auth, salt } => {
                let mut out = vec![0u8; plain.len() + TAG_ROOM + SRTCP_INDEX_LEN + CTR_SCRATCH];
                out[..8].copy_from_slice(&plain[..8]);
                let iv = Aes128CmSha1_80::rtp_iv(*salt, ssrc, u64::from(index));
                let _ = enc.encrypt(&iv, &plain[8..], &mut out[8..]);
                let at = plain.len();
                out[at..at + 4].copy_from_slice(&e_index);
                let tag = self.hmac.sha1_hmac(auth, &[&out[..at + 4]]);
                let end = at + 4 + Aes128CmSha1_80::HMAC_TAG_LEN;
                out[at + 4..end].copy_from_slice(&tag[..Aes128CmSha1_80::HMAC_TAG_LEN]);
                out.truncate(end);
                out
            }
        }
    }
}

/// An RTP header of version 2 without padding, extension or CSRC.
fn rtp_header(marker: bool, pt: u8, seq: u16, time: u32, ssrc: u32) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[0] = 0x80;
    h[1] = (u8::from(marker) << 7) | (pt & 0x7f);
    h[2..4].copy_from_slice(&seq.to_be_bytes());
    h[4..8].copy_from_slice(&time.to_be_bytes());
    h[8..12].copy_from_slice(&ssrc.to_be_bytes());
    h
}

/// Seconds from the NTP epoch (1900) to the Unix epoch.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// `at` as a 64-bit NTP timestamp (seconds since 1900, then a binary fraction).
pub(crate) fn ntp_time(at: SystemTime) -> u64 {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs().wrapping_add(NTP_UNIX_OFFSET);
    let frac = (u64::from(since.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// An RTCP sender report (RFC 3550 §6.4.1) without report blocks: what a receiver maps the
/// track's RTP time to wall-clock time with (audio and video in sync), and its counts.
pub(crate) fn sender_report(
    ssrc: u32,
    ntp: u64,
    rtp_time: u32,
    packets: u32,
    octets: u32,
) -> [u8; 28] {
    let mut r = [0u8; 28];
    r[0] = 0x80;
    r[1] = 200;
    r[2..4].copy_from_slice(&6u16.to_be_bytes());
    r[4..8].copy_from_slice(&ssrc.to_be_bytes());
    r[8..16].copy_from_slice(&ntp.to_be_bytes());
    r[16..20].copy_from_slice(&rtp_time.to_be_bytes());
    r[20..24].copy_from_slice(&packets.to_be_bytes());
    r[24..28].copy_from_slice(&octets.to_be_bytes());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn session_keys_derive_as_in_rfc_3711_appendix_b_3() {
        let master = hex("E1F97A0D3E018BE0D64FA32C06DE4139");
        let salt = hex("0EC675AD498AFEEBB6960B3AABE6");
        let srtp = base().srtp_provider;
        let mut key = [0u8; 16];
        derive(srtp, &master, &salt, LABEL_RTP_KEY, &mut key);
        assert_eq!(key.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
        let mut s = [0u8; 14];
        derive(srtp, &master, &salt, LABEL_RTP_SALT, &mut s);
        assert_eq!(s.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
        let mut auth = [0u8; 20];
        derive(srtp, &master, &salt, LABEL_RTP_AUTH, &mut auth);
        assert_eq!(
            auth.to_vec(),
            hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
        );
    }

    fn keys(profile: SrtpProfile, len: usize) -> Keys {
        Keys {
            material: (0..len as u8).collect(),
            profile,
            client: false,
        }
    }

    /// A GCM packet opens with the session key derived from the server's half of the
    /// material, and not with the client's; its header is authenticated.
    #[test]
    fn rtp_under_gcm_opens_with_the_servers_session_key_and_authenticates_its_header() {
        let k = keys(SrtpProfile::AEAD_AES_128_GCM, 56);
        let mut p = Protector::new(&k).unwrap();
        let header = rtp_header(true, 102, 0xfffe, 90_000, 0x1234_5678);
        let payload = b"an access unit's last FU-A";
        let packet = p.rtp(&header, payload, 3);
        assert_eq!(packet.len(), 12 + payload.len() + 16);
        assert_eq!(&packet[..12], &header);
        let open = |master: &[u8], salt: &[u8], aad: &[u8]| {
            let srtp = base().srtp_provider;
            let (mut key, mut s) = ([0u8; 16], [0u8; 12]);
            derive(srtp, master, salt, LABEL_RTP_KEY, &mut key);
            derive(srtp, master, salt, LABEL_RTP_SALT, &mut s);
            let mut dec = srtp.aead_aes_128_gcm().create_cipher(key, false);
            let iv = AeadAes128Gcm::rtp_iv(s, 0x1234_5678, 3, 0xfffe);
            let mut out = vec![0u8; packet.len()];
            dec.decrypt(&iv, &[aad], &packet[12..], &mut out)
                .ok()
                .map(|n| out[..n].to_vec())
        };
        let m = &k.material;
        assert_eq!(
            open(&m[16..32], &m[44..56], &header).as_deref(),
            Some(&payload[..])
        );
        assert_eq!(
            open(&m[..16], &m[32..44], &header),
            None,
            "the client's key"
        );
        let mut other = header;
        other[1] ^= 0x80;
        assert_eq!(
            open(&m[16..32], &m[44..56], &other),
            None,
            "a changed marker"
        );
    }

    /// AES-CM with HMAC-SHA1 (the profile a client gets that offers no GCM): the tag is
    /// RFC 3711's over the header, the ciphertext and the ROC, and the keystream is the
    /// session key's at the packet's index.
    #[test]
    fn rtp_under_aes_cm_carries_the_rfc_3711_tag_and_decrypts_with_the_session_key() {
        let k = keys(SrtpProfile::AES128_CM_SHA1_80, 60);
        let mut p = Protector::new(&k).unwrap();
        let header = rtp_header(false, 96, 0x0102, 3000, 0xcafe_f00d);
        let payload: Vec<u8> = (0..200u8).collect();
        let packet = p.rtp(&header, &payload, 2);
        let (srtp, m) = (base().srtp_provider, &k.material);
        // The server's half: key at 16..32, salt at 46..60.
        let (master, salt) = (&m[16..32], &m[46..60]);
        let (mut key, mut auth, mut s) = ([0u8; 16], [0u8; 20], [0u8; 14]);
        derive(srtp, master, salt, LABEL_RTP_KEY, &mut key);
        derive(srtp, master, salt, LABEL_RTP_AUTH, &mut auth);
        derive(srtp, master, salt, LABEL_RTP_SALT, &mut s);
        let at = packet.len() - Aes128CmSha1_80::HMAC_TAG_LEN;
        let hmac = |k: &[u8], p: &[&[u8]]| base().sha1_hmac_provider.sha1_hmac(k, p);
        let index = (2u64 << 16) | 0x0102;
        assert!(Aes128CmSha1_80::rtp_verify(
            hmac,
            &auth,
            &packet[..at],
            index,
            &packet[at..]
        ));
        let mut dec = srtp.aes_128_cm_sha1_80().create_cipher(key, false);
        let iv = Aes128CmSha1_80::rtp_iv(s, 0xcafe_f00d, index);
        let mut plain = vec![0u8; at - 12 + CTR_SCRATCH];
        dec.decrypt(&iv, &packet[12..at], &mut plain).unwrap();
        assert_eq!(&plain[..at - 12], &payload[..]);
    }

    #[test]
    fn the_same_packet_protects_to_the_same_bytes_and_srtcp_indexes_count_up() {
        for (profile, len) in [
            (SrtpProfile::AES128_CM_SHA1_80, 60),
            (SrtpProfile::AEAD_AES_128_GCM, 56),
            (SrtpProfile::AEAD_AES_256_GCM, 88),
        ] {
            let mut p = Protector::new(&keys(profile, len)).unwrap();
            let header = rtp_header(false, 111, 7, 960, 42);
            // A retransmission is the packet it repeats, byte for byte.
            let a = p.rtp(&header, &[9u8; 1100], 0);
            assert_eq!(a, p.rtp(&header, &[9u8; 1100], 0), "{profile:?}");
            assert_ne!(
                a,
                p.rtp(&header, &[9u8; 1100], 1),
                "{profile:?}: another ROC"
            );
            let tag = if profile == SrtpProfile::AES128_CM_SHA1_80 {
                10
            } else {
                16
            };
            assert_eq!(a.len(), 12 + 1100 + tag);
            let sr = sender_report(42, ntp_time(UNIX_EPOCH), 0, 1, 2);
            let first = p.rtcp(&sr);
            let second = p.rtcp(&sr);
            assert_eq!(first.len(), 28 + tag + 4);
            // The E flag set and the index after the tag (GCM) or before it (CM).
            let at = if tag == 16 { first.len() - 4 } else { 28 };
            assert_eq!(&first[at..at + 4], &[0x80, 0, 0, 0]);
            assert_eq!(&second[at..at + 4], &[0x80, 0, 0, 1]);
            assert_eq!(&first[..8], &sr[..8], "header and sender SSRC in the clear");
        }
        assert!(Protector::new(&keys(SrtpProfile::AEAD_AES_128_GCM, 55)).is_none());
    }

    #[test]
    fn an_ntp_time_counts_from_1900_with_a_binary_fraction() {
        let t = UNIX_EPOCH + std::time::Duration::from_millis(1_500);
        assert_eq!(ntp_time(t), ((NTP_UNIX_OFFSET + 1) << 32) | (1 << 31));
        let sr = sender_report(1, 2, 3, 4, 5);
        assert_eq!(&sr[..4], &[0x80, 200, 0, 6]);
        assert_eq!(&sr[24..], &5u32.to_be_bytes());
    }
}
