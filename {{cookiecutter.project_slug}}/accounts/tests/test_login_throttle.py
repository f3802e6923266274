"""Failed logins are throttled on the site's login page and the admin's alike
(django-axes, configured in config/settings/base.py): after AXES_FAILURE_LIMIT wrong
passwords for one username from one address, that username is refused there, the
right password included, for the cool-off; other addresses and users are not."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.test import Client
from django.urls import reverse

from realtime.testing import report_figure

PASSWORD = "correct horse battery"  # make_user's default
PAGES = {"site": "login", "admin": "admin:login"}


def log_in(client: Client, page: str, username: str, password: str, address: str = "10.0.0.1"):
    return client.post(
        reverse(PAGES[page]),
        {"username": username, "password": password},
        REMOTE_ADDR=address,
    )


def signed_in(response) -> bool:
    return response.status_code == 302


@pytest.mark.django_db
@pytest.mark.parametrize("page", PAGES)
def test_wrong_passwords_lock_that_username_out_from_that_address(
    client, make_user, page, settings
):
    user = make_user("ann")
    user.is_staff = user.is_superuser = True  # the admin logs in staff only
    user.save()
    limit = settings.AXES_FAILURE_LIMIT
    answers = [log_in(client, page, "ann", "wrong").status_code for _ in range(limit)]
    assert 429 not in answers[:-1]  # each wrong password before the limit: the form again
    refused = log_in(client, page, "ann", PASSWORD)
    assert refused.status_code == 429  # the right password too, during the cool-off
    assert "_auth_user_id" not in client.session
    # Another address, or another user from this one, are not locked out.
    assert signed_in(log_in(Client(), page, "ann", PASSWORD, address="10.0.0.2"))
    make_user("bob")
    assert log_in(Client(), page, "bob", "wrong").status_code != 429
    report_figure(
        f"{page} login: {limit} wrong passwords, then 429 for the right one "
        "(before: every attempt answered)"
    )


@pytest.mark.django_db
@pytest.mark.parametrize("page", PAGES)
def test_the_lock_ends_after_the_cool_off(client, make_user, page, settings):
    user = make_user("ann")
    user.is_staff = user.is_superuser = True
    user.save()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        log_in(client, page, "ann", "wrong")
    assert log_in(client, page, "ann", PASSWORD).status_code == 429
    # The cool-off passes: the attempts are that old now.
    AccessAttempt.objects.update(
        attempt_time=AccessAttempt.objects.get().attempt_time
        - settings.AXES_COOLOFF_TIME
        - timedelta(seconds=1)
    )
    assert signed_in(log_in(client, page, "ann", PASSWORD))


def test_the_limits_are_on_by_default():
    from config.settings import base

    assert base.AXES_FAILURE_LIMIT == 5
    assert base.AXES_COOLOFF_TIME.total_seconds() == 15 * 60
    assert base.AUTHENTICATION_BACKENDS[0] == "axes.backends.AxesStandaloneBackend"
