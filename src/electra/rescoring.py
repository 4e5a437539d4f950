"""Zero-shot rescoring of candidate lists with the pair's sentence scores (:mod:`electra.scoring`).

Each candidate ``k`` of a list gets ``total_k = prior_k + sum_s lambda_s * model_s,k + beta * length_k`` and
the list's choice is the candidate with the highest total, ties broken toward the lowest index (the
recogniser's better rank: HyPoradise pads short lists with copies). The prior is the recogniser's score when
the file has one (WSJ ``score``, ATIS ``am_score``), else a rank prior ``-rank``; for MT, where candidates
come from systems in no particular order, the rank is that of the system on the tuning data. ``length`` is
the candidate's number of words. With every lambda and beta at 0 the 1-best is returned.

lambda and beta are tuned on dev lists by grid search minimising the mean cost of the choice (ASR: word
edits / reference words = corpus WER; MT: negative sentence-BLEU; multiple choice: 1 - accuracy). Among
settings of equal cost the one nearest to 0 wins, so a list set on which the model does not help keeps the
1-best. Without a dev file, :func:`cross_validate` tunes on k-1 contiguous folds and applies to the k-th.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from electra.data import ranking as R
from electra.data.ranking import RankItem
from electra.errors import ElectraError
from electra.files import write_text_atomic
from electra.metrics.nbest import choice_wer, compositional_oracle_wer, edit_matrix, oracle_choice
from electra.metrics.ranking import mutual_submission, ranking_metrics
from electra.metrics.text import bleu, chrf, sentence_bleu, sentence_chrf
from electra.scoring import PAIR_SCORERS, SCORERS, SentenceScore
from electra.scoring import Scorer as PairScorer
from electra.tasks.ranking import RANKING_TASKS, list_scores
from electra.tasks.registry import RANKING, family_of_run
from electra.tasks.runner import BEST_DIR, TASK_FILE, check_tokenizer_fits, load_task_model, run_tokenizer_dir
from electra.tokenization import encode_candidates, load_tokenizer, special_tokens

LAMBDAS = (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
MIN_GAIN = 0.01  # relative improvement over the 1-best, on the tuning lists, needed to leave it
BETAS = (0.0, 0.001, -0.001, 0.003, -0.003, 0.01, -0.01, 0.03, -0.03, 0.1, -0.1, 0.3, -0.3, 1.0, -1.0, 3.0, -3.0)


@dataclass
class Features:
    """Padded (items, max candidates) arrays: prior, each scorer's sentence score, length, and validity."""

    prior: np.ndarray
    model: dict[str, np.ndarray]
    length: np.ndarray
    valid: np.ndarray
    prior_kind: str = "rank"  # "given" | "rank" | "system"

    def subset(self, rows: np.ndarray) -> Features:
        return Features(self.prior[rows], {k: v[rows] for k, v in self.model.items()}, self.length[rows],
                        self.valid[rows], self.prior_kind)


@dataclass
class Params:
    lambdas: dict[str, float] = field(default_factory=dict)
    beta: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"lambda": self.lambdas, "beta": self.beta}


def pad(rows: Sequence[Sequence[float]], fill: float = 0.0) -> np.ndarray:
    width = max(len(r) for r in rows)
    out = np.full((len(rows), width), fill, dtype=np.float64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def model_scores(scorer: Any, items: Sequence[RankItem], methods: Sequence[str], use_context: bool = True
                 ) -> dict[str, list[list[float]]]:
    """Each method's sentence score of every candidate; each distinct (context, candidate) is scored once."""
    out = {}
    for m in methods:
        with_context = use_context or m in PAIR_SCORERS  # similarity compares a candidate with its context
        keys: dict[tuple[str | None, str], int] = {}
        for it in items:
            for c in it.candidates:
                keys.setdefault((it.context if with_context else None, c), len(keys))
        texts = [k[1] for k in keys]
        contexts = [k[0] for k in keys] if with_context and any(k[0] is not None for k in keys) else None
        flat = [s.score for s in scorer.score(m, texts, contexts)]
        out[m] = [[flat[keys[(it.context if with_context else None, c)]] for c in it.candidates] for it in items]
    return out


def build_features(items: Sequence[RankItem], scores: dict[str, list[list[float]]],
                   system_rank: Sequence[int] | None = None) -> Features:
    """Features of the lists; ``system_rank[k]``: the rank of candidate column k's system (MT)."""
    valid = pad([[1.0] * len(it.candidates) for it in items]).astype(bool)
    if system_rank is not None:
        prior, kind = pad([[-float(system_rank[k]) for k in range(len(it.candidates))] for it in items]), "system"
    elif all(it.prior is not None for it in items):
        prior, kind = pad([it.prior for it in items]), "given"  # type: ignore[misc]
    else:
        prior, kind = pad([[-float(k) for k in range(len(it.candidates))] for it in items]), "rank"
    length = pad([[float(len(c.split())) for c in it.candidates] for it in items])
    return Features(prior, {m: pad(v) for m, v in scores.items()}, length, valid, kind)


def totals(f: Features, p: Params) -> np.ndarray:
    t = f.prior + p.beta * f.length
    for m, lam in p.lambdas.items():
        if lam:
            t = t + lam * f.model[m]
    return np.where(f.valid, t, -np.inf)


def choose(f: Features, p: Params) -> np.ndarray:
    """The index of the best candidate per list (``argmax`` keeps the first of equal totals)."""
    return totals(f, p).argmax(1)


def rankings(f: Features, p: Params) -> list[list[int]]:
    """Full rankings, best first, ties toward the lower index; padding excluded."""
    t = totals(f, p)
    out = []
    for row, ok in zip(t, f.valid):
        n = int(ok.sum())
        out.append(sorted(range(n), key=lambda i: (-row[i], i)))
    return out


def mean_cost(f: Features, p: Params, costs: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Cost of the choices: ``sum(costs[i, choice_i]) / sum(weights)`` (weights: reference words, or 1 each)."""
    c = costs[np.arange(len(costs)), choose(f, p)]
    return float(c.sum() / (weights.sum() if weights is not None else len(c)))


def grid_search(f: Features, costs: np.ndarray, weights: np.ndarray | None = None,
                lambdas: Sequence[float] = LAMBDAS, betas: Sequence[float] = BETAS,
                min_gain: float = MIN_GAIN) -> tuple[Params, float]:
    """The (lambda per scorer, beta) of lowest mean cost; on equal cost the setting nearest to zero. A setting
    other than all-zero (the 1-best) is taken only if it beats the 1-best's cost by ``min_gain`` (relative):
    gains smaller than that on small tuning sets were measured not to carry over (HyPoradise, 5-fold)."""
    methods = list(f.model)
    grid = []
    for lams in itertools.product(lambdas, repeat=len(methods)):
        for b in betas:
            grid.append(Params(dict(zip(methods, lams)), b))
    grid.sort(key=lambda p: (sum(abs(v) for v in p.lambdas.values()), abs(p.beta)))
    zero, zero_cost = grid[0], mean_cost(f, grid[0], costs, weights)
    best, best_cost = zero, zero_cost
    for p in grid[1:]:
        c = mean_cost(f, p, costs, weights)
        if c < best_cost - 1e-12:
            best, best_cost = p, c
    if zero_cost - best_cost < min_gain * abs(zero_cost):
        return zero, zero_cost
    return best, best_cost


def folds(n: int, k: int) -> list[np.ndarray]:
    """``k`` contiguous folds of ``range(n)`` (contiguous: neighbouring segments of a document stay together)."""
    if k < 2 or k > n:
        raise ElectraError(f"--folds {k}: needs 2 <= k <= the number of lists ({n})")
    return [a for a in np.array_split(np.arange(n), k)]


def cross_validate(f: Features, costs: np.ndarray, weights: np.ndarray | None, k: int,
                   make_features: Callable[[np.ndarray, np.ndarray], Features] | None = None,
                   ) -> tuple[np.ndarray, list[list[int]], list[Params]]:
    """Tune on k-1 folds, choose on the held-out one; returns the choices, rankings and each fold's params.
    ``make_features(tune_rows, apply_rows)`` rebuilds features whose prior depends on the tuning rows (MT)."""
    n = len(costs)
    choice = np.zeros(n, dtype=np.int64)
    ranks: list[list[int]] = [[] for _ in range(n)]
    params = []
    for held in folds(n, k):
        tune = np.setdiff1d(np.arange(n), held)
        ft, fa = (make_features(tune, tune), make_features(tune, held)) if make_features else (f.subset(tune),
                                                                                              f.subset(held))
        p, _ = grid_search(ft, costs[tune], None if weights is None else weights[tune])
        params.append(p)
        choice[held] = choose(fa, p)
        for i, r in zip(held, rankings(fa, p)):
            ranks[i] = r
    return choice, ranks, params


# ---- consensus (minimum Bayes risk) baselines -------------------------------------------------------------
def mbr_choice(items: Sequence[RankItem], utility: str = "chrf") -> list[int]:
    """The candidate most similar on average to the others (MBR with the list as evidence): ``chrf``
    (sacrebleu's sentence chrF) or ``edit`` (negative word-level Levenshtein distance, rapidfuzz)."""
    out = []
    for it in items:
        c = it.candidates
        if len(c) == 1:
            out.append(0)
            continue
        if utility == "chrf":
            u = np.array([[sentence_chrf(a, [b]) if i != j else 0.0 for j, b in enumerate(c)]
                          for i, a in enumerate(c)])
        elif utility == "edit":
            from rapidfuzz.distance import Levenshtein

            words = [s.split() for s in c]
            u = -np.array([[Levenshtein.distance(a, b) for b in words] for a in words], dtype=np.float64)
        else:
            raise ElectraError(f"MBR utility {utility!r}: expected chrf or edit")
        out.append(int(u.sum(1).argmax()))
    return out


# ---- the three applications --------------------------------------------------------------------------------
@dataclass
class Rescored:
    """The choice and full ranking of each list, the metrics (when references exist) and the chosen params."""

    choice: list[int]
    rankings: list[list[int]]
    metrics: dict[str, Any]
    params: list[Params]


def _tuned(f: Features, costs: np.ndarray, weights: np.ndarray | None, dev: tuple[Features, np.ndarray,
           np.ndarray | None] | None, params: Params | None, k: int, what: str,
           make_features: Callable[[np.ndarray, np.ndarray], Features] | None = None
           ) -> tuple[np.ndarray, list[list[int]], list[Params], str]:
    if params is not None:
        return choose(f, params), rankings(f, params), [params], "given"
    if dev is not None:
        p, _ = grid_search(*dev)
        return choose(f, p), rankings(f, p), [p], "dev"
    if costs is None:
        raise ElectraError(f"{what}: without references, give --dev FILE (to tune lambda and beta) or --lambda")
    c, r, ps = cross_validate(f, costs, weights, k, make_features)
    return c, r, ps, f"{k}-fold"


def _param_summary(ps: list[Params]) -> dict[str, Any]:
    if len(ps) == 1:
        return {"lambda": ps[0].lambdas, "beta": ps[0].beta}
    return {"lambda": [p.lambdas for p in ps], "beta": [p.beta for p in ps]}


def rescore_asr(scorer: Any, items: Sequence[RankItem], methods: Sequence[str], dev: Sequence[RankItem] | None = None,
                params: Params | None = None, k: int = 5) -> Rescored:
    """Rescore HyPoradise-style n-best lists; metrics: ``wer``, ``one_best_wer``, ``oracle_wer``,
    ``compositional_oracle_wer`` (when every item has a reference)."""
    f = build_features(items, model_scores(scorer, items, methods))
    has_refs = all(it.references for it in items)
    edits = words = None
    if has_refs:
        e, w = edit_matrix([it.references[0] for it in items], [it.candidates for it in items])
        edits, words = e, w
    dev_t = None
    if dev is not None and params is None:
        if not all(it.references for it in dev):
            raise ElectraError("--dev: every dev list needs its reference (\"output\") to tune on")
        fd = build_features(dev, model_scores(scorer, dev, methods))
        if fd.prior_kind != f.prior_kind:
            raise ElectraError(f"--dev: its prior is {fd.prior_kind!r} but the input's is {f.prior_kind!r} (one "
                               "file has recogniser scores, the other not)")
        ed, wd = edit_matrix([it.references[0] for it in dev], [it.candidates for it in dev])
        dev_t = (fd, pad(ed, 1e9), np.array(wd, dtype=np.float64))
    costs = pad(edits, 1e9) if edits is not None else None
    weights = np.array(words, dtype=np.float64) if words is not None else None
    choice, ranks, ps, how = _tuned(f, costs, weights, dev_t, params, k, "rescore --task asr")
    metrics: dict[str, Any] = {"lists": len(items), "scorer": "+".join(methods), "tuned": how,
                               "prior": f.prior_kind, **_param_summary(ps)}
    if edits is not None and words is not None:
        metrics.update(wer=choice_wer(edits, words, choice), one_best_wer=choice_wer(edits, words, [0] * len(items)),
                       oracle_wer=choice_wer(edits, words, oracle_choice(edits)),
                       compositional_oracle_wer=compositional_oracle_wer([it.references[0] for it in items],
                                                                         [it.candidates for it in items]),
                       reference_words=int(sum(words)))
        metrics["relative_reduction"] = (1 - metrics["wer"] / metrics["one_best_wer"]) if metrics[
            "one_best_wer"] else 0.0
    return Rescored(choice.tolist(), ranks, metrics, ps)


def sentence_bleu_costs(items: Sequence[RankItem], refs: Sequence[Sequence[str]], lang: str = "en") -> np.ndarray:
    """``-sentence_bleu`` of every candidate against its segment's references (the MT tuning cost)."""
    return pad([[-sentence_bleu(c, list(r), lang) for c in it.candidates] for it, r in zip(items, refs)], 1e9)


def rescore_mt(scorer: Any, items: Sequence[RankItem], systems: Sequence[str], methods: Sequence[str],
               tune_references: Sequence[Sequence[str]] | None = None, params: Params | None = None, k: int = 2,
               lang: str = "en") -> Rescored:
    """Rerank system outputs per segment. Tuning (the system prior: systems ranked by corpus BLEU; lambda and
    beta) uses ``tune_references`` on all segments, or, without them, ``k``-fold on the items' own references.
    Metrics on the items' references:
    ``bleu``/``chrf`` (+ signatures) of the reranked output, of the best single system (by the tuning data),
    and the sentence-BLEU oracle selected with the tuning references."""
    # a pre-trained pair scores the target side alone (the source is another language); a reranker run its pairs
    scores = model_scores(scorer, items, methods, use_context=getattr(scorer, "wants_source", False))
    has_refs = all(it.references for it in items)
    tune_refs = tune_references if tune_references is not None else (
        [it.references for it in items] if has_refs else None)
    costs = sentence_bleu_costs(items, tune_refs, lang) if tune_refs is not None else None

    def system_rank(rows: np.ndarray) -> list[int]:
        """Systems ranked by corpus BLEU on the tuning references of ``rows`` (ties: file order)."""
        if tune_refs is None:
            return list(range(len(systems)))
        streams = [[tune_refs[i][j] for i in rows] for j in range(len(tune_refs[rows[0]]))]
        score = [bleu([items[i].candidates[s] for i in rows], streams, lang)["score"] for s in range(len(systems))]
        order = sorted(range(len(systems)), key=lambda s: (-score[s], s))
        return [order.index(s) for s in range(len(systems))]

    def make(tune: np.ndarray, apply: np.ndarray) -> Features:
        sub = [items[i] for i in apply]
        return build_features(sub, {m: [v[i] for i in apply] for m, v in scores.items()}, system_rank(tune))

    allrows = np.arange(len(items))
    f = make(allrows, allrows)
    if params is not None or tune_references is not None:
        dev_t = (f, costs, None) if params is None else None
        choice, ranks, ps, how = _tuned(f, costs, None, dev_t, params, k, "rescore --task mt")
        how = "given" if params is not None else "tune-references"
        best_system = system_rank(allrows).index(0)
        oracle = costs.argmin(1) if costs is not None else None
    else:
        if costs is None:
            raise ElectraError("rescore --task mt: give --references (k-fold tuning), --tune-references or --lambda")
        choice, ranks, ps = cross_validate(f, costs, None, k, make)
        how = f"{k}-fold"
        best_system = system_rank(allrows).index(0)
        oracle = costs.argmin(1)
    metrics: dict[str, Any] = {"lists": len(items), "systems": len(systems), "scorer": "+".join(methods),
                               "tuned": how, **_param_summary(ps)}
    if has_refs:
        streams = [[it.references[j] for it in items] for j in range(len(items[0].references))]

        def corpus(pick: Sequence[int]) -> dict[str, Any]:
            hyp = [it.candidates[c] for it, c in zip(items, pick)]
            b, ch = bleu(hyp, streams, lang), chrf(hyp, streams)
            return {"bleu": b["score"], "bleu_signature": b["signature"], "chrf": ch["score"],
                    "chrf_signature": ch["signature"]}

        metrics.update(corpus(choice))
        metrics["best_single_system"] = {"name": systems[best_system], **corpus([best_system] * len(items))}
        if oracle is not None:
            metrics["tune_oracle"] = corpus(oracle.tolist())
    return Rescored(choice.tolist(), ranks, metrics, ps)


def rescore_choice(scorer: Any, items: Sequence[RankItem], methods: Sequence[str],
                   dev: Sequence[RankItem] | None = None, params: Params | None = None, k: int = 5) -> Rescored:
    """Multiple choice (MuTual): each option scored after the dialogue; R@1, R@2, MRR when labels exist."""
    def labelled(its: Sequence[RankItem]) -> np.ndarray | None:
        if not all(it.label is not None for it in its):
            return None
        width = max(len(it.candidates) for it in its)
        return np.array([[0.0 if j == it.label else 1.0 for j in range(width)] for it in its])

    f = build_features(items, model_scores(scorer, items, methods))
    f.prior[:] = 0.0  # options come in no order: no rank prior
    dev_t = None
    if dev is not None and params is None:
        cd = labelled(dev)
        if cd is None:
            raise ElectraError("--dev: every dev example needs its answer to tune on")
        fd = build_features(dev, model_scores(scorer, dev, methods))
        fd.prior[:] = 0.0
        dev_t = (fd, cd, None)
    costs = labelled(items)
    choice, ranks, ps, how = _tuned(f, costs, None, dev_t, params, k, "rescore --task dialogue")
    metrics: dict[str, Any] = {"lists": len(items), "scorer": "+".join(methods), "tuned": how, **_param_summary(ps)}
    if costs is not None:
        metrics.update(ranking_metrics(ranks, [int(it.label) for it in items]))  # type: ignore[arg-type]
    return Rescored(choice.tolist(), ranks, metrics, ps)


# ---- output -------------------------------------------------------------------------------------------------
def records(items: Sequence[RankItem], result: Rescored, systems: Sequence[str] | None = None) -> list[dict]:
    """One JSON object per list: its id, the chosen index and text, and the full ranking (best first)."""
    out = []
    for i, (it, c, r) in enumerate(zip(items, result.choice, result.rankings)):
        rec: dict[str, Any] = {"id": it.id or str(i), "choice": int(c), "text": it.candidates[c], "ranking": r}
        if systems is not None:
            rec["system"] = systems[c]
        out.append(rec)
    return out


def write_outputs(out: str, recs: Sequence[dict], extra: dict[str, str] | None = None) -> None:
    """Write ``out`` (JSON Lines) and any ``extra`` files only once everything is computed, each atomically."""
    texts = {out: "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), **(extra or {})}
    for path, text in texts.items():
        write_text_atomic(path, text, "rescoring output")


def parse_scorer(spec: str) -> list[str]:
    """``"rtd"``, ``"pll"``, ``"pll-word"``, ``"similarity"`` (to the context: MT source, dialogue) or a
    ``+``-joined combination (each gets its own lambda)."""
    methods = [m.strip() for m in spec.split("+") if m.strip()]
    bad = [m for m in methods if m not in SCORERS + PAIR_SCORERS]
    if not methods or bad or len(set(methods)) != len(methods):
        raise ElectraError(f"--scorer {spec!r}: expected one of {', '.join(SCORERS + PAIR_SCORERS)} or a "
                           "combination such as rtd+pll")
    return methods


def rescore_file(task: str, model: str, input: str, out: str, *, dev: str | None = None, scorer: str = "rtd",
                 lam: float | None = None, beta: float = 0.0, folds: int | None = None,
                 candidates: Sequence[str] | None = None, references: Sequence[str] = (),
                 tune_references: Sequence[str] | None = None, lang: str = "en", submission: str | None = None,
                 max_length: int = 256, backend: str = "torch", precision: str = "fp32") -> dict[str, Any]:
    """``electra rescore``: read, score, tune, choose, and only then write ``out`` (and ``submission``)."""
    reranker = _is_reranker_run(model)
    methods = ["reranker"] if reranker else parse_scorer(scorer)
    params = Params({m: lam for m in methods}, beta) if lam is not None else None
    extra: dict[str, str] = {}
    systems = None

    def make_scorer() -> Any:
        if reranker:
            return RerankerScorer(model)
        return PairScorer(model, backend, precision, max_length)

    if task == "asr":
        items = R.read_hyporadise(input)
        dev_items = R.read_hyporadise(dev) if dev else None
        result = rescore_asr(make_scorer(), items, methods, dev_items, params,
                             folds or 5)
    elif task == "mt":
        if not candidates:
            raise ElectraError("rescore --task mt: give --candidates DIR or FILE... (one file per system)")
        items, systems = R.read_mt(input, candidates, references)
        tune = None
        if tune_references:
            tune_items, _ = R.read_mt(input, candidates, tune_references)
            tune = [it.references for it in tune_items]
        result = rescore_mt(make_scorer(), items, systems, methods, tune, params,
                            folds or 2, lang)
    elif task == "dialogue":
        items = R.read_mutual(input)
        dev_items = R.read_mutual(dev) if dev else None
        result = rescore_choice(make_scorer(), items, methods, dev_items, params,
                                folds or 5)
        if submission:
            extra[submission] = mutual_submission([it.id for it in items], result.rankings)
    else:
        raise ElectraError(f"--task {task!r}: expected asr, mt or dialogue")
    write_outputs(out, records(items, result, systems), extra)
    return result.metrics


def _is_reranker_run(model: str) -> bool:
    """Whether ``model`` is a fine-tuned reranker (``electra finetune --task mutual|asr-nbest|...``)."""
    for d in (Path(model), Path(model) / BEST_DIR):
        if (d / TASK_FILE).is_file():
            return family_of_run(model) is RANKING
    return False


class RerankerScorer:
    """A fine-tuned reranker run with the face of :class:`electra.scoring.Scorer`: ``score("reranker", texts,
    contexts)`` gives each (context, candidate) its cross-encoder score, so ``electra rescore`` can use it."""

    wants_source = True  # mt-rerank runs were trained with the source as context

    def __init__(self, run: str | Path):
        self.model = load_task_model(run)
        if self.model.spec.get("task") not in RANKING_TASKS:
            raise ElectraError(f"{run}: not a reranker run (task {self.model.spec.get('task')!r})")
        tok_dir = run_tokenizer_dir(run)
        if tok_dir is None:
            raise ElectraError(f"{run}: run has no tokenizer/ folder")
        self.tokenizer = load_tokenizer(tok_dir)
        check_tokenizer_fits(self.tokenizer, self.model.encoder.config.vocab_size, tok_dir, run)
        self.pad_id = special_tokens(self.tokenizer).pad_id
        self.max_len = int(self.model.spec.get("max_seq_len", 256))

    def score(self, method: str, texts: Sequence[str], contexts: Sequence[str | None] | None = None) -> list:
        encs = encode_candidates(self.tokenizer, texts, contexts, self.max_len)
        feats = [{"ids": [e.ids], "types": [e.type_ids]} for e in encs]
        order = sorted(range(len(feats)), key=lambda i: len(encs[i].ids))
        scores = list_scores(self.model, [feats[i] for i in order], 64, self.pad_id)
        out: list[Any] = [None] * len(feats)
        for i, s in zip(order, scores):
            out[i] = SentenceScore([], [], float(s[0]))
        return out
