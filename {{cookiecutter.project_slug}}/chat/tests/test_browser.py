"""The chat in a real browser: headless Chromium, driven by Selenium, against daphne
serving the project in another process (``ChannelsLiveServerTestCase``), as in part 4
of the Channels tutorial.

Run only this tier with ``uv run pytest -m browser``; skip it with ``-m "not browser"``.
Every wait is explicit and bounded (``WebDriverWait``). Screenshots of the room page
land in ``test-artifacts/``. Fixtures and the browser set-up are in ``conftest.py``.
https://channels.readthedocs.io/en/stable/tutorial/part_4.html
"""

from __future__ import annotations

import base64
import re
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import channel_layers, get_channel_layer
from channels.testing import ChannelsLiveServerTestCase
from channels.testing.live import make_application, set_database_connection
from daphne.testing import DaphneProcess
from django.conf import settings
from django.contrib.auth import get_user_model
from django.templatetags.static import static
from django.test import override_settings
from django.urls import reverse
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from chat import services
from chat.models import Message
from chat.tests.conftest import ARTIFACTS_DIR, DESKTOP_SIZE, png_size_and_colours

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("browser_pool")]

# Upper bounds, not expected times: a loaded CI machine gets this long before a wait fails.
WAIT_SECONDS = 30
# Reconnecting waits out the client's backoff (at most 15 s between attempts).
RECONNECT_SECONDS = 60
SERVER_START_SECONDS = 30
PHONE_SIZE = (375, 740)


def js_constant(name: str) -> int:
    """A number the client module exports (chat-socket.js), so that tests follow it."""
    source = (Path(__file__).parents[1] / "static/chat/js/chat-socket.js").read_text()
    found = re.search(rf"export const {name} = (\d+);", source)
    assert found is not None, name
    return int(found[1])


# History pages the client fetches by itself after a reconnect.
RESYNC_PAGES = js_constant("RESYNC_PAGES")
PASSWORD = "correct-horse-battery-staple"

# Everything the page shows about its messages, in one round trip.
READ_LOG = """
return Array.from(document.querySelectorAll("#chat-log .chat-message"), (item) => ({
  id: Number(item.dataset.id),
  sender: item.querySelector(".sender").textContent,
  time: item.querySelector("time").textContent,
  text: item.querySelector(".text").textContent,
  mine: item.classList.contains("mine"),
  moderated: item.classList.contains("moderated"),
}));
"""
LAST_MESSAGE_IN_VIEW = """
const log = document.getElementById("chat-log");
const last = log.lastElementChild.getBoundingClientRect();
return last.bottom <= log.getBoundingClientRect().bottom + 1;
"""
BOUNDING_BOX = "return document.getElementById(arguments[0]).getBoundingClientRect().toJSON();"
# Run in the page before its own scripts: the page's socket closes itself the first
# time an ack frame arrives, before the page sees it, as a network that drops just
# after the server stored a message would. window.acksLost and window.acksSeen count.
LOSE_FIRST_ACK = """
window.acksLost = 0;
window.acksSeen = 0;
const addListener = WebSocket.prototype.addEventListener;
WebSocket.prototype.addEventListener = function (type, listener, options) {
  if (type !== "message") {
    return addListener.call(this, type, listener, options);
  }
  const socket = this;
  const filtered = (event) => {
    let frame = null;
    try {
      frame = JSON.parse(event.data);
    } catch {}
    if (frame !== null && frame.type === "ack") {
      if (window.acksLost === 0) {
        window.acksLost += 1;
        socket.close();
        return;
      }
      window.acksSeen += 1;
    }
    listener.call(socket, event);
  };
  return addListener.call(this, type, filtered, options);
};
"""


class LiveServerProcess(DaphneProcess):
    """The live server's process, started by fork from the test process, first drops
    two things it inherited that only work in the parent: asgiref's single-thread
    executor (its worker thread was not forked, so after any async test had run,
    every ``database_sync_to_async`` call in the server would wait forever; see
    django/asgiref#194) and the parent's channel-layer instances."""

    def run(self) -> None:
        SyncToAsync.single_thread_executor = ThreadPoolExecutor(max_workers=1)
        channel_layers.backends.clear()
        super().run()


class BrowserTestCase(ChannelsLiveServerTestCase):
    """Steps the browser scenarios share, on a live server that can be restarted.
    ``host`` stays "localhost": the live server adds it to ALLOWED_HOSTS."""

    ProtocolServerProcess = LiveServerProcess

    @classmethod
    def tearDownClass(cls) -> None:
        super().tearDownClass()
        # The stopped server left its groups (and any queued worker jobs) in a shared
        # layer such as Redis; remove them, as the test suite's own fixtures do.
        async_to_sync(get_channel_layer().flush)()
        channel_layers.backends.clear()

    def setUp(self) -> None:
        super().setUp()
        self.browsers.reset()

    # Steps the scenarios share.

    def wait(self, browser: WebDriver, timeout: float = WAIT_SECONDS) -> WebDriverWait:
        return WebDriverWait(browser, timeout, ignored_exceptions=(StaleElementReferenceException,))

    def open_room(self, browser: WebDriver, name: str) -> None:
        browser.get(self.live_server_url + reverse("chat:room", args=[name]))
        self.wait_for_state(browser, "open")

    def wait_for_state(self, browser: WebDriver, state: str, timeout: float = WAIT_SECONDS) -> None:
        self.wait(browser, timeout).until(
            lambda driver: (
                driver.find_element(By.ID, "connection-state").get_attribute("data-state") == state
            ),
            f"the connection state never became {state!r}",
        )

    def send(self, browser: WebDriver, text: str, *, press_enter: bool = True) -> None:
        self.wait(browser).until(
            lambda driver: driver.find_element(By.ID, "chat-message-submit").is_enabled()
        )
        message_input = browser.find_element(By.ID, "chat-message-input")
        message_input.send_keys(text)
        if press_enter:
            message_input.send_keys(Keys.ENTER)
        else:
            browser.find_element(By.ID, "chat-message-submit").click()
        # The page empties the input once the socket has taken the message.
        self.wait(browser).until(
            lambda driver: (
                driver.find_element(By.ID, "chat-message-input").get_attribute("value") == ""
            )
        )

    def read_log(self, browser: WebDriver) -> list[dict[str, Any]]:
        return browser.execute_script(READ_LOG)

    def wait_for_text(self, browser: WebDriver, text: str) -> None:
        self.wait(browser).until(
            lambda driver: text in [message["text"] for message in self.read_log(driver)],
            f"{text!r} never appeared in the chat log",
        )

    def log_in(self, browser: WebDriver, username: str, *, next_url: str) -> None:
        """Through Django's login page, as a person would; lands on ``next_url``."""
        browser.get(f"{self.live_server_url}{reverse('login')}?next={quote(next_url)}")
        self.fill_login_form(browser, username)
        self.wait(browser).until(
            lambda driver: driver.current_url == self.live_server_url + next_url
        )

    def fill_login_form(self, browser: WebDriver, username: str) -> None:
        browser.find_element(By.ID, "id_username").send_keys(username)
        browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
        browser.find_element(By.CSS_SELECTOR, "form.stack button[type=submit]").click()

    def set_viewport(self, browser: WebDriver, width: int, height: int, *, mobile: bool) -> None:
        browser.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
        )
        self.wait(browser).until(
            lambda driver: (
                driver.execute_script("return [innerWidth, innerHeight];") == [width, height]
            )
        )

    def screenshot(
        self, browser: WebDriver, name: str, *, phone: bool, on_screen: tuple[str, ...]
    ) -> None:
        """At a desktop's or a phone's size: check that nothing is wider than the
        screen and that the elements ``on_screen`` (ids) are inside it, then save a
        screenshot to test-artifacts/ and check that it is not blank."""
        width, height = PHONE_SIZE if phone else DESKTOP_SIZE
        self.set_viewport(browser, width, height, mobile=phone)
        assert browser.execute_script("return document.documentElement.scrollWidth;") <= width
        for element_id in on_screen:
            box = browser.execute_script(BOUNDING_BOX, element_id)
            where = (name, element_id, box)
            assert box["left"] >= 0, where
            assert box["right"] <= width, where
            assert box["top"] >= 0, where
            assert box["bottom"] <= height, where
        # optimizeForSpeed: zlib level 1 and the "Up" filter on every row, fast to decode.
        shot = browser.execute_cdp_cmd(
            "Page.captureScreenshot", {"format": "png", "optimizeForSpeed": True}
        )
        png = base64.b64decode(shot["data"])
        ARTIFACTS_DIR.mkdir(exist_ok=True)
        (ARTIFACTS_DIR / name).write_bytes(png)
        shot_width, shot_height, colours = png_size_and_colours(png)
        assert (shot_width, shot_height) == (width, height)
        # A blank page has one colour; text, icons and borders give dozens at least.
        assert colours >= 32, f"{name} looks blank: {colours} colours"

    def assert_no_console_errors(self, browser: WebDriver, allowed: tuple[str, ...] = ()) -> None:
        errors = [
            entry["message"]
            # Chromium's driver has get_log; the WebDriver type it is annotated with does not.
            for entry in browser.get_log("browser")  # type: ignore[attr-defined]
            if entry["level"] == "SEVERE" and not any(text in entry["message"] for text in allowed)
        ]
        assert errors == []

    # The live server, stopped and started again on the same port.

    @classmethod
    def stop_live_server(cls) -> None:
        cls._server_process.terminate()
        cls._server_process.join(timeout=SERVER_START_SECONDS)
        assert not cls._server_process.is_alive(), "the live server did not stop"

    @classmethod
    def start_live_server(cls, *, port: int) -> None:
        """Start daphne as ChannelsLiveServerTestCase.setUpClass does, but on ``port``.
        Should the old process's port not be free yet, the new process exits at once
        (daphne cannot listen): try again, a bounded number of times."""
        get_application = partial(
            make_application, static_wrapper=cls.static_wrapper if cls.serve_static else None
        )
        for _ in range(5):
            process = cls.ProtocolServerProcess(
                cls.host, get_application, setup=set_database_connection, port=port
            )
            process.start()
            deadline = time.monotonic() + SERVER_START_SECONDS
            while process.is_alive() and time.monotonic() < deadline:
                if process.ready.wait(timeout=0.2):
                    cls._server_process = process
                    return
            process.terminate()
            process.join(timeout=SERVER_START_SECONDS)
        raise AssertionError(f"the live server did not start again on port {port}")


class ChatInTheBrowserTests(BrowserTestCase):
    def test_the_lobby_form_opens_the_room(self) -> None:
        # The lobby lists rooms with a message (chat/selectors.py), and no empty one.
        for name in ("general", "random", "release-2026"):
            room = services.room_get_or_create(name=name)
            services.message_create(room=room, author=None, text=f"hello {name}")
        services.room_get_or_create(name="empty")
        (browser,) = self.browsers.get(1)
        browser.get(self.live_server_url + reverse("chat:lobby"))
        assert settings.PROJECT_NAME in browser.title
        assert {link.text for link in browser.find_elements(By.CSS_SELECTOR, ".room-list a")} == {
            "#general",
            "#random",
            "#release-2026",
        }
        self.screenshot(browser, "lobby-desktop.png", phone=False, on_screen=("room-name-input",))
        assert browser.find_element(By.CSS_SELECTOR, ".brand").text == settings.PROJECT_NAME

        self.screenshot(
            browser,
            "lobby-phone.png",
            phone=True,
            on_screen=("room-name-input", "room-name-submit"),
        )
        name_input = browser.find_element(By.ID, "room-name-input")
        name_input.send_keys("not a room")
        assert browser.execute_script("return !arguments[0].checkValidity();", name_input)
        name_input.clear()
        name_input.send_keys("garden")
        browser.find_element(By.ID, "room-name-submit").click()

        room_url = self.live_server_url + reverse("chat:room", args=["garden"])
        self.wait(browser).until(lambda driver: driver.current_url == room_url)
        self.wait_for_state(browser, "open")
        assert browser.find_element(By.TAG_NAME, "h1").text == "#garden"
        room = browser.find_element(By.ID, "room")
        assert room.get_attribute("data-room-name") == "garden"
        assert room.get_attribute("data-ws-path") == "/ws/chat/garden/"
        self.assert_no_console_errors(browser)

    def test_a_message_reaches_the_same_room_and_no_other(self) -> None:
        alice, bob = self.browsers.get(2)
        self.open_room(alice, "alpha")
        self.open_room(bob, "alpha")
        alpha_window = bob.current_window_handle
        bob.switch_to.new_window("window")
        self.open_room(bob, "beta")
        beta_window = bob.current_window_handle
        bob.switch_to.window(alpha_window)

        self.send(alice, "hello alpha")  # with Enter
        self.wait_for_text(alice, "hello alpha")
        self.wait_for_text(bob, "hello alpha")
        self.send(bob, "hello back", press_enter=False)  # with the button
        self.wait_for_text(alice, "hello back")

        # "hello alpha" reached every member of alpha before "only beta" was sent:
        # had the beta window been in alpha's group, it would have arrived first.
        bob.switch_to.window(beta_window)
        self.send(bob, "only beta")
        self.wait_for_text(bob, "only beta")
        assert [message["text"] for message in self.read_log(bob)] == ["only beta"]
        assert "only beta" not in [message["text"] for message in self.read_log(alice)]

        shown = self.read_log(alice)
        assert [(m["sender"], m["text"]) for m in shown] == [
            ("anonymous", "hello alpha"),
            ("anonymous", "hello back"),
        ]
        assert all(message["time"] for message in shown)
        self.assert_no_console_errors(alice)

    def test_a_logged_in_users_name_is_on_their_messages(self) -> None:
        get_user_model().objects.create_user("ann", password=PASSWORD)
        ann, guest = self.browsers.get(2)
        ann.get(self.live_server_url + reverse("login"))
        self.screenshot(
            ann, "login-phone.png", phone=True, on_screen=("id_username", "id_password")
        )
        self.set_viewport(ann, *DESKTOP_SIZE, mobile=False)
        self.log_in(ann, "ann", next_url=reverse("chat:room", args=["tea"]))
        self.wait_for_state(ann, "open")
        assert ann.find_element(By.CSS_SELECTOR, ".whoami").text == "ann"
        assert ann.find_element(By.CSS_SELECTOR, ".account button[type=submit]").text == "Log out"

        self.send(ann, "hello from ann")
        self.wait_for_text(ann, "hello from ann")
        self.open_room(guest, "tea")
        self.wait_for_text(guest, "hello from ann")
        self.send(guest, "hi ann")
        self.wait_for_text(ann, "hi ann")

        assert [(m["sender"], m["text"], m["mine"]) for m in self.read_log(ann)] == [
            ("ann", "hello from ann", True),
            ("anonymous", "hi ann", False),
        ]
        assert [(m["sender"], m["mine"]) for m in self.read_log(guest)] == [
            ("ann", False),
            ("anonymous", False),
        ]

    def test_history_loads_when_a_room_is_opened(self) -> None:
        user = get_user_model().objects.create_user("bob", password=PASSWORD)
        room = services.room_get_or_create(name="archive")
        for author, text in ((user, "first"), (None, "second"), (user, "third")):
            services.message_create(room=room, author=author, text=text)

        (browser,) = self.browsers.get(1)
        self.open_room(browser, "archive")
        self.wait(browser).until(lambda driver: len(self.read_log(driver)) == 3)
        assert [(m["sender"], m["text"]) for m in self.read_log(browser)] == [
            ("bob", "first"),
            ("anonymous", "second"),
            ("bob", "third"),
        ]
        assert not browser.find_element(By.ID, "chat-empty").is_displayed()

        self.open_room(browser, "empty-room")
        self.wait(browser).until(
            lambda driver: driver.find_element(By.ID, "chat-empty").is_displayed()
        )
        assert self.read_log(browser) == []

    def test_the_page_reconnects_after_the_server_drops_the_socket(self) -> None:
        """The drop is real: the daphne process is stopped, which closes every socket
        from the server's side, and a new one is started on the same port, as a
        restart or deploy would. Nothing in the page is told in advance."""
        alice, bob = self.browsers.get(2)
        self.open_room(alice, "relay")
        self.open_room(bob, "relay")
        self.send(alice, "before the drop")
        self.wait_for_text(bob, "before the drop")

        self.stop_live_server()
        for browser in (alice, bob):
            self.wait_for_state(browser, "reconnecting")
        assert alice.find_element(By.ID, "connection-state").text == "Reconnecting…"
        assert not alice.find_element(By.ID, "chat-message-submit").is_enabled()
        self.screenshot(alice, "chat-room-reconnecting.png", phone=False, on_screen=())
        # Posted while the page is away (as another server process would), more than
        # the history a new connection gets: the oldest ones reach the page only
        # through its {"action": "history", "after": <last id>} request.
        room = services.room_get_or_create(name="relay")
        missed = [f"missed {n}" for n in range(1, settings.CHAT_HISTORY_LENGTH + 11)]
        for text in missed:
            services.message_create(room=room, author=None, text=text)

        self.start_live_server(port=self._port)
        for browser in (alice, bob):
            self.wait_for_state(browser, "open", timeout=RECONNECT_SECONDS)
        self.wait(alice).until(
            lambda driver: len(self.read_log(driver)) == 1 + len(missed),
            "the page did not fetch every message it missed",
        )
        self.send(alice, "after the reconnect")
        self.wait_for_text(bob, "after the reconnect")

        expected = ["before the drop", *missed, "after the reconnect"]
        assert [m["text"] for m in self.read_log(alice)] == expected
        assert [m["text"] for m in self.read_log(bob)] == expected
        assert alice.find_element(By.ID, "connection-state").text == "Connected"
        # While the server was down the browser logged failed connection attempts.
        self.assert_no_console_errors(alice, allowed=("WebSocket connection to",))

    def test_a_long_absence_is_paged_in_and_what_is_left_is_said_and_loadable(self) -> None:
        """Away while more was posted than the client pages in by itself (RESYNC_PAGES
        pages of CHAT_HISTORY_LENGTH, plus the history a connection gets): the page
        fetches those pages in order, then says plainly that some are not shown, and
        its button loads the rest. No message is silently missing."""
        (alice,) = self.browsers.get(1)
        self.open_room(alice, "away")
        self.send(alice, "before the drop")
        self.wait_for_text(alice, "before the drop")
        gap = alice.find_element(By.ID, "chat-gap")
        assert not gap.is_displayed()

        self.stop_live_server()
        self.wait_for_state(alice, "reconnecting")
        room = services.room_get_or_create(name="away")
        paged = RESYNC_PAGES * settings.CHAT_HISTORY_LENGTH
        missed = [f"missed {n}" for n in range(1, paged + 2 * settings.CHAT_HISTORY_LENGTH + 1)]
        Message.objects.bulk_create(Message(room=room, text=text) for text in missed)
        self.start_live_server(port=self._port)
        self.wait_for_state(alice, "open", timeout=RECONNECT_SECONDS)

        self.wait(alice).until(lambda driver: gap.is_displayed(), "the gap was never shown")
        shown = [m["text"] for m in self.read_log(alice)]
        recent = settings.CHAT_HISTORY_LENGTH  # what the new connection got on its own
        assert shown == ["before the drop", *missed[:paged], *missed[-recent:]]
        assert missed[paged:-recent]
        assert not set(missed[paged:-recent]) & set(shown)

        alice.find_element(By.ID, "chat-gap-load").click()
        self.wait(alice).until(
            lambda driver: len(self.read_log(driver)) == 1 + len(missed),
            "the button did not load the rest",
        )
        assert [m["text"] for m in self.read_log(alice)] == ["before the drop", *missed]
        self.wait(alice).until(lambda driver: not gap.is_displayed(), "the gap stayed shown")
        self.assert_no_console_errors(alice, allowed=("WebSocket connection to",))

    def test_the_room_page_looks_finished_on_a_desktop_and_a_phone(self) -> None:
        ann = get_user_model().objects.create_user("ann", password=PASSWORD)
        bob = get_user_model().objects.create_user("bob", password=PASSWORD)
        room = services.room_get_or_create(name="general")
        for author, text in (
            (bob, "Morning! Is the release still on for today?"),
            (ann, "Yes, after lunch. The browser tests pass on SQLite and PostgreSQL."),
            (None, "Can I follow along from here without an account?"),
            (bob, "Sure, anyone who opens #general can read and write."),
            (None, "Nice. And if the server restarts while I'm here?"),
            (ann, "The page says it is reconnecting, comes back and fetches what it missed."),
        ):
            services.message_create(room=room, author=author, text=text)

        (browser,) = self.browsers.get(1)
        self.log_in(browser, "ann", next_url=reverse("chat:room", args=["general"]))
        self.wait_for_state(browser, "open")
        self.send(browser, "See you all at two.")
        self.wait_for_text(browser, "See you all at two.")

        for name in ("desktop", "phone"):
            self.screenshot(
                browser,
                f"chat-room-{name}.png",
                phone=name == "phone",
                on_screen=("chat-message-input", "chat-message-submit", "connection-state"),
            )
            # The log stays scrolled to the newest message when the screen is smaller.
            assert browser.execute_script(LAST_MESSAGE_IN_VIEW), name

        self.assert_no_console_errors(browser)

    def test_a_moderated_message_is_replaced_in_the_page(self) -> None:
        layer = settings.CHANNEL_LAYERS["default"]["BACKEND"]
        if layer.endswith("InMemoryChannelLayer"):
            self.skipTest(
                "moderation reaches the live server only through a shared channel layer: "
                "set REDIS_URL"
            )
        (browser,) = self.browsers.get(1)
        self.open_room(browser, "moderated")
        self.send(browser, "buy cheap spam now")
        self.send(browser, "a fine message")
        self.wait_for_text(browser, "a fine message")
        spam_id = next(m["id"] for m in self.read_log(browser) if m["text"] == "buy cheap spam now")

        with override_settings(CHAT_BLOCKED_WORDS=["spam"]):
            assert services.message_moderate(message_id=spam_id) is not None
        self.wait(browser).until(
            lambda driver: [m["moderated"] for m in self.read_log(driver)] == [True, False]
        )
        assert [m["text"] for m in self.read_log(browser)] == [
            "removed by moderation",
            "a fine message",
        ]

    def test_the_client_modules_handle_every_frame_and_ignore_unknown_ones(self) -> None:
        """The client's modules on their own, in the page: the frames the in-memory
        layer cannot bring from another process here (moderation), unknown frame
        types from a newer server, wss: on https pages, and the backoff's cap."""
        (browser,) = self.browsers.get(1)
        self.open_room(browser, "modules")
        result = browser.execute_async_script(
            """
            const [socketUrl, logUrl, done] = arguments;
            (async () => {
              const { ChatSocket, backoffDelay, socketUrl: urlFor } = await import(socketUrl);
              const { ChatLog, MODERATED_TEXT } = await import(logUrl);
              const calls = [];
              const record = (name) => (value) => calls.push([name, value]);
              const socket = new ChatSocket("/ws/chat/modules/", {
                onMessage: record("message"),
                onHistory: record("history"),
                onModerated: record("moderated"),
                onError: record("error"),
              });
              const message = (id, text) => ({
                type: "message", id, room: "modules", username: "ann", message: text,
                created: new Date().toISOString(),
              });
              socket.dispatch(JSON.stringify({ type: "history", room: "modules",
                                               messages: [message(3, "three")] }));
              socket.dispatch(JSON.stringify(message(7, "<b>seven</b>")));
              socket.dispatch(JSON.stringify({ type: "moderated", id: 7, room: "modules" }));
              socket.dispatch(JSON.stringify({ type: "typing", who: "bob" }));
              socket.dispatch("not json");
              socket.dispatch("null");
              socket.dispatch(JSON.stringify({ type: "error", code: "x", message: "bad" }));

              const list = document.createElement("ol");
              const log = new ChatLog(list, { me: "ann" });
              log.add(message(7, "<b>seven</b>"));
              log.add(message(3, "three"));
              const duplicate = log.add(message(7, "again"));
              const moderated = log.moderate(7);
              const unknown = log.moderate(99);
              return {
                calls: calls.map(([name]) => name),
                lastId: socket.lastId,
                order: Array.from(list.children, (item) => item.dataset.id),
                texts: Array.from(list.querySelectorAll(".text"), (p) => p.textContent),
                bold: list.querySelectorAll("b").length,
                mine: list.querySelectorAll(".mine").length,
                duplicate, moderated, unknown, MODERATED_TEXT,
                wss: urlFor("/ws/chat/x/", { protocol: "https:", host: "example.com" }),
                ws: urlFor("/ws/chat/x/", { protocol: "http:", host: "localhost:8000" }),
                firstMax: backoffDelay(0, () => 0.9999),
                cappedMax: backoffDelay(30, () => 0.9999),
                cappedMin: backoffDelay(30, () => 0),
              };
            })().then(done, (error) => done({ error: String(error) }));
            """,
            static("chat/js/chat-socket.js"),
            static("chat/js/chat-log.js"),
        )
        assert "error" not in result, result
        assert result["calls"] == ["history", "message", "moderated", "error"]
        assert result["lastId"] == 7
        assert result["order"] == ["3", "7"]
        assert result["texts"] == ["three", result["MODERATED_TEXT"]]
        assert result["MODERATED_TEXT"] == "removed by moderation"
        assert result["bold"] == 0  # text, never markup
        assert result["mine"] == 2
        assert (result["duplicate"], result["moderated"], result["unknown"]) == (False, True, False)
        assert result["wss"] == "wss://example.com/ws/chat/x/"
        assert result["ws"] == "ws://localhost:8000/ws/chat/x/"
        assert result["firstMax"] < 500
        assert 14000 < result["cappedMax"] < 15000
        assert result["cappedMin"] == 0

    def test_the_client_pages_a_resync_and_resumes_where_it_stopped(self) -> None:
        """ChatSocket's resync on its own, with a stand-in socket: it asks page after
        page while "more" is true, ignores replies to an older request, stops once it
        reaches the history the connection brought, tells the page of a gap after
        RESYNC_PAGES pages, and after another drop resumes from where the pages got
        to, not from the newest message seen (which would skip the gap)."""
        (browser,) = self.browsers.get(1)
        self.open_room(browser, "paging")
        result = browser.execute_async_script(
            """
            const [socketUrl, done] = arguments;
            (async () => {
              const { ChatSocket, RESYNC_PAGES } = await import(socketUrl);
              const gaps = [];
              const onGap = (gap) => gaps.push(gap);
              const socket = new ChatSocket("/ws/chat/paging/", { onGap });
              const sent = [];
              const send = (text) => sent.push(JSON.parse(text));
              socket.socket = { readyState: WebSocket.OPEN, send };
              const page = (after, ids, more) => JSON.stringify({
                type: "history", room: "paging", after, more,
                messages: ids.map((id) => ({ type: "message", id, message: String(id) })),
              });
              const connectHistory = (ids) => JSON.stringify({
                type: "history", room: "paging",
                messages: ids.map((id) => ({ type: "message", id, message: String(id) })),
              });
              // Reconnected after id 10; the new connection's history starts at 500.
              socket.dispatch(connectHistory([500, 501]));
              socket.resync = { cursor: 10, pages: 0 };
              socket.requestPage();
              socket.dispatch(page(10, [11, 12], true));
              socket.dispatch(page(10, [11, 12], true));   // a stale duplicate: ignored
              socket.dispatch(page(12, [13, 14], true));
              const afterTwo = sent.map((frame) => frame.after);
              // Reaching the connection's own history ends it, "more" or not.
              socket.dispatch(page(14, [499, 500], true));
              const caughtUp = { resync: socket.resync, gaps: [...gaps], sent: sent.length };

              // A long gap: RESYNC_PAGES pages, then the page is told.
              socket.dispatch(connectHistory([9000]));
              socket.resync = { cursor: 20, pages: 0 };
              sent.length = 0;
              socket.requestPage();
              for (let n = 0; n < RESYNC_PAGES; n += 1) {
                socket.dispatch(page(20 + n, [21 + n], true));
              }
              const asked = sent.length;
              const gap = gaps[gaps.length - 1];
              // Live messages move lastId on; a new connection resumes at the gap.
              const live = { type: "message", id: 9001, message: "live" };
              socket.dispatch(JSON.stringify(live));
              const resync = socket.resync;
              const resumeAt = resync !== null ? resync.cursor : socket.lastId;
              socket.loadMissed();
              return { afterTwo, caughtUp, asked, gap, resumeAt, lastId: socket.lastId,
                       loadAsked: sent[sent.length - 1].after, RESYNC_PAGES };
            })().then(done, (error) => done({ error: String(error) }));
            """,
            static("chat/js/chat-socket.js"),
        )
        assert "error" not in result, result
        assert result["afterTwo"] == [10, 12, 14]
        assert result["caughtUp"] == {"resync": None, "gaps": [None], "sent": 3}
        assert result["asked"] == result["RESYNC_PAGES"]
        last = 20 + result["RESYNC_PAGES"]
        assert result["gap"] == {"after": last}
        assert result["lastId"] == 9001
        assert result["resumeAt"] == last
        assert result["loadAsked"] == last

    def test_bidirectional_controls_in_a_message_are_not_shown(self) -> None:
        """A message with a right-to-left override (U+202E) and isolates arrives through
        the real socket; the page shows its text without them, in a dir="auto" isolate,
        and the sender and time beside it keep their order."""
        (browser,) = self.browsers.get(1)
        self.open_room(browser, "bidi")
        self.send(browser, "\u202etxt.exe \u2066x\u2069 \u202aend\u202c")
        self.wait_for_text(browser, "txt.exe x end")
        shown = browser.execute_script(
            """
            const item = document.querySelector("#chat-log .chat-message:last-child");
            const text = item.querySelector(".text");
            return { text: text.textContent, dir: text.dir,
                     senderDir: item.querySelector(".sender").dir };
            """
        )
        assert shown == {"text": "txt.exe x end", "dir": "auto", "senderDir": "auto"}
        stored = Message.objects.get(room__name="bidi").text
        assert stored == "\u202etxt.exe \u2066x\u2069 \u202aend\u202c"  # kept as sent

    def test_a_message_whose_ack_was_lost_is_sent_again_and_stored_once(self) -> None:
        """The socket drops after the server stored a message and before its ack
        reached the page: once reconnected, the page sends the message again with the
        same client id, and the server answers with the stored message instead of
        storing a second copy (chat-socket.js, chat/protocol.py)."""
        (browser,) = self.browsers.get(1)
        script = browser.execute_cdp_cmd(
            "Page.addScriptToEvaluateOnNewDocument", {"source": LOSE_FIRST_ACK}
        )
        try:
            self.open_room(browser, "retry")
            self.send(browser, "only once")
            self.wait(browser, RECONNECT_SECONDS).until(
                lambda driver: driver.execute_script("return window.acksSeen;") >= 1,
                "the page did not send its unacknowledged message again",
            )
        finally:
            browser.execute_cdp_cmd(
                "Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]}
            )
        assert browser.execute_script("return window.acksLost;") == 1
        stored = Message.objects.filter(room__name="retry").values_list("text", flat=True)
        assert list(stored) == ["only once"]
        assert [m["text"] for m in self.read_log(browser)] == ["only once"]
        self.assert_no_console_errors(browser)


@override_settings(CHAT_REQUIRE_LOGIN=True)
class LoginRequiredTests(BrowserTestCase):
    """With CHAT_REQUIRE_LOGIN (set before the live server starts, so it has it too)."""

    def test_an_anonymous_visitor_logs_in_and_comes_back_to_the_room(self) -> None:
        get_user_model().objects.create_user("cleo", password=PASSWORD)
        (browser,) = self.browsers.get(1)
        room_path = reverse("chat:room", args=["members"])
        browser.get(self.live_server_url + room_path)
        self.wait(browser).until(
            lambda driver: (
                driver.current_url
                == f"{self.live_server_url}{reverse('login')}?next={quote(room_path)}"
            )
        )
        self.fill_login_form(browser, "cleo")
        self.wait(browser).until(
            lambda driver: driver.current_url == self.live_server_url + room_path
        )
        self.wait_for_state(browser, "open")
        self.send(browser, "members only")
        self.wait_for_text(browser, "members only")
        assert [(m["sender"], m["mine"]) for m in self.read_log(browser)] == [("cleo", True)]

    def test_logging_out_in_another_window_closes_the_rooms_socket(self) -> None:
        """The server closes the user's sockets on logout (close code 4001): the page
        stops instead of reconnecting, and says why."""
        get_user_model().objects.create_user("cleo", password=PASSWORD)
        (browser,) = self.browsers.get(1)
        self.log_in(browser, "cleo", next_url=reverse("chat:room", args=["members"]))
        self.wait_for_state(browser, "open")
        room_window = browser.current_window_handle

        browser.switch_to.new_window("window")
        browser.get(self.live_server_url + reverse("chat:lobby"))
        browser.find_element(By.CSS_SELECTOR, ".account button[type=submit]").click()
        self.wait(browser).until(lambda driver: driver.find_elements(By.CSS_SELECTOR, ".account a"))

        browser.switch_to.window(room_window)
        self.wait_for_state(browser, "closed")
        error = browser.find_element(By.ID, "chat-error")
        assert error.is_displayed()
        assert "logged out" in error.text
        assert not browser.find_element(By.ID, "chat-message-submit").is_enabled()
        # The header follows: no name shown, a way to log in again that returns here.
        assert browser.find_elements(By.CSS_SELECTOR, ".account .whoami") == []
        login = browser.find_element(By.CSS_SELECTOR, ".account a.button-link")
        assert login.text == "Log in"
        href = urlsplit(login.get_attribute("href"))
        assert href.path == reverse("login")
        assert parse_qs(href.query) == {"next": [reverse("chat:room", args=["members"])]}
