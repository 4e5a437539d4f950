"""Using the pre-trained generator and discriminator together (after Clark et al. 2020, §2), by concept:

- :mod:`~electra.generation.pair`: the :class:`Pair` of networks on any backend, what each says about a text
  (generator probabilities, p(replaced), a sentence score) and replaced-token detection (:func:`detect`);
- :mod:`~electra.generation.fill`: filling ``[MASK]``/``[MASK*]`` with the generator: top-k candidates,
  mask-predict infilling (Ghazvininejad et al. 2019), generation;
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
    Correction,
    Corrector,
    Edit,
    Word,
    apply_edits,
    correct,
    correct_lines,
    is_name,
    match_case,
    read_vocabulary,
    words_of,
)
from electra.generation.fill import (
    CONFIDENCES,
    MARKER,
    MASK_ANY,
    Filled,
    fill_encoded,
    fill_mask,
    fill_text,
    generate,
    mask_predict,
    parse_markers,
)
from electra.generation.pair import (
    MASK,
    Detection,
    Pair,
    banned_ids,
    choose,
    decode_span,
    detect,
    detect_encoded,
    encode,
    generator_probs,
    load_pair,
    pair_from_model,
    pieces_of,
    replaced_probs,
    sentence_score,
    special_token_ids,
    torch_runner,
)

__all__ = [
    "CONFIDENCES", "DEFAULT_MAX_NEW_P", "DEFAULT_MIN_GENERATOR_PROB", "DEFAULT_THRESHOLD", "MARKER", "MASK",
    "MASK_ANY", "Correction", "Corrector", "Detection", "Edit", "Filled", "Pair", "Word", "apply_edits",
    "augment_file", "augment_text", "augmenter", "banned_ids", "choose", "correct", "correct_lines", "decode_span",
    "detect", "detect_encoded", "encode", "fill_encoded", "fill_mask", "fill_text", "generate", "generator_probs",
    "is_name", "load_pair", "mask_predict", "match_case", "pair_from_model", "parse_markers", "pieces_of",
    "read_vocabulary", "replaced_probs", "sentence_score", "special_token_ids", "torch_runner", "words_of",
]
