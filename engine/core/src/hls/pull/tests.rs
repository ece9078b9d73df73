//! Scenario tests of the HLS pull: a scripted origin, `now` as a number.

use super::*;

fn origins() -> Vec<HttpOrigin> {
    vec![
        HttpOrigin::parse("http://10.0.0.1:8080/live").unwrap(),
        HttpOrigin::parse("http://10.0.0.2/hls/").unwrap(),
    ]
}

fn config(prefetch: bool) -> HlsPullConfig {
    HlsPullConfig {
        prefetch,
        idle_ms: 30_000,
        negative_ms: 1_000,
        window: 6,
        keep_extra: 2,
        start_segments: 3,
        reload_ms: 0,
    }
}

/// An origin playlist of segments `first..=last`, 2 s each.
fn playlist(first: u64, last: u64) -> String {
    let mut p = format!("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:{first}\n");
    for s in first..=last {
        p.push_str(&format!("#EXTINF:2.000,\ncam-{s}.ts\n"));
    }
    p
}

fn fetched(fx: &[HlsPullEffect]) -> Vec<(u64, String)> {
    fx.iter()
        .filter_map(|e| match e {
            HlsPullEffect::FetchSegment { seq, target } => Some((*seq, target.to_string())),
            _ => None,
        })
        .collect()
}

fn published(fx: &[HlsPullEffect]) -> Option<&PulledPlaylist> {
    fx.iter().rev().find_map(|e| match e {
        HlsPullEffect::Publish(p) => Some(p),
        _ => None,
    })
}

fn text(p: &PulledPlaylist) -> &str {
    std::str::from_utf8(&p.text).unwrap()
}

#[test]
fn urls_parse_and_segment_uris_resolve() {
    let o = HttpOrigin::parse("https://[::1]:8443/a/b/").unwrap();
    assert_eq!(
        (o.host.as_str(), o.port, o.tls, o.path.as_str()),
        ("[::1]", 8443, true, "/a/b")
    );
    let o = HttpOrigin::parse("http://[::1]/live").unwrap();
    assert_eq!((o.host.as_str(), o.port), ("[::1]", 80));
    let o = HttpOrigin::parse("http://origin").unwrap();
    assert_eq!(
        (o.port, o.path.as_str(), o.authority()),
        (80, "", "origin".to_string())
    );
    for bad in [
        "rtmp://x/live",
        "http://",
        "http://:80/x",
        "http://x/a?b",
        "http://x:y/a",
    ] {
        assert!(HttpOrigin::parse(bad).is_err(), "{bad}");
    }
    let o = &origins()[0];
    assert_eq!(
        o.resolve("/live", "cam-1.ts").unwrap().to_string(),
        "http://10.0.0.1:8080/live/cam-1.ts"
    );
    assert_eq!(
        o.resolve("/live", "/x/cam-1.ts").unwrap().to_string(),
        "http://10.0.0.1:8080/x/cam-1.ts"
    );
    assert_eq!(
        o.resolve("/live", "https://cdn.example:443/s/1.ts?k=v")
            .unwrap()
            .to_string(),
        "https://cdn.example/s/1.ts?k=v"
    );
    assert!(o.resolve("/live", "ftp://x/1.ts").is_none());
}

#[test]
fn prefetch_lists_a_segment_once_its_bytes_arrive_and_fetches_each_once() {
    let mut p = HlsPull::new(config(true), origins(), "cam", 0);
    let mut fx = Vec::new();
    p.handle_demand(Some("token=abc"), 0, &mut fx);
    assert_eq!(
        fx,
        vec![HlsPullEffect::FetchPlaylist {
            target: FetchTarget {
                host: "10.0.0.1".into(),
                port: 8080,
                tls: false,
                path: "/live/cam.m3u8?token=abc".into()
            },
            blocking: false
        }]
    );
    // A second demand while loading asks nothing more.
    fx.clear();
    p.handle_demand(None, 10, &mut fx);
    assert!(fx.is_empty());
    p.handle_playlist(Ok(&playlist(10, 15)), 50, &mut fx);
    // The last three, with the viewer's token; nothing listed before their bytes arrive.
    assert_eq!(
        fetched(&fx),
        vec![
            (
                13,
                "http://10.0.0.1:8080/live/cam-13.ts?token=abc".to_string()
            ),
            (
                14,
                "http://10.0.0.1:8080/live/cam-14.ts?token=abc".to_string()
            ),
            (
                15,
                "http://10.0.0.1:8080/live/cam-15.ts?token=abc".to_string()
            ),
        ]
    );
    assert!(published(&fx).is_none());
    // Bytes of the second arrive first: still nothing (the list starts at the first).
    fx.clear();
    p.handle_segment_started(14, &mut fx);
    assert!(published(&fx).is_none());
    p.handle_segment_started(13, &mut fx);
    assert_eq!(published(&fx).unwrap().listed, vec![13, 14]);
    fx.clear();
    // Misses of segments on the way fetch nothing more.
    p.handle_miss(13, 60, &mut fx);
    p.handle_miss(15, 60, &mut fx);
    assert!(fx.is_empty(), "{fx:?}");
    p.handle_segment_done(13, Ok(()), 70, &mut fx);
    p.handle_segment_started(15, &mut fx);
    let pl = published(&fx).unwrap();
    assert_eq!(
        pl.listed,
        vec![13, 14, 15],
        "numbered as the origin numbers them"
    );
    assert_eq!(
        text(pl),
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:13\n\
#EXTINF:2.000,\ncam-13.ts\n#EXTINF:2.000,\ncam-14.ts\n#EXTINF:2.000,\ncam-15.ts\n"
    );
    // The playlist changed: reloaded one target duration after its load began.
    assert_eq!(p.poll_timeout(), Some(2_000));
    fx.clear();
    p.handle_timeout(2_050, &mut fx);
    assert!(matches!(
        fx[..],
        [HlsPullEffect::FetchPlaylist {
            blocking: false,
            ..
        }]
    ));
    fx.clear();
    // The same playlist: half a target duration.
    p.handle_playlist(Ok(&playlist(10, 15)), 2_100, &mut fx);
    assert!(fx.is_empty());
    assert_eq!(p.poll_timeout(), Some(3_050));
    p.handle_timeout(3_050, &mut fx);
    fx.clear();
    // A new segment is fetched as soon as it is listed.
    p.handle_playlist(Ok(&playlist(11, 16)), 3_200, &mut fx);
    assert_eq!(
        fetched(&fx),
        vec![(
            16,
            "http://10.0.0.1:8080/live/cam-16.ts?token=abc".to_string()
        )]
    );
}

#[test]
fn without_prefetch_everything_is_listed_and_fetched_on_the_first_miss_only() {
    let mut p = HlsPull::new(config(false), origins(), "cam", 0);
    let mut fx = Vec::new();
    p.handle_demand(None, 0, &mut fx);
    fx.clear();
    p.handle_playlist(Ok(&playlist(1, 4)), 10, &mut fx);
    assert!(fetched(&fx).is_empty());
    assert_eq!(published(&fx).unwrap().listed, vec![1, 2, 3, 4]);
    fx.clear();
    p.handle_miss(2, 20, &mut fx);
    p.handle_miss(2, 21, &mut fx);
    p.handle_miss(2, 22, &mut fx);
    assert_eq!(
        fetched(&fx).len(),
        1,
        "one origin request however many misses"
    );
    fx.clear();
    p.handle_miss(99, 22, &mut fx);
    assert_eq!(
        fx,
        vec![HlsPullEffect::MissFailed {
            seq: 99,
            status: 404
        }]
    );
}

#[test]
fn a_failed_segment_is_negatively_cached_then_fetched_again() {
    let mut p = HlsPull::new(config(true), origins(), "cam", 0);
    let mut fx = Vec::new();
    p.handle_demand(None, 0, &mut fx);
    p.handle_playlist(Ok(&playlist(1, 1)), 10, &mut fx);
    p.handle_segment_started(1, &mut fx);
    fx.clear();
    p.handle_segment_done(1, Err(FetchError::Failed), 100, &mut fx);
    assert_eq!(
        fx,
        vec![HlsPullEffect::MissFailed {
            seq: 1,
            status: 502
        }]
    );
    fx.clear();
    p.handle_miss(1, 500, &mut fx);
    assert_eq!(
        fx,
        vec![HlsPullEffect::MissFailed {
            seq: 1,
            status: 502
        }],
        "no origin request"
    );
    fx.clear();
    // After the negative window, prefetch tries again, up to SEGMENT_RETRIES times.
    p.handle_timeout(1_100, &mut fx);
    assert_eq!(fetched(&fx).len(), 1);
    for n in 1..=SEGMENT_RETRIES {
        fx.clear();
        p.handle_segment_done(1, Err(FetchError::Timeout), 2_000 * n as u64, &mut fx);
        assert_eq!(
            fx[0],
            HlsPullEffect::MissFailed {
                seq: 1,
                status: 504
            }
        );
        fx.clear();
        p.handle_timeout(2_000 * n as u64 + 1_000, &mut fx);
        let expected = usize::from(n < SEGMENT_RETRIES);
        assert_eq!(fetched(&fx).len(), expected, "retry {n}");
    }
    // A viewer's request after the last retry's negative window asks once more.
    fx.clear();
    p.handle_miss(1, 9_000, &mut fx);
    assert_eq!(fetched(&fx).len(), 1);
}

#[test]
fn two_playlist_failures_fail_over_and_the_numbering_continues_with_a_discontinuity() {
    let mut p = HlsPull::new(config(true), origins(), "cam", 0);
    let mut fx = Vec::new();
    p.handle_demand(None, 0, &mut fx);
    p.handle_playlist(Ok(&playlist(40, 45)), 10, &mut fx);
    for s in 43..46 {
        p.handle_segment_started(s, &mut fx);
        p.handle_segment_done(s, Ok(()), 20, &mut fx);
    }
    fx.clear();
    p.handle_timeout(2_010, &mut fx);
    p.handle_playlist(Err(FetchError::Status(500)), 2_020, &mut fx);
    assert!(
        !fx.iter()
            .any(|e| matches!(e, HlsPullEffect::Unavailable { .. })),
        "it has a playlist"
    );
    fx.clear();
    let retry = p.poll_timeout().unwrap();
    p.handle_timeout(retry, &mut fx);
    fx.clear();
    p.handle_playlist(Err(FetchError::Timeout), retry + 10, &mut fx);
    assert_eq!(
        fx[0],
        HlsPullEffect::Failover {
            from: "http://10.0.0.1:8080/live".into(),
            to: "http://10.0.0.2:80/hls".into()
        }
    );
    assert!(
        matches!(&fx[1], HlsPullEffect::FetchPlaylist { target, .. } if target.to_string() == "http://10.0.0.2/hls/cam.m3u8")
    );
    fx.clear();
    // Another numbering at the second origin: its newest segment continues as 46.
    p.handle_playlist(Ok(&playlist(7, 9)), 6_000, &mut fx);
    assert_eq!(
        fetched(&fx),
        vec![(46, "http://10.0.0.2/hls/cam-9.ts".to_string())]
    );
    p.handle_segment_started(46, &mut fx);
    let pl = published(&fx).unwrap();
    assert_eq!(pl.listed, vec![43, 44, 45, 46]);
    assert!(
        text(pl).ends_with("#EXT-X-DISCONTINUITY\n#EXTINF:2.000,\ncam-46.ts\n"),
        "{}",
        text(pl)
    );
}

#[test]
fn an_unloadable_stream_is_unavailable_and_an_idle_pull_ends() {
    let one = vec![origins().remove(0)];
    let mut p = HlsPull::new(config(true), one, "cam", 0);
    let mut fx = Vec::new();
    p.handle_demand(None, 0, &mut fx);
    fx.clear();
    p.handle_playlist(Err(FetchError::Timeout), 100, &mut fx);
    assert!(
        matches!(&fx[0], HlsPullEffect::Unavailable { status: 504, reason } if reason.contains("timed out"))
    );
    fx.clear();
    p.handle_playlist(Ok("<html>"), 100, &mut fx);
    assert!(
        matches!(&fx[0], HlsPullEffect::Unavailable { status: 502, .. }),
        "not a playlist"
    );
    fx.clear();
    p.handle_timeout(30_000, &mut fx);
    assert_eq!(fx, vec![HlsPullEffect::Idle]);
}

#[test]
fn blocking_reloads_ask_for_the_next_segment() {
    let mut p = HlsPull::new(config(true), origins(), "cam", 0);
    let mut fx = Vec::new();
    p.handle_demand(None, 0, &mut fx);
    let ll = playlist(5, 6).replace(
        "#EXTM3U\n",
        "#EXTM3U\n#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES\n",
    );
    p.handle_playlist(Ok(&ll), 10, &mut fx);
    assert_eq!(p.poll_timeout(), Some(10));
    fx.clear();
    p.handle_timeout(10, &mut fx);
    assert!(
        matches!(&fx[..], [HlsPullEffect::FetchPlaylist { target, blocking: true }]
        if target.path == "/live/cam.m3u8?_HLS_msn=7")
    );
}

#[test]
fn a_multivariant_playlist_is_relayed_with_its_variant_uris_marked() {
    let mut p = HlsPull::new(config(true), origins(), "cam", 0);
    let mut fx = Vec::new();
    p.handle_demand(None, 0, &mut fx);
    fx.clear();
    let mv = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\ncam_lo.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=2000000\ncam_hi.m3u8\n";
    p.handle_playlist(Ok(mv), 10, &mut fx);
    let pl = published(&fx).unwrap();
    assert_eq!(text(pl), mv);
    let ends: Vec<&str> = pl
        .uri_ends
        .iter()
        .map(|&e| &text(pl)[..e])
        .map(|s| s.rsplit('\n').next().unwrap())
        .collect();
    assert_eq!(ends, ["cam_lo.m3u8", "cam_hi.m3u8"]);
    assert!(fetched(&fx).is_empty());
    // A variant elsewhere cannot be a stream key here.
    let mut q = HlsPull::new(config(true), vec![origins().remove(0)], "cam", 0);
    q.handle_demand(None, 0, &mut fx);
    fx.clear();
    q.handle_playlist(
        Ok("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nhi/index.m3u8\n"),
        10,
        &mut fx,
    );
    assert!(matches!(
        fx[0],
        HlsPullEffect::Unavailable { status: 502, .. }
    ));
}

#[test]
fn a_restarted_origin_continues_the_numbering_and_old_segments_are_released() {
    let mut p = HlsPull::new(config(true), vec![origins().remove(0)], "cam", 0);
    let mut fx = Vec::new();
    p.handle_demand(None, 0, &mut fx);
    p.handle_playlist(Ok(&playlist(100, 105)), 10, &mut fx);
    let mut now = 10;
    for last in 106..120 {
        now += 2_000;
        p.handle_timeout(now, &mut fx);
        p.handle_playlist(Ok(&playlist(last - 5, last)), now, &mut fx);
    }
    let released = fx
        .iter()
        .filter(|e| matches!(e, HlsPullEffect::Release(_)))
        .count();
    // 3 + 14 segments, at most window + keep_extra kept.
    assert_eq!(released, 17 - 8);
    fx.clear();
    now += 2_000;
    p.handle_timeout(now, &mut fx);
    fx.clear();
    p.handle_playlist(Ok(&playlist(0, 1)), now, &mut fx);
    assert_eq!(
        fetched(&fx).iter().map(|f| f.0).collect::<Vec<_>>(),
        vec![120]
    );
}

/// An edge reloads a playlist that cannot block every `reload_ms` whatever the target
/// duration says, measured from when each load began.
#[test]
fn an_edge_reloads_every_reload_ms_not_as_a_player_would() {
    let mut p = HlsPull::new(
        HlsPullConfig {
            reload_ms: 250,
            ..config(true)
        },
        origins(),
        "cam",
        0,
    );
    let mut fx = Vec::new();
    p.handle_demand(None, 0, &mut fx);
    fx.clear();
    p.handle_playlist(Ok(&playlist(10, 15)), 40, &mut fx);
    // Changed (the first load): 250 ms after the load began, not a target duration (2 s).
    assert_eq!(p.poll_timeout(), Some(250));
    fx.clear();
    p.handle_timeout(250, &mut fx);
    assert!(matches!(
        fx[..],
        [HlsPullEffect::FetchPlaylist {
            blocking: false,
            ..
        }]
    ));
    fx.clear();
    // Unchanged: again 250 ms after this load began, not half a target duration (1 s).
    p.handle_playlist(Ok(&playlist(10, 15)), 300, &mut fx);
    assert_eq!(p.poll_timeout(), Some(500));
}
