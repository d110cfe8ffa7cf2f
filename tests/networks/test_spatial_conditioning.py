"""ConditionalDenoiser(spatial_channels=K): a spatial condition (organ fractions at the latent grid) concatenated to a 3D
latent with a presence channel; a missing, masked or dropped condition is the unconditional input; guidance drops it;
TorchScript; the diffusion training step and the sample generator pass it through."""

from __future__ import annotations

import pytest
import torch

from monai_gen.diffusion.guidance import ConditionGuidance
from monai_gen.diffusion.schedules import CosineSchedule
from monai_gen.engines.requests import SampleRequest
from monai_gen.engines.sampling import ConditionalSampleGenerator, DiffusionSamplingInferer
from monai_gen.networks.conditioning import ConditionalDenoiser, PhenotypeEncoder
from monai_gen.networks.nets import DenoisingUNet
from monai_gen.networks.precond import make_denoiser
from monai_gen.transforms.conditions import ConditionSet

LATENT, ORGANS = 2, 3


def _model(**kwargs) -> ConditionalDenoiser:
    torch.manual_seed(0)
    backbone = DenoisingUNet(3, LATENT + ORGANS + 1, LATENT, channels=(8, 8), attention_levels=(False, True),
                             num_res_blocks=1, norm_num_groups=8, num_head_channels=8, with_conditioning=True,
                             cross_attention_dim=8)
    model = ConditionalDenoiser(backbone, phenotype_encoder=PhenotypeEncoder([0], embed_dim=8),
                                spatial_channels=ORGANS, **kwargs)
    with torch.no_grad():  # MONAI zero-initialises the output convolution: an untrained net would output 0 everywhere
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.1)
    return model


@pytest.fixture
def batch():
    torch.manual_seed(1)
    organs = torch.rand(2, ORGANS, 4, 4, 4)
    return {"x": torch.randn(2, LATENT, 4, 4, 4), "t": torch.tensor([0.3, 0.7]),
            "conditions": torch.tensor([[0.2], [-0.4]]), "spatial_condition": organs / organs.sum(1, keepdim=True)}


def test_a_masked_or_missing_spatial_condition_is_the_unconditional_input_and_a_present_one_matters(batch):
    model = _model().eval()
    x, t, values, organs = batch["x"], batch["t"], batch["conditions"], batch["spatial_condition"]
    with torch.no_grad():
        present = model(x, t, values, spatial_condition=organs)
        missing = model(x, t, values)
        masked = model(x, t, values, spatial_condition=organs, spatial_condition_mask=torch.tensor([0.0, 1.0]))
        other = model(x, t, values, spatial_condition=organs.flip(-1))
    assert present.shape == (2, LATENT, 4, 4, 4)
    torch.testing.assert_close(masked[0], missing[0])  # masked: exactly the missing condition
    torch.testing.assert_close(masked[1], present[1])
    assert (present - missing).abs().max() > 1e-4 and (other - present).abs().max() > 1e-4


def test_training_drops_it_with_the_other_conditions(batch):
    model = _model(drop_all_prob=1.0).train()
    x, t, values, organs = batch["x"], batch["t"], batch["conditions"], batch["spatial_condition"]
    torch.manual_seed(0)
    dropped = model(x, t, values, spatial_condition=organs)
    torch.manual_seed(0)
    unconditional = model(x, t, values, condition_mask=torch.zeros(2, 1), spatial_condition_mask=torch.zeros(2))
    torch.testing.assert_close(dropped, unconditional)


def test_guidance_drops_the_spatial_condition_in_its_unconditional_pass(batch):
    model = _model().eval()
    denoise = make_denoiser(model, CosineSchedule(), "v_prediction")
    x, t, values, organs = batch["x"], batch["t"], batch["conditions"], batch["spatial_condition"]
    with torch.no_grad():
        guided = ConditionGuidance(denoise, {"all": 3.0})(x, t, conditions=values, spatial_condition=organs)
        full = denoise(x, t, conditions=values, spatial_condition=organs)
        none = denoise(x, t, conditions=values, condition_mask=torch.zeros(2, 1), spatial_condition=organs,
                       spatial_condition_mask=torch.zeros(2))
    torch.testing.assert_close(guided, full + 2.0 * (full - none))


def test_torchscript_equals_eager_with_a_spatial_condition(batch):
    model = _model().eval()
    scripted = torch.jit.script(model)
    x, t, values, organs = batch["x"], batch["t"], batch["conditions"], batch["spatial_condition"]
    mask = torch.tensor([1.0, 0.0])
    with torch.no_grad():
        torch.testing.assert_close(
            scripted(x, t, values, spatial_condition=organs, spatial_condition_mask=mask),
            model(x, t, values, spatial_condition=organs, spatial_condition_mask=mask), rtol=0, atol=0)


def test_bad_spatial_conditions_are_named(batch):
    x, t = batch["x"], batch["t"]
    with pytest.raises(ValueError, match=r"spatial_condition must have shape \(2, 3, 4, 4, 4\) \(the grid of x\), got "
                                         r"\(2, 3, 8, 8, 8\)"):
        _model()(x, t, batch["conditions"], spatial_condition=torch.zeros(2, ORGANS, 8, 8, 8))
    with pytest.raises(ValueError, match="spatial_condition_mask must have shape"):
        _model()(x, t, batch["conditions"], spatial_condition=batch["spatial_condition"],
                 spatial_condition_mask=torch.ones(3))
    plain = ConditionalDenoiser(DenoisingUNet(3, LATENT, LATENT, channels=(8,), attention_levels=(False,),
                                              norm_num_groups=8))
    with pytest.raises(ValueError, match="spatial_condition was given but this ConditionalDenoiser has no encoder"):
        plain(x, t, spatial_condition=batch["spatial_condition"])
    with pytest.raises(ValueError, match="spatial_channels must be a non-negative integer, got -1"):
        ConditionalDenoiser(plain.backbone, spatial_channels=-1)


def test_the_sample_generator_hands_each_requests_spatial_condition_to_the_network(batch):
    conditions = ConditionSet.from_dict([{"name": "craniocaudal_position", "kind": "continuous", "valid_range": [0, 1],
                                          "mean": 0.5, "std": 0.25}])
    organs = batch["spatial_condition"]

    def by_request(requests):  # what OrganLabelMaps returns: a condition for the requests that name one
        present = torch.tensor([1.0 if "organs" in r.conditions else 0.0 for r in requests])
        return {"spatial_condition": organs[: len(requests)], "spatial_condition_mask": present}

    inferer = DiffusionSamplingInferer(CosineSchedule(), sampler="ddim", num_steps=2)
    generate = ConditionalSampleGenerator(_model(), inferer, conditions, (LATENT, 4, 4, 4), spatial_condition=by_request)
    plain = ConditionalSampleGenerator(_model(), inferer, conditions, (LATENT, 4, 4, 4))
    requests = [SampleRequest("a", 0, {"craniocaudal_position": 0.4, "organs": True}),
                SampleRequest("b", 1, {"craniocaudal_position": 0.6})]
    with_organs, without = generate(requests), plain(requests)
    torch.testing.assert_close(with_organs[1], without[1])  # no label map: the unconditional spatial input
    assert (with_organs[0] - without[0]).abs().max() > 1e-4


def test_a_diffusion_training_step_feeds_the_spatial_condition_to_the_network(batch):
    model = _model(condition_dropout=0.0, drop_all_prob=0.0)
    organs = batch["spatial_condition"]
    items = [{"image": batch["x"][i], "conditions": batch["conditions"][i], "spatial_condition": organs[i],
              "spatial_condition_mask": torch.tensor(1.0)} for i in range(2)]
    trainer, seen = _trainer(model, items)
    trainer.run()
    assert seen == [{"conditions", "spatial_condition", "spatial_condition_mask"}]
    # the organ channels' input weights learned from it: their gradient was not zero
    first = model.backbone.conv_in.conv.weight
    assert first.grad is not None and first.grad[:, LATENT : LATENT + ORGANS].abs().sum() > 0


def _trainer(model, items):
    from monai.data import DataLoader, Dataset
    from monai.engines import SupervisedTrainer

    from monai_gen.diffusion.objectives import DiffusionObjective
    from monai_gen.engines.diffusion_trainer import DiffusionIteration

    objective = DiffusionObjective(CosineSchedule(), prediction_type="v_prediction")
    seen = []

    def recording(network, x0, *, generator, **cond):  # our own objective, delegating to the real one
        seen.append(set(cond))
        return objective(network, x0, generator=generator, **cond)

    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=DataLoader(Dataset(items), batch_size=2),
        network=model, optimizer=torch.optim.SGD(model.parameters(), 0.0), loss_function=torch.nn.MSELoss(),
        iteration_update=DiffusionIteration(recording),
    )
    return trainer, seen
