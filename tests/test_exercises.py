import pytest
import torch
import torch.nn.functional as F

from dpo_ref.exercises import check_dpo_loss, check_sequence_logps


def test_loss_checker_accepts_a_right_answer_and_names_wrong_ones():
    def right(pc, pr, rc, rr, beta):
        return -F.logsigmoid(beta * ((pc - rc) - (pr - rr)))

    def unstable(pc, pr, rc, rr, beta):
        return -torch.log(torch.sigmoid(beta * ((pc - rc) - (pr - rr))))

    def averaged(pc, pr, rc, rr, beta):
        return right(pc, pr, rc, rr, beta).mean()

    def swapped(pc, pr, rc, rr, beta):
        return -F.logsigmoid(beta * ((pc - pr) - (rr - rc)))

    assert check_dpo_loss(right).startswith("ok")
    with pytest.raises(AssertionError, match="logsigmoid"):
        check_dpo_loss(unstable)
    with pytest.raises(AssertionError, match="did you average"):
        check_dpo_loss(averaged)
    with pytest.raises(AssertionError, match="expected"):
        check_dpo_loss(swapped)


def test_logps_checker_spots_the_missing_shift():
    def right(logits, ids, mask):
        logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        return (logp * mask[:, 1:]).sum(-1)

    def unshifted(logits, ids, mask):
        return (torch.log_softmax(logits, -1).gather(-1, ids[..., None]).squeeze(-1) * mask).sum(-1)

    assert check_sequence_logps(right).startswith("ok")
    with pytest.raises(AssertionError, match="shift"):
        check_sequence_logps(unshifted)
