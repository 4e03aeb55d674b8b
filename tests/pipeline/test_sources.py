"""A diffusers-format Wan directory end to end: UMT5 text encoder + tokenizer (built offline), the
transformer, and AutoencoderKLWan, all tiny and random, saved with save_pretrained."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import vdrt

WORDS = ["a", "red", "circle", "bouncing", "blue", "square", "cat"]


def _tokenizer(path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="</s>")
    fast.save_pretrained(path)


@pytest.fixture(scope="module")
def wan_dir(tmp_path_factory):
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    root = tmp_path_factory.mktemp("wan_diffusers")
    torch.manual_seed(0)
    WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=16,
                          out_channels=16, text_dim=24, freq_dim=32, ffn_dim=48, num_layers=1,
                          rope_max_seq_len=64).save_pretrained(root / "transformer")
    AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1).save_pretrained(root / "vae")
    UMT5EncoderModel(UMT5Config(vocab_size=len(WORDS) + 3, d_model=24, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                                relative_attention_num_buckets=8)).save_pretrained(root / "text_encoder")
    _tokenizer(root / "tokenizer")
    (root / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline"}))
    return root


def test_umt5_embeddings_are_zero_past_the_prompt(wan_dir):
    from vdrt.pipeline.encoders import UMT5TextEncoder

    enc = UMT5TextEncoder(wan_dir, max_len=16)
    e = enc(["a red circle", "cat"])
    assert e.shape == (2, 16, 24)
    assert e[0, :4].abs().sum() > 0 and e[0, 4:].abs().sum() == 0  # 3 words + </s>
    assert e[1, :2].abs().sum() > 0 and e[1, 2:].abs().sum() == 0


def test_pipeline_from_a_diffusers_wan_directory(wan_dir):
    pipe = vdrt.Pipeline.from_pretrained(wan_dir, device="cpu", dtype=torch.float32)
    assert pipe.config.family == "wan" and pipe.config.text_dim == 24
    kw = dict(num_frames=5, height=32, width=32, num_steps=2, guidance=3.0, progress=False)
    a = pipe("a red circle bouncing", **kw)
    b = pipe("a blue square", **kw)
    assert a.frames.shape == (5, 32, 32, 3) and a.frames.dtype == np.uint8
    assert not np.array_equal(a.frames, b.frames)


def test_diffusers_vae_roundtrip_geometry(wan_dir):
    from vdrt.pipeline.codecs import WanVAECodec

    codec = WanVAECodec.from_directory(wan_dir / "vae", patch=2)
    assert codec.geometry.latent_shape(9, 32, 48) == (16, 3, 4, 6)
    z = codec.encode(torch.rand(3, 9, 32, 48) * 2 - 1)
    assert z.shape == (16, 3, 4, 6)
    assert codec.decode(z).shape == (3, 9, 32, 48)
