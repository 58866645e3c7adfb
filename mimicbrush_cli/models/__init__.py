"""The MimicBrush model: imitative + reference U-Nets joined by reference attention, a CLIP image
encoder with its projection, Depth Anything with the depth guider, named sizes and checkpoints.

- `unets`: the 13-channel imitative U-Net input and the SD-inpainting → imitative widening.
- `reference_attention`: the feature bank and the writer/reader attention processors (paper Eq. 1).
- `image_encoder`: CLIP penultimate tokens → cross-attention tokens.
- `depth`: Depth Anything preprocessing and the depth guider.
- `build`: named sizes (`released`, `tiny`, `demo`) with random weights.
- `checkpoints`: the released layout and conversion to our safetensors folders.
"""
