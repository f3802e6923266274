import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("name", ["chat:lobby", "login", "signup"])
def test_pages_carry_the_content_security_policy(client, name, settings):
    response = client.get(reverse(name))
    policy = response["Content-Security-Policy"]
    assert policy == settings.CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy


def test_the_room_page_has_no_inline_script_or_style(client):
    html = client.get(reverse("chat:room", args=["lobby"])).content.decode()
    assert "<script>" not in html
    assert "<script " not in html.replace('<script type="module" src=', "")
    assert " style=" not in html
    assert " on" + "click=" not in html
