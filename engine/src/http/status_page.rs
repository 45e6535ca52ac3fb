//! `/status`: a self-contained page an operator keeps open. It fetches `/status.json` every
//! second and draws what it finds: the node and its health, the members table (this node
//! included, suspicion shown), traffic per channel (totals, and rates between two refreshes),
//! keyspaces with their sizes and whether the other members hold the same state, services,
//! variables, agents, coordination sessions and placed workloads (each instance's owner); any
//! other JSON a server without those sections serves is shown as it is. No external assets (it works offline), and every
//! value is put in the page as text, never as markup.

/// The page; the same for every server, since the data comes from `/status.json`.
pub(crate) const PAGE: &str = r#"<!doctype html>
<html>
<head>
<meta charset="utf-8">
<title>Foundation node status</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { text-align: left; padding: 0.2em 0.8em; border-bottom: 1px solid #ddd; font-size: 0.9em; }
th { background: #f0f0f0; }
code, .mono { font-family: ui-monospace, monospace; }
.alive, .healthy, .running, .converged { color: #176b2c; }
.failed, .unhealthy, .bad, .diverged { color: #a01616; font-weight: bold; }
.left, .suspect, .stopped, .unknown { color: #9a6700; }
.self td { background: #f6f9ff; }
pre { background: #f4f4f4; padding: 1em; overflow: auto; }
</style>
</head>
<body>
<h1>Foundation node <span id="node" class="mono"></span></h1>
<p><a href="/health">health</a>: <span id="health"></span> · <a href="/metrics">/metrics</a> ·
<span id="updated">loading…</span></p>
<div id="sections"></div>
<script>
"use strict";
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function section(title, headers, rows) {
  const box = el("section");
  box.appendChild(el("h2", title + " (" + rows.length + ")"));
  if (rows.length === 0) { box.appendChild(el("p", "none")); return box; }
  const table = el("table"); table.id = title.toLowerCase();
  const head = el("tr");
  headers.forEach(h => head.appendChild(el("th", h)));
  table.appendChild(head);
  rows.forEach(r => {
    const tr = el("tr", null, r.cls);
    Object.entries(r.data || {}).forEach(([k, v]) => tr.dataset[k] = v);
    r.cells.forEach(c => tr.appendChild(typeof c === "object" && c !== null ? el("td", c.text, c.cls) : el("td", c)));
    table.appendChild(tr);
  });
  box.appendChild(table);
  return box;
}
function tags(map) { return Object.entries(map || {}).map(([k, v]) => k + "=" + v).join(", "); }
function members(list) {
  return section("Members", ["node", "name", "address", "state", "generation", "version", "tags"],
    list.map(m => {
      const state = m.state + (m.suspect ? " (suspect)" : "");
      const md = m.metadata || {};
      return { cls: m.self ? "self" : "", data: { id: m.id, state: m.state, suspect: m.suspect ? "yes" : "no" },
        cells: [{ text: m.id + (m.self ? " (this node)" : ""), cls: "mono" }, md.name || "", m.addr,
                { text: state, cls: m.suspect ? "suspect" : m.state }, m.generation, md.version || "", tags(md.tags)] };
    }));
}
function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? Math.round(n) : n.toFixed(1)) + " " + units[i];
}
let previous = null;
function traffic(rows, at) {
  const before = previous;
  previous = { at: at, rows: Object.fromEntries(rows.map(r => [r.channel, r])) };
  const rate = (r, field) => {
    const old = before && before.rows[r.channel];
    const seconds = before ? (at - before.at) / 1000 : 0;
    return old && seconds > 0 ? bytes(Math.max(0, r[field] - old[field]) / seconds) + "/s" : "";
  };
  return section("Traffic", ["channel", "sent", "sent now", "received", "received now", "messages sent", "messages received"],
    rows.map(r => ({ data: { channel: r.channel, sent: r.bytes_sent, received: r.bytes_received },
      cells: [r.channel, bytes(r.bytes_sent), rate(r, "bytes_sent"), bytes(r.bytes_received), rate(r, "bytes_received"),
              r.messages_sent, r.messages_received] })));
}
function keyspaces(rows) {
  return section("Keyspaces", ["keyspace", "keys", "size", "digest", "convergence"],
    rows.map(k => {
      const state = k.converged === true ? "converged" : k.converged === false ? "diverged" : "unknown";
      const text = k.peers === 0 ? "no other members"
        : state === "converged" ? "same on all " + k.peers + " other members"
        : state === "diverged" ? "differs on " + k.differ + " of " + k.peers + " other members"
        : k.agree + " of " + k.peers + " agree, " + k.unknown + " not compared yet";
      return { data: { keyspace: k.name, converged: state, keys: k.keys },
        cells: [k.name, k.keys, bytes(k.bytes), { text: k.digest || "", cls: "mono" }, { text: text, cls: state }] };
    }));
}
function services(map) {
  const rows = [];
  Object.entries(map || {}).forEach(([name, list]) => list.forEach(i => {
    const r = i.record || {};
    const addr = (r.target && r.target.endpoint) || i.addr;
    rows.push({ cells: [name, { text: i.id, cls: "mono" }, addr, { text: r.health, cls: r.health }, r.version || "", tags(r.tags)] });
  }));
  return section("Services", ["service", "instance", "address", "health", "version", "tags"], rows);
}
function variables(map) {
  return section("Variables", ["name", "version", "value", "policy"],
    Object.entries(map || {}).map(([name, v]) => ({ cells: [name, v.version, JSON.stringify(v.value), v.policy] })));
}
function agents(list) {
  return section("Agents", ["name", "node", "state", "capabilities"],
    (list || []).map(a => ({ cells: [a.name, { text: a.node + (a.local ? " (this node)" : ""), cls: "mono" },
      { text: a.state, cls: a.state }, (a.capabilities || []).join(", ")] })));
}
function sessions(list) {
  return section("Coordination sessions", ["session", "mechanism", "subject", "state", "answered", "outcome", "commit"],
    (list || []).map(x => ({ cells: [x.session, x.mechanism, x.subject, { text: x.state, cls: x.state },
      x.answered === null ? "" : x.answered + " of " + x.participants, x.outcome || "", x.commit || ""] })));
}
function placement(map) {
  const rows = [];
  Object.entries(map || {}).forEach(([name, w]) => (w.instances || []).forEach(i => rows.push({
    data: { workload: name, shard: i.shard, here: i.running_here ? "yes" : "no" },
    cells: [name, w.kind, i.shard, { text: i.owner || "none", cls: i.owner ? "mono" : "unknown" },
            { text: i.running_here ? "here" : "", cls: "running" }] })));
  return section("Placement", ["workload", "kind", "shard", "owner", "running"], rows);
}
function others(routes) {
  return Object.entries(routes || {}).map(([path, value]) => {
    const box = el("section");
    box.appendChild(el("h2", path));
    box.appendChild(el("pre", JSON.stringify(value, null, 2)));
    return box;
  });
}
function render(s) {
  const h = s.health || {};
  const health = document.getElementById("health");
  health.textContent = (h.healthy ? "healthy" : "unhealthy") + " — " + (h.status || "");
  health.className = h.healthy ? "healthy" : "unhealthy";
  if (s.node) document.getElementById("node").textContent = s.node.id + " · cluster " + s.node.cluster;
  const parts = [];
  if (s.members) parts.push(members(s.members));
  if (s.traffic) parts.push(traffic(s.traffic, Date.now()));
  if (s.keyspaces) parts.push(keyspaces(s.keyspaces));
  if (s.services) parts.push(services(s.services));
  if (s.variables) parts.push(variables(s.variables));
  if (s.agents) parts.push(agents(s.agents));
  if (s.sessions && s.sessions.length) parts.push(sessions(s.sessions));
  if (s.placement && Object.keys(s.placement).length) parts.push(placement(s.placement));
  parts.push(...others(s.routes));
  document.getElementById("sections").replaceChildren(...parts);
}
async function refresh() {
  const updated = document.getElementById("updated");
  try {
    const answer = await fetch("/status.json", { cache: "no-store" });
    render(await answer.json());
    updated.textContent = "updated " + new Date().toISOString();
    updated.className = "";
  } catch (error) {
    updated.textContent = "the node does not answer (" + error + "); retrying";
    updated.className = "bad";
  }
}
refresh();
setInterval(refresh, 1000);
</script>
</body>
</html>
"#;

#[cfg(test)]
mod tests {
    use super::PAGE;

    /// The page loads nothing from elsewhere and never puts data in as markup.
    #[test]
    fn the_page_is_self_contained_and_writes_text_only() {
        assert!(!PAGE.contains("http://") && !PAGE.contains("https://"));
        assert!(!PAGE.contains("<link") && !PAGE.contains("src="));
        assert!(!PAGE.contains("innerHTML"));
        assert!(PAGE.contains("fetch(\"/status.json\""));
    }
}
