//! Player assets: the console page (`GET /`), the player page (`GET /player`), and the local
//! copies of the player libraries (`GET /player/hls.min.js`, `/player/mpegts.js`) that
//! `--player-assets DIR` serves.
//!
//! Everything here is read and rendered once, at startup, into shared bytes: a shard only
//! hands out clones. It must not touch the filesystem after startup (no file I/O on a shard)
//! and it holds no state per viewer; the pages do their own work in the browser, from the
//! JSON APIs every node already serves.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use bytes::Bytes;
use edge_core::http::PlayerLib;

/// The console, from the binary.
const CONSOLE_HTML: &str = include_str!("player/console.html");
/// The player, from the binary; `__HLS_JS__` and `__MPEGTS_JS__` name the libraries' URLs.
const PLAYER_HTML: &str = include_str!("player/player.html");

/// The versions the player loads from `--player-cdn`; `tests/package.json` pins the same.
const HLS_JS: &str = "hls.js@1.7.4/dist/hls.min.js";
const MPEGTS_JS: &str = "mpegts.js@1.8.2/dist/mpegts.js";

/// Largest library file `--player-assets` loads.
const MAX_ASSET_BYTES: u64 = 16 << 20;

/// The pages and libraries, rendered.
pub(crate) struct PlayerAssets {
    pub console: Bytes,
    pub player: Bytes,
    /// Indexed as [`PlayerLib::ALL`]; empty without `--player-assets`.
    libs: Vec<Bytes>,
    /// Where the libraries came from (for `--check` and the start-up log).
    pub source: String,
}

impl std::fmt::Debug for PlayerAssets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlayerAssets")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl PlayerAssets {
    /// Loads `dir`'s libraries (`--player-assets`), or points the player at `cdn`.
    /// `cluster`: this node has a registry (the player then asks `/api/v1/cluster` for more
    /// edges; without one it does not ask).
    pub(crate) fn load(
        dir: Option<&Path>,
        cdn: &str,
        cluster: bool,
    ) -> anyhow::Result<PlayerAssets> {
        let (urls, libs, source) = match dir {
            Some(dir) => {
                let libs = PlayerLib::ALL
                    .iter()
                    .map(|&lib| read_lib(dir, lib))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let urls = PlayerLib::ALL.map(|lib| format!("/player/{}", lib.file_name()));
                (urls, libs, format!("local copy in {}", dir.display()))
            }
            None => {
                let cdn = cdn.trim_end_matches('/');
                if !(cdn.starts_with("https://") || cdn.starts_with("http://"))
                    || cdn.contains(['"', '\'', '<', '>', '\\', ' '])
                {
                    bail!("--player-cdn must be an http(s):// URL without quotes or spaces");
                }
                let urls = [format!("{cdn}/{HLS_JS}"), format!("{cdn}/{MPEGTS_JS}")];
                (urls, Vec::new(), cdn.to_string())
            }
        };
        let player = PLAYER_HTML
            .replace("__HLS_JS__", &urls[0])
            .replace("__MPEGTS_JS__", &urls[1])
            .replace("__CLUSTER__", if cluster { "true" } else { "false" });
        Ok(PlayerAssets {
            console: Bytes::from_static(CONSOLE_HTML.as_bytes()),
            player: Bytes::from(player),
            libs,
            source,
        })
    }

    /// The local copy of `lib`, when `--player-assets` gave one.
    pub(crate) fn lib(&self, lib: PlayerLib) -> Option<&Bytes> {
        let i = PlayerLib::ALL.iter().position(|l| *l == lib)?;
        self.libs.get(i)
    }
}

/// `DIR/NAME`, or the file where an `npm install` puts it (`DIR/hls.js/dist/hls.min.js`,
/// `DIR/mpegts.js/dist/mpegts.js`), so that `--player-assets node_modules` works.
fn read_lib(dir: &Path, lib: PlayerLib) -> anyhow::Result<Bytes> {
    let package = match lib {
        PlayerLib::Hls => "hls.js",
        PlayerLib::Mpegts => "mpegts.js",
    };
    let candidates: [PathBuf; 2] = [
        dir.join(lib.file_name()),
        dir.join(package).join("dist").join(lib.file_name()),
    ];
    let Some(path) = candidates.iter().find(|p| p.is_file()) else {
        bail!(
            "--player-assets {}: neither {} nor {} is there",
            dir.display(),
            candidates[0].display(),
            candidates[1].display()
        );
    };
    let len = std::fs::metadata(path)
        .with_context(|| format!("--player-assets: {}", path.display()))?
        .len();
    if len > MAX_ASSET_BYTES {
        bail!(
            "--player-assets: {} is {len} bytes, more than {MAX_ASSET_BYTES}",
            path.display()
        );
    }
    let body =
        std::fs::read(path).with_context(|| format!("--player-assets: {}", path.display()))?;
    Ok(Bytes::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_player_names_the_cdn_copies_without_a_local_directory() {
        let a = PlayerAssets::load(None, "https://cdn.example/npm/", false).unwrap();
        let page = String::from_utf8_lossy(&a.player).into_owned();
        assert!(page.contains("\"https://cdn.example/npm/hls.js@1.7.4/dist/hls.min.js\""));
        assert!(page.contains("\"https://cdn.example/npm/mpegts.js@1.8.2/dist/mpegts.js\""));
        assert!(!page.contains("__HLS_JS__"));
        assert!(page.contains("const CLUSTER = false;"));
        let page = PlayerAssets::load(None, "https://cdn.example/npm/", true)
            .unwrap()
            .player;
        assert!(String::from_utf8_lossy(&page).contains("const CLUSTER = true;"));
        assert!(a.lib(PlayerLib::Hls).is_none());
        assert!(PlayerAssets::load(None, "javascript:alert(1)", false).is_err());
        assert!(PlayerAssets::load(None, "https://x/\"><script>", false).is_err());
    }

    #[test]
    fn a_local_directory_is_read_flat_or_as_npm_lays_it_out() {
        let dir = std::env::temp_dir().join(format!("edge-player-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("mpegts.js/dist")).unwrap();
        std::fs::write(dir.join("hls.min.js"), "hls").unwrap();
        std::fs::write(dir.join("mpegts.js/dist/mpegts.js"), "mpegts").unwrap();
        let a = PlayerAssets::load(Some(&dir), "https://unused", false).unwrap();
        assert_eq!(a.lib(PlayerLib::Hls).unwrap().as_ref(), b"hls");
        assert_eq!(a.lib(PlayerLib::Mpegts).unwrap().as_ref(), b"mpegts");
        let page = String::from_utf8_lossy(&a.player).into_owned();
        assert!(page.contains("\"/player/hls.min.js\""));
        std::fs::remove_file(dir.join("hls.min.js")).unwrap();
        let err = PlayerAssets::load(Some(&dir), "https://unused", false).unwrap_err();
        assert!(err.to_string().contains("hls.min.js"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
