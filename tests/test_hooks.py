"""Unit tests of the hook helpers, and of the hooks as cookiecutter runs them."""

from __future__ import annotations

import ast
import importlib.util
import random
import shlex
import string
import subprocess
import sys
import tomllib

import pytest

from local_extensions import answers
from tests.generation import DEFAULTS, TEMPLATE_DIR, generate, run


def load_hook(name: str):
    spec = importlib.util.spec_from_file_location(name, TEMPLATE_DIR / "hooks" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pre = load_hook("pre_gen_project")
post = load_hook("post_gen_project")

GOOD = {
    "project_name": "Team Chat",
    "project_slug": "team_chat",
    "email": "ann@example.com",
    "domain_name": "chat.example.com",
    "timezone": "Europe/Berlin",
    **DEFAULTS,
}


def test_good_answers_pass():
    assert answers.refusals(GOOD) == {}
    assert pre.main(GOOD, {}) == 0


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("project_slug", "Team", "is not a lowercase Python identifier"),
        ("project_slug", "team-chat", "is not a lowercase Python identifier"),
        ("project_slug", "1chat", "is not a lowercase Python identifier"),
        ("project_slug", "_chat", "is not a lowercase Python identifier"),
        ("project_slug", "chät", "is not a lowercase Python identifier"),
        ("project_slug", "", "is not a lowercase Python identifier"),
        ("project_slug", "class", "is a Python keyword"),
        ("project_slug", "match", "is a Python keyword"),
        ("project_slug", "django", "would shadow the module 'django'"),
        ("project_slug", "channels", "would shadow the module 'channels'"),
        ("project_slug", "daphne", "would shadow the module 'daphne'"),
        ("project_slug", "redis", "would shadow the module 'redis'"),
        ("project_slug", "config", "would shadow the module 'config'"),
        ("project_slug", "chat", "would shadow the module 'chat'"),
        ("project_slug", "accounts", "would shadow the module 'accounts'"),
        ("project_slug", "test", "would shadow the module 'test'"),
        ("project_slug", "asyncio", "would shadow the module 'asyncio'"),
        ("project_slug", "json", "would shadow the module 'json'"),
        ("project_slug", "x" * 51, "use 50 or fewer"),
        ("project_name", "   ", "is empty: give the project a name"),
        ("email", "ann", "is not an email address"),
        ("email", "ann@example", "is not an email address"),
        ("email", "ann @example.com", "is not an email address"),
        ("email", "ann@@example.com", "is not an email address"),
        ("domain_name", "https://example.com", "is not a domain name"),
        ("domain_name", "example.com/chat", "is not a domain name"),
        ("domain_name", "example.com:8000", "is not a domain name"),
        ("domain_name", "example", "is not a domain name"),
        ("domain_name", "-bad.example.com", "is not a domain name"),
        ("domain_name", "exa mple.com", "is not a domain name"),
        ("domain_name", "10.0.0.1", "is not a domain name"),
        ("timezone", "Mars/Olympus", "is not an IANA time zone"),
        ("timezone", "../etc/passwd", "is not an IANA time zone"),
        ("database", "mysql", "use one of postgresql, sqlite"),
        ("channel_layer", "rabbitmq", "use one of redis, redis_pubsub"),
        ("use_docker", "yes", "use one of y, n"),
        ("ci_tool", "jenkins", "use one of github, gitlab, none"),
        ("open_source_license", "GPL", "use one of MIT, BSD-3-Clause"),
    ],
)
def test_each_bad_answer_is_refused_with_one_clear_line(field, value, expected, capsys):
    bad = {**GOOD, field: value}
    refused = answers.refusals(bad)
    assert list(refused) == [field]
    assert pre.main(bad, refused) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1
    assert errors[0].startswith(f"ERROR: {field} ")
    assert repr(value) in errors[0]
    assert expected in errors[0]


def test_every_bad_answer_is_reported_at_once_and_the_others_are_kept(capsys):
    bad = {**GOOD, "project_slug": "Bad-Slug", "email": "nope", "timezone": "Mars/Base"}
    assert pre.main(bad, answers.refusals(bad)) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("ERROR: ")]
    assert [line.split()[1] for line in errors] == ["project_slug", "email", "timezone"]
    assert "3 answers refused; nothing was generated" in err
    rerun = shlex.split(err.split("(Enter accepts each as its default):")[1].splitlines()[1])
    kept = dict(argument.split("=", 1) for argument in rerun)
    assert kept["project_name"] == "Team Chat"
    assert kept["domain_name"] == "chat.example.com"
    assert not {"project_slug", "email", "timezone"} & set(kept)


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("My Channels Project", "my_channels_project"),
        ("Bob's Chat 2.0", "bobs_chat_2_0"),
        ("Café Crème", "cafe_creme"),
        ("  Team -- Chat!  ", "team_chat"),
        ("2048 Live", "project_2048_live"),
        ("Chat", "chat_project"),
        ("Django", "django_project"),
        ("class", "class_project"),
        ("!!!", "project"),
        ("日本語", "project"),
        ("A" * 80, "a" * 50),
        ("Json", "json_project"),
    ],
)
def test_the_derived_slug_is_valid(name, slug):
    assert answers.derive_slug(name) == slug
    answers.check_slug(slug)


def test_any_name_of_letters_digits_spaces_and_punctuation_derives_a_valid_slug():
    alphabet = string.ascii_letters + string.digits + " " + string.punctuation + "éüßøŁ\u2019"
    chooser = random.Random(14)  # noqa: S311 (reproducible test names, not secrets)
    for _ in range(3000):
        name = "".join(chooser.choices(alphabet, k=chooser.randint(1, 70)))
        answers.check_slug(answers.derive_slug(name))
    for word in sorted(answers.SHADOWED_MODULES | set(sys.stdlib_module_names)):
        answers.check_slug(answers.derive_slug(word))


def test_cookiecutter_stops_on_bad_answers_writes_nothing_and_names_them_all(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cookiecutter",
            "--no-input",
            "-o",
            str(tmp_path),
            str(TEMPLATE_DIR),
            "project_slug=django",
            "email=nope",
            "timezone=Mars/Base",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "project_slug 'django' would shadow the module 'django'" in result.stderr
    assert "email 'nope' is not an email address" in result.stderr
    assert "timezone 'Mars/Base' is not an IANA time zone" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_name_with_punctuation_generates_with_its_derived_slug(tmp_path):
    root = generate(tmp_path, project_name="Bob's Chat 2.0")
    assert root.name == "bobs_chat_2_0"
    assert (root / "bobs_chat_2_0").exists() is False
    assert 'name = "bobs-chat-2-0"' in (root / "pyproject.toml").read_text()


def test_unused_paths_follow_the_answers():
    paths = post.unused_paths({**GOOD, "use_docker": "n", "ci_tool": "gitlab"})
    assert "Dockerfile" in paths
    assert ".github" in paths
    assert ".gitlab-ci.yml" not in paths
    paths = post.unused_paths({**GOOD, "use_docker": "y", "ci_tool": "none"})
    assert "Dockerfile" not in paths
    assert {".github", ".gitlab-ci.yml"} <= set(paths)


def test_remove_handles_files_folders_and_missing(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "f").write_text("x")
    (tmp_path / "file").write_text("x")
    for name in ("folder", "file", "missing"):
        post.remove(tmp_path, name)
    assert list(tmp_path.iterdir()) == []


def test_place_license_keeps_only_the_chosen_text(tmp_path):
    licenses = tmp_path / post.LICENSE_DIR
    licenses.mkdir()
    for name in ("MIT", "Apache-2.0"):
        (licenses / f"{name}.txt").write_text(name)
    post.place_license(tmp_path, "Apache-2.0")
    assert (tmp_path / "LICENSE").read_text() == "Apache-2.0"
    assert not licenses.exists()


def test_no_license_file_when_not_open_source(tmp_path):
    (tmp_path / post.LICENSE_DIR).mkdir()
    post.place_license(tmp_path, "not open source")
    assert not (tmp_path / "LICENSE").exists()


def test_secret_keys_are_long_and_never_repeat():
    keys = {post.new_secret_key() for _ in range(200)}
    assert len(keys) == 200
    assert all(len(key) >= 50 for key in keys)


def test_write_env_fills_only_the_secret(tmp_path):
    (tmp_path / ".env.example").write_text("# doc\nDJANGO_SECRET_KEY=\n# REDIS_URL=x\n")
    post.write_env(tmp_path)
    lines = (tmp_path / ".env").read_text().splitlines()
    assert lines[0] == "# doc"
    assert lines[1].startswith("DJANGO_SECRET_KEY=")
    assert len(lines[1]) > len("DJANGO_SECRET_KEY=") + 50
    assert lines[2] == "# REDIS_URL=x"
    assert oct((tmp_path / ".env").stat().st_mode & 0o777) == "0o600"


def test_next_steps_name_the_two_commands():
    text = post.next_steps(GOOD, "out/team_chat")
    assert (
        "cd out/team_chat && uv run python manage.py migrate && uv run python manage.py runserver"
        in text
    )
    assert "cd out/team_chat && make test" in text
    assert "http://127.0.0.1:8000/chat/" in text


def test_the_hint_names_the_folder_as_the_shell_reaches_it(tmp_path, monkeypatch):
    project = tmp_path / "demo" / "team_chat"
    project.mkdir(parents=True)
    monkeypatch.setenv("PWD", str(tmp_path))
    assert post.shown_path(project) == "demo/team_chat"
    monkeypatch.setenv("PWD", str(tmp_path / "elsewhere"))
    assert post.shown_path(project) == str(project.resolve())


def test_make_pre_commit_outside_a_git_repository_says_what_to_run(tmp_path):
    """pre-commit checks the files git tracks; the hook makes no repository (cruft
    renders the template twice in temporary folders and diffs them), so the target
    says what to do instead of failing inside pre-commit."""
    root = generate(tmp_path)
    assert not (root / ".git").exists()
    result = run(["make", "pre-commit"], cwd=root)
    assert result.returncode == 2
    assert "git init && git add -A" in result.stderr


def test_hooks_and_answer_rules_use_the_standard_library_only():
    allowed = set(sys.stdlib_module_names) | {"__future__", "local_extensions"}
    sources = [*(TEMPLATE_DIR / "hooks").glob("*.py"), TEMPLATE_DIR / "local_extensions/answers.py"]
    for source in sources:
        for line in source.read_text().splitlines():
            words = line.split()
            if words[:1] in (["import"], ["from"]):
                assert words[1].split(".")[0] in allowed, f"{source.name}: {line}"


def test_hook_context_renders_as_json(tmp_path):
    # The hooks read their answers from a rendered JSON literal; quotes and
    # backslashes in an answer must survive it.
    tricky = 'Ann "the" O\'Brien \\ <Co>'
    name = 'Chat "Q" \\ Ltd'
    root = generate(tmp_path, author_name=tricky, project_name=name, project_slug="chat_q")
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert project["authors"][0]["name"] == tricky
    settings = (root / "config" / "settings" / "base.py").read_text()
    line = next(line for line in settings.splitlines() if line.startswith("PROJECT_NAME = "))
    assert ast.literal_eval(line.removeprefix("PROJECT_NAME = ")) == name
