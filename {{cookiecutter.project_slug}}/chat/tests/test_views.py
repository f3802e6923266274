import pytest
from django.test import override_settings
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_root_redirects_to_the_lobby(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == reverse("chat:lobby")


def test_lobby_has_the_tutorial_ids(client):
    response = client.get(reverse("chat:lobby"))
    assert response.status_code == 200
    html = response.content.decode()
    for element_id in ("room-name-input", "room-name-submit"):
        assert f'id="{element_id}"' in html
    assert "chat/js/lobby.js" in html


def test_room_has_the_tutorial_ids_and_socket_path(client):
    response = client.get(reverse("chat:room", args=["lobby"]))
    assert response.status_code == 200
    html = response.content.decode()
    for element_id in ("chat-log", "chat-message-input", "chat-message-submit"):
        assert f'id="{element_id}"' in html
    assert 'data-ws-path="/ws/chat/lobby/"' in html


def test_a_bad_room_name_is_not_found(client):
    assert client.get("/chat/a.b/").status_code == 404


def test_pages_have_no_inline_script(client):
    for url in (reverse("chat:lobby"), reverse("chat:room", args=["lobby"])):
        html = client.get(url).content.decode()
        assert "<script>" not in html
        assert "onclick" not in html


@override_settings(CHAT_REQUIRE_LOGIN=True)
def test_login_required_room_page_sends_anonymous_visitors_to_log_in(client):
    response = client.get(reverse("chat:room", args=["lobby"]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize(("name", "args"), [("chat:lobby", []), ("chat:room", ["lobby"])])
def test_the_pages_carry_the_policy_and_no_inline_script_or_style(client, name, args, settings):
    response = client.get(reverse(name, args=args))
    assert response["Content-Security-Policy"] == settings.CONTENT_SECURITY_POLICY
    html = response.content.decode()
    assert "<script>" not in html
    assert "<script " not in html.replace('<script type="module" src=', "")
    assert " style=" not in html
    assert " on" + "click=" not in html
