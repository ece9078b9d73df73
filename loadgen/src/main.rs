//! `loadgen`: publishers and viewers at scale. Try it against a running engine:
//! `loadgen --spawn --publish --viewers 100 --protocol hls=0.5,rtmp=0.5 --duration 20s`

use clap::Parser;

fn main() {
    let args = loadgen::cli::Args::parse();
    let json = args.json.clone();
    let max_error_rate = args.max_error_rate;
    let viewers = args.viewers.max(1);
    let plan = match args.clone().plan() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            std::process::exit(2);
        }
    };
    let report_plan = plan.clone();
    let outcome = match loadgen::run(plan) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            std::process::exit(2);
        }
    };
    println!("source {} ({} kbit/s)", outcome.source.0, outcome.source.1);
    println!(
        "viewers={} peak sockets={} (HLS connection pool up to {})",
        outcome.viewers, outcome.peak_sockets, outcome.hls_connections_max
    );
    print!("{}", outcome.stats.table());
    println!(
        "loadgen: CPU {:.2} s in {:.1} s ({:.1} µs per request, {:.2} ms per viewer; verify {})",
        outcome.cpu_seconds,
        outcome.elapsed.as_secs_f64(),
        outcome.cpu_us_per_request(),
        outcome.cpu_ms_per_viewer(),
        args.verify
    );
    if let Some((rss, cpu)) = outcome.engine_usage {
        println!("engine: peak RSS {rss} KiB, CPU {cpu:.2} s");
    }
    if let Some(path) = json {
        if let Err(e) = std::fs::write(&path, loadgen::to_json(&report_plan, &outcome)) {
            eprintln!("loadgen: writing {}: {e}", path.display());
            std::process::exit(2);
        }
    }
    let errors = outcome.stats.total_errors();
    let with_media = outcome
        .stats
        .counters
        .get("viewers_with_media")
        .copied()
        .unwrap_or(0);
    if outcome.viewers > 0 && with_media < outcome.viewers as u64 {
        eprintln!(
            "loadgen: {} of {} viewers received no media: is the stream published \
             (loadgen publishes with --publish), and are the names right (--stream APP/NAME)?",
            outcome.viewers as u64 - with_media,
            outcome.viewers
        );
        // Whatever --max-error-rate allows, a run in which nobody saw anything failed.
        if with_media == 0 {
            std::process::exit(1);
        }
    }
    let rate = errors as f64 / viewers as f64;
    if rate > max_error_rate {
        eprintln!("loadgen: {errors} errors ({rate:.4} per viewer) exceed --max-error-rate {max_error_rate}");
        std::process::exit(1);
    }
}
