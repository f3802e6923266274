// A WebSocket to one chat room that reconnects by itself.
//
// The Channels tutorial opens `new WebSocket(...)` once and gives up when it closes.
// This keeps the same frames ({"message": ...} out, JSON objects in) and adds:
// - ws: or wss: to match the page, so https pages use an encrypted socket;
// - reconnects with capped, jittered exponential backoff;
// - after a reconnect, asks for the messages sent while it was away
//   ({"action": "history", "after": <last id seen>}), page after page while the
//   server says more follow, up to RESYNC_PAGES; past them the page is told
//   (onGap) and loads the rest when the user asks (loadMissed), so none go missing
//   unseen;
// - gives each message a random client id and keeps it until the server
//   acknowledges it ({"type": "ack"}); after a reconnect it sends every message
//   not yet acknowledged again, with the same id, and the server stores it once;
// - ignores frame types it does not know, so an older page keeps working
//   when the server learns new ones.
// The frames themselves are described in chat/protocol.py.

const BASE_DELAY_MS = 500;
const MAX_DELAY_MS = 15000;
// Reconnects after which a message still not acknowledged is given up (the server
// refused it, or it is not this server's to store).
const MAX_RESENDS = 5;
// History pages a resync fetches by itself (the server's page is CHAT_HISTORY_LENGTH
// messages); a longer absence asks the user before loading more.
export const RESYNC_PAGES = 20;

// Close codes after which trying again by itself cannot help (chat/protocol.py);
// the page says why and stops. Any other close (a restart, a dropped network, 4503
// "channel layer unavailable") is retried with backoff.
export const FINAL_CLOSE_CODES = {
  4001: "You logged out in another window. Reload the page to chat again.",
  4400: "This room name is not valid.",
  4401: "Log in to chat in this room.",
  4403: "The server refused this connection. Reload the page to try again.",
  4404: "There is no chat at this address.",
  4409: "Too many windows are open on this chat. Close one, then reload this page.",
  4429: "Too many messages too fast. Reload the page to go on.",
  4430: "Too many new rooms from here. Join an existing room, or try again later.",
};

export function socketUrl(path, location = window.location) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}

// Full jitter: a random wait between 0 and the capped exponential delay, so that
// clients dropped together by a restart do not all come back at the same moment.
export function backoffDelay(attempt, random = Math.random) {
  const cap = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** attempt);
  return Math.floor(random() * cap);
}

const ignore = () => {};

// 128 random bits as hex: crypto.getRandomValues works on plain-http pages too,
// where crypto.randomUUID does not exist.
export function newClientId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

export class ChatSocket {
  // handlers: onMessage(frame), onHistory(messages), onModerated(frame),
  // onError(frame), onState(state, detail); state is "connecting", "open",
  // "reconnecting" or "closed"; onGap(gap): gap is {after: id} while missed messages
  // wait for loadMissed(), null once the resync has caught up.
  constructor(path, handlers) {
    this.url = socketUrl(path);
    this.handlers = {
      onMessage: ignore,
      onHistory: ignore,
      onModerated: ignore,
      onError: ignore,
      onState: ignore,
      onGap: ignore,
      ...handlers,
    };
    this.lastId = 0;
    // Messages sent and not yet acknowledged, in order: client id -> {text, resends}.
    this.pending = new Map();
    // While catching up: {cursor: the last id the history pages reached, pages}.
    this.resync = null;
    // The first id of the history sent on connect: from there on the page has all.
    this.recentFrom = Infinity;
    this.attempt = 0;
    this.socket = null;
    this.timer = null;
    this.stopped = false;
  }

  connect() {
    clearTimeout(this.timer);
    this.handlers.onState(this.attempt === 0 ? "connecting" : "reconnecting", {});
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.addEventListener("open", () => {
      // Read before any frame arrives: the id of the last message seen before the
      // drop, or where an unfinished resync stopped (live messages since then do
      // not close the gap before them).
      const resumeAfter = this.resync !== null ? this.resync.cursor : this.lastId;
      this.attempt = 0;
      this.handlers.onState("open", {});
      if (resumeAfter > 0) {
        this.resync = { cursor: resumeAfter, pages: 0 };
        this.requestPage();
      }
      this.resendPending();
    });
    socket.addEventListener("message", (event) => this.dispatch(event.data));
    socket.addEventListener("close", (event) => {
      if (this.socket !== socket || this.stopped) {
        return;
      }
      if (event.code in FINAL_CLOSE_CODES) {
        this.stopped = true;
        const reason = FINAL_CLOSE_CODES[event.code];
        this.handlers.onState("closed", { code: event.code, reason });
        return;
      }
      this.scheduleReconnect();
    });
  }

  dispatch(raw) {
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      return;
    }
    if (frame === null || typeof frame !== "object") {
      return;
    }
    if (frame.type === "message") {
      this.remember(frame);
      this.handlers.onMessage(frame);
    } else if (frame.type === "history" && Array.isArray(frame.messages)) {
      frame.messages.forEach((message) => this.remember(message));
      this.handlers.onHistory(frame.messages);
      this.continueResync(frame);
    } else if (frame.type === "ack" && typeof frame.client_id === "string") {
      // Stored: not sent again. The ack carries the stored message (for a retry, the
      // copy stored before the drop; the log shows each id once).
      this.pending.delete(frame.client_id);
      if (frame.message !== null && typeof frame.message === "object") {
        this.handlers.onMessage(frame.message);
      }
    } else if (frame.type === "moderated") {
      this.handlers.onModerated(frame);
    } else if (frame.type === "error") {
      this.handlers.onError(frame);
    }
    // Any other type is from a newer server: ignored on purpose.
  }

  remember(message) {
    if (typeof message.id === "number" && message.id > this.lastId) {
      this.lastId = message.id;
    }
  }

  requestPage() {
    this.socket.send(JSON.stringify({ action: "history", after: this.resync.cursor }));
  }

  // A reply to a history request: ask for the next page while more follow.
  continueResync(frame) {
    const resync = this.resync;
    if (frame.after === undefined) {
      // The history sent on connect: the room's latest messages.
      const ids = frame.messages.map((message) => message.id).filter(Number.isFinite);
      this.recentFrom = ids.length > 0 ? Math.min(...ids) : Infinity;
      return;
    }
    if (resync === null || frame.after !== resync.cursor) {
      return; // a reply from before a reconnect
    }
    for (const message of frame.messages) {
      if (typeof message.id === "number" && message.id > resync.cursor) {
        resync.cursor = message.id;
      }
    }
    resync.pages += 1;
    if (frame.more !== true || resync.cursor >= this.recentFrom) {
      this.resync = null;
      this.handlers.onGap(null);
    } else if (resync.pages < RESYNC_PAGES) {
      this.requestPage();
    } else {
      this.handlers.onGap({ after: resync.cursor });
    }
  }

  // The user asked for the rest of a gap: another RESYNC_PAGES pages.
  loadMissed() {
    if (this.resync !== null && this.isOpen()) {
      this.resync.pages = 0;
      this.requestPage();
    }
  }

  scheduleReconnect() {
    const delay = backoffDelay(this.attempt);
    this.attempt += 1;
    this.handlers.onState("reconnecting", { delay, attempt: this.attempt });
    this.timer = setTimeout(() => this.connect(), delay);
  }

  // Try now instead of waiting out the backoff (e.g. when the network comes back).
  reconnectNow() {
    const busy = this.socket !== null && this.socket.readyState !== WebSocket.CLOSED;
    if (!this.stopped && !busy) {
      this.connect();
    }
  }

  isOpen() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  send(text) {
    if (!this.isOpen()) {
      return false;
    }
    const clientId = newClientId();
    this.pending.set(clientId, { text, resends: 0 });
    this.socket.send(JSON.stringify({ message: text, client_id: clientId }));
    return true;
  }

  // After a reconnect: the messages the server may not have stored, with their ids.
  resendPending() {
    for (const [clientId, entry] of this.pending) {
      if (entry.resends >= MAX_RESENDS) {
        this.pending.delete(clientId);
        continue;
      }
      entry.resends += 1;
      this.socket.send(JSON.stringify({ message: entry.text, client_id: clientId }));
    }
  }

  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.socket) {
      this.socket.close();
    }
  }
}
