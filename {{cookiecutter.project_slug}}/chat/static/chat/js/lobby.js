// The lobby: typing a room name and pressing Enter (or the button) opens that room.
const form = document.getElementById("room-form");
const input = document.getElementById("room-name-input");

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const name = input.value.trim();
  if (name) {
    window.location.pathname = `/chat/${encodeURIComponent(name)}/`;
  }
});
