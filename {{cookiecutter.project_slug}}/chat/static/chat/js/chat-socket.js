// A WebSocket to one chat room that reconnects by itself.
//
// The Channels tutorial opens `new WebSocket(...)` once and gives up when it closes.
// This keeps the same frames ({"message": ...} out, JSON objects in) and adds:
// - ws: or wss: to match the page, so https pages use an encrypted socket;
// - reconnects with capped, jittered exponential backoff;
// - after a reconnect, asks for the messages sent while it was away
//   ({"action": "history", "after": <last id seen>}), so none are missing.

const BASE_DELAY_MS = 500;
const MAX_DELAY_MS = 15000;

export function socketUrl(path, location = window.location) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}

// Full jitter: a random wait between 0 and the capped exponential delay.
export function backoffDelay(attempt, random = Math.random) {
  const cap = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** attempt);
  return Math.floor(random() * cap);
}

export class ChatSocket {
  constructor(path, { onMessage, onHistory, onError, onState }) {
    this.url = socketUrl(path);
    this.handlers = { onMessage, onHistory, onError, onState };
    this.lastId = 0;
    this.attempt = 0;
    this.socket = null;
    this.timer = null;
    this.closedByUser = false;
  }

  connect() {
    this.handlers.onState(this.attempt === 0 ? "connecting" : "reconnecting");
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.addEventListener("open", () => {
      const resuming = this.lastId > 0;
      this.attempt = 0;
      this.handlers.onState("open");
      if (resuming) {
        socket.send(JSON.stringify({ action: "history", after: this.lastId }));
      }
    });
    socket.addEventListener("message", (event) => this.dispatch(event.data));
    socket.addEventListener("close", () => {
      if (this.socket !== socket || this.closedByUser) {
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
    if (frame.type === "message") {
      this.remember(frame);
      this.handlers.onMessage(frame);
    } else if (frame.type === "history") {
      const fresh = frame.messages.filter((message) => message.id > this.lastId);
      fresh.forEach((message) => this.remember(message));
      this.handlers.onHistory(fresh);
    } else if (frame.type === "error") {
      this.handlers.onError(frame);
    }
  }

  remember(message) {
    if (typeof message.id === "number" && message.id > this.lastId) {
      this.lastId = message.id;
    }
  }

  scheduleReconnect() {
    const delay = backoffDelay(this.attempt);
    this.attempt += 1;
    this.handlers.onState("reconnecting");
    this.timer = setTimeout(() => this.connect(), delay);
  }

  send(text) {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) {
      return false;
    }
    this.socket.send(JSON.stringify({ message: text }));
    return true;
  }

  close() {
    this.closedByUser = true;
    clearTimeout(this.timer);
    if (this.socket) {
      this.socket.close();
    }
  }
}
