"""dpo_ref.lab.memory: the estimate's parts per reference strategy."""


def test_memory_counts_no_reference_for_none():
    from dpo_ref.lab.memory import SHAPES, training_memory

    shape = SHAPES["SmolLM2-135M"]
    assert training_memory(shape, reference="none")["reference"] == 0
    assert training_memory(shape, reference="tr") == training_memory(shape, reference="copy")
    assert training_memory(shape, reference="copy")["reference"] == 4 * shape.params()
