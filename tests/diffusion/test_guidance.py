"""Per-attribute classifier-free guidance: closed form on a linear denoiser, scale 1 = conditional, one batched pass."""

from __future__ import annotations

import pytest
import torch

from monai_gen.diffusion.guidance import ConditionGuidance
from monai_gen.diffusion.samplers import sample
from monai_gen.diffusion.schedules import CosineSchedule

GAINS = torch.tensor([1.0, 10.0, 100.0])


class _Linear:
    """x0_hat = x + sum_p mask_p * gain_p * value_p + embedding_mask * sum(embedding); records its batch sizes."""

    def __init__(self) -> None:
        self.batches = []

    def __call__(self, x, t, *, conditions, condition_mask=None, embedding=None, embedding_mask=None):
        self.batches.append(x.shape[0])
        mask = torch.ones_like(conditions) if condition_mask is None else condition_mask
        out = x + (mask * GAINS * conditions).sum(1).view(-1, 1, 1)
        if embedding is not None:
            out = out + (embedding_mask * embedding.sum(1)).view(-1, 1, 1)
        return out


X = torch.zeros(2, 1, 4)
T = torch.full((2,), 0.5)
VALUES = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]])


def test_per_attribute_scales_have_the_closed_form():
    denoise = _Linear()
    out = ConditionGuidance(denoise, {"condition_mask": [2.0, 1.0, 0.0]})(X, T, conditions=VALUES)
    expected = (torch.tensor([2.0, 1.0, 0.0]) * GAINS * VALUES).sum(1).view(-1, 1, 1).expand_as(X)
    torch.testing.assert_close(out, expected)
    assert denoise.batches == [6]  # full + one pass per guided attribute (scale 1 costs nothing), one forward


def test_group_and_all_scales():
    mask = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    embedding = torch.tensor([[0.5, 0.5], [2.0, 0.0]])
    cond = {"conditions": VALUES, "condition_mask": mask, "embedding": embedding, "embedding_mask": torch.ones(2)}
    phen = (mask * GAINS * VALUES).sum(1).view(-1, 1, 1)
    emb = embedding.sum(1).view(-1, 1, 1)
    group = ConditionGuidance(_Linear(), {"condition_mask": 3.0, "embedding_mask": 0.5})(X, T, **cond)
    torch.testing.assert_close(group, (3.0 * phen + 0.5 * emb).expand_as(X))
    everything = ConditionGuidance(_Linear(), {"all": 4.0})(X, T, **cond)
    torch.testing.assert_close(everything, (4.0 * (phen + emb)).expand_as(X))


def test_scale_one_is_exactly_conditional_sampling(tiny_denoiser):
    denoise = tiny_denoiser("epsilon", embedding_dim=3)
    cond = {"conditions": torch.tensor([[0.5, 1.0], [-1.0, 0.0]]), "embedding": torch.randn(2, 3)}
    kwargs = {"num_steps": 3, "seeds": [1, 2], **cond}
    plain = sample(denoise, CosineSchedule(0.05), (2, 2, 16), **kwargs)
    guided = ConditionGuidance(denoise, {"condition_mask": [1.0, 1.0], "embedding_mask": 1.0, "all": 1.0})
    assert torch.equal(sample(guided, CosineSchedule(0.05), (2, 2, 16), **kwargs), plain)
    stronger = ConditionGuidance(denoise, {"condition_mask": [3.0, 1.0]})
    assert (sample(stronger, CosineSchedule(0.05), (2, 2, 16), **kwargs) - plain).abs().max() > 1e-3


def test_guided_real_model_matches_its_separate_passes(tiny_denoiser):
    denoise = tiny_denoiser("epsilon", embedding_dim=3)
    x, t = torch.randn(2, 2, 16), torch.tensor([0.3, 0.8])
    values, mask = torch.tensor([[0.5, 1.0], [-1.0, 0.0]]), torch.ones(2, 2)
    with torch.no_grad():
        guided = ConditionGuidance(denoise, {"condition_mask": [2.5, 1.0]})(x, t, conditions=values)
        full = denoise(x, t, conditions=values, condition_mask=mask)
        without = denoise(x, t, conditions=values, condition_mask=torch.tensor([[0.0, 1.0], [0.0, 1.0]]))
    torch.testing.assert_close(guided, full + 1.5 * (full - without), atol=1e-5, rtol=1e-4)


def test_unset_phenotypes_cost_no_pass_and_change_nothing():
    mask = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 1.0]])  # phenotype 1 unset in every request
    guidance = ConditionGuidance(_Linear(), {"all": 3.0, "condition_mask": [2.0, 5.0, 4.0]})
    every_pass = guidance(X, T, conditions=VALUES, condition_mask=mask)
    pruned = guidance.for_batch({"conditions": VALUES, "condition_mask": mask})
    assert pruned.scales == {"all": 3.0, "condition_mask": [2.0, 1.0, 4.0]}
    out = pruned(X, T, conditions=VALUES, condition_mask=mask)
    torch.testing.assert_close(out, every_pass)
    assert pruned.denoise.batches[-1] == 8  # full, all, phenotypes 0 and 2: four passes of 2, not five
    cond = {"conditions": VALUES, "condition_mask": mask}
    assert (guidance.passes(cond), pruned.passes(cond)) == (5, 4)
    nothing_set = guidance.for_batch({"conditions": VALUES, "condition_mask": torch.zeros(2, 3)})
    assert nothing_set.scales == {"condition_mask": [1.0, 1.0, 1.0]}
    assert nothing_set(X, T, conditions=VALUES, condition_mask=torch.zeros(2, 3)).equal(X)


def test_pruned_guidance_samples_as_the_full_one(tiny_denoiser):
    denoise = tiny_denoiser("epsilon", embedding_dim=3)
    cond = {"conditions": torch.tensor([[0.5, 1.0], [-1.0, 0.0]]), "condition_mask": torch.tensor([[1.0, 0.0]] * 2)}
    guidance = ConditionGuidance(denoise, {"all": 2.0, "condition_mask": [3.0, 4.0]})
    kwargs = {"num_steps": 4, "seeds": [1, 2], **cond}
    full = sample(guidance, CosineSchedule(0.05), (2, 2, 16), **kwargs)
    pruned = sample(guidance.for_batch(cond), CosineSchedule(0.05), (2, 2, 16), **kwargs)
    torch.testing.assert_close(pruned, full, atol=1e-5, rtol=1e-4)


def test_bad_scales():
    with pytest.raises(ValueError, match="scales keys must be among"):
        ConditionGuidance(_Linear(), {"conditions": 2.0})
    with pytest.raises(TypeError, match=r"scales\['embedding_mask'\] must be a number"):
        ConditionGuidance(_Linear(), {"embedding_mask": [2.0]})
    with pytest.raises(ValueError, match="has 2 entries but there are 3 phenotypes"):
        ConditionGuidance(_Linear(), {"condition_mask": [2.0, 1.0]})(X, T, conditions=VALUES)
    with pytest.raises(ValueError, match="has 2 entries but there are 3 phenotypes"):
        ConditionGuidance(_Linear(), {"condition_mask": [2.0, 1.0]}).for_batch({"conditions": VALUES})
