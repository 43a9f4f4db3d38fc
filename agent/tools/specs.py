"""The tools as the model sees them, with SWE-agent's names, parameters and descriptions.

SERA and SWE-smith checkpoints were trained on exactly these schemas, so they are kept verbatim in shape.
The pydantic models validate what comes back.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

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
"""


def function(name: str, description: str, properties: dict, required: list[str]) -> dict:
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": properties, "required": required}}}


BASH = function("bash", "runs the given command directly in bash",
                {"command": {"type": "string", "description": "The bash command to execute."}}, ["command"])

STR_REPLACE_EDITOR = function("str_replace_editor", EDITOR_DESCRIPTION, {
    "command": {"type": "string", "enum": ["view", "create", "str_replace", "insert", "undo_edit"],
                "description": "The commands to run. Allowed options are: `view`, `create`, `str_replace`, `insert`, `undo_edit`."},
    "path": {"type": "string",
             "description": "Absolute path to file or directory, e.g. `/testbed/file.py` or `/testbed`."},
    "file_text": {"type": "string",
                  "description": "Required parameter of `create` command, with the content of the file to be created."},
    "old_str": {"type": "string",
                "description": "Required parameter of `str_replace` command containing the string in `path` to replace."},
    "new_str": {"type": "string",
                "description": "Optional parameter of `str_replace` command containing the new string (if not given, no string will be added). Required parameter of `insert` command containing the string to insert."},
    "insert_line": {"type": "integer",
                    "description": "Required parameter of `insert` command. The `new_str` will be inserted AFTER the line `insert_line` of `path`."},
    "view_range": {"type": "array", "items": {"type": "integer"},
                   "description": "Optional parameter of `view` command when `path` points to a file. If none is given, the full file is shown. If provided, the file will be shown in the indicated line number range, e.g. [11, 12] will show lines 11 and 12. Indexing at 1 to start. Setting `[start_line, -1]` shows all lines from `start_line` to the end of the file."},
}, ["command", "path"])

SUBMIT = function("submit", "submits the current file", {}, [])

TOOL_SPECS = [BASH, STR_REPLACE_EDITOR, SUBMIT]


class BashArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    command: str


class EditorArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    command: Literal["view", "create", "str_replace", "insert", "undo_edit"]
    path: str
    file_text: str | None = None
    old_str: str | None = None
    new_str: str | None = None
    insert_line: int | None = None
    view_range: list[int] | None = None


class SubmitArgs(BaseModel):
    model_config = ConfigDict(extra="ignore")


ARGUMENT_MODELS: dict[str, type[BaseModel]] = {"bash": BashArgs, "str_replace_editor": EditorArgs,
                                               "submit": SubmitArgs}
