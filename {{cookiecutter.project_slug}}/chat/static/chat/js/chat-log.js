// The list of messages on the room page.
//
// Each message is shown once (by id), in id order, with its sender and time. User
// text only ever reaches the page through textContent, never innerHTML.

export const MODERATED_TEXT = "removed by moderation";

// Bidirectional embedding, override and isolate controls (U+202A-202E, U+2066-2069):
// in a message they could make it read backwards or reorder the name and time shown
// beside it ("Trojan Source"). They are left out of what is shown (the stored text
// keeps them, as sent), and each sender and text is its own isolate (dir="auto"), so
// right-to-left writing still shows right and reorders nothing around it.
export const BIDI_CONTROLS = /[\u202A-\u202E\u2066-\u2069]/g;

export function displayText(text) {
  return String(text ?? "").replace(BIDI_CONTROLS, "");
}

// Within this many pixels of the bottom, a new message scrolls the log down.
const STICK_TO_BOTTOM_PX = 48;

export function timeLabel(iso, now = new Date()) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) {
    return "";
  }
  const time = { hour: "2-digit", minute: "2-digit" };
  return date.toDateString() === now.toDateString()
    ? date.toLocaleTimeString([], time)
    : date.toLocaleString([], { month: "short", day: "numeric", ...time });
}

// A stable hue per name, so each sender keeps the same colour.
export function nameHue(name) {
  let hash = 0;
  for (const char of name) {
    hash = (hash * 31 + char.codePointAt(0)) % 360;
  }
  return hash;
}

export class ChatLog {
  // list: the <ol> to fill; empty: an element shown when history finds no messages;
  // me: the signed-in user's name ("" when anonymous), whose messages are marked.
  constructor(list, { empty = null, me = "" } = {}) {
    this.list = list;
    this.empty = empty;
    this.me = me;
    this.items = new Map();
    // Follow new messages while the reader is at the bottom, also when the log
    // shrinks (a phone's keyboard opening); leave them alone once they scroll up.
    this.atBottom = true;
    list.addEventListener("scroll", () => {
      this.atBottom = this.isNearBottom();
    });
    new ResizeObserver(() => {
      if (this.atBottom) {
        this.scrollToBottom();
      }
    }).observe(list);
  }

  add(message) {
    const item = this.insert(message);
    if (item !== null && (this.atBottom || item.classList.contains("mine"))) {
      this.scrollToBottom();
    }
    return item !== null;
  }

  // Places the message; null when it is not one or is shown already. No scrolling:
  // reading the layout after each of a thousand inserts would redo it a thousand times.
  insert(message) {
    if (typeof message.id !== "number" || this.items.has(message.id)) {
      return null;
    }
    const item = this.render(message);
    this.items.set(message.id, item);
    this.list.insertBefore(item, this.nextItemAfter(message.id));
    if (this.empty) {
      this.empty.hidden = true;
    }
    return item;
  }

  // History: the first one also tells whether the room is empty.
  addMany(messages) {
    const added = messages.map((message) => this.insert(message)).filter(Boolean);
    if (added.length > 0 && this.atBottom) {
      this.scrollToBottom();
    }
    if (this.empty) {
      this.empty.hidden = this.items.size > 0;
    }
  }

  // A message hidden by moderation keeps its place, but not its text.
  moderate(id) {
    const item = this.items.get(id);
    if (!item) {
      return false;
    }
    item.classList.add("moderated");
    item.querySelector(".text").textContent = MODERATED_TEXT;
    return true;
  }

  render(message) {
    const item = document.createElement("li");
    item.className = "chat-message";
    item.dataset.id = String(message.id);
    const name = String(message.username ?? "");
    if (this.me && name === this.me) {
      item.classList.add("mine");
    }
    item.style.setProperty("--hue", String(nameHue(name)));

    const avatar = document.createElement("span");
    avatar.className = "avatar";
    avatar.setAttribute("aria-hidden", "true");
    avatar.textContent = name.slice(0, 1).toUpperCase() || "?";

    const meta = document.createElement("div");
    meta.className = "meta";
    const sender = document.createElement("span");
    sender.className = "sender";
    sender.dir = "auto";
    sender.textContent = displayText(name);
    const when = document.createElement("time");
    when.dateTime = message.created;
    when.textContent = timeLabel(message.created);
    when.title = new Date(message.created).toLocaleString();
    meta.append(sender, when);

    const text = document.createElement("p");
    text.className = "text";
    text.dir = "auto";
    text.textContent = displayText(message.message);

    const body = document.createElement("div");
    body.className = "message-body";
    body.append(meta, text);
    item.append(avatar, body);
    return item;
  }

  // Messages usually arrive in order; history after a reconnect may not.
  nextItemAfter(id) {
    const last = this.list.lastElementChild;
    if (last === null || Number(last.dataset.id) < id) {
      return null;
    }
    let next = null;
    for (const [otherId, item] of this.items) {
      if (otherId > id && (next === null || otherId < Number(next.dataset.id))) {
        next = item;
      }
    }
    return next;
  }

  scrollToBottom() {
    this.list.scrollTop = this.list.scrollHeight;
    this.atBottom = true;
  }

  isNearBottom() {
    const { scrollHeight, scrollTop, clientHeight } = this.list;
    return scrollHeight - scrollTop - clientHeight < STICK_TO_BOTTOM_PX;
  }
}
