// The lobby: typing a room name and pressing Enter (or the button) opens that room.
// The browser checks the name against the input's pattern before "submit" fires.
const form = document.getElementById("room-form");
const input = document.getElementById("room-name-input");

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const name = input.value.trim();
  if (name) {
    // data-rooms-url is the lobby's own URL, under which every room lives.
    window.location.assign(`${form.dataset.roomsUrl}${encodeURIComponent(name)}/`);
  }
});
