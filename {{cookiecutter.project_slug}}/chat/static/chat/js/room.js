// The room page: shows messages, sends what the user types, shows the connection state.
// User text only ever reaches the page through textContent, never innerHTML.
import { ChatSocket } from "./chat-socket.js";

const room = document.getElementById("room");
const log = document.getElementById("chat-log");
const input = document.getElementById("chat-message-input");
const form = document.getElementById("chat-form");
const stateLabel = document.getElementById("connection-state");
const errorBox = document.getElementById("chat-error");
const seen = new Set();

const STATE_TEXT = {
  connecting: "Connecting…",
  open: "Connected",
  reconnecting: "Reconnecting…",
};

function timeLabel(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime())
    ? ""
    : date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function showMessage(message) {
  if (seen.has(message.id)) {
    return;
  }
  seen.add(message.id);
  const item = document.createElement("li");
  item.className = "chat-message";
  item.dataset.id = String(message.id);
  const who = document.createElement("span");
  who.className = "sender";
  who.textContent = message.username;
  const when = document.createElement("time");
  when.dateTime = message.created;
  when.textContent = timeLabel(message.created);
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = message.message;
  item.append(who, when, text);
  log.append(item);
  log.scrollTop = log.scrollHeight;
}

function showState(state) {
  stateLabel.textContent = STATE_TEXT[state] ?? state;
  stateLabel.className = `state state-${state}`;
  stateLabel.dataset.state = state;
}

function showError(frame) {
  errorBox.textContent = frame.message;
  errorBox.hidden = false;
}

const socket = new ChatSocket(room.dataset.wsPath, {
  onMessage: showMessage,
  onHistory: (messages) => messages.forEach(showMessage),
  onError: showError,
  onState: showState,
});
socket.connect();

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = input.value.trim();
  if (text && socket.send(text)) {
    input.value = "";
    errorBox.hidden = true;
  }
  input.focus();
});
