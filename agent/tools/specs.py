"""The tools' argument models, with SWE-agent's names, parameters and descriptions.

SERA and SWE-smith checkpoints were trained on exactly these schemas, so their shape is kept verbatim: the
JSON schema the model sees is derived from these models (`parameters_schema`), never written twice.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# SWE-agent's description word for word (models were trained on it), so its long lines stay as they are.
EDITOR_DESCRIPTION = """Custom editing tool for viewing, creating and editing files
* State is persistent across command calls and discussions with the user
* If `path` is a file, `view` displays the result of applying `cat -n`. If `path` is a directory, `view` lists non-hidden files and directories up to 2 levels deep
* The `create` command cannot be used if the specified `path` already exists as a file
* If a `command` generates a long output, it will be truncated and marked with `<response clipped>`
* The `undo_edit` command will revert the last edit made to the file at `path`

Notes for using the `str_replace` command:
* The `old_str` parameter should match EXACTLY one or more consecutive lines from the original file. Be mindful of whitespaces!
* If the `old_str` parameter is not unique in the file, the replacement will not be performed. Make sure to include enough context in `old_str` to make it unique
* The `new_str` parameter should contain the edited lines that should replace the `old_str`
"""  # noqa: E501
BASH_DESCRIPTION = "runs the given command directly in bash"
"""SWE-agent's first line; the shell mode follows (`bash_description`)."""
SHELL_MODES = {
    "persistent": (
        "* The shell session persists across calls: the working directory, environment variables and activated "
        "virtual environments carry over from one command to the next\n"
        "* Commands run without a terminal and read no input; a command that runs too long is interrupted (as with "
        "Ctrl-C), and background processes keep running until the task ends"),
    "stateless": (
        "* Every call starts a fresh shell in the repository root: `cd`, `export` and `source` do not carry over to "
        "the next call, so chain dependent commands with `&&` in one call\n"
        "* Commands run without a terminal and read no input; a command that runs too long is killed, with "
        "everything it started"),
}
ShellMode = Literal["persistent", "stateless"]
SUBMIT_DESCRIPTION = "submits the current file"
SCHEMA_KEY_ORDER = ("type", "enum", "items", "description")


class BashArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    command: str = Field(description="The bash command to execute.")


class EditorArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    command: Literal["view", "create", "str_replace", "insert", "undo_edit"] = Field(
        description="The commands to run. Allowed options are: `view`, `create`, `str_replace`, `insert`, `undo_edit`.")
    path: str = Field(description="Absolute path to file or directory, e.g. `/testbed/file.py` or `/testbed`.")
    file_text: str | None = Field(
        default=None, description="Required parameter of `create` command, with the content of the file to be created.")
    old_str: str | None = Field(
        default=None,
        description="Required parameter of `str_replace` command containing the string in `path` to replace.")
    new_str: str | None = Field(
        default=None, description="Optional parameter of `str_replace` command containing the new string (if not "
                                  "given, no string will be added). Required parameter of `insert` command containing "
                                  "the string to insert.")
    insert_line: int | None = Field(
        default=None, description="Required parameter of `insert` command. The `new_str` will be inserted AFTER the "
                                  "line `insert_line` of `path`.")
    view_range: list[int] | None = Field(
        default=None, description="Optional parameter of `view` command when `path` points to a file. If none is "
                                  "given, the full file is shown. If provided, the file will be shown in the indicated "
                                  "line number range, e.g. [11, 12] will show lines 11 and 12. Indexing at 1 to start. "
                                  "Setting `[start_line, -1]` shows all lines from `start_line` to the end of the "
                                  "file.")


class SubmitArgs(BaseModel):
    model_config = ConfigDict(extra="ignore")


def bash_description(shell: ShellMode) -> str:
    return f"{BASH_DESCRIPTION}\n{SHELL_MODES[shell]}\n"


def parameters_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema in the plain shape tool-calling models were trained on.

    Optional fields are shown with their own type (not `anyOf [..., null]`); titles and defaults are left out.
    """
    schema = model.model_json_schema()
    properties = {}
    for name, prop in schema.get("properties", {}).items():
        prop = {k: v for k, v in prop.items() if k not in ("title", "default")}
        if "anyOf" in prop:
            non_null = [s for s in prop.pop("anyOf") if s.get("type") != "null"]
            prop = {**non_null[0], **prop}
        properties[name] = {k: prop[k] for k in sorted(prop, key=lambda k: (
            SCHEMA_KEY_ORDER.index(k) if k in SCHEMA_KEY_ORDER else len(SCHEMA_KEY_ORDER), k))}
    return {"type": "object", "properties": properties, "required": schema.get("required", [])}


def function_spec(name: str, description: str, arguments: type[BaseModel]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": description,
                                             "parameters": parameters_schema(arguments)}}
