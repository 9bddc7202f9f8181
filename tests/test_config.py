"""DPOConfig's checks of the family's settings: what each loss needs of the reference,
TR-DPO's settings, and the variants' own (a wrong one names the field)."""

import pytest

from dpo_ref import ConfigError, DPOConfig
from dpo_ref.losses import LOSS_TYPES, REFERENCE_FREE


@pytest.mark.parametrize("loss_type", [t for t in LOSS_TYPES if t not in REFERENCE_FREE])
def test_losses_that_need_a_reference_refuse_none(loss_type):
    with pytest.raises(ConfigError, match="reference='none' works only with"):
        DPOConfig(loss_type=loss_type, reference="none", rdpo_alpha=0.1)


@pytest.mark.parametrize("loss_type", REFERENCE_FREE)
def test_reference_free_losses_require_none(loss_type):
    """simpo and orpo require reference="none" rather than build a reference they would never read."""
    for reference in ("copy", "lora", "precomputed", "tr"):
        with pytest.raises(ConfigError, match="set reference='none'"):
            DPOConfig(loss_type=loss_type, reference=reference)
    config = DPOConfig(loss_type=loss_type, reference="none")
    assert config.mean_logps
    with pytest.raises(ConfigError, match="length_normalize"):
        DPOConfig(loss_type=loss_type, reference="none", length_normalize=False)


@pytest.mark.parametrize("settings,message", [
    (dict(reference="tr", lora=True), "train without lora"),
    (dict(reference="tr", ref_model_mixup_alpha=0.0), r"ref_model_mixup_alpha must be in \(0, 1\]"),
    (dict(reference="tr", ref_model_sync_steps=0), "ref_model_sync_steps must be >= 1"),
    (dict(reference="precomputed", ref_model_sync_steps=4), "read only with reference='tr'"),
    (dict(reference="lora", ref_model_mixup_alpha=0.5), "read only with reference='tr'"),
    (dict(reference="none", loss_type="simpo", ref_model_mixup_alpha=0.5), "read only with reference='tr'"),
    (dict(loss_type="sigmoid_norm", length_normalize=False), "length_normalize must be None or True"),
    (dict(loss_type="rdpo"), "rdpo_alpha > 0"),
    (dict(simpo_gamma=-1.0), "simpo_gamma must be >= 0"),
])
def test_bad_family_settings_are_config_errors_naming_the_field(settings, message):
    with pytest.raises(ConfigError, match=message):
        DPOConfig(**settings)
