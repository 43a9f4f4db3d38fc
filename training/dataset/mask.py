"""Token ids and the assistant-only loss mask of a row, and the check that the mask is right before training.

The mask comes from character spans (render.assistant_spans); the check reads the token stream's ChatML
structure independently (`<|im_start|>ROLE\\n ... <|im_end|>`), so a wrong mask cannot pass silently: an
all-zero mask (the classic `{% generation %}` pitfall), an unsupervised end-of-turn token (endless output at
serving time) or a supervised tool/user/system token all abort training with a clear message. Once the model is
loaded, `untrained_special_tokens` checks that every added token the rows hold has a trained embedding row.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sandbox.errors import UserError
from training.dataset.render import assistant_spans, end_token

IGNORE = -100


class MaskError(UserError, ValueError):
    """The loss mask is wrong: training would silently learn the wrong thing."""


@dataclass
class Encoded:
    input_ids: list[int]
    supervised: list[bool]
    assistant_turns: int

    @property
    def labels(self) -> list[int]:
        return [t if s else IGNORE for t, s in zip(self.input_ids, self.supervised)]


def encode(tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> Encoded:
    text, spans = assistant_spans(tokenizer, messages, tools)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    supervised, i = [], 0
    for start, _end in enc["offset_mapping"]:
        while i < len(spans) and start >= spans[i][1]:
            i += 1
        supervised.append(i < len(spans) and spans[i][0] <= start < spans[i][1])
    return Encoded(list(enc["input_ids"]), supervised, len(spans))


def cut_to_length(row: Encoded, max_length: int, end_id: int) -> Encoded | None:
    """Keep the row up to the end of the last complete assistant turn within max_length (None: none fits)."""
    if len(row.input_ids) <= max_length:
        return row
    ends = [i for i in range(min(max_length, len(row.input_ids))) if row.supervised[i] and row.input_ids[i] == end_id]
    if not ends:
        return None
    cut = ends[-1] + 1
    return Encoded(row.input_ids[:cut], row.supervised[:cut], len(ends))


@dataclass
class MaskReport:
    rows: int = 0
    tokens: int = 0
    supervised_tokens: int = 0
    assistant_turns: int = 0
    supervised_end_tokens: int = 0
    problems: list[str] = field(default_factory=list)
    untrained_special_tokens: list[str] = field(default_factory=list)
    """Added tokens in the rows whose embedding rows look untrained (`untrained_special_tokens`)."""

    @property
    def share(self) -> float:
        return self.supervised_tokens / self.tokens if self.tokens else 0.0


def check_row(tokenizer: Any, row: Encoded, index: int, report: MaskReport) -> None:
    start_id = tokenizer.convert_tokens_to_ids("<|im_start|>")
    end_id = tokenizer.convert_tokens_to_ids(end_token(tokenizer))
    ids, sup = row.input_ids, row.supervised
    role, in_header, ends_supervised = None, False, 0
    for pos, (tok, s) in enumerate(zip(ids, sup)):
        if tok == start_id:
            role, in_header = "", True
            if s:
                report.problems.append(f"row {index}: the <|im_start|> at token {pos} is supervised")
            continue
        if in_header:
            if s:
                report.problems.append(f"row {index}: role header token {pos} is supervised")
            piece = tokenizer.decode([tok])
            role += piece.split("\n")[0]
            in_header = "\n" not in piece
            continue
        if role != "assistant" and s:
            report.problems.append(f"row {index}: token {pos} of a {role or 'untagged'} turn is supervised")
        if tok == end_id and role == "assistant":
            if s:
                ends_supervised += 1
            else:
                report.problems.append(f"row {index}: the end token of the assistant turn at {pos} is not supervised")
        if tok == end_id:
            role = None
    if ends_supervised != row.assistant_turns:
        report.problems.append(f"row {index}: {ends_supervised} supervised end tokens for {row.assistant_turns} "
                               "assistant turns")
    report.rows += 1
    report.tokens += len(ids)
    report.supervised_tokens += sum(sup)
    report.assistant_turns += row.assistant_turns
    report.supervised_end_tokens += ends_supervised


def verify_masks(tokenizer: Any, rows: list[Encoded]) -> MaskReport:
    """Raise MaskError unless every row's mask covers exactly the assistant replies and their end tokens."""
    if "<|im_start|>" not in tokenizer.get_vocab():
        raise MaskError("the mask check needs a ChatML template (<|im_start|> ... <|im_end|>), as Qwen and SERA "
                        "models use; this tokenizer has no <|im_start|> token")
    report = MaskReport()
    for index, row in enumerate(rows):
        check_row(tokenizer, row, index, report)
    if report.supervised_tokens == 0:
        raise MaskError("loss mask check failed: no token is supervised (every row's assistant mask is empty)")
    if report.problems:
        more = f" (and {len(report.problems) - 3} more)" if len(report.problems) > 3 else ""
        raise MaskError("loss mask check failed: " + "; ".join(report.problems[:3]) + more)
    return report


def untrained_special_tokens(model: Any, tokenizer: Any, rows: list[Encoded]) -> list[str]:
    """The added tokens the rendered rows hold (what the chat template emits) whose embedding rows look untrained.

    Untrained: all zero, or identical to another row (as the unused padding ids' rows are: in a Qwen2.5-Coder
    checkpoint `<tool_call>` and `</tool_call>` share one row with ~270 of them). Such a token cannot be told
    apart from the others, or produced; LoRA on the linear layers does not train embedding rows.
    """
    import torch

    added = set(getattr(tokenizer, "added_tokens_decoder", None) or {})
    ids = sorted({t for row in rows for t in row.input_ids} & added)
    if not ids:
        return []
    inputs = model.get_input_embeddings()
    outputs = model.get_output_embeddings()
    matrices = [("input", inputs.weight)]
    if outputs is not None and getattr(outputs, "weight", None) is not None and outputs.weight is not inputs.weight:
        matrices.append(("output", outputs.weight))
    found = []
    with torch.no_grad():
        for i in ids:
            reasons = []
            for which, weight in matrices:
                if i >= weight.shape[0]:
                    continue
                row = weight[i]
                if not torch.any(row):
                    reasons.append(f"{which} row all zero")
                elif (same := int((weight == row).all(dim=1).sum()) - 1) > 0:
                    reasons.append(f"{which} row identical to {same} other row{'s' if same > 1 else ''}")
            if reasons:
                found.append(f"{tokenizer.convert_ids_to_tokens(i)} (id {i}: {', '.join(reasons)})")
    return found


def untrained_warning(base: str, tokens: list[str]) -> str:
    return (f"{len(tokens)} token(s) the chat template emits have untrained embedding rows in {base}: "
            f"{'; '.join(tokens)}. The model cannot produce them, and LoRA does not train embedding rows: "
            "initialise those rows (e.g. from the mean embedding of the token's text pieces) and train them "
            "(peft's trainable_token_indices), or render the template without them")
