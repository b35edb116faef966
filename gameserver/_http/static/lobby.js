// The lobby served at "/": accounts, the room list, rooms with chat, and a
// view for each bundled game. Built on gameserver.js, with no framework:
// every piece of text a player typed is set with textContent, never HTML.

import { GameClient } from "./gameserver.js";
import { sessionStore } from "./session.js";
import { $, COMMON_MESSAGES, explain, h, notice, sentence, setError, show } from "./ui.js";

const POLL_MS = 3000; // how often the room list is reloaded
const ROOM_KEY = "gameserver.room"; // sessionStorage: the room this tab is in
const WATCH_KEY = "gameserver.room.watching"; // sessionStorage: "1" when watching it

// The wire format: "?format=msgpack" in the page's address speaks
// MessagePack (binary frames) to the server; anything else, JSON.
const format = new URLSearchParams(location.search).get("format") === "msgpack" ? "msgpack" : "json";
const client = new GameClient({ storage: sessionStore, format });
// For debugging and the browser tests: the client, and joining by room id.
window.gameserverLobby = {
  client,
  joinRoom: (room, password = null, options = {}) => joinRoom(room, password, options),
};

// -- Small DOM helpers -------------------------------------------------------

/** Replace an element's children, skipping the empty ones. */
function fill(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

/** A padlock drawn in SVG: no emoji font is needed. */
function lockIcon() {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 16 16");
  svg.setAttribute("width", "14");
  svg.setAttribute("height", "14");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(ns, "path");
  path.setAttribute(
    "d",
    "M4.5 7V5a3.5 3.5 0 0 1 7 0v2h.5A1 1 0 0 1 13 8v6a1 1 0 0 1-1 1H4a1 1 0 0 1-1-1V8a1 1 0 0 1 1-1zm1.5 0h4V5a2 2 0 0 0-4 0z",
  );
  path.setAttribute("fill", "currentColor");
  svg.append(path);
  return svg;
}

// -- What refusals mean, in words ------------------------------------------

const MESSAGES = {
  ...COMMON_MESSAGES,
  wrong_password: (e) => (e.detail === "this room needs a password" ? "This room needs a password." : "Wrong password."),
  room_full: () => "This room is full.",
  game_started: () => "The game in this room has already started: only its players can come back.",
  spectators_full: () => "This room has as many spectators as it takes: try again later.",
  seated: () => "You have a seat in this room: join it to play.",
  spectator: () => "You are watching this game: only its players can move.",
  not_found: () => "This room no longer exists.",
  username_taken: () => "That username is taken: pick another one.",
  // Over the HTTP API (too many new guests at once), or messages on the socket.
  rate_limited: (e) => (e.status ? sentence(e.detail) : "Slow down a little: too many messages."),
  not_a_guest: () => "This account already has a password.",
  not_owner: () => "Only the room's owner can start the game.",
  not_enough_players: (e) => sentence(e.detail),
  chat_refused: (e) =>
    currentView?.chatRefusedMessage?.() ?? sentence(e.detail ?? "The game does not allow this message now"),
  not_connected: () => "Not connected: try again in a moment.",
  too_many_connections: () => "You are connected from too many tabs or devices.",
  forbidden: (e) => sentence(e.detail),
  timeout: () => "The server did not answer in time.",
  protocol_mismatch: () => `The server does not speak the ${client.format} wire format.`,
};

function describe(error) {
  return explain(error, MESSAGES);
}

// -- Notices and the connection banner ---------------------------------------

$("wire-format").textContent = client.format;
client.addEventListener("statechange", ({ detail: { state } }) => renderConnection(state));

function renderConnection(state = client.state) {
  const dot = $("connection-state");
  dot.dataset.state = state;
  dot.title = state;
  const banner = $("connection-banner");
  const loggedIn = client.loggedIn;
  if (state === "reconnecting") {
    $("connection-banner-text").textContent = "Connection lost: reconnecting…";
    show($("reconnect"), false);
    show(banner, true);
  } else if (state === "closed" && loggedIn && wantConnection) {
    $("connection-banner-text").textContent = "Disconnected.";
    show($("reconnect"), true);
    show(banner, true);
  } else {
    show(banner, false);
  }
  banner.dataset.state = state;
  currentView?.render?.();
}

$("reconnect").addEventListener("click", () => {
  connect();
});

// -- Session ---------------------------------------------------------------

let wantConnection = false;

function connect() {
  wantConnection = true;
  client.connect().catch((error) => {
    if (error.code !== "closed") notice(describe(error));
    renderConnection();
  });
}

client.addEventListener("session", ({ detail }) => {
  renderGuest();
  if (!detail) {
    wantConnection = false;
    leaveRoomView();
    showAuth();
  }
});

client.addEventListener("error", ({ detail: error }) => {
  if (error.code === "session_expired") {
    showAuth();
    setError($("auth-error"), describe(error));
    return;
  }
  const inRoom = current && (error.roomId === current.id || error.roomId === null);
  if (error.requestType === "CHAT_MESSAGE" && inRoom) {
    setError($("chat-error"), describe(error));
  } else if (current && error.roomId === current.id && currentView) {
    currentView.error(describe(error));
  } else if (error.code !== "closed" && error.code !== "disconnected") {
    notice(describe(error));
  }
});

function showView(name) {
  for (const view of ["auth-view", "lobby-view", "room-view"]) show($(view), view === name);
}

function showAuth() {
  stopPolling();
  show($("whoami"), false);
  if ($("claim-dialog").open) $("claim-dialog").close();
  renderGuest();
  showView("auth-view");
  renderConnection();
  $("auth-username").focus();
}

$("auth-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const action = event.submitter?.value ?? "login";
  const username = $("auth-username").value.trim();
  const password = $("auth-password").value;
  const errorEl = $("auth-error");
  if (!/^[A-Za-z0-9_.-]{3,32}$/.test(username)) {
    return setError(errorEl, "A username is 3 to 32 letters, digits, '.', '_' or '-'.");
  }
  if (password.length < 8) return setError(errorEl, "A password is at least 8 characters long.");
  await enterWith(async () => {
    if (action === "signup") await client.register(username, password);
    await client.login(username, password);
  });
});

// the server makes up a guest's name
$("guest-play").addEventListener("click", () => enterWith(() => client.guest()));

/** Log in somehow (`logIn`), the form's buttons off meanwhile, then the lobby. */
async function enterWith(logIn) {
  const errorEl = $("auth-error");
  setError(errorEl, "");
  const buttons = $("auth-form").querySelectorAll("button");
  buttons.forEach((b) => (b.disabled = true));
  try {
    await logIn();
    $("auth-password").value = "";
    enterLobby();
  } catch (error) {
    setError(errorEl, describe(error));
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
}

// -- A guest keeps the account ----------------------------------------------

/** The guest bar, with its "Keep this account" button: for a guest only. */
function renderGuest() {
  $("guest-name").textContent = client.session?.username ?? "";
  show($("guest-bar"), client.loggedIn && client.isGuest);
}

$("guest-claim").addEventListener("click", () => {
  const name = client.session?.username ?? "";
  $("claim-username").textContent = name;
  $("claim-username-field").value = name; // for password managers
  $("claim-password").value = "";
  setError($("claim-error"), "");
  $("claim-dialog").showModal();
  $("claim-password").focus();
});

$("claim-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const password = $("claim-password").value;
  const errorEl = $("claim-error");
  if (password.length < 8) return setError(errorEl, "A password is at least 8 characters long.");
  if (password.length > 256) return setError(errorEl, "A password is at most 256 characters long.");
  const button = $("claim-submit");
  button.disabled = true;
  try {
    const user = await client.claim(password);
    $("claim-dialog").close();
    notice(`The account is yours: log in as ${user.username} with your password from now on.`, "ok");
  } catch (error) {
    if (error.code === "not_a_guest") {
      // Kept already (in another tab, say): nothing left to do here.
      $("claim-dialog").close();
      notice(describe(error));
    } else {
      setError(errorEl, describe(error));
    }
  } finally {
    button.disabled = false;
    renderGuest();
  }
});

$("claim-cancel").addEventListener("click", () => $("claim-dialog").close());
$("claim-dialog").addEventListener("close", () => ($("claim-password").value = ""));

$("logout").addEventListener("click", () => {
  sessionStorage.removeItem(ROOM_KEY);
  sessionStorage.removeItem(WATCH_KEY);
  wantConnection = false;
  leaveRoomView();
  client.logout();
});

// -- The lobby: games, rooms, paging ---------------------------------------

let games = [];
let page = 1;
let pollTimer = null;
let listing = null; // the last page of rooms
let pageSize = 10; // the API's default, until a full page says otherwise

async function loadGames() {
  if (games.length) return;
  try {
    games = await client.listGames();
  } catch (error) {
    notice(describe(error));
    return;
  }
  const filter = $("room-filter");
  const create = $("create-game");
  for (const game of games) {
    filter.append(h("option", { value: game.name }, game.name));
    create.append(h("option", { value: game.name }, game.name));
  }
  renderQuickPlay();
  updateCreateForm();
}

/** "Play now": a button per game, to quick-join it. */
function renderQuickPlay() {
  const players = (g) => (g.min_players === g.max_players ? `${g.max_players} players` : `${g.min_players}–${g.max_players} players`);
  $("quick-games").replaceChildren(
    ...games.map((game) =>
      h(
        "li",
        { class: "quick-game", testid: "quick-game", "data-game": game.name },
        h(
          "div",
          {},
          h("strong", {}, game.name),
          " ",
          h("span", { class: "muted small" }, players(game)),
          game.description ? h("div", { class: "muted small" }, game.description) : null,
        ),
        h("button", { type: "button", testid: `play-now-${game.name}`, onclick: () => quickPlay(game.name) }, "Play now"),
      ),
    ),
  );
}

function gameInfo(name) {
  return games.find((g) => g.name === name);
}

function updateCreateForm() {
  const game = gameInfo($("create-game").value);
  if (!game) return;
  $("create-game-description").textContent = game.description;
  const max = $("create-max");
  max.min = game.min_players;
  max.max = game.max_players;
  max.value = game.max_players;
  max.disabled = game.min_players === game.max_players;
}

$("create-game").addEventListener("change", updateCreateForm);

async function enterLobby() {
  show($("whoami"), true);
  renderGuest();
  $("username").textContent = client.session.username;
  if (!wantConnection) connect();
  await loadGames();
  // A stored session whose refresh token is dead ends while we wait: the
  // "session" listener has shown the login form, so stay there.
  if (!client.loggedIn) return;
  const saved = Number(sessionStorage.getItem(ROOM_KEY));
  const spectate = sessionStorage.getItem(WATCH_KEY) === "1";
  sessionStorage.removeItem(ROOM_KEY);
  sessionStorage.removeItem(WATCH_KEY);
  if (saved && !current) {
    // A reload: go back to the room this tab was in (a seat in a game is
    // kept for us; otherwise a password room asks for its password again).
    let room = null;
    try {
      room = await client.getRoom(saved);
    } catch {
      room = null;
    }
    if (!client.loggedIn) return;
    const me = client.session?.userId;
    const seated = room?.players.some((p) => p.id === me);
    if (room && (!room.has_password || seated || room.owner.id === me)) {
      if (await joinRoom(room, null, { spectate: spectate && !seated })) return;
    } else if (room) {
      showLobby();
      openPasswordDialog(room, "", { spectate });
      return;
    }
  }
  showLobby();
}

function showLobby() {
  if (!client.loggedIn) return showAuth(); // the session ended meanwhile
  showView("lobby-view");
  refreshRooms();
  startPolling();
}

function startPolling() {
  stopPolling();
  pollTimer = setInterval(() => {
    if (document.visibilityState === "visible" && !$("lobby-view").hidden) refreshRooms();
  }, POLL_MS);
}

function stopPolling() {
  clearInterval(pollTimer);
  pollTimer = null;
}

// Every reload of the list is numbered: a click on a page or the filter
// fetches at once even while the poll's request is out, and only the answer
// to the latest request is drawn (an older one is for another page or game).
let roomsRequest = 0;

async function refreshRooms() {
  if (!client.loggedIn) return;
  const request = ++roomsRequest;
  const latest = () => request === roomsRequest;
  const game = $("room-filter").value || null;
  let wanted = page;
  try {
    let result;
    try {
      result = await client.listRooms({ page: wanted, game });
    } catch (error) {
      if (error.status === 404 && wanted > 1 && latest()) {
        wanted = page = 1; // the page emptied meanwhile
        result = await client.listRooms({ page: wanted, game });
      } else {
        throw error;
      }
    }
    if (!latest()) return;
    listing = result;
    renderRooms();
  } catch (error) {
    if (latest() && error.code !== "not_authenticated") notice(describe(error));
  }
}

const STATE_LABEL = { waiting: "waiting", in_game: "playing", finished: "finished" };

function renderRooms() {
  const list = $("room-list");
  const me = client.user?.id ?? client.session?.userId;
  const items = listing.results.map((room) => {
    const seated = room.players.some((p) => p.id === me);
    const full = room.players.length >= room.max_players;
    let action = "Join";
    if (seated) action = "Back in";
    else if (room.state === "in_game") action = null;
    else if (full) action = null;
    // Anyone without a seat may watch: a game in progress, or a room waiting.
    const watch = seated
      ? null
      : h("button", { type: "button", class: "secondary", testid: "room-watch", onclick: () => askToWatch(room) }, "Watch");
    const watching = room.spectators ?? 0;
    return h(
      "li",
      { class: "room-item", testid: "room", "data-room-id": room.id, "data-state": room.state },
      h(
        "div",
        { class: "room-main" },
        h("strong", { class: "room-title", testid: "room-title" }, room.name),
        room.has_password ? h("span", { class: "lock", testid: "room-lock", title: "needs a password" }, lockIcon(), h("span", { class: "sr-only" }, "needs a password")) : null,
        h(
          "div",
          { class: "muted small" },
          h("span", { class: "tag" }, room.game),
          " ",
          h("span", { testid: "room-players" }, `${room.players.length}/${room.max_players} players`),
          " · ",
          h("span", { class: `state state-${room.state}`, testid: "room-status" }, STATE_LABEL[room.state] ?? room.state),
          watching > 0 ? [" · ", h("span", { testid: "room-spectators" }, `${watching} watching`)] : null,
          " · by ",
          room.owner.username,
        ),
      ),
      h(
        "div",
        { class: "room-actions" },
        action
          ? h("button", { type: "button", testid: "room-join", onclick: () => askToJoin(room) }, action)
          : h("span", { class: "muted small" }, full && room.state !== "in_game" ? "full" : "in game"),
        watch,
      ),
    );
  });
  list.replaceChildren(...items);
  show($("rooms-empty"), items.length === 0);
  // The server's page size: a page with a next one is a full page.
  if (listing.next) pageSize = listing.results.length;
  const pages = Math.max(1, Math.ceil(listing.count / Math.max(pageSize, listing.results.length, 1)));
  $("page-info").textContent = `page ${page} of ${pages}`;
  $("page-prev").disabled = !listing.previous;
  $("page-next").disabled = !listing.next;
}

$("room-filter").addEventListener("change", () => {
  page = 1;
  refreshRooms();
});
$("page-prev").addEventListener("click", () => {
  if (page > 1) page -= 1;
  refreshRooms();
});
$("page-next").addEventListener("click", () => {
  page += 1;
  refreshRooms();
});

$("create-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const errorEl = $("create-error");
  const game = gameInfo($("create-game").value);
  const name = $("create-name").value.trim();
  const password = $("create-password").value;
  const max = Number($("create-max").value);
  if (!game) return setError(errorEl, "Pick a game.");
  if (!name) return setError(errorEl, "Give the room a name.");
  if (password && (password.length < 4 || password.length > 128)) {
    return setError(errorEl, "A room password is 4 to 128 characters long.");
  }
  if (!Number.isInteger(max) || max < game.min_players || max > game.max_players) {
    return setError(errorEl, `${game.name} takes ${game.min_players} to ${game.max_players} players.`);
  }
  setError(errorEl, "");
  const button = $("create-submit");
  button.disabled = true;
  try {
    const options = { name, game: game.name, max_players: max };
    if (password) options.password = password;
    const room = await client.createRoom(options);
    $("create-name").value = "";
    $("create-password").value = "";
    await joinRoom(room, password || null);
  } catch (error) {
    setError(errorEl, describe(error));
  } finally {
    button.disabled = false;
  }
});

// -- Joining ---------------------------------------------------------------

function askToJoin(room) {
  const me = client.user?.id ?? client.session?.userId;
  const seated = room.players.some((p) => p.id === me);
  if (room.has_password && room.owner.id !== me && !seated) {
    openPasswordDialog(room);
  } else {
    joinRoom(room, null);
  }
}

/** "Watch": spectate the room (its password asked for first, if it has one). */
function askToWatch(room) {
  const me = client.user?.id ?? client.session?.userId;
  if (room.has_password && room.owner.id !== me) {
    openPasswordDialog(room, "", { spectate: true });
  } else {
    joinRoom(room, null, { spectate: true });
  }
}

let dialogRoom = null;
let dialogSpectate = false; // the dialog's password is for watching

function openPasswordDialog(room, message = "", { spectate = false } = {}) {
  dialogRoom = room;
  dialogSpectate = spectate;
  $("join-submit").textContent = spectate ? "Watch" : "Join";
  $("password-room").textContent = room.name;
  $("join-password").value = "";
  setError($("join-error"), message);
  const dialog = $("password-dialog");
  if (!dialog.open) dialog.showModal();
  $("join-password").focus();
}

$("password-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const password = $("join-password").value;
  if (!password) return setError($("join-error"), "Type the room's password.");
  const button = $("join-submit");
  button.disabled = true;
  try {
    await joinRoom(dialogRoom, password, { dialog: true, spectate: dialogSpectate });
  } finally {
    button.disabled = false;
  }
});

$("join-cancel").addEventListener("click", () => $("password-dialog").close());

/**
 * Join and show the room (`spectate`: watch it, without a seat); false (with
 * the reason shown) when refused.
 */
async function joinRoom(room, password, { dialog = false, spectate = false } = {}) {
  beginRoom(room.id, { spectate });
  let joined;
  try {
    joined = await client.join(room.id, password, { spectate });
  } catch (error) {
    if (current?.id === room.id) current = null;
    if (spectate && error.code === "seated") {
      // A seat of ours (taken meanwhile, in another tab): play, not watch.
      return joinRoom(room, password, { dialog });
    }
    if (dialog) {
      setError($("join-error"), describe(error));
      $("join-password").select();
    } else if (error.code === "wrong_password") {
      openPasswordDialog(room, describe(error), { spectate });
    } else {
      notice(describe(error));
      refreshRooms();
    }
    return false;
  }
  if ($("password-dialog").open) $("password-dialog").close();
  enterRoom(joined);
  return true;
}

// Refusals worth another try (twice at most): the room chosen filled or
// started meanwhile, or too many players were choosing at once.
const QUICK_RETRY = new Set(["room_full", "game_started", "busy"]);

/**
 * "Play now": quick-join `game` and show the room, as joinRoom() does. The
 * room's id is known only from the QUICK_JOIN reply: until then `current`
 * waits with no id, and the "*" listener gives it the reply's (before the
 * room's own messages, which follow the reply).
 */
async function quickPlay(game) {
  const buttons = $("quick-games").querySelectorAll("button");
  const errorEl = $("quick-error");
  setError(errorEl, "");
  buttons.forEach((b) => (b.disabled = true));
  const waiting = beginRoom(null);
  let joined = null;
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        joined = await client.quickJoin(game);
        break;
      } catch (error) {
        if (attempt >= 2 || !QUICK_RETRY.has(error.code)) throw error;
      }
    }
  } catch (error) {
    if (current === waiting) current = null;
    setError(errorEl, describe(error));
    return false;
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
  if (current !== waiting) {
    // Another room was opened meanwhile (a Join clicked): give the seat back.
    client.leave(joined.id).catch(() => {});
    return false;
  }
  enterRoom(joined);
  return true;
}

// -- Inside a room -----------------------------------------------------------

let current = null; // {id, room, members: Map, names: Map, status, spectator, watchers}
let currentView = null;

/**
 * Get ready for a room's messages before JOIN_ROOM is answered (`roomId`
 * null: before QUICK_JOIN names the room). The new `current`.
 */
function beginRoom(roomId, { spectate = false } = {}) {
  current = {
    id: roomId,
    room: null,
    members: new Map(),
    names: new Map(),
    status: "waiting",
    history: [],
    team: null,
    early: [],
    spectator: spectate, // watching: no seat, no moves
    watchers: 0, // how many spectators the room has
    watcherIds: new Set(), // the spectators seen arriving since we came
  };
  currentView = null;
  $("chat-log").replaceChildren();
  setError($("chat-error"), "");
  return current;
}

function enterRoom(room) {
  stopPolling();
  sessionStorage.setItem(ROOM_KEY, String(room.id));
  current.spectator = client.isSpectating(room.id);
  if (current.spectator) sessionStorage.setItem(WATCH_KEY, "1");
  else sessionStorage.removeItem(WATCH_KEY);
  updateRoom(room, { watchers: true });
  const View = VIEWS[room.game] ?? GenericView;
  currentView = new View(current, $("game-panel"));
  currentView.render();
  for (const message of current.early) currentView.message(message);
  current.early = [];
  showView("room-view");
  renderChatScope();
  renderChatHistory();
}

/** Draw the room's facts; `watchers`: take the spectator count from `room` too. */
function updateRoom(room, { watchers = false } = {}) {
  current.room = room;
  if (watchers) {
    current.watchers = Math.max(room.spectators ?? 0, current.spectator ? 1 : 0);
    current.watcherIds = new Set();
  }
  current.status = room.state;
  current.members = new Map(room.players.map((p) => [p.id, { ...p, online: current.members.get(p.id)?.online ?? true }]));
  for (const p of room.players) current.names.set(p.id, p.username);
  current.names.set(room.owner.id, room.owner.username);
  $("room-name").textContent = room.name;
  $("room-game").textContent = room.game;
  $("room-owner").textContent = room.owner.username;
  show($("delete-room"), room.owner.id === client.user?.id);
  $("room-view").dataset.spectator = current.spectator ? "yes" : "no";
  show($("room-watching"), current.spectator);
  $("leave").textContent = current.spectator ? "Stop watching" : "Leave";
  renderStatus();
  renderMembers();
}

function renderStatus() {
  $("room-state").textContent = STATE_LABEL[current.status] ?? current.status;
  $("room-view").dataset.state = current.status;
}

function renderMembers() {
  const items = [...current.members.values()].map((m) =>
    h(
      "li",
      { testid: "member", "data-user": m.username, "data-online": m.online ? "yes" : "no", class: m.online ? "online" : "away" },
      h("span", { class: "dot", "aria-hidden": "true" }),
      m.username,
      m.id === client.user?.id ? h("span", { class: "muted" }, " (you)") : null,
      current.team?.[m.id] ? h("span", { class: `tag team-${current.team[m.id]}` }, current.team[m.id]) : null,
      m.online ? null : h("span", { class: "muted small", testid: "member-away" }, " disconnected"),
    ),
  );
  $("members").replaceChildren(...items);
  const watchers = $("spectator-count");
  watchers.textContent = current.watchers === 1 ? "1 watching" : `${current.watchers} watching`;
  show(watchers, current.watchers > 0);
}

function leaveRoomView() {
  current = null;
  currentView?.destroy?.();
  currentView = null;
  sessionStorage.removeItem(ROOM_KEY);
  sessionStorage.removeItem(WATCH_KEY);
}

$("leave").addEventListener("click", async () => {
  const id = current?.id;
  if (!id) return;
  try {
    await client.leave(id);
  } catch (error) {
    if (error.code !== "not_in_room") notice(describe(error));
  }
  leaveRoomView();
  showLobby();
});

$("delete-room").addEventListener("click", async () => {
  const id = current?.id;
  if (!id) return;
  try {
    await client.deleteRoom(id);
  } catch (error) {
    notice(describe(error));
  }
});

client.on("*", (message) => {
  // A quick join's room: the one its reply names.
  if (current?.id === null && message.type === "QUICK_JOIN" && message.data?.is_successful) {
    current.id = message.room_id;
  }
  if (!current || current.id === null || message.room_id !== current.id) return;
  const handler = ROOM_HANDLERS[message.type];
  if (handler) handler(message.data ?? {}, message);
  if (!current) return; // the handler left the room
  if (!currentView) {
    // Messages that arrive with the JOIN_ROOM reply, before the view exists.
    (current.early ??= []).push(message);
  } else {
    currentView.message(message);
  }
});

const ROOM_HANDLERS = {
  USER_JOINED({ user, reconnected, spectator }) {
    current.names.set(user.id, user.username);
    if (spectator) {
      if (user.id !== client.user?.id && !current.watcherIds.has(user.id)) {
        current.watcherIds.add(user.id);
        current.watchers += 1;
      }
      renderMembers();
      systemLine(`${user.username} is watching.`);
      return;
    }
    if (current.watcherIds.delete(user.id)) {
      // A spectator who took a seat: one fewer watching.
      current.watchers = Math.max(current.spectator ? 1 : 0, current.watchers - 1);
    }
    current.members.set(user.id, { ...user, online: true });
    renderMembers();
    systemLine(reconnected ? `${user.username} is back.` : `${user.username} joined.`);
  },
  USER_LEFT({ user, spectator }) {
    if (spectator) {
      if (user.id !== client.user?.id) {
        current.watcherIds.delete(user.id);
        current.watchers = Math.max(current.spectator ? 1 : 0, current.watchers - 1);
      }
      renderMembers();
      systemLine(`${user.username} stopped watching.`);
      return;
    }
    current.members.delete(user.id);
    renderMembers();
    systemLine(`${user.username} left.`);
  },
  USER_DISCONNECTED({ user }) {
    const member = current.members.get(user.id);
    if (member) member.online = false;
    renderMembers();
    systemLine(`${user.username} lost the connection; their seat is kept.`);
  },
  GAME_STARTED() {
    current.status = "in_game";
    current.team = null;
    renderStatus();
    renderMembers();
    renderChatScope();
  },
  GAME_FINISHED() {
    current.status = "finished";
    renderStatus();
  },
  ROOM_CLOSED({ reason }) {
    const mine = current.room?.owner.id === client.user?.id;
    leaveRoomView();
    notice(mine && reason === "deleted by its owner" ? "The room was deleted." : `The room was ${reason}.`);
    showLobby();
  },
  CHAT_HISTORY({ messages }) {
    current.history = messages ?? [];
    renderChatHistory();
  },
  CHAT_MESSAGE(data) {
    setError($("chat-error"), "");
    current.history.push(data);
    $("chat-log").append(chatLine(data));
    scrollChat();
  },
  TEAMS(teams) {
    current.team = {};
    for (const [team, users] of Object.entries(teams)) {
      for (const user of users) current.team[user.id] = team;
    }
    renderMembers();
    renderChatScope();
  },
};

client.addEventListener("rejoin", ({ detail }) => {
  if (!current || detail.roomId !== current.id) return;
  if (detail.error) {
    leaveRoomView();
    notice(`You are no longer in the room: ${describe(detail.error)}`);
    showLobby();
    return;
  }
  // Who is here may have changed while we were away. Resumed, the messages
  // missed meanwhile follow (the chat has no gap, the spectator count comes
  // from the USER_JOINED and USER_LEFT among them); not resumed, a normal
  // join follows (CHAT_HISTORY replaces the chat) and the count is the room's.
  current.members = new Map();
  current.spectator = detail.spectator;
  updateRoom(detail.room, { watchers: !detail.resumed });
  currentView?.render();
});

// -- Chat --------------------------------------------------------------------

function chatLine({ user, text, team, ts }) {
  const time = new Date((ts ?? Date.now() / 1000) * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return h(
    "li",
    { testid: "chat-message", class: team ? "team" : "", "data-team": team },
    h("time", { class: "muted small" }, time),
    " ",
    team ? h("span", { class: `tag team-${team}` }, team) : null,
    h("strong", {}, user.username),
    " ",
    h("span", { class: "text" }, text),
  );
}

function systemLine(text) {
  $("chat-log").append(h("li", { class: "system muted small", testid: "chat-system" }, text));
  scrollChat();
}

function renderChatHistory() {
  $("chat-log").replaceChildren(...current.history.map(chatLine));
  scrollChat();
}

function scrollChat() {
  const log = $("chat-log");
  log.scrollTop = log.scrollHeight;
}

function renderChatScope() {
  const select = $("chat-scope");
  const mine = current?.team?.[client.user?.id];
  if (!mine) {
    select.replaceChildren();
    show(select, false);
    return;
  }
  const previous = select.value;
  select.replaceChildren(h("option", { value: "" }, "Everyone"), h("option", { value: mine }, `Team ${mine}`));
  select.value = previous === mine ? mine : "";
  show(select, true);
}

$("chat-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("chat-input");
  const text = input.value.trim();
  if (!text || !current) return;
  const data = { text };
  const team = $("chat-scope").value;
  if (team) data.team = team;
  if (client.send("CHAT_MESSAGE", current.id, data)) {
    input.value = "";
    setError($("chat-error"), "");
  }
});

// -- Game views ----------------------------------------------------------------

/** The base of a game's view: what every room shows. */
class GameView {
  constructor(room, panel) {
    this.room = room;
    this.panel = panel;
    this.errorText = "";
  }

  get me() {
    return client.user?.id;
  }

  /** Watching: the board and the chat, but no moves. */
  get spectator() {
    return Boolean(this.room.spectator);
  }

  name(id) {
    return this.room.names.get(id) ?? `player ${id}`;
  }

  send(type, data = {}) {
    this.error("");
    client.send(type, this.room.id, data);
  }

  error(message) {
    this.errorText = message;
    const el = this.panel.querySelector('[data-testid="game-error"]');
    if (el) setError(el, message);
  }

  errorLine() {
    const el = h("p", { class: "error", testid: "game-error", role: "alert" });
    setError(el, this.errorText);
    return el;
  }

  message() {}

  render() {}

  /** The owner's start button, for games that start on START_GAME. */
  async start(options = {}) {
    this.error("");
    try {
      await client.request("START_GAME", this.room.id, options, { reply: "GAME_STARTED" });
    } catch (error) {
      this.error(describe(error));
    }
  }
}

/** A game the lobby has no view for: a start button and its messages. */
class GenericView extends GameView {
  constructor(room, panel) {
    super(room, panel);
    this.log = [];
  }

  message(message) {
    if (["CHAT_MESSAGE", "CHAT_HISTORY", "USER_JOINED", "USER_LEFT", "USER_DISCONNECTED"].includes(message.type)) return;
    this.log.push(message);
    this.log = this.log.slice(-20);
    this.render();
  }

  render() {
    const room = this.room.room;
    const game = gameInfo(room.game);
    const isOwner = room.owner.id === this.me;
    fill(this.panel,
      h("h3", {}, room.game),
      h("p", { class: "muted" }, game?.description ?? ""),
      isOwner && !this.spectator && this.room.status !== "in_game"
        ? h("button", { type: "button", testid: "start-game", onclick: () => this.start() }, "Start the game")
        : null,
      this.errorLine(),
      this.log.length
        ? h("pre", { class: "raw", testid: "game-log" }, this.log.map((m) => `${m.type} ${JSON.stringify(m.data)}`).join("\n"))
        : null,
    );
  }
}

/** The chat game: nothing but the room's chat. */
class ChatView extends GameView {
  render() {
    const room = this.room.room;
    fill(this.panel,
      h("h3", {}, "Chat room"),
      h("p", { class: "muted" }, `Talk with everyone in ${room.name}.`),
      this.errorLine(),
    );
    this.panel.classList.add("compact");
  }

  destroy() {
    this.panel.classList.remove("compact");
  }
}

class TicTacToeView extends GameView {
  constructor(room, panel) {
    super(room, panel);
    this.board = null;
    this.rematch = [];
  }

  message({ type, data }) {
    if (type === "BOARD") {
      this.board = data;
      this.rematch = [];
      this.errorText = "";
      this.render();
    } else if (type === "REMATCH") {
      this.rematch = data.players;
      this.render();
    } else if (type === "GAME_STARTED" || type === "GAME_FINISHED" || type === "USER_LEFT") {
      this.render();
    }
  }

  status() {
    const board = this.board;
    const marks = board?.marks ?? {};
    if (!board || !Object.keys(marks).length) {
      return this.spectator && this.room.status === "in_game" ? "Watching: the board comes with the next move." : "Waiting for a second player…";
    }
    const mine = marks[String(this.me)];
    const mark = (id) => marks[String(id)];
    if (board.winner !== null && board.winner !== undefined) {
      const forfeit = !board.line;
      if (board.winner === this.me) return forfeit ? "You won: your opponent left." : "You won!";
      const name = this.name(board.winner);
      if (!mine) return `${name} (${mark(board.winner)}) won.`;
      return forfeit ? `${name} won: you left the game.` : `${name} won.`;
    }
    if (board.draw) return "A draw.";
    if (board.turn === this.me) return `Your turn: you are ${mine}.`;
    return `${this.name(board.turn)}'s turn (${mark(board.turn)}).`;
  }

  render() {
    const board = this.board;
    const cells = board?.cells ?? Array(9).fill(null);
    const line = new Set(board?.line ?? []);
    const playing = this.room.status === "in_game";
    const mine = board?.marks?.[String(this.me)];
    const over = board && (board.winner !== null || board.draw) && Object.keys(board.marks ?? {}).length > 0;
    const grid = h(
      "div",
      { class: "ttt", testid: "ttt-board", role: "grid", "aria-label": "board" },
      cells.map((cell, i) =>
        h(
          "button",
          {
            type: "button",
            class: `cell ${cell ? `mark-${cell}` : ""} ${line.has(i) ? "win" : ""}`,
            testid: `cell-${i}`,
            "aria-label": `cell ${i + 1}${cell ? `: ${cell}` : ""}`,
            disabled: !playing || this.spectator,
            onclick: () => this.send("MOVE", { cell: i }),
          },
          cell ?? "",
        ),
      ),
    );
    let rematch = null;
    if (over && mine && !this.spectator && this.room.status === "finished") {
      const asked = this.rematch.includes(this.me);
      const other = this.rematch.find((id) => id !== this.me);
      rematch = h(
        "div",
        { class: "row center" },
        h("button", { type: "button", testid: "rematch", disabled: asked, onclick: () => this.send("REMATCH") }, asked ? "Rematch asked" : "Rematch"),
        h(
          "span",
          { class: "muted small", testid: "rematch-status" },
          asked ? "Waiting for your opponent…" : other ? `${this.name(other)} wants a rematch.` : "",
        ),
      );
    }
    fill(this.panel,
      h("h3", {}, "Tic-tac-toe"),
      h("p", { class: "status", testid: "ttt-status", role: "status" }, this.status()),
      grid,
      this.errorLine(),
      rematch,
    );
  }
}

class TriviaView extends GameView {
  constructor(room, panel) {
    super(room, panel);
    this.question = null;
    this.answered = null; // the choice sent for the open question
    this.locked = false;
    this.result = null;
    this.scores = {};
    this.teamScores = null;
    this.scoreboard = null;
    this.timer = setInterval(() => this.tick(), 200);
    this.options = { rounds: 5, seconds: 15, teams: false };
  }

  destroy() {
    clearInterval(this.timer);
  }

  chatRefusedMessage() {
    return "Chat to everyone is closed while a question is open: team chat still works.";
  }

  message({ type, data }) {
    switch (type) {
      case "GAME_STARTED":
        this.question = this.result = this.scoreboard = null;
        this.scores = {};
        this.teamScores = null;
        break;
      case "QUESTION":
        if (this.question?.index !== data.index) {
          this.answered = null;
          this.locked = false;
          // QUESTION has no length: the time left when it arrives is close.
          this.total = Math.max(1, Math.round(client.timeLeft(data.deadline)));
        }
        this.question = data;
        this.result = null;
        this.errorText = "";
        break;
      case "ANSWERED":
        this.locked = true;
        break;
      case "RESULT":
        this.result = data;
        this.setScores(data);
        break;
      case "SCORES":
        this.setScores(data);
        break;
      case "SCOREBOARD":
        this.scoreboard = data;
        this.question = null;
        this.setScores(data);
        break;
      case "GAME_FINISHED":
      case "TEAMS":
      case "USER_JOINED":
      case "USER_LEFT":
        break;
      default:
        return;
    }
    this.render();
  }

  setScores(data) {
    this.scores = data.scores ?? this.scores;
    this.teamScores = data.team_scores ?? null;
  }

  answer(choice) {
    if (this.answered !== null || !this.question) return;
    this.answered = choice;
    this.send("ANSWER", { index: this.question.index, choice });
    this.render();
  }

  tick() {
    const el = this.panel.querySelector('[data-testid="trivia-countdown"]');
    if (!el || !this.question || this.result) return;
    const left = client.timeLeft(this.question.deadline);
    el.textContent = String(Math.ceil(left));
    const bar = this.panel.querySelector(".bar > span");
    const total = this.total ?? 15;
    if (bar) bar.style.width = `${Math.max(0, Math.min(100, (100 * left) / total))}%`;
  }

  startForm() {
    const field = (label, name, attrs) =>
      h(
        "label",
        { class: "inline" },
        label,
        h("input", {
          ...attrs,
          name,
          testid: `trivia-${name}`,
          value: String(this.options[name]),
          oninput: (e) => (this.options[name] = Number(e.target.value)),
        }),
      );
    return h(
      "form",
      {
        class: "start-form",
        testid: "trivia-start-form",
        onsubmit: (event) => {
          event.preventDefault();
          this.start({ rounds: this.options.rounds, seconds: this.options.seconds, teams: this.options.teams });
        },
      },
      field("Rounds", "rounds", { type: "number", min: 1, max: 20 }),
      field("Seconds", "seconds", { type: "number", min: 5, max: 60 }),
      h(
        "label",
        { class: "inline" },
        h("input", {
          type: "checkbox",
          testid: "trivia-teams",
          checked: this.options.teams,
          onchange: (e) => (this.options.teams = e.target.checked),
        }),
        " Two teams",
      ),
      h("button", { type: "submit", testid: "trivia-start" }, this.scoreboard ? "Play again" : "Start"),
    );
  }

  scoreTable() {
    const ids = Object.keys(this.scores);
    if (!ids.length) return null;
    const rows = ids
      .map((id) => ({ id: Number(id), score: this.scores[id] }))
      .sort((a, b) => b.score - a.score)
      .map(({ id, score }) =>
        h(
          "li",
          { testid: "trivia-score", "data-user": this.name(id), class: id === this.me ? "me" : "" },
          h("span", {}, this.name(id), this.room.team?.[id] ? h("span", { class: `tag team-${this.room.team[id]}` }, this.room.team[id]) : null),
          h("strong", { testid: id === this.me ? "my-score" : "score-value" }, String(score)),
        ),
      );
    const teams = this.teamScores
      ? h(
          "p",
          { class: "teams", testid: "team-scores" },
          Object.entries(this.teamScores).map(([team, score]) => h("span", { class: `tag team-${team}` }, `${team} ${score}`)),
        )
      : null;
    return h("div", { class: "scores" }, h("h4", {}, "Scores"), teams, h("ol", { class: "score-list", testid: "trivia-scores" }, rows));
  }

  render() {
    const room = this.room.room;
    const isOwner = room.owner.id === this.me;
    const parts = [h("h3", {}, "Trivia")];
    const q = this.question;
    if (this.room.status !== "in_game" || (!q && !this.result)) {
      if (this.scoreboard) parts.push(this.finalBoard());
      if (this.room.status !== "in_game") {
        parts.push(
          isOwner && !this.spectator
            ? this.startForm()
            : h("p", { class: "status", testid: "trivia-waiting" }, `Waiting for ${room.owner.username} to start the game…`),
        );
      } else {
        parts.push(h("p", { class: "status" }, "Get ready…"));
      }
    }
    if (q && this.room.status === "in_game") {
      const correct = this.result?.index === q.index ? this.result.answer : null;
      const gained = this.result?.gained?.[String(this.me)];
      parts.push(
        h(
          "div",
          { class: "question", testid: "trivia-question-box" },
          h(
            "div",
            { class: "row spread" },
            h("span", { class: "muted", testid: "trivia-progress" }, `Question ${q.index + 1} of ${q.total}`),
            this.result
              ? h("span", { class: "muted", testid: "trivia-result" }, gained ? `+${gained} points` : "No points this time")
              : h("span", { class: "countdown" }, h("strong", { testid: "trivia-countdown" }, String(Math.ceil(client.timeLeft(q.deadline)))), " s left"),
          ),
          h("div", { class: "bar", "aria-hidden": "true" }, h("span", {})),
          h("p", { class: "question-text", testid: "trivia-question" }, q.question),
          h(
            "div",
            { class: "choices" },
            q.choices.map((choice, i) =>
              h(
                "button",
                {
                  type: "button",
                  testid: `trivia-choice-${i}`,
                  class: `choice ${this.answered === i ? "picked" : ""} ${correct === i ? "correct" : ""} ${correct !== null && this.answered === i && correct !== i ? "wrong" : ""}`,
                  disabled: this.spectator || this.answered !== null || this.locked || this.result !== null,
                  onclick: () => this.answer(i),
                },
                choice,
              ),
            ),
          ),
          h("p", { class: "muted small", testid: "trivia-answer-state" }, this.result ? "Next question soon…" : this.locked ? "Answer locked in." : ""),
        ),
      );
    }
    parts.push(this.errorLine(), this.scoreTable());
    fill(this.panel, parts);
    this.tick();
  }

  finalBoard() {
    const board = this.scoreboard;
    let headline;
    if (board.winning_team) headline = `Team ${board.winning_team} wins!`;
    else if (board.winner) headline = board.winner.id === this.me ? "You win!" : `${board.winner.username} wins!`;
    else headline = "A tie!";
    return h(
      "div",
      { class: "final", testid: "trivia-scoreboard" },
      h("p", { class: "status", testid: "trivia-winner" }, headline),
      h(
        "ol",
        {},
        board.ranking.map((entry) => h("li", {}, `${entry.user.username}: ${entry.score}`)),
      ),
    );
  }
}

const VIEWS = { chat: ChatView, tictactoe: TicTacToeView, trivia: TriviaView };

// -- Start -------------------------------------------------------------------

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && !$("lobby-view").hidden) refreshRooms();
});

if (client.loggedIn) enterLobby();
else showAuth();
