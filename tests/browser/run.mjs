// Drives Debian's chromium (headless, through puppeteer-core) for tests/tests/browser.rs:
// `node tests/browser/run.mjs SCENARIO JSON`, one JSON line of results on stdout. The Rust
// test starts the engines and publishers and judges the results; this only watches pages.
//
// Scenarios:
//   play     {url, seconds}: open the player, sample it every 100 ms for `seconds`.
//   console  {url, key, seconds, screenshot}: open the console until `key` shows a bitrate,
//            then screenshot it and count the bitrate line's pixels in the stream's chart.
//   failover {url, seconds, kill_pid, kill_after_s, signal}: play, send `kill_pid` SIGKILL
//            (or `signal`, e.g. SIGSTOP for a frozen edge) once playback has run
//            `kill_after_s`, keep sampling; the longest stall is measured from
//            video.currentTime.
//   page     {url, seconds}: open a page for `seconds`; its text, the player's state and log,
//            and every URL it requested.
// Every scenario takes `chromium_args` (extra command-line flags, e.g. to force QUIC on an
// origin) and reports `protocols`: each resource's URL path and `nextHopProtocol`, from the
// page's Resource Timing entries (the page itself first).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import puppeteer from "puppeteer-core";

const [scenario, argText] = process.argv.slice(2);
const args = JSON.parse(argText || "{}");
const chromium = process.env.CHROMIUM || "/usr/bin/chromium";

async function launch() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "edge-chromium-"));
  const browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--no-first-run", "--disable-component-update", "--disable-sync",
      "--autoplay-policy=no-user-gesture-required", `--user-data-dir=${dir}`,
      "--window-size=1280,900", ...(args.chromium_args || []),
    ],
    userDataDir: dir,
    defaultViewport: { width: 1280, height: 900 },
  });
  return { browser, dir };
}

// One sample of the player: its time, size and what the page reports.
const sample = (page) => page.evaluate(() => {
  const v = document.querySelector("video");
  const p = window.edgePlayer || {};
  return {
    t: v.currentTime, width: v.videoWidth, height: v.videoHeight, paused: v.paused,
    edge: p.edge, state: p.state, switches: p.switches, fatal: p.fatal, errors: p.errors,
    lastError: p.lastError, stalls: p.stalls, latency: p.latency, firstFrameMs: p.firstFrameMs,
    engine: p.engine, switchLog: p.switchLog, errorLog: p.errorLog, buffer: p.buffer,
    protocol: p.protocol, webrtc: p.webrtc,
  };
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function play(page, { url, seconds, kill_pid, kill_after_s }) {
  const console = [];
  page.on("console", (m) => console.push(m.type() + ": " + m.text()));
  page.on("pageerror", (e) => console.push("pageerror: " + e.message));
  const opened = Date.now();
  await page.goto(url, { waitUntil: "load" });
  const samples = [];
  let killedAt = null;
  let firstPlayingAt = null;
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    const s = await sample(page);
    s.at = Date.now() - opened;
    samples.push(s);
    if (firstPlayingAt === null && s.t > 0) firstPlayingAt = s.at;
    if (kill_pid && killedAt === null && firstPlayingAt !== null && s.at - firstPlayingAt >= kill_after_s * 1000) {
      process.kill(kill_pid, args.signal || "SIGKILL");
      killedAt = s.at;
    }
    await sleep(100);
  }
  // Playback between two samples: currentTime moved forward by no more than twice the
  // wall time (plus 50 ms). A jump back or ahead is a switch or a seek (a new edge's media
  // element starts its own timeline), not playback.
  const step = (a, b) => {
    const dt = b.t - a.t;
    return dt > 0 && dt <= 2 * (b.at - a.at) / 1000 + 0.05 ? dt : 0;
  };
  // The longest time without playback after `from` (after playback began, or the kill).
  const stall = (from) => {
    let longest = 0, since = null;
    for (let i = 1; i < samples.length; i++) {
      const [a, b] = [samples[i - 1], samples[i]];
      if (b.at < from) continue;
      if (step(a, b) > 0) since = null;
      else if (since === null) since = a.at;
      if (since !== null) longest = Math.max(longest, b.at - since);
    }
    return longest;
  };
  // Seconds of media played from `from` on.
  const played = (from) => {
    let sum = 0;
    for (let i = 1; i < samples.length; i++) {
      if (samples[i].at >= from) sum += step(samples[i - 1], samples[i]);
    }
    return sum;
  };
  const final = samples[samples.length - 1];
  return {
    first_playing_ms: firstPlayingAt,
    played_s: played(0),
    played_after_kill_s: killedAt === null ? null : played(killedAt),
    final,
    killed_at_ms: killedAt,
    t_at_kill: killedAt === null ? null : samples.find((s) => s.at >= killedAt).t,
    longest_stall_ms: stall(firstPlayingAt ?? 0),
    longest_stall_after_kill_ms: killedAt === null ? null : stall(killedAt),
    trace: samples.filter((_, i) => i % 5 === 0).map((s) => [s.at, Math.round(s.t * 10) / 10, s.buffer, s.state]),
    console: console.slice(-30),
  };
}

async function consolePage(page, { url, key, seconds, screenshot }) {
  const opened = Date.now();
  await page.goto(url, { waitUntil: "load" });
  let shownAt = null, row = null;
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    row = await page.evaluate((key) => {
      const r = document.querySelector(`tr[data-key="${CSS.escape(key)}"]`);
      return r && { bitrate: Number(r.getAttribute("data-bitrate")), viewers: Number(r.getAttribute("data-viewers")),
        cells: [...r.children].map((c) => c.textContent) };
    }, key);
    if (row && row.bitrate > 0 && shownAt === null) shownAt = Date.now() - opened;
    // A few more samples after the first bitrate, so the chart has a line.
    if (shownAt !== null && Date.now() - opened > shownAt + 5000) break;
    await sleep(100);
  }
  const png = await page.screenshot({ type: "png", fullPage: true });
  if (screenshot) {
    fs.mkdirSync(path.dirname(screenshot), { recursive: true });
    fs.writeFileSync(screenshot, png);
  }
  // Count, in the screenshot itself, the pixels of the bitrate line's colour inside the
  // stream's chart (the chart's own background is the page's white).
  const chart = await page.evaluate((key) => {
    const c = document.querySelector(`tr[data-key="${CSS.escape(key)}"] canvas`);
    if (!c) return null;
    const b = c.getBoundingClientRect();
    return { x: b.left + scrollX, y: b.top + scrollY, w: b.width, h: b.height };
  }, key);
  let linePixels = 0, otherPixels = 0;
  if (chart) {
    const counted = await page.evaluate(async (data, chart) => {
      const img = new Image();
      img.src = "data:image/png;base64," + data;
      await img.decode();
      const c = document.createElement("canvas");
      c.width = Math.ceil(chart.w);
      c.height = Math.ceil(chart.h);
      const ctx = c.getContext("2d");
      ctx.drawImage(img, chart.x, chart.y, chart.w, chart.h, 0, 0, chart.w, chart.h);
      const px = ctx.getImageData(0, 0, c.width, c.height).data;
      let line = 0, other = 0;
      for (let i = 0; i < px.length; i += 4) {
        const [r, g, b] = [px[i], px[i + 1], px[i + 2]];
        if (b > 150 && r < 120 && b - r > 80) line++;
        else if (r < 245 || g < 245 || b < 245) other++;
      }
      return { line, other };
    }, Buffer.from(png).toString("base64"), chart);
    linePixels = counted.line;
    otherPixels = counted.other;
  }
  return { shown_ms: shownAt, row, chart, line_pixels: linePixels, other_pixels: otherPixels };
}

async function pageOnly(page, { url, seconds }) {
  const requests = [];
  page.on("request", (r) => requests.push(r.url()));
  await page.goto(url, { waitUntil: "load" });
  await sleep(seconds * 1000);
  const seen = await page.evaluate(() => ({
    text: document.body.innerText,
    player: window.edgePlayer ? { state: window.edgePlayer.state, fatal: window.edgePlayer.fatal } : null,
    log: [...document.querySelectorAll("#log li")].map((li) => li.textContent),
    links: [...document.querySelectorAll("a")].map((a) => a.getAttribute("href")),
  }));
  return { ...seen, requests };
}

// The protocol each resource came over, by path (hls.js loads with XHR and fetch: both are
// Resource Timing entries).
const protocols = (page) => page.evaluate(() => {
  const path = (u) => { try { return new URL(u).pathname; } catch { return u; } };
  return [...performance.getEntriesByType("navigation"), ...performance.getEntriesByType("resource")]
    .map((e) => [path(e.name), e.nextHopProtocol]);
});

const { browser, dir } = await launch();
let result;
try {
  const page = await browser.newPage();
  // Keep every entry (the default buffer holds 250).
  await page.evaluateOnNewDocument(() => performance.setResourceTimingBufferSize(100000));
  if (scenario === "console") result = await consolePage(page, args);
  else if (scenario === "play" || scenario === "failover") result = await play(page, args);
  else if (scenario === "page") result = await pageOnly(page, args);
  else throw new Error("unknown scenario " + scenario);
  result.protocols = await protocols(page);
} finally {
  await browser.close();
  fs.rmSync(dir, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(result) + "\n");
