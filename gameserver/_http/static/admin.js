// The monitor page served at "/admin/": live counts with small charts, the
// room table, a room's state and members, and the admin's actions (close a
// room; kick, ban, unban a user). Built on gameserver.js like the lobby, with
// no framework; everything it shows from the server is set with
// textContent, never HTML. It only polls the HTTP API (/api/admin/): it
// opens no WebSocket of its own.

import { GameClient, GameServerError } from "./gameserver.js";
import { sessionStore } from "./session.js";
import { $, COMMON_MESSAGES, explain, h, notice, setError, show } from "./ui.js";

// "?poll=ms" in the address polls faster or slower (tests use it).
const asked = Number(new URLSearchParams(location.search).get("poll"));
const POLL_MS = Number.isFinite(asked) && asked >= 250 ? Math.min(asked, 60000) : 2000;
const HISTORY_S = 300; // what the charts cover, in seconds
const STATES = { waiting: "waiting", in_game: "in game", finished: "finished" };

// The API is one level up: the page is at <base>/admin/, the API at <base>/api/.
const client = new GameClient({ storage: sessionStore, url: new URL("..", location.href).href });
// For debugging and the browser tests.
window.gameserverAdmin = { client, poll: () => poll() };

// -- Small DOM helpers -------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";

function setText(el, text) {
  const value = String(text ?? "");
  if (el.textContent !== value) el.textContent = value;
}

const MESSAGES = {
  ...COMMON_MESSAGES,
  not_authenticated: () => "Log in first.",
  forbidden: () => "Only an admin may do this.",
  not_found: () => "It no longer exists.",
  user_not_found: () => "No such user.",
  banned: () => "This account is banned.",
  cannot_ban_admin: () => "An admin cannot be banned: revoke their rights first.",
};

function describe(error) {
  return explain(error, MESSAGES);
}

/** "42 s", "12 min", "3 h 5 min", "2 d 4 h". */
function duration(seconds) {
  const s = Math.max(0, Math.floor(Number(seconds) || 0));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

function number(value, digits = 0) {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "—";
}

// -- Views and the session ---------------------------------------------------

function showView(name) {
  for (const view of ["auth-view", "refused-view", "monitor-view"]) show($(view), view === name);
}

function showAuth(message = "") {
  stopPolling();
  show($("whoami"), false);
  show($("poll-banner"), false);
  if ($("confirm-dialog").open) $("confirm-dialog").close();
  showView("auth-view");
  setError($("auth-error"), message);
  $("auth-username").focus();
}

function showRefused() {
  stopPolling();
  show($("poll-banner"), false);
  $("refused-text").textContent = `You are logged in as ${client.session?.username ?? "?"}, who is not an admin of this server: the monitor page is for admins only.`;
  showView("refused-view");
}

/** The account was banned (not an admin's, then): its tokens are refused for good. */
function banned() {
  closeDetail();
  client.logout();
  showAuth(describe(new GameServerError("banned", "")));
}

client.addEventListener("session", ({ detail }) => {
  if (!detail) showAuth();
});

client.addEventListener("error", ({ detail: error }) => {
  if (error.code === "session_expired") showAuth(describe(error));
});

$("auth-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const username = $("auth-username").value.trim();
  const password = $("auth-password").value;
  const errorEl = $("auth-error");
  if (!username || !password) return setError(errorEl, "Give a username and a password.");
  setError(errorEl, "");
  const button = $("login");
  button.disabled = true;
  try {
    await client.login(username, password);
    $("auth-password").value = "";
    await enter();
  } catch (error) {
    setError(errorEl, describe(error));
  } finally {
    button.disabled = false;
  }
});

function logout() {
  stopPolling();
  closeDetail();
  client.logout();
}

$("logout").addEventListener("click", logout);
$("refused-logout").addEventListener("click", logout);

/** Logged in: the monitor for an admin, the refusal for anyone else. */
async function enter() {
  $("username").textContent = client.session.username;
  show($("whoami"), true);
  let stats;
  try {
    stats = await client.api("GET", "api/admin/stats/");
  } catch (error) {
    if (!client.loggedIn) return; // the session expired meanwhile: the login form shows
    if (error.code === "banned") return banned();
    if (error.code === "forbidden" || error.status === 403) return showRefused();
    // Not reachable or failing: show the monitor anyway, its poll retries.
    showMonitor();
    pollFailed(error);
    return;
  }
  showMonitor(stats);
}

function showMonitor(stats = null) {
  showView("monitor-view");
  loadGames();
  if (stats) recordStats(stats);
  startPolling(stats ? POLL_MS : 0);
}

let gamesLoaded = false;

/** The game filter's choices; tried again at each poll until they come. */
async function loadGames({ quiet = false } = {}) {
  if (gamesLoaded) return;
  try {
    const games = await client.listGames();
    if (gamesLoaded) return;
    const filter = $("filter-game");
    for (const game of games) filter.append(h("option", { value: game.name }, game.name));
    gamesLoaded = true;
  } catch (error) {
    if (!quiet) notice(`The games could not be listed: ${describe(error)}`);
  }
}

// -- Polling -----------------------------------------------------------------

let pollTimer = null;
let polling = false;
let pollRunning = null;
let pollAgain = false; // asked for while a round was out: another at once

function startPolling(delay = POLL_MS) {
  polling = true;
  clearTimeout(pollTimer);
  pollTimer = setTimeout(poll, delay);
}

function stopPolling() {
  polling = false;
  clearTimeout(pollTimer);
  pollTimer = null;
}

/**
 * One round: the counts, the rooms, and the open room's detail, together;
 * then the next round after POLL_MS (never two at once, so a slow server
 * is not piled on).
 */
function poll() {
  if (pollRunning) {
    pollAgain = true;
    return pollRunning;
  }
  clearTimeout(pollTimer);
  pollAgain = false;
  const query = roomQuery();
  pollRunning = (async () => {
    const [stats, rooms] = await Promise.allSettled([
      client.api("GET", "api/admin/stats/"),
      client.api("GET", `api/admin/rooms/${query ? `?${query}` : ""}`),
      detailRoomId === null ? null : loadDetail(detailRoomId),
    ]);
    if (!client.loggedIn) return;
    if (!gamesLoaded) loadGames({ quiet: true });
    const failed = [stats, rooms].find((r) => r.status === "rejected");
    if (stats.status === "fulfilled") recordStats(stats.value);
    // An answer for filters changed meanwhile is dropped: the next round asks again.
    if (rooms.status === "fulfilled" && query === roomQuery()) {
      roomList = rooms.value.results ?? [];
      renderRooms();
    } else if (rooms.status === "fulfilled") {
      pollAgain = true;
    }
    if (failed) pollFailed(failed.reason);
    else pollWorked();
  })().finally(() => {
    pollRunning = null;
    if (polling) {
      clearTimeout(pollTimer);
      pollTimer = setTimeout(poll, pollAgain ? 0 : POLL_MS);
    }
  });
  return pollRunning;
}

function pollFailed(error) {
  if (error.code === "banned") return banned();
  if (error.code === "forbidden" || error.status === 403) return showRefused();
  $("poll-state").dataset.state = "reconnecting";
  $("poll-banner-text").textContent = `${describe(error)} Trying again every ${POLL_MS / 1000} s…`;
  show($("poll-banner"), true);
}

function pollWorked() {
  $("poll-state").dataset.state = "open";
  show($("poll-banner"), false);
}

// -- The counts and their charts --------------------------------------------

const history = []; // {at, sockets, users, rooms, rate}: the last HISTORY_S seconds
let lastCounter = null; // {at, process, sent}: where messages/s is measured from

let lastStats = null;

function recordStats(stats) {
  lastStats = stats;
  const at = Number(stats.at);
  // A rate from two polls of one process's counter only: behind a load
  // balancer the next poll may reach another process (or a restarted one).
  let rate = null;
  const sent = Number(stats.deliveries);
  if (lastCounter && lastCounter.process === stats.process && sent >= lastCounter.sent && at > lastCounter.at) {
    rate = (sent - lastCounter.sent) / (at - lastCounter.at);
  }
  if (Number.isFinite(sent)) lastCounter = { at, process: stats.process, sent };
  if (history.length && at <= history[history.length - 1].at) history.length = 0; // another clock
  history.push({ at, sockets: stats.sockets, users: stats.users, rooms: stats.rooms, rate });
  while (history.length && history[0].at < at - HISTORY_S) history.shift();

  setText($("sockets"), number(stats.sockets));
  setText($("sockets-validated"), `${number(stats.sockets_validated)} validated`);
  setText($("users"), number(stats.users));
  setText($("rooms"), number(stats.rooms));
  setText($("processes"), typeof stats.processes === "number" ? `${stats.processes} processes` : " ");
  setText($("rate"), rate === null ? "—" : number(rate, 1));
  setText($("messages-sent"), `${number(sent)} sent`);
  // With Redis the counts are the answering process's own; the rooms are everyone's.
  const of = typeof stats.processes === "number" ? ` (one of ${stats.processes}: these counts are its own)` : "";
  setText($("stats-process"), stats.process ? `process ${String(stats.process).slice(0, 8)}${of}` : "");
  const span = chartSpan(at);
  const shown = span < 90 ? `${Math.round(span)} s` : `${Math.round(span / 60)} min`;
  setText($("chart-span"), `The charts: the last ${shown} (up to ${HISTORY_S / 60} min), a point every ${POLL_MS / 1000} s.`);
  for (const key of ["sockets", "users", "rooms", "rate"]) drawChart($(`chart-${key}`), key, at);
}

/** Seconds the charts cover now. */
function chartSpan(now) {
  const since = history.length ? now - history[0].at : 0;
  return Math.min(HISTORY_S, Math.max(since, (10 * POLL_MS) / 1000));
}

/**
 * A sparkline of one figure in the svg's 120×32 box: over the last
 * HISTORY_S seconds, or since the page opened when that is shorter (at
 * least ten polls' worth), so a new page's first points are not squeezed
 * against the right edge.
 */
function drawChart(svg, key, now) {
  const points = history.filter((p) => typeof p[key] === "number" && Number.isFinite(p[key]));
  const max = Math.max(0, ...points.map((p) => p[key]));
  const peak = Math.max(1, max);
  const span = chartSpan(now);
  const x = (at) => (120 * (at - (now - span))) / span;
  const y = (value) => 30 - (28 * value) / peak;
  const line = points.map((p) => `${x(p.at).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" ");
  let polyline = svg.querySelector("polyline");
  if (!polyline) {
    const base = document.createElementNS(SVG, "line");
    for (const [k, v] of Object.entries({ x1: 0, y1: 30, x2: 120, y2: 30, class: "base" })) base.setAttribute(k, v);
    polyline = document.createElementNS(SVG, "polyline");
    polyline.setAttribute("vector-effect", "non-scaling-stroke");
    svg.append(base, polyline);
  }
  polyline.setAttribute("points", line);
  svg.dataset.points = String(points.length);
  svg.dataset.max = String(max);
  svg.dataset.last = points.length ? String(points[points.length - 1][key]) : "";
}

// -- The room table ----------------------------------------------------------

let roomList = []; // the last answer of /api/admin/rooms/ (filtered by game and state there)
let sortKey = "age"; // newest first
let sortDir = 1;
const rowsById = new Map(); // room id -> its <tr>, kept across polls

function roomQuery() {
  const query = new URLSearchParams();
  if ($("filter-game").value) query.set("game", $("filter-game").value);
  if ($("filter-state").value) query.set("state", $("filter-state").value);
  return query.toString();
}

const SORTS = {
  id: (r) => r.id,
  name: (r) => String(r.name).toLowerCase(),
  game: (r) => r.game,
  state: (r) => r.state,
  players: (r) => r.players.length,
  owner: (r) => String(r.owner?.username ?? "").toLowerCase(),
  process: (r) => r.process ?? "",
  age: (r) => r.age ?? Infinity, // a room made before ages were kept: the oldest
  rate: (r) => r.messages_per_minute,
};

/** The rooms the search keeps: by room name, owner, player or spectator. */
function searched(rooms) {
  const term = $("filter-search").value.trim().toLowerCase();
  if (!term) return rooms;
  return rooms.filter((room) =>
    [room.name, room.owner?.username, ...room.players.map((p) => p.username), ...room.spectators.map((s) => s.username)]
      .some((name) => String(name ?? "").toLowerCase().includes(term)),
  );
}

function renderRooms() {
  const sort = SORTS[sortKey];
  const rooms = searched(roomList).sort((a, b) => {
    const [x, y] = [sort(a), sort(b)];
    return (x < y ? -1 : x > y ? 1 : 0) * sortDir || b.id - a.id;
  });
  const table = $("room-table");
  // Only with Redis (several processes) does a room's process tell anything.
  table.classList.toggle("with-process", lastStats?.processes !== undefined);
  const seen = new Set();
  const rows = rooms.map((room) => {
    seen.add(room.id);
    let row = rowsById.get(room.id);
    if (!row) {
      row = roomRow(room.id);
      rowsById.set(room.id, row);
    }
    fillRow(row, room);
    return row;
  });
  for (const id of [...rowsById.keys()]) if (!seen.has(id)) rowsById.delete(id);
  const body = $("room-rows");
  // Rebuilt only when the rows or their order change: a click is not lost
  // to a row replaced under the pointer.
  const same = rows.length === body.children.length && rows.every((row, i) => body.children[i] === row);
  if (!same) body.replaceChildren(...rows);
  setText($("room-count"), rooms.length === roomList.length ? `(${roomList.length})` : `(${rooms.length} of ${roomList.length})`);
  show($("rooms-empty"), rooms.length === 0);
  for (const button of document.querySelectorAll("button.sort")) {
    button.dataset.dir = button.dataset.sort === sortKey ? (sortDir > 0 ? "asc" : "desc") : "";
  }
}

const CELLS = ["id", "name", "game", "state", "players", "owner", "process", "age", "rate"];

function roomRow(id) {
  const row = h("tr", { testid: "room-row", "data-room-id": id, tabindex: 0 });
  for (const key of CELLS) {
    row.append(h("td", { testid: `room-${key}`, class: ["owner", "process"].includes(key) ? "wide-only" : null }));
  }
  const open = () => openDetail(id);
  row.addEventListener("click", open);
  row.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      open();
    }
  });
  return row;
}

function fillRow(row, room) {
  const [id, name, game, state, players, owner, process, age, rate] = row.children;
  const present = room.players.filter((p) => p.present).length;
  setText(id, room.id);
  if (name.dataset.shown !== `${room.has_password}:${room.name}`) {
    name.dataset.shown = `${room.has_password}:${room.name}`;
    name.replaceChildren(
      h("span", { testid: "room-title" }, room.name),
      room.has_password ? h("span", { class: "tag", testid: "room-locked" }, "password") : "",
    );
  }
  setText(game, room.game);
  setText(state, STATES[room.state] ?? room.state);
  state.className = `state-${room.state}`;
  const watching = room.spectators.length ? ` +${room.spectators.length} watching` : "";
  setText(players, `${room.players.length}/${room.max_players} (${present} here)${watching}`);
  setText(owner, room.owner?.username ?? "");
  const here = room.process && room.process === lastStats?.process ? " (this one)" : "";
  setText(process, room.process ? `${String(room.process).slice(0, 8)}${here}` : "none");
  process.title = room.process ?? "no process holds it now";
  setText(age, duration(room.age));
  setText(rate, number(room.messages_per_minute, 1));
  row.classList.toggle("selected", room.id === detailRoomId);
  row.dataset.state = room.state;
}

for (const button of document.querySelectorAll("button.sort")) {
  button.addEventListener("click", () => {
    const key = button.dataset.sort;
    if (key === sortKey) sortDir = -sortDir;
    else {
      sortKey = key;
      // Numbers read best largest first (except age: newest first).
      sortDir = ["players", "rate"].includes(key) ? -1 : 1;
    }
    renderRooms();
  });
}

// Game and state are filtered by the API: ask again at once. The search is
// the page's own, over the rooms it has.
for (const id of ["filter-game", "filter-state"]) {
  $(id).addEventListener("change", () => {
    roomList = roomList.filter((r) => (!$("filter-game").value || r.game === $("filter-game").value) && (!$("filter-state").value || r.state === $("filter-state").value));
    renderRooms();
    poll();
  });
}
$("filter-search").addEventListener("input", renderRooms);
$("room-filters").addEventListener("submit", (event) => event.preventDefault());

// -- One room ----------------------------------------------------------------

let detailRoomId = null;
let detailToken = 0; // answers for a room no longer shown are dropped

function openDetail(roomId) {
  detailRoomId = roomId;
  detailToken += 1;
  setError($("detail-error"), "");
  setText($("detail-id"), `#${roomId}`);
  const listed = roomList.find((r) => r.id === roomId);
  setText($("detail-name"), listed?.name ?? "");
  setText($("detail-summary"), "Loading…");
  for (const id of ["detail-players", "detail-spectators", "detail-chat", "detail-state", "detail-entries"]) {
    $(id).replaceChildren();
    shown.delete($(id));
  }
  show($("room-detail"), true);
  for (const [id, row] of rowsById) row.classList.toggle("selected", id === roomId);
  loadDetail(roomId);
  $("room-detail").scrollIntoView({ block: "nearest" });
}

function closeDetail() {
  detailRoomId = null;
  detailToken += 1;
  show($("room-detail"), false);
  for (const row of rowsById.values()) row.classList.remove("selected");
}

$("detail-hide").addEventListener("click", closeDetail);

async function loadDetail(roomId) {
  const token = detailToken;
  try {
    const room = await client.api("GET", `api/admin/rooms/${roomId}/`);
    if (token === detailToken) renderDetail(room);
  } catch (error) {
    if (token !== detailToken) return;
    if (error.status === 404) {
      setError($("detail-error"), "This room no longer exists.");
      $("close-room").disabled = true;
    } else if (error.status !== 403) {
      setError($("detail-error"), `The room could not be loaded: ${describe(error)}`);
    }
  }
}

const shown = new WeakMap(); // an element -> the JSON of what it shows

/** Fill `el` with `make()` unless it already shows `value`. */
function rebuild(el, value, make) {
  const key = JSON.stringify(value);
  if (shown.get(el) === key) return;
  el.replaceChildren(...make());
  shown.set(el, key);
}

function showJson(el, value) {
  const text = value === undefined ? "(none)" : JSON.stringify(value, null, 2);
  if (shown.get(el) !== text) {
    el.textContent = text;
    shown.set(el, text);
  }
}

function renderDetail(room) {
  setError($("detail-error"), "");
  $("close-room").disabled = false;
  setText($("detail-name"), room.name);
  const parts = [
    room.game,
    STATES[room.state] ?? room.state,
    `owner ${room.owner?.username ?? "?"}`,
    `${room.players.length}/${room.max_players} players`,
    room.has_password ? "password" : null,
    `age ${duration(room.age)}`,
    `${number(room.messages_per_minute, 1)} messages/min`,
    room.process && lastStats?.processes !== undefined ? `process ${room.process}` : null,
  ];
  setText($("detail-summary"), parts.filter(Boolean).join(" · "));
  // Rebuilt only when they change: a button is not replaced under the
  // pointer (or the keyboard's focus) at every poll.
  rebuild($("detail-players"), [room.players, room.owner?.id], () =>
    room.players.length
      ? room.players.map((p) => person(p, { present: p.present, owner: p.id === room.owner?.id }))
      : [h("li", { class: "muted" }, "No players.")],
  );
  rebuild($("detail-spectators"), room.spectators, () =>
    room.spectators.length ? room.spectators.map((s) => person(s, {})) : [h("li", { class: "muted" }, "Nobody watches.")],
  );
  const chat = Array.isArray(room.chat) ? room.chat : [];
  rebuild($("detail-chat"), chat, () =>
    chat.length ? chat.map(chatLine) : [h("li", { class: "muted" }, "No chat yet.")],
  );
  showJson($("detail-state"), room.data?.state);
  showJson($("detail-entries"), room.data?.entries);
}

function chatLine(message) {
  const m = message?.data ?? message ?? {};
  const who = m.user?.username ?? m.username ?? (typeof m.user === "string" ? m.user : "");
  const ts = typeof m.ts === "number" ? new Date(m.ts * 1000).toLocaleTimeString() : "";
  const text = typeof m.text === "string" ? m.text : JSON.stringify(m);
  return h("li", { testid: "detail-chat-line" }, ts ? h("span", { class: "muted small" }, ts, " ") : null, who ? h("strong", {}, who, ": ") : null, text);
}

/** A member of the open room, with the buttons to kick or ban them. */
function person(user, { present, owner }) {
  const here = present === undefined ? null : present;
  return h(
    "li",
    { testid: "detail-member", "data-user": user.username, class: here === false ? "away" : null },
    here === null ? null : h("span", { class: "dot", "data-state": here ? "open" : "away", title: here ? "present" : "away" }),
    h("span", { class: "name" }, user.username),
    owner ? h("span", { class: "tag" }, "owner") : null,
    here === null ? null : h("span", { class: "muted small", testid: "presence" }, here ? "present" : "away"),
    h("span", { class: "actions" }, kickButton(user), banButton(user, false)),
  );
}

$("close-room").addEventListener("click", () => {
  const roomId = detailRoomId;
  if (roomId === null) return;
  const name = $("detail-name").textContent;
  confirmThen({
    title: `Close ${name}?`,
    text: `Room #${roomId} ends now: its players and spectators get ROOM_CLOSED and it is gone from the list.`,
    ok: "Close room",
    action: async () => {
      await client.api("POST", `api/admin/rooms/${roomId}/close/`);
      notice(`Room ${name} (#${roomId}) closed.`, "ok");
      if (detailRoomId === roomId) closeDetail();
      roomList = roomList.filter((r) => r.id !== roomId);
      renderRooms();
      poll();
    },
  });
});

// -- Users -------------------------------------------------------------------

function kickButton(user) {
  return h(
    "button",
    {
      type: "button",
      class: "secondary small-button",
      testid: "kick",
      onclick: () =>
        confirmThen({
          title: `Kick ${user.username}?`,
          text: `Every socket of ${user.username} is closed (4003). They may log in and come back: ban them to keep them out.`,
          ok: "Kick",
          action: async () => {
            await client.api("POST", `api/admin/users/${user.id}/kick/`);
            notice(`${user.username} was kicked.`, "ok");
            poll();
            refreshUsers();
          },
        }),
    },
    "Kick",
  );
}

function banButton(user, banned) {
  const verb = banned ? "unban" : "ban";
  return h(
    "button",
    {
      type: "button",
      class: banned ? "secondary small-button" : "danger secondary small-button",
      testid: verb,
      onclick: () =>
        confirmThen({
          title: `${banned ? "Unban" : "Ban"} ${user.username}?`,
          text: banned
            ? `${user.username} may log in again.`
            : `${user.username}'s sockets are closed and their tokens and logins refused until they are unbanned.`,
          ok: banned ? "Unban" : "Ban",
          action: async () => {
            await client.api("POST", `api/admin/users/${user.id}/${verb}/`);
            notice(`${user.username} was ${banned ? "unbanned" : "banned"}.`, "ok");
            poll();
            refreshUsers();
          },
        }),
    },
    banned ? "Unban" : "Ban",
  );
}

let lastUserQuery = null;

$("user-search").addEventListener("submit", (event) => {
  event.preventDefault();
  searchUsers($("user-query").value.trim());
});

async function searchUsers(query) {
  const errorEl = $("user-error");
  setError(errorEl, "");
  if (!query) return setError(errorEl, "Type a username, or the start of one.");
  lastUserQuery = query;
  const button = $("user-search-submit");
  button.disabled = true;
  try {
    const { results } = await client.api("GET", `api/admin/users/?${new URLSearchParams({ q: query })}`);
    if (lastUserQuery !== query) return;
    $("user-results").replaceChildren(...results.map(userItem));
    show($("users-empty"), results.length === 0);
  } catch (error) {
    setError(errorEl, describe(error));
  } finally {
    button.disabled = false;
  }
}

/** After an action: the lookup shown again, with who is banned or online now. */
function refreshUsers() {
  if (lastUserQuery && $("user-results").children.length) searchUsers(lastUserQuery);
}

function userItem(user) {
  return h(
    "li",
    { testid: "user-result", "data-user": user.username },
    h("span", { class: "dot", "data-state": user.online ? "open" : "offline", title: user.online ? "online" : "offline" }),
    h("span", { class: "name" }, user.username),
    h("span", { class: "muted small" }, `#${user.id}`),
    user.admin ? h("span", { class: "tag", testid: "user-admin" }, "admin") : null,
    user.banned ? h("span", { class: "tag bad", testid: "user-banned" }, "banned") : null,
    h("span", { class: "muted small", testid: "user-online" }, user.online ? "online" : "offline"),
    h("span", { class: "actions" }, kickButton(user), banButton(user, Boolean(user.banned))),
  );
}

// -- The confirm step --------------------------------------------------------

let pending = null; // the action the dialog asks about

function confirmThen({ title, text, ok, action }) {
  pending = action;
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = ok;
  setError($("confirm-error"), "");
  $("confirm-ok").disabled = false;
  $("confirm-dialog").showModal();
  $("confirm-cancel").focus();
}

$("confirm-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const action = pending;
  if (!action) return;
  const button = $("confirm-ok");
  button.disabled = true;
  try {
    await action();
    pending = null;
    $("confirm-dialog").close();
  } catch (error) {
    setError($("confirm-error"), describe(error));
  } finally {
    button.disabled = false;
  }
});

$("confirm-cancel").addEventListener("click", () => $("confirm-dialog").close());
$("confirm-dialog").addEventListener("close", () => {
  pending = null;
});

// -- Start -------------------------------------------------------------------

if (client.loggedIn) enter();
else showAuth();
