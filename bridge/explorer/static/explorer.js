"use strict";
// The bridge explorer. It reads only this node's public JSON API (same origin, nothing
// else: the Content-Security-Policy forbids it) and follows new blocks through server-sent
// events (/v1/events): pushed as each block commits, one connection, reconnected by the
// browser itself. Data is put in the page as text nodes, never as HTML.

const $ = (id) => document.getElementById(id);
const CHART_BLOCKS = 120;
const RECENT_VOTE = 100; // a validator that voted within this many blocks "voted recently"
const SEARCH_HELP =
  "Search for a deposit's transaction hash (0x and 64 hex digits), a withdrawal id (a number) " +
  "or an address (0x and 40 hex digits).";
const PROBLEM_WORDS = {
  catching_up: "this node is catching up with the network",
  escrow_short: "the escrow holds less than the ledger owes",
  solvency_unchecked: "the solvency check cannot read the escrow or the ledger",
  source_unavailable: "a listener cannot read its source",
  relay_failed: "the relayer's last pass failed",
  orphaned_credits: "credits no escrow deposit backs any more (a reorg deeper than the safety point)",
  listener_failed: "a listener stopped",
  listener_restarting: "a listener is restarting after a failure",
};

// claims: what the page's claims said, by withdrawal id, so a refresh keeps showing it.
const state = { blocks: [], status: null, query: null, final: false, refreshing: false, claiming: false, claims: {} };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

async function api(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `the node answered HTTP ${response.status}`);
  return body;
}

const short = (hex) => (hex && hex.length > 18 ? `${hex.slice(0, 10)}…${hex.slice(-6)}` : hex);
const message = (text, error = false) => el("p", { class: error ? "message error" : "message" }, text);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// -- search -- //

function validQuery(q) {
  return /^\d{1,19}$/.test(q) || /^0x[0-9a-fA-F]{40}$/.test(q) || /^0x[0-9a-fA-F]{64}$/.test(q);
}

async function search(q, quiet = false) {
  const result = $("result");
  state.query = q;
  if (!validQuery(q)) {
    state.query = null;
    result.replaceChildren(message(q ? `"${q.slice(0, 80)}" is not something this page can look up. ${SEARCH_HELP}` : SEARCH_HELP, true));
    return;
  }
  if (!quiet) result.replaceChildren(el("p", {}, "looking…"));
  try {
    const found = await api(`/v1/explorer/search?q=${encodeURIComponent(q)}`);
    if (state.query !== q) return; // another search started meanwhile
    result.replaceChildren(render(found));
  } catch (error) {
    result.replaceChildren(message(`The search failed: ${error.message}`, true));
  }
}

function render(found) {
  state.final = true;
  switch (found.kind) {
    case "hash": return renderHash(found);
    case "withdrawal": return renderWithdrawal(found.withdrawal);
    case "account": return renderAccount(found);
    default:
      // A deposit or withdrawal just made may not be known yet: keep looking as blocks come.
      state.final = false;
      return message(`${found.message || "Nothing found"}; looking again with each new block.`);
  }
}

function steps(items) {
  return el("ol", { class: "steps" }, items.map(([done, text]) => el("li", { class: done === true ? "done" : done || "" }, text)));
}

function renderHash(found) {
  const parts = [el("h3", {}, "Transaction ", el("span", { class: "mono" }, found.hash))];
  for (const d of (found.deposits && found.deposits.deposits) || []) parts.push(renderDeposit(d));
  if (found.tx) {
    const ok = found.tx.code === 0;
    parts.push(el("div", { class: "card" }, `A ledger transaction in block ${found.tx.height}: `,
      el("span", { class: ok ? "good" : "bad" }, ok ? "executed" : `refused (${found.tx.log})`)));
  }
  for (const [name, value] of Object.entries(found)) {
    if (!["kind", "hash", "deposits", "tx"].includes(name)) parts.push(el("pre", { class: "card mono" }, `${name}: ${JSON.stringify(value, null, 2)}`));
  }
  return el("div", {}, parts);
}

function renderDeposit(d) {
  const rank = { seen: 1, voted: 2, pending: 3, credited: 4, orphaned: 4 }[d.status] || 0;
  let headline = `Deposit ${d.log_index}: ${d.amount ?? "?"} to ${d.recipient ?? "?"}`;
  let now;
  if (d.status === "credited") now = `credited at ledger height ${d.credited_height}`;
  else if (d.status === "pending") now = `pending: ${d.approved_power} of ${d.total_power} power voted, ${d.required_power} needed`;
  else if (d.status === "orphaned") now = `failed: credited at height ${d.credited_height}, then a reorg deeper than the safety point gave its escrow nonce to another deposit (height ${d.orphaned_height}); the credit is unbacked`;
  else if (d.status === "voted") now = "voted by this node; waiting for the other validators";
  else now = "seen on Ethereum by this node; its vote is on the way";
  if (d.status !== "credited" && d.status !== "orphaned") state.final = false;
  const voters = d.voters && d.voters.length ? el("p", {}, "voted by ", d.voters.map(short).join(", ")) : null;
  return el("div", { class: "card deposit", "data-status": d.status },
    el("strong", {}, headline),
    steps([
      [rank >= 1 || d.status === "credited", "seen by this node's listener (or credited before it looked)"],
      [rank >= 2 || d.voted_by_this_node === true, "voted"],
      [rank >= 3, d.status === "pending" ? now : "2/3 of the power agreed"],
      [d.status === "credited" ? true : d.status === "orphaned" ? "failed" : false, d.status === "credited" || d.status === "orphaned" ? now : "credited"],
    ]),
    voters,
    el("p", { class: "status" }, now));
}

function renderWithdrawal(w) {
  const signed = w.status === "signed" || w.status === "paid";
  if (w.status !== "paid") state.final = false;
  const said = w.status === "paid" ? null : state.claims[w.id];
  const out = el("p", { class: "claim-result" }, said ? said.text : "");
  if (said && said.hash) out.dataset.claimed = said.hash;
  const items = [
    [true, `debited ${w.amount} from ${w.account}`],
    [w.root !== undefined, w.root !== undefined ? `in batch ${w.batch}, closed` : `in batch ${w.batch}, still open`],
    [signed, w.signed_power !== undefined ? `signed by ${w.signed_power} of ${w.total_power} power` : "signed by 2/3 of the power"],
    [w.status === "paid", "root posted on Ethereum (by the relayer, or by the claim below)"],
    [w.status === "paid", w.status === "paid" ? `paid in tx ${w.paid.tx_hash}` : `paid to ${w.recipient}`],
  ];
  const card = el("div", { class: "card withdrawal", "data-status": w.status },
    el("strong", {}, `Withdrawal ${w.id}: ${w.amount} to ${w.recipient}`), steps(items),
    el("p", { class: "status" }, w.status));
  if (w.status === "signed" && !(said && said.hash)) {
    const button = el("button", { type: "button", class: "claim" }, "Claim with my wallet");
    button.addEventListener("click", () => claim(w.id, button, out));
    card.append(button);
  }
  card.append(out);
  return card;
}

// What moved a balance: the ledger's own transactions by name; anything else is the
// resolution type that credited or debited it (an extension's, e.g. a deposit's credit).
const TX_WORDS = {
  transfer: ["transfer sent", "transfer received"],
  withdraw: ["withdrawal", "withdrawal"],
  vote: ["vote fee", "vote fee back"],
  join: ["join bond locked", "join bond back"],
};

function describeCause(row) {
  const words = TX_WORDS[row.cause];
  return words ? words[BigInt(row.delta) < 0n ? 0 : 1] : `${row.cause} (resolution)`;
}

function renderAccount(a) {
  const rows = a.activity.map((r) => el("tr", {}, el("td", {}, r.height), el("td", {}, describeCause(r)), el("td", {}, r.delta), el("td", { class: "mono" }, short(r.ref))));
  const withdrawals = a.withdrawals.map((id) => el("button", { type: "button", class: "link", onclick: () => go(String(id)) }, `withdrawal ${id}`));
  return el("div", { class: "card account" },
    el("strong", {}, `Account ${a.account}`),
    el("p", {}, "balance ", el("span", { class: "balance" }, a.balance)),
    el("h3", {}, "Deposits, transfers and withdrawals (seen by this node)"),
    rows.length ? el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "block"), el("th", {}, "what"), el("th", {}, "amount"), el("th", {}, "ref"))), el("tbody", {}, rows)) : el("p", {}, "none yet"),
    withdrawals.length ? el("p", {}, "withdrawals: ", withdrawals) : null);
}

function go(q) {
  $("q").value = q;
  history.replaceState(null, "", `#q=${encodeURIComponent(q)}`);
  search(q);
}

// -- claiming with the user's wallet (EIP-1193) -- //

async function send(wallet, from, to, data) {
  const hash = await wallet.request({ method: "eth_sendTransaction", params: [{ from, to, data }] });
  for (;;) {
    const receipt = await wallet.request({ method: "eth_getTransactionReceipt", params: [hash] });
    if (receipt) {
      if (receipt.status !== "0x1") throw new Error(`transaction ${hash} reverted`);
      return hash;
    }
    await sleep(1000);
  }
}

async function claim(id, button, out) {
  const say = (text, hash) => {
    state.claims[id] = { text, hash };
    out.replaceChildren(text);
    if (hash) out.dataset.claimed = hash;
  };
  const wallet = window.ethereum;
  if (!wallet) {
    say(`No browser wallet (EIP-1193) is here. Claim with \`bridge claim ${id} --rpc <Ethereum RPC URL>\`.`);
    return;
  }
  button.disabled = true;
  state.claiming = true; // the card is not redrawn under the user meanwhile
  try {
    const calls = await api(`/v1/withdrawals/${id}/claim`);
    const [from] = await wallet.request({ method: "eth_requestAccounts" });
    const chain = parseInt(await wallet.request({ method: "eth_chainId" }), 16);
    if (chain !== calls.chain_id) throw new Error(`the wallet is on chain ${chain}: switch it to chain ${calls.chain_id}`);
    const root = await wallet.request({ method: "eth_call", params: [{ to: calls.escrow, data: calls.batch_root }, "latest"] });
    if (/^0x0*$/.test(root)) {
      say("posting the batch's root…");
      await send(wallet, from, calls.escrow, calls.submit_batch);
    }
    say("claiming…");
    const hash = await send(wallet, from, calls.escrow, calls.claim);
    say(`claimed in tx ${hash}; the ledger marks it paid once the escrow's log is final`, hash);
  } catch (error) {
    say(`The claim did not go through: ${error.message || error}`);
    button.disabled = false;
  } finally {
    state.claiming = false;
  }
}

// -- network -- //

function fact(name, value) {
  return [el("dt", {}, name), el("dd", {}, value)];
}

function blockTime() {
  const times = state.blocks.slice(-30).map((b) => b.time_ns);
  const gaps = times.slice(1).map((t, i) => t - times[i]).sort((a, b) => a - b);
  return gaps.length ? `${(gaps[Math.floor(gaps.length / 2)] / 1e9).toFixed(2)} s (median of the last ${gaps.length})` : "…";
}

function words(problem) {
  const [name, detail] = problem.split(":");
  return PROBLEM_WORDS[name] ? `${PROBLEM_WORDS[name]}${detail ? ` (${detail})` : ""}` : problem;
}

async function refreshNetwork() {
  const [status, network] = await Promise.all([api("/v1/status"), api("/v1/explorer/network")]);
  state.status = status;
  $("facts").replaceChildren(
    ...fact("chain", status.chain_id),
    ...fact("height", el("span", { id: "height" }, status.height)),
    ...fact("app hash", el("span", { class: "mono" }, short(status.app_hash))),
    ...fact("block time", blockTime()),
    ...fact("this node", `${status.validator ? "validator" : "observer"}, ${status.caught_up ? "caught up" : "catching up"}`),
    ...fact("escrow", status.escrow ? `${status.escrow.address} on chain ${status.escrow.chain_id}` : "none: deposits only"));
  $("problems").replaceChildren(network.problems.length
    ? message(`Not ready: ${network.problems.map(words).join("; ")}.`, true)
    : el("span", { class: "good" }, "Ready: no problems."));
  $("validators").tBodies[0].replaceChildren(...network.validators.map((v) => {
    const ago = v.last_vote === null ? null : network.height - v.last_vote;
    const recent = ago !== null && ago <= RECENT_VOTE;
    const last = ago === null ? "none seen by this node" : `block ${v.last_vote} (${ago} blocks ago)`;
    return el("tr", { class: "validator" }, el("td", { class: "mono" }, short(v.pubkey)), el("td", {}, v.power), el("td", { class: recent ? "good" : "" }, last));
  }));
  const listeners = Object.entries(status.listeners);
  $("listeners").tBodies[0].replaceChildren(...listeners.map(([name, l]) => el("tr", {},
    el("td", {}, name), el("td", {}, l.configured ? l.state : "not configured here"),
    el("td", {}, l.last_block ?? "–"), el("td", {}, l.blocks_left ?? "–"))));
  const solvency = status.listeners.solvency;
  if (solvency && solvency.escrow_balance !== undefined) {
    const short_ = BigInt(solvency.escrow_balance) < BigInt(solvency.ledger_owes);
    $("solvency").replaceChildren(el("span", { class: short_ ? "bad" : "good" },
      `The escrow holds ${solvency.escrow_balance}; the ledger owes ${solvency.ledger_owes} (Ethereum block ${solvency.checked_block}, ledger height ${solvency.ledger_height}).`));
  }
}

// -- charts (SVG, drawn from the node's own block history) -- //

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}
const sum = (counts) => Object.values(counts || {}).reduce((a, b) => a + (typeof b === "number" ? b : sum(b)), 0);
const confirmed = (resolved) => Object.values(resolved || {}).reduce((a, c) => a + (c.confirmed || 0), 0);

function drawBars(chart, series) {
  const blocks = state.blocks;
  const top = Math.max(1, ...blocks.flatMap((b) => series.map((s) => s.value(b))));
  const width = 600 / CHART_BLOCKS;
  const shapes = [];
  blocks.forEach((b, i) => series.forEach((s, k) => {
    const h = (s.value(b) / top) * 130;
    if (h > 0) shapes.push(svg("rect", { x: i * width + (k * width) / series.length, y: 145 - h, width: width / series.length, height: h, fill: s.color }));
  }));
  label(chart, shapes, top, blocks);
}

function drawLines(chart) {
  const blocks = state.blocks;
  const names = [...new Set(blocks.flatMap((b) => Object.keys(b.lag || {})))].sort();
  const top = Math.max(1, ...blocks.flatMap((b) => Object.values(b.lag || {})));
  const colors = ["#3a6ea5", "#b3261e", "#1f7a3f", "#8a5a00", "#6b4fa3"];
  const shapes = names.map((name, k) => svg("polyline", {
    fill: "none", stroke: colors[k % colors.length], "stroke-width": 2,
    points: blocks.map((b, i) => `${(i + 0.5) * (600 / CHART_BLOCKS)},${145 - ((b.lag || {})[name] ?? 0) / top * 130}`).join(" "),
  }));
  label(chart, shapes, top, blocks);
  $("lag-caption").replaceChildren(names.length
    ? `blocks behind the safety point: ${names.map((n, k) => `${n} (${["blue", "red", "green", "brown", "purple"][k % 5]})`).join(", ")}`
    : "no listener reports its progress on this node");
}

function label(chart, shapes, top, blocks) {
  const range = blocks.length ? `blocks ${blocks[0].height}–${blocks[blocks.length - 1].height}` : "no blocks yet";
  const max = svg("text", { x: 4, y: 12, "font-size": 11, fill: "#5b6575" });
  max.textContent = `max ${top}`;
  const span = svg("text", { x: 596, y: 158, "font-size": 11, fill: "#5b6575", "text-anchor": "end" });
  span.textContent = range;
  chart.replaceChildren(svg("line", { x1: 0, y1: 145, x2: 600, y2: 145, stroke: "#d9dee7" }), ...shapes, max, span);
}

function drawCharts() {
  drawBars($("flow-chart"), [
    { value: (b) => sum(b.opened), color: "#3a6ea5" },
    { value: (b) => confirmed(b.resolved), color: "#1f7a3f" },
  ]);
  drawLines($("lag-chart"));
  $("live").replaceChildren(...state.blocks.slice(-15).reverse().map((b) => el("li", { value: b.height, class: "block" },
    `block ${b.height}: ${b.txs} tx, ${sum(b.opened)} new, ${confirmed(b.resolved)} confirmed, app hash `,
    el("span", { class: "mono" }, short(b.app_hash)))));
}

// -- live -- //

async function onBlock(block) {
  state.blocks.push(block);
  if (state.blocks.length > CHART_BLOCKS) state.blocks.shift();
  $("tip").textContent = `height ${block.height} · live`;
  drawCharts();
  if (state.refreshing) return; // one refresh at a time: blocks come faster than answers
  state.refreshing = true;
  try {
    await refreshNetwork();
    if (state.query && !state.final && !state.claiming) await search(state.query, true);
  } catch (error) {
    $("tip").textContent = `height ${block.height} · ${error.message}`;
  } finally {
    state.refreshing = false;
  }
}

async function start() {
  $("search").addEventListener("submit", (event) => {
    event.preventDefault();
    go($("q").value.trim());
  });
  const linked = new URLSearchParams(location.hash.slice(1)).get("q");
  if (linked) go(linked);
  try {
    state.blocks = (await api(`/v1/explorer/blocks?limit=${CHART_BLOCKS}`)).blocks;
    drawCharts();
    await refreshNetwork();
    $("tip").textContent = `height ${state.status.height}`;
  } catch (error) {
    $("tip").textContent = `cannot reach the node: ${error.message}`;
  }
  const events = new EventSource("/v1/events");
  events.addEventListener("block", (event) => onBlock(JSON.parse(event.data)));
  events.addEventListener("error", () => { $("tip").textContent = "reconnecting to the node…"; });
}

start();
