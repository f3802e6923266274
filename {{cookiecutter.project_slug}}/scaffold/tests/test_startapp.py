"""startapp writes this project's app template: placeholders that import nothing
unused, and a tests/ package. The app is named so that no app of a project is (startapp
refuses a name that is already an importable module, and the README's recipe adds
``notes``)."""

from __future__ import annotations

import ast

from django.core.management import call_command

APP = "startapp_probe"


def test_startapp_writes_the_projects_app_template(tmp_path):
    target = tmp_path / APP
    target.mkdir()
    call_command("startapp", APP, str(target))
    written = sorted(str(path.relative_to(target)) for path in target.rglob("*") if path.is_file())
    assert written == [
        "__init__.py",
        "admin.py",
        "apps.py",
        "migrations/__init__.py",
        "models.py",
        "tests/__init__.py",
        "views.py",
    ]
    apps = (target / "apps.py").read_text()
    assert "class StartappProbeConfig(AppConfig):" in apps
    assert f'name = "{APP}"' in apps
    for name in ("admin.py", "models.py", "views.py"):
        tree = ast.parse((target / name).read_text())
        assert [type(node).__name__ for node in tree.body] == ["Expr"], name  # a docstring
        assert APP in (ast.get_docstring(tree) or "")


def test_another_template_can_still_be_given(tmp_path):
    template = tmp_path / "template"
    template.mkdir()
    # Split so that cookiecutter, which renders this file, leaves Django's tag alone.
    (template / "marker.py-tpl").write_text("# {" + "{ app_name }}\n")
    target = tmp_path / APP
    target.mkdir()
    call_command("startapp", APP, str(target), template=str(template))
    assert (target / "marker.py").read_text() == f"# {APP}\n"
