"""The prompts of soft-verified generation, written for nightowl: T1 task, self-check, synthetic PR."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel

MAX_PATCH_CHARS = 12_000
MAX_ACTIONS = 30


def t1_task(function: str, file: str, category: str) -> str:
    """Deliberately vague, as a colleague's hunch would be: an area and a place, not a diagnosis."""
    return (
        f"Someone reviewing this code suspects a problem around {category}, somewhere near `{function}` "
        f"in `{file}`. Nobody has pinned it down yet.\n\n"
        "Look into it. If you find a real problem in that area, fix it; if the code is fine but could be made "
        "clearer or sturdier in that respect, improve it. Keep the change small and focused, change non-test "
        "files only, and check what you did (reproduce the behaviour before and after where you can). "
        "Think about edge cases your change could break.")


SELF_CHECK_SYSTEM = ("You review code changes. Answer the question, then give your verdict as one word, yes or no, "
                     "inside <output></output> tags.")


def self_check_messages(task: str, patch: str) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": SELF_CHECK_SYSTEM},
        {"role": "user", "content": (
            f"A developer was given this request:\n\n<request>\n{task}\n</request>\n\n"
            f"and made this change:\n\n<diff>\n{clip(patch, MAX_PATCH_CHARS)}\n</diff>\n\n"
            "Does the change address the request: is it about the area the request names, near the code it "
            "names, and a sensible, working change rather than noise? Answer yes or no.")},
    ]


PR_SYSTEM = ("You write issues for a software project in the voice of its users and maintainers. "
             "Put the finished issue text inside <output></output> tags.")


class Action(BaseModel):
    tool: str
    detail: str


def actions_of(trajectory: dict[str, Any]) -> list[Action]:
    """What the T1 agent did, one line per tool call, to show the issue writer how the problem was explored."""
    actions = []
    for step in trajectory.get("steps", []):
        for execution in step.get("executions", []):
            args = execution.get("arguments") or {}
            detail = args.get("command") or args.get("path") or ""
            actions.append(Action(tool=execution.get("tool", "?"),
                                  detail=str(detail).splitlines()[0][:160] if detail else ""))
    return actions[:MAX_ACTIONS]


def pr_messages(patch: str, actions: list[Action], demonstration: str) -> list[dict[str, Any]]:
    steps = "\n".join(f"- {a.tool}: {a.detail}" for a in actions) or "- (no record)"
    return [
        {"role": "system", "content": PR_SYSTEM},
        {"role": "user", "content": (
            "A change was made to this repository. Write the issue that would have asked for it, so that another "
            "developer who never saw the change could make it.\n\n"
            f"The change:\n<diff>\n{clip(patch, MAX_PATCH_CHARS)}\n</diff>\n\n"
            f"How the developer explored the problem:\n{steps}\n\n"
            "Write it like this example from the same project (match its tone, structure and length):\n"
            f"<example>\n{demonstration}\n</example>\n\n"
            "Rules: describe what is wrong or what is wanted, and how to observe it (inputs, calls, what happens, "
            "what should happen). Name the code involved the way a user would. Do not explain or hint at how it "
            "was fixed, do not include the diff, do not mention tests or a test runner, and do not say it has "
            "been fixed.")},
    ]


def clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n... ({len(text) - limit} more characters)"
