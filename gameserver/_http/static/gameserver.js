// gameserver.js: the browser client for a gameserver.
//
// A plain ES module with no build step. Its one dependency, the MessagePack
// codec for the "msgpack" wire format (@msgpack/msgpack), is vendored beside
// it, in vendor/msgpack/, and imported from there:
//
//   import { GameClient } from "/static/gameserver.js";
//   const client = new GameClient({ storage: localStorage }); // format: "json"
//   await client.login("alice", "alice-secret"); // or: await client.guest();
//   await client.connect();
//   const room = await client.join(7, "mint"); // or: await client.quickJoin("tictactoe");
//   // or watch without a seat: await client.spectate(7, "mint");
//   client.on("CHAT_MESSAGE", (msg) => console.log(msg.data.text));
//   client.send("CHAT_MESSAGE", room.id, { text: "hello" });
//
// The HTTP API (accounts, tokens, rooms) is reached with fetch, the game
// over one WebSocket. A guest (`guest()`) plays with no password, under a
// made-up name, and may keep the account with `claim(password)`. Access
// tokens are refreshed before they expire; a dropped socket is reopened
// with backoff and jitter, validated again, and every room the client was
// in is joined again (one found by `quickJoin(game)` too, by its id; one
// watched with `spectate()` as a spectator), so a player mid-game gets the
// seat back. The client keeps the highest `seq` received in each room and
// rejoins with `resume`: the server then sends exactly the messages missed
// meanwhile (or, when it cannot, a normal join: the chat's history and the
// game's state). A room message whose `seq` is not above the last one seen
// is dropped, so nothing is delivered twice. Messages are
// JSON text frames, or with `format: "msgpack"` MessagePack binary frames
// (the WebSocket subprotocol "gameserver.msgpack"). See README.md, "The
// lobby and the JavaScript client", for the whole API.

import { decode, encode } from "./vendor/msgpack/index.mjs";

export const CONNECTING = "connecting";
export const OPEN = "open";
export const RECONNECTING = "reconnecting";
export const CLOSED = "closed";

// Close codes the server uses (README, "Limits").
const CLOSE_UNAUTHORIZED = 4001;
const CLOSE_TOO_MANY_CONNECTIONS = 4008;
// An admin kicked or banned the user: coming back at once would undo a kick.
const CLOSE_KICKED = 4003;

// Wire formats and the WebSocket subprotocol each one asks for. "json" asks
// for none: the server's default, and what a client before the choice sent.
const SUBPROTOCOLS = new Map([
  ["json", null],
  ["msgpack", "gameserver.msgpack"],
]);
// What the server may answer for each: "json" also takes its explicit name.
const ANSWERS = new Map([
  ["json", ["", "gameserver.json"]],
  ["msgpack", ["gameserver.msgpack"]],
]);
// As JSON.stringify: an undefined property is left out, not sent as nil.
const ENCODE_OPTIONS = { ignoreUndefined: true };

// Message types that get a reply of the same type carrying `is_successful`.
const VALIDATE_CONNECTION = "VALIDATE_CONNECTION";
const JOIN_ROOM = "JOIN_ROOM";
const LEAVE_ROOM = "LEAVE_ROOM";
// Its reply names the room it found: answered for whichever room it names.
const QUICK_JOIN = "QUICK_JOIN";
const ROOM_CLOSED = "ROOM_CLOSED";

/** A refusal or failure, with the server's `code` and `detail`. */
export class GameServerError extends Error {
  constructor(code, detail, { status = null, requestType = null, roomId = null } = {}) {
    super(detail || code);
    this.name = "GameServerError";
    this.code = code;
    this.detail = detail || code;
    this.status = status; // the HTTP status, for API errors
    this.requestType = requestType; // the message type that was refused
    this.roomId = roomId;
  }
}

/** The payload of a JWT (not verified: the server does that), or null. */
export function decodeToken(token) {
  try {
    const part = token.split(".")[1];
    const base64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

const DEFAULTS = {
  url: null, // the server's base URL; default: the page's directory
  format: "json", // the wire format: "json" (text frames) or "msgpack" (binary)
  storage: null, // e.g. localStorage, to keep the session across reloads
  storageKey: "gameserver.session",
  requestTimeout: 15000, // ms to wait for a reply
  minReconnectDelay: 500, // ms; doubles on every failed attempt...
  maxReconnectDelay: 10000, // ...up to this, with jitter
  refreshMargin: 30, // s before expiry to refresh the access token
  WebSocket: globalThis.WebSocket,
  fetch: globalThis.fetch?.bind(globalThis),
};

/**
 * One player's connection to a gameserver.
 *
 * Server messages: `on(type, fn)` (and `on("*", fn)` for all of them).
 * Client events (an EventTarget; `event.detail` carries the value):
 *   "statechange" {state}   connecting / open / reconnecting / closed
 *   "error"       GameServerError: an ERROR no request was waiting for,
 *                 an expired session, a refused connection...
 *   "session"     {user: {id, username}} after a login (or guest()), null
 *                 after logout or expiry
 *   "rejoin"      {roomId, room, resumed, spectator} or {roomId, error}
 *                 after a reconnect (a failed rejoin is reported here only,
 *                 not as "error"). `resumed` true: the messages missed
 *                 while away follow, each once, in order; false: a normal
 *                 join follows (CHAT_HISTORY, the game's state)
 */
export class GameClient extends EventTarget {
  constructor(options = {}) {
    super();
    this.options = { ...DEFAULTS, ...options };
    const format = this.options.format ?? DEFAULTS.format;
    if (!SUBPROTOCOLS.has(format)) {
      throw new GameServerError("bad_format", `unknown format ${JSON.stringify(format)}: use "json" or "msgpack"`);
    }
    this.options.format = format;
    const base = new URL(this.options.url ?? ".", globalThis.location?.href);
    if (!base.pathname.endsWith("/")) base.pathname += "/";
    this.baseUrl = base;
    this.user = null; // {id, username} once validated
    this.clockOffset = 0; // server time minus local time, in seconds
    this._state = CLOSED;
    this._listeners = new Map();
    this._pending = [];
    this._rooms = new Map(); // room id -> {password, spectate}
    this._seqs = new Map(); // room id -> the highest seq received there
    // Rooms joined again on this socket whose answer has not come yet.
    this._rejoining = new Set();
    this._ws = null;
    this._wanted = false; // connect() was called and close() was not
    this._attempt = 0;
    this._retryTimer = null;
    this._refreshTimer = null;
    this._refreshing = null;
    this._connected = null; // {promise, resolve, reject} for connect()
    this._wasOpen = false; // validated at least once since connect()
    this._authFailed = null; // the token refusal that preceded a 4001 close
    this._refreshedForAuth = false;
    this._fatalError = null;
    this._onOnline = () => this._retryNow();
    this._onlineListening = false; // the window's "online" listener is added
    this._session = this._load();
    this._scheduleRefresh();
  }

  // -- Session -------------------------------------------------------------

  /**
   * `{username, userId, access, refresh}`, with `guest: true` for a guest,
   * or null when logged out.
   */
  get session() {
    return this._session;
  }

  get loggedIn() {
    return this._session !== null;
  }

  /** A guest's session: no password yet, so logging out loses the account. */
  get isGuest() {
    return Boolean(this._session?.guest);
  }

  async register(username, password) {
    return this.api("POST", "api/users/", { username, password }, { auth: false });
  }

  async login(username, password) {
    const tokens = await this.api("POST", "api/token/", { username, password }, { auth: false });
    this._learnClock(tokens.access);
    this._setSession({ username, userId: Number(decodeToken(tokens.access)?.sub), ...tokens });
    return this._session;
  }

  /**
   * Play as a guest: a new account with no password, named `username` or,
   * without one, a made-up `guest-…` name. The session is kept as after
   * login(), with `session.guest` true; it lasts as long as its refresh
   * token, and a guest cannot log in again after logout().
   */
  async guest(username = null) {
    const body = username ? { username } : {};
    const { access, refresh, user } = await this.api("POST", "api/token/guest/", body, { auth: false });
    this._learnClock(access);
    this._setSession({ username: user.username, userId: user.id, access, refresh, guest: true });
    return this._session;
  }

  /**
   * Keep a guest's account: give it a password (8–256 characters) to log
   * in with later; its id and name stay. Resolves with the user,
   * `{id, username}`. The tokens stay valid: the session goes on, no
   * longer a guest's.
   */
  async claim(password) {
    try {
      const user = await this.api("POST", "api/users/claim/", { password });
      this._notGuest(user.id);
      return user;
    } catch (error) {
      // Claimed already (in another tab, say): not a guest any more.
      if (error.code === "not_a_guest") this._notGuest(this._session?.userId);
      throw error;
    }
  }

  _notGuest(userId) {
    const session = this._session;
    if (!session?.guest || session.userId !== userId) return;
    const claimed = { ...session };
    delete claimed.guest;
    this._setSession(claimed);
  }

  /** Forget the tokens and close the socket. */
  logout() {
    this.close();
    this._setSession(null);
  }

  /** A fresh access token: refreshed first when it expires soon. */
  async accessToken() {
    if (!this._session) throw new GameServerError("not_authenticated", "log in first");
    const { access } = this._session;
    if (this._expiresIn(access) < Math.min(10, this._margin(access))) {
      await this.refresh();
    }
    return this._session.access;
  }

  /** Trade the refresh token for a new access token (one request at a time). */
  refresh() {
    if (!this._refreshing) {
      this._refreshing = this._refresh().finally(() => {
        this._refreshing = null;
      });
    }
    return this._refreshing;
  }

  async _refresh() {
    const session = this._session;
    if (!session) throw new GameServerError("not_authenticated", "log in first");
    try {
      const { access } = await this.api("POST", "api/token/refresh/", { refresh: session.refresh }, { auth: false });
      this._learnClock(access);
      if (this._session === session) this._setSession({ ...session, access });
      return access;
    } catch (error) {
      if (error.status === 401 && this._session === session) {
        this._setSession(null);
        this.close();
        this._emit("error", new GameServerError("session_expired", "your session has expired: log in again"));
      }
      throw error;
    }
  }

  _expiresIn(token) {
    const exp = decodeToken(token)?.exp;
    return typeof exp === "number" ? exp - this.serverNow() : -Infinity;
  }

  /** A token's lifetime (`exp - iat`) in seconds, or 0 when unknown. */
  _lifetime(token) {
    const claims = decodeToken(token) ?? {};
    const lifetime = (claims.exp ?? 0) - (claims.iat ?? 0);
    return Number.isFinite(lifetime) && lifetime > 0 ? lifetime : 0;
  }

  /** How long before expiry to refresh: `refreshMargin`, or a fifth of a short lifetime. */
  _margin(token) {
    const claims = decodeToken(token) ?? {};
    if (typeof claims.iat !== "number") return this.options.refreshMargin;
    return Math.min(this.options.refreshMargin, this._lifetime(token) / 5);
  }

  /**
   * Learn the server's clock from a token it has just issued: `iat` is its
   * time, in whole seconds. VALIDATE_CONNECTION's `server_time` is closer, so
   * a guess within 2 s of the current offset is left alone; a page whose
   * clock is far off is corrected before its first refresh is scheduled.
   */
  _learnClock(token) {
    const iat = decodeToken(token)?.iat;
    if (typeof iat !== "number") return;
    const guess = iat + 0.5 - Date.now() / 1000;
    if (Math.abs(guess - this.clockOffset) > 2) this.clockOffset = guess;
  }

  _scheduleRefresh() {
    clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
    if (!this._session) return;
    const { access } = this._session;
    // Never sooner than 5 s (or half a shorter token's lifetime, at least
    // 1 s): a misjudged clock must not turn refreshing into a loop. A token
    // that is really about to expire is refreshed by accessToken() anyway.
    const floor = Math.min(5, Math.max(1, this._lifetime(access) / 2));
    const delay = Math.max(floor, this._expiresIn(access) - this._margin(access));
    this._refreshTimer = setTimeout(() => {
      this._refreshTimer = null;
      this.refresh().catch((error) => {
        // A network failure: try again shortly, while the token still works.
        if (error.status !== 401 && this._session && !this._refreshTimer) this._scheduleRefresh();
      });
    }, Math.min(delay * 1000, 2 ** 31 - 1));
  }

  _setSession(session) {
    const had = this._session;
    this._session = session;
    const { storage, storageKey } = this.options;
    try {
      if (storage && session) storage.setItem(storageKey, JSON.stringify(session));
      else if (storage) storage.removeItem(storageKey);
    } catch {
      // Private mode or a full storage: the session lasts for this page.
    }
    this._scheduleRefresh();
    if (!had !== !session || had?.username !== session?.username) {
      this._emit("session", session && { user: { id: session.userId, username: session.username } });
    }
  }

  _load() {
    const { storage, storageKey } = this.options;
    try {
      const session = JSON.parse(storage?.getItem(storageKey) ?? "null");
      return session?.access && session?.refresh ? session : null;
    } catch {
      return null;
    }
  }

  // -- HTTP API ------------------------------------------------------------

  /** Call the HTTP API; the JSON body, or a GameServerError. */
  async api(method, path, body = undefined, { auth = true } = {}) {
    for (let attempt = 0; ; attempt++) {
      const headers = { Accept: "application/json" };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      if (auth) headers.Authorization = `Bearer ${await this.accessToken()}`;
      let response;
      try {
        response = await this.options.fetch(new URL(path.replace(/^\//, ""), this.baseUrl), {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
        });
      } catch (error) {
        throw new GameServerError("network_error", `the server cannot be reached (${error.message})`);
      }
      const text = await response.text();
      let json = null;
      try {
        json = text ? JSON.parse(text) : null;
      } catch {
        json = null;
      }
      if (response.ok) return json;
      // A token the server no longer takes: refresh once and try again.
      if (response.status === 401 && auth && attempt === 0 && this._session) {
        await this.refresh();
        continue;
      }
      throw new GameServerError(json?.code ?? `http_${response.status}`, json?.detail ?? response.statusText, {
        status: response.status,
      });
    }
  }

  listGames() {
    return this.api("GET", "api/games/", undefined, { auth: false });
  }

  /** `{count, next, previous, results}`: one page of rooms, newest first. */
  listRooms({ page = 1, game = null } = {}) {
    const query = new URLSearchParams({ page: String(page) });
    if (game) query.set("game", game);
    return this.api("GET", `api/rooms/?${query}`);
  }

  /** `{name, game, password?, max_players?}`: the new room. */
  createRoom(options) {
    return this.api("POST", "api/rooms/", options);
  }

  getRoom(roomId) {
    return this.api("GET", `api/rooms/${roomId}/`);
  }

  deleteRoom(roomId) {
    return this.api("DELETE", `api/rooms/${roomId}/`);
  }

  // -- Connection ----------------------------------------------------------

  /** "connecting", "open", "reconnecting" or "closed". */
  get state() {
    return this._state;
  }

  /** The open WebSocket, or null. */
  get socket() {
    return this._ws;
  }

  /** The wire format: "json" or "msgpack". */
  get format() {
    return this.options.format;
  }

  /** The ids of the rooms this client is in (and rejoins after a drop). */
  get rooms() {
    return [...this._rooms.keys()];
  }

  /** Whether the client is in the room as a spectator (no seat). */
  isSpectating(roomId) {
    return Boolean(this._rooms.get(roomId)?.spectate);
  }

  /** The highest `seq` received in the room (what a rejoin resumes from), or null. */
  lastSeq(roomId) {
    return this._seqs.get(roomId) ?? null;
  }

  /** The server's clock, in seconds since the epoch: for countdowns. */
  serverNow() {
    return Date.now() / 1000 + this.clockOffset;
  }

  /** Seconds left until a deadline given in server time (never negative). */
  timeLeft(deadline) {
    return Math.max(0, deadline - this.serverNow());
  }

  /**
   * Open the socket and validate it; resolves with the user once the server
   * has accepted the token. Retries by itself while the server is
   * unreachable; rejects only when the session is refused or on close().
   */
  connect() {
    if (this._connected) return this._connected.promise;
    this._connected = this._deferred();
    this._wanted = true;
    this._wasOpen = false;
    this._attempt = 0;
    this._listenOnline(true);
    this._open(CONNECTING);
    return this._connected.promise;
  }

  /** {promise, resolve, reject, settled} for connect(). */
  _deferred() {
    const deferred = { settled: false };
    deferred.promise = new Promise((resolve, reject) => {
      deferred.resolve = resolve;
      deferred.reject = reject;
    });
    deferred.promise.catch(() => {}); // nobody need wait for it
    return deferred;
  }

  /** Retry at once when the browser is back online: only while connected. */
  _listenOnline(on) {
    if (typeof window === "undefined" || on === this._onlineListening) return;
    this._onlineListening = on;
    if (on) window.addEventListener("online", this._onOnline);
    else window.removeEventListener("online", this._onOnline);
  }

  /** Close the socket for good (no reconnect). Rooms are forgotten. */
  close() {
    this._wanted = false;
    this._listenOnline(false);
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._rooms.clear();
    this._seqs.clear();
    const ws = this._ws;
    this._ws = null;
    if (ws && ws.readyState <= 1) ws.close(1000, "client closed");
    this._failPending(new GameServerError("closed", "the connection was closed"));
    if (this._connected) {
      this._connected.reject(new GameServerError("closed", "the connection was closed"));
      this._connected = null;
    }
    this._setState(CLOSED);
  }

  async _open(state) {
    // close() (or logout()) may have come while a retry or a refresh waited.
    if (!this._wanted || this._ws) return;
    this._setState(state);
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    let token;
    try {
      token = await this.accessToken();
    } catch (error) {
      if (!this._wanted) return undefined;
      if (error.code === "network_error") return this._scheduleRetry();
      return this._fatal(error);
    }
    if (!this._wanted || this._ws) return;
    const url = new URL("ws", this.baseUrl);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const protocol = SUBPROTOCOLS.get(this.format);
    let ws;
    try {
      ws = protocol ? new this.options.WebSocket(url, [protocol]) : new this.options.WebSocket(url);
    } catch (error) {
      return this._fatal(new GameServerError("bad_url", error.message));
    }
    if (protocol) ws.binaryType = "arraybuffer";
    this._ws = ws;
    ws.onopen = () => {
      if (ws !== this._ws) return;
      const answered = ws.protocol ?? "";
      if (!ANSWERS.get(this.format).includes(answered)) {
        // A server that cannot speak the format would garble every message.
        return this._fatal(
          new GameServerError(
            "protocol_mismatch",
            `the client asked for the ${this.format} format (subprotocol ${protocol ?? "none"}) and the server answered ${answered || "none"}`,
          ),
        );
      }
      // From here on the room's messages may come (the server may still
      // hold the old socket): each room's are dropped until its rejoin's
      // answer, which brings them again in their place.
      this._rejoining = new Set(this._rooms.keys());
      this._validate(ws, token);
    };
    ws.onmessage = (event) => {
      if (ws === this._ws) this._receive(event.data);
    };
    ws.onclose = (event) => {
      if (ws === this._ws) this._closed(event);
    };
  }

  async _validate(ws, token) {
    const sent = Date.now();
    let reply;
    try {
      reply = await this._request(VALIDATE_CONNECTION, null, { token }, { whenOpen: false });
    } catch (error) {
      if (ws !== this._ws) return;
      if (error.code === "token_expired" || error.code === "invalid_token") {
        this._authFailed = error;
      } else if (error.code === "too_many_connections" || error.code === "banned") {
        this._fatalError = error;
      }
      return; // the server closes the socket; _closed decides what next
    }
    const received = Date.now();
    this.user = reply.user;
    // The reply left the server about half-way through the round trip.
    this.clockOffset = reply.server_time - (sent + received) / 2000;
    this._attempt = 0;
    this._authFailed = null;
    this._refreshedForAuth = false;
    this._wasOpen = true;
    // Every JOIN_ROOM goes out before the state is OPEN, so whatever the page
    // sends once it is comes after them (the server takes a socket's messages
    // in order): no message for a room before the room is joined again.
    this._rejoin();
    this._setState(OPEN);
    if (this._connected && !this._connected.settled) {
      this._connected.settled = true;
      this._connected.resolve(this.user);
    }
  }

  /**
   * Send JOIN_ROOM for every room at once, the way it was joined (password,
   * spectator), resuming from the last seq seen there; "rejoin" events
   * follow the replies.
   */
  _rejoin() {
    const sent = [...this._rooms].map(([roomId, { password, spectate }]) => {
      const data = {};
      if (password) data.password = password;
      if (spectate) data.spectate = true;
      const seq = this._seqs.get(roomId);
      if (seq !== undefined) data.resume = seq;
      return [roomId, spectate, this._request(JOIN_ROOM, roomId, data, { whenOpen: false })];
    });
    return Promise.all(
      sent.map(async ([roomId, spectate, reply]) => {
        try {
          const data = await reply;
          const spectator = Boolean(data.spectator ?? spectate);
          this._emit("rejoin", { roomId, room: data.room, resumed: data.resumed === true, spectator });
        } catch (error) {
          this._rejoining.delete(roomId); // no answer is coming on this socket
          // Lost again: the next connection rejoins.
          if (["disconnected", "closed", "not_connected"].includes(error.code)) return;
          this._rooms.delete(roomId);
          this._seqs.delete(roomId);
          // Reported once, as "rejoin": not also as a generic "error".
          this._emit("rejoin", { roomId, error });
        }
      }),
    );
  }

  _closed(event) {
    this._ws = null;
    this._failPending(new GameServerError("disconnected", "the connection was lost"));
    if (!this._wanted) return this._setState(CLOSED);
    // From now on connect() waits for the connection to be back.
    if (this._connected?.settled) this._connected = this._deferred();
    if (event.code === CLOSE_KICKED) {
      const code = event.reason === "banned" ? "banned" : "kicked";
      return this._fatal(new GameServerError(code, `an admin closed the connection (${code})`));
    }
    if (event.code === CLOSE_TOO_MANY_CONNECTIONS || this._fatalError) {
      const error =
        this._fatalError ?? new GameServerError("too_many_connections", "too many connections for this user");
      this._fatalError = null;
      return this._fatal(error);
    }
    if (event.code === CLOSE_UNAUTHORIZED) {
      // The token was refused: refresh it once, then try again at once.
      const refused = this._authFailed;
      this._authFailed = null;
      if (refused && !this._refreshedForAuth) {
        this._refreshedForAuth = true;
        this._setState(this._wasOpen ? RECONNECTING : CONNECTING);
        this.refresh().then(
          () => {
            if (this._wanted) this._open(this._wasOpen ? RECONNECTING : CONNECTING);
          },
          (error) => {
            if (!this._wanted) return; // the session expired: already reported
            if (error.status === 401) this._fatal(error);
            else this._scheduleRetry();
          },
        );
        return;
      }
      if (refused) return this._fatal(refused);
    }
    this._scheduleRetry();
  }

  _scheduleRetry() {
    if (!this._wanted) return;
    this._setState(this._wasOpen ? RECONNECTING : CONNECTING);
    const { minReconnectDelay, maxReconnectDelay } = this.options;
    const ceiling = Math.min(maxReconnectDelay, minReconnectDelay * 2 ** this._attempt);
    this._attempt += 1;
    // "Equal jitter": half the delay fixed, half random, so a server that
    // comes back is not hit by every client at the same instant.
    const delay = ceiling / 2 + (Math.random() * ceiling) / 2;
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => this._open(this._wasOpen ? RECONNECTING : CONNECTING), delay);
  }

  /** The network is back (or the page asked): retry now, not after the backoff. */
  _retryNow() {
    if (this._wanted && !this._ws && this._retryTimer) {
      this._attempt = 0;
      this._open(this._wasOpen ? RECONNECTING : CONNECTING);
    }
  }

  _fatal(error) {
    this._wanted = false;
    this._listenOnline(false);
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    if (this._ws) {
      const ws = this._ws;
      this._ws = null;
      ws.close(1000, "client closed");
    }
    this._failPending(error);
    if (this._connected) {
      this._connected.reject(error);
      this._connected = null;
    }
    this._setState(CLOSED);
    this._emit("error", error);
  }

  _setState(state) {
    if (state === this._state) return;
    this._state = state;
    this._emit("statechange", { state });
  }

  // -- Messages ------------------------------------------------------------

  /**
   * Send `{type, room_id, data}`. Returns false (and emits an "error"
   * event) when the socket is not open: nothing is queued.
   */
  send(type, roomId = null, data = {}) {
    if (this._state !== OPEN || !this._ws) {
      this._emit("error", new GameServerError("not_connected", "not connected: try again in a moment", { requestType: type, roomId }));
      return false;
    }
    this._write(type, roomId, data);
    return true;
  }

  _write(type, roomId, data) {
    const message = { type };
    if (roomId !== null && roomId !== undefined) message.room_id = roomId;
    if (data && Object.keys(data).length) message.data = data;
    this._ws.send(this.format === "msgpack" ? encode(message, ENCODE_OPTIONS) : JSON.stringify(message));
  }

  /**
   * Send a message and wait for its answer: the first `reply` message
   * (default: the same type) for the same room. Rejects with the server's
   * code and detail on an ERROR for this request, or an `is_successful:
   * false` reply. Waits for the connection when it is (re)connecting.
   */
  request(type, roomId = null, data = {}, { reply = type, timeout } = {}) {
    return this._request(type, roomId, data, { reply, timeout });
  }

  async _request(
    type,
    roomId,
    data,
    { reply = type, timeout = this.options.requestTimeout, whenOpen = true, anyRoom = false } = {},
  ) {
    if (whenOpen) await this._whenOpen(timeout);
    if (!this._ws || this._ws.readyState !== 1) {
      throw new GameServerError("not_connected", "not connected", { requestType: type, roomId });
    }
    return new Promise((resolve, reject) => {
      // anyRoom: the reply (or ERROR) may name any room, or none.
      const entry = { type, reply, roomId: roomId ?? null, anyRoom, resolve, reject };
      entry.timer = setTimeout(() => {
        this._pending = this._pending.filter((e) => e !== entry);
        reject(new GameServerError("timeout", `no answer to ${type}`, { requestType: type, roomId }));
      }, timeout);
      this._pending.push(entry);
      this._write(type, roomId, data);
    });
  }

  _whenOpen(timeout) {
    if (this._state === OPEN) return Promise.resolve();
    if (!this._wanted) {
      return Promise.reject(new GameServerError("not_connected", "call connect() first"));
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.removeEventListener("statechange", check);
        reject(new GameServerError("not_connected", "the connection did not come back in time"));
      }, timeout);
      const check = () => {
        if (this._state === OPEN || this._state === CLOSED) {
          clearTimeout(timer);
          this.removeEventListener("statechange", check);
          if (this._state === OPEN) resolve();
          else reject(new GameServerError("closed", "the connection was closed"));
        }
      };
      this.addEventListener("statechange", check);
    });
  }

  /**
   * Join a room (with its password, if it has one): the room, or a
   * GameServerError. With `{spectate: true}`, watch it without a seat.
   */
  async join(roomId, password = null, { spectate = false } = {}) {
    const data = password ? { password } : {};
    if (spectate) data.spectate = true;
    const reply = await this.request(JOIN_ROOM, roomId, data);
    this._rooms.set(roomId, { password, spectate: Boolean(reply.spectator ?? spectate) });
    return reply.room;
  }

  /**
   * Watch a room, waiting or in game, without a seat: its messages and its
   * chat (a spectator may chat; a game message is refused with ERROR
   * `spectator`). The room, or a GameServerError (`spectators_full`,
   * `wrong_password`, `seated`). Rejoined as a spectator after a drop.
   */
  spectate(roomId, password = null) {
    return this.join(roomId, password, { spectate: true });
  }

  /**
   * Play `game` now: a seat in the fullest open room of the game (waiting,
   * no password, a free seat; `options` may choose the pool, for a game
   * that has several), or in a new room of the user's. The room, or a
   * GameServerError. From then on it is a joined room like any other: in
   * `rooms`, joined again by its id after a reconnect, left with leave().
   */
  async quickJoin(game, options = null) {
    const data = options ? { game, options } : { game };
    const reply = await this._request(QUICK_JOIN, null, data, { anyRoom: true });
    this._rooms.set(reply.room.id, { password: null, spectate: false });
    return reply.room;
  }

  /** Leave a room (giving up the seat). */
  async leave(roomId) {
    try {
      await this.request(LEAVE_ROOM, roomId);
    } finally {
      this._rooms.delete(roomId);
      this._seqs.delete(roomId);
    }
  }

  /** Subscribe to a message type ("*" for all); returns an unsubscribe function. */
  on(type, fn) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(fn);
    return () => this.off(type, fn);
  }

  off(type, fn) {
    this._listeners.get(type)?.delete(fn);
  }

  _receive(raw) {
    let message;
    try {
      // A frame of the other kind (text for msgpack, binary for json) is
      // not a message: dropped like one that does not parse.
      if (this.format === "msgpack") {
        if (typeof raw === "string") return;
        message = decode(raw);
      } else {
        message = JSON.parse(raw);
      }
    } catch {
      return;
    }
    if (!message || typeof message.type !== "string") return;
    const data = message.data ?? {};
    const roomId = message.room_id ?? null;
    if (roomId !== null && this._rejoining.has(roomId)) {
      if (message.type === JOIN_ROOM || (message.type === "ERROR" && data.request_type === JOIN_ROOM)) {
        this._rejoining.delete(roomId);
      } else if (Number.isInteger(message.seq)) {
        // Sent before the rejoin's answer (the server may still have held
        // the old socket, so this one got the room's messages at once):
        // the answer brings it again in its place, or the room's state.
        return;
      }
    }
    if (roomId !== null && Number.isInteger(message.seq)) {
      // Seen already (a resume that overlaps what came before): dropped.
      if (message.seq <= (this._seqs.get(roomId) ?? -Infinity)) return;
      this._seqs.set(roomId, message.seq);
    }
    if (message.type === JOIN_ROOM && data.is_successful && data.resumed === false) {
      // Not resumed: a normal join follows, a new start for this room.
      this._seqs.delete(roomId);
    }
    if (message.type === "ERROR") {
      const error = new GameServerError(data.code, data.detail, { requestType: data.request_type ?? null, roomId });
      const entry =
        data.request_type && this._take((e) => e.type === data.request_type && (e.roomId === roomId || e.anyRoom));
      if (entry) entry.reject(error);
      else this._emit("error", error);
    } else {
      const entry = this._take(
        (e) => e.reply === message.type && (e.roomId === roomId || e.anyRoom || e.type === VALIDATE_CONNECTION),
      );
      if (entry) {
        if (data.is_successful === false) {
          entry.reject(new GameServerError(data.error, data.detail, { requestType: entry.type, roomId }));
        } else {
          entry.resolve(data);
        }
      }
    }
    if (message.type === ROOM_CLOSED) {
      this._rooms.delete(roomId);
      this._seqs.delete(roomId);
    }
    for (const key of [message.type, "*"]) {
      for (const fn of [...(this._listeners.get(key) ?? [])]) {
        try {
          fn(message);
        } catch (error) {
          console.error(error);
        }
      }
    }
  }

  _take(match) {
    const index = this._pending.findIndex(match);
    if (index < 0) return null;
    const [entry] = this._pending.splice(index, 1);
    clearTimeout(entry.timer);
    return entry;
  }

  _failPending(error) {
    const pending = this._pending;
    this._pending = [];
    for (const entry of pending) {
      clearTimeout(entry.timer);
      entry.reject(error);
    }
  }

  _emit(name, detail) {
    this.dispatchEvent(new CustomEvent(name, { detail }));
  }
}
