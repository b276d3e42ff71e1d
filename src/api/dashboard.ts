/**
 * GET /: one self-contained page (no external assets) that polls /status
 * every second. With bearer tokens on, open it as /#token=TOKEN: the page
 * sends the token from the fragment, which browsers never send to the server.
 */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cairn</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #222; background: #fafafa; }
  h1 { font-size: 1.3rem; margin: 0 0 .2rem; }
  .sub { color: #666; margin-bottom: 1rem; }
  table { border-collapse: collapse; background: #fff; margin: .5rem 0 1rem; }
  th, td { border: 1px solid #ddd; padding: .3rem .6rem; text-align: left; font-variant-numeric: tabular-nums; }
  th { background: #f0f0f0; }
  .leader { font-weight: bold; }
  .bad { color: #b00020; }
  .ok { color: #137333; }
  #err { color: #b00020; min-height: 1.2em; }
  code { background: #eee; padding: 0 .2rem; }
</style>
</head>
<body>
<h1>cairn <span id="cluster"></span></h1>
<div class="sub">node <b id="id">?</b> &middot; role <b id="role">?</b> &middot; term <b id="term">?</b> &middot;
leader <b id="leader">?</b> &middot; cluster id <code id="clusterId">?</code> &middot; version <span id="version">?</span></div>
<div id="err"></div>
<h2>Indexes</h2>
<table><thead><tr><th>first</th><th>last</th><th>commit</th><th>applied</th><th>checkpoint</th><th>feed first</th><th>feed last</th></tr></thead>
<tbody><tr id="idx"></tr></tbody></table>
<h2>Members</h2>
<table><thead><tr><th>id</th><th>role</th><th>peer</th><th>api</th><th>match</th><th>lag</th><th>last contact (ms)</th></tr></thead>
<tbody id="members"></tbody></table>
<h2>Problems</h2>
<ul id="problems"></ul>
<script>
"use strict";
const token = new URLSearchParams(location.hash.slice(1)).get("token");
const $ = (id) => document.getElementById(id);
const text = (v) => (v === null || v === undefined ? "-" : String(v));
function cell(row, v, cls) {
  const td = document.createElement("td");
  td.textContent = text(v);
  if (cls) td.className = cls;
  row.appendChild(td);
}
function render(s) {
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
  const body = $("members");
  body.replaceChildren();
  for (const m of s.members || []) {
    const tr = document.createElement("tr");
    const isLeader = s.leader && s.leader.id === m.id;
    cell(tr, m.id + (isLeader ? " (leader)" : ""), isLeader ? "leader" : "");
    [m.role, m.peer, m.api, m.match].forEach((v) => cell(tr, v));
    cell(tr, m.lag, m.lag > 0 ? "bad" : "");
    cell(tr, m.lastContactMs);
    body.appendChild(tr);
  }
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
}
async function poll() {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), 2000);
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
    setTimeout(poll, 1000);
  }
}
poll();
</script>
</body>
</html>
`;
