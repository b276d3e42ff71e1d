/**
 * GET /: one self-contained page (no external assets) that polls /status
 * every POLL_MS. With bearer tokens on, open it as /#token=TOKEN: the page
 * sends the token from the fragment, which browsers never send to the server.
 *
 * It shows every member with the served node's view of it (lag and contact
 * are known on the leader; a follower's page links to the leader's), this
 * node's indexes, the write rate (commit and feed growth between polls) and
 * the elections seen while the page is open (term or leader changes). A
 * member the leader has not heard from for DOWN_MS is shown as down.
 */
const POLL_MS = 500;
const DOWN_MS = 1000;
/** Rate samples kept for the sparkline, and elections listed. */
const SAMPLES_MAX = 120;
const ELECTIONS_MAX = 10;

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cairn</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #222; background: #fafafa; }
  h1 { font-size: 1.3rem; margin: 0 0 .2rem; }
  h2 { font-size: 1.05rem; margin: 1rem 0 .2rem; }
  .sub { color: #666; margin-bottom: .5rem; }
  table { border-collapse: collapse; background: #fff; margin: .3rem 0 .6rem; }
  th, td { border: 1px solid #ddd; padding: .3rem .6rem; text-align: left; font-variant-numeric: tabular-nums; }
  th { background: #f0f0f0; }
  .leader { font-weight: bold; }
  .bad { color: #b00020; font-weight: bold; }
  .ok { color: #137333; }
  .grid { display: flex; gap: 2rem; flex-wrap: wrap; }
  #err { color: #b00020; min-height: 1.2em; }
  #live { color: #666; font-size: .85rem; }
  code { background: #eee; padding: 0 .2rem; }
  svg { background: #fff; border: 1px solid #ddd; }
</style>
</head>
<body>
<h1>cairn <span id="cluster"></span></h1>
<div class="sub">node <b id="id">?</b> &middot; role <b id="role">?</b> &middot; term <b id="term">?</b> &middot;
leader <b id="leader">?</b> &middot; cluster id <code id="clusterId">?</code> &middot; version <span id="version">?</span></div>
<div id="live">waiting for the first answer</div>
<div id="err"></div>
<h2>Nodes</h2>
<table><thead><tr><th>node</th><th>role</th><th>state</th><th>match</th><th>lag</th><th>last contact</th><th>peer</th><th>api</th></tr></thead>
<tbody id="members"></tbody></table>
<div id="view"></div>
<div class="grid">
<div>
<h2>Indexes (this node)</h2>
<table><thead><tr><th>first</th><th>last</th><th>commit</th><th>applied</th><th>checkpoint</th><th>feed first</th><th>feed last</th></tr></thead>
<tbody><tr id="idx"></tr></tbody></table>
<h2>Write rate</h2>
<div><b id="rate-entries">-</b> log entries/s &middot; <b id="rate-changes">-</b> feed changes/s <span class="sub">(last 5 s)</span></div>
<svg id="spark" width="360" height="60" viewBox="0 0 360 60" role="img" aria-label="committed entries per second"></svg>
</div>
<div>
<h2>Recent elections</h2>
<ul id="elections"><li class="sub">none since this page opened</li></ul>
<h2>Problems</h2>
<ul id="problems"></ul>
</div>
</div>
<script>
"use strict";
const POLL_MS = ${POLL_MS}, DOWN_MS = ${DOWN_MS}, SAMPLES_MAX = ${SAMPLES_MAX}, ELECTIONS_MAX = ${ELECTIONS_MAX};
// Read at every poll: pasting #token=... into the address bar changes only the fragment (no reload).
const tokenOf = () => new URLSearchParams(location.hash.slice(1)).get("token");
const $ = (id) => document.getElementById(id);
const text = (v) => (v === null || v === undefined ? "-" : String(v));
const samples = []; // {t, commit, feed}
const elections = []; // {t, term, leader}
let last = null;
function cell(row, v, cls) {
  const td = document.createElement("td");
  td.textContent = text(v);
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}
function memberRole(s, m) {
  if (s.leader && s.leader.id === m.id) return "leader";
  if (m.id === s.id) return s.role;
  return m.role === "learner" ? "learner" : "follower";
}
function memberState(s, m) {
  if (m.id === s.id) return s.role === "stopped" || s.role === "removed" ? [s.role, "bad"] : ["up", "ok"];
  if (s.role !== "leader") return ["-", ""];
  if (m.lastContactMs === null || m.lastContactMs >= DOWN_MS) return ["down", "bad"];
  return ["up", "ok"];
}
function renderMembers(s) {
  const body = $("members");
  body.replaceChildren();
  for (const m of s.members || []) {
    const tr = document.createElement("tr");
    tr.dataset.node = m.id;
    const role = memberRole(s, m);
    tr.dataset.role = role;
    cell(tr, m.id + (m.id === s.id ? " (this node)" : ""), role === "leader" ? "leader" : "");
    cell(tr, role, role === "leader" ? "leader" : "");
    const [state, cls] = memberState(s, m);
    cell(tr, state, "state " + cls).dataset.state = state;
    cell(tr, m.match);
    cell(tr, m.lag, m.lag > 0 ? "bad" : "");
    cell(tr, m.lastContactMs === null ? null : m.id === s.id ? "self" : m.lastContactMs + " ms ago");
    [m.peer, m.api].forEach((v) => cell(tr, v));
    body.appendChild(tr);
  }
  const view = $("view");
  view.replaceChildren();
  if (s.role !== "leader") {
    view.className = "sub";
    view.append("Match, lag and contact are the leader's view. ");
    if (s.leader && s.leader.api) {
      const a = document.createElement("a");
      a.href = s.leader.api + "/" + location.hash;
      a.textContent = "Open the leader's dashboard (" + s.leader.id + ")";
      view.append(a);
    }
  }
}
function noteElection(s, now) {
  const leader = s.leader ? s.leader.id : null;
  if (last !== null && (s.term !== last.term || leader !== (last.leader ? last.leader.id : null))) {
    elections.unshift({ t: now, term: s.term, leader });
    elections.length = Math.min(elections.length, ELECTIONS_MAX);
  }
  const ul = $("elections");
  if (!elections.length) return;
  ul.replaceChildren();
  for (const e of elections) {
    const li = document.createElement("li");
    li.textContent = new Date(e.t).toLocaleTimeString() + ": term " + e.term + ", leader " + (e.leader || "none");
    ul.appendChild(li);
  }
}
function noteRate(s, now) {
  samples.push({ t: now, commit: s.index.commit, feed: s.feed.last });
  if (samples.length > SAMPLES_MAX) samples.shift();
  const from = samples.find((x) => now - x.t <= 5000) || samples[0];
  const dt = (now - from.t) / 1000;
  if (dt > 0) {
    $("rate-entries").textContent = ((s.index.commit - from.commit) / dt).toFixed(1);
    $("rate-changes").textContent = ((s.feed.last - from.feed) / dt).toFixed(1);
  }
  const rates = samples.slice(1).map((x, i) => Math.max(0, (x.commit - samples[i].commit) / Math.max(0.001, (x.t - samples[i].t) / 1000)));
  const max = Math.max(1, ...rates);
  const w = 360 / SAMPLES_MAX;
  const svg = $("spark");
  svg.replaceChildren();
  rates.forEach((r, i) => {
    const bar = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    const h = Math.max(1, (r / max) * 56);
    bar.setAttribute("x", String(i * w));
    bar.setAttribute("y", String(60 - h));
    bar.setAttribute("width", String(Math.max(1, w - 1)));
    bar.setAttribute("height", String(h));
    bar.setAttribute("fill", "#4a7bd0");
    svg.appendChild(bar);
  });
}
function render(s) {
  const now = Date.now();
  $("cluster").textContent = s.cluster ? "(" + s.cluster + ")" : "";
  $("id").textContent = s.id;
  $("role").textContent = s.role;
  $("term").textContent = s.term;
  $("leader").textContent = s.leader ? s.leader.id : "none";
  $("leader").className = s.leader ? "ok" : "bad";
  $("clusterId").textContent = text(s.clusterId);
  $("version").textContent = text(s.version);
  const idx = $("idx");
  idx.replaceChildren();
  const i = s.index || {};
  const f = s.feed || {};
  [i.first, i.last, i.commit, i.applied, i.checkpoint, f.first, f.last].forEach((v) => cell(idx, v));
  renderMembers(s);
  noteElection(s, now);
  noteRate(s, now);
  last = s;
  const probs = $("problems");
  probs.replaceChildren();
  for (const p of s.problems || []) {
    const li = document.createElement("li");
    li.textContent = p;
    li.className = "bad";
    probs.appendChild(li);
  }
  if (!(s.problems || []).length) {
    const li = document.createElement("li");
    li.textContent = "none";
    li.className = "ok";
    probs.appendChild(li);
  }
  $("live").textContent = "updated " + new Date(now).toLocaleTimeString() + " (every " + POLL_MS + " ms)";
}
async function poll() {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), 2000);
  const token = tokenOf();
  try {
    const res = await fetch("status", { headers: token ? { authorization: "Bearer " + token } : {}, signal: ctl.signal, cache: "no-store" });
    const body = await res.json();
    if (!res.ok) throw new Error((body.error && body.error.message) || ("HTTP " + res.status));
    render(body);
    $("err").textContent = "";
  } catch (e) {
    $("err").textContent = "status unavailable: " + e.message + (token ? "" : " (with tokens on, open this page as /#token=TOKEN)");
  } finally {
    clearTimeout(timer);
    setTimeout(poll, POLL_MS);
  }
}
poll();
</script>
</body>
</html>
`;
