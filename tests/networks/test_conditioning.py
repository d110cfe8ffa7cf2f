"""Condition encoders and ConditionalDenoiser: null tokens, per-condition independence, dropout, errors."""

from __future__ import annotations

import pytest
import torch

from monai_gen.networks.conditioning import ConditionalDenoiser, EmbeddingEncoder, PhenotypeEncoder
from monai_gen.networks.nets import DenoisingUNet

NUM_CATEGORIES = [0, 3, 0]  # continuous, 3-class categorical, continuous


def _phenotypes() -> PhenotypeEncoder:
    torch.manual_seed(0)
    return PhenotypeEncoder(NUM_CATEGORIES, embed_dim=8)


def _model(**kwargs) -> ConditionalDenoiser:
    torch.manual_seed(0)
    backbone = DenoisingUNet(
        1,
        2,
        2,
        channels=(8,),
        attention_levels=(True,),
        num_res_blocks=1,
        norm_num_groups=8,
        num_head_channels=8,
        with_conditioning=True,
        cross_attention_dim=8,
    )
    for p in backbone.parameters():  # undo zero init so that the context reaches the output
        if not p.any():
            torch.nn.init.normal_(p, std=0.1)
    return ConditionalDenoiser(
        backbone, phenotype_encoder=_phenotypes(), embedding_encoder=EmbeddingEncoder(5, 8, num_tokens=2), **kwargs
    )


def test_phenotype_tokens_are_per_phenotype_and_missing_ones_are_null():
    enc = _phenotypes()
    values = torch.tensor([[0.5, 2.0, -1.0], [0.5, 0.0, float("nan")]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    tokens = enc(values, mask)
    assert tokens.shape == (2, 3, 8)
    torch.testing.assert_close(tokens[0, 0], tokens[1, 0])  # same value, same token whatever the others are
    assert (tokens[0, 1] - tokens[1, 1]).abs().max() > 1e-3  # the category changes its token
    torch.testing.assert_close(tokens[1, 2], enc.null_tokens[2])  # missing -> that phenotype's null token
    assert (enc.null_tokens[0] - enc.null_tokens[2]).abs().max() > 0
    torch.testing.assert_close(enc(values[:1], None), tokens[:1])  # no mask = all present


def test_categorical_token_is_the_embedding_row_and_gradients_reach_null_tokens():
    enc = _phenotypes()
    tokens = enc(torch.tensor([[0.0, 2.0, 0.0]]), torch.tensor([[0.0, 1.0, 1.0]]))
    torch.testing.assert_close(tokens[0, 1], enc.category_table.weight[2])  # offset 0 + class 2
    tokens.sum().backward()
    assert enc.null_tokens.grad[0].abs().sum() > 0 and enc.null_tokens.grad[1:].abs().sum() == 0


@pytest.mark.parametrize(
    "values, match",
    [
        ([[0.0, 3.0, 0.0]], r"conditions\[0, 1\] = 3.0 is not a category index in 0..2"),
        ([[0.0, 1.5, 0.0]], r"conditions\[0, 1\] = 1.5 is not a category index"),
        ([[float("nan"), 1.0, 0.0]], r"conditions\[0, 0\] = nan is marked present"),
    ],
)
def test_bad_phenotype_values_are_named(values, match):
    with pytest.raises(ValueError, match=match):
        _phenotypes()(torch.tensor(values))


def test_bad_encoder_arguments():
    with pytest.raises(ValueError, match="num_categories"):
        PhenotypeEncoder([0, 1], embed_dim=8)
    with pytest.raises(ValueError, match=r"conditions must have shape \(B, 3\)"):
        _phenotypes()(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"condition_mask must have shape \(2, 3\)"):
        _phenotypes()(torch.zeros(2, 3), torch.ones(2))


def test_embedding_encoder_vector_and_token_inputs():
    enc = EmbeddingEncoder(5, 8, num_tokens=2)
    emb = torch.randn(3, 5)
    tokens = enc(emb, torch.tensor([1.0, 0.0, 1.0]))
    assert tokens.shape == (3, 2, 8)
    torch.testing.assert_close(tokens[1], enc.null_token.expand(2, 8))
    torch.testing.assert_close(tokens[2], enc.vector_proj(emb[2]).reshape(2, 8))
    assert enc(torch.randn(3, 4, 5)).shape == (3, 4, 8)
    with pytest.raises(ValueError, match=r"embedding must have shape \(B, 5\)"):
        enc(torch.randn(3, 6))


def test_masked_condition_value_is_ignored_and_none_means_unconditional():
    model = _model().eval()
    x, t = torch.randn(1, 2, 16).expand(2, 2, 16), torch.tensor([0.4, 0.4])
    values = torch.tensor([[0.3, 1.0, -0.5], [0.3, 1.0, 9.0]])
    with torch.no_grad():
        masked = model(x, t, conditions=values, condition_mask=torch.tensor([[1.0, 1.0, 0.0]] * 2))
        full = model(x, t, conditions=values)
        none = model(x, t)
        all_masked = model(
            x,
            t,
            conditions=values,
            condition_mask=torch.zeros(2, 3),
            embedding=torch.randn(2, 5),
            embedding_mask=torch.zeros(2),
        )
    torch.testing.assert_close(masked[0], masked[1], atol=1e-6, rtol=1e-5)  # the masked value 9.0 has no effect
    assert (full[0] - full[1]).abs().max() > 1e-4  # unmasked, it does
    torch.testing.assert_close(none, all_masked)


def test_dropout_only_in_training():
    x, t = torch.randn(2, 2, 16), torch.tensor([0.4, 0.6])
    values = torch.tensor([[0.3, 1.0, -0.5], [1.3, 2.0, 0.5]])
    model = _model(condition_dropout=1.0, drop_all_prob=0.0)
    dropped = model.train()(x, t, conditions=values, embedding=torch.randn(2, 5))
    model.eval()
    with torch.no_grad():
        unconditional = model(x, t)
        conditional = model(x, t, conditions=values)
    torch.testing.assert_close(dropped.detach(), unconditional)
    assert (conditional - unconditional).abs().max() > 1e-4
    model = _model(condition_dropout=0.0, drop_all_prob=1.0).train()
    torch.testing.assert_close(model(x, t, conditions=values).detach(), unconditional)


def test_condition_noise_jitters_continuous_values_in_training_only():
    x, t = torch.randn(2, 2, 16), torch.tensor([0.4, 0.6])
    values = torch.tensor([[0.3, 1.0, -0.5], [1.3, 2.0, 0.5]])
    model = _model(condition_dropout=0.0, drop_all_prob=0.0, condition_noise=0.5)
    seen = []
    model.phenotype_encoder.register_forward_hook(lambda module, args, out: seen.append(args[0].clone()))
    torch.manual_seed(0)
    model.train()(x, t, conditions=values, embedding=torch.randn(2, 5))
    jitter = seen[-1] - values
    assert (jitter[:, [0, 2]].abs() > 0).all() and (jitter[:, 1] == 0).all()  # the category index stays exact
    assert 0.05 < float(jitter[:, [0, 2]].abs().mean()) < 1.5
    model.eval()(x, t, conditions=values)
    torch.testing.assert_close(seen[-1], values)  # no noise when sampling
    with pytest.raises(ValueError, match="condition_noise must be >= 0"):
        _model(condition_noise=-0.1)


def test_model_configuration_errors():
    backbone = DenoisingUNet(
        1,
        2,
        2,
        channels=(8,),
        attention_levels=(True,),
        norm_num_groups=8,
        with_conditioning=True,
        cross_attention_dim=16,
    )
    with pytest.raises(ValueError, match="embed_dim = 8 must equal the backbone's cross_attention_dim"):
        ConditionalDenoiser(backbone, phenotype_encoder=_phenotypes())
    with pytest.raises(ValueError, match="condition_dropout must lie in"):
        ConditionalDenoiser(backbone, condition_dropout=1.5)
    with pytest.raises(ValueError, match="conditions has batch size 3 but x has 2"):
        _model()(torch.randn(2, 2, 16), torch.rand(2), conditions=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="conditions was given but"):
        ConditionalDenoiser(backbone)(torch.randn(1, 2, 8), torch.rand(1), conditions=torch.zeros(1, 3))


def test_torchscript_equals_eager_and_time_is_named_timesteps():
    model = _model().eval()
    scripted = torch.jit.script(model)
    x, t = torch.randn(2, 2, 16), torch.tensor([0.4, 0.6])
    values, mask = torch.tensor([[0.3, 1.0, -0.5], [1.3, 0.0, 0.5]]), torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    embedding = torch.randn(2, 5)
    with torch.no_grad():
        eager = model(x, timesteps=t, conditions=values, condition_mask=mask, embedding=embedding)
        torch.testing.assert_close(model(x, t=t, conditions=values, condition_mask=mask, embedding=embedding), eager)
        torch.testing.assert_close(
            scripted(x, timesteps=t, conditions=values, condition_mask=mask, embedding=embedding), eager, rtol=0, atol=0
        )
        torch.testing.assert_close(scripted(x), model(x), rtol=0, atol=0)  # no time, no conditions
    with pytest.raises(Exception, match=r"condition_mask must have shape \(2, 3\)"):
        scripted(x, t, values, torch.ones(2, 2))


def test_periodic_phenotype_token_closes_the_cycle_and_old_state_dicts_still_load():
    torch.manual_seed(0)
    enc = PhenotypeEncoder([0, 0], embed_dim=8, periodic=[True, False])  # cardiac phase (fraction), BMI z-score
    phases = torch.tensor([0.0, 0.02, 0.5, 0.98])
    tokens = enc(torch.stack([phases, torch.zeros(4)], dim=1))[:, 0]
    near_start, opposite, near_end = ((tokens[i] - tokens[0]).norm() for i in (1, 2, 3))
    assert near_end < opposite and near_start < opposite  # 0.98 lies next to 0, as 0.02 does; 0.5 is far
    torch.testing.assert_close(enc(torch.tensor([[1.0, 0.0]]))[0, 0], tokens[0])  # a whole cycle later: same token
    # the continuous phenotype beside it keeps the plain v * w + b path, and an encoder without periodic
    # phenotypes has no phase_weight, so state dicts saved before periodic conditions existed load strictly
    assert "phase_weight" in enc.state_dict() and "phase_weight" not in PhenotypeEncoder([0, 2], 8).state_dict()
    scripted = torch.jit.script(enc)
    values = torch.tensor([[0.3, -1.0], [0.9, 2.0]])
    torch.testing.assert_close(scripted(values, torch.ones(2, 2)), enc(values, torch.ones(2, 2)), rtol=0, atol=0)
    torch.jit.script(PhenotypeEncoder([0, 2], 8))  # compiles without the parameter too
    with pytest.raises(ValueError, match=r"periodic must give one flag per phenotype, set only for continuous ones"):
        PhenotypeEncoder([0, 2], 8, periodic=[False, True])
    with pytest.raises(ValueError, match="one flag per phenotype"):
        PhenotypeEncoder([0, 2], 8, periodic=[True])
