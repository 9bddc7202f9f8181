"""Preference records → validated, tokenized pairs (``dpo_ref.batching`` pads them
into batches).

Accepted record formats (TRL's, so existing datasets work unchanged):

- standard: ``{"prompt": str, "chosen": str, "rejected": str}``; the text is tokenized
  as is and EOS is appended to each response;
- conversational: ``prompt`` is a list of ``{"role", "content"}`` messages and
  ``chosen``/``rejected`` are lists holding the assistant reply; the tokenizer's chat
  template is applied (a tokenizer without one, a base model's, reads each message's
  content on its own line, with a warning);
- implicit prompt: no ``prompt`` field; ``chosen`` and ``rejected`` are whole
  conversations (or strings) and their longest shared prefix is the prompt.

The prompt/response boundary is cut in text: the chat template is rendered for the
prompt (with the generation prompt) and for prompt + response, and the response is the
difference. Prompt and response are then tokenized separately without special tokens, so
the BOS that the template writes appears once and the response's end-of-turn/EOS token
is part of the response labels even when pad == eos.

Truncation policy: the prompt is never cut (a prompt of ``max_length`` tokens or more is
an error, or a counted skip); each response is cut at its end to fit ``max_length`` and
the cut is counted.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

ROLES = ("system", "user", "assistant", "tool")


class DataError(ValueError):
    """A malformed preference record; the message names the record and the field."""

    def __init__(self, where: str, field_name: str | None, problem: str, reason: str):
        self.where, self.field, self.problem, self.reason = (
            where, field_name, problem, reason)
        location = f"{where}, field '{field_name}'" if field_name else where
        super().__init__(f"{location}: {problem}")


@dataclass
class PreferencePair:
    """One tokenized pair. ``index`` is the record's position, used to look up
    precomputed values."""

    index: int
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]


@dataclass
class PreferenceData:
    """Tokenized pairs plus what was skipped or truncated on the way."""

    pairs: list[PreferencePair]
    skipped: Counter = field(default_factory=Counter)
    truncated: int = 0
    skip_messages: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.pairs)

    def report(self) -> str:
        parts = [f"{len(self.pairs)} pairs"]
        if self.skipped:
            reasons = ", ".join(f"{n} {reason}"
                                for reason, n in sorted(self.skipped.items()))
            parts.append(f"{sum(self.skipped.values())} skipped ({reasons})")
        if self.truncated:
            parts.append(f"{self.truncated} with a response truncated to max_length")
        return "; ".join(parts)


# ---------------------------------------------------------------- reading records

def read_jsonl(path: str | Path) -> list[tuple[str, Any]]:
    """``(location, record)`` for each non-blank line; a line that is not JSON raises
    DataError."""
    records = []
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            where = f"{path}: line {line_no}"
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                records.append((where, DataError(
                    where, None, f"not valid UTF-8 ({err.reason} at byte {err.start})",
                    "invalid UTF-8")))
                continue
            if not text.strip():
                continue
            try:
                records.append((where, json.loads(text.rstrip("\r\n"))))
            except json.JSONDecodeError as err:
                records.append((where, DataError(
                    where, None, f"not valid JSON ({err.msg}, column {err.colno})",
                    "invalid JSON")))
    return records


def iter_records(source: Any) -> list[tuple[str, Any]]:
    """Records from a JSONL path, a ``datasets.Dataset`` or any sequence of dicts, with
    locations."""
    if isinstance(source, (str, Path)):
        return read_jsonl(source)
    return [(f"record {i}", record) for i, record in enumerate(source)]


# ---------------------------------------------------------------- validation

def _check_messages(messages: Any, where: str, name: str) -> list[dict[str, str]]:
    if not messages:
        raise DataError(where, name, "empty message list", "empty response")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise DataError(where, f"{name}[{i}]",
                            f"expected a message object, got {type(message).__name__}",
                            "wrong type")
        if message.get("role") not in ROLES:
            raise DataError(where, f"{name}[{i}].role",
                            f"unknown role {message.get('role')!r} "
                            f"(expected one of {', '.join(ROLES)})", "unknown role")
        if not isinstance(message.get("content"), str):
            raise DataError(where, f"{name}[{i}].content",
                            "expected a string, got "
                            f"{type(message.get('content')).__name__}", "wrong type")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _field(record: dict, name: str, where: str) -> Any:
    if name not in record or record[name] is None:
        raise DataError(where, name, "missing", "missing field")
    value = record[name]
    if not isinstance(value, (str, list)):
        raise DataError(where, name, "expected a string or a list of messages, "
                        f"got {type(value).__name__}", "wrong type")
    return value


def _common_prefix(a: Sequence, b: Sequence) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y),
                min(len(a), len(b)))


def normalize_record(record: Any, where: str) -> tuple[Any, Any, Any]:
    """Validate one record and return ``(prompt, chosen, rejected)`` in explicit-prompt
    form.

    Strings stay strings; conversational fields become message lists whose responses
    start at the first message after the prompt.
    """
    if isinstance(record, DataError):
        raise record
    if not isinstance(record, dict):
        raise DataError(where, None,
                        f"expected a JSON object, got {type(record).__name__}",
                        "wrong type")
    chosen, rejected = (_field(record, "chosen", where),
                        _field(record, "rejected", where))
    if type(chosen) is not type(rejected):
        raise DataError(where, "rejected", "chosen and rejected must both be strings "
                        "or both be message lists", "wrong type")
    conversational = isinstance(chosen, list)
    if conversational:
        chosen, rejected = (_check_messages(chosen, where, "chosen"),
                            _check_messages(rejected, where, "rejected"))

    if "prompt" in record:
        prompt = _field(record, "prompt", where)
        if isinstance(prompt, list) != conversational:
            raise DataError(where, "prompt", "prompt and responses must both be "
                            "strings or both be message lists", "wrong type")
        if conversational:
            prompt = _check_messages(prompt, where, "prompt")
    else:
        # implicit prompt: the longest shared prefix of the two conversations
        # (or strings)
        if chosen == rejected:
            raise DataError(where, "rejected", "chosen and rejected are identical",
                            "identical responses")
        n = _common_prefix(chosen, rejected)
        if n == 0:
            raise DataError(where, "prompt", "missing, and chosen/rejected share no "
                            "prefix to take it from", "missing field")
        prompt, chosen, rejected = chosen[:n], chosen[n:], rejected[n:]

    for name, response in (("chosen", chosen), ("rejected", rejected)):
        if conversational:
            if not response:
                raise DataError(where, name, "no response after the prompt",
                                "empty response")
            if response[-1]["role"] != "assistant":
                raise DataError(where, f"{name}[{len(response) - 1}].role",
                                "the response must end with an assistant message",
                                "wrong role")
            if not response[-1]["content"].strip():
                raise DataError(where, name, "empty response", "empty response")
        elif not response.strip():
            raise DataError(where, name, "empty response", "empty response")
    if chosen == rejected:
        raise DataError(where, "rejected", "chosen and rejected are identical",
                        "identical responses")
    if not prompt or (isinstance(prompt, str) and not prompt.strip()):
        raise DataError(where, "prompt", "empty prompt", "empty prompt")
    return prompt, chosen, rejected


# ---------------------------------------------------------------- tokenization

def _dedupe_bos(ids: list[int], tokenizer) -> list[int]:
    bos = tokenizer.bos_token_id
    while bos is not None and len(ids) >= 2 and ids[0] == bos and ids[1] == bos:
        ids = ids[1:]
    return ids


def plain_text(messages: list[dict[str, str]]) -> str:
    """Messages as a base model (no chat template) reads them: each content on its own
    line."""
    return "".join(m["content"] + "\n" for m in messages)


def encode_prompt(tokenizer, prompt: str | list[dict[str, str]]) -> list[int]:
    """Token ids of a prompt ready for generation: chat-templated with the generation
    prompt."""
    if not isinstance(prompt, str) and tokenizer.chat_template is None:
        prompt = plain_text(prompt)
    if isinstance(prompt, str):
        ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
        if (tokenizer.eos_token_id is not None and ids
                and ids[-1] == tokenizer.eos_token_id):
            # some tokenizers append EOS to every encoding; a prompt must stay open
            ids = ids[:-1]
        return _dedupe_bos(list(ids), tokenizer)
    text = tokenizer.apply_chat_template(prompt, tokenize=False,
                                         add_generation_prompt=True)
    return _dedupe_bos(tokenizer(text, add_special_tokens=False)["input_ids"],
                       tokenizer)


def encode_response(tokenizer, prompt: Any, response: Any, where: str = "",
                    name: str = "chosen") -> list[int]:
    """Token ids of a response that continues ``prompt`` (see the module docstring for
    the boundary)."""
    if not isinstance(response, str) and tokenizer.chat_template is None:
        response = plain_text(response).removesuffix("\n")
    if isinstance(response, str):
        ids = tokenizer(response, add_special_tokens=False)["input_ids"]
        if (tokenizer.eos_token_id is not None
                and (not ids or ids[-1] != tokenizer.eos_token_id)):
            ids = ids + [tokenizer.eos_token_id]
        return ids
    prompt_text = tokenizer.apply_chat_template(prompt, tokenize=False,
                                                add_generation_prompt=True)
    full_text = tokenizer.apply_chat_template(prompt + response, tokenize=False)
    if not full_text.startswith(prompt_text):
        raise DataError(where, name, "the chat template renders the prompt differently "
                        "when a response follows; cannot cut the prompt/response "
                        "boundary", "template boundary")
    return tokenizer(full_text[len(prompt_text):],
                     add_special_tokens=False)["input_ids"]


def tokenize_pair(record: Any, index: int, where: str, tokenizer, max_length: int,
                  seen: dict[str, str] | None = None) -> tuple[PreferencePair, bool]:
    """Validate and tokenize one record; returns the pair and whether a response was
    truncated.

    ``seen`` maps each earlier pair to where it was, to reject exact duplicates (which
    would silently weight one example twice).
    """
    prompt, chosen, rejected = normalize_record(record, where)
    if seen is not None:
        key = json.dumps([prompt, chosen, rejected])
        if key in seen:
            raise DataError(where, None, f"duplicate of {seen[key]}", "duplicate pair")
        seen[key] = where
    prompt_ids = encode_prompt(tokenizer, prompt)
    if len(prompt_ids) >= max_length:
        raise DataError(where, "prompt",
                        f"the prompt alone is {len(prompt_ids)} tokens, "
                        f"max_length is {max_length}", "prompt too long")
    chosen_ids = encode_response(tokenizer, prompt, chosen, where, "chosen")
    rejected_ids = encode_response(tokenizer, prompt, rejected, where, "rejected")
    room = max_length - len(prompt_ids)
    truncated = len(chosen_ids) > room or len(rejected_ids) > room
    chosen_ids, rejected_ids = chosen_ids[:room], rejected_ids[:room]
    if chosen_ids == rejected_ids:
        raise DataError(where, "rejected", "chosen and rejected are identical after "
                        "tokenization and truncation", "identical responses")
    return PreferencePair(index, prompt_ids, chosen_ids, rejected_ids), truncated


def prepare_pairs(source: Any, tokenizer, max_length: int,
                  skip_invalid: bool = False) -> PreferenceData:
    """Read, validate and tokenize every record of ``source`` (JSONL path, Dataset, list
    of dicts).

    A malformed record raises :class:`DataError` naming it; with ``skip_invalid`` it is
    skipped and counted by reason in ``PreferenceData.skipped`` instead.
    """
    data = PreferenceData(pairs=[])
    seen: dict[str, str] = {}
    # records of plain strings: a chat model needs message lists to see its template
    plain = 0
    for where, record in iter_records(source):
        plain += isinstance(record, dict) and isinstance(record.get("chosen"), str)
        try:
            pair, truncated = tokenize_pair(record, len(data.pairs), where, tokenizer,
                                            max_length, seen)
        except DataError as err:
            if not skip_invalid:
                raise
            data.skipped[err.reason] += 1
            data.skip_messages.append(str(err))
            continue
        data.pairs.append(pair)
        data.truncated += truncated
    if not data.pairs:
        raise DataError(str(source) if isinstance(source, (str, Path)) else "dataset",
                        None, f"no usable preference pairs ({data.report()})",
                        "empty dataset")
    records = len(data.pairs) + len(data.skip_messages)
    if plain and tokenizer.chat_template is not None:
        warnings.warn(f"{plain} of {records} records are plain strings, tokenized "
                      "without this tokenizer's chat template: a chat model's chat "
                      "answers will barely move; give conversational records (message "
                      "lists) instead (see the README)", stacklevel=2)
    elif plain < records and tokenizer.chat_template is None:
        warnings.warn("this tokenizer has no chat template: message lists are read as "
                      "plain text, each message's content on its own line",
                      stacklevel=2)
    return data


def pad_token_id(tokenizer) -> int:
    """The id used for padding: the tokenizer's pad token, else EOS (safe: masks come
    from lengths)."""
    pad = (tokenizer.pad_token_id if tokenizer.pad_token_id is not None
           else tokenizer.eos_token_id)
    if pad is None:
        raise ValueError("the tokenizer has neither a pad token nor an EOS token")
    return pad


def conversational_record(prompt: str, chosen: str, rejected: str) -> dict:
    """A conversational preference record (TRL's columns): one user turn, one assistant
    reply each."""
    return {"prompt": [{"role": "user", "content": prompt}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}]}
