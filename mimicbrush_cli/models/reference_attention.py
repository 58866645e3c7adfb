"""Reference attention: the reference U-Net's features join the imitative U-Net's self-attention.

Implemented as diffusers attention processors that share a `FeatureBank` (no block `forward` is
patched). In every `BasicTransformerBlock` of the mid and up blocks:

- the reference U-Net's block *writes* `r = norm1(x_ref)`, the input of its self-attention;
- the imitative U-Net's block, with `h = norm1(x)` and its own W_q, W_k, W_v, W_o, computes

      A_ref  = softmax(Q_h · cat(K_h, K_r)^T / sqrt(d)) · cat(V_h, V_r)      (paper, Eq. 1)
      A_self = softmax(Q_h · K_h^T / sqrt(d)) · V_h

  and returns `ratio·A_ref + (1 − ratio)·A_self` for rows that use the reference and `A_self` for
  rows that don't (the unconditional CFG rows, and rows dropped in training). The released model
  uses ratio 0.5; the paper's formulation is ratio 1.

Writers and readers are paired in order after a stable sort by feature width, descending, with the
mid block listed before the up blocks, exactly as the released code pairs them.

Positions (`positions="local"`, off in the released model): every self-attention score of a reader
block, to its own keys and to the reference's, gets the additive prior −|offset|²/(2·0.1²), offset = the
distance between the query's and the key's places in their images, in image sides. SD-1.5's deep U-Nets
know where a token is from their convolutions' padding; a small U-Net trained from nothing does not, and
then every token of a blacked-out region asks the same question and receives the same average of the
reference: a flat patch. Measured on a copy task only the reference can solve (tests/training/
test_learning.py, 600 steps): without positions the attention stays unused; with this prior the model
starts to copy from the reference place that matches its own. The width is `FeatureBank.locality_width`:
models train with `LOCALITY_WIDTH`, and an edit may narrow it (`EditSettings.reference_locality`), which
makes each masked token take more from the reference's same place.

A reference region (a hint: the part of the reference to copy from; `FeatureBank.reference_regions`, one
(R, R) mask per imitative row at working resolution) adds a bias to the reference keys outside it: −inf
(left out) or −`hint_strength`. It is brought to each block's key grid by `region_tokens` (a token is inside
if any pixel of its cell is). The block's own keys are never biased; with a positional prior both add.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch import nn

RELEASED_REFERENCE_RATIO = 0.5
POSITION_ENCODINGS = ("none", "local")
LOCALITY_WIDTH = 0.1  # "local": std of the Gaussian prior on the query-to-key offset, in image sides (as trained)


class FeatureBank:
    """Holds the reference features of one denoising step, one slot per paired block.

    `reference_index` maps each row of the imitative batch to a row of the written features, or
    to -1 for a row that ignores the reference. It lets one reference row serve several imitative
    rows (several samples of one edit) and keeps the unconditional CFG rows reference-free without
    running the reference U-Net for them. `read_from_row` states the same map with its layout in
    Python ints (the rows that read come last), which `torch.compile` traces without a graph break.
    """

    def __init__(self, num_slots: int, ratio: float = RELEASED_REFERENCE_RATIO, positions: str = "none",
                 locality_width: float = LOCALITY_WIDTH) -> None:
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"reference attention ratio must be in [0, 1], got {ratio}")
        if positions not in POSITION_ENCODINGS:
            raise ValueError(f"reference attention positions must be one of {POSITION_ENCODINGS}, got {positions!r}")
        self.num_slots = num_slots
        self.ratio = ratio
        self.positions = positions
        self.locality_width = locality_width  # the "local" prior's std, in image sides
        self.features: list[torch.Tensor | None] = [None] * num_slots
        self.reference_index = None
        self.writing_enabled = True
        # A hint per imitative row, aligned with `reference_index`: (B, R, R) bool, True = a reference pixel to
        # copy from; None: no row has one. `hint_strength` None: keys outside are left out; S: they get −S.
        self.reference_regions: torch.Tensor | None = None
        self.hint_strength: float | None = None

    @property
    def reference_index(self) -> torch.Tensor | None:
        return self._reference_index  # (B_imitative,) long

    @reference_index.setter
    def reference_index(self, index: torch.Tensor | None) -> None:
        self._reference_index = index
        self.first_reading_row: int | None = None  # a map of any layout: the readers search it

    def read_from_row(self, first_row: int, reference_index: torch.Tensor) -> None:
        """Rows `first_row:` of the imitative batch read reference rows `reference_index[first_row:]` (all
        >= 0) and the rows before them read nothing (`reference_index` -1), as the pipeline lays out CFG:
        unconditional rows first. `first_row` = the batch size: no row reads."""
        self.reference_index = reference_index
        self.first_reading_row = first_row

    def clear(self) -> None:
        self.features = [None] * self.num_slots

    def write(self, slot: int, hidden_states: torch.Tensor) -> None:
        if self.writing_enabled:
            self.features[slot] = hidden_states

    def read(self, slot: int) -> torch.Tensor:
        features = self.features[slot]
        if features is None:
            raise RuntimeError(f"reference feature slot {slot} is empty: run the reference U-Net first")
        return features

    @property
    def is_full(self) -> bool:
        return all(features is not None for features in self.features)


def _split_heads(tensor: torch.Tensor, heads: int) -> torch.Tensor:
    batch, tokens, width = tensor.shape  # (B, N, C)
    return tensor.view(batch, tokens, heads, width // heads).transpose(1, 2)  # (B, heads, N, d)


def _merge_heads(tensor: torch.Tensor) -> torch.Tensor:
    batch, heads, tokens, head_dim = tensor.shape
    return tensor.transpose(1, 2).reshape(batch, tokens, heads * head_dim)


def locality_bias(query_tokens: int, key_tokens: int, device: torch.device, dtype: torch.dtype,
                  width: float = LOCALITY_WIDTH) -> torch.Tensor:
    """(N, N_r) additive attention bias −|offset|² / (2·width²): a prior for the reference key at the
    query's own place in the image (both square grids; offsets and width in fractions of the image side)."""
    def centres(tokens: int) -> torch.Tensor:
        side = math.isqrt(tokens)
        if side * side != tokens:
            raise ValueError(f"a locality prior needs a square token grid, got {tokens} tokens")
        line = (torch.arange(side, device=device, dtype=torch.float32) + 0.5) / side
        return torch.stack(torch.meshgrid(line, line, indexing="ij"), dim=-1).reshape(-1, 2)  # (N, 2)

    squared = torch.cdist(centres(query_tokens), centres(key_tokens)) ** 2
    return (-squared / (2 * width ** 2)).to(dtype)


def region_tokens(regions: torch.Tensor, key_tokens: int) -> torch.Tensor:
    """(B, N_r) bool: which keys of a square N_r-token grid lie in (B, R, R) bool regions; a key is inside if any
    pixel of its cell is (cells of non-dividing sizes overlap by a pixel, as adaptive pooling cuts them)."""
    side = math.isqrt(key_tokens)
    if side * side != key_tokens:
        raise ValueError(f"a reference region needs a square key grid, got {key_tokens} tokens")
    pooled = F.adaptive_max_pool2d(regions[:, None].float(), side)  # (B, 1, side, side)
    return pooled.flatten(1) > 0


def hint_bias(regions: torch.Tensor, own_tokens: int, key_tokens: int, strength: float | None,
              dtype: torch.dtype) -> torch.Tensor:
    """(B, 1, 1, N + N_r) additive bias: 0 on the N own keys and the reference keys inside the regions, −inf
    (`strength` None) or −strength on those outside."""
    inside = region_tokens(regions, key_tokens)  # (B, N_r)
    outside = torch.tensor(-math.inf if strength is None else -float(strength), device=regions.device, dtype=dtype)
    reference = torch.where(inside, torch.zeros((), device=regions.device, dtype=dtype), outside)
    own = torch.zeros(regions.shape[0], own_tokens, device=regions.device, dtype=dtype)
    return torch.cat([own, reference], dim=1)[:, None, None]


class ReferenceWriterProcessor:
    """Self-attention of a reference U-Net block that records its input, `norm1(x_ref)`."""

    def __init__(self, bank: FeatureBank, slot: int, output_is_used: bool = True) -> None:
        self.bank = bank
        self.slot = slot
        self.output_is_used = output_is_used
        self._attention = AttnProcessor2_0()

    def __call__(self, attn: Attention, hidden_states: torch.Tensor,
                 encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 **kwargs) -> torch.Tensor:
        self.bank.write(self.slot, hidden_states)
        if not self.output_is_used:
            # The last writer's output only feeds the reference U-Net's unused tail (the rest of
            # that block, conv_norm_out, conv_out), which the released weights do not even carry.
            return torch.zeros_like(hidden_states)
        return self._attention(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


class ReferenceReaderProcessor:
    """Self-attention of an imitative U-Net block that also attends to the reference features."""

    def __init__(self, bank: FeatureBank, slot: int) -> None:
        self.bank = bank
        self.slot = slot

    def __call__(self, attn: Attention, hidden_states: torch.Tensor,
                 encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 **kwargs) -> torch.Tensor:
        if encoder_hidden_states is not None or attention_mask is not None or attn.group_norm is not None:
            raise ValueError("reference attention applies to plain self-attention blocks only")
        hidden_states_h = hidden_states  # (B, N, C) = norm1(x)
        query = _split_heads(attn.to_q(hidden_states_h), attn.heads)
        key = _split_heads(attn.to_k(hidden_states_h), attn.heads)
        value = _split_heads(attn.to_v(hidden_states_h), attn.heads)
        local = self.bank.positions == "local"
        tokens = query.shape[2]
        width = self.bank.locality_width
        self_bias = locality_bias(tokens, tokens, query.device, query.dtype, width) if local else None  # (N, N)
        attended = F.scaled_dot_product_attention(query, key, value, attn_mask=self_bias, scale=attn.scale)  # A_self, (B, heads, N, d)

        reference_index, first = self.bank.reference_index, self.bank.first_reading_row
        regions = self.bank.reference_regions
        if first is not None:
            # The layout in Python ints: torch.compile specialises on `first` and traces one graph.
            if first < attended.shape[0]:
                blended = self._attend_with_reference(attn, query[first:], key[first:], value[first:],
                                                      attended[first:], reference_index[first:], self_bias,
                                                      None if regions is None else regions[first:])
                attended = torch.cat([attended[:first], blended])
        elif reference_index is not None and bool((reference_index >= 0).any()):
            rows = torch.nonzero(reference_index >= 0).squeeze(1)  # (R,)
            blended = self._attend_with_reference(attn, query[rows], key[rows], value[rows], attended[rows],
                                                  reference_index[rows], self_bias,
                                                  None if regions is None else regions[rows])
            attended = attended.index_copy(0, rows, blended)

        output = attn.to_out[1](attn.to_out[0](_merge_heads(attended)))
        if attn.residual_connection:
            output = output + hidden_states
        return output / attn.rescale_output_factor

    def _attend_with_reference(self, attn: Attention, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                               attended: torch.Tensor, reference_rows: torch.Tensor,
                               self_bias: torch.Tensor | None, regions: torch.Tensor | None = None) -> torch.Tensor:
        """ratio·A_ref + (1 − ratio)·A_self for R rows that read the reference: their (R, heads, N, d) query,
        key, value and A_self, the bank rows (R,) they read, and their hints (R, R_px, R_px) or None."""
        reference = self.bank.read(self.slot)[reference_rows].to(query.dtype)  # (R, N_r, C)
        key_r = _split_heads(attn.to_k(reference), attn.heads)  # (R, heads, N_r, d)
        key_ref = torch.cat([key, key_r], dim=2)  # (R, heads, N+N_r, d)
        value_ref = torch.cat([value, _split_heads(attn.to_v(reference), attn.heads)], dim=2)
        bias = None
        if self_bias is not None:
            tokens = query.shape[2]
            bias = torch.cat([self_bias, locality_bias(tokens, key_r.shape[2], query.device, query.dtype,
                                                       self.bank.locality_width)], dim=1)  # (N, N+N_r)
        if regions is not None:
            hint = hint_bias(regions, query.shape[2], key_r.shape[2], self.bank.hint_strength, query.dtype)
            bias = hint if bias is None else bias + hint  # (R, 1, 1 or N, N+N_r)
        with_reference = F.scaled_dot_product_attention(query, key_ref, value_ref, attn_mask=bias, scale=attn.scale)
        ratio = self.bank.ratio
        return with_reference if ratio == 1.0 else ratio * with_reference + (1.0 - ratio) * attended


def _blocks_in_forward_order(unet: nn.Module) -> list[tuple[str, BasicTransformerBlock]]:
    """The mid block's transformer blocks, then the up blocks', in the order the forward pass runs them."""
    blocks: list[tuple[str, BasicTransformerBlock]] = []
    for prefix, container in (("mid_block", unet.mid_block), ("up_blocks", unet.up_blocks)):
        if container is None:
            continue
        blocks.extend((f"{prefix}.{name}", module) for name, module in container.named_modules()
                      if isinstance(module, BasicTransformerBlock))
    return blocks


def reference_attention_blocks(unet: nn.Module) -> list[tuple[str, BasicTransformerBlock]]:
    """The mid and up transformer blocks of a U-Net in the released pairing order: forward order,
    then a stable sort by feature width, widest first."""
    return sorted(_blocks_in_forward_order(unet), key=lambda item: -item[1].norm1.normalized_shape[0])


def attach_reference_attention(reference_unet: nn.Module, imitative_unet: nn.Module,
                               ratio: float = RELEASED_REFERENCE_RATIO, positions: str = "none") -> FeatureBank:
    """Install writer processors on the reference U-Net and reader processors on the imitative one."""
    writers = reference_attention_blocks(reference_unet)
    readers = reference_attention_blocks(imitative_unet)
    if len(writers) != len(readers):
        raise ValueError(f"reference U-Net has {len(writers)} mid/up transformer blocks, "
                         f"imitative U-Net has {len(readers)}")
    bank = FeatureBank(num_slots=len(writers), ratio=ratio, positions=positions)
    # The last writer the forward pass reaches is the block whose output nothing reads.
    last_writer_name = _blocks_in_forward_order(reference_unet)[-1][0]
    for slot, ((writer_name, writer), (reader_name, reader)) in enumerate(zip(writers, readers)):
        if writer.norm1.normalized_shape != reader.norm1.normalized_shape:
            raise ValueError(f"cannot pair {writer_name} with {reader_name}: feature widths differ")
        writer.attn1.set_processor(ReferenceWriterProcessor(bank, slot, output_is_used=writer_name != last_writer_name))
        reader.attn1.set_processor(ReferenceReaderProcessor(bank, slot))
    return bank


def unused_reference_unet_parameters(reference_unet: nn.Module) -> list[str]:
    """Parameter names of the reference U-Net that never influence the written features.

    Everything after `norm1` of the last writer block, plus `conv_norm_out`/`conv_out`: the released
    weights omit them, and training must freeze them (no gradient ever reaches them).
    """
    name = _blocks_in_forward_order(reference_unet)[-1][0]
    attention_prefix = name.rsplit(".transformer_blocks.", 1)[0]  # e.g. up_blocks.3.attentions.2
    names = []
    for parameter_name, _ in reference_unet.named_parameters():
        in_last_block = parameter_name.startswith(f"{name}.") and not parameter_name.startswith(f"{name}.norm1.")
        later_in_attention = (parameter_name.startswith(f"{attention_prefix}.") and not parameter_name.startswith(f"{name}.")
                              and not parameter_name.startswith(f"{attention_prefix}.norm.")
                              and not parameter_name.startswith(f"{attention_prefix}.proj_in."))
        tail = parameter_name.startswith(("conv_norm_out.", "conv_out."))
        if in_last_block or later_in_attention or tail:
            names.append(parameter_name)
    return names
