#include "gateway/dashboard.h"

#include <algorithm>

namespace swarm::gateway {

namespace {

// Enough for any real model; guards the arrays below against a nonsensical engine value.
constexpr int32_t kMaxBlocks = 4096;

bool Serving(const PeerView& p) { return p.state == "online" || p.state == "local"; }

}  // namespace

std::vector<BlockCoverage> ComputeCoverage(const SwarmView& view, int32_t n_blocks) {
  n_blocks = std::clamp(n_blocks, 0, kMaxBlocks);
  std::vector<BlockCoverage> blocks(n_blocks);
  for (const PeerView& p : view.peers) {
    if (!Serving(p)) continue;
    const int32_t begin = std::max(p.block_begin, 0);
    const int32_t end = std::min(p.block_end, n_blocks);
    for (int32_t b = begin; b < end; ++b) {
      blocks[b].peers += 1;
      blocks[b].throughput += std::max(p.throughput, 0.0);
    }
  }
  return blocks;
}

nlohmann::json SwarmJson(const ModelInfo& info, const SwarmView& view, const RequestLog& log,
                         const nlohmann::json& server) {
  using nlohmann::json;
  const int32_t n_blocks = view.n_blocks > 0 ? view.n_blocks : info.n_blocks;
  json blocks = json::array();
  const std::vector<BlockCoverage> coverage = ComputeCoverage(view, n_blocks);
  for (size_t b = 0; b < coverage.size(); ++b) {
    blocks.push_back(
        {{"index", b}, {"peers", coverage[b].peers}, {"throughput", coverage[b].throughput}});
  }
  json peers = json::array();
  for (const PeerView& p : view.peers) {
    json rtts = json::array();
    for (const PeerRtt& r : p.rtts) rtts.push_back({{"peer", r.peer_id}, {"ms", r.ms}});
    peers.push_back({{"id", p.id},
                     {"address", p.address},
                     {"state", p.state},
                     {"blocks", {p.block_begin, p.block_end}},
                     {"throughput", p.throughput},
                     {"measured_throughput", p.measured_throughput},
                     {"cache_tokens_left", p.cache_tokens_left},
                     {"cache_bytes_left", p.cache_bytes_left},
                     {"cache_bytes_total", p.cache_bytes_total},
                     {"rtts", std::move(rtts)}});
  }
  return json{
      {"model",
       {{"id", info.id}, {"name", info.name}, {"n_blocks", n_blocks}, {"n_ctx", info.n_ctx}}},
      {"server", server},
      {"blocks", std::move(blocks)},
      {"peers", std::move(peers)},
      {"requests", log.ToJson()}};
}

std::string_view DashboardHtml() {
  // Every value from /api/swarm is put into the page with textContent, never as HTML: peer ids
  // and addresses come from the network.
  static constexpr std::string_view kHtml = R"HTML(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Swarm dashboard</title>
<style>
  :root {
    --bg: #f6f7f9; --card: #ffffff; --text: #1d2330; --muted: #6b7385; --line: #e3e6ec;
    --red: #d64545; --amber: #e3a21a; --green: #23985a; --accent: #3867d6;
  }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.45 -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
         background: var(--bg); color: var(--text); }
  header { display: flex; align-items: baseline; gap: 16px; flex-wrap: wrap;
           padding: 18px 28px; background: var(--card); border-bottom: 1px solid var(--line); }
  header h1 { font-size: 20px; margin: 0; font-weight: 600; }
  header .model { color: var(--muted); }
  header .status { margin-left: auto; color: var(--muted); font-size: 13px; }
  .dot { display: inline-block; width: 8px; height: 8px; border-radius: 50%; margin-right: 6px;
         background: var(--green); vertical-align: middle; }
  .dot.bad { background: var(--red); }
  main { padding: 20px 28px 40px; max-width: 1400px; margin: 0 auto; }
  .stats { display: grid; grid-template-columns: repeat(auto-fit, minmax(160px, 1fr)); gap: 12px;
           margin-bottom: 18px; }
  .stat { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
          padding: 12px 16px; }
  .stat .label { color: var(--muted); font-size: 12px; text-transform: uppercase;
                 letter-spacing: .04em; }
  .stat .value { font-size: 22px; font-weight: 600; margin-top: 2px; }
  section { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
            padding: 16px 18px; margin-bottom: 18px; }
  section h2 { font-size: 15px; margin: 0 0 12px; font-weight: 600; }
  .blocks { display: flex; gap: 3px; height: 52px; }
  .block { flex: 1 1 0; min-width: 3px; border-radius: 4px; display: flex; flex-direction: column;
           align-items: center; justify-content: center; overflow: hidden; color: #1d2330;
           font-size: 13px; font-weight: 600; line-height: 1.25; }
  .block .sub { font-size: 11px; font-weight: 400; opacity: .8; white-space: nowrap; }
  .axis { display: flex; justify-content: space-between; color: var(--muted); font-size: 12px;
          margin-top: 6px; }
  .legend { display: flex; gap: 18px; color: var(--muted); font-size: 12px; margin-top: 10px; }
  .legend span::before { content: ""; display: inline-block; width: 10px; height: 10px;
                         border-radius: 2px; margin-right: 6px; vertical-align: -1px;
                         background: var(--c); }
  table { width: 100%; border-collapse: collapse; }
  th { text-align: left; font-weight: 600; color: var(--muted); font-size: 12px;
       text-transform: uppercase; letter-spacing: .04em; padding: 6px 10px;
       border-bottom: 1px solid var(--line); }
  td { padding: 7px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
  tr:last-child td { border-bottom: none; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; }
  .pill { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px;
          font-weight: 600; }
  .pill.online, .pill.local, .pill.done { background: #e2f4ea; color: #1b7a47; }
  .pill.joining, .pill.running { background: #fdf1d8; color: #94660b; }
  .pill.offline, .pill.error { background: #fbe3e3; color: #a83232; }
  .pill.cancelled { background: #eceef2; color: #596275; }
  .span { position: relative; height: 6px; background: #eceef2; border-radius: 3px;
          margin-top: 4px; min-width: 120px; }
  .span > div { position: absolute; top: 0; bottom: 0; background: var(--accent);
                border-radius: 3px; }
  .route { display: flex; flex-wrap: wrap; gap: 4px; align-items: center; }
  .hop { background: #edf1fb; color: #2c4fa3; border-radius: 4px; padding: 0 6px; }
  .arrow { color: var(--muted); }
  .empty { color: var(--muted); padding: 10px; }
  .rtt { color: var(--muted); font-size: 12px; }
  footer { color: var(--muted); font-size: 12px; text-align: center; padding-bottom: 24px; }
  footer a { color: var(--accent); text-decoration: none; }
</style>
</head>
<body>
<header>
  <h1>Swarm</h1>
  <span class="model" id="model">loading…</span>
  <span class="status" id="status"><span class="dot"></span>connecting</span>
</header>
<main>
  <div class="stats">
    <div class="stat"><div class="label">Peers online</div><div class="value" id="s-peers">–</div></div>
    <div class="stat"><div class="label">Blocks covered</div><div class="value" id="s-cover">–</div></div>
    <div class="stat"><div class="label">Weakest block</div><div class="value" id="s-weak">–</div></div>
    <div class="stat"><div class="label">Generations now</div><div class="value" id="s-active">–</div></div>
    <div class="stat"><div class="label">Requests served</div><div class="value" id="s-total">–</div></div>
    <div class="stat" title="Steps also run on a replica peer and found equal, of all steps (spans one peer serves cannot be checked)"><div class="label">Steps verified</div><div class="value" id="s-verified">–</div></div>
    <div class="stat" title="Peers caught returning wrong outputs (disagreeing with replicas, or NaN, zeros, absurd norms)"><div class="label">Liars banned</div><div class="value" id="s-banned">–</div></div>
    <div class="stat" title="Speculative decoding: drafted tokens the model accepted, tokens per traversal of the blocks, and verification chunks in flight now"><div class="label">Draft acceptance</div><div class="value" id="s-spec">–</div></div>
  </div>
  <section>
    <h2>Blocks</h2>
    <div class="blocks" id="blocks"></div>
    <div class="axis" id="axis"><span id="axis-first">0</span><span id="axis-last"></span></div>
    <div class="legend">
      <span style="--c: var(--red)">no peer</span>
      <span style="--c: var(--amber)">1 peer</span>
      <span style="--c: var(--green)">2+ peers</span>
      <span style="--c: linear-gradient(90deg, #23985a55, #23985a)">brighter = more throughput</span>
    </div>
  </section>
  <section>
    <h2>Peers</h2>
    <table>
      <thead><tr><th>Peer</th><th>Address</th><th>State</th><th>Blocks</th>
        <th class="num">Throughput</th><th class="num">Cache left</th>
        <th class="num" title="Mean time of one step through the peer, as this gateway measured it">Step time</th></tr></thead>
      <tbody id="peers"></tbody>
    </table>
  </section>
  <section>
    <h2>Recent requests</h2>
    <table>
      <thead><tr><th>Request</th><th>Status</th><th class="num">Tokens in + out</th>
        <th class="num">First token</th><th class="num">Tokens/s</th><th>Route</th></tr></thead>
      <tbody id="requests"></tbody>
    </table>
  </section>
</main>
<footer>Refreshed every 2 s from <a href="/api/swarm">/api/swarm</a> ·
  Prometheus metrics at <a href="/metrics">/metrics</a> · OpenAI-compatible API at /v1</footer>
<script>
"use strict";
function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") e.className = v;
    else if (k === "style") e.style.cssText = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}
function short(id) { id = String(id || ""); return id.length > 12 ? id.slice(0, 8) + "…" : id; }
function fmt(x, digits) {
  if (typeof x !== "number" || !isFinite(x)) return "–";
  return x.toLocaleString(undefined, {maximumFractionDigits: digits, minimumFractionDigits: 0});
}
function blockColor(peers, throughput, maxThroughput) {
  if (peers <= 0) return "rgb(214, 69, 69)";
  const base = peers === 1 ? [227, 162, 26] : [35, 152, 90];
  // Square root: a peer 10x slower than the fastest is still clearly served.
  const t = maxThroughput > 0 ? Math.sqrt(Math.min(1, throughput / maxThroughput)) : 1;
  const alpha = 0.5 + 0.5 * t;
  return `rgba(${base[0]}, ${base[1]}, ${base[2]}, ${alpha.toFixed(3)})`;
}
function renderBlocks(blocks) {
  const root = document.getElementById("blocks");
  const maxT = Math.max(0, ...blocks.map(b => b.throughput));
  // Numbers inside the cells while they are wide enough to hold them.
  const labels = blocks.length <= 40;
  root.replaceChildren(...blocks.map(b => el("div", {
    class: "block",
    style: "background:" + blockColor(b.peers, b.throughput, maxT),
    title: `block ${b.index}: ${b.peers} peer${b.peers === 1 ? "" : "s"}, ` +
           `${fmt(b.throughput, 1)} steps/s`,
  }, labels ? String(b.index) : null,
     labels ? el("span", {class: "sub"}, b.peers === 1 ? "1 peer" : `${b.peers} peers`) : null)));
  document.getElementById("axis-last").textContent = blocks.length ? String(blocks.length - 1) : "";
  document.getElementById("axis").style.display = labels ? "none" : "";
  const covered = blocks.filter(b => b.peers > 0).length;
  document.getElementById("s-cover").textContent = `${covered} / ${blocks.length}`;
  const weakest = blocks.length ? Math.min(...blocks.map(b => b.peers)) : 0;
  document.getElementById("s-weak").textContent =
      blocks.length ? `${weakest} peer${weakest === 1 ? "" : "s"}` : "–";
}
function renderPeers(peers, nBlocks) {
  const body = document.getElementById("peers");
  if (!peers.length) {
    body.replaceChildren(el("tr", {}, el("td", {colspan: 7, class: "empty"}, "No peers known yet.")));
    return;
  }
  const sorted = [...peers].sort((a, b) => a.blocks[0] - b.blocks[0] || a.blocks[1] - b.blocks[1]);
  body.replaceChildren(...sorted.map(p => {
    const [a, b] = p.blocks;
    const left = nBlocks > 0 ? (100 * Math.max(0, a) / nBlocks) : 0;
    const width = nBlocks > 0 ? (100 * Math.max(0, Math.min(b, nBlocks) - Math.max(0, a)) / nBlocks) : 0;
    const rtts = (p.rtts || []).map(r => `rtt ${short(r.peer)} ${fmt(r.ms, 1)} ms`).join(", ");
    return el("tr", {},
      el("td", {class: "mono", title: p.id}, short(p.id)),
      el("td", {class: "mono"}, p.address || "–"),
      el("td", {}, el("span", {class: "pill " + p.state}, p.state)),
      el("td", {title: `blocks ${a} to ${b - 1}`}, `[${a}:${b})`,
         el("span", {class: "rtt"}, ` ${b - a} block${b - a === 1 ? "" : "s"}`),
         el("div", {class: "span"}, el("div", {style: `left:${left}%;width:${width}%`}))),
      el("td", {class: "num"}, fmt(p.throughput, 1) + " steps/s"),
      el("td", {class: "num", title: p.cache_bytes_total > 0 ? `of ${fmt(p.cache_bytes_total / 1048576, 1)} MiB` : ""},
         p.cache_bytes_left >= 0 ? fmt(p.cache_bytes_left / 1048576, 1) + " MiB" :
           (p.cache_tokens_left < 0 ? "–" : fmt(p.cache_tokens_left, 0) + " tok"),
         p.cache_bytes_left >= 0 && p.cache_tokens_left >= 0 ?
           el("div", {class: "rtt"}, fmt(p.cache_tokens_left, 0) + " tok") : null),
      el("td", {class: "num"}, typeof p.step_ms === "number" ? fmt(p.step_ms, 2) + " ms" : "–",
         rtts ? el("div", {class: "rtt"}, rtts) : null));
  }));
}
function renderRequests(requests) {
  const body = document.getElementById("requests");
  if (!requests.length) {
    body.replaceChildren(el("tr", {}, el("td", {colspan: 6, class: "empty"}, "No requests yet.")));
    return;
  }
  body.replaceChildren(...requests.map(r => {
    const route = el("div", {class: "route"});
    (r.route || []).forEach((hop, i) => {
      if (i) route.append(el("span", {class: "arrow"}, "→"));
      route.append(el("span", {class: "hop mono", title: `${hop.peer} ${hop.address}`},
                       `${short(hop.peer)} [${hop.blocks[0]}:${hop.blocks[1]})`));
    });
    if (!(r.route || []).length) route.append(el("span", {class: "arrow"}, "–"));
    if (r.failovers > 0) route.append(el("span", {class: "pill joining"}, `${r.failovers} failover${r.failovers === 1 ? "" : "s"}`));
    return el("tr", {},
      el("td", {class: "mono", title: r.id}, short(r.id.replace(/^(chat)?cmpl-/, "")),
         el("div", {class: "rtt"}, r.endpoint)),
      el("td", {}, el("span", {class: "pill " + r.status}, r.status)),
      el("td", {class: "num"}, `${r.prompt_tokens} + ${r.completion_tokens}`),
      el("td", {class: "num"}, r.time_to_first_token_s < 0 ? "–" : fmt(r.time_to_first_token_s * 1000, 0) + " ms"),
      el("td", {class: "num"}, fmt(r.tokens_per_second, 1)),
      el("td", {}, route));
  }));
}
function setStatus(ok, text) {
  const s = document.getElementById("status");
  s.replaceChildren(el("span", {class: ok ? "dot" : "dot bad"}), text);
}
// A gateway started with --api-key answers /api/swarm only with a key: asked for once, kept for
// this tab (sessionStorage), sent as Authorization: Bearer.
let apiKey = sessionStorage.getItem("swarm-api-key") || "";
let askedForKey = false;
async function refresh() {
  try {
    const headers = apiKey ? {Authorization: "Bearer " + apiKey} : {};
    const res = await fetch("/api/swarm", {cache: "no-store", headers});
    if (res.status === 401) {
      if (!askedForKey) {
        askedForKey = true;
        const key = window.prompt("This gateway needs an API key:");
        if (key) {
          apiKey = key.trim();
          sessionStorage.setItem("swarm-api-key", apiKey);
          askedForKey = false;
          return refresh();
        }
      }
      throw new Error("an API key is needed");
    }
    if (!res.ok) throw new Error("HTTP " + res.status);
    const d = await res.json();
    const name = d.model.name && d.model.name !== d.model.id ? ` (${d.model.name})` : "";
    document.getElementById("model").textContent =
        `${d.model.id}${name} · ${d.model.n_blocks} blocks · context ${d.model.n_ctx}`;
    document.title = `Swarm · ${d.model.id}`;
    renderBlocks(d.blocks);
    renderPeers(d.peers, d.model.n_blocks);
    renderRequests(d.requests);
    const online = d.peers.filter(p => p.state === "online" || p.state === "local").length;
    document.getElementById("s-peers").textContent = `${online} / ${d.peers.length}`;
    document.getElementById("s-active").textContent = String(d.server.active_generations);
    document.getElementById("s-total").textContent = fmt(d.server.requests_total, 0);
    if (d.verification) {
      const v = d.verification, all = v.verified_steps + v.unverified_steps;
      document.getElementById("s-verified").textContent =
          all > 0 ? `${fmt(100 * v.verified_steps / all, 0)}%` : "–";
      document.getElementById("s-banned").textContent =
          `${fmt(v.peers_banned, 0)}` + (v.mismatches > 0 ? ` (${fmt(v.mismatches, 0)} mismatches)` : "");
    }
    if (d.speculative && d.speculative.traversals > 0) {
      const s = d.speculative;
      document.getElementById("s-spec").textContent =
          `${s.drafted > 0 ? fmt(100 * s.accepted / s.drafted, 0) : 0}% · ` +
          `${fmt(s.tokens / s.traversals, 2)} tok/trav · ${fmt(s.chunks_in_flight, 0)} in flight`;
    }
    setStatus(true, "updated " + new Date().toLocaleTimeString());
  } catch (e) {
    setStatus(false, "cannot reach the gateway (" + e.message + ")");
  }
}
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
)HTML";
  return kHtml;
}

}  // namespace swarm::gateway
