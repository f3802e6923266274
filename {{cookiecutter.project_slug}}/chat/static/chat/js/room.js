// The room page: the tutorial's inline script, split into modules. ChatSocket talks
// to the server (chat-socket.js), ChatLog shows the messages (chat-log.js); this file
// wires them to the page: the form sends, the badge shows the connection state.
import { ChatLog } from "./chat-log.js";
import { ChatSocket } from "./chat-socket.js";

const room = document.getElementById("room");
const input = document.getElementById("chat-message-input");
const submit = document.getElementById("chat-message-submit");
const form = document.getElementById("chat-form");
const stateBadge = document.getElementById("connection-state");
const stateText = stateBadge.querySelector(".state-text");
const errorBox = document.getElementById("chat-error");
const gapBox = document.getElementById("chat-gap");

const log = new ChatLog(document.getElementById("chat-log"), {
  empty: document.getElementById("chat-empty"),
  me: room.dataset.username ?? "",
});

const STATE_TEXT = {
  connecting: "Connecting…",
  open: "Connected",
  reconnecting: "Reconnecting…",
  closed: "Disconnected",
};

function showState(state, detail) {
  stateText.textContent = STATE_TEXT[state] ?? state;
  stateBadge.className = `state state-${state}`;
  stateBadge.dataset.state = state;
  // Typing goes on while offline; sending waits for the connection.
  submit.disabled = state !== "open";
  if (state === "closed") {
    showError({ message: detail.reason });
    if (detail.code === LOGGED_OUT) {
      showLoggedOut();
    }
  }
}

// Close code 4001: the user logged out in another window (chat-socket.js). The header
// follows: no name, and a link to log in again that comes back to this room.
const LOGGED_OUT = 4001;

function showLoggedOut() {
  const account = document.querySelector(".site-header .account");
  if (account === null || account.dataset.loginUrl === undefined) {
    return;
  }
  const login = document.createElement("a");
  login.className = "button-link";
  login.href = `${account.dataset.loginUrl}?next=${encodeURIComponent(window.location.pathname)}`;
  login.textContent = "Log in";
  account.replaceChildren(login);
}

function showError(frame) {
  errorBox.textContent = frame.message;
  errorBox.hidden = false;
}

const socket = new ChatSocket(room.dataset.wsPath, {
  onMessage: (message) => log.add(message),
  onHistory: (messages) => log.addMany(messages),
  onModerated: (frame) => log.moderate(frame.id),
  onError: showError,
  onState: showState,
  // A long absence: say plainly that missed messages are not shown, until loaded.
  onGap: (gap) => {
    gapBox.hidden = gap === null;
  },
});
document.getElementById("chat-gap-load").addEventListener("click", () => socket.loadMissed());
socket.connect();
// Back online: try at once rather than wait out the backoff.
window.addEventListener("online", () => socket.reconnectNow());

// Enter in the input submits the form, as does the button.
form.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = input.value.trim();
  if (text && socket.send(text)) {
    input.value = "";
    errorBox.hidden = true;
  }
  input.focus();
});
