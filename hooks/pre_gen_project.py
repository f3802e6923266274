"""Refuse bad answers before any file is written: every one of them, in one run.

Cookiecutter renders this file with Jinja and runs it before generation; a non-zero
exit stops generation. The rules live in ``local_extensions/answers.py`` (the
template's own package, which also derives the default slug). Standard library
only: generation must work offline.
"""

from __future__ import annotations

import json
import shlex
import sys


def rerun_arguments(context: dict[str, str], refused: dict[str, str]) -> str:
    """The accepted answers as cookiecutter's KEY=VALUE arguments: given on the command
    line again, each becomes its prompt's default, so only the refused ones need typing."""
    kept = [
        f"{key}={shlex.quote(str(value))}"
        for key, value in context.items()
        if not key.startswith("_") and key not in refused and isinstance(value, str)
    ]
    return " ".join(kept)


def main(context: dict[str, str], refused: dict[str, str]) -> int:
    if not refused:
        return 0
    for reason in refused.values():
        print(f"ERROR: {reason}", file=sys.stderr)
    count = f"{len(refused)} answer{'s' if len(refused) > 1 else ''}"
    print(
        f"{count} refused; nothing was generated. To keep your other answers, run the same "
        "command again with these arguments (Enter accepts each as its default):\n"
        f"    {rerun_arguments(context, refused)}\n"
        "(Cookiecutter reports the stop below with a traceback of its own; there is no "
        "more to it than the lines above.)",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    # Rendered by cookiecutter: the answers as a JSON object, and the template's folder.
    answers = json.loads(r"""{{ cookiecutter | jsonify }}""")
    sys.path.insert(0, r"""{{ template_folder }}""")
    from local_extensions.answers import refusals

    sys.exit(main(answers, refusals(answers)))
