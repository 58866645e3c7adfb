import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from accelerate import init_empty_weights
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from mimicbrush_cli.models.build import build_reference_unet, build_imitative_unet, model_size
from mimicbrush_cli.models.reference_attention import (
    FeatureBank, ReferenceReaderProcessor, ReferenceWriterProcessor, attach_reference_attention,
    reference_attention_blocks, unused_reference_unet_parameters)

WIDTH, HEADS, TOKENS, REF_TOKENS = 16, 2, 6, 6


def make_attention(seed=0):
    torch.manual_seed(seed)
    attention = Attention(query_dim=WIDTH, heads=HEADS, dim_head=WIDTH // HEADS, out_bias=True)
    return attention.eval()


def explicit_attention(attention, h, keys_values, bias=0.0):
    """softmax(Q·Kᵀ/√d + bias)·V per head, written out with plain matmuls, then W_o."""
    d = WIDTH // HEADS
    q = attention.to_q(h).view(h.shape[0], -1, HEADS, d).transpose(1, 2)
    k = attention.to_k(keys_values).view(h.shape[0], -1, HEADS, d).transpose(1, 2)
    v = attention.to_v(keys_values).view(h.shape[0], -1, HEADS, d).transpose(1, 2)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d) + bias, dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(h.shape[0], -1, WIDTH)
    return attention.to_out[0](out)


@pytest.mark.parametrize("ratio", [0.5, 1.0, 0.25])
def test_reader_matches_explicit_concatenated_attention(ratio):
    attention = make_attention()
    torch.manual_seed(1)
    h = torch.randn(3, TOKENS, WIDTH)
    r = torch.randn(2, REF_TOKENS, WIDTH)
    bank = FeatureBank(num_slots=1, ratio=ratio)
    bank.write(0, r)
    bank.reference_index = torch.tensor([1, -1, 0])
    with torch.no_grad():
        output = ReferenceReaderProcessor(bank, 0)(attention, h)
        for row, ref_row in ((0, 1), (2, 0)):
            h_row = h[row:row + 1]
            a_ref = explicit_attention(attention, h_row, torch.cat([h_row, r[ref_row:ref_row + 1]], dim=1))
            a_self = explicit_attention(attention, h_row, h_row)
            torch.testing.assert_close(output[row:row + 1], ratio * a_ref + (1 - ratio) * a_self, atol=1e-5, rtol=1e-5)


def grid_offsets_squared(side):
    """Squared distances between the centres of a side x side grid's cells, in image sides, by loops."""
    centres = [((row + 0.5) / side, (col + 0.5) / side) for row in range(side) for col in range(side)]
    return torch.tensor([[(a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2 for b in centres] for a in centres])


def test_local_positions_add_a_gaussian_prior_on_the_offset_to_self_and_reference_keys():
    attention = make_attention()
    torch.manual_seed(5)
    tokens = 9  # a 3x3 grid, both images
    h, r = torch.randn(2, tokens, WIDTH), torch.randn(1, tokens, WIDTH)
    bank = FeatureBank(num_slots=1, ratio=0.5, positions="local")
    bank.write(0, r)
    bank.reference_index = torch.tensor([0, -1])
    prior = -grid_offsets_squared(3) / (2 * 0.1 ** 2)
    with torch.no_grad():
        output = ReferenceReaderProcessor(bank, 0)(attention, h)
        a_self = explicit_attention(attention, h, h, prior)
        a_ref = explicit_attention(attention, h[:1], torch.cat([h[:1], r], dim=1), torch.cat([prior, prior], dim=1))
    torch.testing.assert_close(output[1:], a_self[1:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(output[:1], 0.5 * a_ref + 0.5 * a_self[:1], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="square"):
        ReferenceReaderProcessor(bank, 0)(attention, torch.randn(1, 6, WIDTH))


def test_the_locality_width_is_the_banks_and_narrows_the_prior():
    attention = make_attention()
    torch.manual_seed(6)
    h, r = torch.randn(1, 9, WIDTH), torch.randn(1, 9, WIDTH)
    bank = FeatureBank(num_slots=1, ratio=0.5, positions="local", locality_width=0.05)
    bank.write(0, r)
    bank.reference_index = torch.tensor([0])
    prior = -grid_offsets_squared(3) / (2 * 0.05 ** 2)
    with torch.no_grad():
        output = ReferenceReaderProcessor(bank, 0)(attention, h)
        a_self = explicit_attention(attention, h, h, prior)
        a_ref = explicit_attention(attention, h, torch.cat([h, r], dim=1), torch.cat([prior, prior], dim=1))
    torch.testing.assert_close(output, 0.5 * a_ref + 0.5 * a_self, atol=1e-5, rtol=1e-5)


def test_an_edit_narrows_the_prior_for_itself_only(photos):
    from mimicbrush_cli.errors import MimicBrushError
    from mimicbrush_cli.loading import build_random_pipeline
    from mimicbrush_cli.pipeline import EditSettings

    pipeline = build_random_pipeline("tiny")
    source, reference, mask = photos
    fast = EditSettings(steps=2, scheduler="dpmpp-2m", reference_cache=True)
    with pytest.raises(MimicBrushError, match="reference-locality"):  # no prior to narrow (as released)
        pipeline(source, reference, mask, replace(fast, reference_locality=0.05))
    pipeline.set_reference_positions("local")
    trained = pipeline(source, reference, mask, fast)[0][0]
    assert np.array_equal(pipeline(source, reference, mask, replace(fast, reference_locality=0.1))[0][0], trained)
    narrow = pipeline(source, reference, mask, replace(fast, reference_locality=0.05))[0][0]
    assert not np.array_equal(narrow, trained)
    assert pipeline.bank.locality_width == 0.1  # back to the trained width: the next edit is as before
    assert np.array_equal(pipeline(source, reference, mask, fast)[0][0], trained)
    with pytest.raises(ValueError, match="reference_locality"):
        EditSettings(reference_locality=0.0)


def test_positions_are_saved_with_the_pipeline(tmp_path):
    from mimicbrush_cli.loading import build_random_pipeline, load_pipeline_folder

    pipeline = build_random_pipeline("tiny")
    assert pipeline.bank.positions == "none"
    pipeline.set_reference_positions("local")
    pipeline.save_pretrained(tmp_path / "model")
    assert load_pipeline_folder(tmp_path / "model").bank.positions == "local"
    with pytest.raises(ValueError, match="positions"):
        pipeline.set_reference_positions("rotary")


def test_uncond_rows_ignore_reference():
    attention = make_attention()
    torch.manual_seed(2)
    h = torch.randn(2, TOKENS, WIDTH)
    bank = FeatureBank(num_slots=1)
    bank.reference_index = torch.tensor([-1, 0])
    with torch.no_grad():
        outputs = []
        for seed in (3, 4):
            torch.manual_seed(seed)
            bank.write(0, torch.randn(1, REF_TOKENS, WIDTH))
            outputs.append(ReferenceReaderProcessor(bank, 0)(attention, h))
        plain = AttnProcessor2_0()(attention, h)
    torch.testing.assert_close(outputs[0][0], plain[0], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(outputs[1][0], plain[0], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(outputs[0][1], outputs[1][1]), "conditional row must depend on the reference"


def test_writer_records_its_input_and_attends_normally():
    attention = make_attention()
    bank = FeatureBank(num_slots=2)
    h = torch.randn(1, TOKENS, WIDTH)
    with torch.no_grad():
        output = ReferenceWriterProcessor(bank, 1)(attention, h)
        plain = AttnProcessor2_0()(attention, h)
    assert bank.features[1] is h
    torch.testing.assert_close(output, plain)


def test_released_pairing_is_ten_blocks_sorted_by_width():
    size = model_size("released")
    with init_empty_weights():
        reference_unet = build_reference_unet(size)
        imitative_unet = build_imitative_unet(size)
    names_and_widths = [(name, block.norm1.normalized_shape[0]) for name, block in reference_attention_blocks(reference_unet)]
    assert [width for _, width in names_and_widths] == [1280] * 4 + [640] * 3 + [320] * 3
    assert names_and_widths[0][0].startswith("mid_block")
    assert [name for name, _ in names_and_widths[1:4]] == [
        f"up_blocks.1.attentions.{i}.transformer_blocks.0" for i in range(3)]
    bank = attach_reference_attention(reference_unet, imitative_unet)
    assert bank.num_slots == 10
    writer = reference_unet.up_blocks[3].attentions[2].transformer_blocks[0].attn1.processor
    assert isinstance(writer, ReferenceWriterProcessor) and not writer.output_is_used
    reader = imitative_unet.mid_block.attentions[0].transformer_blocks[0].attn1.processor
    assert isinstance(reader, ReferenceReaderProcessor) and reader.slot == 0
    down = imitative_unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.processor
    assert not isinstance(down, ReferenceReaderProcessor)


def test_unused_reference_tail_matches_released_omissions():
    with init_empty_weights():
        reference_unet = build_reference_unet(model_size("released"))
    unused = set(unused_reference_unet_parameters(reference_unet))
    last = "up_blocks.3.attentions.2.transformer_blocks.0"
    assert {"conv_out.weight", "conv_norm_out.weight", "up_blocks.3.attentions.2.proj_out.weight",
            f"{last}.attn1.to_q.weight", f"{last}.ff.net.2.weight", f"{last}.norm3.weight"} <= unused
    assert f"{last}.norm1.weight" not in unused
    assert "up_blocks.3.attentions.2.proj_in.weight" not in unused
    assert "up_blocks.3.attentions.1.proj_out.weight" not in unused


def test_a_layout_in_python_ints_reads_as_the_same_index_searched():
    attention = make_attention()
    torch.manual_seed(6)
    h, r = torch.randn(4, TOKENS, WIDTH), torch.randn(2, REF_TOKENS, WIDTH)
    index = torch.tensor([-1, -1, 1, 0])
    bank = FeatureBank(num_slots=1)
    bank.write(0, r)
    with torch.no_grad():
        bank.reference_index = index
        searched = ReferenceReaderProcessor(bank, 0)(attention, h)
        bank.read_from_row(2, index)
        sliced = ReferenceReaderProcessor(bank, 0)(attention, h)
        bank.read_from_row(4, torch.full((4,), -1))
        none_read = ReferenceReaderProcessor(bank, 0)(attention, h)
        plain = AttnProcessor2_0()(attention, h)
    assert torch.equal(sliced, searched)
    assert torch.equal(none_read, plain)
    bank.reference_index = index  # a new index of any layout drops the stated one
    assert bank.first_reading_row is None


@pytest.mark.slow  # torch.compile of both U-Nets
def test_the_unets_with_reference_attention_compile_as_one_graph_each(tiny_pipeline):
    torch._dynamo.reset()
    pipeline, latent_size = tiny_pipeline, tiny_pipeline.resolution // 8
    torch.manual_seed(0)
    tokens = torch.randn(2, 5, pipeline.imitative_unet.config.cross_attention_dim)
    timesteps = torch.tensor([901, 801])
    with torch.no_grad():
        reference = torch._dynamo.explain(pipeline.reference_unet)(
            torch.randn(2, 4, latent_size, latent_size), timesteps, encoder_hidden_states=tokens)
        pipeline.bank.read_from_row(1, torch.tensor([-1, 1]))  # CFG: the conditional row reads bank row 1
        imitative = torch._dynamo.explain(pipeline.imitative_unet)(
            torch.randn(2, 13, latent_size, latent_size), timesteps[1], encoder_hidden_states=tokens)
    pipeline.bank.clear()
    pipeline.bank.reference_index = None
    assert (reference.graph_break_count, imitative.graph_break_count) == (0, 0), (
        [str(reason) for reason in reference.break_reasons + imitative.break_reasons])


# ------------------------------------------------------------------ a reference hint (a region of the reference)

def cells_inside(box, pixels, side):
    """The tokens of a side x side grid over a pixels x pixels image whose cell overlaps `box` (top, left,
    bottom, right; exclusive), by looping over the cells with their real-valued edges."""
    top, left, bottom, right = box
    cell = pixels / side
    return torch.tensor([row * cell < bottom and (row + 1) * cell > top and col * cell < right and (col + 1) * cell > left
                         for row in range(side) for col in range(side)])


def box_region(box, pixels=8):
    region = torch.zeros(pixels, pixels, dtype=torch.bool)
    region[box[0]:box[2], box[1]:box[3]] = True
    return region


@pytest.mark.parametrize("side", [1, 2, 3, 4, 5, 8, 16, 32, 64])
def test_a_box_region_marks_every_key_whose_cell_it_touches(side):
    from mimicbrush_cli.models.reference_attention import region_tokens

    box = (5, 18, 41, 30)  # rows 5..40, cols 18..29 of a 64-pixel square
    inside = region_tokens(box_region(box, 64)[None], side * side)
    assert inside.shape == (1, side * side)
    assert inside[0].tolist() == cells_inside(box, 64, side).tolist()


@pytest.mark.parametrize("positions", ["none", "local"])
@pytest.mark.parametrize("strength", [None, 3.0])
def test_a_hint_biases_only_the_reference_keys_outside_it(positions, strength):
    """−inf: attention over the own keys and the inside reference keys alone; S: those outside get −S."""
    attention = make_attention()
    torch.manual_seed(9)
    tokens = 16  # 4x4 grids, both images
    h, r = torch.randn(3, tokens, WIDTH), torch.randn(2, tokens, WIDTH)
    box = (0, 2, 4, 8)  # the right half of an 8-pixel reference square, top half rows
    regions = torch.stack([box_region(box), torch.ones(8, 8, dtype=torch.bool), box_region(box)])
    bank = FeatureBank(num_slots=1, ratio=0.5, positions=positions)
    bank.write(0, r)
    bank.reference_index = torch.tensor([1, -1, 0])
    bank.reference_regions = regions
    bank.hint_strength = strength
    inside = cells_inside(box, 8, 4)
    assert 0 < int(inside.sum()) < tokens
    prior = -grid_offsets_squared(4) / (2 * 0.1 ** 2) if positions == "local" else torch.zeros(tokens, tokens)
    with torch.no_grad():
        output = ReferenceReaderProcessor(bank, 0)(attention, h)
        for row, ref_row in ((0, 1), (2, 0)):
            h_row = h[row:row + 1]
            a_self = explicit_attention(attention, h_row, h_row, prior)
            if strength is None:
                keys = torch.cat([h_row, r[ref_row:ref_row + 1, inside]], dim=1)
                bias = torch.cat([prior, prior[:, inside]], dim=1)
            else:
                keys = torch.cat([h_row, r[ref_row:ref_row + 1]], dim=1)
                bias = torch.cat([prior, prior - strength * (~inside).float()], dim=1)
            a_ref = explicit_attention(attention, h_row, keys, bias)
            torch.testing.assert_close(output[row:row + 1], 0.5 * a_ref + 0.5 * a_self, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(output[1:2], explicit_attention(attention, h[1:2], h[1:2], prior), atol=1e-5, rtol=1e-5)
