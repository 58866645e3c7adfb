import torch

from mimicbrush_cli.models.build import build_imitative_unet, build_reference_unet, model_size
from mimicbrush_cli.models.unets import align_reference_unet, imitative_unet_input


def first_block_features(unet, sample, timestep, tokens):
    captured = {}
    handle = unet.down_blocks[0].register_forward_hook(lambda module, args, output: captured.update(features=output[0]))
    try:
        unet(sample, timestep, encoder_hidden_states=tokens)
    finally:
        handle.remove()
    return captured["features"]


def test_aligned_reference_unet_sees_a_clean_latent_as_the_imitative_unet_sees_it_unmasked():
    torch.manual_seed(0)
    size = model_size("tiny")
    imitative, reference = build_imitative_unet(size).eval(), build_reference_unet(size).eval()
    latent = torch.randn(1, 4, 8, 8)
    tokens = torch.randn(1, 3, imitative.config.cross_attention_dim)
    timestep = torch.tensor(10)
    unmasked_input = imitative_unet_input(latent, torch.zeros(1, 1, 8, 8), latent, torch.zeros(1, 4, 8, 8))
    with torch.no_grad():
        before = first_block_features(reference, latent, timestep, tokens)
        align_reference_unet(reference, imitative)
        after = first_block_features(reference, latent, timestep, tokens)
        target = first_block_features(imitative, unmasked_input, timestep, tokens)
    assert not torch.allclose(before, target, atol=1e-3)
    torch.testing.assert_close(after, target, atol=1e-5, rtol=1e-5)
    imitative_state = imitative.state_dict()
    for name, value in reference.state_dict().items():
        if name != "conv_in.weight":
            assert torch.equal(value, imitative_state[name]), name


def test_demo_f4_edits_with_4x_latents_and_reference_attention_at_16_and_below():
    import numpy as np

    from mimicbrush_cli.loading import build_random_pipeline
    from mimicbrush_cli.settings import EditSettings

    pipeline = build_random_pipeline("demo-f4")
    assert pipeline.vae_scale_factor == 4 and pipeline.resolution == 128
    assert pipeline.bank.num_slots > 0
    seen = []
    hooks = [block.attn1.register_forward_hook(lambda module, args, output: seen.append(output.shape[1]))
             for block in pipeline.imitative_unet.modules() if type(block).__name__ == "BasicTransformerBlock"]
    source = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    mask = np.zeros(source.shape[:2], bool)
    mask[20:60, 30:90] = True
    try:
        [[edited]] = pipeline(source, source[::-1], mask, EditSettings(steps=2))
    finally:
        for hook in hooks:
            hook.remove()
    assert edited.shape == source.shape and np.array_equal(edited[~mask][:10], source[~mask][:10])
    assert seen and max(seen) == 16 * 16  # no attention over the 32 × 32 latent grid
