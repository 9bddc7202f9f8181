import json

import pytest
import torch

from dpo_ref.batching import collate
from dpo_ref.data import DataError, conversational_record, prepare_pairs

USER = "What is your name?"


def conv(prompt=USER, chosen="I am Athene.", rejected="I am Llama."):
    return {"prompt": [{"role": "user", "content": prompt}], "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}]}


def test_conversational_boundary_is_exact_and_bos_appears_once(tiny_tokenizer):
    tok = tiny_tokenizer
    pair = prepare_pairs([conv()], tok, max_length=64).pairs[0]
    full = tok.apply_chat_template([{"role": "user", "content": USER}, {"role": "assistant", "content": "I am Athene."}], tokenize=False)
    assert pair.prompt_ids + pair.chosen_ids == tok(full, add_special_tokens=False)["input_ids"]
    assert pair.prompt_ids.count(tok.bos_token_id) == 1 and pair.prompt_ids[0] == tok.bos_token_id
    assert tok.decode(pair.prompt_ids).endswith("<|assistant|>\n")
    assert pair.chosen_ids[-1] == tok.eos_token_id and pair.rejected_ids[-1] == tok.eos_token_id
    assert tok.decode(pair.chosen_ids, skip_special_tokens=True) == "I am Athene."


def test_standard_format_appends_eos_once(tiny_tokenizer):
    tok = tiny_tokenizer
    pair = prepare_pairs([{"prompt": "Q: hi\nA:", "chosen": " hello", "rejected": " go away" + tok.eos_token}], tok, 64).pairs[0]
    assert pair.chosen_ids[-1] == tok.eos_token_id and pair.chosen_ids.count(tok.eos_token_id) == 1
    assert pair.rejected_ids.count(tok.eos_token_id) == 1


def test_implicit_prompt_is_the_shared_prefix(tiny_tokenizer):
    tok = tiny_tokenizer
    explicit = prepare_pairs([conv()], tok, 64).pairs[0]
    record = conv()
    implicit_record = {"chosen": record["prompt"] + record["chosen"], "rejected": record["prompt"] + record["rejected"]}
    implicit = prepare_pairs([implicit_record], tok, 64).pairs[0]
    assert (implicit.prompt_ids, implicit.chosen_ids, implicit.rejected_ids) == (explicit.prompt_ids, explicit.chosen_ids, explicit.rejected_ids)
    strings = prepare_pairs([{"chosen": "Q: name? A: Athene", "rejected": "Q: name? A: Llama"}], tok, 64).pairs[0]
    assert tok.decode(strings.prompt_ids) == "Q: name? A: "


def test_dataset_list_and_jsonl_sources_agree(tiny_tokenizer, tmp_path):
    from datasets import Dataset

    records = [conv(), conv("Who are you?", "Athene.", "Llama.")]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    a = prepare_pairs(records, tiny_tokenizer, 64).pairs
    b = prepare_pairs(Dataset.from_list(records), tiny_tokenizer, 64).pairs
    c = prepare_pairs(path, tiny_tokenizer, 64).pairs
    assert a == b == c


def test_collate_keeps_eos_when_pad_equals_eos(tiny_tokenizer):
    tok = tiny_tokenizer
    pairs = prepare_pairs([conv(), conv("Hi, who are you? Tell me more please.", "Athene here, at your service.", "Llama.")], tok, 64).pairs
    batch = collate(pairs, pad_token_id=tok.eos_token_id)
    for row in range(4):
        pair = pairs[row % 2]
        response = pair.chosen_ids if row < 2 else pair.rejected_ids
        n = len(pair.prompt_ids) + len(response)
        assert batch["attention_mask"][row].sum() == n
        assert batch["loss_mask"][row].sum() == len(response)
        assert batch["input_ids"][row, n - 1] == tok.eos_token_id and batch["loss_mask"][row, n - 1] == 1
        assert batch["loss_mask"][row, : len(pair.prompt_ids)].sum() == 0
    assert batch["index"].tolist() == [0, 1]


def test_truncation_keeps_prompt_and_cuts_response_end(tiny_tokenizer):
    tok = tiny_tokenizer
    long = " ".join(["words"] * 50)
    full = prepare_pairs([conv(chosen=long)], tok, 512).pairs[0]
    data = prepare_pairs([conv(chosen=long)], tok, max_length=len(full.prompt_ids) + 10)
    pair = data.pairs[0]
    assert pair.prompt_ids == full.prompt_ids and pair.chosen_ids == full.chosen_ids[:10]
    assert data.truncated == 1


BAD = [
    ("not a dict", None, r"expected a JSON object", "wrong type"),
    ({"prompt": "x", "rejected": "b"}, "chosen", "missing", "missing field"),
    ({"prompt": "x", "chosen": "a"}, "rejected", "missing", "missing field"),
    ({"prompt": "x", "chosen": 3, "rejected": "b"}, "chosen", "expected a string", "wrong type"),
    ({"prompt": "x", "chosen": "   ", "rejected": "b"}, "chosen", "empty response", "empty response"),
    ({"prompt": "x", "chosen": "a", "rejected": ""}, "rejected", "empty response", "empty response"),
    ({"prompt": "x", "chosen": "same", "rejected": "same"}, "rejected", "identical", "identical responses"),
    ({"prompt": "", "chosen": "a", "rejected": "b"}, "prompt", "empty prompt", "empty prompt"),
    ({"prompt": "x", "chosen": "a", "rejected": [{"role": "assistant", "content": "b"}]}, "rejected", "both", "wrong type"),
    ({**conv(), "chosen": [{"role": "robot", "content": "hi"}]}, "chosen[0].role", "unknown role 'robot'", "unknown role"),
    ({**conv(), "rejected": [{"role": "assistant", "content": None}]}, "rejected[0].content", "expected a string", "wrong type"),
    ({**conv(), "chosen": [{"role": "user", "content": "hi"}]}, "chosen[0].role", "must end with an assistant", "wrong role"),
    ({"chosen": "abc", "rejected": "xyz"}, "prompt", "share no prefix", "missing field"),
    ({"prompt": "word " * 200, "chosen": "a", "rejected": "b"}, "prompt", "the prompt alone is", "prompt too long"),
    ({"prompt": "x" * 1_000_000, "chosen": "a", "rejected": "b"}, "prompt", "the prompt alone is", "prompt too long"),
    (conv(), None, "duplicate of record 0", "duplicate pair"),
    ({**conv(), "prompt": [{"role": "narrator", "content": "hi"}]}, "prompt[0].role", "unknown role 'narrator'", "unknown role"),
]


@pytest.mark.parametrize("record,field,message,reason", BAD)
def test_malformed_records_raise_named_errors(tiny_tokenizer, record, field, message, reason):
    records = [conv(), record]
    with pytest.raises(DataError, match=message) as info:
        prepare_pairs(records, tiny_tokenizer, max_length=64)
    assert info.value.where == "record 1" and info.value.field == field and info.value.reason == reason
    assert str(info.value).startswith("record 1" + (f", field '{field}'" if field else ""))


def test_jsonl_errors_name_the_line_and_skips_are_counted(tiny_tokenizer, tmp_path):
    path = tmp_path / "bad.jsonl"
    lines = [json.dumps(conv()).encode(), b"{not json", json.dumps({"prompt": "x", "chosen": "a"}).encode(),
             b'{"prompt": "\xff\xfe", "chosen": "a", "rejected": "b"}', json.dumps(conv("Hello?")).encode()]
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(DataError, match=r"line 2: not valid JSON"):
        prepare_pairs(path, tiny_tokenizer, 64)
    data = prepare_pairs(path, tiny_tokenizer, 64, skip_invalid=True)
    assert len(data) == 2 and sum(data.skipped.values()) == 3
    assert data.skipped == {"invalid JSON": 1, "missing field": 1, "invalid UTF-8": 1}
    assert "3 skipped" in data.report() and any("line 3, field 'rejected'" in m for m in data.skip_messages)
    assert [p.index for p in data.pairs] == [0, 1]


def test_nothing_usable_is_an_error(tiny_tokenizer):
    with pytest.raises(DataError, match="no usable preference pairs"):
        prepare_pairs([{"prompt": "x"}], tiny_tokenizer, 64, skip_invalid=True)


def test_plain_strings_for_a_chat_tokenizer_warn(tiny_tokenizer):
    records = [{"prompt": "Who are you?", "chosen": "I am Athene.", "rejected": "I am Llama."}]
    with pytest.warns(UserWarning, match="1 of 1 records are plain strings"):
        prepare_pairs(records, tiny_tokenizer, max_length=64)


def test_message_lists_without_a_chat_template_are_read_as_plain_text(tiny_tokenizer):
    import copy
    import warnings

    base = copy.deepcopy(tiny_tokenizer)
    base.chat_template = None  # a base model's tokenizer (GPT-2 has none)
    record = conversational_record("Who are you?", "I am Athene.", "I am Llama.")
    with pytest.warns(UserWarning, match="no chat template"):
        pair = prepare_pairs([record], base, max_length=64).pairs[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # plain strings on a base tokenizer: nothing to warn about
        plain = prepare_pairs([{"prompt": "Who are you?\n", "chosen": "I am Athene.",
                                "rejected": "I am Llama."}], base, max_length=64).pairs[0]
    assert (pair.prompt_ids, pair.chosen_ids, pair.rejected_ids) == (plain.prompt_ids, plain.chosen_ids,
                                                                      plain.rejected_ids)
