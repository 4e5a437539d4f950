"""Using the pre-trained generator and discriminator together (after Clark et al. 2020, §2), by concept:

- :mod:`~electra.generation.pair`: the :class:`Pair` of networks on any backend, what each says about a text
  (generator probabilities, p(replaced), a sentence score) and replaced-token detection (:func:`detect`); the
  tokenizer's special-token roles (:func:`roles`) and how its pieces mark words (:func:`piece_style`: WordPiece's
  ``##``, SentencePiece's ``▁``);
- :mod:`~electra.generation.fill`: filling ``[MASK]``/``[MASK*]`` (our markers, for any tokenizer; its own mask
  token, e.g. ``<mask>``, works too) with the generator: top-k candidates, mask-predict infilling (Ghazvininejad
  et al. 2019), generation;
- :mod:`~electra.generation.correction`: detect and correct (:class:`Corrector`);
- :mod:`~electra.generation.augmentation`: SSMBA-style augmentation (Ng et al. 2020).

Every public name is importable from this package too (``from electra.generation import detect``).
"""

from __future__ import annotations

from electra.generation.augmentation import augment_file, augment_text, augmenter
from electra.generation.correction import (
    DEFAULT_MAX_NEW_P,
    DEFAULT_MIN_GENERATOR_PROB,
    DEFAULT_THRESHOLD,
    KINDS,
    Correction,
    Corrector,
    Edit,
    Word,
    apply_edits,
    correct,
    correct_lines,
    is_cjk,
    is_name,
    match_case,
    read_vocabulary,
    whole_tokens,
    words_of,
)
from electra.generation.fill import (
    CONFIDENCES,
    MARKER,
    MASK_ANY,
    Filled,
    encode_masked,
    fill_encoded,
    fill_mask,
    fill_text,
    generate,
    marker_pattern,
    mask_markers,
    mask_predict,
    parse_markers,
)
from electra.generation.pair import (
    MASK,
    METASPACE,
    Detection,
    Pair,
    PieceStyle,
    banned_ids,
    choose,
    decode_span,
    detect,
    detect_encoded,
    encode,
    fit,
    generator_probs,
    inner_tokens,
    load_pair,
    pair_from_model,
    piece_style,
    pieces_of,
    replaced_probs,
    roles,
    sentence_score,
    special_token_ids,
    token_spans,
    torch_runner,
)

__all__ = [
    "CONFIDENCES", "DEFAULT_MAX_NEW_P", "DEFAULT_MIN_GENERATOR_PROB", "DEFAULT_THRESHOLD", "KINDS", "MARKER", "MASK",
    "MASK_ANY", "METASPACE", "Correction", "Corrector", "Detection", "Edit", "Filled", "Pair", "PieceStyle", "Word",
    "apply_edits", "augment_file", "augment_text", "augmenter", "banned_ids", "choose", "correct", "correct_lines",
    "decode_span", "detect", "detect_encoded", "encode", "encode_masked", "fill_encoded", "fill_mask", "fill_text",
    "fit", "generate", "generator_probs", "inner_tokens", "is_cjk", "is_name", "load_pair", "marker_pattern",
    "mask_markers", "mask_predict", "match_case", "pair_from_model", "parse_markers", "piece_style", "pieces_of",
    "read_vocabulary", "replaced_probs", "roles", "sentence_score", "special_token_ids", "token_spans",
    "torch_runner", "whole_tokens", "words_of",
]
